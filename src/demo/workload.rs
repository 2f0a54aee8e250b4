//! The demo's workload: a seeded generator of real Ethernet/IPv4/TCP/UDP frames exchanged by
//! the VMs of a three-tier application, together with the ground truth the measurements must
//! find. It owns the application model (who talks to whom, with which protocol and how often),
//! the TCP and protocol encodings of that traffic, and the truth; it uses [`crate::wire`] to
//! write the headers and [`Topology`] to find the VMs, and touches nothing else.
//!
//! # The application
//!
//! VMs are found by name (see [`VM_ROLES`]); every VM with calls to make resolves the names of
//! its servers through `dns1` first, and again when the answer's TTL runs out.
//!
//! | client → server | port | protocol |
//! | --- | --- | --- |
//! | client1, client2 → web1, web2 | 80/tcp | HTTP/1.1 (GET, POST, Host header) |
//! | client1, client2 → web1, web2 | 443/tcp | TLS 1.3 (ClientHello with SNI, ServerHello, encrypted records) |
//! | web1, web2 → app1, app2 | 8080/tcp | HTTP/1.1 (JSON API) |
//! | app1, app2 → db1 | 5432/tcp | PostgreSQL protocol v3 (startup, simple query) |
//! | app1, app2 → cache1 | 6379/tcp | Redis RESP2 (GET, SET, INCR) |
//! | batch1 → db2 | 3306/tcp | MySQL client/server protocol (greeting, login, COM_QUERY) |
//! | every caller → dns1 | 53/udp | DNS (A queries for `<vm>.dc.internal`) |
//! | backup1 → db2 | 9102/tcp | opaque bulk stream, db2 → backup1 (labelled by port only) |
//! | a few random pairs | 123/udp | NTP client/server exchanges (background noise) |
//!
//! Same-server pairs (client1→web1, client2→web2, client1→dns1, app1/app2→cache1, backup1→db2)
//! never reach a P4 switch; all others do.
//!
//! # Frames and timing
//!
//! TCP connections open with a three-way handshake (SYN and SYN-ACK carry an MSS option of
//! 1460), carry segments of at most 1460 payload bytes whose sequence and acknowledgement numbers
//! advance by the payload, are acknowledged like Linux's delayed ACK does it (every second
//! segment at once, a lone one after 40 ms unless data carries the ACK first), and close with
//! FIN, FIN and ACK. IPv4 headers have TTL 64, don't-fragment, a per-VM identification counter
//! and a correct checksum; TCP and UDP checksums are right. Frames are as a VM hands them to its
//! virtual switch: no FCS and no padding to 60 bytes. A VM sends to another VM's MAC when both
//! are on the same server, otherwise to its server's uplink switch port (the fabric's gateway).
//!
//! `at` is the time a frame enters its VM's virtual switch. A reply leaves the answering VM a
//! one-way delay (20 µs within a server, 60 µs across the fabric) plus a service time after the
//! request, so the response times in [`AppTruth`] are what a DPI module measures between the
//! request's last frame and the response's first.
//!
//! # Determinism and memory
//!
//! Everything follows from [`WorkloadSpec`]: the same spec gives the same frames, byte for byte,
//! on the same machine (exponential gaps use the platform's `ln`). Each flow draws its sessions
//! from its own ChaCha8 stream and each session expands from its own seed, so
//! [`three_tier_stream`] holds only the sessions under way: long runs stream in bounded memory,
//! and every emulated host can regenerate the whole workload and keep its own VMs' frames.

mod apps;
pub mod conversations;
mod dns;
mod http;
mod mysql;
mod ntp;
mod postgres;
mod redis;
mod tcp;
mod tls;

#[cfg(test)]
mod checks;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::Ipv4Addr;
use std::time::Duration;

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::controller::topology::{ServerId, Topology, VmId};
use crate::wire::{ethernet, ipv4, EthernetAddress, FrameRepr, TcpRepr, TransportRepr, UdpRepr};

use apps::{Flow, FlowClock};

