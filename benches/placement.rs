//! Placement time for 100,000 measured VM pairs on a k = 16 fat tree (320 switches, 1024
//! servers of 4 VMs): greedy (goal < 1 s) and optimal (goal < 10 s), with switches of 4096
//! vm_pair entries (vmdep.p4's size, loads stay low) and of 400 (tight: 128,000 entries for
//! 100,000 pairs). The pairs are drawn from a fixed-seed generator, on different servers,
//! without repeats. Before timing, each case prints what the strategies achieve.

use std::collections::HashSet;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use vmdep::controller::paths::{PairPath, Paths};
use vmdep::controller::placement::{empty_budgets, PlacementProblem, SwitchBudget};
use vmdep::controller::topology::{FatTree, VmId};
use vmdep::controller::VmPair;

const PAIRS: usize = 100_000;

/// xorshift64*: a fixed, dependency-free sequence of pair choices.
struct Draws(u64);

impl Draws {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

fn problem(capacity: u32) -> PlacementProblem {
    let topology = FatTree::new(16)
        .unwrap()
        .vms_per_server(4)
        .unwrap()
        .topology();
    let paths = Paths::compute(&topology);
    let vms = topology.vms().len();
    let mut draws = Draws(0x9e37_79b9_7f4a_7c15);
    let mut seen = HashSet::new();
    let mut pairs = Vec::with_capacity(PAIRS);
    while pairs.len() < PAIRS {
        let (s, d) = (VmId(draws.below(vms)), VmId(draws.below(vms)));
        let pair = VmPair::new(topology.vm(s).ipv4, topology.vm(d).ipv4);
        if topology.vm(s).server != topology.vm(d).server && seen.insert(pair) {
            pairs.push(PairPath {
                pair,
                path: paths.vm_path(&topology, s, d),
            });
        }
    }
    let budgets = empty_budgets(&topology)
        .into_iter()
        .map(|b| SwitchBudget { capacity, ..b })
        .collect();
    PlacementProblem::new(budgets, pairs).unwrap()
}

fn placement(c: &mut Criterion) {
    for capacity in [4096, 400] {
        let problem = problem(capacity);
        let report = problem.report();
        for s in &report.strategies {
            eprintln!(
                "capacity {capacity}: {:?} placed {} of {}, max load {:.4}",
                s.strategy, s.placed, report.pairs, s.max_load
            );
        }
        eprintln!(
            "capacity {capacity}: every switch of every path would need {} entries, max load {:.2}",
            report.every_switch_of_path.total_entries, report.every_switch_of_path.max_load
        );
        let mut group = c.benchmark_group(format!("placement_k16_100k_pairs_capacity_{capacity}"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(5));
        group.bench_function("greedy", |b| b.iter(|| problem.greedy()));
        group.bench_function("naive", |b| b.iter(|| problem.naive()));
        group.bench_function("optimal", |b| b.iter(|| problem.optimal()));
        group.finish();
    }
}

criterion_group!(benches, placement);
criterion_main!(benches);
