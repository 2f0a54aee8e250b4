//! The emulated data center in one process: the fabric of `vmdep switch`es ([`super::fabric`]),
//! one `vmdep host` per server with a DPI module on its mirror port, the controller, and the
//! workload replayed through the hosts' VM ports with its ground truth.
//!
//! Time is stepped: the workload is replayed window by window (in real time by default, so DPI
//! sees the workload's own response times); at the end of each window the demo waits until
//! every frame in flight has arrived and every sFlow datagram has reached the collector, then
//! runs the controller's window. A counting entry installed at the end of window `w` therefore
//! counts exactly the pair's frames of windows `w+1` onwards, which is what the exact counts are
//! checked against.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

use crate::controller::api::{self, ApiError};
use crate::controller::estimate::{Metric, SelectionPolicy};
use crate::controller::graph::{DependencyEdge, GraphSnapshot};
use crate::controller::history::{HistoryError, HistoryRecorder, HistoryStore};
use crate::controller::paths::Paths;
use crate::controller::placement::PlacementReport;
use crate::controller::service::{self, ControllerError, ControllerOptions, WindowReport};
use crate::controller::session::PipelineBundle;
use crate::controller::topology::{Topology, TopologyError};
use crate::controller::VmPair;
use crate::host::{
    self, DpiModule, Forwarding, HostConfig, HostError, RunningHost, UdpWire, VmPort,
};

use super::fabric::{self, FabricError};
use super::workload::{self, GroundTruth, Workload, WorkloadError, WorkloadSpec};

/// The reference topology (ARCHITECTURE.md), built into the binary.
pub const REFERENCE_TOPOLOGY: &str = include_str!("../../topologies/reference.toml");

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub workload: WorkloadSpec,
    /// Workload time per controller window.
    pub window: Duration,
    /// Replay at the workload's own pace (true) or as fast as the fabric takes it.
    pub real_time: bool,
    pub sampling_rate: u32,
    /// Estimated bytes per window from which a pair is measured exactly.
    pub threshold_bytes: u64,
    /// Where graph.json, graph.dot and report.json go.
    pub out_dir: Option<PathBuf>,
    /// Frames sent and not yet delivered before the replay waits (bounded socket buffers).
    pub max_in_flight: u64,
    /// Serve the controller's HTTP API (with an in-memory history) here while the demo runs.
    pub http_listen: Option<SocketAddr>,
    /// How long the API keeps serving after the last window, before everything stops.
    pub linger: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            workload: WorkloadSpec::default(),
            window: Duration::from_secs(1),
            real_time: true,
            sampling_rate: 64,
            threshold_bytes: 4_000,
            out_dir: None,
            max_in_flight: 256,
            http_listen: None,
            linger: Duration::ZERO,
        }
    }
}

