//! The sFlow v5 collector: it reads the servers' datagrams, turns their flow samples into
//! per-pair samples for the pre-analysis ([`super::estimate`]) and keeps the latest interface
//! counters and the collector's own statistics. It owns the de-duplication rule and the
//! accounting of everything it drops; it does not estimate (the consumer of
//! [`CollectedSamples`] feeds [`super::estimate::WindowSamples`]) and never blocks on it.
//!
//! # Which samples count
//!
//! Each server samples its VMs' frames at its vswitch ports, so a frame between VMs on two
//! servers is sampled at both ends. A sample counts for its pair only when the pair's source VM
//! is hosted on the server the agent belongs to ([`SkipReason::OtherSide`] otherwise). Within
//! that server, a sample whose data source is the port the frame left through (the data source
//! is the output interface, not the input one) is the egress copy of a frame the server also
//! samples where it entered, and is skipped ([`SkipReason::EgressCopy`]). Each frame is thus
//! counted once, at the port where it entered the vswitch of its source's server, which holds
//! for same-server pairs too. An agent must therefore either sample each frame once per server
//! (as Open vSwitch does, at the bridge port it enters by) or give its egress samples the output
//! port as data source; interfaces it leaves unknown (0) are not second-guessed.
//!
//! # What is dropped, and where it is counted
//!
//! A datagram whose sFlow framing is broken anywhere is refused as a whole
//! ([`CollectError`], counted in `malformed_datagrams`): the samples it holds are not trusted.
//! Inside a well-formed datagram, every sample or record that gives no pair sample is counted by
//! [`SkipReason`]. Datagrams from agents the topology does not know are counted, and their
//! samples skipped with [`SkipReason::UnknownAgent`]. Batches the consumer has no room for are
//! counted as queue-full drops. Sequence-number gaps per agent and sub-agent are counted as lost
//! datagrams.
//!
//! It may use `sflow`, `wire` and the controller's own modules only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::estimate::{EstimateError, WindowSamples};
use super::topology::{ServerId, Topology};
use super::VmPair;
use crate::sflow::{
    header_protocol, Address, CounterRecord, Datagram, FlowRecord, FlowSample, IfCounters,
    Interface, Sample, SampledHeader, SflowError,
};
use crate::wire::{HeaderSummary, Ipv4Packet};

/// The receive buffer: the largest UDP payload, so no datagram is cut short.
pub const MAX_DATAGRAM_LEN: usize = 65_535;
/// Interfaces whose counters are kept per agent; more would let one agent grow the table
/// without bound.
pub const MAX_INTERFACES_PER_AGENT: usize = 1024;
/// Sub-agents whose sequence numbers are followed per agent (same reason).
pub const MAX_SUB_AGENTS_PER_AGENT: usize = 64;
/// Distinct unknown agent addresses remembered for the statistics (the count has no limit).
pub const MAX_UNKNOWN_AGENTS_LISTED: usize = 64;

/// One sampled frame of a VM pair, as the pre-analysis records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PairSample {
    pub pair: VmPair,
    /// The frame's length as a switch's byte counter counts it: the Ethernet frame without its
    /// FCS. sFlow's Ethernet header records count the FCS (4 bytes, removed here); IPv4 header
    /// records count the IP packet (an untagged Ethernet header, 14 bytes, is added).
    pub frame_length: u32,
    /// The sample was taken with 1-in-`sampling_rate` sampling (never 0).
    pub sampling_rate: u32,
    /// The server whose agent sent the sample: the source VM's server.
    pub server: ServerId,
}

/// Why a sample or record gave no pair sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A flow sample from an agent that is no server of the topology.
    UnknownAgent,
    /// A flow sample without a raw packet header record.
    NoPacketHeader,
    /// A raw packet header of a protocol other than Ethernet or IPv4 (`header_protocol`).
    UnsupportedHeaderProtocol,
    /// The sampled packet is not IPv4 (ARP, IPv6, ...).
    NotIpv4,
    /// The sampled bytes end inside the Ethernet or IPv4 header, or hold one the `wire`
    /// parsers refuse (stacked VLAN tags, an IPv4 IHL below 5, ...).
    UnreadableHeader,
    /// The packet's source or destination address is no VM of the topology.
    NotVm,
    /// The pair's source VM is on another server, whose own sample of the frame counts.
    OtherSide,
    /// Sampled where the frame left the vswitch; the server counts it where it entered.
    EgressCopy,
    /// A flow sample announcing 1-in-0 sampling, which no estimate can use.
    ZeroSamplingRate,
    /// A sample of a format the collector does not read (skipped by its length).
    UnknownSampleFormat,
    /// A flow record of a format the collector does not read (skipped by its length).
    UnknownFlowRecord,
    /// A counter record of a format the collector does not read (skipped by its length).
    UnknownCounterRecord,
}

