use std::process::{Command, Stdio};

use super::*;
use crate::controller::estimate::WindowSamples;

const REFERENCE: &str = include_str!("../../../topologies/reference.toml");

fn reference() -> Topology {
    Topology::from_toml(REFERENCE).unwrap()
}

/// VM `n` of server `h<server>` in the reference topology.
fn vm(server: u8, n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, server, n)
}

fn pair(src: (u8, u8), dst: (u8, u8)) -> VmPair {
    VmPair::new(vm(src.0, src.1), vm(dst.0, dst.1))
}

/// The estimate of `samples` samples at 1 in 100 of 1000-byte frames.
fn sampled(pair: VmPair, samples: u64) -> PairSamples {
    let mut w = WindowSamples::new();
    for _ in 0..samples {
        w.record(pair, 1000, 100).unwrap();
    }
    w.get(pair)
}

fn label(protocol: &str, client: Ipv4Addr, server: Ipv4Addr, port: u16) -> AppLabel {
    AppLabel {
        protocol: protocol.to_owned(),
        client,
        server,
        server_port: port,
        details: Vec::new(),
        requests: 0,
        responses: 0,
        mean_response_ms: None,
    }
}

const T0: u64 = 1_800_000_000_000;

/// The demo's three tiers, a little of each kind of edge:
/// - client1 -> web1, same server (h120): counted exactly by the server, labeled HTTP;
/// - web1 -> app1 (h120 -> h122): sampled and counted on s113, two readings;
/// - app1 -> db1 (h122 -> h123): only sampled;
/// - web2 -> dns1 (h121 -> h120): only counted, on s113, labeled DNS (web2's queries);
/// - batch1 -> backup1: only labeled, seen in the first window only.
fn demo_graph() -> DependencyGraph {
    let mut g = DependencyGraph::new(&reference());
    let client_web = pair((120, 2), (120, 1));
    let web_app = pair((120, 1), (122, 1));
    let app_db = pair((122, 1), (123, 1));
    let web2_dns = pair((121, 1), (120, 3));
    let batch = pair((121, 3), (123, 3));

    g.observe_estimate(web_app, sampled(web_app, 25), T0 + 10_000)
        .unwrap();
    g.observe_estimate(app_db, sampled(app_db, 4), T0 + 10_000)
        .unwrap();
    let mut backup = label("rsync", vm(121, 3), vm(123, 3), 873);
    backup.requests = 1;
    g.observe_labels(batch, vec![backup], T0 + 10_000).unwrap();

    g.observe_exact(client_web, 0, 0, "server:h120", T0 + 10_000)
        .unwrap();
    g.observe_exact(client_web, 400, 60_000, "server:h120", T0 + 20_000)
        .unwrap();
    g.observe_exact(web_app, 1_000, 1_500_000, "s113", T0 + 10_000)
        .unwrap();
    g.observe_exact(web_app, 3_500, 4_000_000, "s113", T0 + 20_000)
        .unwrap();
    g.observe_exact(web2_dns, 20, 2_400, "s113", T0 + 20_000)
        .unwrap();

    let mut http = label("http", vm(120, 2), vm(120, 1), 80);
    http.details = vec!["GET example.com".into(), "GET example.com/cart".into()];
    (http.requests, http.responses, http.mean_response_ms) = (200, 198, Some(12.5));
    g.observe_labels(client_web, vec![http], T0 + 20_000)
        .unwrap();
    let mut dns = label("dns", vm(121, 1), vm(120, 3), 53);
    dns.details = vec!["query db.internal".into()];
    (dns.requests, dns.responses, dns.mean_response_ms) = (10, 10, Some(0.75));
    g.observe_labels(web2_dns, vec![dns], T0 + 20_000).unwrap();
    g
}

#[test]
fn json_of_a_small_graph() {
    let json: serde_json::Value = serde_json::from_str(&demo_graph().to_json().unwrap()).unwrap();
    insta::assert_json_snapshot!("graph_json", json);
}

