//! `vmdep demo --processes`: the emulated demo with every part in its own process, talking
//! over loopback as separate machines would. The demo starts five switches (`vmdep switch`,
//! or the user's `--switch-cmd` in bmv2's command-line shape), the controller (`vmdep
//! controller`, windows closed by SIGUSR2) and four servers (`vmdep host`, its VMs' ports as
//! UDP wires), all cabled with UDP wires; it is itself the VMs (the far ends of the hosts'
//! `--vm` wires) and the keeper of the ground truth.
//!
//! Windows are stepped as in [`super::emulated`], across processes: the demo replays a
//! window's frames into the VM wires, waits until every frame has come out at its
//! destination VM and the hosts' sFlow datagrams have reached the collector (its statistics in
//! `/api/collector` stop growing), then sends the controller SIGUSR2 and waits until
//! `/api/windows/last` shows the window. A counting entry installed at the end of window `w`
//! therefore counts exactly the pair's frames of windows `w+1` onwards, and the report
//! (`emulated::build_report`) checks exactly that, from the controller's own window
//! reports and graph read over its HTTP API.
//!
//! Every child's output is in `OUT/logs/NAME.log`; every wait is bounded and names the child
//! that did not answer; the children are stopped at the end, killed if the run fails or is
//! dropped (Ctrl-C), and die with the demo if it is killed ([`children`]).
//!
//! It reaches the other parts only through their command lines, sFlow, UDP wires and the
//! controller's HTTP API, never through their Rust types, except the shared topology and
//! report types.

pub mod api_client;
pub mod children;
mod wire_replay;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use thiserror::Error;
use tokio::net::UdpSocket;

use crate::controller::graph::GraphSnapshot;
use crate::controller::paths::{PairPath, Paths};
use crate::controller::placement::{empty_budgets, PlacementProblem, PlacementReport};
use crate::controller::service::{unix_ms, SwitchReport, WindowReport};
use crate::controller::topology::{ServerId, Topology, TopologyError};
use crate::controller::VmPair;
use crate::host::{UdpWire, DPI_TICK, FLUSH_INTERVAL};
use crate::switch::ports::{PortBackend, PortSpec};

use super::emulated::{
    build_report, entries_of, switches_waiting, write_report, DemoError, DemoOptions, DemoReport,
    Progress, ReportContext, SwitchEntries, TrafficTruth, REFERENCE_TOPOLOGY,
};
use super::fabric::{self, FabricError};
use super::workload::{self, Workload};

use api_client::{ApiClient, ApiClientError};
use children::{Child, ChildError, Program};
use wire_replay::{VmEnd, WireReplay};

/// How long a child may take to start and open its addresses.
const START_LIMIT: Duration = Duration::from_secs(20);
/// How long a child may take to stop on SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long the controller may take to run a window.
const WINDOW_LIMIT: Duration = Duration::from_secs(20);
/// How long the frames of a window may take to arrive.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
/// How often the hosts send their exact same-server counts.
const REPORT_INTERVAL: Duration = Duration::from_millis(200);
/// How often the demo polls the API.
const POLL: Duration = Duration::from_millis(10);

