//! The virtual switch's forwarding core: one port per VM plus the uplink, forwarding by
//! destination IPv4 address, exact counts of same-server pairs, 1-in-N sampling at every
//! port's ingress and the copy of same-server frames and mirrored pairs' frames. Synchronous
//! and lock-free inside: callers hold the one lock around it (`super::Shared`), never across an
//! await.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use std::net::UdpSocket;
use tokio::sync::mpsc;

use super::sampling::Sampler;
use crate::hostlink::{LocalPairCount, PairAddrs};
use crate::sflow::{IfCounters, Interface};
use crate::wire::HeaderSummary;

/// The uplink's port index; VM ports follow it in the topology's order of the server's VMs.
pub(crate) const UPLINK: usize = 0;
/// Bytes of a frame a flow sample carries (the raw header record), as Open vSwitch's default.
pub const SAMPLED_HEADER_BYTES: usize = 128;
/// What the generic interface counters report as the ports' speed: 10 Gb/s, a virtual NIC's
/// usual nominal speed.
const PORT_SPEED: u64 = 10_000_000_000;

/// The sFlow ifIndex of a port index: the uplink is 1, the server's VMs 2, 3, ...
pub(crate) fn if_index(port: usize) -> u32 {
    port as u32 + 1
}

/// What the vswitch did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// Delivered to the VM port with this ifIndex.
    Vm {
        if_index: u32,
    },
    /// Sent out of the uplink.
    Uplink,
    Discarded(Discard),
}

/// Why a frame went nowhere. Every discard is counted on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// Shorter than an Ethernet header, or an IPv4 header that cannot be read (`in_errors`).
    Malformed,
    /// Not IPv4: the fabric routes IPv4 only (`in_unknown_protos`).
    NotIpv4,
    /// From the uplink, for an address that is no VM of this server (`in_discards`).
    UnknownDestination,
    /// The destination VM's receive queue was full, or its port was dropped (`out_discards`).
    VmQueueFull,
    /// The uplink socket refused the datagram (`out_discards` of the uplink).
    UplinkSendFailed,
    /// The host is shutting down (`in_discards`).
    Stopped,
}

impl Discard {
    /// The sFlow v5 discard reason an output `interface` of format 1 carries: ICMP unreachable
    /// codes (1 = host unreachable) or 256 and up (256 unknown, 259 no buffer space).
    fn sflow_reason(self) -> u32 {
        match self {
            Discard::UnknownDestination => 1,
            Discard::VmQueueFull | Discard::UplinkSendFailed => 259,
            Discard::Malformed | Discard::NotIpv4 | Discard::Stopped => 256,
        }
    }
}

/// A frame copied for deep packet inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirroredFrame {
    /// When the vswitch saw it, since the host started.
    pub at: Duration,
    pub frame: Vec<u8>,
}

/// A port's counters, from the vswitch's side as on a switch: `in` is what the port received
/// (for a VM port, what the VM sent), `out` what it sent (what the VM received).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortCounters {
    pub in_packets: u64,
    pub in_octets: u64,
    pub in_unicast: u64,
    pub in_multicast: u64,
    pub in_broadcast: u64,
    pub in_discards: u64,
    pub in_errors: u64,
    pub in_unknown_protos: u64,
    pub out_packets: u64,
    pub out_octets: u64,
    pub out_unicast: u64,
    pub out_multicast: u64,
    pub out_broadcast: u64,
    pub out_discards: u64,
}

/// Unicast, multicast or broadcast, by the destination MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cast {
    Unicast,
    Multicast,
    Broadcast,
}

fn cast_of(frame: &[u8]) -> Cast {
    match frame.get(..6) {
        Some([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]) => Cast::Broadcast,
        Some(dst) if dst[0] & 1 == 1 => Cast::Multicast,
        _ => Cast::Unicast,
    }
}

impl PortCounters {
    fn count_in(&mut self, len: u64, cast: Cast) {
        self.in_packets += 1;
        self.in_octets += len;
        match cast {
            Cast::Unicast => self.in_unicast += 1,
            Cast::Multicast => self.in_multicast += 1,
            Cast::Broadcast => self.in_broadcast += 1,
        }
    }

