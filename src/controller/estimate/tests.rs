use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;

const REFERENCE: &str = include_str!("../../../topologies/reference.toml");

fn reference() -> Topology {
    Topology::from_toml(REFERENCE).unwrap()
}

/// A pair between VMs of the reference topology: 10.0.<server>.<n>.
fn p(src: (u8, u8), dst: (u8, u8)) -> VmPair {
    VmPair::new(
        Ipv4Addr::new(10, 0, src.0, src.1),
        Ipv4Addr::new(10, 0, dst.0, dst.1),
    )
}

fn policy() -> SelectionPolicy {
    SelectionPolicy {
        metric: Metric::Packets,
        threshold: 1000,
        top_k: 1,
        entry_budget: 3,
        idle_windows: 2,
    }
}

/// A window where each listed pair was sampled `samples` times at 1 in 100, 1000-byte frames.
fn window(pairs: &[(VmPair, u64)]) -> WindowSamples {
    let mut w = WindowSamples::new();
    for &(pair, samples) in pairs {
        for _ in 0..samples {
            w.record(pair, 1000, 100).unwrap();
        }
    }
    w
}

#[test]
fn estimates_scale_samples_by_their_rates() {
    let pair = p((120, 1), (122, 1));
    let mut w = WindowSamples::new();
    w.record(pair, 64, 100).unwrap();
    w.record(pair, 1500, 100).unwrap();
    w.record(pair, 100, 1000).unwrap();
    let s = w.get(pair);
    assert_eq!(
        s,
        PairSamples {
            samples: 3,
            packets: 1200,
            bytes: 64 * 100 + 1500 * 100 + 100 * 1000
        }
    );
    assert_eq!(w.get(p((120, 2), (122, 1))), PairSamples::default());
    assert_eq!(w.len(), 1);
    assert_eq!(
        w.record(pair, 64, 0),
        Err(EstimateError::ZeroSamplingRate { pair })
    );
    assert_eq!(w.get(pair).samples, 3, "a rejected sample changes nothing");
}

#[test]
fn estimates_saturate() {
    let pair = p((120, 1), (122, 1));
    let mut w = WindowSamples::new();
    for _ in 0..3 {
        w.record(pair, u32::MAX, u32::MAX).unwrap();
    }
    assert_eq!(w.get(pair).samples, 3);
    assert_eq!(w.get(pair).bytes, u64::MAX);
}

#[test]
fn error_bound() {
    assert_eq!(error_bound_percent(0), None);
    assert_eq!(error_bound_percent(1), Some(196.0));
    assert!((error_bound_percent(100).unwrap() - 19.6).abs() < 1e-12);
    assert!((error_bound_percent(10_000).unwrap() - 1.96).abs() < 1e-12);
    let mut w = WindowSamples::new();
    w.record(p((120, 1), (122, 1)), 64, 10).unwrap();
    assert_eq!(w.get(p((120, 1), (122, 1))).error_percent(), Some(196.0));
}

#[test]
fn scopes() {
    let t = reference();
    assert_eq!(pair_scope(&t, p((120, 1), (120, 2))), PairScope::SameServer);
    assert_eq!(pair_scope(&t, p((120, 1), (121, 2))), PairScope::Fabric);
    assert_eq!(pair_scope(&t, p((120, 1), (99, 2))), PairScope::Unknown);
}

#[test]
fn threshold_or_top_k_within_the_budget() {
    let t = reference();
    let mut selector = PairSelector::new(policy()).unwrap();
    let big = p((120, 1), (122, 1)); // 20 samples: 2000 packets, over the threshold
    let mid = p((121, 1), (123, 1)); // 12 samples: 1200 packets, over the threshold
    let small = p((120, 2), (121, 1)); // 2 samples: 200, under it and not the top 1
    let local = p((120, 1), (120, 3)); // same server: never selected
    let alien = p((120, 1), (50, 1)); // unknown address
    let w = window(&[(big, 20), (mid, 12), (small, 2), (local, 50), (alien, 30)]);
    let d = selector.step(&t, &w, &BTreeSet::new());
    assert_eq!(d.selected, [big, mid]);
    assert_eq!((d.same_server, d.unknown), (1, 1));
    assert!(d.released.is_empty() && d.deferred.is_empty());

    // Next window: `small` alone is the top 1, so it is selected under the threshold.
    let w = window(&[(small, 2), (big, 1)]);
    let d = selector.step(&t, &w, &BTreeSet::new());
    assert_eq!(d.selected, [small]);
    assert_eq!(selector.measured().collect::<Vec<_>>(), {
        let mut all = vec![big, mid, small];
        all.sort();
        all
    });

    // `mid` has now been idle for two windows: released first, which makes room for one of
    // the two new heavy pairs; the lighter one waits for the budget.
    let heavy = p((122, 3), (120, 3));
    let lighter = p((123, 3), (120, 3));
    let w = window(&[(heavy, 30), (lighter, 25), (big, 1), (small, 1)]);
    let d = selector.step(&t, &w, &BTreeSet::new());
    assert_eq!(d.released, [mid]);
    assert_eq!(d.selected, [heavy]);
    assert_eq!(d.deferred, [lighter]);
    let d = selector.step(&t, &w, &BTreeSet::new());
    assert!(d.selected.is_empty() && d.released.is_empty());
    assert_eq!(d.deferred, [lighter]);
}

