use std::net::Ipv4Addr;

use proptest::prelude::*;
use proptest::strategy::Strategy;

use super::*;
use crate::controller::paths::{all_fabric_pairs, Paths};

fn pair(n: u32) -> VmPair {
    VmPair::new(
        Ipv4Addr::from(0x0a00_0000 + n),
        Ipv4Addr::from(0x0a01_0000 + n),
    )
}

fn budget(device_id: u16, capacity: u32) -> SwitchBudget {
    SwitchBudget {
        device_id,
        capacity,
        used: 0,
    }
}

fn path(ids: &[usize]) -> Vec<SwitchId> {
    ids.iter().map(|&i| SwitchId(i)).collect()
}

#[test]
fn load_orders_fractions_exactly() {
    assert!(Load::new(1, 3) < Load::new(1, 2));
    assert!(Load::new(2, 4) == Load::new(1, 2));
    assert!(Load::new(0, 0) == Load::new(0, 7));
    assert!(Load::new(0, 0) < Load::new(1, 1_000_000));
    assert!(Load::new(16_777_215, 16_777_216) < Load::new(16_777_216, 16_777_216));
    assert_eq!(Load::new(3, 4).ratio(), 0.75);
}

#[test]
fn greedy_takes_the_least_loaded_switch_then_the_lowest_device_id() {
    // Switch 0 (device 30, capacity 4), 1 (device 10, capacity 2), 2 (device 20, capacity 4).
    let mut g = GreedyPlacer::new(vec![budget(30, 4), budget(10, 2), budget(20, 4)]);
    let p = path(&[0, 1, 2]);
    // All empty: tie, device 10 wins.
    assert_eq!(g.place(pair(1), &p), Ok(SwitchId(1)));
    // Loads 0/4, 1/2, 0/4: tie between devices 30 and 20 → 20.
    assert_eq!(g.place(pair(2), &p), Ok(SwitchId(2)));
    assert_eq!(g.place(pair(3), &p), Ok(SwitchId(0)));
    // Loads 1/4, 1/2, 1/4 → device 20.
    assert_eq!(g.place(pair(4), &p), Ok(SwitchId(2)));
    // Loads 1/4, 1/2, 2/4: 30 is lowest.
    assert_eq!(g.place(pair(5), &p), Ok(SwitchId(0)));
    // 2/4, 1/2, 2/4: all equal → device 10.
    assert_eq!(g.place(pair(6), &p), Ok(SwitchId(1)));
    // Switch 1 is now full (2/2) and skipped: loads 2/4, 2/4 → device 20.
    assert_eq!(g.place(pair(7), &p), Ok(SwitchId(2)));
    let used: Vec<u32> = g.budgets().iter().map(|b| b.used).collect();
    assert_eq!(used, [2, 2, 3]);
}

#[test]
fn greedy_skips_full_and_exhausted_switches() {
    let mut g = GreedyPlacer::new(vec![budget(1, 1), budget(2, 5), budget(3, 0)]);
    let p = path(&[0, 1, 2]);
    assert_eq!(g.place(pair(1), &p), Ok(SwitchId(0)));
    assert_eq!(g.place(pair(2), &p), Ok(SwitchId(1)));
    // The switch refuses pair 2: release it, mark the switch, place again → nowhere left but 0
    // which is full, and 2 which has no capacity.
    g.mark_exhausted(SwitchId(1));
    assert_eq!(g.release(pair(2)), Some(SwitchId(1)));
    // The release cleared the flag (it made room); mark again as the session would.
    g.mark_exhausted(SwitchId(1));
    assert_eq!(g.place(pair(2), &p), Err(PlaceError::NoRoom(pair(2))));
    // Freeing an entry on switch 0 makes it usable again.
    assert_eq!(g.release(pair(1)), Some(SwitchId(0)));
    assert_eq!(g.place(pair(2), &p), Ok(SwitchId(0)));
    assert_eq!(g.release(pair(1)), None);
    assert_eq!(g.placed_count(), 1);
}