/// The VMs the three-tier workload needs, by name, with their role in the application.
pub const VM_ROLES: [(&str, &str); 12] = [
    ("client1", "client"),
    ("client2", "client"),
    ("web1", "web server"),
    ("web2", "web server"),
    ("app1", "application server"),
    ("app2", "application server"),
    ("cache1", "cache"),
    ("db1", "database"),
    ("db2", "database"),
    ("batch1", "batch job"),
    ("backup1", "backup server"),
    ("dns1", "dns server"),
];

/// Shortest and longest run [`WorkloadSpec::duration`] accepts.
pub const MIN_DURATION: Duration = Duration::from_secs(2);
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Range of [`WorkloadSpec::scale`].
pub const MIN_SCALE: f64 = 0.01;
pub const MAX_SCALE: f64 = 100.0;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Length of the run; every frame's `at` is below it.
    pub duration: Duration,
    /// Seeds every random choice.
    pub seed: u64,
    /// Multiplies every rate (sessions, lookups, the backup stream's chunks). 1.0 gives about
    /// 1,400 frames a second.
    pub scale: f64,
}

impl Default for WorkloadSpec {
    /// 15 s at scale 1: about 21,000 frames (11 MB).
    fn default() -> Self {
        WorkloadSpec {
            duration: Duration::from_secs(15),
            seed: 1,
            scale: 1.0,
        }
    }
}

/// Why a workload cannot be generated.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum WorkloadError {
    #[error(
        "the topology has no VM named {name:?}, which the three-tier workload needs as its {role}"
    )]
    MissingVm { name: String, role: &'static str },
    #[error("workload duration {0:?} is outside {MIN_DURATION:?}..={MAX_DURATION:?}")]
    Duration(Duration),
    #[error("workload scale {0} is not a number in [{MIN_SCALE}, {MAX_SCALE}]")]
    Scale(f64),
}

/// One frame as a VM sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedFrame {
    /// Since the start of the run.
    pub at: Duration,
    pub src_vm: VmId,
    pub dst_vm: VmId,
    /// The server hosting `src_vm`, whose virtual switch the frame enters.
    pub src_server: ServerId,
    /// Ethernet II through the end of the IPv4 datagram, no FCS.
    pub frame: Vec<u8>,
}

/// A whole run in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Sorted by `at`.
    pub frames: Vec<TimedFrame>,
    pub truth: GroundTruth,
}

impl Workload {
    /// The frames one server's VMs send, in order (what that server's emulated host emits).
    pub fn frames_from_server(&self, server: ServerId) -> impl Iterator<Item = &TimedFrame> + '_ {
        self.frames.iter().filter(move |f| f.src_server == server)
    }
}

/// What the measurements should find.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Every directed VM pair that exchanged a frame, sorted by (src, dst) in topology order.
    pub pairs: Vec<PairTruth>,
    /// Every (client, server, port) that exchanged a frame, sorted likewise.
    pub applications: Vec<AppTruth>,
}

impl GroundTruth {
    pub fn pair(&self, src: &str, dst: &str) -> Option<&PairTruth> {
        self.pairs.iter().find(|p| p.src == src && p.dst == dst)
    }

    pub fn application(&self, client: &str, server: &str, port: u16) -> Option<&AppTruth> {
        self.applications
            .iter()
            .find(|a| a.client == client && a.server == server && a.server_port == port)
    }
}

/// Exact traffic of one directed VM pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairTruth {
    pub src: String,
    pub dst: String,
    pub src_ipv4: Ipv4Addr,
    pub dst_ipv4: Ipv4Addr,
    /// True when both VMs are on one server (the frames never reach a P4 switch).
    pub same_server: bool,
    pub packets: u64,
    /// Sum of Ethernet frame lengths without FCS, as a P4 switch's direct counter counts them.
    pub bytes: u64,
}

/// The transport of an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

/// The application protocol of a dependency, as DPI should name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppProtocol {
    Http,
    Tls,
    Postgresql,
    Redis,
    Mysql,
    Dns,
    Ntp,
    /// Payload without a recognisable protocol; only the port names it.
    Opaque,
}

