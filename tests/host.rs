//! `vmdep host` end to end over real sockets on loopback: a UDP socket plays the switch port at
//! the other end of the uplink, another the sFlow collector, a TcpListener the controller's
//! host link. Frames are built with `wire`, datagrams decoded with `sflow`, and one datagram
//! also with tshark (the Debian package `tshark`; that test fails without it).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::{timeout, Instant};

use vmdep::controller::topology::Topology;
use vmdep::host::{
    self, Discard, Forwarding, HostConfig, MirroredFrame, RunningHost, UdpWire, MAX_DATAGRAM,
    SAMPLED_HEADER_BYTES,
};
use vmdep::hostlink::{
    self, AppLabel, ControllerMessage, HostMessage, LocalPairCount, PairAddrs, VERSION,
};
use vmdep::sflow::{
    header_protocol, Address, CounterRecordRepr, DatagramRepr, FlowRecordRepr, Interface,
    SampleRepr,
};
use vmdep::wire::{EthernetAddress, FrameRepr, TransportRepr, UdpRepr};

mod support;

use support::tshark::{sflow_pcap, tshark_fields};

/// One switch; server h1 (agent 127.0.0.120) with VMs a, b, c; server h2 with VM d.
const TOPOLOGY: &str = r#"
[[switch]]
name = "s1"
device_id = 1
p4runtime = "127.0.0.1:50001"
vm_pair_capacity = 16

[[server]]
name = "h1"
sflow_agent = "127.0.0.120"
uplink = "s1:1"

[[server]]
name = "h2"
sflow_agent = "127.0.0.121"
uplink = "s1:2"

[[vm]]
name = "a"
ipv4 = "10.0.1.1"
mac = "02:01:0a:00:01:01"
server = "h1"

[[vm]]
name = "b"
ipv4 = "10.0.1.2"
mac = "02:01:0a:00:01:02"
server = "h1"

[[vm]]
name = "c"
ipv4 = "10.0.1.3"
mac = "02:01:0a:00:01:03"
server = "h1"

[[vm]]
name = "d"
ipv4 = "10.0.2.1"
mac = "02:01:0a:00:02:01"
server = "h2"
"#;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const C: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 3);
const D: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
const AGENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 120);
/// Every wait in these tests ends by then.
const PATIENCE: Duration = Duration::from_secs(10);

fn mac_of(ip: Ipv4Addr) -> EthernetAddress {
    let o = ip.octets();
    EthernetAddress([0x02, 0x01, o[0], o[1], o[2], o[3]])
}

/// A UDP frame from `src` to `dst` whose payload numbers it; `extra` bytes make it longer.
fn frame(src: Ipv4Addr, dst: Ipv4Addr, n: u32, extra: usize) -> Vec<u8> {
    let mut payload = n.to_be_bytes().to_vec();
    payload.extend((0..extra).map(|i| (i as u8) ^ (n as u8)));
    let udp = UdpRepr {
        src_port: 40000 + (n % 1000) as u16,
        dst_port: 8080,
    };
    FrameRepr::new(
        mac_of(src),
        mac_of(dst),
        None,
        src,
        dst,
        TransportRepr::Udp(udp),
        &payload,
    )
    .unwrap()
    .to_vec()
    .unwrap()
}

/// The sockets around one host.
struct Harness {
    host: RunningHost,
    switch: UdpSocket,
    collector: UdpSocket,
}

async fn harness(configure: impl FnOnce(&mut HostConfig)) -> Harness {
    let topology = Arc::new(Topology::from_toml(TOPOLOGY).unwrap());
    let switch = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let collector = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let uplink = UdpWire {
        local: "127.0.0.1:0".parse().unwrap(),
        peer: switch.local_addr().unwrap(),
    };
    let mut config = HostConfig::new("h1", topology, uplink);
    config.collector = collector.local_addr().unwrap();
    configure(&mut config);
    let host = host::start(config).await.unwrap();
    switch.connect(host.uplink_addr()).await.unwrap();
    Harness {
        host,
        switch,
        collector,
    }
}

/// The controller's end of an accepted host link.
struct Controller {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Controller {
    async fn accept(listener: &TcpListener) -> Controller {
        let (stream, _) = timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
        let (read, writer) = stream.into_split();
        let mut c = Controller {
            reader: BufReader::new(read),
            writer,
        };
        assert_eq!(
            c.next().await,
            Some(HostMessage::Hello {
                server: "h1".into(),
                version: VERSION
            })
        );
        c
    }