#[test]
fn greedy_rejects_bad_requests() {
    let mut g = GreedyPlacer::new(vec![budget(1, 3)]);
    assert_eq!(g.place(pair(1), &[]), Err(PlaceError::EmptyPath(pair(1))));
    assert_eq!(
        g.place(pair(1), &path(&[0, 4])),
        Err(PlaceError::UnknownSwitch {
            pair: pair(1),
            switch: SwitchId(4)
        })
    );
    assert_eq!(g.place(pair(1), &path(&[0])), Ok(SwitchId(0)));
    assert_eq!(
        g.place(pair(1), &path(&[0])),
        Err(PlaceError::AlreadyPlaced {
            pair: pair(1),
            switch: SwitchId(0)
        })
    );
    assert_eq!(g.switch_of(pair(1)), Some(SwitchId(0)));
}

#[test]
fn problem_validation() {
    let pp = |n, ids: &[usize]| PairPath {
        pair: pair(n),
        path: path(ids),
    };
    let err = |switches, pairs| {
        PlacementProblem::new(switches, pairs)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(vec![budget(1, 2)], vec![pp(1, &[0]), pp(1, &[0])]),
        "pair 10.0.0.1->10.1.0.1 appears twice in the batch"
    );
    assert_eq!(
        err(vec![budget(1, 2)], vec![pp(1, &[])]),
        "pair 10.0.0.1->10.1.0.1 crosses no switch (same server): its server counts it"
    );
    assert_eq!(
        err(vec![budget(1, 2)], vec![pp(1, &[1])]),
        "pair 10.0.0.1->10.1.0.1: switch index 1 is not in the topology"
    );
    assert_eq!(
        err(
            vec![SwitchBudget {
                device_id: 7,
                capacity: 2,
                used: 3
            }],
            vec![]
        ),
        "switch 7 has 3 entries in use but offers only 2"
    );
}

#[test]
fn optimal_places_what_greedy_cannot() {
    // Pair 1 may use A or B, pair 2 only A; each holds one entry. Greedy gives pair 1 the lower
    // device id A and has no room for pair 2; the optimum uses both.
    let pp = |n, ids: &[usize]| PairPath {
        pair: pair(n),
        path: path(ids),
    };
    let problem = PlacementProblem::new(
        vec![budget(1, 1), budget(2, 1)],
        vec![pp(1, &[0, 1]), pp(2, &[0])],
    )
    .unwrap();
    assert_eq!(problem.greedy().switch_of, [Some(SwitchId(0)), None]);
    let optimal = problem.optimal();
    assert_eq!(optimal.switch_of, [Some(SwitchId(1)), Some(SwitchId(0))]);
    assert_eq!(optimal.entries, [1, 1]);
}

#[test]
fn optimal_minimizes_the_maximum_load_with_unequal_capacities() {
    // Six pairs over A (capacity 2) and B (capacity 10): 1 on A and 5 on B gives 1/2 on both,
    // better than 0 + 6 (6/10) or 2 + 4 (2/2).
    let pairs = (0..6)
        .map(|n| PairPath {
            pair: pair(n),
            path: path(&[0, 1]),
        })
        .collect();
    let problem = PlacementProblem::new(vec![budget(1, 2), budget(2, 10)], pairs).unwrap();
    let optimal = problem.optimal();
    assert_eq!(optimal.entries, [1, 5]);
    assert_eq!(problem.max_load(&optimal.entries), Load::new(1, 2));
}