#[test]
fn dot_of_a_small_graph() {
    insta::assert_snapshot!("graph_dot", demo_graph().to_dot());
}

#[test]
fn dot_output_is_accepted_by_graphviz() {
    let dot = match Command::new("dot").arg("-V").output() {
        Ok(_) => "dot",
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: Graphviz `dot` not runnable ({e}); install Debian's graphviz");
            return;
        }
        Err(e) => panic!("Graphviz `dot` is required in CI: {e}"),
    };
    let mut g = demo_graph();
    // A name that needs escaping must not break the file.
    g.graph.node_weights_mut().next().unwrap().name = "odd \"name\" \\ here".into();
    let mut child = Command::new(dot)
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = g.to_dot();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(text.as_bytes())
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        output.status.success(),
        "dot failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let svg = String::from_utf8(output.stdout).unwrap();
    assert!(svg.contains("<svg"), "{svg}");
    assert!(svg.contains("cluster_h123"), "{svg}");
    assert!(svg.contains("odd &quot;name&quot; \\ here"), "{svg}");
}

#[test]
fn exact_counts_accumulate_across_counters_and_give_rates() {
    let mut g = DependencyGraph::new(&reference());
    let p = pair((120, 1), (122, 1));
    g.observe_exact(p, 100, 10_000, "s113", T0).unwrap();
    assert_eq!(g.edge(p).unwrap().exact.as_ref().unwrap().rate, None);
    g.observe_exact(p, 300, 50_000, "s113", T0 + 2_000).unwrap();
    let x = g.edge(p).unwrap().exact.clone().unwrap();
    assert_eq!((x.packets, x.bytes), (300, 50_000));
    assert_eq!(
        x.rate,
        Some(Rates {
            pps: 100.0,
            bps: 160_000.0,
            interval_ms: 2_000
        })
    );
    // The pair moves to s111: its new counter starts from zero and adds to the totals.
    g.observe_exact(p, 50, 5_000, "s111", T0 + 3_000).unwrap();
    let x = g.edge(p).unwrap().exact.clone().unwrap();
    assert_eq!(
        (x.packets, x.bytes, x.measured_by.as_str()),
        (350, 55_000, "s111")
    );
    assert_eq!(x.rate.unwrap().pps, 50.0);
    // Its entry is installed again on s111: the counter went back.
    g.observe_exact(p, 10, 1_000, "s111", T0 + 4_000).unwrap();
    assert_eq!(g.edge(p).unwrap().exact.as_ref().unwrap().packets, 360);
    // A quiet reading does not move last_seen.
    g.observe_exact(p, 10, 1_000, "s111", T0 + 5_000).unwrap();
    let e = g.edge(p).unwrap();
    assert_eq!((e.first_seen_ms, e.last_seen_ms), (T0, T0 + 4_000));
    assert_eq!(e.exact.as_ref().unwrap().rate.unwrap().bps, 0.0);
    // Readings must move forward in time.
    let err = g
        .observe_exact(p, 20, 2_000, "s111", T0 + 5_000)
        .unwrap_err();
    assert!(matches!(err, GraphError::OutOfOrder { previous_ms, .. } if previous_ms == T0 + 5_000));
    assert_eq!(g.edge(p).unwrap().exact.as_ref().unwrap().packets, 360);
}

#[test]
fn estimates_keep_the_latest_window_and_its_error_bound() {
    let mut g = DependencyGraph::new(&reference());
    let p = pair((122, 1), (123, 1));
    g.observe_estimate(p, PairSamples::default(), T0).unwrap();
    assert!(
        g.edge(p).is_none(),
        "an estimate without samples made an edge"
    );
    g.observe_estimate(p, sampled(p, 4), T0).unwrap();
    g.observe_estimate(p, sampled(p, 16), T0 + 10_000).unwrap();
    let e = g.edge(p).unwrap();
    let s = e.estimate.unwrap();
    assert_eq!((s.samples, s.packets, s.bytes), (16, 1_600, 1_600_000));
    assert_eq!(s.error_percent, Some(49.0));
    assert_eq!((e.first_seen_ms, e.last_seen_ms), (T0, T0 + 10_000));
    assert_eq!(e.exact, None);
    assert_eq!(e.bytes(), 1_600_000);
}