    async fn next(&mut self) -> Option<HostMessage> {
        timeout(PATIENCE, hostlink::read_message(&mut self.reader))
            .await
            .expect("the host link stayed silent")
            .unwrap()
    }

    /// Reads until a `local_counts` with exactly `want` arrives.
    async fn wait_for_counts(&mut self, want: &[LocalPairCount]) {
        loop {
            match self.next().await {
                Some(HostMessage::LocalCounts { pairs, .. }) if pairs == want => return,
                Some(_) => {}
                None => panic!("the host closed the link before reporting {want:?}"),
            }
        }
    }

    async fn send(&mut self, message: &ControllerMessage) {
        hostlink::write_message(&mut self.writer, message)
            .await
            .unwrap();
    }
}

/// Waits until `check` holds on the host's stats.
async fn eventually(host: &RunningHost, what: &str, check: impl Fn(&host::HostStats) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check(&host.stats()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn recv_datagram(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (len, from) = timeout(PATIENCE, socket.recv_from(&mut buf))
        .await
        .expect("no datagram")
        .unwrap();
    buf.truncate(len);
    (buf, from)
}

#[tokio::test]
async fn same_server_frames_are_delivered_and_counted_exactly() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let h = harness(|c| {
        c.controller = Some(listener.local_addr().unwrap());
        // One report as the link comes up, then only the final one at shutdown.
        c.report_interval = Duration::from_secs(3600);
    })
    .await;
    let mut controller = Controller::accept(&listener).await;
    controller.wait_for_counts(&[]).await;
    let a = h.host.vm_port("a").unwrap();
    let mut b = h.host.vm_port("b").unwrap();
    let mut c = h.host.vm_port("c").unwrap();
    let mut sent_to_b = Vec::new();
    let (mut ab_bytes, mut ba_bytes, mut ac_bytes) = (0u64, 0u64, 0u64);
    for n in 0..30 {
        let f = frame(A, B, n, n as usize * 7);
        assert_eq!(a.send(&f), Forwarding::Vm { if_index: 3 });
        ab_bytes += f.len() as u64;
        sent_to_b.push(f);
    }
    for n in 0..5 {
        let f = frame(B, A, n, 3);
        assert_eq!(b.send(&f), Forwarding::Vm { if_index: 2 });
        ba_bytes += f.len() as u64;
    }
    let to_c = frame(A, C, 99, 1000);
    assert_eq!(a.send(&to_c), Forwarding::Vm { if_index: 4 });
    ac_bytes += to_c.len() as u64;

    for want in &sent_to_b {
        assert_eq!(b.try_recv().as_ref(), Some(want));
    }
    assert_eq!(b.try_recv(), None);
    assert_eq!(c.try_recv(), Some(to_c));
    let counters = b.counters();
    assert_eq!((counters.out_packets, counters.out_octets), (30, ab_bytes));
    assert_eq!((counters.in_packets, counters.in_octets), (5, ba_bytes));

    let want = vec![
        LocalPairCount {
            src: A,
            dst: B,
            packets: 30,
            bytes: ab_bytes,
        },
        LocalPairCount {
            src: A,
            dst: C,
            packets: 1,
            bytes: ac_bytes,
        },
        LocalPairCount {
            src: B,
            dst: A,
            packets: 5,
            bytes: ba_bytes,
        },
    ];
    // Nothing went to the uplink.
    let stats = h.host.stats();
    assert_eq!(stats.port("uplink").unwrap().counters.out_packets, 0);
    assert_eq!(stats.local_pairs, want);

    // The final counts go out at shutdown, then the link closes.
    let last = frame(C, A, 1, 0);
    assert_eq!(c.send(&last), Forwarding::Vm { if_index: 2 });
    let mut want_final = want.clone();
    want_final.push(LocalPairCount {
        src: C,
        dst: A,
        packets: 1,
        bytes: last.len() as u64,
    });
    let shutdown = tokio::spawn(h.host.shutdown());
    let mut reports = Vec::new();
    while let Some(message) = controller.next().await {
        if let HostMessage::LocalCounts { pairs, .. } = message {
            reports.push(pairs);
        }
    }
    assert_eq!(reports, vec![want_final]);
    let stats = shutdown.await.unwrap().unwrap();
    assert_eq!(stats.link.connects, 1);
    // After shutdown nothing is forwarded (and that is counted).
    assert_eq!(
        a.send(&frame(A, B, 0, 0)),
        Forwarding::Discarded(Discard::Stopped)
    );
}

#[tokio::test]
async fn cross_server_frames_leave_by_the_uplink_byte_identical() {
    let h = harness(|_| {}).await;
    let a = h.host.vm_port("a").unwrap();
    let c = h.host.vm_port("c").unwrap();
    let mut sent = Vec::new();
    for n in 0..50 {
        let f = if n % 2 == 0 {
            frame(A, D, n, n as usize * 30)
        } else {
            // Any address that is no VM of this server goes to the fabric.
            frame(C, Ipv4Addr::new(192, 0, 2, 7), n, 5)
        };
        let port = if n % 2 == 0 { &a } else { &c };
        assert_eq!(port.send(&f), Forwarding::Uplink);
        sent.push(f);
    }
    for want in &sent {
        let (got, from) = recv_datagram(&h.switch).await;
        assert_eq!(&got, want);
        assert_eq!(from, h.host.uplink_addr());
    }
    let stats = h.host.stats();
    let uplink = stats.port("uplink").unwrap().counters;
    assert_eq!(uplink.out_packets, 50);
    assert_eq!(
        uplink.out_octets,
        sent.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert!(stats.local_pairs.is_empty());
    h.host.shutdown().await.unwrap();
}

#[tokio::test]
async fn uplink_frames_reach_the_right_vm_and_bad_ones_are_counted() {
    let h = harness(|_| {}).await;
    let mut a = h.host.vm_port("a").unwrap();
    let mut b = h.host.vm_port("b").unwrap();
    let to_a = frame(D, A, 1, 100);
    let to_b = frame(D, B, 2, 0);
    let to_nobody = frame(D, Ipv4Addr::new(10, 0, 1, 9), 3, 0);
    let mut arp = frame(D, A, 4, 0);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    for f in [
        &to_a[..],
        &to_b,
        &to_nobody,
        &arp,
        &[1, 2, 3],
        &[],
        &to_a[..20],
    ] {
        h.switch.send(f).await.unwrap();
    }
    let got_a = timeout(PATIENCE, a.recv()).await.unwrap().unwrap();
    assert_eq!(got_a, to_a);
    let got_b = timeout(PATIENCE, b.recv()).await.unwrap().unwrap();
    assert_eq!(got_b, to_b);
    eventually(&h.host, "all seven datagrams", |s| {
        s.port("uplink").unwrap().counters.in_packets == 7
    })
    .await;
    let stats = h.host.stats();
    let uplink = stats.port("uplink").unwrap().counters;
    assert_eq!(uplink.in_discards, 1, "unknown destination");
    assert_eq!(uplink.in_unknown_protos, 1, "ARP");
    assert_eq!(uplink.in_errors, 3, "3 bytes, empty, truncated IPv4");
    assert_eq!(stats.port("a").unwrap().counters.out_packets, 1);
    assert_eq!(stats.port("b").unwrap().counters.out_packets, 1);
    assert_eq!(a.try_recv(), None);
    // Still forwarding after the garbage.
    h.switch.send(&to_b).await.unwrap();
    assert_eq!(timeout(PATIENCE, b.recv()).await.unwrap().unwrap(), to_b);
    h.host.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_vm_queue_is_counted_not_silent() {
    let h = harness(|c| c.vm_queue = 2).await;
    let a = h.host.vm_port("a").unwrap();
    let _b = h.host.vm_port("b").unwrap();
    let results: Vec<_> = (0..4).map(|n| a.send(&frame(A, B, n, 0))).collect();
    assert_eq!(
        results,
        vec![
            Forwarding::Vm { if_index: 3 },
            Forwarding::Vm { if_index: 3 },
            Forwarding::Discarded(Discard::VmQueueFull),
            Forwarding::Discarded(Discard::VmQueueFull),
        ]
    );
    let stats = h.host.stats();
    assert_eq!(stats.port("b").unwrap().counters.out_discards, 2);
    // The pair's traffic is counted whole, as a switch's counter counts what it forwards.
    assert_eq!(stats.local_pairs[0].packets, 4);
    h.host.shutdown().await.unwrap();
}

/// Collects the collector's datagrams until the host's agent has sent `datagrams`.
async fn collect(collector: &UdpSocket, datagrams: u64) -> Vec<(DatagramRepr, usize, SocketAddr)> {
    let mut got = Vec::new();
    while (got.len() as u64) < datagrams {
        let (bytes, from) = recv_datagram(collector).await;
        got.push((DatagramRepr::parse(&bytes).unwrap(), bytes.len(), from));
    }
    got
}

#[tokio::test]
async fn sampling_is_one_in_n_and_datagrams_decode() {
    const RATE: u32 = 64;
    const FRAMES: u32 = 20_000;
    let h = harness(|c| {
        c.sampling_rate = RATE;
        c.seed = 7;
    })
    .await;
    let a = h.host.vm_port("a").unwrap();
    let frames: Vec<Vec<u8>> = (0..FRAMES)
        .map(|n| frame(A, D, n, (n as usize * 13) % 300))
        .collect();
    let mut octets = 0;
    for f in &frames {
        assert_eq!(a.send(f), Forwarding::Uplink);
        octets += f.len() as u64;
    }
    let sflow_source = h.host.sflow_source_addr();
    let stats = h.host.shutdown().await.unwrap();
    let datagrams = collect(&h.collector, stats.sflow.datagrams).await;
    assert_eq!(stats.sflow.errors, 0);
    // Sent from the agent address, so the collector can tell servers apart by source too.
    assert_eq!(sflow_source.ip(), AGENT);

    let mut flow_samples = Vec::new();
    let mut last_counters = BTreeMap::new();
    for (i, (dg, len, from)) in datagrams.iter().enumerate() {
        assert_eq!(*from, sflow_source);
        assert_eq!(dg.agent, Address::Ipv4(AGENT));
        assert_eq!(dg.sequence_number, i as u32 + 1);
        assert!(*len <= MAX_DATAGRAM, "datagram of {len} bytes");
        for sample in &dg.samples {
            match sample {
                SampleRepr::Flow(f) => flow_samples.push(f.clone()),
                SampleRepr::Counters(c) => {
                    let [CounterRecordRepr::Interface(ifc)] = &c.records[..] else {
                        panic!("counter records {:?}", c.records);
                    };
                    assert_eq!(c.source.index, ifc.if_index);
                    last_counters.insert(ifc.if_index, *ifc);
                }
                SampleRepr::Unknown { .. } => panic!("unknown sample"),
            }
        }
    }
    // Several samples share a datagram.
    assert!(
        datagrams.len() * 3 < flow_samples.len(),
        "{} datagrams",
        datagrams.len()
    );
    // A renewal process with uniform skips in 1..=2N-1: mean FRAMES/N = 312.5, standard
    // deviation sqrt(FRAMES * var / N^3) ~ 10.1; five of them either side.
    let n = flow_samples.len() as f64;
    assert!((n - 312.5).abs() < 51.0, "{n} samples");
    assert_eq!(stats.sflow.flow_samples, flow_samples.len() as u64);
    for (k, f) in flow_samples.iter().enumerate() {
        assert_eq!(f.sequence_number, k as u32 + 1);
        assert_eq!(f.source.index, 2);
        assert_eq!(f.sampling_rate, RATE);
        assert_eq!(f.drops, 0);
        assert_eq!(f.input, Interface::if_index(2));
        assert_eq!(f.output, Interface::if_index(1));
        // The pool counts the frames seen, so it names the sampled frame.
        let sampled = &frames[f.sample_pool as usize - 1];
        let [FlowRecordRepr::SampledHeader(h)] = &f.records[..] else {
            panic!("records {:?}", f.records);
        };
        assert_eq!(h.protocol, header_protocol::ETHERNET);
        // sFlow's frame length counts the 4-byte FCS, which the emulated frames lack.
        assert_eq!(h.frame_length as usize, sampled.len() + 4);
        assert_eq!(h.stripped, 4);
        assert_eq!(h.header, sampled[..sampled.len().min(SAMPLED_HEADER_BYTES)]);
    }
    let pools: Vec<u32> = flow_samples.iter().map(|f| f.sample_pool).collect();
    assert!(pools.windows(2).all(|w| w[0] < w[1]));
    // The last counter samples (sent at shutdown) hold every frame.
    assert_eq!(
        last_counters.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let a_counters = last_counters[&2];
    assert_eq!(a_counters.if_in_ucast_pkts, FRAMES);
    assert_eq!(a_counters.if_in_octets, octets);
    assert_eq!(last_counters[&1].if_out_octets, octets);
    assert_eq!(stats.port("a").unwrap().sample_pool, u64::from(FRAMES));
}

#[tokio::test]
async fn the_same_seed_samples_the_same_frames() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let h = harness(|c| {
            c.sampling_rate = 16;
            c.seed = 99;
        })
        .await;
        let a = h.host.vm_port("a").unwrap();
        for n in 0..2000 {
            a.send(&frame(A, D, n, 0));
        }
        let stats = h.host.shutdown().await.unwrap();
        let pools: Vec<u32> = collect(&h.collector, stats.sflow.datagrams)
            .await
            .into_iter()
            .flat_map(|(dg, _, _)| dg.samples)
            .filter_map(|s| match s {
                SampleRepr::Flow(f) => Some(f.sample_pool),
                _ => None,
            })
            .collect();
        runs.push(pools);
    }
    assert!(!runs[0].is_empty());
    assert_eq!(runs[0], runs[1]);
}

#[tokio::test]
async fn uplink_ingress_is_sampled_and_counter_samples_come_every_interval() {
    let h = harness(|c| {
        c.sampling_rate = 1;
        c.counter_interval = Duration::from_millis(200);
    })
    .await;
    let mut b = h.host.vm_port("b").unwrap();
    let to_b = frame(D, B, 5, 40);
    let to_nobody = frame(D, Ipv4Addr::new(10, 0, 1, 200), 6, 0);
    h.switch.send(&to_b).await.unwrap();
    h.switch.send(&to_nobody).await.unwrap();
    timeout(PATIENCE, b.recv()).await.unwrap().unwrap();
    // Flow samples within the flush interval, then two rounds of counter samples.
    let mut flows = Vec::new();
    let mut counter_rounds = BTreeMap::<u32, Vec<u32>>::new();
    while counter_rounds.get(&1).map_or(0, Vec::len) < 2 {
        let (bytes, _) = recv_datagram(&h.collector).await;
        for s in DatagramRepr::parse(&bytes).unwrap().samples {
            match s {
                SampleRepr::Flow(f) => flows.push(f),
                SampleRepr::Counters(c) => counter_rounds
                    .entry(c.source.index)
                    .or_default()
                    .push(c.sequence_number),
                SampleRepr::Unknown { .. } => panic!("unknown sample"),
            }
        }
    }
    assert_eq!(flows.len(), 2);
    assert_eq!(flows[0].input, Interface::if_index(1));
    assert_eq!(flows[0].output, Interface::if_index(3));
    assert_eq!(flows[0].source.index, 1);
    // Host unreachable: discarded, reason 1.
    assert_eq!(
        flows[1].output,
        Interface {
            format: 1,
            value: 1
        }
    );
    assert_eq!((flows[0].sequence_number, flows[1].sequence_number), (1, 2));
    // Per-port counter sample sequence numbers.
    assert_eq!(counter_rounds[&1][..2], [1, 2]);
    h.host.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_mirror_set_copies_its_pairs_both_ways_and_same_server_frames_are_always_copied() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let h = harness(|c| c.controller = Some(listener.local_addr().unwrap())).await;
    let mut controller = Controller::accept(&listener).await;
    let mut mirror = h.host.mirror_frames().unwrap();
    assert!(
        h.host.mirror_frames().is_none(),
        "the sink is handed out once"
    );
    let a = h.host.vm_port("a").unwrap();
    let b = h.host.vm_port("b").unwrap();
    let c = h.host.vm_port("c").unwrap();

    // Nothing is mirrored before the controller asks, except same-server frames.
    a.send(&frame(A, D, 0, 0));
    let early = frame(A, B, 10, 0);
    a.send(&early);
    controller
        .send(&ControllerMessage::Mirror {
            pairs: vec![PairAddrs { src: A, dst: D }, PairAddrs { src: C, dst: B }],
        })
        .await;
    eventually(&h.host, "the mirror set", |s| s.link.mirror_updates == 1).await;
    let mut want = vec![early];
    let traffic: Vec<(Option<&vmdep::host::VmPort>, Vec<u8>, bool)> = vec![
        (Some(&a), frame(A, D, 1, 10), true),
        (None, frame(D, A, 2, 10), true), // the reverse direction, from the uplink
        (Some(&a), frame(A, B, 3, 0), true), // same-server frames are always copied
        (Some(&b), frame(B, A, 4, 0), true),
        (Some(&c), frame(C, D, 5, 0), false),
        (Some(&c), frame(C, B, 6, 0), true), // a same-server pair of the set
        (Some(&b), frame(B, C, 7, 0), true),
        (None, frame(D, C, 8, 0), false),
    ];
    let mut from_uplink = 0;
    for (port, f, mirrored) in traffic {
        match port {
            Some(p) => {
                p.send(&f);
            }
            None => {
                // In order: the uplink frame is forwarded before the next frame is sent.
                h.switch.send(&f).await.unwrap();
                from_uplink += 1;
                eventually(&h.host, "the uplink frame", |s| {
                    s.port("uplink").unwrap().counters.in_packets == from_uplink
                })
                .await;
            }
        }
        if mirrored {
            want.push(f);
        }
    }
    let mut got: Vec<MirroredFrame> = Vec::new();
    while let Ok(m) = mirror.try_recv() {
        got.push(m);
    }
    assert_eq!(
        got.iter().map(|m| m.frame.clone()).collect::<Vec<_>>(),
        want
    );
    assert!(got.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(h.host.stats().vswitch.mirrored, 7);

    // An empty set stops mirroring.
    controller
        .send(&ControllerMessage::Mirror { pairs: vec![] })
        .await;
    eventually(&h.host, "the empty set", |s| s.link.mirror_updates == 2).await;
    a.send(&frame(A, D, 9, 0));
    assert!(mirror.try_recv().is_err());
    assert!(matches!(
        h.host.vm_port("b"),
        Err(host::HostError::PortTaken(_))
    ));
    assert!(matches!(
        h.host.vm_port("d"),
        Err(host::HostError::UnknownVm { .. })
    ));
    h.host.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_host_link_lines_are_counted_and_the_link_keeps_working() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let h = harness(|c| c.controller = Some(listener.local_addr().unwrap())).await;
    let mut controller = Controller::accept(&listener).await;
    controller.writer.write_all(b"not json\n").await.unwrap();
    controller
        .writer
        .write_all(b"{\"type\":\"mirror\",\"pairs\":[{\"src\":\"10.0.1.1\"}]}\n")
        .await
        .unwrap();
    controller
        .send(&ControllerMessage::Mirror {
            pairs: vec![PairAddrs { src: A, dst: B }],
        })
        .await;
    eventually(&h.host, "the valid mirror set", |s| {
        s.link.mirror_updates == 1
    })
    .await;
    let stats = h.host.stats();
    assert_eq!(stats.link.bad_lines, 2);
    assert_eq!(stats.link.disconnects, 0);
    let mut mirror = h.host.mirror_frames().unwrap();
    let a = h.host.vm_port("a").unwrap();
    let f = frame(A, B, 1, 0);
    a.send(&f);
    assert_eq!(mirror.try_recv().unwrap().frame, f);

    // Labels published by DPI go to the controller.
    let label = AppLabel {
        protocol: "http".into(),
        client: A,
        server: B,
        server_port: 80,
        details: vec!["GET /".into()],
        requests: 2,
        responses: 2,
        mean_response_ms: Some(1.5),
    };
    h.host.label_publisher().publish(vec![label.clone()]);
    loop {
        match controller.next().await {
            Some(HostMessage::Labels { labels, .. }) => {
                assert_eq!(labels, vec![label]);
                break;
            }
            Some(_) => {}
            None => panic!("link closed"),
        }
    }
    h.host.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_link_waits_for_a_late_controller_and_reconnects() {
    // An address nobody listens on yet (bound, then released).
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let h = harness(|c| {
        c.controller = Some(addr);
        c.report_interval = Duration::from_millis(50);
    })
    .await;
    eventually(&h.host, "a failed connection", |s| {
        s.link.connect_failures >= 1
    })
    .await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let controller = Controller::accept(&listener).await;
    // The controller goes away; the host comes back.
    drop(controller);
    let mut controller = Controller::accept(&listener).await;
    let stats = h.host.stats();
    assert_eq!(stats.link.connects, 2);
    assert_eq!(stats.link.disconnects, 1);
    // Reports come every interval, with the counts as they grow.
    let a = h.host.vm_port("a").unwrap();
    let f = frame(A, B, 0, 0);
    for (n, want) in [(1, 1), (2, 3)] {
        for _ in 0..n {
            a.send(&f);
        }
        controller
            .wait_for_counts(&[LocalPairCount {
                src: A,
                dst: B,
                packets: want,
                bytes: want * f.len() as u64,
            }])
            .await;
    }
    h.host.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_configurations_are_refused() {
    let topology = Arc::new(Topology::from_toml(TOPOLOGY).unwrap());
    let uplink: UdpWire = "udp:127.0.0.1:0=127.0.0.1:9".parse().unwrap();
    let err = |f: fn(&mut HostConfig)| {
        let topology = Arc::clone(&topology);
        async move {
            let mut config = HostConfig::new("h1", topology, uplink);
            f(&mut config);
            host::start(config).await.err().unwrap().to_string()
        }
    };
    assert!(err(|c| c.server = "h9".into())
        .await
        .contains("\"h9\" is not in the topology"));
    assert!(err(|c| c.sampling_rate = 0)
        .await
        .contains("sampling rate 0"));
    assert!(err(|c| c.counter_interval = Duration::ZERO)
        .await
        .contains("counter interval"));
    assert!(err(|c| c.mirror_queue = 0).await.contains("mirror queue"));
}

/// tshark reads a datagram the host sent (from its real source address) into the same fields.
#[tokio::test]
async fn tshark_decodes_the_hosts_datagrams() {
    let h = harness(|c| c.sampling_rate = 1).await;
    let a = h.host.vm_port("a").unwrap();
    let sent = frame(A, D, 42, 200);
    a.send(&sent);
    let stats = h.host.shutdown().await.unwrap();
    let (bytes, from) = recv_datagram(&h.collector).await;
    assert!(stats.sflow.datagrams >= 1);
    let SocketAddr::V4(from) = from else {
        panic!("{from}")
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.pcap");
    std::fs::write(&path, sflow_pcap(from, &[bytes])).unwrap();
    let fields = [
        "ip.src",
        "sflow_245.agent",
        "sflow_245.sequence_number",
        "sflow.flow_sample.sampling_rate",
        "sflow.flow_sample.sample_pool",
        "sflow.flow_sample.input_interface",
        "sflow.flow_sample.output_interface_value",
        "sflow_245.header.frame_length",
        "sflow_245.header.payload_stripped",
        "sflow_245.header.sampled_header_length",
        "udp.dstport",
    ];
    let packets = tshark_fields(&path, &fields);
    assert_eq!(packets.len(), 1, "tshark output: {packets:?}");
    let want = [
        // The outer packet from the agent, then the sampled frame's addresses.
        "127.0.0.120,10.0.1.1",
        "127.0.0.120",
        "1",
        "1",
        "1",
        "2",
        "1",
        &(sent.len() + 4).to_string(),
        "4",
        "128",
        "6343,8080",
    ];
    assert_eq!(
        packets[0],
        want.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_burst_from_the_uplink_arrives_whole_and_in_order() {
    const FRAMES: u32 = 3000;
    let h = harness(|_| {}).await;
    let mut a = h.host.vm_port("a").unwrap();
    let mut b = h.host.vm_port("b").unwrap();
    let frames: Vec<Vec<u8>> = (0..FRAMES)
        .map(|n| frame(D, if n % 2 == 0 { A } else { B }, n, 0))
        .collect();
    for f in &frames {
        h.switch.send(f).await.unwrap();
    }
    for (port, parity) in [(&mut a, 0), (&mut b, 1)] {
        for want in frames.iter().skip(parity).step_by(2) {
            let got = timeout(PATIENCE, port.recv()).await.unwrap().unwrap();
            assert_eq!(&got, want);
        }
    }
    let stats = h.host.shutdown().await.unwrap();
    assert_eq!(
        stats.port("uplink").unwrap().counters.in_packets,
        u64::from(FRAMES)
    );
}

/// A DNS query for `example.com` (A record), as a UDP payload.
fn dns_query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // recursion desired; one question
    q.extend(b"\x07example\x03com\x00");
    q.extend([0, 1, 0, 1]); // A, IN
    q
}

fn dns_frame(src: Ipv4Addr, dst: Ipv4Addr, id: u16) -> Vec<u8> {
    FrameRepr::new(
        mac_of(src),
        mac_of(dst),
        None,
        src,
        dst,
        TransportRepr::Udp(UdpRepr {
            src_port: 5353 + id,
            dst_port: 53,
        }),
        &dns_query(id),
    )
    .unwrap()
    .to_vec()
    .unwrap()
}

#[tokio::test]
async fn vm_wires_carry_a_vms_frames_and_dpi_labels_what_is_mirrored() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // The VMs' far ends: another process in `vmdep demo --processes`, sockets here.
    let ends = vmdep::demo::fabric::reserve_udp(4).unwrap();
    let a_far = UdpWire {
        local: ends[1],
        peer: ends[0],
    }
    .open()
    .unwrap();
    let c_far = UdpWire {
        local: ends[3],
        peer: ends[2],
    }
    .open()
    .unwrap();
    let h = harness(|config| {
        config.controller = Some(listener.local_addr().unwrap());
        config.report_interval = Duration::from_millis(50);
        config.vm_wires = vec![
            format!("a=udp:{}={}", ends[0], ends[1]).parse().unwrap(),
            format!("c=udp:{}={}", ends[2], ends[3]).parse().unwrap(),
        ];
    })
    .await;
    let mut controller = Controller::accept(&listener).await;
    let dpi = host::DpiModule::start(&h.host).expect("the mirror port is free");
    assert!(matches!(
        h.host.vm_port("a"),
        Err(host::HostError::PortTaken(_))
    ));
    controller
        .send(&ControllerMessage::Mirror {
            pairs: vec![PairAddrs { src: A, dst: C }],
        })
        .await;
    eventually(&h.host, "the mirror set", |s| s.link.mirror_updates == 1).await;

    // a → c stays on the server; a → d leaves by the uplink; d → a comes in by it.
    let local = dns_frame(A, C, 1);
    a_far.send(&local).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let len = timeout(PATIENCE, c_far.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..len], &local[..]);
    let out = frame(A, D, 2, 0);
    a_far.send(&out).await.unwrap();
    assert_eq!(recv_datagram(&h.switch).await.0, out);
    let back = frame(D, A, 3, 0);
    h.switch.send(&back).await.unwrap();
    let len = timeout(PATIENCE, a_far.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..len], &back[..]);

    // The mirrored DNS query is labeled and reported, with the same-server count.
    controller
        .wait_for_counts(&[LocalPairCount {
            src: A,
            dst: C,
            packets: 1,
            bytes: local.len() as u64,
        }])
        .await;
    dpi.publish_now();
    let labels = loop {
        match controller.next().await {
            Some(HostMessage::Labels { labels, .. }) if !labels.is_empty() => break labels,
            Some(_) => {}
            None => panic!("the host closed the link before labeling"),
        }
    };
    assert_eq!(labels.len(), 1, "{labels:#?}");
    assert_eq!(
        (
            labels[0].protocol.as_str(),
            labels[0].client,
            labels[0].server,
            labels[0].server_port
        ),
        ("dns", A, C, 53)
    );
    assert_eq!(h.host.stats().vm_wire_errors, 0);
    dpi.stop().await;
    h.host.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_vm_wire_for_an_unknown_vm_is_refused() {
    let topology = Arc::new(Topology::from_toml(TOPOLOGY).unwrap());
    let uplink = UdpWire {
        local: "127.0.0.1:0".parse().unwrap(),
        peer: "127.0.0.1:9".parse().unwrap(),
    };
    let mut config = HostConfig::new("h1", topology, uplink);
    config.vm_wires = vec!["d=udp:127.0.0.1:0=127.0.0.1:9".parse().unwrap()];
    let err = host::start(config)
        .await
        .err()
        .expect("d is on h2")
        .to_string();
    assert!(err.contains("server \"h1\" has no VM \"d\""), "{err}");
}
