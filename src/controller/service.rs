//! The running controller: the tasks (sFlow collector, host-link server, one P4Runtime session
//! per switch, the window timer) and the measurement loop that ties the algorithmic modules
//! together once per window:
//!
//! 1. drain the window's sFlow samples (collector) and the switches' idle-timeout notices;
//! 2. read every switch's `vm_pair` counters (sessions) into the graph;
//! 3. pre-analysis ([`super::estimate`]) picks pairs to measure and pairs to release;
//! 4. released pairs: final read, delete, slot freed; selected pairs: placed on the
//!    least-loaded switch of their path ([`super::placement`]), inserted, and on
//!    `RESOURCE_EXHAUSTED` moved to the next switch; pairs that fit nowhere are reported;
//! 5. the mirror set (pairs worth DPI) goes to the servers over the host link.
//!
//! It reaches switches only through [`super::session`] and servers only through
//! [`crate::hostlink`] and sFlow; the loop can run on a timer (`vmdep controller`) or be stepped
//! by a caller that controls time (`vmdep demo`). Readers (the HTTP API, the history recorder)
//! hold a [`ControllerView`] and may subscribe to every window's [`WindowRecord`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::hostlink::{self, ControllerMessage, HostMessage, PairAddrs};

use super::collector::{
    self, CollectedSamples, CollectorStats, CollectorStatsSnapshot, CounterTable,
};
use super::estimate::{PairSamples, PairSelector, SelectionPolicy, WindowSamples};
use super::graph::{DependencyGraph, GraphError, GraphSnapshot};
use super::paths::PairPath;
use super::paths::{Paths, RouteTables};
use super::placement::{
    empty_budgets, GreedyPlacer, Load, PlaceError, PlacementProblem, PlacementReport, ProblemError,
    SwitchBudget,
};
use super::session::{
    PipelineBundle, SessionConfig, SessionError, SessionEvent, SessionStatus, SwitchSession,
    WriteJournal,
};
use super::topology::{ServerId, SwitchId, Topology};
use super::VmPair;

/// How to run the controller.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    pub topology: Arc<Topology>,
    pub pipeline: Arc<PipelineBundle>,
    /// sFlow v5 collector (UDP).
    pub sflow_listen: SocketAddr,
    /// Host-link server (TCP, [`crate::hostlink`]).
    pub hostlink_listen: SocketAddr,
    /// The window length; `None` when the caller steps windows ([`RunningController::step_window`]).
    pub window: Option<Duration>,
    pub policy: SelectionPolicy,
    /// Idle timeout of `vm_pair` entries: the switch reports a pair quiet for this long.
    pub idle_timeout: Option<Duration>,
    pub election_id: u128,
    /// Updates per P4Runtime WriteRequest.
    pub max_batch: usize,
    /// Where graph.json and graph.dot are written on exit (and on request).
    pub output_dir: Option<PathBuf>,
    /// Records every WriteRequest sent, per switch (snapshot tests).
    pub journal: bool,
}

impl ControllerOptions {
    pub fn new(topology: Arc<Topology>, pipeline: Arc<PipelineBundle>) -> ControllerOptions {
        ControllerOptions {
            topology,
            pipeline,
            sflow_listen: SocketAddr::from(([127, 0, 0, 1], 6343)),
            hostlink_listen: SocketAddr::from(([127, 0, 0, 1], hostlink::DEFAULT_PORT)),
            window: Some(Duration::from_secs(2)),
            policy: SelectionPolicy {
                metric: super::estimate::Metric::Bytes,
                threshold: 10_000,
                top_k: 0,
                entry_budget: 16_384,
                idle_windows: 5,
            },
            idle_timeout: Some(Duration::from_secs(30)),
            election_id: 1,
            max_batch: 1000,
            output_dir: None,
            journal: false,
        }
    }
}

#[derive(Debug, Error)]
pub enum ControllerError {
    #[error("cannot listen for sFlow on {addr}: {source}")]
    SflowListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for the host link on {addr}: {source}")]
    HostlinkListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write the graph to {path}: {source}")]
    WriteGraph { path: PathBuf, source: GraphError },
    #[error("cannot start the session of switch {switch}: {source}")]
    Session {
        switch: String,
        source: Box<SessionError>,
    },
}

/// Where a measured pair is counted, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairPlacement {
    pub pair: VmPair,
    pub switch: String,
}

