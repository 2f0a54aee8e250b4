//! The controller's HTTP API (axum): JSON views of the dependency graph (now, or over a time
//! range, from memory or the history), the pairs with their estimates and exact counts, the
//! switches, placements, DPI labels, servers, collector statistics, window reports, health, the
//! OpenAPI description of all this (`/api/openapi.json`, the hand-written
//! `src/controller/openapi.json`) and `/metrics` in the Prometheus text format; and the web page
//! at `/` (built from web/ by build.rs and embedded, so it needs no network), which shows the
//! live dependency map, the topology and the pairs from these endpoints.
//!
//! It reads the controller through a [`ControllerView`] and the [`HistoryStore`], and changes
//! nothing: no endpoint writes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::collector::{CollectorStatsSnapshot, InterfaceCounterEntry};
use super::graph::{AppLabel, ExactTraffic, GraphSnapshot, SampledEstimate};
use super::history::{HistoryStore, PairRecord, MAX_ROWS};
use super::metrics::{self, MetricsInput};
use super::service::{unix_ms, ControllerView, HostReport, WindowReport};
use super::VmPair;

/// The API's default address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The OpenAPI 3.1 description of every endpoint, served as is.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// The web page's files, bundled by build.rs from web/.
const PAGE_HTML: &str = include_str!(concat!(env!("OUT_DIR"), "/web/index.html"));
const PAGE_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/web/main.js"));
const PAGE_CSS: &str = include_str!(concat!(env!("OUT_DIR"), "/web/main.css"));

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct ApiState {
    view: ControllerView,
    history: Option<Arc<HistoryStore>>,
}

/// The API's routes over a controller (and its history, if kept).
pub fn router(view: ControllerView, history: Option<Arc<HistoryStore>>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/graph", get(graph))
        .route("/api/pairs", get(pairs))
        .route("/api/switches", get(switches))
        .route("/api/placements", get(placements))
        .route("/api/labels", get(labels))
        .route("/api/hosts", get(hosts))
        .route("/api/collector", get(collector))
        .route("/api/windows", get(windows))
        .route("/api/windows/last", get(last_window))
        .route("/api/history/pairs", get(history_pairs))
        .route("/api/topology", get(topology))
        .route("/api/status", get(status))
        .route("/api/openapi.json", get(openapi))
        .route("/", get(page_html))
        .route("/assets/main.js", get(page_js))
        .route("/assets/main.css", get(page_css))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .with_state(ApiState { view, history })
}

/// A running API server; stop it with [`RunningApi::shutdown`].
pub struct RunningApi {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

/// Binds `listen` and serves the API until [`RunningApi::shutdown`].
pub async fn serve(
    listen: SocketAddr,
    view: ControllerView,
    history: Option<Arc<HistoryStore>>,
) -> Result<RunningApi, ApiError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ApiError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ApiError::Listen {
        addr: listen,
        source,
    })?;
    let (stop, mut stopped) = watch::channel(false);
    let app = router(view, history);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
    });
    Ok(RunningApi { addr, stop, task })
}

impl RunningApi {
    /// Stops accepting, lets requests in flight finish, and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(%err, "the HTTP API stopped with an error"),
            Err(err) => tracing::error!(%err, "the HTTP API task failed"),
        }
    }
}

/// An error answer: `{"error": "..."}` with a status.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        (self.0, Json(Body { error: self.1 })).into_response()
    }
}

impl From<QueryRejection> for Failure {
    fn from(rejection: QueryRejection) -> Self {
        Failure(StatusCode::BAD_REQUEST, rejection.body_text())
    }
}

async fn not_found() -> Failure {
    Failure(
        StatusCode::NOT_FOUND,
        "no such endpoint (see /api/openapi.json)".into(),
    )
}

/// `?from=&to=` in Unix milliseconds (`window=last` or a window's index for the graph, `limit`
/// for the history).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeRange {
    from: Option<u64>,
    to: Option<u64>,
    limit: Option<usize>,
    window: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowChoice {
    /// Since the window before the last one ended.
    Last,
    /// One window, by its index.
    Index(u64),
}