/// The application-level truth of one (client, server, server port).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppTruth {
    pub client: String,
    pub server: String,
    pub client_ipv4: Ipv4Addr,
    pub server_ipv4: Ipv4Addr,
    pub transport: Transport,
    pub server_port: u16,
    pub protocol: AppProtocol,
    /// The VMs' roles ([`VM_ROLES`]).
    pub client_role: String,
    pub server_role: String,
    /// Host names the traffic carries: HTTP Host headers, TLS SNI, DNS query names.
    pub names: Vec<String>,
    /// TCP connections opened (SYNs sent); 0 for UDP.
    pub connections: u64,
    /// Application requests: HTTP requests, TLS request bursts after the handshake, SQL queries,
    /// Redis commands, DNS and NTP queries, the backup's stream requests. Handshakes (TLS hello,
    /// PostgreSQL startup, MySQL greeting and login) and goodbyes are not requests.
    pub requests: u64,
    /// Replies to those requests (every request is answered).
    pub responses: u64,
    /// Transport payload bytes client → server and server → client.
    pub payload_bytes_to_server: u64,
    pub payload_bytes_to_client: u64,
    /// From a request's last frame to its response's first frame; None without responses.
    pub response_time: Option<ResponseTimes>,
}

/// Response time statistics, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseTimes {
    pub min_us: u64,
    pub mean_us: u64,
    pub max_us: u64,
}

/// Generates the three-tier workload in memory.
pub fn three_tier(topology: &Topology, spec: WorkloadSpec) -> Result<Workload, WorkloadError> {
    let mut stream = three_tier_stream(topology, spec)?;
    let frames = stream.by_ref().collect();
    Ok(Workload {
        frames,
        truth: stream.truth(),
    })
}

/// Generates the three-tier workload lazily, in time order, holding only the sessions under way.
/// Yields exactly the frames of [`three_tier`].
pub fn three_tier_stream(
    topology: &Topology,
    spec: WorkloadSpec,
) -> Result<WorkloadStream, WorkloadError> {
    if !(MIN_DURATION..=MAX_DURATION).contains(&spec.duration) {
        return Err(WorkloadError::Duration(spec.duration));
    }
    if !(MIN_SCALE..=MAX_SCALE).contains(&spec.scale) {
        return Err(WorkloadError::Scale(spec.scale));
    }
    let mut vms = Vec::with_capacity(VM_ROLES.len());
    for (name, role) in VM_ROLES {
        let id = topology
            .vm_id(name)
            .ok_or_else(|| WorkloadError::MissingVm {
                name: name.to_string(),
                role,
            })?;
        let vm = topology.vm(id);
        let server = topology.server(vm.server);
        vms.push(VmEndpoint {
            id,
            name: vm.name.clone(),
            role,
            ipv4: vm.ipv4,
            mac: EthernetAddress(vm.mac.octets()),
            server: vm.server,
            gateway: EthernetAddress(topology.port_mac(server.uplink).octets()),
        });
    }
    let mut master = ChaCha8Rng::seed_from_u64(spec.seed);
    let flows = apps::three_tier_flows(&vms, &mut master);
    let duration_ns = spec.duration.as_nanos() as u64;
    let mut clocks = BinaryHeap::new();
    for (index, flow) in flows.iter().enumerate() {
        let rng = ChaCha8Rng::seed_from_u64(master.next_u64());
        if let Some(clock) = FlowClock::start(index, flow, spec.scale, duration_ns, rng) {
            clocks.push(Reverse(clock));
        }
    }
    let ephemeral_ports = vms
        .iter()
        .map(|_| master.random_range(EPHEMERAL_PORTS))
        .collect();
    let ip_idents = vms.iter().map(|_| master.random()).collect();
    let truth = TruthBuilder::new(&flows);
    Ok(WorkloadStream {
        vms,
        flows,
        scale: spec.scale,
        duration_ns,
        clocks,
        pending: BinaryHeap::new(),
        next_order: 0,
        ephemeral_ports,
        ip_idents,
        truth,
    })
}

