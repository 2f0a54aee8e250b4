//! Deep packet inspection: what a server's DPI module learns from the frames its virtual switch
//! mirrors to it. [`DpiEngine`] follows TCP connections (reassembling each direction in
//! sequence order) and UDP conversations, recognizes the application protocol from the payload
//! (never from the port), and aggregates what each conversation says into
//! [`AppLabel`]s per (client, server, server port, protocol): details, request and response
//! counts, and response times.
//!
//! Recognized: HTTP/1.x, TLS (ClientHello SNI and ALPN), DNS over UDP and TCP, PostgreSQL v3,
//! MySQL, Redis (RESP2/3) and NTP. Anything else is `tcp/PORT` or `udp/PORT`. Every table and
//! buffer is bounded by [`DpiConfig`]; what the bounds turn away is counted in [`DpiStats`].
//!
//! It uses the `wire` codecs for the headers and `hostlink`'s label type, and nothing else of
//! vmdep: how frames reach it (mirroring) and where labels go (the host link) belong to the host.

mod app;
mod tcp;
#[cfg(test)]
mod tests;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use foldhash::fast::RandomState;
use serde::Serialize;
use thiserror::Error;

use crate::hostlink::AppLabel;
use crate::wire::ethernet::ethertype;
use crate::wire::{
    ip_protocol, EthernetFrame, EthernetRepr, FrameRepr, Ipv4Packet, TcpFlags, TcpPacket, TcpRepr,
    TransportRepr, UdpPacket, UdpRepr, WireError,
};
use app::dns::{DnsMessage, DnsState};
use app::ntp::{NtpPacket, NtpState};
use app::{Dir, Protocol, Tally};
use tcp::{Context, Segment, TcpFlow};

/// The engine's bounds, and how strictly it reads frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpiConfig {
    /// TCP connections and UDP conversations followed at once; the frames of further ones are
    /// counted in [`DpiStats::frames_untracked`] and otherwise ignored.
    pub max_flows: usize,
    /// Bytes held per direction of a connection: delivered but not yet parsed, plus segments
    /// held out of order. A stream that needs more (a gap that does not fill, a message head
    /// larger than this) is abandoned.
    pub max_stream_bytes: usize,
    /// Bytes held by all connections together (the sum of the above); past it, the stream that
    /// would grow is abandoned.
    pub max_buffered_bytes: usize,
    /// Distinct details kept per label.
    pub max_details: usize,
    /// Labels kept; conversations that would need another are counted and not labeled.
    pub max_labels: usize,
    /// A flow that sees no frame for this long is forgotten (and labeled if it was undecided).
    pub idle_timeout: Duration,
    /// Refuse frames whose IPv4, TCP or UDP checksum is wrong. Turn off when the mirror
    /// delivers frames before checksum offload has filled them in (a VM's transmit path on a
    /// Linux interface with TX offload): their checksums are placeholders, not damage.
    pub verify_checksums: bool,
}

impl Default for DpiConfig {
    fn default() -> Self {
        DpiConfig {
            max_flows: 65_536,
            max_stream_bytes: 256 * 1024,
            max_buffered_bytes: 64 << 20,
            max_details: 16,
            max_labels: 65_536,
            idle_timeout: Duration::from_secs(120),
            verify_checksums: true,
        }
    }
}

/// What the engine saw and what its bounds turned away; counters since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DpiStats {
    pub frames: u64,
    /// Frames whose EtherType is not IPv4 (ARP, IPv6, ...).
    pub frames_not_ipv4: u64,
    /// IPv4 frames carrying neither TCP nor UDP.
    pub frames_not_tcp_udp: u64,
    /// Frames that do not parse (truncated, bad checksum, fragments).
    pub frames_malformed: u64,
    pub tcp_segments: u64,
    pub udp_datagrams: u64,
    /// Frames of new flows refused because the flow table was full.
    pub frames_untracked: u64,
    pub flows_started: u64,
    pub flows_closed: u64,
    pub flows_expired: u64,
    /// Flows followed right now.
    pub flows_active: u64,
    /// Bytes connections hold right now (unparsed, or held out of order).
    pub bytes_buffered: u64,
    /// Stream directions given up: a gap beyond the window, or more buffered than allowed.
    pub streams_abandoned: u64,
    /// Stream directions (or UDP datagrams) a recognized protocol's parser could not read.
    pub parse_failures: u64,
    /// Conversations left unlabeled because the label table was full.
    pub labels_refused: u64,
    /// Details not kept because their label had `max_details` already.
    pub details_dropped: u64,
}

