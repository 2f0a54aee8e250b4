//! `vmdep demo --netns` end to end, with a fixed seed: the reference topology's VMs as network
//! namespaces behind Open vSwitch, the workload over their kernel sockets, the in-process
//! switches and controller. Checks the promises against the capture of the VMs' own
//! interfaces: every pair above the threshold is measured, every exact count equals the frames
//! the VMs received while its entry was in, DPI's labels name the workload's protocols with the
//! right client and server, no pair that never communicated appears, and nothing of the lab is
//! left afterwards.
//!
//! Needs root. Skipped without it, except under CI (CI=true), where it must run.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmdep::controller::topology::Topology;
use vmdep::demo::emulated::REFERENCE_TOPOLOGY;
use vmdep::demo::netns_run::{run, NetnsDemoOptions};
use vmdep::demo::workload::{three_tier, Transport, WorkloadSpec};

mod support;

use support::env::{root_or_skip, FOR_NETNS_LAB};
use support::netns::{lab_names_left, processes_mentioning};

/// Interfaces, namespaces and processes that still carry the lab's prefix.
fn leftovers(prefix: &str) -> Vec<String> {
    let mut left = lab_names_left(prefix);
    left.extend(processes_mentioning(&format!("{prefix}-ovs")));
    left
}

/// The number of edges of the graph the API at `addr` serves (0 when it does not answer).
async fn api_edges(addr: std::net::SocketAddr) -> usize {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET /api/graph HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return 0;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer));
    if !matches!(read.await, Ok(Ok(_))) {
        return 0;
    }
    let answer = String::from_utf8_lossy(&answer);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|graph| graph["edges"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// One lab at a time: the runs are timed, and the machine may have few cores.
static ONE_LAB: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_netns_demo_measures_what_the_vms_sent() {
    if !root_or_skip("demo_netns", FOR_NETNS_LAB) {
        return;
    }
    let _one = ONE_LAB.lock().await;
    let out = tempfile::tempdir().unwrap();
    let spec = WorkloadSpec {
        duration: Duration::from_secs(6),
        seed: 3,
        scale: 1.0,
    };
    let options = NetnsDemoOptions {
        workload: spec,
        window: Duration::from_secs(1),
        sampling_rate: 64,
        threshold_bytes: 4_000,
        out_dir: Some(out.path().to_path_buf()),
        prefix: None,
        switch_cmd: None,
        pipeline: None,
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        linger: Duration::from_millis(500),
    };
    let prefix = Arc::new(Mutex::new(None));
    let seen_prefix = Arc::clone(&prefix);
    // The API serves the run's graph while it goes on.
    let (api_tx, mut api_rx) = tokio::sync::mpsc::unbounded_channel();
    let api_client = tokio::spawn(async move {
        let mut edges = 0;
        while let Some(addr) = api_rx.recv().await {
            edges = edges.max(api_edges(addr).await);
        }
        edges
    });
    let report = run(
        options,
        move |cleanup| *seen_prefix.lock().unwrap() = Some(cleanup.prefix().to_string()),
        // Moved in: the client stops when the run drops its sender.
        move |p| {
            eprintln!("window {}/{}: {p:?}", p.window, p.windows);
            let addr = p.http_addr.expect("the API is served");
            let _ = api_tx.send(addr);
        },
    )
    .await
    .unwrap_or_else(|e| panic!("the netns demo failed: {e}"));
    assert!(api_client.await.unwrap() > 0, "the API showed no edge");
    let prefix = prefix.lock().unwrap().clone().expect("the lab was built");
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());

    // Nothing of the lab is left.
    assert_eq!(leftovers(&prefix), Vec::<String>::new());

    // The replay went through whole: every datagram arrived, nothing unexpected reached a
    // server, the VMs received nothing but IPv4, and the capture lost none of it.
    let stats = report.netns.as_ref().expect("netns statistics");
    assert_eq!(stats.prefix, prefix);
    assert!(stats.conversations > 100, "{stats:?}");
    assert_eq!(
        (
            stats.lost_datagrams,
            stats.unexpected,
            stats.non_ipv4_frames,
            stats.capture_drops
        ),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    assert!(stats.sflow_datagrams > 0, "{stats:?}");

    // sFlow from Open vSwitch: every datagram understood and from a known agent; each packet
    // counted once, at its source's server (the destination server's copies are skipped), so
    // the estimates add up to about the captured total, not twice it.
    let collector = &stats.collector;
    assert_eq!(collector.datagrams, stats.sflow_datagrams, "{collector:?}");
    assert_eq!(
        (
            collector.malformed_datagrams,
            collector.unknown_agent_datagrams
        ),
        (0, 0),
        "{collector:?}"
    );
    assert!(collector.pair_samples > 50, "{collector:?}");
    let other_side = collector
        .skipped
        .get(&vmdep::controller::collector::SkipReason::OtherSide)
        .copied()
        .unwrap_or(0);
    assert!(other_side > 20, "{collector:?}");
    let estimated: u64 = report.pairs.iter().map(|p| p.estimated_packets).sum();
    let captured_frames: u64 = report.pairs.iter().map(|p| p.truth_packets).sum();
    let ratio = estimated as f64 / captured_frames as f64;
    assert!(
        (0.65..1.35).contains(&ratio),
        "estimated {estimated} packets, captured {captured_frames}"
    );

    // The kernels' frames join exactly the VM pairs the workload's frames join.
    let topology = Topology::from_toml(REFERENCE_TOPOLOGY).unwrap();
    let workload = three_tier(&topology, spec).unwrap();
    let expected: BTreeSet<(String, String)> = workload
        .truth
        .pairs
        .iter()
        .map(|p| (p.src.clone(), p.dst.clone()))
        .collect();
    let captured: BTreeSet<(String, String)> = report
        .pairs
        .iter()
        .map(|p| (p.src.clone(), p.dst.clone()))
        .collect();
    assert_eq!(captured, expected);

    // Exact counts equal the capture over the windows each entry was in; every same-server
    // pair is counted by its server; switches measured some pairs.
    let mismatches: Vec<_> = report
        .pairs
        .iter()
        .filter(|p| p.exact_matches == Some(false))
        .collect();
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    for p in report.pairs.iter().filter(|p| p.same_server) {
        assert_eq!(p.exact_matches, Some(true), "{} -> {}", p.src, p.dst);
        assert!(
            p.measured_by
                .as_deref()
                .is_some_and(|by| by.starts_with("server:")),
            "{p:?}"
        );
    }
    let by_switch = report
        .pairs
        .iter()
        .filter(|p| {
            !p.same_server && p.exact_matches == Some(true) && p.expected_packets.unwrap_or(0) > 0
        })
        .count();
    assert!(
        by_switch >= 3,
        "only {by_switch} pairs measured by switches"
    );

    // Every pair above the threshold is measured; no pair that never communicated appears.
    assert_eq!(report.missed, Vec::<String>::new());
    assert_eq!(report.phantom, Vec::<String>::new());

    // DPI: every label names an application of the workload with its client and server, by
    // its protocol (or by its port, for a conversation whose start the mirror missed).
    let graph: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("graph.json")).unwrap())
            .unwrap();
    let ip = |v: &serde_json::Value| v.as_str().unwrap().parse::<std::net::Ipv4Addr>().unwrap();
    let mut labels = 0;
    for edge in graph["edges"].as_array().unwrap() {
        for label in edge["labels"].as_array().into_iter().flatten() {
            labels += 1;
            let (client, server) = (ip(&label["client"]), ip(&label["server"]));
            let port = label["server_port"].as_u64().unwrap() as u16;
            let protocol = label["protocol"].as_str().unwrap();
            let app = workload
                .truth
                .applications
                .iter()
                .find(|a| {
                    a.client_ipv4 == client && a.server_ipv4 == server && a.server_port == port
                })
                .unwrap_or_else(|| panic!("label of no application (roles reversed?): {label}"));
            let by_port = match app.transport {
                Transport::Tcp => format!("tcp/{port}"),
                Transport::Udp => format!("udp/{port}"),
            };
            let truth = report
                .labels
                .iter()
                .find(|l| l.client == app.client && l.server == app.server && l.server_port == port)
                .map(|l| l.truth_protocol.clone())
                .unwrap();
            assert!(
                protocol == truth || protocol == by_port,
                "{} -> {}:{port} labeled {protocol}, is {truth}",
                app.client,
                app.server
            );
        }
    }
    assert!(labels > 0);
    for l in report.labels.iter().filter(|l| l.mirrored) {
        assert!(!l.roles_swapped, "{l:#?}");
    }
    // Every same-server conversation is labeled (DNS lookups and the backup stream included),
    // and most of the mirrored cross-server ones.
    support::labels::assert_mirrored_conversations_labeled(
        &serde_json::to_value(&report).unwrap(),
        3,
    );
    // Which conversations get mirrored depends on sampling; across the run DPI must have named
    // most of the workload's application protocols.
    let recognized: BTreeSet<&str> = report
        .labels
        .iter()
        .filter(|l| l.matches)
        .map(|l| l.truth_protocol.as_str())
        .collect();
    let named: Vec<&str> = ["http", "tls", "postgresql", "redis", "mysql", "dns"]
        .into_iter()
        .filter(|p| recognized.contains(*p))
        .collect();
    assert!(
        named.len() >= 4,
        "recognized only {named:?}: {:#?}",
        report.labels
    );
    assert!(Path::new(&out.path().join("report.json")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_removes_its_lab() {
    if !root_or_skip("demo_netns", FOR_NETNS_LAB) {
        return;
    }
    let _one = ONE_LAB.lock().await;
    // The graph cannot be written under a regular file: the run fails at its very end, after
    // the lab did all its work.
    let file = tempfile::NamedTempFile::new().unwrap();
    let options = NetnsDemoOptions {
        workload: WorkloadSpec {
            duration: Duration::from_secs(2),
            seed: 5,
            scale: 1.0,
        },
        out_dir: Some(file.path().join("out")),
        ..NetnsDemoOptions::default()
    };
    let prefix = Arc::new(Mutex::new(None));
    let seen_prefix = Arc::clone(&prefix);
    let failed = run(
        options,
        move |cleanup| *seen_prefix.lock().unwrap() = Some(cleanup.prefix().to_string()),
        |_| {},
    )
    .await
    .expect_err("the graph cannot be written");
    assert!(failed.to_string().contains("out"), "{failed}");
    let prefix = prefix.lock().unwrap().clone().expect("the lab was built");
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
}
