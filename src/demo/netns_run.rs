//! `vmdep demo --netns`: the demo on real parts, as root. The reference topology's VMs are
//! network namespaces behind Open vSwitch bridges ([`super::netns`]); the five `vmdep switch`es
//! run in this process on the lab's veths (AF_PACKET); the controller runs in this process too;
//! each bridge exports sFlow to it and mirrors the pairs it selects to the server's DPI module
//! through an OVS mirror; an agent per server (`agent`) speaks the host link for its bridge;
//! the workload's conversations run over the VMs' own kernel sockets (`replay`); and the
//! ground truth is what the VMs' interfaces received (`capture`).
//!
//! Windows are stepped as in [`super::emulated`]: the workload's clock stops at each window's
//! end, the run waits until every conversation is waiting for a later window and the VMs'
//! interfaces have been quiet for longer than a delayed ACK takes, waits for Open vSwitch's
//! once-a-second sFlow flush to reach the collector, then runs the controller's window and only
//! then counts later frames in the next window. An entry installed at the end of window `w`
//! therefore counts exactly the pair's frames captured in windows `w+1` onwards.
//!
//! Everything the lab made is removed when the run ends, fails or is dropped (the lab's own
//! `Drop`); the caller gets a [`LabCleanup`] for a Ctrl-C handler, and leftovers of crashed
//! runs are swept first ([`cleanup_dead_runs`]).
//!
//! It owns the run's order and its tasks; it builds nothing in the kernel itself (the lab
//! does) and reaches the controller only through its public service API, the host link and
//! sFlow, as a real deployment would.

mod agent;
mod capture;
mod replay;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::controller::paths::Paths;
use crate::controller::service::{self, WindowReport};
use crate::controller::topology::Topology;
use crate::controller::VmPair;
use crate::demo::workload::conversations::conversations;
use crate::demo::workload::{self, PairTruth, WorkloadSpec};
use crate::switch::ports::InterfacePort;

use super::emulated::DemoApi;
use super::emulated::{
    build_report, controller_options, entries_now, vmdep_pipeline, wait_ready, write_report,
    DemoError, DemoReport, Progress, ReportContext, SwitchEntries, TrafficTruth,
    REFERENCE_TOPOLOGY,
};
use super::fabric;
use super::netns::{cleanup_dead_runs, LabCleanup, LabError, LabOptions, NetnsLab};
use super::processes::children::{Child, Program};
use super::processes::{start_switch_processes, ProcessesError};
use crate::controller::session::PipelineBundle;

use agent::OvsAgent;
use capture::{DpiInterface, MirrorSink, VmCapture};
use replay::{Replay, ReplayClock};

/// No frame for this long means nothing is in flight: longer than Linux's longest delayed ACK
/// (200 ms).
const QUIET: Duration = Duration::from_millis(300);
/// How long a window may take to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);
/// Open vSwitch sends its buffered sFlow samples once a second.
const SFLOW_TICK: Duration = Duration::from_millis(1200);
/// Mirrored frames waiting for an agent's DPI.
const MIRROR_QUEUE: usize = 8192;

/// What the run over real parts saw besides the measurements.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetnsStats {
    /// The collector's statistics: Open vSwitch samples a cross-server packet at both
    /// servers, and the copies taken at the destination's server show as skipped `other_side`.
    pub collector: crate::controller::collector::CollectorStatsSnapshot,
    /// The lab's name prefix.
    pub prefix: String,
    /// Conversations replayed over the VMs' sockets.
    pub conversations: usize,
    /// UDP datagrams of the workload that did not arrive.
    pub lost_datagrams: u64,
    /// Connections or datagrams the servers got that no conversation expected.
    pub unexpected: u64,
    /// Frames the VMs received that were not IPv4 (the lab lets none through).
    pub non_ipv4_frames: u64,
    /// Mirrored frames the DPI modules had no room for.
    pub mirror_drops: u64,
    /// Frames the VMs' interfaces received that the capture (the truth) lost: the kernel
    /// dropped them before the capture's sockets could read them.
    pub capture_drops: u64,
    /// sFlow datagrams the bridges sent to the collector.
    pub sflow_datagrams: u64,
}

