//! Forwarding paths through the fabric and the `ipv4_lpm` entries that make packets follow them.
//! It owns the path rule; it reads the [`Topology`] and places no counters (that is
//! [`super::placement`]).
//!
//! # The path rule
//!
//! The fabric routes on the destination address only, so all packets toward one destination
//! share a tree. For every switch `t` that has servers, the controller computes one shortest-path
//! tree (hop count, with petgraph) toward `t`: a switch `s` at distance `d > 0` forwards to one
//! of its neighbours at distance `d − 1`. Which one, when there are several, is fixed and spreads
//! trees over the equal-cost choices like a static ECMP hash: the candidates sorted by device id,
//! the one at index `(device_id(s) + device_id(t)) mod count`. Of several parallel links to that
//! neighbour, the one on the lowest local port.
//!
//! A VM pair's path is then the walk along the tree of the destination VM's edge switch from the
//! source VM's edge switch: it starts at the source server's switch and ends at the destination
//! server's. Pairs on the same server cross no switch (empty path); pairs on different servers of
//! the same switch cross that one switch.
//!
//! # Routes
//!
//! Every switch gets `MyIngress.ipv4_lpm` → `set_next_hop(src_mac, dst_mac, port)` entries: on a
//! VM's edge switch, a `/32` out of the server's port with the VM's MAC as the destination;
//! elsewhere, out of the tree's next-hop port, from this port's MAC to the far port's MAC
//! ([`switch_port_mac`](super::topology::switch_port_mac)), one route per server `prefix` of the
//! topology (or a `/32` per VM of a server without one). Sibling prefixes with the same next hop
//! are then merged, which changes no lookup. With per-server prefixes in an aligned plan (the
//! fat-tree generator's 10.pod.edge.host), whole edges and pods fold into one entry each, so a
//! k = 16 fat tree with 2,048 VMs needs at most a few hundred entries per switch of the 1024
//! vmdep.p4 offers; without prefixes, a switch holds about one entry per VM.
//!
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use petgraph::graph::{NodeIndex, UnGraph};
use thiserror::Error;

use super::topology::{MacAddr, PortPeer, ServerId, SwitchId, SwitchPort, Topology, VmId};
use super::VmPair;

/// One step along a tree: out of `egress_port`, into the far switch's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    pub egress_port: u16,
    pub next: SwitchPort,
}

/// The shortest-path tree toward one switch.
#[derive(Debug, Clone)]
struct Tree {
    /// Per switch, its step toward the root (`None` at the root).
    next: Vec<Option<Hop>>,
}

/// A pair whose path cannot be given.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    #[error("{0} is not the address of a VM of the topology")]
    UnknownVm(Ipv4Addr),
}

/// The destination trees of a topology (see the module documentation for the rule).
#[derive(Debug, Clone)]
pub struct Paths {
    /// Indexed by destination switch; only switches with servers have a tree.
    trees: Vec<Option<Tree>>,
}

impl Paths {
    pub fn compute(topology: &Topology) -> Paths {
        let switches = topology.switches();
        let mut graph: UnGraph<(), ()> =
            UnGraph::with_capacity(switches.len(), topology.links().len());
        for _ in switches {
            graph.add_node(());
        }
        for link in topology.links() {
            graph.add_edge(
                NodeIndex::new(link.a.switch.0),
                NodeIndex::new(link.b.switch.0),
                (),
            );
        }
        let mut trees = vec![None; switches.len()];
        for (root, tree) in trees.iter_mut().enumerate() {
            let has_servers = topology
                .ports(SwitchId(root))
                .values()
                .any(|p| matches!(p, PortPeer::Server(_)));
            if has_servers {
                *tree = Some(Self::tree(topology, &graph, SwitchId(root)));
            }
        }
        Paths { trees }
    }

