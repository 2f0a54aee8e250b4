//! Frames per second through `vmdep switch`'s data plane, in process, on one core:
//! - `ref1_route_one_frame`: ref1 (Ethernet+IPv4, checksum verify and update, one lpm lookup,
//!   TTL decrement, deparse) with 3 routes and one frame over and over;
//! - `ref1_1000_routes`: ref1 with 1,000 routes of mixed prefix lengths, frames to 256 different
//!   destinations (each matching some route);
//! - `ref2_10000_flows`: ref2 (ternary acl + exact flows table with direct counters and idle
//!   timeouts) with 10,000 flow entries (the table's size raised from 4,096) and 256 frames, most
//!   of them hitting a flow;
//! - `vmdep_1000_routes_10000_pairs`: p4/vmdep.p4 as `vmdep compile` builds it, 1,000 routes in
//!   `ipv4_lpm`, 10,000 pairs in `vm_pair`, 256 UDP/TCP frames (mostly pairs being counted);
//! - `vmdep_block_routes_10000_pairs`: the same with the 1,000 routes inside one /8 at 13 prefix
//!   lengths (the lpm index's hard case).
//!
//! Each iteration runs a batch of frames, with one reading of the switch clock as `vmdep switch`
//! does for the frames one receive call took; criterion reports elements (frames) per second.
//!
//! Frames per second vary with the machine's load; instructions per frame do not. With
//! `SWITCH_BENCH_COUNT=NAME:PASSES` in the environment, the benchmark NAME runs exactly PASSES
//! passes over its batch (and nothing is measured by criterion), so that the difference between
//! two `perf stat -e instructions` runs with different PASSES, divided by the frames, is the
//! instructions per frame.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vmdep::switch::{ActionCall, MatchValue, Outputs, Switch, TableEntry};

// Shared with tests/switch_golden.rs; a benchmark uses part of it.
#[allow(dead_code)]
#[path = "../tests/support/xorshift.rs"]
mod xorshift;

use xorshift::Rng;

/// Frames per measured iteration (one pass over the batch).
const BATCH: usize = 256;

fn reference_json(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/p4c-reference/p4c-out/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Ethernet + IPv4 (correct checksum) + UDP (protocol 17) or TCP (6) with a few payload bytes.
fn ipv4_frame(src: u32, dst: u32, protocol: u8) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x08, 0x00];
    let l4_len: u16 = if protocol == 6 { 20 } else { 8 } + 4;
    let total = 20 + l4_len;
    let mut ip = vec![0x45, 0];
    ip.extend(total.to_be_bytes());
    ip.extend([0, 7, 0, 0, 64, protocol, 0, 0]);
    ip.extend(src.to_be_bytes());
    ip.extend(dst.to_be_bytes());
    let ck = vmdep::switch::hash::csum16(&ip);
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    f.extend(ip);
    f.extend(0x1234u16.to_be_bytes());
    f.extend(80u16.to_be_bytes());
    if protocol == 6 {
        f.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        f.extend(l4_len.to_be_bytes());
        f.extend([0, 0]);
    }
    f.extend([1, 2, 3, 4]);
    f
}

/// `n` distinct routes: mostly /24, some /16, /32 and /8, as in a data center fabric.
fn random_routes(rng: &mut Rng, n: usize) -> Vec<(u32, u32)> {
    let mut seen = std::collections::HashSet::new();
    let mut routes = Vec::new();
    while routes.len() < n {
        let len = match rng.below(10) {
            0 => 8,
            1 | 2 => 16,
            3 => 32,
            _ => 24,
        };
        let value = (rng.next() as u32) & (u32::MAX << (32 - len));
        if seen.insert((value, len)) {
            routes.push((value, len));
        }
    }
    routes
}

/// An address inside the route's prefix.
fn inside(rng: &mut Rng, (value, len): (u32, u32)) -> u32 {
    let host = if len == 32 {
        0
    } else {
        (rng.next() as u32) >> len
    };
    value | host
}

fn lpm_entry(action: usize, args: Vec<u128>, (value, len): (u32, u32)) -> TableEntry {
    TableEntry {
        key: vec![MatchValue::Lpm {
            value: u128::from(value),
            prefix_len: len,
        }],
        priority: 0,
        action: ActionCall { action, args },
        idle_timeout_ns: None,
    }
}

/// `SWITCH_BENCH_COUNT`'s passes, when it names this benchmark or another one (then 0).
fn counted_passes(name: &str) -> Option<u64> {
    let spec = std::env::var("SWITCH_BENCH_COUNT").ok()?;
    let (only, passes) = spec
        .split_once(':')
        .expect("SWITCH_BENCH_COUNT is NAME:PASSES");
    let passes: u64 = passes.parse().expect("SWITCH_BENCH_COUNT passes");
    Some(if only == name { passes } else { 0 })
}

