use std::collections::BTreeMap;

use super::*;
use crate::controller::estimate::PairSamples;
use crate::controller::graph::DependencyGraph;
use crate::controller::service::{PairEstimate, WindowReport};

const TOPOLOGY: &str = include_str!("../../../topologies/reference.toml");

fn topology() -> Topology {
    Topology::from_toml(TOPOLOGY).unwrap()
}

fn ip(t: &Topology, vm: &str) -> Ipv4Addr {
    t.vm(t.vm_id(vm).unwrap()).ipv4
}

/// A window at `at_ms`: web1 → app1 sampled (and counted on s112 with `exact` packets),
/// client1 → web1 sampled only, with an http label on web1 → app1.
fn window(t: &Topology, index: u64, at_ms: u64, exact: u64) -> WindowRecord {
    let measured = VmPair::new(ip(t, "web1"), ip(t, "app1"));
    let sampled = VmPair::new(ip(t, "client1"), ip(t, "web1"));
    let samples = PairSamples {
        samples: 4,
        packets: 256,
        bytes: 256_000,
    };
    let mut graph = DependencyGraph::new(t);
    graph.observe_estimate(measured, samples, at_ms).unwrap();
    graph.observe_estimate(sampled, samples, at_ms).unwrap();
    graph
        .observe_exact(measured, exact, exact * 100, "s112", at_ms)
        .unwrap();
    graph
        .observe_labels(
            measured,
            vec![AppLabel {
                protocol: "http".into(),
                client: measured.src,
                server: measured.dst,
                server_port: 8080,
                details: vec![format!("GET /{index}")],
                requests: index,
                responses: index,
                mean_response_ms: Some(1.5),
            }],
            at_ms,
        )
        .unwrap();
    WindowRecord {
        report: WindowReport {
            index,
            at_ms,
            samples: 8,
            sampled_pairs: 2,
            estimates: [measured, sampled]
                .into_iter()
                .map(|pair| PairEstimate {
                    pair,
                    samples,
                    error_percent: samples.error_percent(),
                })
                .collect(),
            measured: 1,
            ..WindowReport::default()
        },
        graph: graph.snapshot(),
        placements: BTreeMap::from([(measured, "s112".to_string())]),
    }
}

#[test]
fn a_new_database_gets_the_current_schema() {
    let store = HistoryStore::open_in_memory(None).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.oldest_ms().unwrap(), None);
}

#[test]
fn a_database_from_a_newer_vmdep_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = HistoryStore::open(&path, None).err().expect("refused");
    assert!(
        matches!(err, HistoryError::TooNew { found, .. } if found == SCHEMA_VERSION + 1),
        "{err}"
    );
}

#[test]
fn windows_are_read_back_after_reopening() {
    let t = topology();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    {
        let store = HistoryStore::open(&path, None).unwrap();
        store
            .record_window(&window(&t, 1, 10_000, 5), 9_000)
            .unwrap();
        store
            .record_window(&window(&t, 2, 11_000, 9), 9_000)
            .unwrap();
        assert_eq!(store.stats().windows_recorded, 2);
    }
    let store = HistoryStore::open(&path, None).unwrap();
    let rows = store.pairs_between(0, u64::MAX / 2, 100).unwrap();
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let measured: Vec<&PairRecord> = rows.iter().filter(|r| r.src_vm == "web1").collect();
    assert_eq!(measured.len(), 2);
    assert_eq!(measured[0].window_index, 1);
    assert_eq!(measured[0].exact.as_ref().unwrap().packets, 5);
    assert_eq!(measured[1].exact.as_ref().unwrap().packets, 9);
    assert_eq!(measured[1].placed_on.as_deref(), Some("s112"));
    assert_eq!(measured[1].run_started_ms, 9_000);
    let estimate = measured[1].estimate.unwrap();
    assert_eq!((estimate.samples, estimate.packets), (4, 256));
    assert_eq!(estimate.error_percent, Some(98.0));
    let sampled = rows.iter().find(|r| r.src_vm == "client1").unwrap();
    assert!(sampled.exact.is_none() && sampled.placed_on.is_none());

    // Only the first window.
    let graph = store.graph_between(&t, 0, 10_500).unwrap();
    assert_eq!(graph.nodes.len(), t.vms().len());
    assert_eq!(graph.edges.len(), 2);
    let edge = graph.edges.iter().find(|e| e.src_vm == "web1").unwrap();
    assert_eq!(edge.exact.as_ref().unwrap().packets, 5);
    assert_eq!(edge.labels.len(), 1);
    assert_eq!(edge.labels[0].details, vec!["GET /1".to_string()]);
    // Both: the latest reading and label win.
    let graph = store.graph_between(&t, 0, 20_000).unwrap();
    let edge = graph.edges.iter().find(|e| e.src_vm == "web1").unwrap();
    assert_eq!(edge.exact.as_ref().unwrap().packets, 9);
    assert_eq!(edge.labels[0].requests, 2);
    assert_eq!((edge.first_seen_ms, edge.last_seen_ms), (10_000, 11_000));
}

