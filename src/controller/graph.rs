//! The dependency graph, the method's output: VMs as nodes, one directed edge per communicating
//! VM pair, weighted by its traffic (exact counts where a switch or the server counted the pair,
//! the sampled estimate otherwise) and labeled by the applications the DPI modules recognized,
//! over time. It owns the graph's state and its JSON and Graphviz (DOT) renderings; it measures
//! nothing itself (the collector, the pre-analysis, the counter reads and the DPI reports feed
//! it) and serves nothing (the HTTP API reads its snapshots).
//!
//! Times are Unix milliseconds given by the caller, so that a run can be replayed and tested.
//!
//! It uses the controller's own modules and the host link's label type only.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableDiGraph};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::estimate::PairSamples;
use super::topology::Topology;
use super::VmPair;

/// Labels are the host link's: what a server's DPI module reports is what the graph keeps.
pub use crate::hostlink::AppLabel;

/// Labels of one pair are kept one per key, the latest report winning.
fn label_key(label: &AppLabel) -> (&str, Ipv4Addr, Ipv4Addr, u16) {
    (
        &label.protocol,
        label.client,
        label.server,
        label.server_port,
    )
}

/// A VM of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmNode {
    pub name: String,
    pub ipv4: Ipv4Addr,
    /// The name of the server hosting it.
    pub server: String,
}

/// Rates over the interval between two exact observations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// Packets per second.
    pub pps: f64,
    /// Bits per second.
    pub bps: f64,
    pub interval_ms: u64,
}

/// A pair's exact traffic, as counters report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExactTraffic {
    /// Packets and bytes counted since the pair was first measured, over all the counters that
    /// measured it in turn.
    pub packets: u64,
    pub bytes: u64,
    /// The switch whose counter measures the pair, or "server:NAME" for a same-server pair
    /// that its server counts.
    pub measured_by: String,
    /// When the latest counter value was read.
    pub at_ms: u64,
    /// Since the previous reading; none after the first.
    pub rate: Option<Rates>,
    /// The latest raw counter value (packets, bytes): a new counter starts from zero. Not
    /// rendered, so a graph read back from JSON (an API client's) has none: it is for display.
    #[serde(skip)]
    counter: (u64, u64),
}

impl ExactTraffic {
    /// A reading recorded elsewhere (the history): its totals stand for the raw counter too.
    pub fn reading(
        packets: u64,
        bytes: u64,
        measured_by: String,
        at_ms: u64,
        rate: Option<Rates>,
    ) -> ExactTraffic {
        ExactTraffic {
            packets,
            bytes,
            measured_by,
            at_ms,
            rate,
            counter: (packets, bytes),
        }
    }
}

/// The latest sampled estimate of a pair (one pre-analysis window).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampledEstimate {
    pub window_end_ms: u64,
    pub samples: u64,
    pub packets: u64,
    pub bytes: u64,
    /// The 95 % confidence bound of the packet estimate's error.
    pub error_percent: Option<f64>,
}

/// A directed dependency: `src_vm` sends traffic to `dst_vm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DependencyEdge {
    pub src_vm: String,
    pub dst_vm: String,
    pub pair: VmPair,
    /// Exact counts, when a counter measures (or measured) the pair.
    pub exact: Option<ExactTraffic>,
    /// The latest estimate from samples, when the pair was sampled.
    pub estimate: Option<SampledEstimate>,
    /// By protocol, client, server and server port.
    pub labels: Vec<AppLabel>,
    /// When the pair entered the graph (its first observation).
    pub first_seen_ms: u64,
    /// The latest observation that showed traffic (samples, a counter that grew, labels), or
    /// the first observation.
    pub last_seen_ms: u64,
    /// The traffic in the time range a snapshot was asked for (a window of the time slider),
    /// where `exact` and `estimate` are the latest: absent from the whole graph, and absent
    /// when the range holds neither a counter reading nor an estimate of the pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_range: Option<RangeTraffic>,
}

/// A pair's traffic in a range of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeTraffic {
    pub packets: u64,
    pub bytes: u64,
    /// True: what the counters counted between their last reading before the range and their
    /// last reading in it. False: the sampled estimates of the windows that ended in the range.
    pub exact: bool,
}

