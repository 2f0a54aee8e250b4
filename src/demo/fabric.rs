//! The demo's switch fabric: one `vmdep switch` per topology switch, started in this process
//! and cabled with UDP wires on loopback exactly as the topology's links say, plus one wire
//! end per server uplink for the emulated hosts. Wire addresses are reserved in blocks, each
//! on its own loopback address ([`reserve_udp`]; [`reserve_tcp`] for servers started as other
//! processes), so several demos (or tests) can run at once.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};

use thiserror::Error;

use crate::controller::topology::{ServerId, SwitchPort, Topology, TopologyError};
use crate::switch::ports::{PortBackend, PortSpec};
use crate::switch::runner::{self, RunningSwitch, StartError, SwitchOptions};

/// The switch side and the host side of one server's uplink wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uplink {
    pub server: ServerId,
    /// Where the server's host binds its uplink socket.
    pub host: SocketAddr,
    /// The switch port's UDP address (the host's peer).
    pub switch: SocketAddr,
}

/// Both ends of every wire, decided before anything starts.
#[derive(Debug, Clone)]
pub struct WirePlan {
    /// Per switch (topology order), its `-i` ports.
    pub ports: Vec<Vec<PortSpec>>,
    /// Per server (topology order).
    pub uplinks: Vec<Uplink>,
}

#[derive(Debug, Error)]
pub enum FabricError {
    #[error("cannot reserve a loopback UDP port: {0}")]
    Reserve(std::io::Error),
    #[error("cannot start switch {name}: {source}")]
    Switch { name: String, source: StartError },
    #[error("the topology with the started switches' addresses is invalid: {0}")]
    Topology(#[from] TopologyError),
}

/// A started fabric; stop it with [`Fabric::shutdown`].
pub struct Fabric {
    /// In topology order.
    pub switches: Vec<RunningSwitch>,
    /// The input topology with each switch's real P4Runtime address.
    pub topology: Topology,
    pub uplinks: Vec<Uplink>,
}

/// Where wire ports are reserved: below Linux's default ephemeral range (32768–60999).
const RESERVED_PORTS: std::ops::Range<usize> = 20_000..32_000;

/// Blocks handed out by this process, so concurrent fabrics (tests) never pick the same ports.
static NEXT_BLOCK: AtomicUsize = AtomicUsize::new(0);

/// The loopback address of one block of wires: its own in 127.0.0.0/8, chosen from the process
/// id and the block number, never 127.0.0.1. Sockets bound to port 0 elsewhere (gRPC listeners,
/// hosts, the workload; on a machine whose ephemeral range reaches down into
/// [`RESERVED_PORTS`]) use 127.0.0.1 and so cannot take a port reserved here between its release
/// and its bind by the switch or host that uses it.
fn block_address(pid: u32, block: usize) -> std::net::Ipv4Addr {
    let second = 64 + (pid % 128) as u8;
    let third = ((pid / 128) as usize + block / 254) as u8;
    let fourth = 1 + (block % 254) as u8;
    std::net::Ipv4Addr::new(127, second, third, fourth)
}

/// Free loopback UDP addresses: a block of consecutive ports on the block's own loopback
/// address, checked free by binding them all, then released for their users to bind. Another
/// program binding that address could still take one in between; the start then fails clearly.
pub fn reserve_udp(count: usize) -> Result<Vec<SocketAddr>, FabricError> {
    reserve(count, |addr| UdpSocket::bind(addr)?.local_addr())
}

/// Free loopback TCP addresses, reserved as [`reserve_udp`] reserves UDP ones: for servers
/// started as other processes (switches' gRPC) whose addresses must be known beforehand.
pub fn reserve_tcp(count: usize) -> Result<Vec<SocketAddr>, FabricError> {
    reserve(count, |addr| {
        std::net::TcpListener::bind(addr)?.local_addr()
    })
}

fn reserve(
    count: usize,
    bind: impl Fn(SocketAddr) -> std::io::Result<SocketAddr>,
) -> Result<Vec<SocketAddr>, FabricError> {
    let span = RESERVED_PORTS.len();
    if count == 0 || count > span {
        return Err(FabricError::Reserve(std::io::Error::other(format!(
            "cannot reserve {count} ports in {RESERVED_PORTS:?}"
        ))));
    }
    let pid = std::process::id();
    let mut last_error = None;
    for _ in 0..64 {
        let block = NEXT_BLOCK.fetch_add(1, Ordering::Relaxed);
        let ip = block_address(pid, block);
        let start = RESERVED_PORTS.start;
        // Each bound socket is closed when `bind` returns: the check holds for the block
        // address, whose other users are this process's own reservations only.
        let bound: Result<Vec<SocketAddr>, _> = (start..start + count)
            .map(|port| bind(SocketAddr::from((ip, port as u16))))
            .collect();
        match bound {
            Ok(addrs) => return Ok(addrs),
            Err(err) => last_error = Some(err),
        }
    }
    Err(FabricError::Reserve(last_error.unwrap_or_else(|| {
        std::io::Error::other("no free block of loopback ports")
    })))
}

/// Decides every wire: a link `a — b` is two UDP ends, each the other's peer.
pub fn plan_wires(topology: &Topology) -> Result<WirePlan, FabricError> {
    let links = topology.links();
    let servers = topology.servers();
    let addrs = reserve_udp(2 * links.len() + 2 * servers.len())?;
    let mut ports = vec![Vec::new(); topology.switches().len()];
    let mut add = |at: SwitchPort, local: SocketAddr, peer: SocketAddr| {
        ports[at.switch.0].push(PortSpec {
            port: u32::from(at.port),
            backend: PortBackend::Udp { local, peer },
        })
    };
    for (i, link) in links.iter().enumerate() {
        let (a, b) = (addrs[2 * i], addrs[2 * i + 1]);
        add(link.a, a, b);
        add(link.b, b, a);
    }
    let base = 2 * links.len();
    let mut uplinks = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let (switch, host) = (addrs[base + 2 * i], addrs[base + 2 * i + 1]);
        add(server.uplink, switch, host);
        uplinks.push(Uplink {
            server: ServerId(i),
            host,
            switch,
        });
    }
    for p in &mut ports {
        p.sort_by_key(|spec| spec.port);
    }
    Ok(WirePlan { ports, uplinks })
}