/// How to run the demo as processes.
#[derive(Debug, Clone)]
pub struct ProcessesOptions {
    /// The demo's settings; `out_dir` is required (logs and the topology file go there).
    pub demo: DemoOptions,
    /// The vmdep binary the controller, hosts and (by default) switches run.
    pub vmdep: PathBuf,
    /// The switches' command, in bmv2's command-line shape; default `VMDEP switch`.
    pub switch_cmd: Option<Program>,
    /// A compiled pipeline for the controller to push (`--pipeline PREFIX`); default the
    /// built-in vmdep.p4.
    pub pipeline: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum ProcessesError {
    #[error(transparent)]
    Demo(#[from] DemoError),
    #[error(transparent)]
    Child(#[from] ChildError),
    #[error("the controller's API: {0}")]
    Api(#[from] ApiClientError),
    #[error("--processes needs an output directory for the children's logs")]
    NoOutDir,
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the controller printed an address line this demo cannot read: {0:?}")]
    AddressLine(String),
    #[error("cannot open the wire of VM {vm}: {source}")]
    VmWire { vm: String, source: std::io::Error },
    #[error("the switches did not become ready within {0:?}: {1}")]
    NotReady(Duration, String),
    #[error("servers not connected to the controller within {0:?}: {1}")]
    HostsNotConnected(Duration, String),
    #[error("servers whose last counts and labels did not reach the controller within {0:?}: {1}")]
    HostsSilent(Duration, String),
    #[error("the controller did not report window {window} within {waited:?}")]
    WindowMissing { window: u64, waited: Duration },
    #[error(
        "{lost} frames did not arrive within {waited:?} ({misdelivered} reached the wrong VM); \
         see the logs in {logs}"
    )]
    FramesLost {
        lost: u64,
        misdelivered: u64,
        waited: Duration,
        logs: PathBuf,
    },
    #[error("{0}")]
    Stop(String),
}

impl From<FabricError> for ProcessesError {
    fn from(e: FabricError) -> Self {
        ProcessesError::Demo(DemoError::Fabric(e))
    }
}

impl From<TopologyError> for ProcessesError {
    fn from(e: TopologyError) -> Self {
        ProcessesError::Demo(DemoError::Topology(e))
    }
}

/// The children, stopped in reverse order of their roles: servers, controller, switches.
#[derive(Default)]
struct Children {
    switches: Vec<Child>,
    controller: Option<Child>,
    hosts: Vec<Child>,
}

impl Children {
    /// Stops everything; the first failure is returned after all have been stopped.
    async fn stop(self) -> Result<(), ProcessesError> {
        let mut failures = Vec::new();
        let all = self
            .hosts
            .into_iter()
            .chain(self.controller)
            .chain(self.switches);
        for child in all {
            if let Err(e) = child.stop(STOP_GRACE).await {
                failures.push(e.to_string());
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ProcessesError::Stop(failures.join("\n")))
        }
    }

    /// Fails if any child has exited.
    fn ensure_running(&mut self) -> Result<(), ProcessesError> {
        for child in self
            .switches
            .iter_mut()
            .chain(self.controller.as_mut())
            .chain(self.hosts.iter_mut())
        {
            child.ensure_running()?;
        }
        Ok(())
    }
}

/// `PORT@WHERE` as `-i` takes it.
fn port_arg(spec: &PortSpec) -> String {
    match &spec.backend {
        PortBackend::Udp { local, peer } => format!("{}@udp:{local}={peer}", spec.port),
        PortBackend::Interface { name } => format!("{}@{name}", spec.port),
    }
}

/// Starts one switch process per topology switch in bmv2's command-line shape, on the given
/// ports, gRPC on reserved loopback addresses, and waits until each accepts connections.
/// Returns them with the topology carrying their P4Runtime addresses. `external` says the
/// command is the user's (a bmv2): then each also gets its own `--thrift-port`.
pub(super) async fn start_switch_processes(
    program: &Program,
    external: bool,
    topology: &Topology,
    ports: Vec<Vec<PortSpec>>,
    log_dir: &Path,
) -> Result<(Vec<Child>, Topology), ProcessesError> {
    let grpc = fabric::reserve_tcp(topology.switches().len())?;
    let mut switches = Vec::new();
    for ((sw, ports), grpc) in topology.switches().iter().zip(ports).zip(&grpc) {
        let mut args = vec!["--device-id".to_string(), sw.device_id.to_string()];
        if external {
            args.extend(["--thrift-port".to_string(), free_port_number()?.to_string()]);
        }
        for spec in &ports {
            args.extend(["-i".to_string(), port_arg(spec)]);
        }
        args.extend([
            "--no-p4".to_string(),
            "--".to_string(),
            "--grpc-server-addr".to_string(),
            grpc.to_string(),
        ]);
        switches.push(Child::spawn(&sw.name, program, &args, log_dir)?);
    }
    for (child, grpc) in switches.iter_mut().zip(&grpc) {
        child.wait_tcp(*grpc, START_LIMIT).await?;
    }
    let mut file = topology.to_file_format();
    for (entry, grpc) in file.switches.iter_mut().zip(&grpc) {
        entry.p4runtime = *grpc;
    }
    Ok((switches, Topology::from_file_format(file)?))
}

/// A TCP port number free on loopback now, for a bmv2's Thrift server (it binds all
/// addresses, so a per-block loopback address does not help).
fn free_port_number() -> Result<u16, ProcessesError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| ProcessesError::Demo(DemoError::Fabric(FabricError::Reserve(source))))
}