/// A pair's sampled estimate in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairEstimate {
    pub pair: VmPair,
    #[serde(flatten)]
    pub samples: PairSamples,
    /// sFlow's 95 % bound on the packet estimate's error, in percent.
    pub error_percent: Option<f64>,
}

/// What one window did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WindowReport {
    pub index: u64,
    pub at_ms: u64,
    /// Pair samples taken into this window's estimates.
    pub samples: u64,
    pub sampled_pairs: usize,
    /// The window's estimate of every sampled pair, in pair order.
    pub estimates: Vec<PairEstimate>,
    pub selected: Vec<PairPlacement>,
    pub released: Vec<VmPair>,
    /// Pairs whose entry a switch reported idle.
    pub idle: Vec<VmPair>,
    pub deferred: Vec<VmPair>,
    /// Selected pairs that no switch of their path could take.
    pub unplaced: Vec<VmPair>,
    /// Switch-side failures, one line each (a session down, a refused write).
    pub errors: Vec<String>,
    pub measured: usize,
}

impl WindowReport {
    /// One info line per closed window, whatever closed it (the timer or SIGUSR2).
    pub fn log(&self) {
        tracing::info!(
            window = self.index,
            samples = self.samples,
            selected = self.selected.len(),
            released = self.released.len(),
            measured = self.measured,
            "window"
        );
    }
}

/// A switch as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwitchReport {
    pub name: String,
    pub device_id: u16,
    pub entries: u32,
    pub capacity: u32,
    pub load: f64,
    /// The P4Runtime session is open, primary and its pipeline pushed.
    pub ready: bool,
    /// `ipv4_lpm` entries the session holds on the switch.
    pub routes: usize,
    pub reconnections: u64,
    pub last_error: Option<String>,
}

/// A server connected over the host link.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostReport {
    pub connected: bool,
    pub messages: u64,
    /// Pair counts or labels refused (a pair not on this server, a repeated hello, a bad line).
    pub rejected: u64,
    /// Labels left to the client's own server.
    pub ignored_labels: u64,
    pub last_message_ms: u64,
}

/// Sums over every window since the start (the /metrics counters).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WindowTotals {
    pub windows: u64,
    pub samples: u64,
    pub selected: u64,
    pub released: u64,
    pub idle: u64,
    pub unplaced: u64,
    pub errors: u64,
}

/// What a window left behind, for subscribers such as the history store: its report, the
/// graph and the placements as the window ended.
#[derive(Debug, Clone)]
pub struct WindowRecord {
    pub report: WindowReport,
    pub graph: GraphSnapshot,
    pub placements: BTreeMap<VmPair, String>,
}

/// Window reports kept in memory for the API (older ones are in the history, if any).
pub const RECENT_WINDOWS: usize = 120;

/// Everything `step_window` owns; one window at a time.
struct LoopState {
    selector: PairSelector,
    placer: GreedyPlacer,
    samples: mpsc::Receiver<CollectedSamples>,
    events: mpsc::Receiver<SessionEvent>,
    index: u64,
    /// Last totals read per measured pair, to tell which counters grew.
    last_totals: HashMap<VmPair, (u64, u64)>,
}

struct Shared {
    topology: Arc<Topology>,
    paths: Paths,
    idle_timeout: Option<Duration>,
    sessions: Vec<SwitchSession>,
    journals: Vec<Option<WriteJournal>>,
    loop_state: tokio::sync::Mutex<LoopState>,
    /// The placer's per-switch entries as of the last window, so that readers (the API,
    /// /metrics) never wait for a window in progress.
    budgets: Mutex<Vec<SwitchBudget>>,
    graph: Mutex<DependencyGraph>,
    /// Per server, the pairs it should mirror (both directions of a measured pair, and pairs
    /// the server itself counts).
    mirror: watch::Sender<BTreeSet<PairAddrs>>,
    /// Same-server pairs reported by the servers.
    local_pairs: Mutex<BTreeSet<VmPair>>,
    collector_stats: Arc<CollectorStats>,
    interface_counters: Arc<CounterTable>,
    hosts: Mutex<BTreeMap<String, HostReport>>,
    /// The latest [`RECENT_WINDOWS`] reports, oldest first.
    reports: Mutex<VecDeque<WindowReport>>,
    totals: Mutex<WindowTotals>,
    windows: broadcast::Sender<Arc<WindowRecord>>,
    started_ms: u64,
    placements: Mutex<BTreeMap<VmPair, String>>,
    output_dir: Option<PathBuf>,
}