/// Per pair, the observations a range's traffic is computed from, latest last.
#[derive(Debug, Clone, Default)]
struct PairTimeline {
    points: VecDeque<TimelinePoint>,
    /// Older points were dropped: a range before the first point kept has no baseline.
    truncated: bool,
}

#[derive(Debug, Clone, Copy)]
enum TimelinePoint {
    /// The pair's exact totals after a counter reading.
    Exact {
        at_ms: u64,
        packets: u64,
        bytes: u64,
    },
    /// One window's sampled estimate.
    Estimate {
        at_ms: u64,
        packets: u64,
        bytes: u64,
    },
}

/// Points kept per pair: a reading and an estimate per window for the controller's recent
/// windows (the time slider's reach), with room to spare.
const TIMELINE_POINTS: usize = 2 * crate::controller::service::RECENT_WINDOWS + 8;

impl PairTimeline {
    fn push(&mut self, point: TimelinePoint) {
        if self.points.len() == TIMELINE_POINTS {
            self.points.pop_front();
            self.truncated = true;
        }
        self.points.push_back(point);
    }

    /// The traffic in `[from_ms, to_ms]`: exact if a counter was read in it, else the sum of
    /// the estimates made in it.
    fn traffic_between(&self, from_ms: u64, to_ms: u64) -> Option<RangeTraffic> {
        let exact_at = |pick: &dyn Fn(u64) -> bool| {
            self.points.iter().rev().find_map(|p| match *p {
                TimelinePoint::Exact {
                    at_ms,
                    packets,
                    bytes,
                } if pick(at_ms) => Some((packets, bytes)),
                _ => None,
            })
        };
        if let Some((packets, bytes)) = exact_at(&|at| (from_ms..=to_ms).contains(&at)) {
            let before = match exact_at(&|at| at < from_ms) {
                Some(totals) => totals,
                // No reading before the range: the totals started in it, unless the readings
                // before it were dropped.
                None if self.truncated => return None,
                None => (0, 0),
            };
            return Some(RangeTraffic {
                packets: packets.saturating_sub(before.0),
                bytes: bytes.saturating_sub(before.1),
                exact: true,
            });
        }
        let estimates = self.points.iter().filter_map(|p| match *p {
            TimelinePoint::Estimate {
                at_ms,
                packets,
                bytes,
            } if (from_ms..=to_ms).contains(&at_ms) => Some((packets, bytes)),
            _ => None,
        });
        estimates
            .reduce(|a, b| (a.0.saturating_add(b.0), a.1.saturating_add(b.1)))
            .map(|(packets, bytes)| RangeTraffic {
                packets,
                bytes,
                exact: false,
            })
    }
}

impl DependencyEdge {
    /// Exact bytes when measured, else the estimate's.
    pub fn bytes(&self) -> u64 {
        match (&self.exact, &self.estimate) {
            (Some(e), _) => e.bytes,
            (None, Some(s)) => s.bytes,
            (None, None) => 0,
        }
    }
}

/// Observations the graph refuses.
#[derive(Debug, Error)]
pub enum GraphError {
    #[error("{0} is no VM of the topology")]
    UnknownVm(Ipv4Addr),
    #[error(
        "counter reading of {pair} at {at_ms} ms is not after the previous one at {previous_ms} ms"
    )]
    OutOfOrder {
        pair: VmPair,
        at_ms: u64,
        previous_ms: u64,
    },
    #[error("label {protocol} between client {client} and server {server} is not about {pair}")]
    LabelEndpoints {
        pair: VmPair,
        protocol: String,
        client: Ipv4Addr,
        server: Ipv4Addr,
    },
    #[error(
        "label {protocol} of {pair}: mean response time {mean_ms} ms is negative or not finite"
    )]
    LabelResponseTime {
        pair: VmPair,
        protocol: String,
        mean_ms: f64,
    },
    #[error("cannot render the graph as JSON")]
    Json(#[from] serde_json::Error),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A plain copy of (part of) the graph, as the outputs render it: nodes by name, edges by
/// source then destination name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphSnapshot {
    pub nodes: Vec<VmNode>,
    pub edges: Vec<DependencyEdge>,
}