#[derive(Debug, Error)]
pub enum DemoError {
    #[error("the demo topology: {0}")]
    Topology(#[from] TopologyError),
    #[error("the built-in vmdep.p4 does not compile: {0}")]
    Compile(String),
    #[error("the workload: {0}")]
    Workload(#[from] WorkloadError),
    #[error("the switch fabric: {0}")]
    Fabric(#[from] FabricError),
    #[error("the controller: {0}")]
    Controller(#[from] Box<ControllerError>),
    #[error("server {server}: {source}")]
    Host { server: String, source: HostError },
    #[error("the switches did not become ready within {0:?}: {1}")]
    NotReady(Duration, String),
    #[error("{lost} frames did not arrive within {waited:?} (the fabric drops or loses them)")]
    FramesLost { lost: u64, waited: Duration },
    #[error("the HTTP API: {0}")]
    Api(#[from] ApiError),
    #[error("the history: {0}")]
    History(#[from] HistoryError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One line of progress, once per window.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub window: u64,
    pub windows: u64,
    pub frames_sent: u64,
    pub samples: u64,
    pub selected: usize,
    pub released: usize,
    pub measured: usize,
    /// Where the HTTP API answers, when it is served.
    pub http_addr: Option<SocketAddr>,
}

/// One directed pair in the demo's result.
#[derive(Debug, Clone, Serialize)]
pub struct PairResult {
    pub src: String,
    pub dst: String,
    pub same_server: bool,
    /// DPI's protocols of the conversations this pair's source opened, if any.
    pub protocols: Vec<String>,
    /// DPI's protocols of the conversations the destination opened: this pair carries their
    /// answers.
    pub answers: Vec<String>,
    /// Ground truth over the whole run.
    pub truth_packets: u64,
    pub truth_bytes: u64,
    /// Where the pair's exact count comes from: a switch, or `server:NAME`.
    pub measured_by: Option<String>,
    pub exact_packets: Option<u64>,
    pub exact_bytes: Option<u64>,
    /// Ground truth over the windows the count covered: what the exact count must equal.
    pub expected_packets: Option<u64>,
    pub expected_bytes: Option<u64>,
    /// Whether the exact count equals its expected value.
    pub exact_matches: Option<bool>,
    /// The sampled estimate summed over all windows, and its error against the truth.
    pub estimated_packets: u64,
    pub estimated_bytes: u64,
    pub samples: u64,
    pub estimate_error_percent: Option<f64>,
    /// sFlow's 95 % bound for that many samples.
    pub estimate_bound_percent: Option<f64>,
}

/// Entries a switch held at the demo's peak, against measuring every one of those pairs on
/// every switch of its path.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchEntries {
    pub switch: String,
    pub capacity: u32,
    pub vmdep: u32,
    pub everywhere: u32,
}

/// A DPI label checked against the workload's application truth.
#[derive(Debug, Clone, Serialize)]
pub struct LabelResult {
    pub client: String,
    pub server: String,
    pub server_port: u16,
    pub truth_protocol: String,
    /// Whether the pair's frames reached a DPI module: it sent frames (either way) in a window
    /// while it was measured (the controller mirrors measured pairs), or it stays on one
    /// server.
    pub mirrored: bool,
    /// What DPI said, if it labeled this conversation.
    pub dpi_protocol: Option<String>,
    pub matches: bool,
    /// DPI labeled it with client and server the wrong way round.
    pub roles_swapped: bool,
    pub truth_requests: u64,
    pub dpi_requests: Option<u64>,
    pub truth_mean_response_ms: Option<f64>,
    pub dpi_mean_response_ms: Option<f64>,
}

/// Everything the demo measured and checked.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub seed: u64,
    pub workload_seconds: f64,
    pub windows: u64,
    pub frames: u64,
    pub threshold_bytes: u64,
    pub sampling_rate: u32,
    pub pairs: Vec<PairResult>,
    /// Cross-server pairs never measured although in some window their true traffic was at
    /// least twice the threshold, in enough packets that sampling would show less than the
    /// threshold under once in a thousand runs.
    pub missed: Vec<String>,
    /// Graph edges between VMs that never exchanged a frame.
    pub phantom: Vec<String>,
    pub labels: Vec<LabelResult>,
    pub entries: Vec<SwitchEntries>,
    /// The pairs measured at the peak, placed greedily (as the controller did), optimally
    /// (min-max load) and naively (first hop), and counted on every switch of their paths.
    pub placement: Option<PlacementReport>,
    pub elapsed_seconds: f64,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// What the replay over real sockets saw (`--netns` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<super::netns_run::NetnsStats>,
}

impl DemoReport {
    /// Every measured pair's exact count equals the truth, nothing is missed or invented.
    pub fn exact_counts_match(&self) -> bool {
        self.pairs.iter().all(|p| p.exact_matches != Some(false))
    }
}

/// Runs the demo on the reference topology.
pub async fn run(
    options: DemoOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    let topology = Topology::from_toml(REFERENCE_TOPOLOGY)?;
    let workload = workload::three_tier(&topology, options.workload)?;
    let pipeline = vmdep_pipeline()?;

    let fabric = fabric::start_fabric(&topology).await?;
    let topology = Arc::new(fabric.topology.clone());
    let controller_options = controller_options(
        topology.clone(),
        pipeline,
        options.threshold_bytes,
        options.out_dir.clone(),
    );
    let controller = service::start(controller_options).await.map_err(Box::new)?;
    wait_ready(&controller).await?;
    let http = match options.http_listen {
        Some(listen) => Some(DemoApi::serve(&controller, listen).await?),
        None => None,
    };
    let http_addr = http.as_ref().map(|api| api.addr);

    let mut hosts = Vec::new();
    let mut dpi_tasks = Vec::new();
    let mut ports: Vec<VmPort> = Vec::new();
    for (i, server) in topology.servers().iter().enumerate() {
        let uplink = fabric.uplinks[i];
        let mut config = HostConfig::new(
            server.name.clone(),
            topology.clone(),
            UdpWire {
                local: uplink.host,
                peer: uplink.switch,
            },
        );
        config.collector = controller.sflow_addr;
        config.controller = Some(controller.hostlink_addr);
        config.sampling_rate = options.sampling_rate;
        config.report_interval = Duration::from_millis(200);
        config.seed = options.workload.seed ^ (i as u64 + 1);
        let running = host::start(config)
            .await
            .map_err(|source| DemoError::Host {
                server: server.name.clone(),
                source,
            })?;
        for &vm in topology.vms_of_server(crate::controller::topology::ServerId(i)) {
            let name = &topology.vm(vm).name;
            ports.push(running.vm_port(name).map_err(|source| DemoError::Host {
                server: server.name.clone(),
                source,
            })?);
        }
        dpi_tasks.extend(DpiModule::start(&running));
        hosts.push(running);
    }
    // Ports by VM id, so a frame finds its sender's port directly.
    let mut port_of_vm: Vec<Option<usize>> = vec![None; topology.vms().len()];
    for (index, port) in ports.iter().enumerate() {
        if let Some(vm) = topology.vm_id(port.name()) {
            port_of_vm[vm.0] = Some(index);
        }
    }

    let windows = options
        .workload
        .duration
        .as_nanos()
        .div_ceil(options.window.as_nanos().max(1)) as u64;
    let mut replay = Replay {
        in_flight_to: vec![0; ports.len()],
        ports,
        port_of_vm,
        expected: 0,
        delivered: 0,
        discarded: 0,
        max_in_flight: options.max_in_flight,
    };
    let mut reports: Vec<WindowReport> = Vec::new();
    let mut peak: Option<Vec<SwitchEntries>> = None;
    let mut peak_measured = 0;
    let mut placement = None;
    let mut next = 0;
    let mut frames_sent = 0;
    let paths = Paths::compute(&topology);
    for w in 0..windows {
        let end = options.window * (w as u32 + 1);
        let window_started = Instant::now();
        while next < workload.frames.len() && workload.frames[next].at < end {
            let frame = &workload.frames[next];
            if options.real_time {
                let due = frame.at.saturating_sub(options.window * w as u32);
                let now = window_started.elapsed();
                if due > now {
                    replay.drain();
                    tokio::time::sleep(due - now).await;
                }
            }
            replay
                .send(frame.src_vm.0, frame.dst_vm.0, &frame.frame)
                .await?;
            frames_sent += 1;
            next += 1;
        }
        replay.settle(Duration::from_secs(10)).await?;
        settle_sflow(&controller, &hosts).await;
        let report = controller.step_window().await;
        progress(&Progress {
            window: w + 1,
            windows,
            frames_sent,
            samples: report.samples,
            selected: report.selected.len(),
            released: report.released.len() + report.idle.len(),
            measured: report.measured,
            http_addr,
        });
        if report.measured >= peak_measured {
            peak_measured = report.measured;
            peak = Some(entries_now(&controller, &topology, &paths).await);
            placement = controller.placement_report().ok();
        }
        reports.push(report);
    }

    // Last counter reads, last local counts and labels.
    for task in &dpi_tasks {
        task.publish_now();
    }
    wait_host_reports(&hosts).await;
    let last = controller.step_window().await;
    reports.push(last);

    let graph = controller.graph().snapshot();
    let truth = TrafficTruth::from_workload(&topology, &workload, options.window);
    let mut report = build_report(
        &ReportContext::of(&options),
        &topology,
        &truth,
        &workload.truth,
        &reports,
        &graph,
        peak.unwrap_or_default(),
    );
    report.placement = placement;
    if let Some(api) = http {
        api.linger_and_stop(options.linger).await;
    }
    for task in dpi_tasks {
        task.stop().await;
    }
    for host in hosts {
        let name = host.server().to_string();
        host.shutdown().await.map_err(|source| DemoError::Host {
            server: name,
            source,
        })?;
    }
    controller.shutdown().await.map_err(Box::new)?;
    fabric.shutdown().await;
    if let Some(dir) = &options.out_dir {
        write_report(&mut report, dir)?;
    }
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The demo's controller: sFlow and host link on free loopback ports, windows stepped by the
/// demo, pairs selected by estimated bytes.
pub(super) fn controller_options(
    topology: Arc<Topology>,
    pipeline: PipelineBundle,
    threshold_bytes: u64,
    out_dir: Option<PathBuf>,
) -> ControllerOptions {
    let mut options = ControllerOptions::new(topology, Arc::new(pipeline));
    options.sflow_listen = "127.0.0.1:0".parse().expect("address literal");
    options.hostlink_listen = "127.0.0.1:0".parse().expect("address literal");
    options.window = None;
    options.policy = SelectionPolicy {
        metric: Metric::Bytes,
        threshold: threshold_bytes,
        top_k: 0,
        entry_budget: 16_384,
        idle_windows: 5,
    };
    options.output_dir = out_dir;
    options
}

/// Writes report.json next to the controller's graph files and adds them all to the report's
/// list of files.
pub(super) fn write_report(
    report: &mut DemoReport,
    dir: &std::path::Path,
) -> Result<(), DemoError> {
    report
        .files
        .extend([dir.join("graph.json"), dir.join("graph.dot")]);
    let path = dir.join("report.json");
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    std::fs::write(&path, text).map_err(|source| DemoError::Write {
        path: path.clone(),
        source,
    })?;
    report.files.push(path);
    Ok(())
}

/// vmdep.p4, compiled now (a few milliseconds).
pub fn vmdep_pipeline() -> Result<PipelineBundle, DemoError> {
    let source = include_str!("../../p4/vmdep.p4");
    let out = crate::compiler::compile(source, "vmdep.p4")
        .map_err(|diags| DemoError::Compile(diags.to_string()))?;
    Ok(PipelineBundle {
        p4info: out.p4info,
        device_config: out.bmv2_json.into_bytes(),
    })
}

/// None when every switch has its pipeline and routes in; else the ones still waiting, each
/// with its session's last error.
pub(super) fn switches_waiting(switches: &[service::SwitchReport]) -> Option<String> {
    let waiting: Vec<String> = switches
        .iter()
        .filter(|s| !(s.ready && s.routes > 0))
        .map(|s| {
            let why = s.last_error.as_deref().unwrap_or("no answer");
            format!("{} ({why})", s.name)
        })
        .collect();
    (!waiting.is_empty()).then(|| waiting.join(", "))
}

pub(super) async fn wait_ready(controller: &service::RunningController) -> Result<(), DemoError> {
    let limit = Duration::from_secs(20);
    let deadline = Instant::now() + limit;
    loop {
        let Some(waiting) = switches_waiting(&controller.switches().await) else {
            return Ok(());
        };
        if Instant::now() > deadline {
            return Err(DemoError::NotReady(limit, waiting));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The VMs' side of the replay: sends frames into their ports and counts what comes out.
struct Replay {
    ports: Vec<VmPort>,
    port_of_vm: Vec<Option<usize>>,
    /// Per port, frames sent to its VM that it has not received yet.
    in_flight_to: Vec<u64>,
    /// Frames forwarded to a VM or the uplink, which some VM port must eventually receive.
    expected: u64,
    delivered: u64,
    discarded: u64,
    max_in_flight: u64,
}

impl Replay {
    fn drain(&mut self) {
        for (port, in_flight) in self.ports.iter_mut().zip(&mut self.in_flight_to) {
            while port.try_recv().is_some() {
                self.delivered += 1;
                *in_flight = in_flight.saturating_sub(1);
            }
        }
    }

    /// Waits until VM port `port` has received every frame sent to it. The workload's times
    /// assume a 60 µs network, the emulated fabric takes longer: without this a VM could
    /// answer what has not reached it yet (a TLS client its Finished before the server's
    /// handshake flight), which no tap on a real network sees.
    async fn wait_for_arrivals(&mut self, port: usize) -> Result<(), DemoError> {
        let deadline = Instant::now() + ARRIVAL_LIMIT;
        loop {
            self.drain();
            if self.in_flight_to[port] == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DemoError::FramesLost {
                    lost: self.in_flight_to[port],
                    waited: ARRIVAL_LIMIT,
                });
            }
            // The fabric runs on this runtime's other tasks: let them move the frames.
            tokio::task::yield_now().await;
        }
    }

    /// Sends a frame of VM `vm` to VM `to`, once `vm` has received what was sent to it.
    async fn send(&mut self, vm: usize, to: usize, frame: &[u8]) -> Result<(), DemoError> {
        // Bounded in flight: socket buffers on loopback hold a few hundred frames.
        let mut waited = 0;
        while self.expected - self.delivered >= self.max_in_flight {
            self.drain();
            if self.expected - self.delivered < self.max_in_flight {
                break;
            }
            waited += 1;
            if waited > 10_000 {
                return Err(DemoError::FramesLost {
                    lost: self.expected - self.delivered,
                    waited: Duration::from_secs(10),
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let Some(port) = self.port_of_vm.get(vm).copied().flatten() else {
            self.discarded += 1;
            return Ok(());
        };
        self.wait_for_arrivals(port).await?;
        match self.ports[port].send(frame) {
            Forwarding::Vm { .. } | Forwarding::Uplink => {
                self.expected += 1;
                if let Some(to) = self.port_of_vm.get(to).copied().flatten() {
                    self.in_flight_to[to] += 1;
                }
            }
            Forwarding::Discarded(_) => self.discarded += 1,
        }
        Ok(())
    }

    /// Waits until every forwarded frame has been delivered.
    async fn settle(&mut self, limit: Duration) -> Result<(), DemoError> {
        let deadline = Instant::now() + limit;
        loop {
            self.drain();
            if self.delivered >= self.expected {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DemoError::FramesLost {
                    lost: self.expected - self.delivered,
                    waited: limit,
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The longest a VM waits for the frames sent to it before it sends (a lost frame otherwise).
const ARRIVAL_LIMIT: Duration = Duration::from_secs(5);

/// Waits until the collector has every datagram the hosts sent (they flush every 100 ms).
async fn settle_sflow(controller: &service::RunningController, hosts: &[RunningHost]) {
    tokio::time::sleep(host::FLUSH_INTERVAL + Duration::from_millis(20)).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let sent: u64 = hosts.iter().map(|h| h.stats().sflow.datagrams).sum();
        let received = controller.collector_stats().datagrams;
        if received >= sent || Instant::now() > deadline {
            // The collector hands batches over a channel; let it pass the last ones on.
            tokio::time::sleep(Duration::from_millis(10)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until each host sent local counts taken after the last frame (they report every
/// 200 ms), and the DPI modules' last labels went out with them.
async fn wait_host_reports(hosts: &[RunningHost]) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let before: Vec<u64> = hosts
        .iter()
        .map(|h| h.stats().link.local_count_reports)
        .collect();
    while Instant::now() < deadline {
        let counted = hosts
            .iter()
            .zip(&before)
            .all(|(h, b)| h.stats().link.local_count_reports > *b);
        if counted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The controller takes the last messages off its sockets.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

pub(super) async fn entries_now(
    controller: &service::RunningController,
    topology: &Topology,
    paths: &Paths,
) -> Vec<SwitchEntries> {
    let switches = controller.switches().await;
    entries_of(topology, paths, &switches, controller.placements().keys())
}

/// Entries per switch as the controller reports them, against counting every placed pair on
/// every switch of its path.
pub(super) fn entries_of<'a>(
    topology: &Topology,
    paths: &Paths,
    switches: &[service::SwitchReport],
    placed: impl Iterator<Item = &'a VmPair>,
) -> Vec<SwitchEntries> {
    let mut everywhere = vec![0u32; topology.switches().len()];
    for pair in placed {
        if let Ok(path) = paths.pair_path(topology, *pair) {
            for s in path {
                everywhere[s.0] += 1;
            }
        }
    }
    switches
        .iter()
        .zip(everywhere)
        .map(|(s, everywhere)| SwitchEntries {
            switch: s.name.clone(),
            capacity: s.capacity,
            vmdep: s.entries,
            everywhere,
        })
        .collect()
}

/// What every directed VM pair sent, whole run and per controller window: the ground truth the
/// measurements are checked against.
#[derive(Debug, Clone, Default)]
pub struct TrafficTruth {
    /// Every pair that sent a frame, in topology order of (src, dst).
    pub pairs: Vec<workload::PairTruth>,
    /// Per pair, per window index (0-based), its frames and bytes.
    pub per_window: BTreeMap<VmPair, BTreeMap<usize, (u64, u64)>>,
    /// The windows in which a pair carried frames from or to a TCP/UDP port: a conversation
    /// (client, server, port) spoke in a window when client → server frames to the port, or
    /// server → client frames from it, were sent then.
    pub port_windows: PortWindows,
    pub frames: u64,
}

/// Per (pair, port), the windows in which the pair's frames carried the port as source or
/// destination.
pub type PortWindows = BTreeMap<(VmPair, u16), BTreeSet<usize>>;

/// Records that `pair` carried frames from or to `ports`' two ports in `window`.
pub(super) fn note_ports(
    windows: &mut PortWindows,
    pair: VmPair,
    window: usize,
    ports: &crate::wire::TransportSummary,
) {
    for port in [ports.src_port, ports.dst_port] {
        windows.entry((pair, port)).or_default().insert(window);
    }
}

impl TrafficTruth {
    /// The workload's own frames, windowed by their time.
    pub fn from_workload(topology: &Topology, workload: &Workload, window: Duration) -> Self {
        let window_of = |at: Duration| (at.as_nanos() / window.as_nanos().max(1)) as usize;
        let mut per_window: BTreeMap<VmPair, BTreeMap<usize, (u64, u64)>> = BTreeMap::new();
        let mut port_windows = PortWindows::new();
        for f in &workload.frames {
            let pair = VmPair::new(topology.vm(f.src_vm).ipv4, topology.vm(f.dst_vm).ipv4);
            let window = window_of(f.at);
            let e = per_window
                .entry(pair)
                .or_default()
                .entry(window)
                .or_default();
            e.0 += 1;
            e.1 += f.frame.len() as u64;
            // Frames without TCP/UDP ports belong to no conversation.
            let headers = crate::wire::HeaderSummary::parse(&f.frame).ok();
            if let Some(ports) = headers.and_then(|h| h.transport) {
                note_ports(&mut port_windows, pair, window, &ports);
            }
        }
        TrafficTruth {
            pairs: workload.truth.pairs.clone(),
            per_window,
            port_windows,
            frames: workload.frames.len() as u64,
        }
    }
}

/// The settings a report repeats.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReportContext {
    pub seed: u64,
    pub workload: Duration,
    pub threshold_bytes: u64,
    pub sampling_rate: u32,
}

impl ReportContext {
    pub(super) fn of(options: &DemoOptions) -> Self {
        ReportContext {
            seed: options.workload.seed,
            workload: options.workload.duration,
            threshold_bytes: options.threshold_bytes,
            sampling_rate: options.sampling_rate,
        }
    }
}

/// Compares what the controller measured with the truth: exact counts against the frames of
/// the windows each entry was installed, pairs missed or invented, labels against the
/// workload's applications.
pub(super) fn build_report(
    context: &ReportContext,
    topology: &Topology,
    truth: &TrafficTruth,
    applications: &GroundTruth,
    reports: &[WindowReport],
    graph: &GraphSnapshot,
    entries: Vec<SwitchEntries>,
) -> DemoReport {
    let graph = &EdgeIndex::of(graph);
    let name = |ip: Ipv4Addr| {
        topology
            .vm_by_ipv4(ip)
            .map(|vm| topology.vm(vm).name.clone())
            .unwrap_or_else(|| ip.to_string())
    };
    let per_window = &truth.per_window;
    // Which windows each pair's counters covered: installed at the end of window i (report
    // index i, 1-based), counting windows i+1.. until released at the end of window j.
    let mut covered: BTreeMap<VmPair, BTreeSet<usize>> = BTreeMap::new();
    let mut installed: BTreeMap<VmPair, usize> = BTreeMap::new();
    let last_window = reports.len();
    for (i, r) in reports.iter().enumerate() {
        // Report i (0-based) ran after window i; its reads covered window i.
        for pair in r.released.iter().chain(&r.idle) {
            if let Some(from) = installed.remove(pair) {
                covered.entry(*pair).or_default().extend(from..=i);
            }
        }
        for p in &r.selected {
            installed.insert(p.pair, i + 1);
        }
    }
    for (pair, from) in installed {
        // Still installed: read by the last report, which covered every window before it.
        let end = last_window.saturating_sub(1);
        if from < end {
            covered.entry(pair).or_default().extend(from..end);
        }
    }
    let mut estimates: BTreeMap<VmPair, (u64, u64, u64)> = BTreeMap::new();
    for r in reports {
        for e in &r.estimates {
            let t = estimates.entry(e.pair).or_default();
            t.0 += e.samples.samples;
            t.1 += e.samples.packets;
            t.2 += e.samples.bytes;
        }
    }
    // A pair is clearly above the threshold in a window when its true bytes are at least twice
    // the threshold and sampling would put its estimate below the threshold less than once in
    // a thousand runs: the rest is the method's accepted blind spot.
    let clearly_above: BTreeSet<VmPair> = per_window
        .iter()
        .filter(|(_, windows)| {
            windows.values().any(|&(packets, bytes)| {
                bytes >= 2 * context.threshold_bytes
                    && chance_sampling_underestimates(
                        packets,
                        bytes,
                        context.sampling_rate,
                        context.threshold_bytes,
                    ) < 1e-3
            })
        })
        .map(|(pair, _)| *pair)
        .collect();

    let mut pairs = Vec::new();
    for truth in &truth.pairs {
        let pair = VmPair::new(truth.src_ipv4, truth.dst_ipv4);
        let edge = graph.edge(pair);
        let exact = edge.and_then(|e| e.exact.as_ref());
        let (expected_packets, expected_bytes) = if truth.same_server {
            (Some(truth.packets), Some(truth.bytes))
        } else if let Some(windows) = covered.get(&pair) {
            let w = per_window.get(&pair);
            let sum = windows
                .iter()
                .filter_map(|i| w.and_then(|w| w.get(i)))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            (Some(sum.0), Some(sum.1))
        } else {
            (None, None)
        };
        let exact_matches = match (exact, expected_packets, expected_bytes) {
            (Some(x), Some(p), Some(b)) => Some(x.packets == p && x.bytes == b),
            (None, Some(p), _) if p > 0 => Some(false),
            _ => None,
        };
        let (samples, est_packets, est_bytes) = estimates.get(&pair).copied().unwrap_or_default();
        let estimate_error_percent = (truth.packets > 0 && samples > 0)
            .then(|| 100.0 * (est_packets as f64 - truth.packets as f64) / truth.packets as f64);
        let mut protocols: Vec<String> = edge
            .map(|e| {
                e.labels
                    .iter()
                    .filter(|l| (l.client, l.server) == (pair.src, pair.dst))
                    .map(|l| l.protocol.clone())
                    .collect()
            })
            .unwrap_or_default();
        protocols.sort();
        protocols.dedup();
        // This direction carries the answers of the conversations labeled the other way.
        let reverse = VmPair::new(pair.dst, pair.src);
        let mut answers: Vec<String> = graph
            .edge(reverse)
            .map(|e| {
                e.labels
                    .iter()
                    .filter(|l| (l.client, l.server) == (reverse.src, reverse.dst))
                    .map(|l| l.protocol.clone())
                    .collect()
            })
            .unwrap_or_default();
        answers.sort();
        answers.dedup();
        pairs.push(PairResult {
            src: truth.src.clone(),
            dst: truth.dst.clone(),
            same_server: truth.same_server,
            protocols,
            answers,
            truth_packets: truth.packets,
            truth_bytes: truth.bytes,
            measured_by: exact.map(|x| x.measured_by.clone()),
            exact_packets: exact.map(|x| x.packets),
            exact_bytes: exact.map(|x| x.bytes),
            expected_packets,
            expected_bytes,
            exact_matches,
            estimated_packets: est_packets,
            estimated_bytes: est_bytes,
            samples,
            estimate_error_percent,
            estimate_bound_percent: crate::controller::estimate::error_bound_percent(samples),
        });
    }
    let missed = pairs
        .iter()
        .zip(&truth.pairs)
        .filter(|(p, t)| {
            let pair = VmPair::new(t.src_ipv4, t.dst_ipv4);
            !p.same_server && clearly_above.contains(&pair) && !covered.contains_key(&pair)
        })
        .map(|(p, _)| format!("{} → {}", p.src, p.dst))
        .collect();
    let truth_pairs: BTreeSet<VmPair> = truth
        .pairs
        .iter()
        .map(|t| VmPair::new(t.src_ipv4, t.dst_ipv4))
        .collect();
    let phantom = graph
        .edges()
        .filter(|e| !truth_pairs.contains(&e.pair))
        .map(|e| format!("{} → {}", name(e.pair.src), name(e.pair.dst)))
        .collect();
    let heard = ConversationsHeard {
        covered: &covered,
        same_server: truth
            .pairs
            .iter()
            .filter(|t| t.same_server)
            .map(|t| VmPair::new(t.src_ipv4, t.dst_ipv4))
            .collect(),
        port_windows: &truth.port_windows,
    };
    let labels = label_results(applications, graph, |app| {
        heard.heard(app.client_ipv4, app.server_ipv4, app.server_port)
    });
    DemoReport {
        seed: context.seed,
        workload_seconds: context.workload.as_secs_f64(),
        windows: reports.len() as u64,
        frames: truth.frames,
        threshold_bytes: context.threshold_bytes,
        sampling_rate: context.sampling_rate,
        pairs,
        missed,
        phantom,
        labels,
        entries,
        placement: None,
        elapsed_seconds: 0.0,
        files: Vec::new(),
        netns: None,
    }
}

/// A graph's edges by pair.
struct EdgeIndex<'a>(BTreeMap<VmPair, &'a DependencyEdge>);

impl<'a> EdgeIndex<'a> {
    fn of(graph: &'a GraphSnapshot) -> Self {
        EdgeIndex(graph.edges.iter().map(|e| (e.pair, e)).collect())
    }

    fn edge(&self, pair: VmPair) -> Option<&'a DependencyEdge> {
        self.0.get(&pair).copied()
    }

    fn edges(&self) -> impl Iterator<Item = &'a DependencyEdge> + '_ {
        self.0.values().copied()
    }
}

/// The controller's HTTP API as the demos serve it: with an in-memory history.
pub(crate) struct DemoApi {
    pub(crate) addr: SocketAddr,
    server: api::RunningApi,
    recorder: HistoryRecorder,
}

impl DemoApi {
    pub(crate) async fn serve(
        controller: &service::RunningController,
        listen: SocketAddr,
    ) -> Result<DemoApi, DemoError> {
        let store = Arc::new(HistoryStore::open_in_memory(None)?);
        let recorder = HistoryRecorder::start(store.clone(), controller);
        let server = api::serve(listen, controller.view(), Some(store)).await?;
        Ok(DemoApi {
            addr: server.addr,
            server,
            recorder,
        })
    }

    /// Keeps serving for `linger` (the whole run's graph is there by then), then stops.
    pub(crate) async fn linger_and_stop(self, linger: Duration) {
        tokio::time::sleep(linger).await;
        self.server.shutdown().await;
        self.recorder.shutdown().await;
    }
}

/// The chance that 1-in-`rate` sampling of a window's `packets` (`bytes` in all) estimates
/// fewer than `threshold` bytes: samples are Poisson with mean packets / rate, and the estimate
/// falls below the threshold with fewer than mean × threshold / bytes of them.
fn chance_sampling_underestimates(packets: u64, bytes: u64, rate: u32, threshold: u64) -> f64 {
    if bytes == 0 {
        return 1.0;
    }
    let mean = packets as f64 / f64::from(rate.max(1));
    let fewer_than = mean * threshold as f64 / bytes as f64;
    // P(X < fewer_than), term by term (exp(-mean) only underflows where the sum is ~0 anyway).
    let mut term = (-mean).exp();
    let mut sum = 0.0;
    let mut k = 0u32;
    while f64::from(k) < fewer_than {
        sum += term;
        k += 1;
        term *= mean / f64::from(k);
    }
    sum.min(1.0)
}

/// Which conversations DPI could hear: a same-server one from its first frame, any other only
/// in the windows its pair (or the reverse pair) was measured, for the controller mirrors
/// measured pairs. A conversation that spoke only outside those windows was never heard,
/// however busy its pair was otherwise.
struct ConversationsHeard<'a> {
    /// Per pair, the windows its counting entry (and so its mirror) covered.
    covered: &'a BTreeMap<VmPair, BTreeSet<usize>>,
    same_server: BTreeSet<VmPair>,
    port_windows: &'a PortWindows,
}

impl ConversationsHeard<'_> {
    fn heard(&self, client: Ipv4Addr, server: Ipv4Addr, port: u16) -> bool {
        let ways = [VmPair::new(client, server), VmPair::new(server, client)];
        if ways.iter().any(|pair| self.same_server.contains(pair)) {
            return true;
        }
        let spoke_in = |window: &usize| {
            ways.iter().any(|pair| {
                self.port_windows
                    .get(&(*pair, port))
                    .is_some_and(|windows| windows.contains(window))
            })
        };
        ways.iter()
            .filter_map(|pair| self.covered.get(pair))
            .any(|windows| windows.iter().any(spoke_in))
    }
}

fn label_results(
    truth: &GroundTruth,
    graph: &EdgeIndex,
    mirrored: impl Fn(&workload::AppTruth) -> bool,
) -> Vec<LabelResult> {
    truth
        .applications
        .iter()
        .map(|app| {
            let pair = VmPair::new(app.client_ipv4, app.server_ipv4);
            let label = graph.edge(pair).and_then(|e| {
                e.labels
                    .iter()
                    .find(|l| l.server == app.server_ipv4 && l.server_port == app.server_port)
            });
            let truth_protocol = protocol_name(app);
            let reverse = VmPair::new(app.server_ipv4, app.client_ipv4);
            // A label the other way round that is no application of the workload (the two VMs
            // may well run another application in that direction, e.g. NTP beside an API).
            let roles_swapped = graph.edge(reverse).is_some_and(|e| {
                e.labels.iter().any(|l| {
                    l.server == app.client_ipv4
                        && l.client == app.server_ipv4
                        && !truth.applications.iter().any(|a| {
                            (a.client_ipv4, a.server_ipv4, a.server_port)
                                == (l.client, l.server, l.server_port)
                        })
                })
            });
            LabelResult {
                mirrored: mirrored(app),
                roles_swapped,
                client: app.client.clone(),
                server: app.server.clone(),
                server_port: app.server_port,
                matches: label.is_some_and(|l| l.protocol == truth_protocol),
                truth_protocol,
                dpi_protocol: label.map(|l| l.protocol.clone()),
                truth_requests: app.requests,
                dpi_requests: label.map(|l| l.requests),
                truth_mean_response_ms: app.response_time.map(|r| r.mean_us as f64 / 1000.0),
                dpi_mean_response_ms: label.and_then(|l| l.mean_response_ms),
            }
        })
        .collect()
}

/// The label DPI should give an application of the workload.
fn protocol_name(app: &workload::AppTruth) -> String {
    use workload::{AppProtocol, Transport};
    match app.protocol {
        AppProtocol::Http => "http".into(),
        AppProtocol::Tls => "tls".into(),
        AppProtocol::Postgresql => "postgresql".into(),
        AppProtocol::Redis => "redis".into(),
        AppProtocol::Mysql => "mysql".into(),
        AppProtocol::Dns => "dns".into(),
        AppProtocol::Ntp => "ntp".into(),
        AppProtocol::Opaque => match app.transport {
            Transport::Tcp => format!("tcp/{}", app.server_port),
            Transport::Udp => format!("udp/{}", app.server_port),
        },
    }
}

#[cfg(test)]
mod sampling_tests {
    use super::chance_sampling_underestimates as chance;

    #[test]
    fn the_chance_that_sampling_shows_a_pair_below_the_threshold() {
        // 64 packets at 1 in 16: 4 samples expected, an estimate below half the truth needs
        // fewer than 2: P(X < 2) for a mean of 4 = 5 e^-4.
        let p = chance(64, 8000, 16, 4000);
        assert!((p - 5.0 * (-4.0f64).exp()).abs() < 1e-12, "{p}");
        // Far more samples: practically never.
        assert!(chance(6400, 800_000, 16, 4000) < 1e-12);
        // No traffic is no estimate at all; traffic under the threshold mostly looks so.
        assert_eq!(chance(0, 0, 16, 4000), 1.0);
        assert!(chance(100, 3000, 16, 4000) > 0.5);
    }
}

#[cfg(test)]
mod heard_tests {
    use super::*;

    #[test]
    fn conversations_are_heard_only_in_the_windows_their_pair_was_mirrored() {
        let (app, web, other) = (
            Ipv4Addr::new(10, 0, 122, 1),
            Ipv4Addr::new(10, 0, 121, 2),
            Ipv4Addr::new(10, 0, 121, 3),
        );
        let (request, answer) = (VmPair::new(app, web), VmPair::new(web, app));
        // app → web measured in windows 3 and 4 only.
        let covered = BTreeMap::from([(request, BTreeSet::from([3, 4]))]);
        let mut port_windows = PortWindows::new();
        // NTP (port 123) spoke in window 1 only; the API (8080) in windows 1 to 4; a DNS
        // answer (from port 53) came back web → app in window 4.
        port_windows.insert((request, 123), BTreeSet::from([1]));
        port_windows.insert((answer, 123), BTreeSet::from([1]));
        port_windows.insert((request, 8080), BTreeSet::from([1, 2, 3, 4]));
        port_windows.insert((answer, 53), BTreeSet::from([4]));
        let heard = ConversationsHeard {
            covered: &covered,
            same_server: BTreeSet::from([VmPair::new(web, other)]),
            port_windows: &port_windows,
        };
        assert!(!heard.heard(app, web, 123), "NTP spoke before the mirror");
        assert!(heard.heard(app, web, 8080));
        assert!(heard.heard(app, web, 53), "its answers crossed the mirror");
        assert!(!heard.heard(app, web, 443), "never spoke");
        // Same server: heard from the first frame, measured or not.
        assert!(heard.heard(other, web, 5432));
    }
}