#[test]
fn labels_merge_by_protocol_and_endpoints_and_are_checked() {
    let mut g = DependencyGraph::new(&reference());
    let p = pair((120, 2), (120, 1));
    let mut first = label("http", vm(120, 2), vm(120, 1), 80);
    first.requests = 5;
    let tls = label("tls", vm(120, 2), vm(120, 1), 443);
    g.observe_labels(p, vec![first, tls.clone()], T0).unwrap();
    let mut again = label("http", vm(120, 2), vm(120, 1), 80);
    again.requests = 9;
    // Labels of the reverse direction are about the same dependency.
    let reverse = label("dns", vm(120, 1), vm(120, 2), 53);
    g.observe_labels(p, vec![again.clone(), reverse.clone()], T0 + 1)
        .unwrap();
    assert_eq!(g.edge(p).unwrap().labels, vec![reverse, again, tls]);

    let stranger = label("http", vm(120, 2), vm(121, 1), 80);
    assert!(matches!(
        g.observe_labels(p, vec![stranger], T0 + 2),
        Err(GraphError::LabelEndpoints { .. })
    ));
    let mut negative = label("http", vm(120, 2), vm(120, 1), 80);
    negative.mean_response_ms = Some(-1.0);
    assert!(matches!(
        g.observe_labels(p, vec![negative], T0 + 2),
        Err(GraphError::LabelResponseTime { .. })
    ));
    let mut nan = label("http", vm(120, 2), vm(120, 1), 80);
    nan.mean_response_ms = Some(f64::NAN);
    assert!(g.observe_labels(p, vec![nan], T0 + 2).is_err());
    assert_eq!(g.edge(p).unwrap().last_seen_ms, T0 + 1);

    // Labels round-trip through JSON (the DPI modules send them so).
    let text = serde_json::to_string(&g.edge(p).unwrap().labels).unwrap();
    let back: Vec<AppLabel> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, g.edge(p).unwrap().labels);
}

#[test]
fn a_dpi_report_labels_each_client_to_server_edge_or_nothing() {
    let mut g = DependencyGraph::new(&reference());
    let mut http = label("http", vm(120, 2), vm(120, 1), 80);
    http.requests = 3;
    let tls = label("tls", vm(120, 2), vm(120, 1), 443);
    let dns = label("dns", vm(121, 1), vm(120, 3), 53);
    g.observe_dpi_report(vec![http.clone(), dns.clone(), tls.clone()], T0)
        .unwrap();
    assert_eq!(
        g.edge(pair((120, 2), (120, 1))).unwrap().labels,
        vec![http, tls]
    );
    assert_eq!(g.edge(pair((121, 1), (120, 3))).unwrap().labels, vec![dns]);
    assert!(g.edge(pair((120, 1), (120, 2))).is_none());

    // One bad label (an outside client, or a negative time) and nothing of the report is kept.
    let fresh = label("redis", vm(122, 1), vm(122, 3), 6379);
    let outsider = label("http", Ipv4Addr::new(192, 0, 2, 1), vm(120, 1), 80);
    assert!(matches!(
        g.observe_dpi_report(vec![fresh.clone(), outsider], T0 + 1),
        Err(GraphError::UnknownVm(_))
    ));
    let mut late = label("http", vm(120, 2), vm(120, 1), 80);
    late.mean_response_ms = Some(-3.0);
    assert!(g.observe_dpi_report(vec![fresh, late], T0 + 1).is_err());
    assert!(g.edge(pair((122, 1), (122, 3))).is_none());
    assert_eq!(g.edges().count(), 2);
}