/// The controller's addresses, from its announcement line.
struct ControllerAddrs {
    sflow: SocketAddr,
    hostlink: SocketAddr,
    http: SocketAddr,
}

/// Reads `vmdep controller: sFlow on udp A, host link on tcp B, HTTP on http://C, graph in D`.
fn parse_controller_line(line: &str) -> Result<ControllerAddrs, ProcessesError> {
    let bad = || ProcessesError::AddressLine(line.to_string());
    let after = |marker: &str| -> Result<SocketAddr, ProcessesError> {
        let rest = &line[line.find(marker).ok_or_else(bad)? + marker.len()..];
        let end = rest.find(',').unwrap_or(rest.len());
        rest[..end].trim().parse().map_err(|_| bad())
    };
    Ok(ControllerAddrs {
        sflow: after("sFlow on udp ")?,
        hostlink: after("host link on tcp ")?,
        http: after("HTTP on http://")?,
    })
}

/// Runs the demo with every part in its own process.
pub async fn run(
    options: ProcessesOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<DemoReport, ProcessesError> {
    let started = Instant::now();
    let demo = &options.demo;
    let out_dir = demo.out_dir.clone().ok_or(ProcessesError::NoOutDir)?;
    let log_dir = out_dir.join("logs");
    let topology = Topology::from_toml(REFERENCE_TOPOLOGY)?;
    let workload = workload::three_tier(&topology, demo.workload).map_err(DemoError::from)?;

    let mut children = Children::default();
    let result = run_children(
        &options,
        &topology,
        &workload,
        &out_dir,
        &log_dir,
        &mut children,
        &mut progress,
    )
    .await;
    match result {
        Ok((reports, graph, peak, placement)) => {
            // Servers first, then the controller, which writes graph.json and graph.dot as it
            // stops, then the switches.
            children.stop().await?;
            let truth = TrafficTruth::from_workload(&topology, &workload, demo.window);
            let mut report = build_report(
                &ReportContext::of(demo),
                &topology,
                &truth,
                &workload.truth,
                &reports,
                &graph,
                peak,
            );
            report.placement = placement;
            report.files = vec![out_dir.join("topology.toml"), log_dir];
            write_report(&mut report, &out_dir)?;
            report.elapsed_seconds = started.elapsed().as_secs_f64();
            Ok(report)
        }
        Err(e) => {
            // The children's own exits are secondary to the failure; dropping kills them.
            drop(children);
            Err(e)
        }
    }
}

/// What the run measured: the window reports, the graph, the entries and placement at the peak.
type Measured = (
    Vec<WindowReport>,
    GraphSnapshot,
    Vec<SwitchEntries>,
    Option<PlacementReport>,
);

async fn run_children(
    options: &ProcessesOptions,
    topology: &Topology,
    workload: &Workload,
    out_dir: &Path,
    log_dir: &Path,
    children: &mut Children,
    progress: &mut impl FnMut(&Progress),
) -> Result<Measured, ProcessesError> {
    let demo = &options.demo;
    let vmdep = Program {
        program: options.vmdep.display().to_string(),
        args: Vec::new(),
    };
    let plan = fabric::plan_wires(topology)?;

    // Switches.
    let (switch_program, external) = match &options.switch_cmd {
        Some(cmd) => (cmd.clone(), true),
        None => (
            Program {
                program: vmdep.program.clone(),
                args: vec!["switch".into()],
            },
            false,
        ),
    };
    let (switches, topology_with_grpc) =
        start_switch_processes(&switch_program, external, topology, plan.ports, log_dir).await?;
    children.switches = switches;
    let topology_file = out_dir.join("topology.toml");
    let text = toml::to_string(&topology_with_grpc.to_file_format()).map_err(|e| {
        ProcessesError::Write {
            path: topology_file.clone(),
            source: std::io::Error::other(e),
        }
    })?;
    std::fs::write(&topology_file, text).map_err(|source| ProcessesError::Write {
        path: topology_file.clone(),
        source,
    })?;

    // The controller.
    let http_listen = demo
        .http_listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut args: Vec<String> = [
        "controller",
        "--topology",
        &topology_file.display().to_string(),
        "--sflow-listen",
        "127.0.0.1:0",
        "--hostlink-listen",
        "127.0.0.1:0",
        "--http-listen",
        &http_listen.to_string(),
        "--window-trigger",
        "sigusr2",
        "--threshold",
        &demo.threshold_bytes.to_string(),
        "--no-history",
        "-o",
        &out_dir.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(prefix) = &options.pipeline {
        args.extend(["--pipeline".to_string(), prefix.display().to_string()]);
    }
    let mut controller = Child::spawn("controller", &vmdep, &args, log_dir)?;
    let line = controller
        .wait_line("vmdep controller: sFlow on", START_LIMIT)
        .await;
    children.controller = Some(controller);
    let addrs = parse_controller_line(&line?)?;
    let api = ApiClient { addr: addrs.http };
    wait_switches_ready(&api, children).await?;

    // The servers, and the demo's ends of their VM wires.
    let vm_count = topology.vms().len();
    let vm_ends = fabric::reserve_udp(2 * vm_count)?;
    let mut vm_sockets: Vec<Option<Arc<UdpSocket>>> = vec![None; vm_count];
    for (i, server) in topology.servers().iter().enumerate() {
        let uplink = plan.uplinks[i];
        let mut args: Vec<String> = vec![
            "host".into(),
            "--topology".into(),
            topology_file.display().to_string(),
            "--server".into(),
            server.name.clone(),
            "--uplink".into(),
            UdpWire {
                local: uplink.host,
                peer: uplink.switch,
            }
            .to_string(),
            "--collector".into(),
            addrs.sflow.to_string(),
            "--controller".into(),
            addrs.hostlink.to_string(),
            "--sampling-rate".into(),
            demo.sampling_rate.to_string(),
            "--report-interval".into(),
            REPORT_INTERVAL.as_secs_f64().to_string(),
            "--seed".into(),
            (demo.workload.seed ^ (i as u64 + 1)).to_string(),
        ];
        for &vm in topology.vms_of_server(ServerId(i)) {
            let (host_end, demo_end) = (vm_ends[2 * vm.0], vm_ends[2 * vm.0 + 1]);
            let name = topology.vm(vm).name.clone();
            args.extend([
                "--vm".to_string(),
                format!(
                    "{name}={}",
                    UdpWire {
                        local: host_end,
                        peer: demo_end
                    }
                ),
            ]);
            let socket = UdpWire {
                local: demo_end,
                peer: host_end,
            }
            .open()
            .map_err(|source| ProcessesError::VmWire {
                vm: name.clone(),
                source,
            })?;
            vm_sockets[vm.0] = Some(Arc::new(socket));
        }
        children
            .hosts
            .push(Child::spawn(&server.name, &vmdep, &args, log_dir)?);
    }
    for host in &mut children.hosts {
        let prefix = format!("vmdep host {}:", host.name());
        host.wait_line(&prefix, START_LIMIT).await?;
    }
    wait_hosts_connected(&api, topology, children).await?;

    let ends: Vec<VmEnd> = vm_sockets
        .into_iter()
        .zip(topology.vms())
        .map(|(s, vm)| {
            s.map(|socket| VmEnd {
                name: vm.name.clone(),
                ipv4: vm.ipv4,
                socket,
            })
            .ok_or_else(|| ProcessesError::VmWire {
                vm: vm.name.clone(),
                source: std::io::Error::other("its server has no wire for it"),
            })
        })
        .collect::<Result<_, _>>()?;
    let mut replay = WireReplay::start(ends, demo.max_in_flight, log_dir.to_path_buf());
    let measured = replay_windows(
        options,
        topology,
        workload,
        &api,
        children,
        &mut replay,
        addrs.http,
        progress,
    )
    .await;
    replay.stop().await;
    measured
}

/// Waits until every switch session is ready with its routes installed.
async fn wait_switches_ready(
    api: &ApiClient,
    children: &mut Children,
) -> Result<(), ProcessesError> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        children.ensure_running()?;
        let switches: Vec<SwitchReport> = api.get("/api/switches").await?;
        let waiting = switches_waiting(&switches);
        if !switches.is_empty() && waiting.is_none() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let waiting = waiting.unwrap_or_else(|| "every switch (none reported)".into());
            return Err(ProcessesError::NotReady(START_LIMIT, waiting));
        }
        tokio::time::sleep(POLL * 2).await;
    }
}