#[test]
fn ties_are_broken_by_pair_and_budget_order_is_by_estimate() {
    let t = reference();
    let mut selector = PairSelector::new(SelectionPolicy {
        entry_budget: 2,
        top_k: 0,
        ..policy()
    })
    .unwrap();
    let a = p((122, 1), (120, 1));
    let b = p((120, 3), (122, 1));
    let c = p((121, 1), (123, 2));
    let d = selector.step(&t, &window(&[(a, 15), (b, 15), (c, 40)]), &BTreeSet::new());
    // c first (largest), then a and b tie at 1500: the lower pair (b: 10.0.120.3 < 10.0.122.1).
    assert_eq!(d.selected, [c, b]);
    assert_eq!(d.deferred, [a]);
}

#[test]
fn exact_counts_keep_a_pair_measured() {
    let t = reference();
    let mut selector = PairSelector::new(policy()).unwrap();
    let pair = p((120, 1), (122, 1));
    selector.step(&t, &window(&[(pair, 20)]), &BTreeSet::new());
    // No samples, but the switch counted packets: not idle.
    for _ in 0..5 {
        let d = selector.step(&t, &WindowSamples::new(), &BTreeSet::from([pair]));
        assert!(d.released.is_empty());
    }
    let d = selector.step(&t, &WindowSamples::new(), &BTreeSet::new());
    assert!(d.released.is_empty(), "one idle window of two");
    let d = selector.step(&t, &WindowSamples::new(), &BTreeSet::new());
    assert_eq!(d.released, [pair]);
    assert!(!selector.is_measured(pair));
    // And it can come back.
    let d = selector.step(&t, &window(&[(pair, 20)]), &BTreeSet::new());
    assert_eq!(d.selected, [pair]);
    assert!(selector.release(pair));
    assert!(!selector.release(pair));
}

#[test]
fn bytes_metric() {
    let t = reference();
    let mut selector = PairSelector::new(SelectionPolicy {
        metric: Metric::Bytes,
        threshold: 1_000_000,
        top_k: 0,
        ..policy()
    })
    .unwrap();
    let few_big = p((120, 1), (122, 1));
    let many_small = p((120, 2), (122, 2));
    let mut w = WindowSamples::new();
    for _ in 0..10 {
        w.record(few_big, 1500, 100).unwrap(); // 1.5 MB
    }
    for _ in 0..100 {
        w.record(many_small, 64, 100).unwrap(); // 640 kB, but 10,000 packets
    }
    let d = selector.step(&t, &w, &BTreeSet::new());
    assert_eq!(d.selected, [few_big]);
}

#[test]
fn policy_is_checked() {
    assert_eq!(
        PairSelector::new(SelectionPolicy {
            idle_windows: 0,
            ..policy()
        })
        .unwrap_err(),
        EstimateError::ZeroIdleWindows
    );
}

proptest! {
    /// Random windows over the reference VMs: the budget holds, only fabric pairs are
    /// measured, decisions are consistent with the measured set, and the same input gives the
    /// same decisions.
    #[test]
    fn selection_invariants(
        windows in prop::collection::vec(
            prop::collection::vec(((120u8..124, 1u8..4), (120u8..125, 1u8..4), 1u64..30), 0..12),
            1..8,
        ),
        budget in 0usize..6,
        top_k in 0usize..4,
        threshold in 0u64..3000,
    ) {
        let t = reference();
        let policy = SelectionPolicy {
            metric: Metric::Packets,
            threshold,
            top_k,
            entry_budget: budget,
            idle_windows: 2,
        };
        let mut selector = PairSelector::new(policy).unwrap();
        let mut twin = PairSelector::new(policy).unwrap();
        for pairs in windows {
            let w = window(&pairs.iter().map(|&(s, d, n)| (p(s, d), n)).collect::<Vec<_>>());
            let before: BTreeSet<VmPair> = selector.measured().collect();
            let d = selector.step(&t, &w, &BTreeSet::new());
            prop_assert_eq!(&d, &twin.step(&t, &w, &BTreeSet::new()));
            let after: BTreeSet<VmPair> = selector.measured().collect();
            prop_assert!(after.len() <= budget);
            for pair in &d.released {
                prop_assert!(before.contains(pair) && !after.contains(pair));
                prop_assert_eq!(w.get(*pair).samples, 0);
            }
            for pair in &d.selected {
                prop_assert!(!before.contains(pair) && after.contains(pair));
                prop_assert_eq!(pair_scope(&t, *pair), PairScope::Fabric);
            }
            for pair in &d.deferred {
                prop_assert!(!after.contains(pair));
            }
            // Deferred only when the budget is full.
            if !d.deferred.is_empty() {
                prop_assert_eq!(after.len(), budget);
            }
            let expected: BTreeSet<VmPair> = before
                .difference(&d.released.iter().copied().collect())
                .copied()
                .chain(d.selected.iter().copied())
                .collect();
            prop_assert_eq!(after, expected);
        }
    }
}