fn run_batch(
    c: &mut Criterion,
    name: &str,
    sw: &mut Switch,
    frames: &[Vec<u8>],
    expect_out: usize,
) {
    let mut out = Outputs::new();
    // Sanity: the workload forwards what it should (not, say, drops everything).
    for f in frames {
        sw.process(0, f, &mut out);
    }
    assert_eq!(out.len(), expect_out, "{name}: frames forwarded");
    if let Some(passes) = counted_passes(name) {
        for _ in 0..passes {
            let now = sw.now_ns();
            for f in frames {
                out.clear();
                sw.process_at(0, f, now, &mut out);
            }
        }
        return;
    }
    let mut g = c.benchmark_group("switch");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            // One clock reading per batch, as the switch does for the frames one receive took.
            let now = sw.now_ns();
            for f in frames {
                out.clear();
                sw.process_at(0, f, now, &mut out);
            }
        })
    });
    g.finish();
}

fn ref1_routing(c: &mut Criterion) {
    let mut sw = Switch::from_json_str(&reference_json("ref1_lpm_checksum")).unwrap();
    let t = sw.program().table_by_name("Ing.routes").unwrap();
    let route = sw.program().table_action_by_name(t, "Ing.route").unwrap();
    for (port, prefix) in [(0x0a00_0000u32, 8u32), (0x0a01_0000, 16), (0x0a01_0203, 32)]
        .into_iter()
        .enumerate()
    {
        sw.insert_entry(t, lpm_entry(route, vec![port as u128 + 1, 0xa1], prefix))
            .unwrap();
    }
    let frame = ipv4_frame(0xc000_0201, 0x0a01_0909, 17);
    let mut out = Outputs::new();
    if let Some(passes) = counted_passes("ref1_route_one_frame") {
        for _ in 0..passes {
            out.clear();
            sw.process(0, &frame, &mut out);
        }
        return;
    }
    let mut g = c.benchmark_group("switch");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ref1_route_one_frame", |b| {
        b.iter(|| {
            out.clear();
            sw.process(0, &frame, &mut out);
            assert_eq!(out.len(), 1);
        })
    });
    g.finish();
}

fn ref1_1000_routes(c: &mut Criterion) {
    let mut sw = Switch::from_json_str(&reference_json("ref1_lpm_checksum")).unwrap();
    let t = sw.program().table_by_name("Ing.routes").unwrap();
    let route = sw.program().table_action_by_name(t, "Ing.route").unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let routes = random_routes(&mut rng, 1000);
    for (i, r) in routes.iter().enumerate() {
        let port = 1 + (i as u128 % 8);
        sw.insert_entry(t, lpm_entry(route, vec![port, 0xa1], *r))
            .unwrap();
    }
    let frames: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| {
            let r = routes[rng.below(routes.len() as u64) as usize];
            ipv4_frame(0xc000_0201, inside(&mut rng, r), 17)
        })
        .collect();
    run_batch(c, "ref1_1000_routes", &mut sw, &frames, BATCH);
}

fn ref2_10000_flows(c: &mut Criterion) {
    let mut doc: serde_json::Value =
        serde_json::from_str(&reference_json("ref2_ternary_counters")).unwrap();
    for p in doc["pipelines"].as_array_mut().unwrap() {
        for t in p["tables"].as_array_mut().unwrap() {
            if t["name"] == "Ing.flows" {
                t["max_size"] = 16384.into();
            }
        }
    }
    let mut sw = Switch::from_json_str(&doc.to_string()).unwrap();
    let p = sw.program();
    let acl = p.table_by_name("Ing.acl").unwrap();
    let permit = p.table_action_by_name(acl, "Ing.permit").unwrap();
    let flows = p.table_by_name("Ing.flows").unwrap();
    let track = p.table_action_by_name(flows, "Ing.track").unwrap();
    let any = MatchValue::Ternary { value: 0, mask: 0 };
    sw.insert_entry(
        acl,
        TableEntry {
            key: vec![any; 3],
            priority: 1,
            action: ActionCall {
                action: permit,
                args: vec![2],
            },
            idle_timeout_ns: None,
        },
    )
    .unwrap();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let pairs = random_pairs(&mut rng, 10_000);
    for &(src, dst) in &pairs {
        sw.insert_entry(flows, pair_entry(track, src, dst)).unwrap();
    }
    let frames = pair_frames(&mut rng, &pairs, false);
    run_batch(c, "ref2_10000_flows", &mut sw, &frames, BATCH);
}