/// Why a frame was not inspected. Each is also counted in [`DpiStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DpiFrameError {
    #[error("not an IPv4 frame (EtherType {0:#06x})")]
    NotIpv4(u16),
    #[error("IPv4 protocol {0} is neither TCP nor UDP")]
    NotTcpOrUdp(u8),
    #[error("malformed frame: {0}")]
    Malformed(#[from] WireError),
}

/// What one label aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct LabelKey {
    client: Ipv4Addr,
    server: Ipv4Addr,
    server_port: u16,
    protocol: Protocol,
}

/// The counts behind one label.
#[derive(Debug, Default)]
struct LabelStats {
    details: Vec<String>,
    requests: u64,
    responses: u64,
    /// Responses with a known request time, and the sum of those times.
    timed_responses: u64,
    response_time_sum: Duration,
}

/// The labels, hashed: they are looked up for every message parsed, and sorted only when read.
struct LabelTable {
    labels: HashMap<LabelKey, LabelStats, RandomState>,
    max_labels: usize,
    max_details: usize,
}

impl LabelTable {
    /// Makes sure `key` has a label, unless the table is full (counted).
    fn register(&mut self, key: LabelKey, stats: &mut DpiStats) {
        if self.labels.contains_key(&key) {
            return;
        }
        if self.labels.len() < self.max_labels {
            self.labels.insert(key, LabelStats::default());
        } else {
            stats.labels_refused += 1;
        }
    }

    fn get_mut(&mut self, key: &LabelKey) -> Option<&mut LabelStats> {
        self.labels.get_mut(key)
    }
}

/// Both endpoints of a flow in a fixed order, so that both directions find the same flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    low: (Ipv4Addr, u16),
    high: (Ipv4Addr, u16),
}

impl FlowKey {
    fn new(a: (Ipv4Addr, u16), b: (Ipv4Addr, u16)) -> Self {
        if a <= b {
            FlowKey { low: a, high: b }
        } else {
            FlowKey { low: b, high: a }
        }
    }
}

/// A UDP conversation: the first datagram's sender is the client (unless that datagram is an
/// answer whose query was missed: then its receiver is).
struct UdpFlow {
    last_seen: Duration,
    label: LabelKey,
    app: UdpApp,
}

/// The protocol of a UDP conversation, as its first datagram shows it.
enum UdpApp {
    Dns(DnsState),
    Ntp(NtpState),
    Other,
}

impl UdpApp {
    /// The protocol of a conversation that starts with `payload`, and whether its sender is
    /// the client.
    fn open(payload: &[u8]) -> (Self, Protocol, bool) {
        if let Some(m) = DnsMessage::parse(payload) {
            if m.is_plain_query() || m.is_answer() {
                return (UdpApp::Dns(DnsState::new()), Protocol::Dns, !m.response);
            }
        }
        if let Some(p) = NtpPacket::parse(payload) {
            return (UdpApp::Ntp(NtpState::new()), Protocol::Ntp, p.is_request());
        }
        (UdpApp::Other, Protocol::OtherUdp, true)
    }
}

/// Ports where a server listens, beyond the well-known range: the tie-breaker for the roles of
/// a connection whose SYN was not seen.
const SERVER_PORTS: [u16; 13] = [
    1433, 1521, 2049, 3306, 5432, 6379, 8080, 8443, 9042, 9092, 9200, 11211, 27017,
];