/// Linux's default ephemeral port range.
const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 32768..=60999;

/// A VM of the workload, with what its frames need.
#[derive(Debug, Clone)]
struct VmEndpoint {
    id: VmId,
    name: String,
    role: &'static str,
    ipv4: Ipv4Addr,
    mac: EthernetAddress,
    server: ServerId,
    /// The MAC of the server's uplink switch port, where frames to other servers go.
    gateway: EthernetAddress,
}

/// Index of a VM in the workload's own table (the order of [`VM_ROLES`]).
type VmIndex = usize;

/// Times inside the generator: nanoseconds since the start of the run.
type Nanos = u64;

/// What a frame means to the application truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Note {
    Plain,
    /// A SYN: a connection opens.
    Open,
    /// The last frame of a request.
    Request,
    /// The first frame of a response, and its response time.
    Response(Nanos),
}

/// The headers and payload of a frame not yet written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    Tcp {
        repr: TcpRepr,
        /// Carries an MSS option (SYN and SYN-ACK).
        mss_option: bool,
        payload: Vec<u8>,
    },
    Udp {
        repr: UdpRepr,
        payload: Vec<u8>,
    },
}

impl Body {
    fn payload_len(&self) -> usize {
        match self {
            Body::Tcp { payload, .. } | Body::Udp { payload, .. } => payload.len(),
        }
    }
}

/// A frame a session has planned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    at: Nanos,
    src: VmIndex,
    dst: VmIndex,
    /// Index of the flow (= application) in the flow table.
    flow: usize,
    note: Note,
    body: Body,
}

/// The MSS option: kind 2, length 4, 1460.
const MSS_OPTION: [u8; 4] = [2, 4, 0x05, 0xb4];
/// The largest TCP payload of a segment.
const MSS: usize = 1460;

/// Writes a frame. Payloads are bounded by construction (a TCP segment carries at most one MSS,
/// a UDP datagram under 600 bytes), so no length can overflow IPv4's.
fn build_frame(src: &VmEndpoint, dst: &VmEndpoint, ident: u16, body: &Body) -> Vec<u8> {
    let dst_mac = if src.server == dst.server {
        dst.mac
    } else {
        src.gateway
    };
    let (transport, payload, mss_option) = match body {
        Body::Tcp {
            repr,
            mss_option,
            payload,
        } => (TransportRepr::Tcp(*repr), payload, *mss_option),
        Body::Udp { repr, payload } => (TransportRepr::Udp(*repr), payload, false),
    };
    let mut repr = FrameRepr::new(
        src.mac, dst_mac, None, src.ipv4, dst.ipv4, transport, payload,
    )
    .expect("workload payloads are far below the IPv4 limit");
    repr.ipv4.ident = ident;
    match (mss_option, transport) {
        (true, TransportRepr::Tcp(tcp)) => with_mss_option(&repr, &tcp),
        _ => repr
            .to_vec()
            .expect("FrameRepr::new made the headers agree"),
    }
}

/// A SYN or SYN-ACK frame with the MSS option. `wire` writes option-less TCP headers, so this
/// writes the frame from its parts: Ethernet, IPv4 with the longer length, TCP with a data
/// offset of six words, the option, the checksum.
fn with_mss_option(repr: &FrameRepr, tcp: &TcpRepr) -> Vec<u8> {
    let mut ipv4 = repr.ipv4;
    ipv4.payload_len += MSS_OPTION.len() as u16;
    let l3 = ethernet::HEADER_LEN;
    let l4 = l3 + ipv4::HEADER_LEN;
    let tcp_header = crate::wire::tcp::HEADER_LEN + MSS_OPTION.len();
    let mut buf = vec![0; l4 + tcp_header + repr.payload.len()];
    repr.ethernet
        .emit(&mut buf)
        .expect("buffer holds the header");
    ipv4.emit(&mut buf[l3..]).expect("buffer holds the header");
    let segment = &mut buf[l4..];
    tcp.emit(segment).expect("buffer holds the header");
    // Data offset in 32-bit words, above the NS flag bit.
    segment[12] = ((tcp_header / 4) as u8) << 4 | segment[12] & 0x01;
    segment[crate::wire::tcp::HEADER_LEN..tcp_header].copy_from_slice(&MSS_OPTION);
    segment[tcp_header..].copy_from_slice(repr.payload);
    crate::wire::tcp::fill_checksum(segment, ipv4.src_addr, ipv4.dst_addr)
        .expect("a segment of one MSS has a 16-bit length");
    buf
}