/// A read-only handle on a running controller's state, cheap to clone (the HTTP API keeps one);
/// [`RunningController`] dereferences to it.
#[derive(Clone)]
pub struct ControllerView {
    shared: Arc<Shared>,
}

/// A started controller; stop it with [`RunningController::shutdown`].
pub struct RunningController {
    view: ControllerView,
    pub sflow_addr: SocketAddr,
    pub hostlink_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Window records a subscriber may fall behind by before it misses some.
pub const WINDOW_SUBSCRIBER_QUEUE: usize = 256;

/// WriteRequests a journal keeps per switch (tests and the demo; the rest are counted).
const JOURNAL_LIMIT: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Binds the listeners, starts the sessions and the tasks.
pub async fn start(options: ControllerOptions) -> Result<RunningController, ControllerError> {
    let topology = options.topology.clone();
    let sflow = UdpSocket::bind(options.sflow_listen)
        .await
        .map_err(|source| ControllerError::SflowListen {
            addr: options.sflow_listen,
            source,
        })?;
    let sflow_addr = sflow
        .local_addr()
        .map_err(|source| ControllerError::SflowListen {
            addr: options.sflow_listen,
            source,
        })?;
    let hostlink = TcpListener::bind(options.hostlink_listen)
        .await
        .map_err(|source| ControllerError::HostlinkListen {
            addr: options.hostlink_listen,
            source,
        })?;
    let hostlink_addr =
        hostlink
            .local_addr()
            .map_err(|source| ControllerError::HostlinkListen {
                addr: options.hostlink_listen,
                source,
            })?;

    let paths = Paths::compute(&topology);
    let routes = RouteTables::compute(&topology, &paths);
    let (event_tx, event_rx) = mpsc::channel(1024);
    let mut sessions = Vec::new();
    let mut journals = Vec::new();
    for (i, sw) in topology.switches().iter().enumerate() {
        let mut config = SessionConfig::new(
            sw.name.clone(),
            sw.p4runtime,
            u64::from(sw.device_id),
            options.election_id,
            options.pipeline.clone(),
        );
        config.max_batch = options.max_batch;
        if options.journal {
            config.journal = Some(WriteJournal::new(JOURNAL_LIMIT));
        }
        let journal = config.journal.clone();
        let session = SwitchSession::spawn(config, event_tx.clone()).map_err(|source| {
            ControllerError::Session {
                switch: sw.name.clone(),
                source: Box::new(source),
            }
        })?;
        journals.push(journal);
        // The desired routes are kept by the session and replayed after every reconnection;
        // the first install happens as soon as the switch is up.
        let route_session = session.clone();
        let table = routes.table(SwitchId(i)).to_vec();
        tokio::spawn(async move {
            if let Err(err) = route_session.install_routes(table).await {
                tracing::warn!(%err, "routes not installed yet; the session retries on reconnect");
            }
        });
        sessions.push(session);
    }

    let (samples_tx, samples_rx) = mpsc::channel(4096);
    let collector_stats = Arc::new(CollectorStats::default());
    let interface_counters = Arc::new(CounterTable::default());
    let (stop, stop_rx) = watch::channel(false);
    let selector = PairSelector::new(options.policy).unwrap_or_else(|_| {
        // Only idle_windows = 0 is refused; one idle window is the closest meaning.
        PairSelector::new(SelectionPolicy {
            idle_windows: 1,
            ..options.policy
        })
        .expect("idle_windows 1 is valid")
    });
    let (mirror, _) = watch::channel(BTreeSet::new());
    let shared = Arc::new(Shared {
        topology: topology.clone(),
        paths,
        idle_timeout: options.idle_timeout,
        sessions,
        journals,
        loop_state: tokio::sync::Mutex::new(LoopState {
            selector,
            placer: GreedyPlacer::new(empty_budgets(&topology)),
            samples: samples_rx,
            events: event_rx,
            index: 0,
            last_totals: HashMap::new(),
        }),
        budgets: Mutex::new(empty_budgets(&topology)),
        graph: Mutex::new(DependencyGraph::new(&topology)),
        mirror,
        local_pairs: Mutex::new(BTreeSet::new()),
        collector_stats: collector_stats.clone(),
        interface_counters: interface_counters.clone(),
        hosts: Mutex::new(BTreeMap::new()),
        reports: Mutex::new(VecDeque::new()),
        totals: Mutex::new(WindowTotals::default()),
        windows: broadcast::channel(WINDOW_SUBSCRIBER_QUEUE).0,
        started_ms: unix_ms(),
        placements: Mutex::new(BTreeMap::new()),
        output_dir: options.output_dir.clone(),
    });

    let mut tasks = Vec::new();
    {
        let topology = topology.clone();
        let stop_rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(err) = collector::run_collector(
                sflow,
                topology,
                samples_tx,
                collector_stats,
                interface_counters,
                stop_rx,
            )
            .await
            {
                tracing::error!(%err, "the sFlow collector stopped");
            }
        }));
    }
    tasks.push(tokio::spawn(serve_hostlink(
        hostlink,
        shared.clone(),
        stop_rx.clone(),
    )));
    if let Some(window) = options.window {
        let shared = shared.clone();
        let mut stop_rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut timer = tokio::time::interval(window);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer.tick().await;
            loop {
                tokio::select! {
                    _ = timer.tick() => {
                        step(&shared).await.log();
                    }
                    _ = stop_rx.changed() => break,
                }
            }
        }));
    }
    Ok(RunningController {
        view: ControllerView { shared },
        sflow_addr,
        hostlink_addr,
        stop,
        tasks,
    })
}