/// Whether `b` rather than `a` is the server of a connection seen without its handshake: the
/// side on a well-known or listed server port, else the lower port.
fn second_is_server(a: u16, b: u16) -> bool {
    let listening = |p: u16| p < 1024 || SERVER_PORTS.contains(&p);
    match (listening(a), listening(b)) {
        (false, true) => true,
        (true, false) => false,
        _ => b <= a,
    }
}

/// The deep-packet-inspection module of one server.
pub struct DpiEngine {
    config: DpiConfig,
    tcp: HashMap<FlowKey, TcpFlow, RandomState>,
    udp: HashMap<FlowKey, UdpFlow, RandomState>,
    labels: LabelTable,
    stats: DpiStats,
    /// When idle flows are next looked for.
    next_sweep: Duration,
    /// Bytes all connections hold.
    buffered: usize,
}

impl DpiEngine {
    pub fn new(config: DpiConfig) -> Self {
        let labels = LabelTable {
            labels: HashMap::default(),
            max_labels: config.max_labels,
            max_details: config.max_details,
        };
        DpiEngine {
            tcp: HashMap::default(),
            udp: HashMap::default(),
            labels,
            stats: DpiStats::default(),
            next_sweep: config.idle_timeout / 4,
            buffered: 0,
            config,
        }
    }

    pub fn config(&self) -> &DpiConfig {
        &self.config
    }

    /// Inspects one mirrored frame seen at `at` (a monotonic clock: the same one for every
    /// frame). Frames that are not whole IPv4 TCP or UDP (with right checksums, unless
    /// [`DpiConfig::verify_checksums`] is off) are counted and refused with the reason; nothing
    /// a frame holds can make this panic.
    pub fn observe(&mut self, at: Duration, frame: &[u8]) -> Result<(), DpiFrameError> {
        self.stats.frames += 1;
        if at >= self.next_sweep {
            self.expire_idle(at);
        }
        let parsed = match classify(frame, self.config.verify_checksums) {
            Ok(parsed) => parsed,
            Err(e) => {
                let counter = match e {
                    DpiFrameError::NotIpv4(_) => &mut self.stats.frames_not_ipv4,
                    DpiFrameError::NotTcpOrUdp(_) => &mut self.stats.frames_not_tcp_udp,
                    DpiFrameError::Malformed(_) => &mut self.stats.frames_malformed,
                };
                *counter += 1;
                return Err(e);
            }
        };
        let (src, dst) = (parsed.src, parsed.dst);
        match parsed.transport {
            TransportRepr::Tcp(t) => {
                self.stats.tcp_segments += 1;
                self.tcp_segment(at, (src, t.src_port), (dst, t.dst_port), &t, parsed.payload);
            }
            TransportRepr::Udp(u) => {
                self.stats.udp_datagrams += 1;
                self.udp_datagram(at, (src, u.src_port), (dst, u.dst_port), parsed.payload);
            }
        }
        Ok(())
    }

    /// The labels so far, ordered by client, server, server port and protocol. A connection
    /// appears once its protocol is recognized (or found unrecognizable, or it ended); counts
    /// are cumulative.
    pub fn labels(&self) -> Vec<AppLabel> {
        let mut sorted: Vec<_> = self.labels.labels.iter().collect();
        sorted.sort_unstable_by_key(|(key, _)| **key);
        sorted
            .into_iter()
            .map(|(key, l)| AppLabel {
                protocol: key.protocol.name(key.server_port),
                client: key.client,
                server: key.server,
                server_port: key.server_port,
                details: l.details.clone(),
                requests: l.requests,
                responses: l.responses,
                mean_response_ms: (l.timed_responses > 0)
                    .then(|| l.response_time_sum.as_secs_f64() * 1000.0 / l.timed_responses as f64),
            })
            .collect()
    }

    pub fn stats(&self) -> DpiStats {
        DpiStats {
            flows_active: (self.tcp.len() + self.udp.len()) as u64,
            bytes_buffered: self.buffered as u64,
            ..self.stats
        }
    }

