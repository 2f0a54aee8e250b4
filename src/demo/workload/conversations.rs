//! The workload as application conversations instead of frames: who connects to whom, and what
//! each side writes when. A replay over real kernel sockets (`vmdep demo --netns`) sends these
//! bytes and lets the VMs' own TCP/IP stacks make the frames, so its ground truth is a capture,
//! not the workload's frames.
//!
//! The conversations are read back from the frames themselves, so they say exactly what the
//! frames carry: a TCP connection starts with its SYN, each burst of segments from one side up
//! to the one with PSH is one write (the sessions send a request, a response or a backup chunk
//! as one burst, whose last segment carries PSH), and the client's FIN closes it; a UDP
//! conversation is every datagram between one client address and one server address, the
//! client being the sender of the first.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::Duration;

use crate::controller::topology::VmId;
use crate::wire::{FrameRepr, TcpFlags, TransportRepr};

use super::{TimedFrame, Transport};

/// What one side writes at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// When its first segment (or the datagram) left, since the start of the run.
    pub at: Duration,
    pub from_client: bool,
    pub payload: Vec<u8>,
}

/// One TCP connection or one UDP client/server socket pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub client_vm: VmId,
    pub server_vm: VmId,
    pub client: SocketAddrV4,
    pub server: SocketAddrV4,
    pub transport: Transport,
    /// The SYN, or the first datagram.
    pub opened: Duration,
    /// In order.
    pub messages: Vec<Message>,
    /// When the client closed (its FIN); None for UDP and for a connection still open at the
    /// end of the run.
    pub closed: Option<Duration>,
}

/// The conversations of `frames` (in time order), in the order they opened. Frames that are no
/// whole IPv4 TCP or UDP datagram (the workload makes none) are skipped.
pub fn conversations<'a>(frames: impl IntoIterator<Item = &'a TimedFrame>) -> Vec<Conversation> {
    let mut found: Vec<Conversation> = Vec::new();
    // (client, server, transport) → the latest conversation on it, and per direction the burst
    // under way: the start time and the bytes so far.
    let mut open: HashMap<(SocketAddrV4, SocketAddrV4, Transport), OpenConversation> =
        HashMap::new();
    for frame in frames {
        let Ok(repr) = FrameRepr::parse(&frame.frame) else {
            continue;
        };
        let (transport, src_port, dst_port, flags) = match repr.transport {
            TransportRepr::Tcp(tcp) => (Transport::Tcp, tcp.src_port, tcp.dst_port, tcp.flags),
            TransportRepr::Udp(udp) => (Transport::Udp, udp.src_port, udp.dst_port, TcpFlags(0)),
        };
        let src = SocketAddrV4::new(repr.ipv4.src_addr, src_port);
        let dst = SocketAddrV4::new(repr.ipv4.dst_addr, dst_port);
        let opens = match transport {
            Transport::Tcp => flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK),
            Transport::Udp => {
                !open.contains_key(&(src, dst, transport))
                    && !open.contains_key(&(dst, src, transport))
            }
        };
        if opens {
            open.insert(
                (src, dst, transport),
                OpenConversation {
                    index: found.len(),
                    bursts: [None, None],
                },
            );
            found.push(Conversation {
                client_vm: frame.src_vm,
                server_vm: frame.dst_vm,
                client: src,
                server: dst,
                transport,
                opened: frame.at,
                messages: Vec::new(),
                closed: None,
            });
        }
        let (key, from_client) = if open.contains_key(&(src, dst, transport)) {
            ((src, dst, transport), true)
        } else {
            ((dst, src, transport), false)
        };
        let Some(conversation) = open.get_mut(&key) else {
            continue;
        };
        let target = &mut found[conversation.index];
        match transport {
            Transport::Udp => target.messages.push(Message {
                at: frame.at,
                from_client,
                payload: repr.payload.to_vec(),
            }),
            Transport::Tcp => {
                let burst = &mut conversation.bursts[usize::from(!from_client)];
                if !repr.payload.is_empty() {
                    burst
                        .get_or_insert_with(|| (frame.at, Vec::new()))
                        .1
                        .extend_from_slice(repr.payload);
                }
                if flags.contains(TcpFlags::PSH) {
                    if let Some((at, payload)) = burst.take() {
                        target.messages.push(Message {
                            at,
                            from_client,
                            payload,
                        });
                    }
                }
                if flags.contains(TcpFlags::FIN) && from_client {
                    target.closed = Some(frame.at);
                }
            }
        }
    }
    found
}

struct OpenConversation {
    index: usize,
    /// Client's and server's burst under way: when it started, its bytes so far.
    bursts: [Option<(Duration, Vec<u8>)>; 2],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::topology::Topology;
    use crate::demo::workload::{three_tier, WorkloadSpec};

    /// Payload bytes the client and the server wrote.
    fn payload_bytes(c: &Conversation) -> (u64, u64) {
        c.messages.iter().fold((0, 0), |(to_server, to_client), m| {
            let n = m.payload.len() as u64;
            if m.from_client {
                (to_server + n, to_client)
            } else {
                (to_server, to_client + n)
            }
        })
    }

    #[test]
    fn conversations_carry_every_payload_byte_of_every_application() {
        let topology =
            Topology::from_toml(include_str!("../../../topologies/reference.toml")).unwrap();
        let spec = WorkloadSpec {
            duration: Duration::from_secs(4),
            seed: 7,
            scale: 1.0,
        };
        let workload = three_tier(&topology, spec).unwrap();
        let found = conversations(&workload.frames);
        for app in &workload.truth.applications {
            let of_app: Vec<&Conversation> = found
                .iter()
                .filter(|c| {
                    *c.client.ip() == app.client_ipv4
                        && *c.server.ip() == app.server_ipv4
                        && c.server.port() == app.server_port
                })
                .collect();
            assert!(!of_app.is_empty(), "{} -> {}", app.client, app.server);
            let (to_server, to_client) = of_app.iter().fold((0, 0), |(a, b), c| {
                let (x, y) = payload_bytes(c);
                (a + x, b + y)
            });
            let name = format!("{} -> {}:{}", app.client, app.server, app.server_port);
            assert_eq!(to_server, app.payload_bytes_to_server, "{name}");
            assert_eq!(to_client, app.payload_bytes_to_client, "{name}");
            if app.transport == Transport::Tcp {
                assert_eq!(of_app.len() as u64, app.connections, "{name}");
                // Every exchanged request is its own write, and each is answered.
                let writes = of_app.iter().map(|c| c.messages.len() as u64).sum::<u64>();
                assert!(writes >= app.requests + app.responses, "{name}");
            }
        }
        let tcp = found
            .iter()
            .filter(|c| c.transport == Transport::Tcp)
            .count() as u64;
        let connections: u64 = workload
            .truth
            .applications
            .iter()
            .map(|a| a.connections)
            .sum();
        assert_eq!(tcp, connections);
        for c in &found {
            assert!(c.messages.windows(2).all(|w| w[0].at <= w[1].at));
            assert!(c.messages.iter().all(|m| m.at >= c.opened));
            if c.transport == Transport::Tcp {
                assert!(c.closed.is_some(), "the workload closes every connection");
                assert_eq!(c.client_vm, topology.vm_by_ipv4(*c.client.ip()).unwrap());
            }
        }
    }
}