/// The VMs' communication dependencies.
#[derive(Debug, Clone)]
pub struct DependencyGraph {
    graph: StableDiGraph<VmNode, DependencyEdge>,
    nodes: BTreeMap<Ipv4Addr, NodeIndex>,
    edges: BTreeMap<VmPair, EdgeIndex>,
    timelines: BTreeMap<VmPair, PairTimeline>,
}

impl DependencyGraph {
    /// A graph of the topology's VMs, without edges.
    pub fn new(topology: &Topology) -> Self {
        let mut graph = StableDiGraph::new();
        let mut nodes = BTreeMap::new();
        for vm in topology.vms() {
            let node = graph.add_node(VmNode {
                name: vm.name.clone(),
                ipv4: vm.ipv4,
                server: topology.server(vm.server).name.clone(),
            });
            nodes.insert(vm.ipv4, node);
        }
        DependencyGraph {
            graph,
            nodes,
            edges: BTreeMap::new(),
            timelines: BTreeMap::new(),
        }
    }

    /// The underlying petgraph graph, for graph algorithms.
    pub fn graph(&self) -> &StableDiGraph<VmNode, DependencyEdge> {
        &self.graph
    }

    /// Edges in pair order.
    pub fn edges(&self) -> impl Iterator<Item = &DependencyEdge> + '_ {
        self.edges.values().map(|&e| &self.graph[e])
    }

    pub fn edge(&self, pair: VmPair) -> Option<&DependencyEdge> {
        self.edges.get(&pair).map(|&e| &self.graph[e])
    }

    /// The pair's edge, created (first and last seen at `at_ms`) if missing.
    fn edge_mut(&mut self, pair: VmPair, at_ms: u64) -> Result<&mut DependencyEdge, GraphError> {
        let index = match self.edges.get(&pair) {
            Some(&e) => e,
            None => {
                let node = |ip| {
                    self.nodes
                        .get(&ip)
                        .copied()
                        .ok_or(GraphError::UnknownVm(ip))
                };
                let (src, dst) = (node(pair.src)?, node(pair.dst)?);
                let edge = DependencyEdge {
                    src_vm: self.graph[src].name.clone(),
                    dst_vm: self.graph[dst].name.clone(),
                    pair,
                    exact: None,
                    estimate: None,
                    labels: Vec::new(),
                    first_seen_ms: at_ms,
                    last_seen_ms: at_ms,
                    in_range: None,
                };
                let e = self.graph.add_edge(src, dst, edge);
                self.edges.insert(pair, e);
                e
            }
        };
        Ok(&mut self.graph[index])
    }

    /// One window's sampled estimate of a pair. An estimate without samples says nothing and
    /// is ignored.
    pub fn observe_estimate(
        &mut self,
        pair: VmPair,
        samples: PairSamples,
        window_end_ms: u64,
    ) -> Result<(), GraphError> {
        if samples.samples == 0 {
            return Ok(());
        }
        let edge = self.edge_mut(pair, window_end_ms)?;
        edge.estimate = Some(SampledEstimate {
            window_end_ms,
            samples: samples.samples,
            packets: samples.packets,
            bytes: samples.bytes,
            error_percent: samples.error_percent(),
        });
        seen(edge, window_end_ms);
        self.timelines
            .entry(pair)
            .or_default()
            .push(TimelinePoint::Estimate {
                at_ms: window_end_ms,
                packets: samples.packets,
                bytes: samples.bytes,
            });
        Ok(())
    }

    /// A counter reading of a pair: the counter's cumulative `packets` and `bytes` at `at_ms`,
    /// read from `measured_by` (a switch name, or "server:NAME"). A reading from another
    /// counter than the previous one, or lower than it, starts a new counter (the pair moved,
    /// or its entry was installed again) whose counts add to the pair's totals.
    pub fn observe_exact(
        &mut self,
        pair: VmPair,
        packets: u64,
        bytes: u64,
        measured_by: &str,
        at_ms: u64,
    ) -> Result<(), GraphError> {
        if let Some(previous) = self.edge(pair).and_then(|e| e.exact.as_ref()) {
            if at_ms <= previous.at_ms {
                return Err(GraphError::OutOfOrder {
                    pair,
                    at_ms,
                    previous_ms: previous.at_ms,
                });
            }
        }
        let edge = self.edge_mut(pair, at_ms)?;
        let (grew, exact) = match edge.exact.take() {
            None => (
                packets > 0,
                ExactTraffic {
                    packets,
                    bytes,
                    measured_by: measured_by.to_owned(),
                    at_ms,
                    rate: None,
                    counter: (packets, bytes),
                },
            ),
            Some(previous) => {
                let same_counter = previous.measured_by == measured_by
                    && packets >= previous.counter.0
                    && bytes >= previous.counter.1;
                let (dp, db) = if same_counter {
                    (packets - previous.counter.0, bytes - previous.counter.1)
                } else {
                    (packets, bytes)
                };
                let interval_ms = at_ms - previous.at_ms;
                let per_second = 1000.0 / interval_ms as f64;
                (
                    dp > 0,
                    ExactTraffic {
                        packets: previous.packets.saturating_add(dp),
                        bytes: previous.bytes.saturating_add(db),
                        measured_by: measured_by.to_owned(),
                        at_ms,
                        rate: Some(Rates {
                            pps: dp as f64 * per_second,
                            bps: db as f64 * 8.0 * per_second,
                            interval_ms,
                        }),
                        counter: (packets, bytes),
                    },
                )
            }
        };
        let point = TimelinePoint::Exact {
            at_ms,
            packets: exact.packets,
            bytes: exact.bytes,
        };
        edge.exact = Some(exact);
        if grew {
            seen(edge, at_ms);
        }
        self.timelines.entry(pair).or_default().push(point);
        Ok(())
    }

    /// A DPI report on a pair: each label replaces the pair's label of the same protocol,
    /// client, server and server port. Each label's client and server must be the pair's two
    /// VMs (either way round: a pair carries requests or responses).
    pub fn observe_labels(
        &mut self,
        pair: VmPair,
        labels: Vec<AppLabel>,
        at_ms: u64,
    ) -> Result<(), GraphError> {
        for label in &labels {
            check_label(pair, label)?;
        }
        if labels.is_empty() {
            return Ok(());
        }
        let edge = self.edge_mut(pair, at_ms)?;
        for label in labels {
            match edge
                .labels
                .iter_mut()
                .find(|l| label_key(l) == label_key(&label))
            {
                Some(old) => *old = label,
                None => edge.labels.push(label),
            }
        }
        // A connection DPI joined mid-stream is named by its port only (`tcp/443`); once a
        // conversation of the same client, server and port is recognized, that guess says
        // nothing more.
        let recognized: Vec<(Ipv4Addr, Ipv4Addr, u16)> = edge
            .labels
            .iter()
            .filter(|l| !is_port_only(l))
            .map(|l| (l.client, l.server, l.server_port))
            .collect();
        edge.labels.retain(|l| {
            !is_port_only(l) || !recognized.contains(&(l.client, l.server, l.server_port))
        });
        edge.labels.sort_by(|a, b| label_key(a).cmp(&label_key(b)));
        seen(edge, at_ms);
        Ok(())
    }

    /// A DPI report as the host link carries it: each label goes to the edge from its client to
    /// its server (the direction of the requests: the client depends on the server). Nothing
    /// changes unless every label is acceptable.
    pub fn observe_dpi_report(
        &mut self,
        labels: Vec<AppLabel>,
        at_ms: u64,
    ) -> Result<(), GraphError> {
        let mut by_pair: BTreeMap<VmPair, Vec<AppLabel>> = BTreeMap::new();
        for label in labels {
            let pair = VmPair::new(label.client, label.server);
            check_label(pair, &label)?;
            for ip in [pair.src, pair.dst] {
                if !self.nodes.contains_key(&ip) {
                    return Err(GraphError::UnknownVm(ip));
                }
            }
            by_pair.entry(pair).or_default().push(label);
        }
        by_pair
            .into_iter()
            .try_for_each(|(pair, labels)| self.observe_labels(pair, labels, at_ms))
    }

    /// Forgets the edges last seen before `since_ms`; returns how many.
    pub fn retain_since(&mut self, since_ms: u64) -> usize {
        let stale: Vec<VmPair> = self
            .edges()
            .filter(|e| e.last_seen_ms < since_ms)
            .map(|e| e.pair)
            .collect();
        for pair in &stale {
            if let Some(e) = self.edges.remove(pair) {
                self.graph.remove_edge(e);
            }
            self.timelines.remove(pair);
        }
        stale.len()
    }

    /// The whole graph.
    pub fn snapshot(&self) -> GraphSnapshot {
        self.snapshot_where(|_| true)
    }

    /// All nodes, and the edges seen at some time in `[from_ms, to_ms]`, each with its traffic
    /// in that range (`in_range`).
    pub fn snapshot_between(&self, from_ms: u64, to_ms: u64) -> GraphSnapshot {
        let mut snapshot =
            self.snapshot_where(|e| e.first_seen_ms <= to_ms && e.last_seen_ms >= from_ms);
        for edge in &mut snapshot.edges {
            edge.in_range = self
                .timelines
                .get(&edge.pair)
                .and_then(|t| t.traffic_between(from_ms, to_ms));
        }
        snapshot
    }

    fn snapshot_where(&self, keep: impl Fn(&DependencyEdge) -> bool) -> GraphSnapshot {
        let mut nodes: Vec<VmNode> = self.graph.node_weights().cloned().collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut edges: Vec<DependencyEdge> = self.edges().filter(|e| keep(e)).cloned().collect();
        edges.sort_by(|a, b| (&a.src_vm, &a.dst_vm).cmp(&(&b.src_vm, &b.dst_vm)));
        GraphSnapshot { nodes, edges }
    }

    pub fn to_json(&self) -> Result<String, GraphError> {
        self.snapshot().to_json()
    }

    pub fn to_dot(&self) -> String {
        self.snapshot().to_dot()
    }

    /// Writes `graph.json` and `graph.dot` into `dir`, each through a temporary file renamed
    /// into place, so a reader never sees half a file.
    pub fn write_files(&self, dir: &Path) -> Result<(), GraphError> {
        let snapshot = self.snapshot();
        write_replacing(&dir.join("graph.json"), &snapshot.to_json()?)?;
        write_replacing(&dir.join("graph.dot"), &snapshot.to_dot())
    }
}