    /// Forgets the flows idle for [`DpiConfig::idle_timeout`] at `now`, labeling undecided
    /// connections by their port. `observe` does this on its own as frames arrive; call it to
    /// expire flows while no frames come.
    pub fn expire_idle(&mut self, now: Duration) {
        let idle = self.config.idle_timeout;
        let is_idle = |last_seen: Duration| now.saturating_sub(last_seen) >= idle;
        let mut cx = Context {
            labels: &mut self.labels,
            stats: &mut self.stats,
            max_stream_bytes: self.config.max_stream_bytes,
            buffered: &mut self.buffered,
            max_buffered_bytes: self.config.max_buffered_bytes,
        };
        self.tcp.retain(|_, flow| {
            if !is_idle(flow.last_seen) {
                return true;
            }
            flow.finish(&mut cx);
            cx.stats.flows_expired += 1;
            false
        });
        let before = self.udp.len();
        self.udp.retain(|_, flow| !is_idle(flow.last_seen));
        self.stats.flows_expired += (before - self.udp.len()) as u64;
        // A quarter of the timeout late at most, without walking the table on every frame.
        self.next_sweep = now + (idle / 4).max(Duration::from_millis(1));
    }

    fn flows(&self) -> usize {
        self.tcp.len() + self.udp.len()
    }

    fn tcp_segment(
        &mut self,
        at: Duration,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        tcp: &TcpRepr,
        payload: &[u8],
    ) {
        let key = FlowKey::new(src, dst);
        let (syn, ack) = (
            tcp.flags.contains(TcpFlags::SYN),
            tcp.flags.contains(TcpFlags::ACK),
        );
        let mut cx = Context {
            labels: &mut self.labels,
            stats: &mut self.stats,
            max_stream_bytes: self.config.max_stream_bytes,
            buffered: &mut self.buffered,
            max_buffered_bytes: self.config.max_buffered_bytes,
        };
        // A SYN that is not its connection's (retransmitted) SYN opens a new connection on the
        // same ports: the old one is over.
        if syn && !ack {
            if let Some(old) = self.tcp.get_mut(&key) {
                if old.client != src || old.client_isn.is_some_and(|isn| isn != tcp.seq_number) {
                    old.finish(&mut cx);
                    cx.stats.flows_closed += 1;
                    self.tcp.remove(&key);
                }
            }
        }
        let flows = self.tcp.len() + self.udp.len();
        let flow = match self.tcp.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                // Segments without a SYN or payload (stray ACKs, FINs, RSTs, often of a
                // connection just closed) do not start a flow.
                if !syn && payload.is_empty() {
                    return;
                }
                if flows >= self.config.max_flows {
                    cx.stats.frames_untracked += 1;
                    return;
                }
                cx.stats.flows_started += 1;
                let src_is_client = match (syn, ack) {
                    (true, false) => true,
                    (true, true) => false,
                    _ => second_is_server(src.1, dst.1),
                };
                let (client, server) = if src_is_client {
                    (src, dst)
                } else {
                    (dst, src)
                };
                e.insert(TcpFlow::new(client, server, at, !syn))
            }
        };
        let segment = Segment {
            dir: if src == flow.client {
                Dir::ToServer
            } else {
                Dir::ToClient
            },
            seq: tcp.seq_number,
            syn,
            fin: tcp.flags.contains(TcpFlags::FIN),
            rst: tcp.flags.contains(TcpFlags::RST),
            ack: ack.then_some(tcp.ack_number),
            payload,
        };
        if flow.segment(at, &segment, &mut cx) {
            flow.finish(&mut cx);
            cx.stats.flows_closed += 1;
            self.tcp.remove(&key);
        }
    }

    fn udp_datagram(
        &mut self,
        at: Duration,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        payload: &[u8],
    ) {
        let key = FlowKey::new(src, dst);
        if !self.udp.contains_key(&key) {
            if self.flows() >= self.config.max_flows {
                self.stats.frames_untracked += 1;
                return;
            }
            self.stats.flows_started += 1;
            let (app, protocol, sender_is_client) = UdpApp::open(payload);
            let (client, server) = if sender_is_client {
                (src, dst)
            } else {
                (dst, src)
            };
            let label = LabelKey {
                client: client.0,
                server: server.0,
                server_port: server.1,
                protocol,
            };
            self.labels.register(label, &mut self.stats);
            let flow = UdpFlow {
                last_seen: at,
                label,
                app,
            };
            self.udp.insert(key, flow);
        }
        let Some(flow) = self.udp.get_mut(&key) else {
            return;
        };
        flow.last_seen = at;
        let mut tally = Tally::new(
            at,
            self.labels.labels.get_mut(&flow.label),
            self.labels.max_details,
            &mut self.stats.details_dropped,
        );
        // An exchange over UDP ends with its answer; clients use a fresh port per query, so
        // waiting for the idle timeout would fill the table with finished exchanges.
        let finished = match &mut flow.app {
            UdpApp::Dns(state) => DnsMessage::parse(payload).map(|m| {
                state.message(&m, &mut tally);
                m.response && state.all_answered()
            }),
            UdpApp::Ntp(state) => NtpPacket::parse(payload).map(|p| {
                state.packet(&p, &mut tally);
                !p.is_request() && state.all_answered()
            }),
            UdpApp::Other => Some(false),
        };
        match finished {
            Some(true) => {
                self.udp.remove(&key);
                self.stats.flows_closed += 1;
            }
            Some(false) => {}
            None => self.stats.parse_failures += 1,
        }
    }
}