#[test]
fn optimal_respects_entries_in_use() {
    let pairs = (0..4)
        .map(|n| PairPath {
            pair: pair(n),
            path: path(&[0, 1]),
        })
        .collect();
    let switches = vec![
        SwitchBudget {
            device_id: 1,
            capacity: 4,
            used: 3,
        },
        SwitchBudget {
            device_id: 2,
            capacity: 4,
            used: 0,
        },
    ];
    let problem = PlacementProblem::new(switches, pairs).unwrap();
    // 3 in use + 4 new = 7 entries over two switches of 4: one of them ends full.
    let optimal = problem.optimal();
    assert_eq!(optimal.placed_count(), 4);
    assert_eq!(problem.max_load(&optimal.entries), Load::new(4, 4));
    let pairs = (0..3)
        .map(|n| PairPath {
            pair: pair(n),
            path: path(&[0, 1]),
        })
        .collect();
    let switches = vec![
        SwitchBudget {
            device_id: 1,
            capacity: 4,
            used: 3,
        },
        SwitchBudget {
            device_id: 2,
            capacity: 4,
            used: 0,
        },
    ];
    let problem = PlacementProblem::new(switches, pairs).unwrap();
    // 3 in use + 3 new: all new ones on B balances at 3/4.
    let optimal = problem.optimal();
    assert_eq!(optimal.entries, [3, 3]);
}

#[test]
fn reference_report() {
    let t = Topology::from_toml(include_str!("../../../topologies/reference.toml")).unwrap();
    let paths = Paths::compute(&t);
    // Small capacities so that the strategies differ: 108 fabric pairs over 5 × 40 entries
    // (s110 and s111 are on no path).
    let budgets = empty_budgets(&t)
        .into_iter()
        .map(|b| SwitchBudget { capacity: 40, ..b })
        .collect();
    let problem = PlacementProblem::new(budgets, all_fabric_pairs(&t, &paths)).unwrap();
    let report = problem.report();
    insta::assert_json_snapshot!(report);
}

/// A random instance: switches with capacities (and some entries in use), pairs with paths of
/// distinct switches.
fn arb_problem(max_switches: usize, max_pairs: usize) -> impl Strategy<Value = PlacementProblem> {
    prop::collection::vec((0u32..5, 0u32..3), 1..=max_switches).prop_flat_map(move |caps| {
        let n = caps.len();
        let switches: Vec<SwitchBudget> = caps
            .iter()
            .enumerate()
            .map(|(i, &(capacity, used))| SwitchBudget {
                // Device ids not in index order, so ties really test the device id.
                device_id: (n - i) as u16 * 3,
                capacity,
                used: used.min(capacity),
            })
            .collect();
        let path = Just((0..n).collect::<Vec<usize>>())
            .prop_shuffle()
            .prop_flat_map(move |order| {
                (1..=order.len().min(4)).prop_map(move |len| order[..len].to_vec())
            });
        prop::collection::vec(path, 0..=max_pairs).prop_map(move |paths| {
            let pairs = paths
                .into_iter()
                .enumerate()
                .map(|(i, p)| PairPath {
                    pair: pair(i as u32),
                    path: p.into_iter().map(SwitchId).collect(),
                })
                .collect();
            PlacementProblem::new(switches.clone(), pairs).unwrap()
        })
    })
}

/// Checks a placement against its problem: switches on the pair's path, entries add up,
/// capacities hold.
fn check_valid(problem: &PlacementProblem, placement: &Placement) -> Result<(), TestCaseError> {
    let mut entries: Vec<u32> = problem.switches().iter().map(|b| b.used).collect();
    for (p, s) in problem.pairs().iter().zip(&placement.switch_of) {
        if let Some(s) = s {
            prop_assert!(p.path.contains(s), "{} placed off its path", p.pair);
            entries[s.0] += 1;
        }
    }
    prop_assert_eq!(&entries, &placement.entries);
    for (e, b) in entries.iter().zip(problem.switches()) {
        prop_assert!(*e <= b.capacity);
    }
    Ok(())
}