impl TimeRange {
    /// The `window` parameter: `last` or a window's index.
    fn window(&self) -> Result<Option<WindowChoice>, Failure> {
        let Some(text) = &self.window else {
            return Ok(None);
        };
        if text == "last" {
            return Ok(Some(WindowChoice::Last));
        }
        match text.parse() {
            Ok(index) => Ok(Some(WindowChoice::Index(index))),
            Err(_) => Err(Failure(
                StatusCode::BAD_REQUEST,
                format!("window is `last` or a window's index, not {text:?}"),
            )),
        }
    }

    /// Both ends, `from` defaulting to 0 and `to` to now.
    fn bounds(&self) -> Result<(u64, u64), Failure> {
        let from = self.from.unwrap_or(0);
        let to = self.to.unwrap_or_else(unix_ms);
        if from > to {
            return Err(Failure(
                StatusCode::BAD_REQUEST,
                format!("from ({from}) is after to ({to})"),
            ));
        }
        Ok((from, to))
    }
}

#[derive(Serialize)]
struct SessionHealth {
    switch: String,
    ready: bool,
    connected: bool,
    primary: bool,
    pipeline_pushed: bool,
    connections: u64,
    reconnections: u64,
    last_error: Option<String>,
}

#[derive(Serialize)]
struct Health {
    /// "ok" when every session is ready, "degraded" otherwise.
    status: &'static str,
    started_ms: u64,
    sessions: Vec<SessionHealth>,
}

/// A session the controller can write through: connected, primary, its pipeline pushed.
fn session_ready(st: &super::session::SessionStatus) -> bool {
    st.connected && st.primary && st.pipeline_pushed
}

async fn health(State(s): State<ApiState>) -> (StatusCode, Json<Health>) {
    let sessions: Vec<SessionHealth> = s
        .view
        .sessions()
        .into_iter()
        .map(|st| SessionHealth {
            ready: session_ready(&st),
            switch: st.switch,
            connected: st.connected,
            primary: st.primary,
            pipeline_pushed: st.pipeline_pushed,
            connections: st.connections,
            reconnections: st.reconnections,
            last_error: st.last_error,
        })
        .collect();
    let ok = sessions.iter().all(|s| s.ready);
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Health {
            status: if ok { "ok" } else { "degraded" },
            started_ms: s.view.started_ms(),
            sessions,
        }),
    )
}

#[derive(Serialize)]
struct GraphAnswer {
    /// "memory" (the live graph) or "history" (the SQLite history).
    source: &'static str,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
    #[serde(flatten)]
    graph: GraphSnapshot,
}

async fn graph(
    State(s): State<ApiState>,
    range: Result<Query<TimeRange>, QueryRejection>,
) -> Result<Json<GraphAnswer>, Failure> {
    let Query(range) = range?;
    if range.limit.is_some() {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            "limit applies to /api/history/pairs only".into(),
        ));
    }
    let window = range.window()?;
    if window.is_some() && (range.from.is_some() || range.to.is_some()) {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            "window takes no from or to".into(),
        ));
    }
    if let Some(WindowChoice::Index(index)) = window {
        return window_graph(&s, index).await.map(Json);
    }
    if let Some(WindowChoice::Last) = window {
        // The edges seen since the window before the last one ended: the last window's
        // samples and counter reads, and what the servers reported since.
        let windows = s.view.recent_windows();
        let from = match windows.len() {
            0 | 1 => s.view.started_ms(),
            n => windows[n - 2].at_ms + 1,
        };
        let to = unix_ms().max(from);
        return Ok(Json(GraphAnswer {
            source: "memory",
            from_ms: Some(from),
            to_ms: Some(to),
            graph: s.view.with_graph(|g| g.snapshot_between(from, to)),
        }));
    }
    if range.from.is_none() && range.to.is_none() {
        return Ok(Json(GraphAnswer {
            source: "memory",
            from_ms: None,
            to_ms: None,
            graph: s.view.with_graph(|g| g.snapshot()),
        }));
    }
    let (from, to) = range.bounds()?;
    // The live graph holds everything since the controller started; older ranges are the
    // history's.
    if let (true, Some(history)) = (from < s.view.started_ms(), &s.history) {
        let history = history.clone();
        let topology = s.view.topology().clone();
        let graph = blocking(move || history.graph_between(&topology, from, to)).await?;
        return Ok(Json(GraphAnswer {
            source: "history",
            from_ms: Some(from),
            to_ms: Some(to),
            graph,
        }));
    }
    Ok(Json(GraphAnswer {
        source: "memory",
        from_ms: Some(from),
        to_ms: Some(to),
        graph: s.view.with_graph(|g| g.snapshot_between(from, to)),
    }))
}

