//! `vmdep demo` end to end, emulated in one process with a fixed seed: five `vmdep switch`es,
//! four emulated servers with DPI, the controller and the three-tier workload. The checks are
//! the issue's: every pair above the threshold is measured, every exact count equals the ground
//! truth of the windows its entry was in, DPI names the workload's protocols with the right
//! roles, and no pair that never communicated appears.

use std::collections::BTreeSet;
use std::time::Duration;

use vmdep::demo::emulated::{self, DemoOptions};
use vmdep::demo::workload::WorkloadSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_measures_the_workload_exactly() {
    let out = tempfile::tempdir().unwrap();
    let options = DemoOptions {
        workload: WorkloadSpec {
            duration: Duration::from_secs(6),
            seed: 7,
            scale: 1.0,
        },
        // Denser sampling than the default 1 in 64, so a short run selects enough pairs.
        sampling_rate: 16,
        out_dir: Some(out.path().to_path_buf()),
        ..DemoOptions::default()
    };
    let mut windows = 0;
    let report = emulated::run(options, |_| windows += 1)
        .await
        .expect("the demo runs");
    assert_eq!(windows, 6);

    // Exact where measured: switches for fabric pairs, servers for same-server pairs.
    let by_switch: Vec<_> = report
        .pairs
        .iter()
        .filter(|p| p.measured_by.as_deref().is_some_and(|m| m.starts_with('s')))
        .collect();
    let by_server: Vec<_> = report
        .pairs
        .iter()
        .filter(|p| p.same_server && p.exact_packets.is_some())
        .collect();
    assert!(by_switch.len() >= 5, "{:#?}", report.pairs);
    assert!(by_server.len() >= 3, "{:#?}", report.pairs);
    for p in report.pairs.iter().filter(|p| p.exact_matches.is_some()) {
        assert_eq!(
            (p.exact_packets, p.exact_bytes),
            (p.expected_packets, p.expected_bytes),
            "{} → {} measured by {:?}",
            p.src,
            p.dst,
            p.measured_by
        );
    }
    assert!(report.exact_counts_match());
    assert!(report.missed.is_empty(), "missed: {:?}", report.missed);
    assert!(report.phantom.is_empty(), "invented: {:?}", report.phantom);

    // One entry per measured pair, fewer than measuring on every switch of the path.
    let vmdep: u32 = report.entries.iter().map(|e| e.vmdep).sum();
    let everywhere: u32 = report.entries.iter().map(|e| e.everywhere).sum();
    assert!(vmdep > 0 && vmdep < everywhere, "{:#?}", report.entries);

    // DPI: what it saw of mirrored pairs carries the workload's protocol and roles, also for
    // connections that opened before the mirror started (recognized past their handshake).
    let mut recognized: BTreeSet<String> = BTreeSet::new();
    for l in report.labels.iter().filter(|l| l.mirrored) {
        assert!(!l.roles_swapped, "{l:#?}");
        if let Some(dpi) = &l.dpi_protocol {
            assert!(
                l.matches,
                "{} → {}:{}: DPI says {dpi}, the workload speaks {}",
                l.client, l.server, l.server_port, l.truth_protocol
            );
            recognized.insert(l.truth_protocol.clone());
        }
    }
    // Response times: DPI's (seen on the servers, so with the fabric's latency in them) near
    // the workload's. Generous for a loaded machine, yet a response paired with the request
    // before it (a client's think time, tens of ms) fails it.
    for l in &report.labels {
        if let (Some(truth), Some(dpi)) = (l.truth_mean_response_ms, l.dpi_mean_response_ms) {
            assert!(
                dpi <= 2.0 * truth + 20.0,
                "{} → {}:{}: DPI's mean response {dpi:.2} ms, the workload's {truth:.2} ms",
                l.client,
                l.server,
                l.server_port
            );
        }
    }
    // Which conversations get mirrored depends on sampling; across the run DPI must have named
    // most of the workload's application protocols.
    let named: Vec<&str> = ["http", "tls", "postgresql", "redis", "mysql", "dns"]
        .into_iter()
        .filter(|p| recognized.contains(*p))
        .collect();
    assert!(
        named.len() >= 4,
        "recognized only {named:?}: {:#?}",
        report.labels
    );

    // The files an operator gets.
    let graph: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("graph.json")).unwrap()).unwrap();
    assert!(graph["edges"].as_array().is_some_and(|e| !e.is_empty()));
    let dot = std::fs::read_to_string(out.path().join("graph.dot")).unwrap();
    assert!(dot.starts_with("digraph"));
    assert!(out.path().join("report.json").exists());
}