/// `n` distinct (src, dst) pairs of addresses in 10.0.0.0/8.
fn random_pairs(rng: &mut Rng, n: usize) -> Vec<(u32, u32)> {
    let mut seen = std::collections::HashSet::new();
    let mut pairs = Vec::new();
    while pairs.len() < n {
        let a = 0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff);
        let b = 0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff);
        if seen.insert((a, b)) {
            pairs.push((a, b));
        }
    }
    pairs
}

fn pair_entry(action: usize, src: u32, dst: u32) -> TableEntry {
    TableEntry {
        key: vec![
            MatchValue::Exact(u128::from(src)),
            MatchValue::Exact(u128::from(dst)),
        ],
        priority: 0,
        action: ActionCall {
            action,
            args: vec![],
        },
        idle_timeout_ns: Some(10_000_000_000),
    }
}

/// BATCH frames: 9 in 10 between a known pair (UDP, or TCP if `mix_tcp` for every other one),
/// the rest between addresses of no pair.
fn pair_frames(rng: &mut Rng, pairs: &[(u32, u32)], mix_tcp: bool) -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|i| {
            let protocol = if mix_tcp && i % 2 == 1 { 6 } else { 17 };
            if rng.below(10) == 0 {
                ipv4_frame(0x0b00_0001, 0x0a00_0000 | (i as u32), protocol)
            } else {
                let (src, dst) = pairs[rng.below(pairs.len() as u64) as usize];
                ipv4_frame(src, dst, protocol)
            }
        })
        .collect()
}

/// p4/vmdep.p4 as `vmdep compile` builds it, `routes` in `ipv4_lpm`, 10,000 counted pairs in
/// `vm_pair`, and a batch of frames (see `pair_frames`).
fn vmdep_switch(rng: &mut Rng, routes: &[(u32, u32)]) -> (Switch, Vec<Vec<u8>>) {
    let source = include_str!("../p4/vmdep.p4");
    let compiled = vmdep::compiler::compile(source, "vmdep.p4").unwrap();
    let mut sw = Switch::from_json_str(&compiled.bmv2_json).unwrap();
    let p = sw.program();
    let lpm = p.table_by_name("MyIngress.ipv4_lpm").unwrap();
    let next_hop = p
        .table_action_by_name(lpm, "MyIngress.set_next_hop")
        .unwrap();
    let vm_pair = p.table_by_name("MyIngress.vm_pair").unwrap();
    let count = p
        .table_action_by_name(vm_pair, "MyIngress.count_pair")
        .unwrap();
    for (i, r) in routes.iter().enumerate() {
        let port = 1 + (i as u128 % 8);
        let args = vec![0x0200_0000_0001, 0x0200_0000_0100 + i as u128, port];
        sw.insert_entry(lpm, lpm_entry(next_hop, args, *r)).unwrap();
    }
    let pairs = random_pairs(rng, 10_000);
    for &(src, dst) in &pairs {
        sw.insert_entry(vm_pair, pair_entry(count, src, dst))
            .unwrap();
    }
    let frames = pair_frames(rng, &pairs, true);
    (sw, frames)
}

fn vmdep_pipeline(c: &mut Criterion) {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    // The pairs live in 10/8; make sure a route covers them, besides 999 others.
    let mut routes = random_routes(&mut rng, 999);
    routes.retain(|r| *r != (0x0a00_0000, 8));
    routes.push((0x0a00_0000, 8));
    while routes.len() < 1000 {
        routes.extend(random_routes(&mut rng, 1).into_iter().filter(|r| r.1 != 8));
    }
    let (mut sw, frames) = vmdep_switch(&mut rng, &routes);
    run_batch(c, "vmdep_1000_routes_10000_pairs", &mut sw, &frames, BATCH);
}

/// vmdep.p4 as above, with the routes of one data center's own address block instead: 10/8 and
/// 999 prefixes inside it of 13 lengths (/12 to /24), as `switch_udp` has them. The lpm index
/// probed many lengths per lookup before it had a trie of lengths.
fn vmdep_block_routes(c: &mut Criterion) {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut seen = std::collections::HashSet::new();
    let mut routes = vec![(0x0a00_0000u32, 8u32)];
    seen.insert(routes[0]);
    while routes.len() < 1000 {
        let len = 12 + rng.below(13) as u32;
        let prefix = (0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff)) & (u32::MAX << (32 - len));
        if seen.insert((prefix, len)) {
            routes.push((prefix, len));
        }
    }
    let (mut sw, frames) = vmdep_switch(&mut rng, &routes);
    run_batch(c, "vmdep_block_routes_10000_pairs", &mut sw, &frames, BATCH);
}

criterion_group!(
    benches,
    ref1_routing,
    ref1_1000_routes,
    ref2_10000_flows,
    vmdep_pipeline,
    vmdep_block_routes
);
criterion_main!(benches);