/// A label must name the pair's two VMs, either way round, and a usable response time.
fn check_label(pair: VmPair, label: &AppLabel) -> Result<(), GraphError> {
    let forward = (label.client, label.server) == (pair.src, pair.dst);
    let backward = (label.client, label.server) == (pair.dst, pair.src);
    if !forward && !backward {
        return Err(GraphError::LabelEndpoints {
            pair,
            protocol: label.protocol.clone(),
            client: label.client,
            server: label.server,
        });
    }
    match label.mean_response_ms {
        Some(mean_ms) if !mean_ms.is_finite() || mean_ms < 0.0 => {
            Err(GraphError::LabelResponseTime {
                pair,
                protocol: label.protocol.clone(),
                mean_ms,
            })
        }
        _ => Ok(()),
    }
}

/// A label that names only the transport and port (`tcp/443`, `udp/123`).
fn is_port_only(label: &AppLabel) -> bool {
    label.protocol.starts_with("tcp/") || label.protocol.starts_with("udp/")
}

/// Extends an edge's seen interval to `at_ms`.
fn seen(edge: &mut DependencyEdge, at_ms: u64) {
    edge.first_seen_ms = edge.first_seen_ms.min(at_ms);
    edge.last_seen_ms = edge.last_seen_ms.max(at_ms);
}