/// The graph of window `index`, one of the recent windows: from the history when it is kept
/// (the pairs sampled or read in that window, with that window's estimate and the counter
/// reading taken in it), else the edges the live graph saw between the previous window's end
/// and this one's.
async fn window_graph(s: &ApiState, index: u64) -> Result<GraphAnswer, Failure> {
    let windows = s.view.recent_windows();
    let Some(position) = windows.iter().position(|w| w.index == index) else {
        let known = match (windows.first(), windows.last()) {
            (Some(first), Some(last)) => format!("{} to {}", first.index, last.index),
            _ => "none yet".to_string(),
        };
        return Err(Failure(
            StatusCode::NOT_FOUND,
            format!("window {index} is not among the recent windows ({known})"),
        ));
    };
    let to = windows[position].at_ms;
    if let Some(history) = &s.history {
        let history = history.clone();
        let topology = s.view.topology().clone();
        // The history files every row of a window under the window's end time.
        let graph = blocking(move || history.graph_between(&topology, to, to)).await?;
        return Ok(GraphAnswer {
            source: "history",
            from_ms: Some(to),
            to_ms: Some(to),
            graph,
        });
    }
    let from = match position {
        0 => s.view.started_ms(),
        n => windows[n - 1].at_ms + 1,
    }
    .min(to);
    Ok(GraphAnswer {
        source: "memory",
        from_ms: Some(from),
        to_ms: Some(to),
        graph: s.view.with_graph(|g| g.snapshot_between(from, to)),
    })
}

/// Runs a history query off the async threads.
async fn blocking<T: Send + 'static>(
    query: impl FnOnce() -> Result<T, super::history::HistoryError> + Send + 'static,
) -> Result<T, Failure> {
    match tokio::task::spawn_blocking(query).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(Failure(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())),
        Err(err) => Err(Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("history query failed: {err}"),
        )),
    }
}

/// How a pair is known.
#[derive(Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum PairStatus {
    /// A switch counts it now.
    Measured,
    /// Its server counts it (both VMs on one server).
    ServerCounted,
    /// A switch counted it; its entry was released.
    Released,
    /// Known from samples only.
    Sampled,
}

#[derive(Serialize)]
struct PairView {
    pair: VmPair,
    src_vm: String,
    dst_vm: String,
    status: PairStatus,
    /// The switch counting it now.
    counted_on: Option<String>,
    estimate: Option<SampledEstimate>,
    exact: Option<ExactTraffic>,
    last_seen_ms: u64,
}

#[derive(Serialize)]
struct PairsAnswer {
    /// The last window's index (none before the first).
    window: Option<u64>,
    pairs: Vec<PairView>,
}

async fn pairs(State(s): State<ApiState>) -> Json<PairsAnswer> {
    let placements = s.view.placements();
    let pairs = s.view.with_graph(|graph| {
        graph
            .edges()
            .map(|e| {
                let counted_on = placements.get(&e.pair).cloned();
                let status = match (&counted_on, &e.exact) {
                    (Some(_), _) => PairStatus::Measured,
                    (None, Some(x)) if x.measured_by.starts_with("server:") => {
                        PairStatus::ServerCounted
                    }
                    (None, Some(_)) => PairStatus::Released,
                    (None, None) => PairStatus::Sampled,
                };
                PairView {
                    pair: e.pair,
                    src_vm: e.src_vm.clone(),
                    dst_vm: e.dst_vm.clone(),
                    status,
                    counted_on,
                    estimate: e.estimate,
                    exact: e.exact.clone(),
                    last_seen_ms: e.last_seen_ms,
                }
            })
            .collect()
    });
    Json(PairsAnswer {
        window: s.view.last_window().map(|w| w.index),
        pairs,
    })
}

async fn switches(State(s): State<ApiState>) -> Json<Vec<super::service::SwitchReport>> {
    Json(s.view.switches().await)
}