/// The frames of the three-tier workload, generated lazily in time order.
#[derive(Debug)]
pub struct WorkloadStream {
    vms: Vec<VmEndpoint>,
    flows: Vec<Flow>,
    scale: f64,
    duration_ns: Nanos,
    /// When each flow starts its next session.
    clocks: BinaryHeap<Reverse<FlowClock>>,
    /// Planned frames of the sessions under way, earliest first.
    pending: BinaryHeap<Reverse<Queued>>,
    next_order: u64,
    /// Per VM, the next ephemeral port it binds.
    ephemeral_ports: Vec<u16>,
    /// Per VM, the next IPv4 identification it writes.
    ip_idents: Vec<u16>,
    truth: TruthBuilder,
}

/// A planned frame in the heap, ordered by time and then by planning order (unique).
#[derive(Debug)]
struct Queued {
    at: Nanos,
    order: u64,
    frame: Pending,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

impl WorkloadStream {
    /// The truth of the frames yielded so far (all of it once the stream is exhausted).
    pub fn truth(&self) -> GroundTruth {
        self.truth.finish(&self.vms, &self.flows)
    }

    /// Only the frames one server's VMs send.
    pub fn frames_from_server(self, server: ServerId) -> impl Iterator<Item = TimedFrame> {
        self.filter(move |f| f.src_server == server)
    }

    /// Expands the next session into pending frames.
    fn start_session(&mut self) {
        let Some(Reverse(mut clock)) = self.clocks.pop() else {
            return;
        };
        let flow = &self.flows[clock.flow];
        let seed = clock.rng.next_u64();
        let port = &mut self.ephemeral_ports[flow.client];
        let client_port = *port;
        *port = if *port == *EPHEMERAL_PORTS.end() {
            *EPHEMERAL_PORTS.start()
        } else {
            *port + 1
        };
        let frames = apps::expand_session(
            flow,
            clock.flow,
            &self.vms,
            clock.next_start,
            self.duration_ns,
            client_port,
            &mut ChaCha8Rng::seed_from_u64(seed),
        );
        for frame in frames {
            self.pending.push(Reverse(Queued {
                at: frame.at,
                order: self.next_order,
                frame,
            }));
            self.next_order += 1;
        }
        if clock.advance(flow, self.scale, self.duration_ns) {
            self.clocks.push(Reverse(clock));
        }
    }
}

impl Iterator for WorkloadStream {
    type Item = TimedFrame;