impl SkipReason {
    pub const ALL: [SkipReason; 12] = [
        SkipReason::UnknownAgent,
        SkipReason::NoPacketHeader,
        SkipReason::UnsupportedHeaderProtocol,
        SkipReason::NotIpv4,
        SkipReason::UnreadableHeader,
        SkipReason::NotVm,
        SkipReason::OtherSide,
        SkipReason::EgressCopy,
        SkipReason::ZeroSamplingRate,
        SkipReason::UnknownSampleFormat,
        SkipReason::UnknownFlowRecord,
        SkipReason::UnknownCounterRecord,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// How many samples or records were skipped, per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkipCounts([u64; SkipReason::ALL.len()]);

impl SkipCounts {
    fn add(&mut self, reason: SkipReason) {
        self.0[reason.index()] += 1;
    }

    pub fn get(&self, reason: SkipReason) -> u64 {
        self.0[reason.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The reasons with a non-zero count, in [`SkipReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (SkipReason, u64)> + '_ {
        SkipReason::ALL
            .iter()
            .map(|&r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
    }
}

/// What one well-formed datagram held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatagramSummary {
    /// The agent address of the datagram (the UDP source address when the datagram's agent
    /// address is of type "unknown").
    pub agent: IpAddr,
    /// The agent's server; none when the topology does not know the agent.
    pub server: Option<ServerId>,
    pub sub_agent_id: u32,
    pub sequence_number: u32,
    pub uptime_ms: u32,
    /// Flow samples and expanded flow samples.
    pub flow_samples: u64,
    /// Counters samples and expanded counters samples.
    pub counter_samples: u64,
    /// The counted samples, in datagram order.
    pub pair_samples: Vec<PairSample>,
    /// Generic interface counter records, in datagram order.
    pub interface_counters: Vec<IfCounters>,
    pub skipped: SkipCounts,
}

/// Why a datagram was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CollectError {
    /// Not even the datagram header could be read: the sender is unknown.
    #[error("datagram from {from} is not sFlow v5: {error}")]
    Header {
        from: SocketAddr,
        #[source]
        error: SflowError,
    },
    /// The header was read, but a sample or record is malformed.
    #[error(
        "sFlow datagram from agent {agent} (sequence {sequence_number}) is malformed: {error}"
    )]
    Body {
        agent: IpAddr,
        sub_agent_id: u32,
        sequence_number: u32,
        #[source]
        error: SflowError,
    },
}

/// Reads one datagram received from `source`: see the module documentation for what counts.
pub fn classify_datagram(
    bytes: &[u8],
    source: SocketAddr,
    topology: &Topology,
) -> Result<DatagramSummary, CollectError> {
    let datagram = Datagram::parse(bytes).map_err(|error| CollectError::Header {
        from: source,
        error,
    })?;
    let agent = match datagram.agent {
        Address::Ipv4(a) => IpAddr::V4(a),
        Address::Ipv6(a) => IpAddr::V6(a),
        Address::Unknown => source.ip().to_canonical(),
    };
    let server = topology.server_by_agent(agent);
    let mut summary = DatagramSummary {
        agent,
        server,
        sub_agent_id: datagram.sub_agent_id,
        sequence_number: datagram.sequence_number,
        uptime_ms: datagram.uptime_ms,
        flow_samples: 0,
        counter_samples: 0,
        pair_samples: Vec::new(),
        interface_counters: Vec::new(),
        skipped: SkipCounts::default(),
    };
    let body_error = |error| CollectError::Body {
        agent,
        sub_agent_id: datagram.sub_agent_id,
        sequence_number: datagram.sequence_number,
        error,
    };
    for sample in datagram.samples() {
        match sample.map_err(body_error)? {
            Sample::Flow(flow) => {
                summary.flow_samples += 1;
                let header =
                    first_packet_header(&flow, &mut summary.skipped).map_err(body_error)?;
                match count_flow_sample(&flow, header, server, topology) {
                    Ok(s) => summary.pair_samples.push(s),
                    Err(reason) => summary.skipped.add(reason),
                }
            }
            Sample::Counters(counters) => {
                summary.counter_samples += 1;
                for record in counters.records() {
                    match record.map_err(body_error)? {
                        CounterRecord::Interface(c) => summary.interface_counters.push(c),
                        CounterRecord::Unknown { .. } => {
                            summary.skipped.add(SkipReason::UnknownCounterRecord)
                        }
                    }
                }
            }
            Sample::Unknown { .. } => summary.skipped.add(SkipReason::UnknownSampleFormat),
        }
    }
    Ok(summary)
}

/// Walks all records of a flow sample (so that a malformed one refuses the datagram) and
/// returns the first raw packet header; unknown records are counted.
fn first_packet_header<'a>(
    flow: &FlowSample<'a>,
    skipped: &mut SkipCounts,
) -> Result<Option<SampledHeader<'a>>, SflowError> {
    let mut header = None;
    for record in flow.records() {
        match record? {
            FlowRecord::SampledHeader(h) => {
                header.get_or_insert(h);
            }
            FlowRecord::SampledIpv4(_) | FlowRecord::ExtendedSwitch(_) => {}
            FlowRecord::Unknown { .. } => skipped.add(SkipReason::UnknownFlowRecord),
        }
    }
    Ok(header)
}

/// The pair sample a flow sample gives, or why it gives none.
fn count_flow_sample(
    flow: &FlowSample<'_>,
    header: Option<SampledHeader<'_>>,
    server: Option<ServerId>,
    topology: &Topology,
) -> Result<PairSample, SkipReason> {
    let server = server.ok_or(SkipReason::UnknownAgent)?;
    let header = header.ok_or(SkipReason::NoPacketHeader)?;
    let pair = sampled_pair(&header)?;
    let src = topology.vm_by_ipv4(pair.src).ok_or(SkipReason::NotVm)?;
    topology.vm_by_ipv4(pair.dst).ok_or(SkipReason::NotVm)?;
    if topology.vm(src).server != server {
        return Err(SkipReason::OtherSide);
    }
    if is_egress_copy(flow) {
        return Err(SkipReason::EgressCopy);
    }
    if flow.sampling_rate == 0 {
        return Err(SkipReason::ZeroSamplingRate);
    }
    Ok(PairSample {
        pair,
        frame_length: counted_length(&header),
        sampling_rate: flow.sampling_rate,
        server,
    })
}

/// The sampled frame's length as P4 switches count it (Ethernet, no FCS).
fn counted_length(header: &SampledHeader<'_>) -> u32 {
    match header.protocol {
        header_protocol::IPV4 => header.frame_length.saturating_add(14),
        _ => header.frame_length.saturating_sub(4),
    }
}

/// The IPv4 addresses of a sampled packet header.
fn sampled_pair(header: &SampledHeader<'_>) -> Result<VmPair, SkipReason> {
    match header.protocol {
        header_protocol::ETHERNET => {
            let summary =
                HeaderSummary::parse(header.header).map_err(|_| SkipReason::UnreadableHeader)?;
            let ip = summary.ipv4.ok_or(SkipReason::NotIpv4)?;
            Ok(VmPair::new(ip.src_addr, ip.dst_addr))
        }
        header_protocol::IPV4 => {
            let ip =
                Ipv4Packet::new_checked(header.header).map_err(|_| SkipReason::UnreadableHeader)?;
            Ok(VmPair::new(ip.src_addr(), ip.dst_addr()))
        }
        header_protocol::IPV6 => Err(SkipReason::NotIpv4),
        _ => Err(SkipReason::UnsupportedHeaderProtocol),
    }
}

/// A sample whose data source is the ifIndex the frame went out of, and not the one it came
/// in by: taken on egress.
fn is_egress_copy(flow: &FlowSample<'_>) -> bool {
    let port = |i: Interface| (i.format == 0 && i.value != 0).then_some(i.value);
    let source = (flow.source.kind == 0 && flow.source.index != 0).then_some(flow.source.index);
    source.is_some() && source == port(flow.output) && source != port(flow.input)
}

/// The counted samples of one datagram, sent to the pre-analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedSamples {
    pub agent: IpAddr,
    pub server: ServerId,
    /// When the collector received the datagram (Unix time, milliseconds).
    pub received_at_ms: u64,
    pub samples: Vec<PairSample>,
}

impl CollectedSamples {
    /// Adds the batch's samples to a window of the pre-analysis.
    pub fn record_into(&self, window: &mut WindowSamples) -> Result<(), EstimateError> {
        self.samples
            .iter()
            .try_for_each(|s| window.record(s.pair, s.frame_length, s.sampling_rate))
    }
}

/// The latest counters of one interface of one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfaceCounterEntry {
    pub agent: IpAddr,
    pub server: String,
    /// When the collector received them (Unix time, milliseconds).
    pub received_at_ms: u64,
    pub counters: IfCounters,
}

/// The latest interface counters per (agent, ifIndex), of known agents only, at most
/// [`MAX_INTERFACES_PER_AGENT`] interfaces per agent.
#[derive(Debug, Default)]
pub struct CounterTable {
    entries: Mutex<BTreeMap<(IpAddr, u32), InterfaceCounterEntry>>,
}

impl CounterTable {
    pub fn new() -> Self {
        CounterTable::default()
    }

    /// Stores `counters` of an agent's interfaces, replacing older ones; returns how many were
    /// refused because the agent already has [`MAX_INTERFACES_PER_AGENT`] other interfaces.
    pub fn update(
        &self,
        agent: IpAddr,
        server: &str,
        counters: &[IfCounters],
        received_at_ms: u64,
    ) -> u64 {
        let mut entries = lock(&self.entries);
        let mut refused = 0;
        for c in counters {
            let key = (agent, c.if_index);
            if !entries.contains_key(&key)
                && entries.range((agent, 0)..=(agent, u32::MAX)).count() >= MAX_INTERFACES_PER_AGENT
            {
                refused += 1;
                continue;
            }
            entries.insert(
                key,
                InterfaceCounterEntry {
                    agent,
                    server: server.to_owned(),
                    received_at_ms,
                    counters: *c,
                },
            );
        }
        refused
    }

    pub fn get(&self, agent: IpAddr, if_index: u32) -> Option<InterfaceCounterEntry> {
        lock(&self.entries).get(&(agent, if_index)).cloned()
    }

    /// All entries, by agent and ifIndex.
    pub fn snapshot(&self) -> Vec<InterfaceCounterEntry> {
        lock(&self.entries).values().cloned().collect()
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every update is a
/// single insert or counter step).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sequence-number bookkeeping of one known agent.
#[derive(Debug, Default)]
struct AgentState {
    server: String,
    datagrams: u64,
    lost: u64,
    duplicates: u64,
    resets: u64,
    untracked_sub_agents: u64,
    /// Per sub-agent: the last sequence number seen.
    last: BTreeMap<u32, u32>,
}

impl AgentState {
    /// Follows one datagram's sequence number. A number past the next one counts the datagrams
    /// in between as lost. A number behind the last one restarts the count from it: the agent
    /// restarted (or, rarely on a LAN, a datagram arrived out of order, and the datagrams it
    /// skipped were counted as lost).
    fn observe(&mut self, sub_agent_id: u32, sequence_number: u32) {
        self.datagrams += 1;
        if !self.last.contains_key(&sub_agent_id) && self.last.len() >= MAX_SUB_AGENTS_PER_AGENT {
            self.untracked_sub_agents += 1;
            return;
        }
        let Some(last) = self.last.insert(sub_agent_id, sequence_number) else {
            return;
        };
        match sequence_number.wrapping_sub(last) {
            0 => self.duplicates += 1,
            ahead if ahead < 1 << 31 => self.lost += u64::from(ahead - 1),
            _ => self.resets += 1,
        }
    }
}

#[derive(Debug, Default)]
struct AgentBook {
    known: BTreeMap<IpAddr, AgentState>,
    unknown: BTreeSet<IpAddr>,
}

/// The collector's statistics, updated by [`run_collector`] and read at any time with
/// [`CollectorStats::snapshot`].
#[derive(Debug, Default)]
pub struct CollectorStats {
    datagrams: AtomicU64,
    bytes: AtomicU64,
    flow_samples: AtomicU64,
    counter_samples: AtomicU64,
    pair_samples: AtomicU64,
    malformed_datagrams: AtomicU64,
    unknown_agent_datagrams: AtomicU64,
    queue_full_batches: AtomicU64,
    queue_full_samples: AtomicU64,
    counter_table_full: AtomicU64,
    skipped: [AtomicU64; SkipReason::ALL.len()],
    agents: Mutex<AgentBook>,
}

/// Per known agent: datagrams and what its sequence numbers say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentStatsSnapshot {
    pub agent: IpAddr,
    pub server: String,
    /// Well-formed and malformed datagrams whose header was read.
    pub datagrams: u64,
    /// Datagrams missing from the sequence numbers (lost on the way, or dropped by the socket).
    pub datagrams_lost: u64,
    /// Datagrams repeating the last sequence number.
    pub duplicates: u64,
    /// Times the sequence numbers went back: the agent restarted, or a datagram came late.
    pub sequence_resets: u64,
    /// Datagrams of sub-agents beyond [`MAX_SUB_AGENTS_PER_AGENT`], whose losses are not followed.
    pub untracked_sub_agent_datagrams: u64,
}

/// A plain copy of [`CollectorStats`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CollectorStatsSnapshot {
    pub datagrams: u64,
    pub bytes: u64,
    pub flow_samples: u64,
    pub counter_samples: u64,
    /// Pair samples counted (before queue-full drops).
    pub pair_samples: u64,
    pub malformed_datagrams: u64,
    pub unknown_agent_datagrams: u64,
    /// Unknown agent addresses seen (the first [`MAX_UNKNOWN_AGENTS_LISTED`]).
    pub unknown_agents: Vec<IpAddr>,
    /// Batches, and the pair samples in them, dropped because the consumer's queue was full.
    pub queue_full_batches: u64,
    pub queue_full_samples: u64,
    /// Interface counter records refused by the [`CounterTable`]'s per-agent limit.
    pub counter_table_full: u64,
    /// Skipped samples and records by reason (reasons that occurred only).
    pub skipped: BTreeMap<SkipReason, u64>,
    /// Known agents, by address.
    pub agents: Vec<AgentStatsSnapshot>,
}

impl CollectorStats {
    pub fn new() -> Self {
        CollectorStats::default()
    }

    pub fn snapshot(&self) -> CollectorStatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let book = lock(&self.agents);
        CollectorStatsSnapshot {
            datagrams: get(&self.datagrams),
            bytes: get(&self.bytes),
            flow_samples: get(&self.flow_samples),
            counter_samples: get(&self.counter_samples),
            pair_samples: get(&self.pair_samples),
            malformed_datagrams: get(&self.malformed_datagrams),
            unknown_agent_datagrams: get(&self.unknown_agent_datagrams),
            unknown_agents: book.unknown.iter().copied().collect(),
            queue_full_batches: get(&self.queue_full_batches),
            queue_full_samples: get(&self.queue_full_samples),
            counter_table_full: get(&self.counter_table_full),
            skipped: SkipReason::ALL
                .iter()
                .map(|&r| (r, get(&self.skipped[r.index()])))
                .filter(|&(_, n)| n > 0)
                .collect(),
            agents: book
                .known
                .iter()
                .map(|(&agent, s)| AgentStatsSnapshot {
                    agent,
                    server: s.server.clone(),
                    datagrams: s.datagrams,
                    datagrams_lost: s.lost,
                    duplicates: s.duplicates,
                    sequence_resets: s.resets,
                    untracked_sub_agent_datagrams: s.untracked_sub_agents,
                })
                .collect(),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Follows an agent's sequence numbers, or notes an unknown agent.
    fn observe_agent(
        &self,
        topology: &Topology,
        agent: IpAddr,
        sub_agent_id: u32,
        sequence_number: u32,
    ) {
        let mut book = lock(&self.agents);
        match topology.server_by_agent(agent) {
            Some(server) => {
                let state = book.known.entry(agent).or_insert_with(|| AgentState {
                    server: topology.server(server).name.clone(),
                    ..AgentState::default()
                });
                state.observe(sub_agent_id, sequence_number);
            }
            None => {
                Self::add(&self.unknown_agent_datagrams, 1);
                if book.unknown.len() < MAX_UNKNOWN_AGENTS_LISTED {
                    book.unknown.insert(agent);
                }
            }
        }
    }

    fn record_summary(&self, topology: &Topology, summary: &DatagramSummary) {
        Self::add(&self.flow_samples, summary.flow_samples);
        Self::add(&self.counter_samples, summary.counter_samples);
        Self::add(&self.pair_samples, summary.pair_samples.len() as u64);
        for (reason, n) in summary.skipped.iter() {
            Self::add(&self.skipped[reason.index()], n);
        }
        self.observe_agent(
            topology,
            summary.agent,
            summary.sub_agent_id,
            summary.sequence_number,
        );
    }

    fn record_error(&self, topology: &Topology, error: &CollectError) {
        Self::add(&self.malformed_datagrams, 1);
        // A malformed body still carries a sequence number: following it keeps the datagram
        // out of the lost count (it is counted as malformed instead).
        if let CollectError::Body {
            agent,
            sub_agent_id,
            sequence_number,
            ..
        } = *error
        {
            self.observe_agent(topology, agent, sub_agent_id, sequence_number);
        }
    }
}

/// Why the collector stopped before being asked to.
#[derive(Debug, Error)]
pub enum CollectorError {
    #[error("receiving sFlow datagrams failed")]
    Receive(#[source] std::io::Error),
    #[error("the consumer of the collected samples is gone")]
    SinkClosed,
}

/// Unix time in milliseconds (0 if the clock is before 1970).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Receives sFlow datagrams on `socket` until `shutdown` turns true (or its sender is dropped).
/// Each datagram with counted samples becomes one [`CollectedSamples`] batch, offered to `sink`
/// without waiting: when the consumer is behind, the batch is dropped and counted, so the socket
/// is never left unread. Interface counters of known agents go to `counters`.
pub async fn run_collector(
    socket: UdpSocket,
    topology: Arc<Topology>,
    sink: mpsc::Sender<CollectedSamples>,
    stats: Arc<CollectorStats>,
    counters: Arc<CounterTable>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), CollectorError> {
    let mut buf = vec![0; MAX_DATAGRAM_LEN];
    loop {
        if *shutdown.borrow_and_update() {
            return Ok(());
        }
        let (len, source) = tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                continue;
            }
            received = socket.recv_from(&mut buf) => received.map_err(CollectorError::Receive)?,
        };
        handle_datagram(&buf[..len], source, &topology, &sink, &stats, &counters)?;
    }
}

fn handle_datagram(
    bytes: &[u8],
    source: SocketAddr,
    topology: &Topology,
    sink: &mpsc::Sender<CollectedSamples>,
    stats: &CollectorStats,
    counters: &CounterTable,
) -> Result<(), CollectorError> {
    CollectorStats::add(&stats.datagrams, 1);
    CollectorStats::add(&stats.bytes, bytes.len() as u64);
    let summary = match classify_datagram(bytes, source, topology) {
        Ok(summary) => summary,
        Err(e) => {
            tracing::debug!("{e}");
            stats.record_error(topology, &e);
            return Ok(());
        }
    };
    stats.record_summary(topology, &summary);
    let Some(server) = summary.server else {
        return Ok(());
    };
    let now = unix_ms();
    if !summary.interface_counters.is_empty() {
        let refused = counters.update(
            summary.agent,
            &topology.server(server).name,
            &summary.interface_counters,
            now,
        );
        CollectorStats::add(&stats.counter_table_full, refused);
    }
    if summary.pair_samples.is_empty() {
        return Ok(());
    }
    let batch = CollectedSamples {
        agent: summary.agent,
        server,
        received_at_ms: now,
        samples: summary.pair_samples,
    };
    match sink.try_send(batch) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(batch)) => {
            CollectorStats::add(&stats.queue_full_batches, 1);
            CollectorStats::add(&stats.queue_full_samples, batch.samples.len() as u64);
            Ok(())
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(CollectorError::SinkClosed),
    }
}

#[cfg(test)]
mod tests;