#[derive(Serialize)]
struct PlacementView {
    pair: VmPair,
    src_vm: String,
    dst_vm: String,
    switch: String,
}

async fn placements(State(s): State<ApiState>) -> Json<Vec<PlacementView>> {
    let topology = s.view.topology().clone();
    let name = |ip| {
        topology
            .vm_by_ipv4(ip)
            .map(|vm| topology.vm(vm).name.clone())
            .unwrap_or_else(|| ip.to_string())
    };
    Json(
        s.view
            .placements()
            .into_iter()
            .map(|(pair, switch)| PlacementView {
                pair,
                src_vm: name(pair.src),
                dst_vm: name(pair.dst),
                switch,
            })
            .collect(),
    )
}

#[derive(Serialize)]
struct PairLabels {
    pair: VmPair,
    src_vm: String,
    dst_vm: String,
    labels: Vec<AppLabel>,
}

async fn labels(State(s): State<ApiState>) -> Json<Vec<PairLabels>> {
    Json(s.view.with_graph(|graph| {
        graph
            .edges()
            .filter(|e| !e.labels.is_empty())
            .map(|e| PairLabels {
                pair: e.pair,
                src_vm: e.src_vm.clone(),
                dst_vm: e.dst_vm.clone(),
                labels: e.labels.clone(),
            })
            .collect()
    }))
}

#[derive(Serialize)]
struct HostView {
    server: String,
    #[serde(flatten)]
    report: HostReport,
}

/// Every server of the topology with its host-link report (zero when it never connected).
fn all_hosts(view: &ControllerView) -> BTreeMap<String, HostReport> {
    let mut reports = view.hosts();
    view.topology()
        .servers()
        .iter()
        .map(|server| {
            let report = reports.remove(&server.name).unwrap_or_default();
            (server.name.clone(), report)
        })
        .collect()
}

async fn hosts(State(s): State<ApiState>) -> Json<Vec<HostView>> {
    Json(
        all_hosts(&s.view)
            .into_iter()
            .map(|(server, report)| HostView { server, report })
            .collect(),
    )
}

#[derive(Serialize)]
struct CollectorAnswer {
    stats: CollectorStatsSnapshot,
    interfaces: Vec<InterfaceCounterEntry>,
}

async fn collector(State(s): State<ApiState>) -> Json<CollectorAnswer> {
    Json(CollectorAnswer {
        stats: s.view.collector_stats(),
        interfaces: s.view.interface_counters(),
    })
}

async fn windows(State(s): State<ApiState>) -> Json<Vec<WindowReport>> {
    Json(s.view.recent_windows())
}

async fn last_window(State(s): State<ApiState>) -> Result<Json<WindowReport>, Failure> {
    s.view.last_window().map(Json).ok_or(Failure(
        StatusCode::NOT_FOUND,
        "no window has run yet".into(),
    ))
}

#[derive(Serialize)]
struct HistoryPairsAnswer {
    from_ms: u64,
    to_ms: u64,
    /// The row limit was reached: ask for a shorter range.
    truncated: bool,
    pairs: Vec<PairRecord>,
}

async fn history_pairs(
    State(s): State<ApiState>,
    range: Result<Query<TimeRange>, QueryRejection>,
) -> Result<Json<HistoryPairsAnswer>, Failure> {
    let Query(range) = range?;
    if range.window.is_some() {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            "window applies to /api/graph only".into(),
        ));
    }
    let Some(history) = s.history.clone() else {
        return Err(Failure(
            StatusCode::NOT_FOUND,
            "this controller keeps no history (start it with --history FILE)".into(),
        ));
    };
    let (from, to) = range.bounds()?;
    let limit = range.limit.unwrap_or(MAX_ROWS).min(MAX_ROWS);
    // One row more than asked tells whether the answer was cut.
    let mut pairs = blocking(move || history.pairs_between(from, to, limit + 1)).await?;
    let truncated = pairs.len() > limit;
    pairs.truncate(limit);
    Ok(Json(HistoryPairsAnswer {
        from_ms: from,
        to_ms: to,
        truncated,
        pairs,
    }))
}

#[derive(Serialize)]
struct WindowSummary {
    index: u64,
    at_ms: u64,
    samples: u64,
}