/// How to run the demo in the netns lab.
#[derive(Debug, Clone)]
pub struct NetnsDemoOptions {
    pub workload: WorkloadSpec,
    /// Workload time per controller window.
    pub window: Duration,
    /// The bridges sample 1 in N packets.
    pub sampling_rate: u32,
    /// Estimated bytes per window from which a pair is measured exactly.
    pub threshold_bytes: u64,
    /// Where graph.json, graph.dot and report.json go.
    pub out_dir: Option<PathBuf>,
    /// The lab's name prefix; None takes a unique default.
    pub prefix: Option<String>,
    /// Run the switches as this command on the lab's veths (bmv2's command-line shape, e.g.
    /// simple_switch_grpc), logs in `out_dir/logs`; None runs `vmdep switch`es in this process.
    pub switch_cmd: Option<Program>,
    /// The pipeline the controller pushes; None compiles the built-in vmdep.p4.
    pub pipeline: Option<PipelineBundle>,
    /// Serve the controller's HTTP API here during the run, with an in-memory history.
    pub http_listen: Option<std::net::SocketAddr>,
    /// Keep serving the API this long after the last window.
    pub linger: Duration,
}

impl Default for NetnsDemoOptions {
    /// The emulated demo's defaults.
    fn default() -> Self {
        let demo = super::emulated::DemoOptions::default();
        NetnsDemoOptions {
            workload: demo.workload,
            window: demo.window,
            sampling_rate: demo.sampling_rate,
            threshold_bytes: demo.threshold_bytes,
            out_dir: None,
            prefix: None,
            switch_cmd: None,
            pipeline: None,
            http_listen: None,
            linger: Duration::ZERO,
        }
    }
}

#[derive(Debug, Error)]
pub enum NetnsDemoError {
    #[error(transparent)]
    Demo(#[from] DemoError),
    #[error("the netns lab: {0}")]
    Lab(#[from] LabError),
    #[error("cannot read {interface}: {source}")]
    Capture {
        interface: String,
        source: std::io::Error,
    },
    #[error("the OVS agent of {server}: {problem}")]
    Agent { server: String, problem: String },
    #[error("the replay over the VMs' sockets failed:\n  {}", .0.join("\n  "))]
    Replay(Vec<String>),
    #[error(
        "window {window} did not settle within {SETTLE_LIMIT:?}: {busy} conversations busy, \
         last frame {quiet:?} ago"
    )]
    Unsettled {
        window: u64,
        busy: usize,
        quiet: Duration,
    },
    #[error("a blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("the switch processes: {0}")]
    Switches(Box<ProcessesError>),
    #[error("--switch-cmd needs an output directory for the switches' logs")]
    NoLogDir,
}

impl From<Box<service::ControllerError>> for NetnsDemoError {
    fn from(e: Box<service::ControllerError>) -> Self {
        NetnsDemoError::Demo(DemoError::Controller(e))
    }
}