/// What the demo reads of `/api/hosts`.
#[derive(Deserialize)]
struct HostView {
    server: String,
    connected: bool,
    last_message_ms: u64,
}

async fn hosts(api: &ApiClient) -> Result<Vec<HostView>, ProcessesError> {
    Ok(api.get("/api/hosts").await?)
}

/// Waits until every server's host link is up.
async fn wait_hosts_connected(
    api: &ApiClient,
    topology: &Topology,
    children: &mut Children,
) -> Result<(), ProcessesError> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        children.ensure_running()?;
        let hosts = hosts(api).await?;
        let missing: Vec<String> = topology
            .servers()
            .iter()
            .filter(|s| !hosts.iter().any(|h| h.server == s.name && h.connected))
            .map(|s| s.name.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(ProcessesError::HostsNotConnected(
                START_LIMIT,
                missing.join(", "),
            ));
        }
        tokio::time::sleep(POLL * 2).await;
    }
}

#[derive(Deserialize)]
struct PlacementView {
    pair: VmPair,
}

/// The windows: replay, settle, let the controller measure.
#[allow(clippy::too_many_arguments)]
async fn replay_windows(
    options: &ProcessesOptions,
    topology: &Topology,
    workload: &Workload,
    api: &ApiClient,
    children: &mut Children,
    replay: &mut WireReplay,
    http_addr: SocketAddr,
    progress: &mut impl FnMut(&Progress),
) -> Result<Measured, ProcessesError> {
    let demo = &options.demo;
    let paths = Paths::compute(topology);
    let windows = demo
        .workload
        .duration
        .as_nanos()
        .div_ceil(demo.window.as_nanos().max(1)) as u64;
    let mut reports = Vec::new();
    let mut peak = None;
    let mut peak_measured = 0;
    let mut placement = None;
    let mut next = 0;
    for w in 0..windows {
        let end = demo.window * (w as u32 + 1);
        let window_started = Instant::now();
        while next < workload.frames.len() && workload.frames[next].at < end {
            let frame = &workload.frames[next];
            if demo.real_time {
                let due = frame.at.saturating_sub(demo.window * w as u32);
                let now = window_started.elapsed();
                if due > now {
                    tokio::time::sleep(due - now).await;
                }
            }
            replay
                .send(frame.src_vm.0, frame.dst_vm.0, &frame.frame)
                .await?;
            next += 1;
        }
        replay.settle(SETTLE_LIMIT).await?;
        settle_sflow(api).await?;
        let report = step_window(api, children, w + 1).await?;
        progress(&Progress {
            window: w + 1,
            windows,
            frames_sent: replay.sent,
            samples: report.samples,
            selected: report.selected.len(),
            released: report.released.len() + report.idle.len(),
            measured: report.measured,
            http_addr: Some(http_addr),
        });
        if report.measured >= peak_measured {
            peak_measured = report.measured;
            let switches: Vec<SwitchReport> = api.get("/api/switches").await?;
            let placed: Vec<PlacementView> = api.get("/api/placements").await?;
            let pairs: Vec<VmPair> = placed.into_iter().map(|p| p.pair).collect();
            peak = Some(entries_of(topology, &paths, &switches, pairs.iter()));
            placement = placement_report(topology, &paths, &pairs);
        }
        reports.push(report);
    }

    // Last counter reads, last local counts and labels: each server's DPI module publishes
    // within a tick of the last frame, its host link sends counts every report interval; a
    // message received after both carries everything.
    let settled_ms = unix_ms();
    let wanted = settled_ms + (DPI_TICK + REPORT_INTERVAL * 2).as_millis() as u64;
    let deadline = Instant::now() + START_LIMIT;
    loop {
        children.ensure_running()?;
        let hosts = hosts(api).await?;
        if hosts.iter().all(|h| h.last_message_ms >= wanted) {
            break;
        }
        if Instant::now() > deadline {
            let late: Vec<String> = hosts
                .iter()
                .filter(|h| h.last_message_ms < wanted)
                .map(|h| h.server.clone())
                .collect();
            return Err(ProcessesError::HostsSilent(START_LIMIT, late.join(", ")));
        }
        tokio::time::sleep(POLL * 5).await;
    }
    reports.push(step_window(api, children, windows + 1).await?);
    if !demo.linger.is_zero() {
        tokio::time::sleep(demo.linger).await;
    }
    let graph: GraphSnapshot = api.get("/api/graph").await?;
    Ok((reports, graph, peak.unwrap_or_default(), placement))
}