    fn next(&mut self) -> Option<TimedFrame> {
        loop {
            let next_frame = self.pending.peek().map(|Reverse(q)| q.at);
            let next_session = self.clocks.peek().map(|Reverse(c)| c.next_start);
            match (next_frame, next_session) {
                (None, None) => return None,
                // A session's frames never precede its start, so every frame before the next
                // start is final.
                (Some(f), Some(s)) if f < s => break,
                (Some(_), None) => break,
                _ => self.start_session(),
            }
        }
        let Reverse(Queued { frame: pending, .. }) = self.pending.pop()?;
        let ident = &mut self.ip_idents[pending.src];
        let frame = build_frame(
            &self.vms[pending.src],
            &self.vms[pending.dst],
            *ident,
            &pending.body,
        );
        *ident = ident.wrapping_add(1);
        self.truth.record(&pending, frame.len(), &self.flows);
        Some(TimedFrame {
            at: Duration::from_nanos(pending.at),
            src_vm: self.vms[pending.src].id,
            dst_vm: self.vms[pending.dst].id,
            src_server: self.vms[pending.src].server,
            frame,
        })
    }
}

/// Accumulates the truth frame by frame.
#[derive(Debug, Clone)]
struct TruthBuilder {
    /// (packets, bytes) per (src, dst).
    pairs: BTreeMap<(VmIndex, VmIndex), (u64, u64)>,
    /// Per flow.
    apps: Vec<AppCounts>,
}

#[derive(Debug, Clone, Default)]
struct AppCounts {
    frames: u64,
    connections: u64,
    requests: u64,
    responses: u64,
    to_server: u64,
    to_client: u64,
    rt_sum: u128,
    rt_min: Nanos,
    rt_max: Nanos,
}

impl TruthBuilder {
    fn new(flows: &[Flow]) -> Self {
        TruthBuilder {
            pairs: BTreeMap::new(),
            apps: vec![AppCounts::default(); flows.len()],
        }
    }

    fn record(&mut self, frame: &Pending, len: usize, flows: &[Flow]) {
        let pair = self.pairs.entry((frame.src, frame.dst)).or_default();
        pair.0 += 1;
        pair.1 += len as u64;
        let app = &mut self.apps[frame.flow];
        app.frames += 1;
        let payload = frame.body.payload_len() as u64;
        if frame.src == flows[frame.flow].client {
            app.to_server += payload;
        } else {
            app.to_client += payload;
        }
        match frame.note {
            Note::Plain => {}
            Note::Open => app.connections += 1,
            Note::Request => app.requests += 1,
            Note::Response(rt) => {
                if app.responses == 0 || rt < app.rt_min {
                    app.rt_min = rt;
                }
                app.rt_max = app.rt_max.max(rt);
                app.rt_sum += u128::from(rt);
                app.responses += 1;
            }
        }
    }

    fn finish(&self, vms: &[VmEndpoint], flows: &[Flow]) -> GroundTruth {
        let mut counted: Vec<_> = self.pairs.iter().collect();
        counted.sort_by_key(|(&(s, d), _)| (vms[s].id, vms[d].id));
        let pairs = counted
            .into_iter()
            .map(|(&(s, d), &(packets, bytes))| PairTruth {
                src: vms[s].name.clone(),
                dst: vms[d].name.clone(),
                src_ipv4: vms[s].ipv4,
                dst_ipv4: vms[d].ipv4,
                same_server: vms[s].server == vms[d].server,
                packets,
                bytes,
            })
            .collect();
        let mut seen: Vec<_> = flows
            .iter()
            .zip(&self.apps)
            .filter(|(_, counts)| counts.frames > 0)
            .collect();
        seen.sort_by_key(|(f, _)| (vms[f.client].id, vms[f.server].id, f.port));
        let applications = seen
            .into_iter()
            .map(|(flow, c)| {
                let (client, server) = (&vms[flow.client], &vms[flow.server]);
                AppTruth {
                    client: client.name.clone(),
                    server: server.name.clone(),
                    client_ipv4: client.ipv4,
                    server_ipv4: server.ipv4,
                    transport: flow.transport(),
                    server_port: flow.port,
                    protocol: flow.protocol(),
                    client_role: client.role.to_string(),
                    server_role: server.role.to_string(),
                    names: flow.names(vms),
                    connections: c.connections,
                    requests: c.requests,
                    responses: c.responses,
                    payload_bytes_to_server: c.to_server,
                    payload_bytes_to_client: c.to_client,
                    response_time: (c.responses > 0).then(|| ResponseTimes {
                        min_us: c.rt_min / 1000,
                        mean_us: (c.rt_sum / u128::from(c.responses) / 1000) as u64,
                        max_us: c.rt_max / 1000,
                    }),
                }
            })
            .collect();
        GroundTruth {
            pairs,
            applications,
        }
    }
}