/// What the engine reads of a frame.
struct Inspected<'a> {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    transport: TransportRepr,
    payload: &'a [u8],
}

/// Parses a frame down to its transport payload, telling apart why it cannot be inspected.
fn classify(frame: &[u8], verify_checksums: bool) -> Result<Inspected<'_>, DpiFrameError> {
    let eth = EthernetFrame::new_checked(frame)?;
    let eth_repr = EthernetRepr::parse(&eth)?;
    if eth_repr.ethertype != ethertype::IPV4 {
        return Err(DpiFrameError::NotIpv4(eth_repr.ethertype));
    }
    let ip = Ipv4Packet::new_checked(eth.payload())?;
    if !matches!(ip.protocol(), ip_protocol::TCP | ip_protocol::UDP) {
        return Err(DpiFrameError::NotTcpOrUdp(ip.protocol()));
    }
    if verify_checksums {
        let f = FrameRepr::parse(frame)?;
        return Ok(Inspected {
            src: f.ipv4.src_addr,
            dst: f.ipv4.dst_addr,
            transport: f.transport,
            payload: f.payload,
        });
    }
    // The same checks as `FrameRepr::parse`, checksums aside.
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(WireError::Malformed("IPv4 fragment").into());
    }
    // Sliced from `frame` rather than through the views, to keep the frame's lifetime.
    let segment = frame
        .get(eth.header_len() + ip.header_len()..eth.header_len() + usize::from(ip.total_len()))
        .ok_or(WireError::Truncated)?;
    let (transport, header_len) = if ip.protocol() == ip_protocol::TCP {
        let p = TcpPacket::new_checked(segment)?;
        let tcp = TcpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq_number: p.seq_number(),
            ack_number: p.ack_number(),
            flags: p.flags(),
            window_len: p.window_len(),
            urgent_at: p.urgent_at(),
        };
        (TransportRepr::Tcp(tcp), p.header_len())
    } else {
        let p = UdpPacket::new_checked(segment)?;
        if usize::from(p.len()) != segment.len() {
            return Err(WireError::Malformed("UDP length disagrees with IPv4 length").into());
        }
        let udp = UdpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
        };
        (TransportRepr::Udp(udp), crate::wire::udp::HEADER_LEN)
    };
    Ok(Inspected {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        transport,
        payload: &segment[header_len..],
    })
}