#[test]
fn unknown_vms_are_refused() {
    let mut g = DependencyGraph::new(&reference());
    let outsider = Ipv4Addr::new(192, 0, 2, 1);
    let p = VmPair::new(vm(120, 1), outsider);
    let err = g.observe_exact(p, 1, 1, "s113", T0).unwrap_err();
    assert_eq!(err.to_string(), "192.0.2.1 is no VM of the topology");
    assert!(g
        .observe_estimate(VmPair::new(outsider, vm(120, 1)), sampled(p, 1), T0)
        .is_err());
    assert_eq!(g.edges().count(), 0);
}

#[test]
fn time_ranges_and_forgetting() {
    let mut g = demo_graph();
    let names = |s: GraphSnapshot| -> Vec<(String, String)> {
        s.edges.into_iter().map(|e| (e.src_vm, e.dst_vm)).collect()
    };
    // The edges by source then destination name.
    let all = names(g.snapshot());
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
    assert_eq!(all.len(), 5);
    // Only batch1 -> backup1 and app1 -> db1 were not seen in the second window.
    let second = names(g.snapshot_between(T0 + 15_000, T0 + 25_000));
    assert_eq!(
        second,
        vec![
            ("client1".to_owned(), "web1".to_owned()),
            ("web1".to_owned(), "app1".to_owned()),
            ("web2".to_owned(), "dns1".to_owned()),
        ]
    );
    assert_eq!(g.snapshot_between(0, T0 - 1).edges, vec![]);
    assert_eq!(g.snapshot_between(0, T0 - 1).nodes.len(), 12);

    assert_eq!(g.retain_since(T0 + 15_000), 2);
    assert_eq!(names(g.snapshot()), second);
    assert!(g.edge(pair((122, 1), (123, 1))).is_none());
    assert_eq!(g.graph().edge_count(), 3);
    // A forgotten pair starts afresh.
    g.observe_estimate(
        pair((122, 1), (123, 1)),
        sampled(pair((122, 1), (123, 1)), 1),
        T0 + 30_000,
    )
    .unwrap();
    assert_eq!(
        g.edge(pair((122, 1), (123, 1))).unwrap().first_seen_ms,
        T0 + 30_000
    );
}

#[test]
fn files_are_written_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let g = demo_graph();
    g.write_files(dir.path()).unwrap();
    g.write_files(dir.path()).unwrap();
    let json = std::fs::read_to_string(dir.path().join("graph.json")).unwrap();
    assert_eq!(json, g.to_json().unwrap());
    let dot = std::fs::read_to_string(dir.path().join("graph.dot")).unwrap();
    assert_eq!(dot, g.to_dot());
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["graph.dot", "graph.json"]);

    let missing = dir.path().join("no such dir");
    let err = g.write_files(&missing).unwrap_err();
    assert!(err.to_string().contains("no such dir"), "{err}");
}

#[test]
fn byte_counts_read_well() {
    let cases = [
        (0, "0 B"),
        (999, "999 B"),
        (1_000, "1.00 kB"),
        (12_345, "12.3 kB"),
        (999_499, "999 kB"),
        (999_500, "1.00 MB"),
        (4_000_000, "4.00 MB"),
        (u64::MAX, "18.4 EB"),
    ];
    for (bytes, text) in cases {
        assert_eq!(human_bytes(bytes), text, "{bytes}");
    }
    assert_eq!(human_bits(999.4), "999 bit/s");
    assert_eq!(human_bits(2_000_000.0), "2.00 Mbit/s");
    assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    assert_eq!(pen_width(0, 0), 1.0);
    assert!((pen_width(1_000, 1_000) - 6.0).abs() < 1e-9);
    assert!(pen_width(10, 1_000) < pen_width(100, 1_000));
}