/// Starts every switch (no pipeline yet: the controller pushes it) with gRPC on a free port.
pub async fn start_fabric(topology: &Topology) -> Result<Fabric, FabricError> {
    let plan = plan_wires(topology)?;
    let (switches, topology) = start_switches(topology, plan.ports).await?;
    Ok(Fabric {
        switches,
        topology,
        uplinks: plan.uplinks,
    })
}

/// Starts one switch per topology switch on the given ports (per switch, in topology order),
/// gRPC on a free loopback port, no pipeline yet; returns them with the topology carrying their
/// real P4Runtime addresses. On failure the switches already started are stopped.
pub async fn start_switches(
    topology: &Topology,
    ports: Vec<Vec<PortSpec>>,
) -> Result<(Vec<RunningSwitch>, Topology), FabricError> {
    let mut switches = Vec::new();
    for (sw, ports) in topology.switches().iter().zip(ports) {
        let mut options = SwitchOptions::new(
            u64::from(sw.device_id),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        );
        options.ports = ports;
        match runner::start(options).await {
            Ok(running) => switches.push(running),
            Err(source) => {
                for started in switches {
                    let _ = started.shutdown().await;
                }
                return Err(FabricError::Switch {
                    name: sw.name.clone(),
                    source,
                });
            }
        }
    }
    let mut file = topology.to_file_format();
    for (entry, running) in file.switches.iter_mut().zip(&switches) {
        entry.p4runtime = running.grpc_addr;
    }
    let topology = Topology::from_file_format(file)?;
    Ok((switches, topology))
}

impl Fabric {
    /// Stops every switch.
    pub async fn shutdown(self) {
        for running in self.switches {
            if let Err(err) = running.shutdown().await {
                tracing::warn!(%err, "a switch stopped with an error");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_their_own_loopback_address() {
        let addresses: std::collections::HashSet<_> =
            (0..600).map(|block| block_address(4242, block)).collect();
        assert_eq!(addresses.len(), 600);
        for ip in &addresses {
            assert!(
                ip.is_loopback() && *ip != std::net::Ipv4Addr::LOCALHOST,
                "{ip}"
            );
            assert!(!matches!(ip.octets()[3], 0 | 255), "{ip}");
        }
    }

    #[test]
    fn reserved_blocks_are_disjoint_and_below_the_ephemeral_range() {
        let a = reserve_udp(6).unwrap();
        let b = reserve_udp(6).unwrap();
        assert_ne!(a[0].ip(), b[0].ip());
        for addr in a.iter().chain(&b) {
            assert!(RESERVED_PORTS.contains(&usize::from(addr.port())), "{addr}");
            assert_ne!(addr.ip(), std::net::IpAddr::from([127, 0, 0, 1]));
        }
        let tcp = reserve_tcp(5).unwrap();
        for addr in &tcp {
            std::net::TcpListener::bind(addr).unwrap();
        }
    }
}
