//! A controller over the reference topology's five switches running in process
//! (`vmdep::demo::fabric`), with the test playing the servers: their VMs' frames on the
//! uplinks, their agents' sFlow.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use vmdep::controller::estimate::{Metric, SelectionPolicy};
use vmdep::controller::service::{ControllerOptions, RunningController};
use vmdep::controller::session::PipelineBundle;
use vmdep::controller::topology::Topology;
use vmdep::demo::emulated::REFERENCE_TOPOLOGY;
use vmdep::demo::fabric::{self, Fabric};
use vmdep::sflow::{
    header_protocol, Address, DataSource, DatagramRepr, FlowRecordRepr, FlowSampleRepr, Interface,
    SampleRepr, SampledHeaderRepr,
};
use vmdep::wire::{EthernetAddress, FrameRepr, TransportRepr, UdpRepr};

/// The reference topology's switches started in process, and the topology with their
/// addresses.
pub async fn start_reference_fabric() -> (Fabric, Arc<Topology>) {
    let topology = Topology::from_toml(REFERENCE_TOPOLOGY).unwrap();
    let fabric = fabric::start_fabric(&topology)
        .await
        .expect("fabric starts");
    let topology = Arc::new(fabric.topology.clone());
    (fabric, topology)
}

/// Selection by packets: pairs of at least `threshold` estimated packets, released after
/// `idle_windows` quiet windows, up to 100 entries.
pub fn packets_policy(threshold: u64, idle_windows: u32) -> SelectionPolicy {
    SelectionPolicy {
        metric: Metric::Packets,
        threshold,
        top_k: 0,
        entry_budget: 100,
        idle_windows,
    }
}

/// A controller on loopback ports whose windows the test steps.
pub fn test_controller_options(
    topology: Arc<Topology>,
    pipeline: PipelineBundle,
    policy: SelectionPolicy,
) -> ControllerOptions {
    let mut options = ControllerOptions::new(topology, Arc::new(pipeline));
    options.sflow_listen = "127.0.0.1:0".parse().unwrap();
    options.hostlink_listen = "127.0.0.1:0".parse().unwrap();
    options.window = None;
    options.policy = policy;
    // Long enough never to fire here; the entries carry it.
    options.idle_timeout = Some(Duration::from_secs(600));
    options
}

/// Waits until every session is connected, primary, has pushed the pipeline and written routes.
pub async fn wait_until_switches_ready(controller: &RunningController) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let switches = controller.switches().await;
        if switches.iter().all(|s| s.ready && s.routes > 0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "switches not ready: {switches:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends sFlow datagrams to the controller and waits until its collector took them all.
pub async fn send_sflow(controller: &RunningController, datagrams: &[Vec<u8>]) {
    let before = controller.collector_stats().datagrams;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for d in datagrams {
        socket.send_to(d, controller.sflow_addr).await.unwrap();
    }
    let want = before + datagrams.len() as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while controller.collector_stats().datagrams < want {
        assert!(tokio::time::Instant::now() < deadline, "sFlow not received");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The collector hands batches over a channel: give it a moment to pass them on.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Sends frames of `sizes` payload bytes from `src`'s server uplink, each received at `dst`'s
/// server with its length unchanged; the (packets, bytes) sent.
pub async fn send_frames(
    fabric: &Fabric,
    t: &Topology,
    src: &str,
    dst: &str,
    sizes: &[usize],
) -> (u64, u64) {
    let server_of = |vm: &str| t.vm(t.vm_id(vm).unwrap()).server;
    let uplink = |vm: &str| fabric.uplinks[server_of(vm).0];
    let (up, down) = (uplink(src), uplink(dst));
    let tx = UdpSocket::bind(up.host).await.unwrap();
    let rx = UdpSocket::bind(down.host).await.unwrap();
    let (mut packets, mut bytes) = (0, 0);
    let mut buf = vec![0; 2048];
    for &size in sizes {
        let f = vm_udp_frame(t, src, dst, size);
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

/// A UDP frame from VM `src` to VM `dst` of `topology`, `payload_len` bytes of payload.
pub fn vm_udp_frame(topology: &Topology, src: &str, dst: &str, payload_len: usize) -> Vec<u8> {
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
pub fn flow_samples(
    topology: &Topology,
    server: &str,
    src: &str,
    dst: &str,
    count: u32,
) -> Vec<u8> {
    let IpAddr::V4(agent) = topology
        .server(topology.server_id(server).unwrap())
        .sflow_agent
    else {
        panic!("IPv4 agents only")
    };
    let header = vm_udp_frame(topology, src, dst, 100);
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