#[test]
fn a_port_only_label_gives_way_to_the_recognized_protocol_of_the_same_conversation() {
    let mut g = DependencyGraph::new(&reference());
    let p = pair((120, 2), (120, 1));
    // A connection DPI joined mid-stream, then one it saw from its handshake.
    let guess = label("tcp/443", vm(120, 2), vm(120, 1), 443);
    let other_port = label("tcp/8443", vm(120, 2), vm(120, 1), 8443);
    g.observe_labels(p, vec![guess.clone(), other_port.clone()], T0)
        .unwrap();
    assert_eq!(g.edge(p).unwrap().labels.len(), 2);
    let tls = label("tls", vm(120, 2), vm(120, 1), 443);
    g.observe_labels(p, vec![guess, tls.clone()], T0 + 1)
        .unwrap();
    assert_eq!(g.edge(p).unwrap().labels, vec![other_port, tls]);
}

#[test]
fn a_range_carries_the_traffic_counted_or_sampled_in_it() {
    let mut g = DependencyGraph::new(&reference());
    let p = pair((120, 1), (122, 1));
    let in_range = |g: &DependencyGraph, from: u64, to: u64| {
        g.snapshot_between(from, to)
            .edges
            .into_iter()
            .find(|e| e.pair == p)
            .and_then(|e| e.in_range)
    };
    // Window 1 (T0, T0+1s]: sampled only. Window 2: the counter's first reading. Window 3:
    // a second reading. Window 4: the pair moved to another switch, whose counter starts anew.
    g.observe_estimate(p, sampled(p, 3), T0 + 1_000).unwrap();
    g.observe_exact(p, 10, 1_000, "s113", T0 + 2_000).unwrap();
    g.observe_estimate(p, sampled(p, 2), T0 + 2_000).unwrap();
    g.observe_exact(p, 25, 2_500, "s113", T0 + 3_000).unwrap();
    g.observe_exact(p, 4, 400, "s114", T0 + 4_000).unwrap();
    let window = |n: u64| (T0 + (n - 1) * 1_000 + 1, T0 + n * 1_000);

    let (from, to) = window(1);
    assert_eq!(
        in_range(&g, from, to),
        Some(RangeTraffic {
            packets: 300,
            bytes: 300_000,
            exact: false
        }),
        "only the estimate: 3 samples at 1 in 100 of 1000-byte frames"
    );
    let exact = |packets, bytes| {
        Some(RangeTraffic {
            packets,
            bytes,
            exact: true,
        })
    };
    // A reading wins over the window's estimate; each window gets what was counted in it.
    assert_eq!(in_range(&g, window(2).0, window(2).1), exact(10, 1_000));
    assert_eq!(in_range(&g, window(3).0, window(3).1), exact(15, 1_500));
    assert_eq!(in_range(&g, window(4).0, window(4).1), exact(4, 400));
    assert_eq!(in_range(&g, window(2).0, window(4).1), exact(29, 2_900));
    // The live graph carries totals only; a range without observations of the pair, nothing.
    assert_eq!(g.snapshot().edges[0].in_range, None);
    assert_eq!(in_range(&g, T0 + 5_000, T0 + 9_000), None);
    assert_eq!(g.edge(p).unwrap().exact.as_ref().unwrap().bytes, 2_900);
}

#[test]
fn a_range_older_than_the_kept_timeline_has_no_traffic_figure() {
    let mut g = DependencyGraph::new(&reference());
    let p = pair((120, 1), (122, 1));
    let readings = TIMELINE_POINTS as u64 + 10;
    for n in 1..=readings {
        g.observe_exact(p, n, n * 100, "s113", T0 + n * 1_000)
            .unwrap();
    }
    let traffic = |n: u64| {
        g.snapshot_between(T0 + (n - 1) * 1_000 + 1, T0 + n * 1_000)
            .edges
            .into_iter()
            .find_map(|e| e.in_range)
    };
    // The first readings were dropped: no baseline before the oldest kept one.
    assert_eq!(traffic(11), None);
    assert_eq!(
        traffic(12),
        Some(RangeTraffic {
            packets: 1,
            bytes: 100,
            exact: true
        })
    );
    assert_eq!(traffic(readings).map(|t| t.packets), Some(1));
}