/// The measured pairs placed three ways, as the in-process controller reports it.
fn placement_report(
    topology: &Topology,
    paths: &Paths,
    pairs: &[VmPair],
) -> Option<PlacementReport> {
    let pairs = pairs
        .iter()
        .filter_map(|&pair| {
            let path = paths.pair_path(topology, pair).ok()?;
            Some(PairPath { pair, path })
        })
        .collect();
    PlacementProblem::new(empty_budgets(topology), pairs)
        .ok()
        .map(|p| p.report())
}

/// Closes the controller's window `index` (SIGUSR2) and waits for its report.
async fn step_window(
    api: &ApiClient,
    children: &mut Children,
    index: u64,
) -> Result<WindowReport, ProcessesError> {
    if let Some(controller) = children.controller.as_mut() {
        controller.signal(libc::SIGUSR2)?;
    }
    let deadline = Instant::now() + WINDOW_LIMIT;
    loop {
        match api.get::<WindowReport>("/api/windows/last").await {
            Ok(report) if report.index >= index => return Ok(report),
            Ok(_) => {}
            // 404 before the first window.
            Err(ApiClientError {
                status: Some(404), ..
            }) => {}
            Err(e) => return Err(e.into()),
        }
        children.ensure_running()?;
        if Instant::now() > deadline {
            return Err(ProcessesError::WindowMissing {
                window: index,
                waited: WINDOW_LIMIT,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[derive(Deserialize)]
struct CollectorView {
    stats: CollectorCounts,
}

#[derive(Deserialize)]
struct CollectorCounts {
    datagrams: u64,
}

/// Waits for the hosts' next sFlow flush, then until the collector's datagram count stops
/// growing: the window's samples are then in the controller.
async fn settle_sflow(api: &ApiClient) -> Result<(), ProcessesError> {
    tokio::time::sleep(FLUSH_INTERVAL + Duration::from_millis(30)).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last: CollectorView = api.get("/api/collector").await?;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now: CollectorView = api.get("/api/collector").await?;
        if now.stats.datagrams == last.stats.datagrams || Instant::now() > deadline {
            // The collector hands batches over a channel; let it pass the last ones on.
            tokio::time::sleep(POLL).await;
            return Ok(());
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_controllers_address_line() {
        let addrs = parse_controller_line(
            "vmdep controller: sFlow on udp 127.0.0.1:41000, host link on tcp 127.0.0.1:41001, \
             HTTP on http://127.0.0.1:41002, graph in out",
        )
        .unwrap();
        assert_eq!(addrs.sflow, "127.0.0.1:41000".parse().unwrap());
        assert_eq!(addrs.hostlink, "127.0.0.1:41001".parse().unwrap());
        assert_eq!(addrs.http, "127.0.0.1:41002".parse().unwrap());
        assert!(parse_controller_line("vmdep controller: sFlow on udp nowhere").is_err());
    }

    #[test]
    fn ports_are_written_as_switches_take_them() {
        let udp = PortSpec {
            port: 2,
            backend: PortBackend::Udp {
                local: "127.64.0.1:20000".parse().unwrap(),
                peer: "127.64.0.1:20001".parse().unwrap(),
            },
        };
        assert_eq!(port_arg(&udp), "2@udp:127.64.0.1:20000=127.64.0.1:20001");
        let veth = PortSpec {
            port: 1,
            backend: PortBackend::Interface {
                name: "vd1-s110p1".into(),
            },
        };
        assert_eq!(port_arg(&veth), "1@vd1-s110p1");
        assert_eq!(port_arg(&udp).parse::<PortSpec>().unwrap(), udp);
    }
}