#[test]
fn retention_drops_old_windows() {
    let t = topology();
    let store = HistoryStore::open_in_memory(Some(Duration::from_secs(5))).unwrap();
    store.record_window(&window(&t, 1, 10_000, 1), 0).unwrap();
    store.record_window(&window(&t, 2, 14_000, 2), 0).unwrap();
    assert_eq!(store.oldest_ms().unwrap(), Some(10_000));
    store.record_window(&window(&t, 3, 16_000, 3), 0).unwrap();
    assert_eq!(store.oldest_ms().unwrap(), Some(14_000));
    assert_eq!(store.stats().windows_pruned, 1);
    let rows = store.pairs_between(0, 20_000, 100).unwrap();
    assert!(rows.iter().all(|r| r.window_at_ms >= 14_000), "{rows:#?}");
    // The labels went with their window.
    let graph = store.graph_between(&t, 0, 20_000).unwrap();
    let edge = graph.edges.iter().find(|e| e.src_vm == "web1").unwrap();
    assert_eq!(edge.labels[0].requests, 3);
}

#[test]
fn an_exact_reading_is_recorded_once() {
    let t = topology();
    let store = HistoryStore::open_in_memory(None).unwrap();
    let first = window(&t, 1, 10_000, 5);
    store.record_window(&first, 0).unwrap();
    // The same graph a window later: the counter was not read again.
    let mut again = first.clone();
    again.report.index = 2;
    again.report.at_ms = 11_000;
    again.report.estimates.clear();
    store.record_window(&again, 0).unwrap();
    let rows = store.pairs_between(0, 20_000, 100).unwrap();
    assert!(rows.iter().all(|r| r.window_index == 1), "{rows:#?}");
}

#[test]
fn a_reversed_range_is_refused() {
    let store = HistoryStore::open_in_memory(None).unwrap();
    assert!(matches!(
        store.pairs_between(10, 5, 1),
        Err(HistoryError::Range { .. })
    ));
}

#[test]
fn a_range_carries_what_each_run_counted_in_it_and_the_estimates_made_in_it() {
    let t = topology();
    let store = HistoryStore::open_in_memory(None).unwrap();
    store
        .record_window(&window(&t, 1, 10_000, 5), 9_000)
        .unwrap();
    store
        .record_window(&window(&t, 2, 11_000, 9), 9_000)
        .unwrap();
    // The controller restarted: its totals start from zero again.
    store
        .record_window(&window(&t, 1, 21_000, 4), 20_000)
        .unwrap();
    let in_range = |from, to, src_vm: &str| {
        let graph = store.graph_between(&t, from, to).unwrap();
        let edge = graph.edges.into_iter().find(|e| e.src_vm == src_vm);
        edge.and_then(|e| e.in_range)
            .map(|r| (r.packets, r.bytes, r.exact))
    };
    assert_eq!(in_range(10_000, 10_000, "web1"), Some((5, 500, true)));
    assert_eq!(in_range(11_000, 11_000, "web1"), Some((4, 400, true)));
    assert_eq!(in_range(21_000, 21_000, "web1"), Some((4, 400, true)));
    assert_eq!(in_range(10_500, 21_000, "web1"), Some((8, 800, true)));
    // client1 -> web1 was only sampled: its windows' estimates add up.
    assert_eq!(
        in_range(11_000, 11_000, "client1"),
        Some((256, 256_000, false))
    );
    assert_eq!(in_range(0, 30_000, "client1"), Some((768, 768_000, false)));
}
