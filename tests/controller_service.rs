//! The controller end to end against real `vmdep switch` instances: the reference topology's
//! five switches run in this process, cabled with UDP wires on loopback; this test plays the
//! servers (sFlow datagrams from their agents, frames on their uplinks) and checks what the
//! controller decides and writes, and that the exact counts it reads back are the frames sent.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use vmdep::controller::estimate::{Metric, SelectionPolicy};
use vmdep::controller::rules::{write_request_text, VmdepProgram};
use vmdep::controller::service::{self, ControllerOptions, RunningController};
use vmdep::controller::session::PipelineBundle;
use vmdep::controller::topology::Topology;
use vmdep::controller::VmPair;
use vmdep::demo::fabric::{self, Fabric};
use vmdep::sflow::{
    header_protocol, Address, DataSource, DatagramRepr, FlowRecordRepr, FlowSampleRepr, Interface,
    SampleRepr, SampledHeaderRepr,
};
use vmdep::wire::{EthernetAddress, FrameRepr, TransportRepr, UdpRepr};

const REFERENCE: &str = include_str!("../topologies/reference.toml");
const VMDEP_P4: &str = include_str!("../p4/vmdep.p4");

fn pipeline(source: &str) -> PipelineBundle {
    let out = vmdep::compiler::compile(source, "vmdep.p4").expect("vmdep.p4 compiles");
    PipelineBundle {
        p4info: out.p4info,
        device_config: out.bmv2_json.into_bytes(),
    }
}

fn ip(name: &str, topology: &Topology) -> Ipv4Addr {
    topology
        .vm(topology.vm_id(name).expect("VM in topology"))
        .ipv4
}

fn pair(topology: &Topology, src: &str, dst: &str) -> VmPair {
    VmPair::new(ip(src, topology), ip(dst, topology))
}

/// A UDP frame from one VM to another, `payload_len` bytes of payload.
fn frame(topology: &Topology, src: &str, dst: &str, payload_len: usize) -> Vec<u8> {
    let vm = |n: &str| topology.vm(topology.vm_id(n).unwrap()).clone();
    let (s, d) = (vm(src), vm(dst));
    FrameRepr::new(
        EthernetAddress(s.mac.octets()),
        EthernetAddress(d.mac.octets()),
        None,
        s.ipv4,
        d.ipv4,
        TransportRepr::Udp(UdpRepr {
            src_port: 40000,
            dst_port: 9000,
        }),
        &vec![0x5a; payload_len],
    )
    .unwrap()
    .to_vec()
    .unwrap()
}

/// One sFlow datagram from `server`'s agent with `count` samples of `src → dst`, 1 in 64.
fn samples(topology: &Topology, server: &str, src: &str, dst: &str, count: u32) -> Vec<u8> {
    let agent = topology
        .server(topology.server_id(server).unwrap())
        .sflow_agent;
    let IpAddr::V4(agent) = agent else {
        panic!("IPv4 agents only")
    };
    let header = frame(topology, src, dst, 100);
    DatagramRepr {
        agent: Address::Ipv4(agent),
        sub_agent_id: 0,
        sequence_number: 1,
        uptime_ms: 1000,
        samples: (0..count)
            .map(|i| {
                SampleRepr::Flow(FlowSampleRepr {
                    expanded: false,
                    sequence_number: i + 1,
                    source: DataSource { kind: 0, index: 1 },
                    sampling_rate: 64,
                    sample_pool: 64 * (i + 1),
                    drops: 0,
                    input: Interface::if_index(1),
                    output: Interface::if_index(2),
                    records: vec![FlowRecordRepr::SampledHeader(SampledHeaderRepr {
                        protocol: header_protocol::ETHERNET,
                        frame_length: header.len() as u32 + 4,
                        stripped: 4,
                        header: header.clone(),
                    })],
                })
            })
            .collect(),
    }
    .to_bytes()
    .unwrap()
}

struct Bench {
    fabric: Fabric,
    controller: RunningController,
    topology: Arc<Topology>,
}

