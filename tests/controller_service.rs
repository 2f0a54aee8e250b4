//! The controller end to end against real `vmdep switch` instances: the reference topology's
//! five switches run in this process, cabled with UDP wires on loopback; this test plays the
//! servers (sFlow datagrams from their agents, frames on their uplinks) and checks what the
//! controller decides and writes, and that the exact counts it reads back are the frames sent.

use std::net::Ipv4Addr;
use std::sync::Arc;

use vmdep::controller::estimate::SelectionPolicy;
use vmdep::controller::rules::{write_request_text, VmdepProgram};
use vmdep::controller::service::{self, RunningController};
use vmdep::controller::topology::Topology;
use vmdep::controller::VmPair;
use vmdep::demo::fabric::Fabric;

mod support;

use support::fabric::{
    flow_samples as samples, packets_policy as policy, send_frames, send_sflow,
    start_reference_fabric, test_controller_options, wait_until_switches_ready,
};
use support::programs::{compiled_pipeline, vmdep_p4_with_pair_table_size, VMDEP_P4};

fn ip(name: &str, topology: &Topology) -> Ipv4Addr {
    topology
        .vm(topology.vm_id(name).expect("VM in topology"))
        .ipv4
}

fn pair(topology: &Topology, src: &str, dst: &str) -> VmPair {
    VmPair::new(ip(src, topology), ip(dst, topology))
}

struct Bench {
    fabric: Fabric,
    controller: RunningController,
    topology: Arc<Topology>,
}

async fn start(p4_source: &str, policy: SelectionPolicy) -> Bench {
    let (fabric, topology) = start_reference_fabric().await;
    let mut options =
        test_controller_options(topology.clone(), compiled_pipeline(p4_source), policy);
    // The entries carry the idle timeout (see the snapshot).
    options.journal = true;
    let controller = service::start(options).await.expect("controller starts");
    wait_until_switches_ready(&controller).await;
    Bench {
        fabric,
        controller,
        topology,
    }
}

impl Bench {
    /// Every WriteRequest each switch received, one update per line.
    fn journal_text(&self) -> String {
        let program = VmdepProgram::new(compiled_pipeline(VMDEP_P4).p4info).unwrap();
        let mut out = String::new();
        for (switch, requests) in self.controller.journals() {
            out.push_str(&format!("== {switch}: {} WriteRequests\n", requests.len()));
            for request in requests {
                out.push_str(&write_request_text(&request, &program));
            }
        }
        out
    }

    async fn stop(self) {
        self.controller.shutdown().await.unwrap();
        self.fabric.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_to_placed_counters_to_exact_counts_to_release() {
    let bench = start(VMDEP_P4, policy(100, 2)).await;
    let t = bench.topology.clone();
    // Samples at the source's server are counted; the copy the destination's server takes is
    // not (it would count the pair twice); a same-server pair is left to its server.
    send_sflow(
        &bench.controller,
        &[
            samples(&t, "h120", "web1", "app1", 10),
            samples(&t, "h122", "web1", "app1", 10),
            samples(&t, "h121", "client2", "web1", 5),
            samples(&t, "h122", "app1", "db1", 3),
            samples(&t, "h121", "batch1", "db2", 1),
            samples(&t, "h122", "app2", "cache1", 20),
        ],
    )
    .await;
    let window = bench.controller.step_window().await;
    assert!(window.errors.is_empty(), "{:?}", window.errors);
    insta::assert_json_snapshot!("first_window", window, {".at_ms" => "[at]"});
    let placements = bench.controller.placements();
    assert_eq!(placements.len(), 3);
    // web1 → app1 crosses s113, s112, s114, all empty: the lowest device id wins.
    assert_eq!(placements[&pair(&t, "web1", "app1")], "s112");
    assert_eq!(placements[&pair(&t, "client2", "web1")], "s113");
    assert_eq!(placements[&pair(&t, "app1", "db1")], "s114");

    // Exact counts: the frames sent after the entries went in, no more, no less.
    let sent_web = send_frames(
        &bench.fabric,
        &t,
        "web1",
        "app1",
        &[10, 200, 1000, 1400, 64],
    )
    .await;
    let sent_client = send_frames(&bench.fabric, &t, "client2", "web1", &[300, 300]).await;
    let sent_unmeasured = send_frames(&bench.fabric, &t, "batch1", "db2", &[500]).await;
    let window = bench.controller.step_window().await;
    assert!(window.errors.is_empty(), "{:?}", window.errors);
    let graph = bench.controller.graph();
    let exact = |src, dst| {
        let e = graph.edge(pair(&t, src, dst)).expect("edge");
        let x = e.exact.as_ref().expect("exact counts");
        ((x.packets, x.bytes), x.measured_by.clone())
    };
    assert_eq!(exact("web1", "app1"), (sent_web, "s112".to_string()));
    assert_eq!(exact("client2", "web1"), (sent_client, "s113".to_string()));
    let batch = graph.edge(pair(&t, "batch1", "db2")).expect("sampled edge");
    assert!(batch.exact.is_none(), "batch1 → db2 is below the threshold");
    assert_eq!(sent_unmeasured.0, 1);

    // Two quiet windows release the pairs: a final read, then a DELETE.
    bench.controller.step_window().await;
    let window = bench.controller.step_window().await;
    assert_eq!(window.released.len(), 3, "{window:#?}");
    assert!(bench.controller.placements().is_empty());
    for s in bench.controller.switches().await {
        assert_eq!(s.entries, 0, "{}", s.name);
    }
    insta::assert_snapshot!("write_requests", bench.journal_text());
    bench.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_switch_sends_the_pair_to_the_next_switch_of_its_path() {
    // Tables of one entry, while the topology promises 4096: the switches' RESOURCE_EXHAUSTED
    // answers are what the controller learns from.
    let tiny = vmdep_p4_with_pair_table_size(1);
    let bench = start(&tiny, policy(1, 10)).await;
    let t = bench.topology.clone();
    // Four pairs between h120/h121 and h122/h123 cross s113, s112 and s114 (or s111).
    send_sflow(
        &bench.controller,
        &[
            samples(&t, "h120", "web1", "app1", 8),
            samples(&t, "h120", "client1", "app2", 7),
            samples(&t, "h121", "web2", "app1", 6),
            samples(&t, "h121", "client2", "app2", 5),
        ],
    )
    .await;
    let window = bench.controller.step_window().await;
    let placements = bench.controller.placements();
    let mut used: Vec<&String> = placements.values().collect();
    used.sort();
    used.dedup();
    assert_eq!(
        used.len(),
        placements.len(),
        "one entry per switch: {placements:?}"
    );
    assert_eq!(
        placements.len() + window.unplaced.len(),
        4,
        "every pair is placed or reported: {window:#?}"
    );
    assert!(!window.unplaced.is_empty(), "{window:#?}");
    bench.stop().await;
}