impl std::ops::Deref for RunningController {
    type Target = ControllerView;

    fn deref(&self) -> &ControllerView {
        &self.view
    }
}

impl RunningController {
    /// Runs one window now (the demo steps windows itself; with a timer this also works).
    pub async fn step_window(&self) -> WindowReport {
        step(&self.view.shared).await
    }

    /// A handle on the state that outlives borrows of `self` (for servers such as the API).
    pub fn view(&self) -> ControllerView {
        self.view.clone()
    }

    /// Stops the tasks and the sessions; writes the graph if an output directory is set.
    pub async fn shutdown(self) -> Result<(), ControllerError> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        for session in &self.view.shared.sessions {
            session.shutdown().await;
        }
        write_graph(&self.view.shared).map(|_| ())
    }
}

impl ControllerView {
    pub fn graph_json(&self) -> Result<String, GraphError> {
        lock(&self.shared.graph).to_json()
    }

    pub fn graph_dot(&self) -> String {
        lock(&self.shared.graph).to_dot()
    }

    /// A copy of the dependency graph.
    pub fn graph(&self) -> DependencyGraph {
        lock(&self.shared.graph).clone()
    }

    /// `read`'s answer on the dependency graph, without copying the graph (which carries its
    /// pairs' recent timelines). `read` must be quick: the controller waits for it.
    pub fn with_graph<T>(&self, read: impl FnOnce(&DependencyGraph) -> T) -> T {
        read(&lock(&self.shared.graph))
    }

    pub fn collector_stats(&self) -> CollectorStatsSnapshot {
        self.shared.collector_stats.snapshot()
    }

    pub fn last_window(&self) -> Option<WindowReport> {
        lock(&self.shared.reports).back().cloned()
    }

    /// The latest [`RECENT_WINDOWS`] window reports, oldest first.
    pub fn recent_windows(&self) -> Vec<WindowReport> {
        lock(&self.shared.reports).iter().cloned().collect()
    }

    pub fn window_totals(&self) -> WindowTotals {
        *lock(&self.shared.totals)
    }

    /// Every window's record from now on. A subscriber that falls more than
    /// [`WINDOW_SUBSCRIBER_QUEUE`] windows behind is told how many it missed.
    pub fn subscribe_windows(&self) -> broadcast::Receiver<Arc<WindowRecord>> {
        self.shared.windows.subscribe()
    }

    /// When the controller started (Unix ms): the in-memory graph covers the time since.
    pub fn started_ms(&self) -> u64 {
        self.shared.started_ms
    }

    pub fn topology(&self) -> &Arc<Topology> {
        &self.shared.topology
    }

    /// Every switch's P4Runtime session state, in topology order.
    pub fn sessions(&self) -> Vec<SessionStatus> {
        self.shared.sessions.iter().map(|s| s.status()).collect()
    }

    /// Measured pairs and the switch that counts each.
    pub fn placements(&self) -> BTreeMap<VmPair, String> {
        lock(&self.shared.placements).clone()
    }