    fn tree(topology: &Topology, graph: &UnGraph<(), ()>, root: SwitchId) -> Tree {
        let distances = petgraph::algo::dijkstra(graph, NodeIndex::new(root.0), None, |_| 1u32);
        let distance = |s: SwitchId| distances.get(&NodeIndex::new(s.0)).copied();
        let root_device = u32::from(topology.switch(root).device_id);
        let next = (0..topology.switches().len())
            .map(|s| {
                let s = SwitchId(s);
                // The topology is validated connected, so every switch has a distance.
                let d = distance(s)?;
                if d == 0 {
                    return None;
                }
                // Closer neighbours, each by its lowest local port (ports iterate in order).
                let mut closer: Vec<(u16, Hop)> = Vec::new();
                for (port, far) in topology.switch_neighbours(s) {
                    if distance(far.switch) == Some(d - 1)
                        && !closer.iter().any(|(_, h)| h.next.switch == far.switch)
                    {
                        let device = topology.switch(far.switch).device_id;
                        closer.push((
                            device,
                            Hop {
                                egress_port: port,
                                next: far,
                            },
                        ));
                    }
                }
                closer.sort_by_key(|(device, _)| *device);
                let own_device = u32::from(topology.switch(s).device_id);
                let pick = (own_device + root_device) as usize % closer.len();
                Some(closer[pick].1)
            })
            .collect();
        Tree { next }
    }

    /// The step from `at` toward `toward`; `None` at the destination itself or when `toward`
    /// has no servers (no tree).
    pub fn next_hop(&self, at: SwitchId, toward: SwitchId) -> Option<Hop> {
        self.trees.get(toward.0)?.as_ref()?.next[at.0]
    }

    /// The switches from `from` to `to`, both included, along `to`'s tree; `None` when `to` has
    /// no servers (no tree).
    pub fn switch_path(&self, from: SwitchId, to: SwitchId) -> Option<Vec<SwitchId>> {
        let tree = self.trees.get(to.0)?.as_ref()?;
        let mut path = vec![from];
        let mut at = from;
        // Each step gets one hop closer, so the walk ends within the switch count.
        while let Some(hop) = tree.next[at.0] {
            at = hop.next.switch;
            path.push(at);
        }
        Some(path)
    }

    /// The switches a VM pair's packets cross, in order; empty for VMs on the same server.
    pub fn vm_path(&self, topology: &Topology, src: VmId, dst: VmId) -> Vec<SwitchId> {
        if topology.vm(src).server == topology.vm(dst).server {
            return Vec::new();
        }
        // The destination VM's edge switch has a server, hence a tree.
        self.switch_path(
            topology.edge_switch_of_vm(src),
            topology.edge_switch_of_vm(dst),
        )
        .expect("every switch with servers has a tree")
    }

    /// [`Paths::vm_path`] for a pair named by its addresses.
    pub fn pair_path(&self, topology: &Topology, pair: VmPair) -> Result<Vec<SwitchId>, PathError> {
        let vm = |ip| topology.vm_by_ipv4(ip).ok_or(PathError::UnknownVm(ip));
        Ok(self.vm_path(topology, vm(pair.src)?, vm(pair.dst)?))
    }
}

/// One `MyIngress.ipv4_lpm` entry: `prefix/prefix_len` → `set_next_hop(src_mac, dst_mac, port)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub prefix: Ipv4Addr,
    pub prefix_len: u8,
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub egress_port: u16,
}

impl Route {
    pub fn matches(&self, addr: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u32::from(addr) & mask == u32::from(self.prefix) & mask
    }
}

/// The `ipv4_lpm` entries of every switch, consistent with [`Paths`].
#[derive(Debug, Clone)]
pub struct RouteTables {
    /// Per switch, sorted by prefix.
    tables: Vec<Vec<Route>>,
}

impl RouteTables {
    /// Per switch: a /32 for each VM of the servers it attaches (the last hop rewrites the
    /// destination MAC to the VM's), one route per remote server prefix (a /32 per VM of a
    /// server without one), then sibling prefixes with the same next hop merged. The merges
    /// change no lookup: the routes of a table never overlap (prefixes of servers do not, and
    /// every VM address is in its own server's prefix only), so two sibling halves with one
    /// next hop are exactly their parent.
    pub fn compute(topology: &Topology, paths: &Paths) -> RouteTables {
        let tables =
            (0..topology.switches().len())
                .map(|s| {
                    let s = SwitchId(s);
                    let mut table = Vec::new();
                    for (id, server) in topology.servers().iter().enumerate() {
                        let uplink = server.uplink;
                        let vms = topology.vms_of_server(ServerId(id)).iter();
                        let vms = vms.map(|&vm| topology.vm(vm));
                        if uplink.switch == s {
                            for vm in vms {
                                let port = uplink.port;
                                table.push(route(topology, s, vm.ipv4, 32, port, vm.mac));
                            }
                            continue;
                        }
                        let hop = paths
                            .next_hop(s, uplink.switch)
                            .expect("a VM's edge switch has a tree reaching every switch");
                        let next_mac = topology.port_mac(hop.next);
                        match server.prefix {
                            Some(p) => table.push(route(
                                topology,
                                s,
                                p.addr(),
                                p.prefix_len(),
                                hop.egress_port,
                                next_mac,
                            )),
                            None => table.extend(vms.map(|vm| {
                                route(topology, s, vm.ipv4, 32, hop.egress_port, next_mac)
                            })),
                        }
                    }
                    merge_siblings(table)
                })
                .collect();
        RouteTables { tables }
    }

