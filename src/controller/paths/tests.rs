use std::collections::{HashMap, VecDeque};

use super::*;
use crate::controller::topology::{FatTree, PortPeer};

const REFERENCE: &str = include_str!("../../../topologies/reference.toml");

fn reference() -> Topology {
    Topology::from_toml(REFERENCE).unwrap()
}

fn names(topology: &Topology, path: &[SwitchId]) -> String {
    path.iter()
        .map(|s| topology.switch(*s).name.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Hop counts by a plain breadth-first search, independent of the code under test.
fn hop_distances(topology: &Topology, from: SwitchId) -> HashMap<SwitchId, usize> {
    let mut dist = HashMap::from([(from, 0)]);
    let mut queue = VecDeque::from([from]);
    while let Some(s) = queue.pop_front() {
        let d = dist[&s];
        for (_, far) in topology.switch_neighbours(s) {
            dist.entry(far.switch).or_insert_with(|| {
                queue.push_back(far.switch);
                d + 1
            });
        }
    }
    dist
}

#[test]
fn reference_switch_paths() {
    let t = reference();
    let paths = Paths::compute(&t);
    let id = |n: &str| t.switch_id(n).unwrap();
    // Toward s114 (device 114) from s113: candidates s111, s112, index (113+114) mod 2 = 1.
    // Toward s113 from s114: the same sum, s112 again. s111 and s112 reach either edge directly.
    // s110 (110+113 and 110+114): s112 toward s113 (index 1), s111 toward s114 (index 0).
    let cases = [
        ("s113", "s114", "s113 s112 s114"),
        ("s114", "s113", "s114 s112 s113"),
        ("s113", "s113", "s113"),
        ("s110", "s113", "s110 s112 s113"),
        ("s110", "s114", "s110 s111 s114"),
        ("s111", "s113", "s111 s113"),
        ("s112", "s114", "s112 s114"),
    ];
    for (from, to, expected) in cases {
        let path = paths.switch_path(id(from), id(to)).unwrap();
        assert_eq!(names(&t, &path), expected, "{from} -> {to}");
    }
    // Switches without servers are no destination.
    assert_eq!(paths.switch_path(id("s113"), id("s110")), None);
}

#[test]
fn reference_vm_paths() {
    let t = reference();
    let paths = Paths::compute(&t);
    let path = |src: &str, dst: &str| {
        let pair = VmPair::new(
            t.vm(t.vm_id(src).unwrap()).ipv4,
            t.vm(t.vm_id(dst).unwrap()).ipv4,
        );
        names(&t, &paths.pair_path(&t, pair).unwrap())
    };
    assert_eq!(path("web1", "client1"), "", "same server: no switch");
    assert_eq!(path("web1", "batch1"), "s113", "same switch");
    assert_eq!(path("client2", "web1"), "s113");
    assert_eq!(path("db1", "app2"), "s114");
    assert_eq!(path("web1", "app1"), "s113 s112 s114");
    assert_eq!(path("batch1", "db2"), "s113 s112 s114");
    assert_eq!(path("app1", "web1"), "s114 s112 s113");
    assert_eq!(path("backup1", "web2"), "s114 s112 s113");
    let unknown = VmPair::new(Ipv4Addr::new(10, 0, 120, 1), Ipv4Addr::new(10, 9, 9, 9));
    assert_eq!(
        paths.pair_path(&t, unknown),
        Err(PathError::UnknownVm(Ipv4Addr::new(10, 9, 9, 9)))
    );
}

/// Packets sent by every VM to every other follow the route tables hop by hop: each step's MACs
/// are right, the walk visits exactly the pair's path, and ends at the destination VM.
fn simulate_all_pairs(t: &Topology) {
    let paths = Paths::compute(t);
    let routes = RouteTables::compute(t, &paths);
    for (s, src) in t.vms().iter().enumerate() {
        for (d, dst) in t.vms().iter().enumerate() {
            let expected = paths.vm_path(t, VmId(s), VmId(d));
            if src.server == dst.server {
                assert!(expected.is_empty());
                continue;
            }
            let mut switch = t.server(src.server).uplink.switch;
            let mut visited = Vec::new();
            loop {
                visited.push(switch);
                assert!(
                    visited.len() <= t.switches().len(),
                    "loop for {} -> {}",
                    src.name,
                    dst.name
                );
                let route = routes
                    .lookup(switch, dst.ipv4)
                    .unwrap_or_else(|| panic!("no route to {} on {}", dst.ipv4, switch.0));
                let out = SwitchPort {
                    switch,
                    port: route.egress_port,
                };
                assert_eq!(route.src_mac, t.port_mac(out));
                match t.ports(switch).get(&route.egress_port) {
                    Some(PortPeer::Server(server)) => {
                        assert_eq!(*server, dst.server, "{} -> {}", src.name, dst.name);
                        assert_eq!(route.dst_mac, dst.mac);
                        break;
                    }
                    Some(PortPeer::Switch(far)) => {
                        assert_eq!(route.dst_mac, t.port_mac(*far));
                        switch = far.switch;
                    }
                    None => panic!("route out of an unused port"),
                }
            }
            assert_eq!(visited, expected, "{} -> {}", src.name, dst.name);
            // And the path is a shortest one.
            let hops = hop_distances(t, expected[0])[expected.last().unwrap()];
            assert_eq!(expected.len(), hops + 1);
        }
    }
}

#[test]
fn reference_routes_carry_packets_along_the_paths() {
    simulate_all_pairs(&reference());
}

#[test]
fn fat_tree_routes_carry_packets_along_the_paths() {
    simulate_all_pairs(&FatTree::new(4).unwrap().topology());
    simulate_all_pairs(
        &FatTree::new(6)
            .unwrap()
            .vms_per_server(1)
            .unwrap()
            .topology(),
    );
}

#[test]
fn reference_route_table_of_s113() {
    let t = reference();
    let routes = RouteTables::compute(&t, &Paths::compute(&t));
    let s113 = t.switch_id("s113").unwrap();
    let table: Vec<String> = routes
        .table(s113)
        .iter()
        .map(|r| {
            format!(
                "{}/{} {} {} {}",
                r.prefix, r.prefix_len, r.egress_port, r.src_mac, r.dst_mac
            )
        })
        .collect();
    assert_eq!(
        table,
        [
            "10.0.120.1/32 3 02:00:00:71:00:03 02:01:0a:00:78:01",
            "10.0.120.2/32 3 02:00:00:71:00:03 02:01:0a:00:78:02",
            "10.0.120.3/32 3 02:00:00:71:00:03 02:01:0a:00:78:03",
            "10.0.121.1/32 4 02:00:00:71:00:04 02:01:0a:00:79:01",
            "10.0.121.2/32 4 02:00:00:71:00:04 02:01:0a:00:79:02",
            "10.0.121.3/32 4 02:00:00:71:00:04 02:01:0a:00:79:03",
            // Toward s114 through s112: s113 port 2 to s112 port 2. The reference servers
            // declare no prefix; only sibling /32s merge.
            "10.0.122.1/32 2 02:00:00:71:00:02 02:00:00:70:00:02",
            "10.0.122.2/31 2 02:00:00:71:00:02 02:00:00:70:00:02",
            "10.0.123.1/32 2 02:00:00:71:00:02 02:00:00:70:00:02",
            "10.0.123.2/31 2 02:00:00:71:00:02 02:00:00:70:00:02",
        ]
    );
    assert_eq!(routes.max_entries(), 10);
}

/// What every switch does with every VM's address, from per-VM routes: the reference the
/// aggregated tables must agree with.
fn per_vm_next_hops(t: &Topology, paths: &Paths) -> Vec<Vec<(u16, MacAddr, MacAddr)>> {
    (0..t.switches().len())
        .map(|s| {
            let s = SwitchId(s);
            t.vms()
                .iter()
                .map(|vm| {
                    let uplink = t.server(vm.server).uplink;
                    let (port, dst) = if uplink.switch == s {
                        (uplink.port, vm.mac)
                    } else {
                        let hop = paths.next_hop(s, uplink.switch).unwrap();
                        (hop.egress_port, t.port_mac(hop.next))
                    };
                    let src = t.port_mac(SwitchPort { switch: s, port });
                    (port, src, dst)
                })
                .collect()
        })
        .collect()
}

#[test]
fn aggregated_routes_send_every_vm_address_where_per_vm_routes_would() {
    for t in [reference(), FatTree::new(4).unwrap().topology(), {
        FatTree::new(8)
            .unwrap()
            .vms_per_server(5)
            .unwrap()
            .topology()
    }] {
        let paths = Paths::compute(&t);
        let routes = RouteTables::compute(&t, &paths);
        for (s, expected) in per_vm_next_hops(&t, &paths).iter().enumerate() {
            let table = routes.table(SwitchId(s));
            for (vm, want) in t.vms().iter().zip(expected) {
                let matching: Vec<&Route> = table.iter().filter(|r| r.matches(vm.ipv4)).collect();
                assert_eq!(
                    matching.len(),
                    1,
                    "{} {}: {matching:?}",
                    t.switches()[s].name,
                    vm.ipv4
                );
                let got = matching[0];
                assert_eq!(
                    (got.egress_port, got.src_mac, got.dst_mac),
                    *want,
                    "{} {}",
                    t.switches()[s].name,
                    vm.ipv4
                );
            }
        }
    }
}

#[test]
fn fat_tree_prefixes_fold_edges_and_pods() {
    // A core sends each pod's edges one way: one entry per pod, covering its k/2 edges' /24s.
    // No switch needs more entries than there are edges plus its own VMs.
    for k in [4u32, 8, 16] {
        let t = FatTree::new(k).unwrap().topology();
        let routes = RouteTables::compute(&t, &Paths::compute(&t));
        let edges = (k * k / 2) as usize;
        let own_vms = (k / 2 * 2) as usize;
        assert!(
            routes.max_entries() <= edges + own_vms,
            "k = {k}: {} entries",
            routes.max_entries()
        );
        let c0 = t.switch_id("c0").unwrap();
        assert_eq!(
            routes.table(c0).len(),
            k as usize,
            "a core: one entry per pod"
        );
        let edge_bits = (k / 2).trailing_zeros() as u8;
        for r in routes.table(c0) {
            assert_eq!(r.prefix_len, 24 - edge_bits, "{r:?}");
        }
    }
    // Without the prefixes the same tree needs one entry per VM: 2,048 for k = 16, more than
    // vmdep.p4's 1024.
    let mut file = FatTree::new(16).unwrap().file();
    for server in &mut file.servers {
        server.prefix = None;
    }
    let t = Topology::from_file_format(file).unwrap();
    let routes = RouteTables::compute(&t, &Paths::compute(&t));
    assert!(routes.max_entries() > 1024, "{}", routes.max_entries());
}

#[test]
fn fat_tree_path_lengths() {
    let t = FatTree::new(8)
        .unwrap()
        .vms_per_server(1)
        .unwrap()
        .topology();
    let paths = Paths::compute(&t);
    let pod_and_edge = |vm: VmId| {
        let name = &t.switch(t.edge_switch_of_vm(vm)).name;
        let (pod, _) = name[1..].split_once('_').unwrap();
        (pod.to_string(), name.clone())
    };
    let mut lengths: HashMap<usize, usize> = HashMap::new();
    for s in 0..t.vms().len() {
        for d in 0..t.vms().len() {
            let (src, dst) = (VmId(s), VmId(d));
            let len = paths.vm_path(&t, src, dst).len();
            let (sp, se) = pod_and_edge(src);
            let (dp, de) = pod_and_edge(dst);
            let expected = if t.vm(src).server == t.vm(dst).server {
                0
            } else if se == de {
                1
            } else if sp == dp {
                3
            } else {
                5
            };
            assert_eq!(len, expected);
            *lengths.entry(len).or_default() += 1;
        }
    }
    // 128 VMs, one per server: 4 per edge switch, 16 per pod.
    assert_eq!(lengths[&0], 128);
    assert_eq!(lengths[&1], 128 * 3);
    assert_eq!(lengths[&3], 128 * 12);
    assert_eq!(lengths[&5], 128 * 112);
}

#[test]
fn fat_tree_trees_spread_over_cores() {
    // With k = 8, inter-pod traffic toward the 32 edge switches should not all cross one core.
    let t = FatTree::new(8).unwrap().topology();
    let paths = Paths::compute(&t);
    let mut cores = std::collections::BTreeSet::new();
    for pair in all_fabric_pairs(&t, &paths) {
        for s in pair.path {
            if t.switch(s).name.starts_with('c') {
                cores.insert(s);
            }
        }
    }
    assert_eq!(cores.len(), 16, "every core carries some tree");
}

#[test]
fn parallel_links_use_the_lowest_port() {
    let t = Topology::from_toml(
        r#"
        [[switch]]
        name = "s1"
        device_id = 1
        p4runtime = "127.0.0.1:50001"
        vm_pair_capacity = 1
        [[switch]]
        name = "s2"
        device_id = 2
        p4runtime = "127.0.0.1:50002"
        vm_pair_capacity = 1
        [[link]]
        a = "s1:5"
        b = "s2:9"
        [[link]]
        a = "s1:4"
        b = "s2:8"
        [[server]]
        name = "h2"
        sflow_agent = "127.0.0.2"
        uplink = "s2:1"
        "#,
    )
    .unwrap();
    let paths = Paths::compute(&t);
    let hop = paths.next_hop(SwitchId(0), SwitchId(1)).unwrap();
    assert_eq!(hop.egress_port, 4);
    assert_eq!(
        hop.next,
        SwitchPort {
            switch: SwitchId(1),
            port: 8
        }
    );
}

#[test]
fn route_prefix_matching() {
    let mac = MacAddr([2, 0, 0, 0, 0, 1]);
    let route = |prefix: [u8; 4], prefix_len| Route {
        prefix: Ipv4Addr::from(prefix),
        prefix_len,
        src_mac: mac,
        dst_mac: mac,
        egress_port: 1,
    };
    assert!(route([10, 0, 0, 0], 8).matches(Ipv4Addr::new(10, 200, 1, 1)));
    assert!(!route([10, 0, 0, 0], 8).matches(Ipv4Addr::new(11, 0, 0, 1)));
    assert!(route([0, 0, 0, 0], 0).matches(Ipv4Addr::new(192, 0, 2, 1)));
    assert!(route([10, 0, 0, 7], 32).matches(Ipv4Addr::new(10, 0, 0, 7)));
    assert!(!route([10, 0, 0, 7], 32).matches(Ipv4Addr::new(10, 0, 0, 6)));
}
