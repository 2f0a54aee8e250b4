//! A VM's network interface as a UDP wire (`--vm NAME=udp:LOCAL=PEER`): one Ethernet frame per
//! datagram, as QEMU's `-netdev dgram` connects a guest's NIC, so the VMs can live in another
//! process (the workload of `vmdep demo --processes`). Datagrams arriving at `LOCAL` are frames
//! the VM sends into the vswitch; frames the vswitch delivers to the VM go to `PEER`.
//!
//! It owns only the relay between one socket and one [`VmPort`]; forwarding, counting and
//! sampling stay the vswitch's.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::uplink::{UdpWire, UdpWireError};
use super::VmPort;

/// Datagrams relayed from the socket per wake-up when they queue up.
const BURST: usize = 64;

/// `NAME=udp:LOCAL_ADDR:PORT=PEER_ADDR:PORT`: VM `NAME`'s interface as a UDP wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmWire {
    pub vm: String,
    pub wire: UdpWire,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VmWireError {
    #[error("`{0}`: expected NAME=udp:LOCAL_ADDR:PORT=PEER_ADDR:PORT")]
    Syntax(String),
    #[error(transparent)]
    Wire(#[from] UdpWireError),
}

impl FromStr for VmWire {
    type Err = VmWireError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (vm, wire) = spec
            .split_once('=')
            .filter(|(vm, wire)| !vm.is_empty() && wire.starts_with("udp:"))
            .ok_or_else(|| VmWireError::Syntax(spec.to_string()))?;
        Ok(VmWire {
            vm: vm.to_string(),
            wire: wire.parse()?,
        })
    }
}

impl fmt::Display for VmWire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.vm, self.wire)
    }
}

/// Relays between the VM's socket and its port until stopped. Socket errors (the peer not
/// listening yet answers with ICMP port unreachable) are counted in `errors`.
pub(crate) async fn relay(
    socket: UdpSocket,
    mut port: VmPort,
    errors: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let vm = port.name().to_string();
    let count_error = |err: std::io::Error| {
        tracing::debug!(vm, %err, "VM wire error");
        errors.fetch_add(1, Ordering::Relaxed);
    };
    loop {
        tokio::select! {
            received = socket.recv(&mut buf) => match received {
                Ok(len) => {
                    port.send(&buf[..len]);
                    for _ in 1..BURST {
                        match socket.try_recv(&mut buf) {
                            Ok(len) => {
                                port.send(&buf[..len]);
                            }
                            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(err) => {
                                count_error(err);
                                break;
                            }
                        }
                    }
                }
                Err(err) => count_error(err),
            },
            frame = port.recv() => match frame {
                Some(frame) => {
                    if let Err(err) = socket.send(&frame).await {
                        count_error(err);
                    }
                }
                None => return,
            },
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_a_vm_wire() {
        let w: VmWire = "web1=udp:127.0.0.1:5000=127.0.0.1:6000".parse().unwrap();
        assert_eq!(w.vm, "web1");
        assert_eq!(w.wire.local, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(w.wire.peer, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(w.to_string(), "web1=udp:127.0.0.1:5000=127.0.0.1:6000");
    }

    #[test]
    fn refuses_bad_vm_wires() {
        for (spec, want) in [
            ("web1", "expected NAME=udp:"),
            ("=udp:127.0.0.1:1=127.0.0.1:2", "expected NAME=udp:"),
            ("web1=127.0.0.1:1=127.0.0.1:2", "expected NAME=udp:"),
            (
                "web1=udp:10.0.0.1:1=127.0.0.1:2",
                "is not a loopback address",
            ),
            ("web1=udp:127.0.0.1:1", "expected udp:"),
        ] {
            let err = spec.parse::<VmWire>().unwrap_err().to_string();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,64}") {
            let _ = s.parse::<VmWire>();
        }
    }
}