fn write_replacing(path: &Path, text: &str) -> Result<(), GraphError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let failed = |source| GraphError::Write {
        path: path.to_owned(),
        source,
    };
    std::fs::write(&tmp, text).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
}

impl GraphSnapshot {
    /// Pretty-printed JSON: `{"nodes": [...], "edges": [...]}`.
    pub fn to_json(&self) -> Result<String, GraphError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Graphviz DOT: one cluster per server holding its VMs; edges labeled with their
    /// protocols and traffic (exact bytes and packets and the counter's place, or the estimate
    /// and its error bound, dashed, when only sampled), thicker for more bytes.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph vmdep {\n");
        out.push_str("  graph [rankdir=LR, fontname=\"Helvetica\"];\n");
        out.push_str("  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
        out.push_str("  edge [fontname=\"Helvetica\", fontsize=10];\n");
        let mut servers: BTreeMap<&str, Vec<&VmNode>> = BTreeMap::new();
        for node in &self.nodes {
            servers.entry(&node.server).or_default().push(node);
        }
        for (server, nodes) in servers {
            let _ = writeln!(out, "  subgraph {} {{", quote(&format!("cluster_{server}")));
            let _ = writeln!(out, "    label={};", quote(server));
            for node in nodes {
                let _ = writeln!(
                    out,
                    "    {} [label={}];",
                    quote(&node.name),
                    quote_lines(&[node.name.clone(), node.ipv4.to_string()])
                );
            }
            out.push_str("  }\n");
        }
        let heaviest = self.edges.iter().map(|e| e.bytes()).max().unwrap_or(0);
        for edge in &self.edges {
            let mut lines = Vec::new();
            if !edge.labels.is_empty() {
                let protocols: Vec<String> = edge
                    .labels
                    .iter()
                    .map(|l| format!("{}/{}", l.protocol, l.server_port))
                    .collect();
                lines.push(protocols.join(", "));
            }
            let style = match (&edge.exact, &edge.estimate) {
                (Some(x), _) => {
                    lines.push(format!(
                        "{}, {} pkts @{}",
                        human_bytes(x.bytes),
                        x.packets,
                        x.measured_by
                    ));
                    if let Some(rate) = x.rate {
                        lines.push(format!("{}, {:.1} pkt/s", human_bits(rate.bps), rate.pps));
                    }
                    ""
                }
                (None, Some(s)) => {
                    let bound = s
                        .error_percent
                        .map_or(String::new(), |p| format!(" ±{p:.0}%"));
                    lines.push(format!(
                        "~{}, ~{} pkts{bound}",
                        human_bytes(s.bytes),
                        s.packets
                    ));
                    ", style=dashed"
                }
                (None, None) => ", style=dotted",
            };
            let _ = writeln!(
                out,
                "  {} -> {} [label={}, penwidth={:.2}{style}];",
                quote(&edge.src_vm),
                quote(&edge.dst_vm),
                quote_lines(&lines),
                pen_width(edge.bytes(), heaviest)
            );
        }
        out.push_str("}\n");
        out
    }
}