    fn count_out(&mut self, len: u64, cast: Cast) {
        self.out_packets += 1;
        self.out_octets += len;
        match cast {
            Cast::Unicast => self.out_unicast += 1,
            Cast::Multicast => self.out_multicast += 1,
            Cast::Broadcast => self.out_broadcast += 1,
        }
    }

    /// The sFlow generic interface counters (32-bit packet counters wrap, as on the wire).
    fn if_counters(&self, if_index: u32) -> IfCounters {
        IfCounters {
            if_index,
            if_type: 6, // ethernetCsmacd
            if_speed: PORT_SPEED,
            if_direction: 1, // full duplex
            if_status: 3,    // admin and operationally up
            if_in_octets: self.in_octets,
            if_in_ucast_pkts: self.in_unicast as u32,
            if_in_multicast_pkts: self.in_multicast as u32,
            if_in_broadcast_pkts: self.in_broadcast as u32,
            if_in_discards: self.in_discards as u32,
            if_in_errors: self.in_errors as u32,
            if_in_unknown_protos: self.in_unknown_protos as u32,
            if_out_octets: self.out_octets,
            if_out_ucast_pkts: self.out_unicast as u32,
            if_out_multicast_pkts: self.out_multicast as u32,
            if_out_broadcast_pkts: self.out_broadcast as u32,
            if_out_discards: self.out_discards as u32,
            if_out_errors: 0,
            if_promiscuous_mode: 0,
        }
    }
}

/// One sampled frame on its way to the sFlow agent, which numbers it.
#[derive(Debug, Clone)]
pub(crate) struct FlowSampleEvent {
    pub source_if_index: u32,
    pub sampling_rate: u32,
    pub sample_pool: u32,
    pub drops: u32,
    pub input: Interface,
    pub output: Interface,
    pub frame_length: u32,
    pub header: Vec<u8>,
}

/// A port's state and counters, as [`super::RunningHost::stats`] reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStats {
    /// `uplink` or the VM's name.
    pub name: String,
    pub if_index: u32,
    pub counters: PortCounters,
    /// Frames the port's sampler has seen, and the samples it took that were lost before
    /// export (the sFlow `sample_pool` and `drops`).
    pub sample_pool: u64,
    pub sample_drops: u64,
}

pub(crate) struct Port {
    pub name: String,
    pub ipv4: Option<Ipv4Addr>,
    /// The VM's receive queue; `None` for the uplink.
    deliver: Option<mpsc::Sender<Vec<u8>>>,
    counters: PortCounters,
    sampler: Sampler,
}

impl Port {
    pub fn uplink(sampler: Sampler) -> Port {
        Port {
            name: "uplink".into(),
            ipv4: None,
            deliver: None,
            counters: PortCounters::default(),
            sampler,
        }
    }

    pub fn vm(
        name: String,
        ipv4: Ipv4Addr,
        deliver: mpsc::Sender<Vec<u8>>,
        sampler: Sampler,
    ) -> Port {
        Port {
            name,
            ipv4: Some(ipv4),
            deliver: Some(deliver),
            counters: PortCounters::default(),
            sampler,
        }
    }
}

/// Exact counts of one same-server pair.
#[derive(Debug, Clone, Copy, Default)]
struct PairCount {
    packets: u64,
    bytes: u64,
}

/// Counts of the vswitch as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VswitchCounters {
    /// Frames copied to the mirror sink.
    pub mirrored: u64,
    /// Frames to mirror that the sink had no room for.
    pub mirror_dropped: u64,
}

pub(crate) struct Vswitch {
    ports: Vec<Port>,
    port_by_ipv4: HashMap<Ipv4Addr, usize>,
    local_pairs: BTreeMap<PairAddrs, PairCount>,
    mirror: HashSet<PairAddrs>,
    mirror_tx: mpsc::Sender<MirroredFrame>,
    samples_tx: mpsc::Sender<FlowSampleEvent>,
    /// Non-blocking, connected to the switch port.
    uplink: UdpSocket,
    counters: VswitchCounters,
    started: Instant,
    stopped: bool,
}