/// The best (placed count, max load) over all assignments, by exhaustive search.
fn brute_force(problem: &PlacementProblem) -> (usize, Load) {
    fn go(
        problem: &PlacementProblem,
        i: usize,
        entries: &mut Vec<u32>,
        placed: usize,
        best: &mut (usize, Load),
    ) {
        if i == problem.pairs().len() {
            let load = problem.max_load(entries);
            if placed > best.0 || (placed == best.0 && load < best.1) {
                *best = (placed, load);
            }
            return;
        }
        go(problem, i + 1, entries, placed, best);
        for s in &problem.pairs()[i].path {
            if entries[s.0] < problem.switches()[s.0].capacity {
                entries[s.0] += 1;
                go(problem, i + 1, entries, placed + 1, best);
                entries[s.0] -= 1;
            }
        }
    }
    let mut entries: Vec<u32> = problem.switches().iter().map(|b| b.used).collect();
    let mut best = (0, problem.max_load(&entries));
    go(problem, 0, &mut entries, 0, &mut best);
    best
}

proptest! {
    #[test]
    fn strategies_respect_paths_and_capacities(problem in arb_problem(6, 20)) {
        let greedy = problem.greedy();
        let optimal = problem.optimal();
        let naive = problem.naive();
        check_valid(&problem, &greedy)?;
        check_valid(&problem, &optimal)?;
        check_valid(&problem, &naive)?;
        // The optimum places the most, and at that count has the lowest maximum load.
        for other in [&greedy, &naive] {
            prop_assert!(optimal.placed_count() >= other.placed_count());
            if optimal.placed_count() == other.placed_count() {
                let (best, theirs) =
                    (problem.max_load(&optimal.entries), problem.max_load(&other.entries));
                prop_assert!(best <= theirs);
            }
        }
        // Deterministic.
        prop_assert_eq!(&optimal, &problem.optimal());
        prop_assert_eq!(&greedy, &problem.greedy());
    }

    #[test]
    fn optimal_matches_brute_force(problem in arb_problem(4, 7)) {
        let optimal = problem.optimal();
        let (placed, load) = brute_force(&problem);
        prop_assert_eq!(optimal.placed_count(), placed);
        prop_assert_eq!(problem.max_load(&optimal.entries), load);
    }

    /// Incremental greedy under random place / release / refusal sequences keeps its books.
    #[test]
    fn greedy_incremental_bookkeeping(
        problem in arb_problem(5, 12),
        ops in prop::collection::vec((0usize..12, 0u8..4), 0..60),
    ) {
        let mut g = GreedyPlacer::new(problem.switches().to_vec());
        let mut placed: HashMap<VmPair, SwitchId> = HashMap::new();
        for (i, op) in ops {
            let Some(p) = problem.pairs().get(i) else { continue };
            match op {
                0 | 1 => match g.place(p.pair, &p.path) {
                    Ok(s) => {
                        prop_assert!(p.path.contains(&s));
                        prop_assert!(placed.insert(p.pair, s).is_none());
                    }
                    Err(PlaceError::AlreadyPlaced { switch, .. }) => {
                        prop_assert_eq!(placed.get(&p.pair), Some(&switch));
                    }
                    Err(PlaceError::NoRoom(_)) => {
                        prop_assert!(!placed.contains_key(&p.pair));
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                },
                2 => prop_assert_eq!(g.release(p.pair), placed.remove(&p.pair)),
                _ => {
                    // A refusal: the session releases the pair and marks its switch.
                    if let Some(s) = placed.remove(&p.pair) {
                        prop_assert_eq!(g.release(p.pair), Some(s));
                        g.mark_exhausted(s);
                        if let Ok(again) = g.place(p.pair, &p.path) {
                            prop_assert_ne!(again, s);
                            placed.insert(p.pair, again);
                        }
                    }
                }
            }
            let mut used: Vec<u32> = problem.switches().iter().map(|b| b.used).collect();
            for s in placed.values() {
                used[s.0] += 1;
            }
            let books: Vec<u32> = g.budgets().iter().map(|b| b.used).collect();
            prop_assert_eq!(&used, &books);
            for b in g.budgets() {
                prop_assert!(b.used <= b.capacity);
            }
            prop_assert_eq!(g.placed_count(), placed.len());
        }
    }
}