/// Runs the demo in a new netns lab. `lab_ready` receives the lab's cleanup handle as soon as
/// the lab exists (for a Ctrl-C handler); the lab is removed before this returns.
pub async fn run(
    options: NetnsDemoOptions,
    lab_ready: impl FnOnce(LabCleanup),
    progress: impl FnMut(&Progress),
) -> Result<DemoReport, NetnsDemoError> {
    let started = Instant::now();
    let topology = Topology::from_toml(REFERENCE_TOPOLOGY).map_err(DemoError::from)?;
    let workload = workload::three_tier(&topology, options.workload).map_err(DemoError::from)?;
    let pipeline = match &options.pipeline {
        Some(pipeline) => pipeline.clone(),
        None => vmdep_pipeline()?,
    };
    if options.switch_cmd.is_some() && options.out_dir.is_none() {
        return Err(NetnsDemoError::NoLogDir);
    }
    let swept = tokio::task::spawn_blocking(cleanup_dead_runs).await??;
    for (prefix, removed) in swept {
        tracing::info!(prefix, ?removed, "removed the leftovers of a crashed run");
    }
    let lab_topology = topology.clone();
    let prefix = options.prefix.clone();
    let lab = tokio::task::spawn_blocking(move || {
        NetnsLab::create(
            &lab_topology,
            LabOptions {
                prefix,
                ..LabOptions::default()
            },
        )
    })
    .await??;
    let prefix = lab.prefix().to_string();
    lab_ready(lab.cleanup_handle());
    let lab = Arc::new(lab);
    let result = run_in_lab(&options, Arc::clone(&lab), &workload, pipeline, progress).await;
    // Every task holding the lab has ended by now, unless a failure left one being aborted:
    // then the lab is swept by its prefix at once (and its own drop finds nothing left).
    let removed = match Arc::try_unwrap(lab) {
        Ok(lab) => tokio::task::spawn_blocking(move || lab.destroy()).await?,
        Err(shared) => {
            let cleanup = shared.cleanup_handle();
            drop(shared);
            tokio::task::spawn_blocking(move || cleanup.run()).await?
        }
    };
    if let Err(e) = removed {
        tracing::warn!("removing the netns lab: {e}");
    }
    let mut report = result?;
    if let Some(stats) = &mut report.netns {
        stats.prefix = prefix;
    }
    if let Some(dir) = &options.out_dir {
        write_report(&mut report, dir)?;
    }
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The tasks reading the VMs' and DPI interfaces.
struct Readers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Readers {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Opens `interface` inside the VM `vm` (or the root namespace) and reads it into `sink`.
fn read_interface(
    lab: &NetnsLab,
    vm: Option<&str>,
    interface: &str,
    port: u32,
    sink: Arc<dyn crate::switch::ports::FrameSink>,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, NetnsDemoError> {
    let runtime = tokio::runtime::Handle::current();
    let name = interface.to_string();
    let open = move || {
        // Registering the socket with the reactor needs the runtime's context.
        let _entered = runtime.enter();
        InterfacePort::open(&name)
    };
    let opened = match vm {
        Some(vm) => lab.in_vm(vm, open)?,
        None => open(),
    };
    let port_reader = opened.map_err(|source| NetnsDemoError::Capture {
        interface: match vm {
            Some(vm) => format!("{interface} of {vm}"),
            None => interface.to_string(),
        },
        source,
    })?;
    Ok(tokio::spawn(port_reader.receive_loop(port, sink, stop)))
}

async fn run_in_lab(
    options: &NetnsDemoOptions,
    lab: Arc<NetnsLab>,
    workload: &workload::Workload,
    pipeline: crate::controller::session::PipelineBundle,
    mut progress: impl FnMut(&Progress),
) -> Result<DemoReport, NetnsDemoError> {
    let topology = lab.topology().clone();
    let ports = topology
        .switches()
        .iter()
        .map(|s| lab.switch_ports(&s.name))
        .collect::<Result<Vec<_>, _>>()?;
    let (switches, controller_topology) = match (&options.switch_cmd, &options.out_dir) {
        (Some(cmd), Some(dir)) => {
            let (children, topology) =
                start_switch_processes(cmd, true, &topology, ports, &dir.join("logs"))
                    .await
                    .map_err(|e| NetnsDemoError::Switches(Box::new(e)))?;
            (Switches::Processes(children), topology)
        }
        (Some(_), None) => return Err(NetnsDemoError::NoLogDir),
        (None, _) => {
            let (running, topology) = fabric::start_switches(&topology, ports)
                .await
                .map_err(DemoError::from)?;
            (Switches::InProcess(running), topology)
        }
    };
    let controller = service::start(controller_options(
        Arc::new(controller_topology),
        pipeline,
        options.threshold_bytes,
        options.out_dir.clone(),
    ))
    .await
    .map_err(Box::new);
    let controller = match controller {
        Ok(c) => c,
        Err(e) => {
            let _ = switches.stop().await;
            return Err(e.into());
        }
    };
    let api = match options.http_listen {
        Some(listen) => match DemoApi::serve(&controller, listen).await {
            Ok(api) => Some(api),
            Err(e) => {
                let _ = controller.shutdown().await;
                let _ = switches.stop().await;
                return Err(e.into());
            }
        },
        None => None,
    };
    let http_addr = api.as_ref().map(|api| api.addr);
    let mut progress = |p: &Progress| {
        progress(&Progress {
            http_addr,
            ..p.clone()
        })
    };
    let measured = measure(options, &lab, &controller, workload, &mut progress).await;
    // What the report counts ends with the last window: sFlow that keeps arriving while the
    // API lingers is not in it.
    let graph = controller.graph().snapshot();
    let collector = controller.collector_stats();
    if let Some(api) = api {
        api.linger_and_stop(options.linger).await;
    }
    let stopped = controller.shutdown().await.map_err(Box::new);
    if let Err(err) = switches.stop().await {
        tracing::warn!("{err}");
    }
    let (truth, reports, peak, mut stats) = measured?;
    stats.collector = collector;
    stopped?;
    let context = ReportContext {
        seed: options.workload.seed,
        workload: options.workload.duration,
        threshold_bytes: options.threshold_bytes,
        sampling_rate: options.sampling_rate,
    };
    let mut report = build_report(
        &context,
        &topology,
        &truth,
        &workload.truth,
        &reports,
        &graph,
        peak,
    );
    report.netns = Some(stats);
    Ok(report)
}

/// The fabric's switches: in this process, or processes of the user's command.
enum Switches {
    InProcess(Vec<crate::switch::runner::RunningSwitch>),
    Processes(Vec<Child>),
}

impl Switches {
    /// Stops every switch; says which failed to stop cleanly.
    async fn stop(self) -> Result<(), String> {
        let mut failures = Vec::new();
        match self {
            Switches::InProcess(running) => {
                for s in running {
                    if let Err(err) = s.shutdown().await {
                        failures.push(format!("a switch stopped with an error: {err}"));
                    }
                }
            }
            Switches::Processes(children) => {
                for child in children {
                    if let Err(err) = child.stop(Duration::from_secs(5)).await {
                        failures.push(err.to_string());
                    }
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("\n"))
        }
    }
}

/// The truth, the controller's window reports, the entries at the peak, the run's statistics.
type Measured = (
    TrafficTruth,
    Vec<WindowReport>,
    Vec<SwitchEntries>,
    NetnsStats,
);

/// Everything between a ready controller and its final window.
async fn measure(
    options: &NetnsDemoOptions,
    lab: &Arc<NetnsLab>,
    controller: &service::RunningController,
    workload: &workload::Workload,
    progress: &mut impl FnMut(&Progress),
) -> Result<Measured, NetnsDemoError> {
    let topology = lab.topology().clone();
    wait_ready(controller).await?;
    {
        let lab = Arc::clone(lab);
        let target = controller.sflow_addr;
        let rate = options.sampling_rate;
        tokio::task::spawn_blocking(move || lab.set_sflow(target, rate)).await??;
    }

    // The truth, and the servers' DPI interfaces.
    let (stop_readers, stop_rx) = watch::channel(false);
    let mut readers = Readers {
        stop: stop_readers,
        tasks: Vec::new(),
    };
    let capture = VmCapture::new();
    let dpi_epoch = Instant::now();
    let mut agents = Vec::new();
    let mut mirror_sinks = Vec::new();
    let opened = async {
        for (index, vm) in topology.vms().iter().enumerate() {
            let sink: Arc<dyn crate::switch::ports::FrameSink> = capture.clone();
            readers.tasks.push(read_interface(
                lab,
                Some(&vm.name),
                "eth0",
                index as u32,
                sink,
                stop_rx.clone(),
            )?);
        }
        for server in topology.servers() {
            let (frames_tx, frames_rx) = mpsc::channel(MIRROR_QUEUE);
            let sink = Arc::new(MirrorSink {
                frames: frames_tx,
                epoch: dpi_epoch,
                dropped: Default::default(),
            });
            mirror_sinks.push(Arc::clone(&sink));
            let interfaces = lab.server(&server.name)?;
            for (interface, via) in [
                (&interfaces.dpi, DpiInterface::Mirror),
                (&interfaces.local_dpi, DpiInterface::LocalCopy),
            ] {
                let sink: Arc<dyn crate::switch::ports::FrameSink> = sink.clone();
                readers.tasks.push(read_interface(
                    lab,
                    None,
                    interface,
                    via.port(),
                    sink,
                    stop_rx.clone(),
                )?);
            }
            agents.push(
                OvsAgent::start(
                    Arc::clone(lab),
                    server.name.clone(),
                    controller.hostlink_addr,
                    frames_rx,
                )
                .await?,
            );
        }
        Ok::<(), NetnsDemoError>(())
    }
    .await;
    let result = match opened {
        Ok(()) => {
            replay_windows(
                options, lab, controller, workload, &capture, &agents, progress,
            )
            .await
        }
        Err(e) => Err(e),
    };
    let mut agent_failure = None;
    for agent in agents {
        if let Err(e) = agent.stop().await {
            agent_failure.get_or_insert(e);
        }
    }
    readers.stop().await;
    let (reports, peak, mut stats) = result?;
    if let Some(e) = agent_failure {
        return Err(e);
    }
    stats.non_ipv4_frames = capture.non_ipv4_frames();
    stats.capture_drops = capture.kernel_drops();
    stats.mirror_drops = mirror_sinks
        .iter()
        .map(|s| s.dropped.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    stats.sflow_datagrams = lab.sflow_relayed();
    Ok((captured_truth(&topology, &capture), reports, peak, stats))
}

/// The windows: replay, settle, measure.
async fn replay_windows(
    options: &NetnsDemoOptions,
    lab: &Arc<NetnsLab>,
    controller: &service::RunningController,
    workload: &workload::Workload,
    capture: &Arc<VmCapture>,
    agents: &[OvsAgent],
    progress: &mut impl FnMut(&Progress),
) -> Result<(Vec<WindowReport>, Vec<SwitchEntries>, NetnsStats), NetnsDemoError> {
    let topology = lab.topology().clone();
    let paths = Paths::compute(&topology);
    let clock = ReplayClock::new();
    let all = conversations(&workload.frames);
    let mut replay = Replay::open(Arc::clone(lab), Arc::clone(&clock), &all).await?;
    let mut pending = all.into_iter().peekable();

    let windows = options
        .workload
        .duration
        .as_nanos()
        .div_ceil(options.window.as_nanos().max(1)) as u64;
    let mut reports = Vec::new();
    let mut peak = None;
    let mut peak_measured = 0;
    let mut failures = Vec::new();
    for w in 0..windows {
        let end = options.window * (w as u32 + 1);
        while let Some(c) = pending.next_if(|c| c.opened < end) {
            replay.start(c);
        }
        let reached = clock.run_window(end);
        tokio::time::sleep_until(reached).await;
        let sflow_before = lab.sflow_relayed();
        let (settled, ()) = tokio::join!(
            settle(&clock, capture, w + 1),
            settle_sflow(lab, controller, sflow_before)
        );
        settled?;
        failures.extend(replay.take_failures());
        let report = controller.step_window().await;
        capture.set_window(w as usize + 1);
        progress(&Progress {
            window: w + 1,
            windows,
            // The kernels make the frames: what the VMs received so far.
            frames_sent: capture.frames(),
            samples: report.samples,
            selected: report.selected.len(),
            released: report.released.len() + report.idle.len(),
            measured: report.measured,
            // Set by `run` when the API is served.
            http_addr: None,
        });
        if report.measured >= peak_measured {
            peak_measured = report.measured;
            peak = Some(entries_now(controller, &topology, &paths).await);
        }
        reports.push(report);
    }
    let stats = NetnsStats {
        conversations: replay.started,
        lost_datagrams: replay.lost_datagrams(),
        unexpected: replay.strays(),
        ..NetnsStats::default()
    };
    failures.extend(replay.finish().await);
    if !failures.is_empty() {
        return Err(NetnsDemoError::Replay(failures));
    }
    // Last counter reads, last local counts and labels.
    for agent in agents {
        agent.report_now().await?;
    }
    // The controller takes the last messages off its sockets.
    tokio::time::sleep(Duration::from_millis(100)).await;
    reports.push(controller.step_window().await);
    Ok((reports, peak.unwrap_or_default(), stats))
}

/// Waits until no conversation acts in this window and the VMs' interfaces are quiet.
async fn settle(
    clock: &ReplayClock,
    capture: &VmCapture,
    window: u64,
) -> Result<(), NetnsDemoError> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        if clock.busy() == 0 && capture.quiet_for() >= QUIET {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(NetnsDemoError::Unsettled {
                window,
                busy: clock.busy(),
                quiet: capture.quiet_for(),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for Open vSwitch's next sFlow flush (it sends what it buffered once a second, so
/// within [`SFLOW_TICK`] either datagrams pass the relay or nothing was buffered), then until
/// the collector has every datagram relayed.
async fn settle_sflow(lab: &NetnsLab, controller: &service::RunningController, before: u64) {
    let deadline = Instant::now() + SFLOW_TICK;
    while lab.sflow_relayed() == before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The other bridges flush in the same tick.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while controller.collector_stats().datagrams < lab.sflow_relayed() && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The collector hands batches over a channel; let it pass the last ones on.
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// The capture as the report's truth.
fn captured_truth(topology: &Topology, capture: &VmCapture) -> TrafficTruth {
    let per_window = capture.per_window();
    let mut pairs: Vec<(PairTruth, (usize, usize))> = Vec::new();
    for (pair, windows) in &per_window {
        let (Some(src), Some(dst)) = (topology.vm_by_ipv4(pair.src), topology.vm_by_ipv4(pair.dst))
        else {
            continue;
        };
        let (packets, bytes) = windows.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let (s, d) = (topology.vm(src), topology.vm(dst));
        pairs.push((
            PairTruth {
                src: s.name.clone(),
                dst: d.name.clone(),
                src_ipv4: s.ipv4,
                dst_ipv4: d.ipv4,
                same_server: s.server == d.server,
                packets,
                bytes,
            },
            (src.0, dst.0),
        ));
    }
    pairs.sort_by_key(|(_, order)| *order);
    let per_window: BTreeMap<VmPair, BTreeMap<usize, (u64, u64)>> = per_window;
    TrafficTruth {
        pairs: pairs.into_iter().map(|(p, _)| p).collect(),
        per_window,
        port_windows: capture.port_windows(),
        frames: capture.frames(),
    }
}