    pub fn table(&self, switch: SwitchId) -> &[Route] {
        &self.tables[switch.0]
    }

    /// The longest-prefix match of `addr` on `switch`, as the data plane would choose it.
    pub fn lookup(&self, switch: SwitchId, addr: Ipv4Addr) -> Option<&Route> {
        self.tables[switch.0]
            .iter()
            .filter(|r| r.matches(addr))
            .max_by_key(|r| r.prefix_len)
    }

    /// The largest table, to compare with the switches' `ipv4_lpm` size.
    pub fn max_entries(&self) -> usize {
        self.tables.iter().map(Vec::len).max().unwrap_or(0)
    }
}

fn route(
    topology: &Topology,
    at: SwitchId,
    prefix: Ipv4Addr,
    prefix_len: u8,
    egress_port: u16,
    dst_mac: MacAddr,
) -> Route {
    Route {
        prefix,
        prefix_len,
        src_mac: topology.port_mac(SwitchPort {
            switch: at,
            port: egress_port,
        }),
        dst_mac,
        egress_port,
    }
}

/// Merges pairs of sibling prefixes (the two halves of one parent) that take the same next
/// hop into their parent, until none is left; returns the routes sorted by prefix. The routes
/// must not overlap.
fn merge_siblings(routes: Vec<Route>) -> Vec<Route> {
    let same_hop = |a: &Route, b: &Route| {
        (a.egress_port, a.src_mac, a.dst_mac) == (b.egress_port, b.src_mac, b.dst_mac)
    };
    let mut by_prefix: BTreeMap<(u8, u32), Route> = routes
        .into_iter()
        .map(|r| ((r.prefix_len, u32::from(r.prefix)), r))
        .collect();
    // Longest prefixes first: a merge makes a shorter prefix, which may merge again later.
    for len in (1..=32u8).rev() {
        let at_len: Vec<u32> = by_prefix
            .range((len, 0)..=(len, u32::MAX))
            .map(|(&(_, addr), _)| addr)
            .collect();
        let bit = 1u32 << (32 - u32::from(len));
        for addr in at_len {
            if addr & bit != 0 {
                continue; // the upper half: handled with its lower sibling
            }
            let (Some(low), Some(high)) = (
                by_prefix.get(&(len, addr)),
                by_prefix.get(&(len, addr | bit)),
            ) else {
                continue;
            };
            if same_hop(low, high) {
                let parent = Route {
                    prefix: Ipv4Addr::from(addr),
                    prefix_len: len - 1,
                    ..*low
                };
                by_prefix.remove(&(len, addr));
                by_prefix.remove(&(len, addr | bit));
                by_prefix.insert((len - 1, addr), parent);
            }
        }
    }
    let mut merged: Vec<Route> = by_prefix.into_values().collect();
    merged.sort_by_key(|r| (r.prefix, r.prefix_len));
    merged
}

/// A VM pair and the switches its packets cross, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairPath {
    pub pair: VmPair,
    pub path: Vec<SwitchId>,
}

/// Every directed pair of VMs on different servers with its path, in (source, destination)
/// VM order: what a controller measuring everything would have to place.
pub fn all_fabric_pairs(topology: &Topology, paths: &Paths) -> Vec<PairPath> {
    let vms = topology.vms();
    let mut pairs = Vec::new();
    for (s, src) in vms.iter().enumerate() {
        for (d, dst) in vms.iter().enumerate() {
            if src.server != dst.server {
                pairs.push(PairPath {
                    pair: VmPair::new(src.ipv4, dst.ipv4),
                    path: paths.vm_path(topology, VmId(s), VmId(d)),
                });
            }
        }
    }
    pairs
}

#[cfg(test)]
mod tests;