/// 1 to 6 points, logarithmic in bytes relative to the heaviest edge.
fn pen_width(bytes: u64, heaviest: u64) -> f64 {
    if heaviest == 0 {
        return 1.0;
    }
    1.0 + 5.0 * (1.0 + bytes as f64).ln() / (1.0 + heaviest as f64).ln()
}

/// Bytes with an SI unit, three significant digits.
fn human_bytes(bytes: u64) -> String {
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    with_si_unit(bytes as f64, ["kB", "MB", "GB", "TB", "PB", "EB"])
}

/// Bits per second with an SI unit, three significant digits.
fn human_bits(bps: f64) -> String {
    if bps < 1000.0 {
        return format!("{bps:.0} bit/s");
    }
    with_si_unit(
        bps,
        ["kbit/s", "Mbit/s", "Gbit/s", "Tbit/s", "Pbit/s", "Ebit/s"],
    )
}

/// `value` (at least 1000) in the largest of `units` (kilo, mega, ...) that keeps it at or
/// above 1, to three significant digits.
fn with_si_unit(value: f64, units: [&str; 6]) -> String {
    let mut value = value / 1000.0;
    let mut unit = 0;
    while value >= 999.5 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value >= 99.95 {
        0
    } else if value >= 9.995 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {}", units[unit])
}

/// A DOT quoted string: `"` and `\` escaped.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A DOT label of several centered lines.
fn quote_lines(lines: &[String]) -> String {
    let escaped: Vec<String> = lines
        .iter()
        .map(|l| {
            let q = quote(l);
            q[1..q.len() - 1].to_owned()
        })
        .collect();
    format!("\"{}\"", escaped.join("\\n"))
}

#[cfg(test)]
mod tests;