    /// The measured pairs placed three ways on empty switches — greedy one at a time (the
    /// method's rule, as the controller does it), optimal min-max load, naive first hop — and
    /// the cost of counting each on every switch of its path.
    pub fn placement_report(&self) -> Result<PlacementReport, ProblemError> {
        let topology = &self.shared.topology;
        let pairs = self
            .placements()
            .into_keys()
            .filter_map(|pair| {
                let path = self.shared.paths.pair_path(topology, pair).ok()?;
                Some(PairPath { pair, path })
            })
            .collect();
        Ok(PlacementProblem::new(empty_budgets(topology), pairs)?.report())
    }

    pub fn hosts(&self) -> BTreeMap<String, HostReport> {
        lock(&self.shared.hosts).clone()
    }

    /// Each switch's counting entries as of the last window, and its session now.
    pub async fn switches(&self) -> Vec<SwitchReport> {
        let budgets = lock(&self.shared.budgets).clone();
        switch_reports(&self.shared, &budgets)
    }

    /// The WriteRequests each switch's session sent, in order (with `journal` on).
    pub fn journals(&self) -> Vec<(String, Vec<crate::p4rt::v1::WriteRequest>)> {
        self.shared
            .journals
            .iter()
            .zip(self.shared.topology.switches())
            .map(|(j, sw)| {
                (
                    sw.name.clone(),
                    j.as_ref().map(|j| j.requests()).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Latest generic interface counters per agent and ifIndex (sFlow counter samples).
    pub fn interface_counters(&self) -> Vec<collector::InterfaceCounterEntry> {
        self.shared.interface_counters.snapshot()
    }

    /// Writes graph.json and graph.dot to the output directory, if one is set.
    pub fn write_graph(&self) -> Result<Option<PathBuf>, ControllerError> {
        write_graph(&self.shared)
    }
}

fn write_graph(shared: &Shared) -> Result<Option<PathBuf>, ControllerError> {
    let Some(dir) = &shared.output_dir else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir).map_err(|source| ControllerError::WriteGraph {
        path: dir.clone(),
        source: GraphError::Write {
            path: dir.clone(),
            source,
        },
    })?;
    lock(&shared.graph)
        .write_files(dir)
        .map_err(|source| ControllerError::WriteGraph {
            path: dir.clone(),
            source,
        })?;
    Ok(Some(dir.clone()))
}

fn switch_reports(shared: &Shared, budgets: &[SwitchBudget]) -> Vec<SwitchReport> {
    shared
        .topology
        .switches()
        .iter()
        .zip(budgets)
        .zip(&shared.sessions)
        .map(|((sw, budget), session)| SwitchReport {
            name: sw.name.clone(),
            device_id: sw.device_id,
            entries: budget.used,
            capacity: budget.capacity,
            load: Load::new(budget.used, budget.capacity).ratio(),
            ready: {
                let status = session.status();
                status.connected && status.primary && status.pipeline_pushed
            },
            routes: session.status().routes,
            reconnections: session.status().reconnections,
            last_error: session.status().last_error,
        })
        .collect()
}

async fn step(shared: &Shared) -> WindowReport {
    let mut state = shared.loop_state.lock().await;
    let state = &mut *state;
    state.index += 1;
    let now = unix_ms();
    let mut report = WindowReport {
        index: state.index,
        at_ms: now,
        ..WindowReport::default()
    };

    // 1. The window's samples and the switches' notices.
    let mut window = WindowSamples::new();
    while let Ok(batch) = state.samples.try_recv() {
        for s in &batch.samples {
            match window.record(s.pair, s.frame_length, s.sampling_rate) {
                Ok(()) => report.samples += 1,
                Err(err) => report.errors.push(err.to_string()),
            }
        }
    }
    report.sampled_pairs = window.len();
    report.estimates = window
        .iter()
        .map(|(pair, samples)| PairEstimate {
            pair,
            samples,
            error_percent: samples.error_percent(),
        })
        .collect();
    let mut idle: Vec<(String, VmPair)> = Vec::new();
    while let Ok(event) = state.events.try_recv() {
        match event {
            SessionEvent::IdleTimeout { switch, pairs } => {
                idle.extend(pairs.into_iter().map(|p| (switch.clone(), p)))
            }
            SessionEvent::Lost { switch, reason } => report
                .errors
                .push(format!("{switch}: session lost: {reason}")),
            SessionEvent::NotPrimary {
                switch,
                primary_election_id,
                ..
            } => report.errors.push(format!(
                "{switch}: another controller is primary (election id {primary_election_id:?})"
            )),
            SessionEvent::Ready {
                switch,
                dropped_pairs,
            } => {
                // After a restart the switch refused these entries back: they count nowhere.
                for pair in dropped_pairs {
                    if let Some(at) = state.placer.switch_of(pair) {
                        if shared.topology.switch(at).name == switch {
                            state.placer.release(pair);
                            state.selector.release(pair);
                            state.last_totals.remove(&pair);
                            lock(&shared.placements).remove(&pair);
                            report
                                .errors
                                .push(format!("{switch}: lost the entry of {pair}"));
                        }
                    }
                }
            }
        }
    }

    // 2. Exact counts of every measured pair, from the switch that counts it.
    let reads = join_all(shared.sessions.iter().map(|s| s.read_pairs())).await;
    let mut counted = BTreeSet::new();
    for ((i, result), sw) in reads
        .into_iter()
        .enumerate()
        .zip(shared.topology.switches())
    {
        match result {
            Ok(pairs) => {
                let mut graph = lock(&shared.graph);
                for (pair, totals) in pairs {
                    if state.placer.switch_of(pair) != Some(SwitchId(i)) {
                        continue;
                    }
                    if let Err(err) =
                        graph.observe_exact(pair, totals.packets, totals.bytes, &sw.name, now)
                    {
                        report.errors.push(err.to_string());
                    }
                    let last = state
                        .last_totals
                        .insert(pair, (totals.packets, totals.bytes));
                    if last != Some((totals.packets, totals.bytes)) {
                        counted.insert(pair);
                    }
                }
            }
            Err(err) => report.errors.push(format!("{}: read: {err}", sw.name)),
        }
    }

    // Entries the switches reported idle: final read, delete, free the slot.
    for (switch, pair) in idle {
        let Some(at) = state.placer.switch_of(pair) else {
            continue;
        };
        if shared.topology.switch(at).name != switch {
            continue;
        }
        remove_pair(shared, state, pair, at, now, &mut report).await;
        state.selector.release(pair);
        report.idle.push(pair);
    }

    // 3. Pre-analysis.
    let decision = state.selector.step(&shared.topology, &window, &counted);
    {
        let mut graph = lock(&shared.graph);
        for (pair, samples) in window.iter() {
            if let Err(err) = graph.observe_estimate(pair, samples, now) {
                report.errors.push(err.to_string());
            }
        }
    }
    report.deferred = decision.deferred.clone();

    // 4. Release, then place and insert.
    for pair in decision.released {
        if let Some(at) = state.placer.switch_of(pair) {
            remove_pair(shared, state, pair, at, now, &mut report).await;
        }
        report.released.push(pair);
    }
    let placed = place_pairs(shared, state, decision.selected, &mut report).await;
    report.selected = placed;
    report.measured = state.placer.placed_count();

    // 5. Mirror: measured pairs in both directions, and what servers count themselves.
    let mut mirror = BTreeSet::new();
    for pair in state.selector.measured() {
        mirror.insert(PairAddrs {
            src: pair.src,
            dst: pair.dst,
        });
        mirror.insert(PairAddrs {
            src: pair.dst,
            dst: pair.src,
        });
    }
    for pair in lock(&shared.local_pairs).iter() {
        mirror.insert(PairAddrs {
            src: pair.src,
            dst: pair.dst,
        });
    }
    shared.mirror.send_if_modified(|current| {
        if *current == mirror {
            false
        } else {
            *current = mirror;
            true
        }
    });
    lock(&shared.budgets).clone_from_slice(state.placer.budgets());
    {
        let mut totals = lock(&shared.totals);
        totals.windows += 1;
        totals.samples += report.samples;
        totals.selected += report.selected.len() as u64;
        totals.released += report.released.len() as u64;
        totals.idle += report.idle.len() as u64;
        totals.unplaced += report.unplaced.len() as u64;
        totals.errors += report.errors.len() as u64;
    }
    {
        let mut reports = lock(&shared.reports);
        if reports.len() == RECENT_WINDOWS {
            reports.pop_front();
        }
        reports.push_back(report.clone());
    }
    if shared.windows.receiver_count() > 0 {
        let record = WindowRecord {
            report: report.clone(),
            graph: lock(&shared.graph).snapshot(),
            placements: lock(&shared.placements).clone(),
        };
        // No receiver left in between is no loss: nobody was listening.
        let _ = shared.windows.send(Arc::new(record));
    }
    report
}

/// Final read, delete, slot freed.
async fn remove_pair(
    shared: &Shared,
    state: &mut LoopState,
    pair: VmPair,
    at: SwitchId,
    now: u64,
    report: &mut WindowReport,
) {
    let name = &shared.topology.switch(at).name;
    match shared.sessions[at.0].delete_pair(pair).await {
        Ok(Some(totals)) => {
            // The final reading comes after this window's read: a later timestamp.
            let at_ms = unix_ms().max(now + 1);
            if let Err(err) =
                lock(&shared.graph).observe_exact(pair, totals.packets, totals.bytes, name, at_ms)
            {
                report.errors.push(err.to_string());
            }
        }
        Ok(None) => {}
        Err(err) => report.errors.push(format!("{name}: delete {pair}: {err}")),
    }
    state.placer.release(pair);
    state.last_totals.remove(&pair);
    lock(&shared.placements).remove(&pair);
}

/// Places `pairs` greedily and inserts their entries, one round per refusal: a switch that
/// answers RESOURCE_EXHAUSTED is marked full and its pairs go to the next switch of their path.
async fn place_pairs(
    shared: &Shared,
    state: &mut LoopState,
    mut pairs: Vec<VmPair>,
    report: &mut WindowReport,
) -> Vec<PairPlacement> {
    let mut placed = Vec::new();
    // Each round marks at least one switch full, so this ends within the switch count.
    for _round in 0..=shared.topology.switches().len() {
        if pairs.is_empty() {
            break;
        }
        let mut by_switch: BTreeMap<SwitchId, Vec<VmPair>> = BTreeMap::new();
        for pair in pairs.drain(..) {
            let path = match shared.paths.pair_path(&shared.topology, pair) {
                Ok(path) => path,
                Err(err) => {
                    report.errors.push(format!("{pair}: {err}"));
                    state.selector.release(pair);
                    continue;
                }
            };
            match state.placer.place(pair, &path) {
                Ok(at) => by_switch.entry(at).or_default().push(pair),
                Err(PlaceError::NoRoom(_)) | Err(PlaceError::EmptyPath(_)) => {
                    state.selector.release(pair);
                    report.unplaced.push(pair);
                }
                Err(err) => report.errors.push(err.to_string()),
            }
        }
        // One switch's inserts are issued in pair order, so its session batches them in a
        // deterministic order; switches work concurrently.
        let idle_timeout = shared.idle_timeout;
        let results = join_all(by_switch.into_iter().map(|(at, group)| {
            let session = &shared.sessions[at.0];
            async move {
                let results = join_all(
                    group
                        .iter()
                        .map(|&pair| session.insert_pair(pair, idle_timeout)),
                )
                .await;
                (at, group, results)
            }
        }))
        .await;
        for (at, group, results) in results {
            let name = shared.topology.switch(at).name.clone();
            for (pair, result) in group.into_iter().zip(results) {
                match result {
                    Ok(()) => {
                        lock(&shared.placements).insert(pair, name.clone());
                        placed.push(PairPlacement {
                            pair,
                            switch: name.clone(),
                        });
                    }
                    Err(SessionError::TableFull { .. }) => {
                        state.placer.release(pair);
                        state.placer.mark_exhausted(at);
                        pairs.push(pair);
                    }
                    Err(err) => {
                        state.placer.release(pair);
                        state.selector.release(pair);
                        report.errors.push(format!("{name}: insert {pair}: {err}"));
                    }
                }
            }
        }
    }
    for pair in pairs {
        state.selector.release(pair);
        report.unplaced.push(pair);
    }
    placed.sort_by_key(|p| p.pair);
    placed
}

async fn serve_hostlink(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let shared = shared.clone();
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        if let Err(err) = serve_host(stream, &shared, stop).await {
                            tracing::warn!(%peer, %err, "host link closed");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!(%err, "host link accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

#[derive(Debug, Error)]
enum HostSessionError {
    #[error(transparent)]
    Link(#[from] hostlink::HostLinkError),
    #[error("the first message must be hello")]
    NoHello,
    #[error("server {0:?} is not in the topology")]
    UnknownServer(String),
    #[error("host link version {0} is not supported (this controller speaks {v})", v = hostlink::VERSION)]
    Version(u32),
}

async fn serve_host(
    stream: TcpStream,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) -> Result<(), HostSessionError> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let (server, name) = match hostlink::read_message::<_, HostMessage>(&mut read).await? {
        Some(HostMessage::Hello { server, version }) => {
            if version != hostlink::VERSION {
                return Err(HostSessionError::Version(version));
            }
            let id = shared
                .topology
                .server_id(&server)
                .ok_or_else(|| HostSessionError::UnknownServer(server.clone()))?;
            (id, server)
        }
        _ => return Err(HostSessionError::NoHello),
    };
    lock(&shared.hosts)
        .entry(name.clone())
        .or_default()
        .connected = true;
    let mut mirror = shared.mirror.subscribe();
    mirror.mark_changed();
    let result = loop {
        tokio::select! {
            message = hostlink::read_message::<_, HostMessage>(&mut read) => match message {
                Ok(Some(message)) => on_host_message(shared, server, &name, message),
                Ok(None) => break Ok(()),
                Err(err) => {
                    lock(&shared.hosts).entry(name.clone()).or_default().rejected += 1;
                    break Err(err.into());
                }
            },
            changed = mirror.changed() => {
                if changed.is_err() { break Ok(()); }
                let pairs: Vec<PairAddrs> = mirror
                    .borrow_and_update()
                    .iter()
                    .filter(|p| touches_server(&shared.topology, server, p))
                    .copied()
                    .collect();
                if let Err(err) = hostlink::write_message(&mut write, &ControllerMessage::Mirror { pairs }).await {
                    break Err(err.into());
                }
            }
            _ = stop.changed() => break Ok(()),
        }
    };
    lock(&shared.hosts).entry(name).or_default().connected = false;
    result
}

fn touches_server(topology: &Topology, server: ServerId, pair: &PairAddrs) -> bool {
    let on = |ip| topology.vm_by_ipv4(ip).map(|vm| topology.vm(vm).server) == Some(server);
    on(pair.src) || on(pair.dst)
}

fn on_host_message(shared: &Shared, server: ServerId, name: &str, message: HostMessage) {
    let now = unix_ms();
    let mut rejected = 0;
    let mut ignored = 0;
    match message {
        HostMessage::Hello { .. } => rejected += 1,
        HostMessage::LocalCounts { pairs, .. } => {
            let measured_by = format!("server:{name}");
            let mut graph = lock(&shared.graph);
            let mut local = lock(&shared.local_pairs);
            for p in pairs {
                let pair = VmPair::new(p.src, p.dst);
                let on = |ip| {
                    shared
                        .topology
                        .vm_by_ipv4(ip)
                        .map(|vm| shared.topology.vm(vm).server)
                        == Some(server)
                };
                // A server vouches only for pairs that stay on it.
                if !(on(p.src) && on(p.dst)) {
                    rejected += 1;
                    continue;
                }
                if let Err(err) = graph.observe_exact(pair, p.packets, p.bytes, &measured_by, now) {
                    tracing::debug!(%err, "local count not taken");
                    rejected += 1;
                    continue;
                }
                local.insert(pair);
            }
        }
        HostMessage::Labels { labels, .. } => {
            let mut by_pair: BTreeMap<VmPair, Vec<hostlink::AppLabel>> = BTreeMap::new();
            for label in labels {
                // Both ends' servers mirror a measured pair; the client's server speaks for it,
                // as the collector counts a pair at its source's server.
                let client_server = shared
                    .topology
                    .vm_by_ipv4(label.client)
                    .map(|vm| shared.topology.vm(vm).server);
                if client_server != Some(server) {
                    ignored += 1;
                    continue;
                }
                by_pair
                    .entry(VmPair::new(label.client, label.server))
                    .or_default()
                    .push(label);
            }
            let mut graph = lock(&shared.graph);
            for (pair, labels) in by_pair {
                let count = labels.len() as u64;
                if let Err(err) = graph.observe_labels(pair, labels, now) {
                    tracing::debug!(%err, "labels not taken");
                    rejected += count;
                }
            }
        }
    }
    let mut hosts = lock(&shared.hosts);
    let host = hosts.entry(name.to_string()).or_default();
    host.messages += 1;
    host.rejected += rejected;
    host.ignored_labels += ignored;
    host.last_message_ms = now;
}