async fn start(p4_source: &str, policy: SelectionPolicy) -> Bench {
    let topology = Topology::from_toml(REFERENCE).unwrap();
    let fabric = fabric::start_fabric(&topology)
        .await
        .expect("fabric starts");
    let topology = Arc::new(fabric.topology.clone());
    let mut options = ControllerOptions::new(topology.clone(), Arc::new(pipeline(p4_source)));
    options.sflow_listen = "127.0.0.1:0".parse().unwrap();
    options.hostlink_listen = "127.0.0.1:0".parse().unwrap();
    options.window = None;
    options.policy = policy;
    // Long enough never to fire here; the entries carry it (see the snapshot).
    options.idle_timeout = Some(Duration::from_secs(600));
    options.journal = true;
    let controller = service::start(options).await.expect("controller starts");
    // Every session connected, primary, pipeline pushed, routes written.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let switches = controller.switches().await;
        if switches.iter().all(|s| s.ready && s.routes > 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "switches not ready: {switches:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Bench {
        fabric,
        controller,
        topology,
    }
}

impl Bench {
    async fn send_sflow(&self, datagrams: &[Vec<u8>]) {
        let before = self.controller.collector_stats().datagrams;
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for d in datagrams {
            socket.send_to(d, self.controller.sflow_addr).await.unwrap();
        }
        let want = before + datagrams.len() as u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.controller.collector_stats().datagrams < want {
            assert!(tokio::time::Instant::now() < deadline, "sFlow not received");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The collector hands batches over a channel: give it a moment to pass them on.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Sends frames from `src`'s server uplink and waits until `dst`'s server received them.
    async fn send_frames(&self, src: &str, dst: &str, sizes: &[usize]) -> (u64, u64) {
        let t = &self.topology;
        let server_of = |vm: &str| t.vm(t.vm_id(vm).unwrap()).server;
        let uplink = |vm: &str| self.fabric.uplinks[server_of(vm).0];
        let (up, down) = (uplink(src), uplink(dst));
        let tx = UdpSocket::bind(up.host).await.unwrap();
        let rx = UdpSocket::bind(down.host).await.unwrap();
        let (mut packets, mut bytes) = (0, 0);
        let mut buf = vec![0; 2048];
        for &size in sizes {
            let f = frame(t, src, dst, size);
            tx.send_to(&f, up.switch).await.unwrap();
            packets += 1;
            bytes += f.len() as u64;
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), rx.recv_from(&mut buf))
                .await
                .expect("frame crosses the fabric")
                .unwrap();
            assert_eq!(n, f.len(), "routed frames keep their length");
        }
        (packets, bytes)
    }

    /// Every WriteRequest each switch received, one update per line.
    fn journal_text(&self) -> String {
        let program = VmdepProgram::new(pipeline(VMDEP_P4).p4info).unwrap();
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

fn policy(threshold_packets: u64, idle_windows: u32) -> SelectionPolicy {
    SelectionPolicy {
        metric: Metric::Packets,
        threshold: threshold_packets,
        top_k: 0,
        entry_budget: 100,
        idle_windows,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_to_placed_counters_to_exact_counts_to_release() {
    let bench = start(VMDEP_P4, policy(100, 2)).await;
    let t = bench.topology.clone();
    // Samples at the source's server are counted; the copy the destination's server takes is
    // not (it would count the pair twice); a same-server pair is left to its server.
    bench
        .send_sflow(&[
            samples(&t, "h120", "web1", "app1", 10),
            samples(&t, "h122", "web1", "app1", 10),
            samples(&t, "h121", "client2", "web1", 5),
            samples(&t, "h122", "app1", "db1", 3),
            samples(&t, "h121", "batch1", "db2", 1),
            samples(&t, "h122", "app2", "cache1", 20),
        ])
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
    let sent_web = bench
        .send_frames("web1", "app1", &[10, 200, 1000, 1400, 64])
        .await;
    let sent_client = bench.send_frames("client2", "web1", &[300, 300]).await;
    let sent_unmeasured = bench.send_frames("batch1", "db2", &[500]).await;
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
    let tiny = VMDEP_P4.replace("VM_PAIR_SIZE = 16384", "VM_PAIR_SIZE = 1");
    assert_ne!(tiny, VMDEP_P4, "vmdep.p4 declares VM_PAIR_SIZE = 16384");
    let bench = start(&tiny, policy(1, 10)).await;
    let t = bench.topology.clone();
    // Four pairs between h120/h121 and h122/h123 cross s113, s112 and s114 (or s111).
    bench
        .send_sflow(&[
            samples(&t, "h120", "web1", "app1", 8),
            samples(&t, "h120", "client1", "app2", 7),
            samples(&t, "h121", "web2", "app1", 6),
            samples(&t, "h121", "client2", "app2", 5),
        ])
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