impl Vswitch {
    /// `ports[UPLINK]` is the uplink, the others VM ports.
    pub fn new(
        ports: Vec<Port>,
        uplink: UdpSocket,
        mirror_tx: mpsc::Sender<MirroredFrame>,
        samples_tx: mpsc::Sender<FlowSampleEvent>,
        started: Instant,
    ) -> Vswitch {
        let port_by_ipv4 = ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.ipv4.map(|ip| (ip, i)))
            .collect();
        Vswitch {
            ports,
            port_by_ipv4,
            local_pairs: BTreeMap::new(),
            mirror: HashSet::new(),
            mirror_tx,
            samples_tx,
            uplink,
            counters: VswitchCounters::default(),
            started,
            stopped: false,
        }
    }

    pub fn port_of_vm(&self, name: &str) -> Option<usize> {
        self.ports
            .iter()
            .position(|p| p.ipv4.is_some() && p.name == name)
    }

    pub fn set_mirror(&mut self, pairs: impl IntoIterator<Item = PairAddrs>) {
        self.mirror = pairs.into_iter().collect();
    }

    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Forwards one frame that entered on port `ingress`.
    pub fn forward(&mut self, ingress: usize, frame: &[u8]) -> Forwarding {
        let len = frame.len() as u64;
        let cast = cast_of(frame);
        self.ports[ingress].counters.count_in(len, cast);
        let summary = HeaderSummary::parse(frame);
        let addrs = summary
            .as_ref()
            .ok()
            .and_then(|s| s.ipv4)
            .map(|ip| PairAddrs {
                src: ip.src_addr,
                dst: ip.dst_addr,
            });
        let decision = if self.stopped {
            Err(Discard::Stopped)
        } else if summary.is_err() {
            Err(Discard::Malformed)
        } else if let Some(pair) = addrs {
            match self.port_by_ipv4.get(&pair.dst) {
                Some(&port) => Ok(port),
                None if ingress != UPLINK => Ok(UPLINK),
                None => Err(Discard::UnknownDestination),
            }
        } else {
            Err(Discard::NotIpv4)
        };
        self.sample(ingress, frame, decision);
        let egress = match decision {
            Ok(egress) => egress,
            Err(discard) => {
                let counters = &mut self.ports[ingress].counters;
                match discard {
                    Discard::Malformed => counters.in_errors += 1,
                    Discard::NotIpv4 => counters.in_unknown_protos += 1,
                    _ => counters.in_discards += 1,
                }
                return Forwarding::Discarded(discard);
            }
        };
        // Forwarded frames always have addresses (the decision needs them).
        if let Some(pair) = addrs {
            let same_server = ingress != UPLINK && egress != UPLINK;
            // Same-server frames are always copied: the controller mirrors every pair this
            // server counts, but learns of one only from its count report, after a DNS
            // lookup or a connection's opening is over.
            if same_server
                || !self.mirror.is_empty()
                    && (self.mirror.contains(&pair)
                        || self.mirror.contains(&PairAddrs {
                            src: pair.dst,
                            dst: pair.src,
                        }))
            {
                self.mirror_frame(frame);
            }
            if same_server {
                let count = self.local_pairs.entry(pair).or_default();
                count.packets += 1;
                count.bytes += len;
            }
        }
        let port = &mut self.ports[egress];
        let sent = match &port.deliver {
            Some(queue) => queue.try_send(frame.to_vec()).is_ok(),
            None => matches!(self.uplink.send(frame), Ok(n) if n == frame.len()),
        };
        if sent {
            port.counters.count_out(len, cast);
            if egress == UPLINK {
                Forwarding::Uplink
            } else {
                Forwarding::Vm {
                    if_index: if_index(egress),
                }
            }
        } else {
            port.counters.out_discards += 1;
            Forwarding::Discarded(if egress == UPLINK {
                Discard::UplinkSendFailed
            } else {
                Discard::VmQueueFull
            })
        }
    }

    fn sample(&mut self, ingress: usize, frame: &[u8], decision: Result<usize, Discard>) {
        let port = &mut self.ports[ingress];
        if !port.sampler.take() {
            return;
        }
        let output = match decision {
            Ok(egress) => Interface::if_index(if_index(egress)),
            Err(discard) => Interface {
                format: 1,
                value: discard.sflow_reason(),
            },
        };
        let event = FlowSampleEvent {
            source_if_index: if_index(ingress),
            sampling_rate: port.sampler.rate(),
            sample_pool: port.sampler.pool() as u32,
            drops: port.sampler.drops() as u32,
            input: Interface::if_index(if_index(ingress)),
            output,
            frame_length: frame.len() as u32,
            header: frame[..frame.len().min(SAMPLED_HEADER_BYTES)].to_vec(),
        };
        if self.samples_tx.try_send(event).is_err() {
            port.sampler.record_drop();
        }
    }

    fn mirror_frame(&mut self, frame: &[u8]) {
        let copy = MirroredFrame {
            at: self.started.elapsed(),
            frame: frame.to_vec(),
        };
        if self.mirror_tx.try_send(copy).is_ok() {
            self.counters.mirrored += 1;
        } else {
            self.counters.mirror_dropped += 1;
        }
    }

    /// Cumulative counts of every same-server pair seen so far, ordered by pair.
    pub fn local_counts(&self) -> Vec<LocalPairCount> {
        self.local_pairs
            .iter()
            .map(|(pair, count)| LocalPairCount {
                src: pair.src,
                dst: pair.dst,
                packets: count.packets,
                bytes: count.bytes,
            })
            .collect()
    }

    /// Every port's generic interface counters, for counter samples.
    pub fn if_counters(&self) -> Vec<IfCounters> {
        self.ports
            .iter()
            .enumerate()
            .map(|(i, p)| p.counters.if_counters(if_index(i)))
            .collect()
    }

    pub fn port_stats(&self) -> Vec<PortStats> {
        self.ports
            .iter()
            .enumerate()
            .map(|(i, p)| PortStats {
                name: p.name.clone(),
                if_index: if_index(i),
                counters: p.counters,
                sample_pool: p.sampler.pool(),
                sample_drops: p.sampler.drops(),
            })
            .collect()
    }

    pub fn counters(&self) -> VswitchCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A vswitch with VM ports for 10.0.0.1 and 10.0.0.2 (room for 4 frames each) whose uplink
    /// sends to a bound socket, sampling every frame into a queue of 8; the queues' far ends
    /// are returned so that nothing closes.
    #[allow(clippy::type_complexity)]
    fn vswitch() -> (
        Vswitch,
        std::net::UdpSocket,
        Vec<mpsc::Receiver<Vec<u8>>>,
        mpsc::Receiver<MirroredFrame>,
        mpsc::Receiver<FlowSampleEvent>,
    ) {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let uplink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        uplink.connect(peer.local_addr().unwrap()).unwrap();
        uplink.set_nonblocking(true).unwrap();
        let mut ports = vec![Port::uplink(Sampler::new(1, 1))];
        let mut queues = Vec::new();
        for (i, ip) in [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]
            .into_iter()
            .enumerate()
        {
            let (tx, rx) = mpsc::channel(4);
            ports.push(Port::vm(format!("vm{i}"), ip, tx, Sampler::new(1, 2)));
            queues.push(rx);
        }
        let (mirror_tx, mirror_rx) = mpsc::channel(4);
        let (samples_tx, samples_rx) = mpsc::channel(8);
        let mut v = Vswitch::new(ports, uplink, mirror_tx, samples_tx, Instant::now());
        v.set_mirror([PairAddrs {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
        }]);
        (v, peer, queues, mirror_rx, samples_rx)
    }

    /// Every frame that entered a port is accounted for exactly once: delivered, or counted
    /// as one kind of discard.
    fn accounted(v: &Vswitch, results: &[(usize, Forwarding)]) -> Result<(), TestCaseError> {
        let stats = v.port_stats();
        for (ingress, port) in stats.iter().enumerate() {
            let c = port.counters;
            let forwarded = results
                .iter()
                .filter(|(i, f)| *i == ingress && !matches!(f, Forwarding::Discarded(_)))
                .count() as u64;
            let failed_out = results
                .iter()
                .filter(|(i, f)| {
                    *i == ingress
                        && matches!(
                            f,
                            Forwarding::Discarded(Discard::VmQueueFull | Discard::UplinkSendFailed)
                        )
                })
                .count() as u64;
            prop_assert_eq!(
                c.in_packets,
                forwarded + failed_out + c.in_discards + c.in_errors + c.in_unknown_protos
            );
        }
        let out: u64 = stats
            .iter()
            .map(|p| p.counters.out_packets + p.counters.out_discards)
            .sum();
        let entered_and_decided = results
            .iter()
            .filter(|(_, f)| {
                !matches!(
                    f,
                    Forwarding::Discarded(
                        Discard::Malformed | Discard::NotIpv4 | Discard::UnknownDestination
                    )
                )
            })
            .count() as u64;
        prop_assert_eq!(out, entered_and_decided);
        Ok(())
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic_and_are_all_counted(
            frames in proptest::collection::vec(
                (0usize..3, proptest::collection::vec(any::<u8>(), 0..80)),
                0..40,
            )
        ) {
            let (mut v, _peer, _queues, _mirror, _samples) = vswitch();
            let results: Vec<_> = frames
                .iter()
                .map(|(port, frame)| (*port, v.forward(*port, frame)))
                .collect();
            accounted(&v, &results)?;
        }

        /// Frames that do parse, between the two VMs, the uplink and elsewhere, arriving on any
        /// port; the queues fill up on the way.
        #[test]
        fn parsed_frames_are_forwarded_and_counted(
            frames in proptest::collection::vec((0usize..3, 0usize..4, 0usize..4), 0..40)
        ) {
            let addrs = [
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                Ipv4Addr::new(10, 0, 9, 9),
                Ipv4Addr::new(192, 0, 2, 1),
            ];
            let (mut v, _peer, _queues, _mirror, _samples) = vswitch();
            let mut results = Vec::new();
            for &(port, src, dst) in &frames {
                let frame = crate::wire::FrameRepr::new(
                    crate::wire::EthernetAddress([2, 0, 0, 0, 0, 1]),
                    crate::wire::EthernetAddress([2, 0, 0, 0, 0, 2]),
                    None,
                    addrs[src],
                    addrs[dst],
                    crate::wire::TransportRepr::Udp(crate::wire::UdpRepr {
                        src_port: 1,
                        dst_port: 2,
                    }),
                    b"x",
                )
                .unwrap()
                .to_vec()
                .unwrap();
                let result = v.forward(port, &frame);
                let want_vm = dst < 2;
                match result {
                    Forwarding::Vm { if_index: i } => {
                        prop_assert!(want_vm);
                        prop_assert_eq!(i as usize, dst + 2);
                    }
                    Forwarding::Uplink => prop_assert!(!want_vm && port != UPLINK),
                    Forwarding::Discarded(Discard::UnknownDestination) => {
                        prop_assert!(!want_vm && port == UPLINK)
                    }
                    Forwarding::Discarded(Discard::VmQueueFull) => prop_assert!(want_vm),
                    other => prop_assert!(false, "{:?}", other),
                }
                results.push((port, result));
            }
            accounted(&v, &results)?;
            // Exact counts: every VM-to-VM frame, delivered or not.
            let local: u64 = v.local_counts().iter().map(|c| c.packets).sum();
            let want = frames.iter().filter(|&&(p, _, d)| p != UPLINK && d < 2).count() as u64;
            prop_assert_eq!(local, want);
            // Samples: one per frame until the queue of 8 was full, the rest counted as drops.
            let pool: u64 = v.port_stats().iter().map(|p| p.sample_pool).sum();
            let drops: u64 = v.port_stats().iter().map(|p| p.sample_drops).sum();
            prop_assert_eq!(pool, frames.len() as u64);
            prop_assert_eq!(drops, (frames.len() as u64).saturating_sub(8));
        }
    }
}