/// A small summary for pages and dashboards that poll often: always 200.
#[derive(Serialize)]
struct StatusAnswer {
    started_ms: u64,
    /// The controller's clock, so that a client can tell ages without trusting its own.
    now_ms: u64,
    last_window: Option<WindowSummary>,
    switches: usize,
    switches_ready: usize,
    servers: usize,
    servers_connected: usize,
    history: bool,
}

async fn status(State(s): State<ApiState>) -> Json<StatusAnswer> {
    let sessions = s.view.sessions();
    let hosts = all_hosts(&s.view);
    Json(StatusAnswer {
        started_ms: s.view.started_ms(),
        now_ms: unix_ms(),
        last_window: s.view.last_window().map(|w| WindowSummary {
            index: w.index,
            at_ms: w.at_ms,
            samples: w.samples,
        }),
        switches: sessions.len(),
        switches_ready: sessions.iter().filter(|st| session_ready(st)).count(),
        servers: hosts.len(),
        servers_connected: hosts.values().filter(|h| h.connected).count(),
        history: s.history.is_some(),
    })
}

/// One end of a link between switches.
#[derive(Serialize)]
struct LinkEnd {
    switch: String,
    port: u16,
}

#[derive(Serialize)]
struct TopologyLink {
    a: LinkEnd,
    b: LinkEnd,
}

#[derive(Serialize)]
struct TopologyVm {
    name: String,
    ipv4: std::net::Ipv4Addr,
}

#[derive(Serialize)]
struct TopologyServer {
    name: String,
    sflow_agent: std::net::IpAddr,
    uplink: LinkEnd,
    /// Its host link is up.
    connected: bool,
    vms: Vec<TopologyVm>,
}

#[derive(Serialize)]
struct TopologyAnswer {
    switches: Vec<super::service::SwitchReport>,
    links: Vec<TopologyLink>,
    servers: Vec<TopologyServer>,
}

async fn topology(State(s): State<ApiState>) -> Json<TopologyAnswer> {
    let topology = s.view.topology().clone();
    let end = |p: super::topology::SwitchPort| LinkEnd {
        switch: topology.switch(p.switch).name.clone(),
        port: p.port,
    };
    let hosts = s.view.hosts();
    let servers = topology
        .servers()
        .iter()
        .enumerate()
        .map(|(i, server)| TopologyServer {
            name: server.name.clone(),
            sflow_agent: server.sflow_agent,
            uplink: end(server.uplink),
            connected: hosts.get(&server.name).is_some_and(|h| h.connected),
            vms: topology
                .vms_of_server(super::topology::ServerId(i))
                .iter()
                .map(|&vm| {
                    let vm = topology.vm(vm);
                    TopologyVm {
                        name: vm.name.clone(),
                        ipv4: vm.ipv4,
                    }
                })
                .collect(),
        })
        .collect();
    Json(TopologyAnswer {
        switches: s.view.switches().await,
        links: topology
            .links()
            .iter()
            .map(|l| TopologyLink {
                a: end(l.a),
                b: end(l.b),
            })
            .collect(),
        servers,
    })
}

/// What the page may load: its own files and API only (its icon is an empty data: URL; its
/// tables color tags with style attributes).
const PAGE_CSP: &str =
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'";

/// A file of the web page; the page polls the API, so browsers revalidate it rather than keep
/// an old copy after the controller is upgraded.
fn page_file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
        ],
        body,
    )
}

async fn page_html() -> impl IntoResponse {
    page_file("text/html; charset=utf-8", PAGE_HTML)
}

async fn page_js() -> impl IntoResponse {
    page_file("text/javascript; charset=utf-8", PAGE_JS)
}

async fn page_css() -> impl IntoResponse {
    page_file("text/css; charset=utf-8", PAGE_CSS)
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

async fn metrics_text(State(s): State<ApiState>) -> impl IntoResponse {
    let input = MetricsInput {
        collector: s.view.collector_stats(),
        totals: s.view.window_totals(),
        last_window: s.view.last_window(),
        switches: s.view.switches().await,
        sessions: s.view.sessions(),
        hosts: all_hosts(&s.view),
        history: s.history.as_ref().map(|h| h.stats()),
    };
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&input),
    )
}
