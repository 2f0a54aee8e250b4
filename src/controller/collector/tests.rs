use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::controller::estimate::WindowSamples;
use crate::sflow::{
    CounterRecordRepr, CountersSampleRepr, DataFormat, DataSource, DatagramRepr, FlowRecordRepr,
    FlowSampleRepr, SampleRepr, SampledHeaderRepr, SampledIpv4,
};
use crate::wire::{EthernetAddress, FrameRepr, TransportRepr, UdpRepr, VlanTag};

const REFERENCE: &str = include_str!("../../../topologies/reference.toml");

fn reference() -> Topology {
    Topology::from_toml(REFERENCE).unwrap()
}

/// VM `n` of server `h<server>` in the reference topology.
fn vm(server: u8, n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, server, n)
}

/// The agent address of server `h<server>`.
fn agent(server: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, server))
}

fn from() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn server_id(topology: &Topology, name: &str) -> ServerId {
    topology.server_id(name).unwrap()
}

/// A UDP frame between two addresses, 200 bytes of payload.
fn frame(src: Ipv4Addr, dst: Ipv4Addr, vlan: Option<VlanTag>) -> Vec<u8> {
    FrameRepr::new(
        EthernetAddress([2, 1, 0, 0, 0, 1]),
        EthernetAddress([2, 1, 0, 0, 0, 2]),
        vlan,
        src,
        dst,
        TransportRepr::Udp(UdpRepr {
            src_port: 40_000,
            dst_port: 53,
        }),
        &[0x5a; 200],
    )
    .unwrap()
    .to_vec()
    .unwrap()
}

/// A raw packet header record of the first 128 bytes of an Ethernet frame (FCS stripped).
fn header_of(frame: &[u8]) -> FlowRecordRepr {
    raw_header(header_protocol::ETHERNET, frame, frame.len() as u32 + 4)
}

fn raw_header(protocol: u32, packet: &[u8], frame_length: u32) -> FlowRecordRepr {
    FlowRecordRepr::SampledHeader(SampledHeaderRepr {
        protocol,
        frame_length,
        stripped: 4,
        header: packet[..packet.len().min(128)].to_vec(),
    })
}

/// A flow sample taken at vswitch port `at` of a frame that came in by `input` and left by
/// `output`, 1 in `rate`.
fn flow(at: u32, input: u32, output: u32, rate: u32, records: Vec<FlowRecordRepr>) -> SampleRepr {
    SampleRepr::Flow(FlowSampleRepr {
        expanded: false,
        sequence_number: 1,
        source: DataSource { kind: 0, index: at },
        sampling_rate: rate,
        sample_pool: 1000,
        drops: 0,
        input: Interface::if_index(input),
        output: Interface::if_index(output),
        records,
    })
}

fn datagram_bytes(agent: Address, sequence_number: u32, samples: Vec<SampleRepr>) -> Vec<u8> {
    DatagramRepr {
        agent,
        sub_agent_id: 0,
        sequence_number,
        uptime_ms: 1000 + sequence_number,
        samples,
    }
    .to_bytes()
    .unwrap()
}

fn datagram(server: u8, sequence_number: u32, samples: Vec<SampleRepr>) -> Vec<u8> {
    let IpAddr::V4(a) = agent(server) else {
        unreachable!()
    };
    datagram_bytes(Address::Ipv4(a), sequence_number, samples)
}

fn classify(bytes: &[u8]) -> DatagramSummary {
    classify_datagram(bytes, from(), &reference()).unwrap()
}

/// The skip counts as a list of (reason, count).
fn skips(summary: &DatagramSummary) -> Vec<(SkipReason, u64)> {
    summary.skipped.iter().collect()
}

// Port numbering of the tests' vswitches: VM n at ifIndex n, the uplink at ifIndex 100.
const UPLINK: u32 = 100;

#[test]
fn a_fabric_frame_sampled_at_both_ends_counts_once() {
    let topology = reference();
    let f = frame(vm(120, 1), vm(122, 1), None);
    // h120 samples it where web1 sends it into the vswitch; h122 where it leaves toward app1.
    let at_source = datagram(120, 1, vec![flow(1, 1, UPLINK, 64, vec![header_of(&f)])]);
    let at_destination = datagram(122, 1, vec![flow(1, UPLINK, 1, 64, vec![header_of(&f)])]);

    let s = classify(&at_source);
    assert_eq!(s.server, Some(server_id(&topology, "h120")));
    assert_eq!(
        s.pair_samples,
        vec![PairSample {
            pair: VmPair::new(vm(120, 1), vm(122, 1)),
            // sFlow's length counts the FCS; the switch-comparable length does not.
            frame_length: f.len() as u32,
            sampling_rate: 64,
            server: server_id(&topology, "h120"),
        }]
    );
    assert_eq!(skips(&s), vec![]);

    let d = classify(&at_destination);
    assert_eq!(d.server, Some(server_id(&topology, "h122")));
    assert_eq!(d.pair_samples, vec![]);
    assert_eq!(skips(&d), vec![(SkipReason::OtherSide, 1)]);

    // Sampled at h122's uplink as it came in: still the other side.
    let at_uplink = datagram(
        122,
        2,
        vec![flow(UPLINK, UPLINK, 1, 64, vec![header_of(&f)])],
    );
    assert_eq!(
        skips(&classify(&at_uplink)),
        vec![(SkipReason::OtherSide, 1)]
    );
}

#[test]
fn a_same_server_frame_sampled_at_both_ports_counts_once() {
    // web1 -> client1, both on h120: sampled where it enters from web1's port and where it
    // leaves by client1's port.
    let f = frame(vm(120, 1), vm(120, 2), None);
    let bytes = datagram(
        120,
        1,
        vec![
            flow(1, 1, 2, 10, vec![header_of(&f)]),
            flow(2, 1, 2, 10, vec![header_of(&f)]),
        ],
    );
    let s = classify(&bytes);
    assert_eq!(s.flow_samples, 2);
    assert_eq!(s.pair_samples.len(), 1);
    assert_eq!(s.pair_samples[0].pair, VmPair::new(vm(120, 1), vm(120, 2)));
    assert_eq!(skips(&s), vec![(SkipReason::EgressCopy, 1)]);

    // An agent that leaves the interfaces unknown (0) is taken at its word.
    let bytes = datagram(120, 2, vec![flow(2, 0, 0, 10, vec![header_of(&f)])]);
    assert_eq!(classify(&bytes).pair_samples.len(), 1);
}

#[test]
fn unknown_agents_are_reported_not_refused() {
    let f = frame(vm(120, 1), vm(122, 1), None);
    let counters = SampleRepr::Counters(CountersSampleRepr {
        expanded: false,
        sequence_number: 1,
        source: DataSource { kind: 0, index: 1 },
        records: vec![CounterRecordRepr::Interface(IfCounters {
            if_index: 1,
            ..IfCounters::default()
        })],
    });
    let bytes = datagram_bytes(
        Address::Ipv4(Ipv4Addr::new(192, 0, 2, 9)),
        7,
        vec![flow(1, 1, UPLINK, 64, vec![header_of(&f)]), counters],
    );
    let s = classify(&bytes);
    assert_eq!(s.agent, "192.0.2.9".parse::<IpAddr>().unwrap());
    assert_eq!((s.server, s.sequence_number), (None, 7));
    assert_eq!(s.pair_samples, vec![]);
    assert_eq!(skips(&s), vec![(SkipReason::UnknownAgent, 1)]);
    assert_eq!((s.counter_samples, s.interface_counters.len()), (1, 1));

    // An agent address of type "unknown" is replaced by the UDP source address.
    let bytes = datagram_bytes(
        Address::Unknown,
        1,
        vec![flow(1, 1, UPLINK, 64, vec![header_of(&f)])],
    );
    let s = classify_datagram(&bytes, "127.0.0.120:6343".parse().unwrap(), &reference()).unwrap();
    assert_eq!(s.agent, agent(120));
    assert_eq!(s.pair_samples.len(), 1);
    // An IPv6 agent the topology does not know.
    let bytes = datagram_bytes(Address::Ipv6(Ipv6Addr::LOCALHOST), 1, vec![]);
    assert_eq!(classify(&bytes).server, None);
}

#[test]
fn packets_that_name_no_vm_pair_are_skipped_by_reason() {
    let f = frame(vm(120, 1), vm(122, 1), None);
    let mut arp = f[..14].to_vec();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    arp.extend([0; 28]);
    let mut qinq = f.clone();
    qinq[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
    let outsider = frame(Ipv4Addr::new(192, 0, 2, 1), vm(120, 1), None);
    let to_outsider = frame(vm(120, 1), Ipv4Addr::new(192, 0, 2, 1), None);
    let sampled_ipv4 = FlowRecordRepr::SampledIpv4(SampledIpv4 {
        length: 228,
        protocol: 17,
        src_ip: vm(120, 1),
        dst_ip: vm(122, 1),
        src_port: 40_000,
        dst_port: 53,
        tcp_flags: 0,
        tos: 0,
    });
    let unknown_record = FlowRecordRepr::Unknown {
        format: DataFormat::new(0, 1002).unwrap(),
        data: vec![0; 8],
    };
    let bytes = datagram(
        120,
        1,
        vec![
            flow(1, 1, UPLINK, 64, vec![header_of(&arp)]),
            flow(
                1,
                1,
                UPLINK,
                64,
                vec![raw_header(header_protocol::IPV6, &[0x60; 40], 40)],
            ),
            flow(1, 1, UPLINK, 64, vec![raw_header(99, &f, 232)]),
            flow(1, 1, UPLINK, 64, vec![header_of(&f[..20])]),
            flow(1, 1, UPLINK, 64, vec![header_of(&qinq)]),
            flow(1, 1, UPLINK, 64, vec![header_of(&outsider)]),
            flow(1, 1, UPLINK, 64, vec![header_of(&to_outsider)]),
            flow(1, 1, UPLINK, 0, vec![header_of(&f)]),
            flow(1, 1, UPLINK, 64, vec![sampled_ipv4, unknown_record]),
            SampleRepr::Unknown {
                format: DataFormat::new(0, 5).unwrap(),
                data: vec![1, 2, 3],
            },
            SampleRepr::Counters(CountersSampleRepr {
                expanded: true,
                sequence_number: 1,
                source: DataSource { kind: 0, index: 1 },
                records: vec![CounterRecordRepr::Unknown {
                    format: DataFormat::new(0, 2).unwrap(),
                    data: vec![0; 4],
                }],
            }),
        ],
    );
    let s = classify(&bytes);
    assert_eq!((s.flow_samples, s.counter_samples), (9, 1));
    assert_eq!(s.pair_samples, vec![]);
    assert_eq!(
        skips(&s),
        vec![
            (SkipReason::NoPacketHeader, 1),
            (SkipReason::UnsupportedHeaderProtocol, 1),
            (SkipReason::NotIpv4, 2),
            (SkipReason::UnreadableHeader, 2),
            (SkipReason::NotVm, 2),
            (SkipReason::ZeroSamplingRate, 1),
            (SkipReason::UnknownSampleFormat, 1),
            (SkipReason::UnknownFlowRecord, 1),
            (SkipReason::UnknownCounterRecord, 1),
        ]
    );
    assert_eq!(s.skipped.total(), 12);
}

#[test]
fn tagged_frames_ipv4_headers_and_expanded_samples_count() {
    let topology = reference();
    let tagged = frame(
        vm(121, 3),
        vm(123, 3),
        Some(VlanTag {
            pcp: 0,
            dei: false,
            vid: 10,
        }),
    );
    let plain = frame(vm(121, 2), vm(120, 1), None);
    let SampleRepr::Flow(mut expanded) = flow(3, 3, UPLINK, 8, vec![header_of(&tagged)]) else {
        unreachable!()
    };
    expanded.expanded = true;
    let bytes = datagram(
        121,
        1,
        vec![
            SampleRepr::Flow(expanded),
            // The header record starts at the IPv4 header; its frame length is the packet's.
            flow(
                2,
                2,
                UPLINK,
                16,
                vec![raw_header(header_protocol::IPV4, &plain[14..], 228)],
            ),
        ],
    );
    let h121 = server_id(&topology, "h121");
    assert_eq!(
        classify(&bytes).pair_samples,
        vec![
            PairSample {
                pair: VmPair::new(vm(121, 3), vm(123, 3)),
                frame_length: tagged.len() as u32,
                sampling_rate: 8,
                server: h121,
            },
            PairSample {
                pair: VmPair::new(vm(121, 2), vm(120, 1)),
                // The IPv4 packet's 228 bytes in an untagged Ethernet frame.
                frame_length: 228 + 14,
                sampling_rate: 16,
                server: h121,
            },
        ]
    );
}

#[test]
fn only_the_first_packet_header_of_a_sample_counts() {
    let a = frame(vm(120, 1), vm(122, 1), None);
    let b = frame(vm(120, 1), vm(123, 1), None);
    let bytes = datagram(
        120,
        1,
        vec![flow(1, 1, UPLINK, 4, vec![header_of(&a), header_of(&b)])],
    );
    let s = classify(&bytes);
    assert_eq!(s.pair_samples.len(), 1);
    assert_eq!(s.pair_samples[0].pair.dst, vm(122, 1));
}

#[test]
fn truncated_and_broken_datagrams_are_refused_whole() {
    let f = frame(vm(120, 1), vm(122, 1), None);
    let bytes = datagram(
        120,
        9,
        vec![
            flow(1, 1, UPLINK, 64, vec![header_of(&f)]),
            flow(1, 1, UPLINK, 64, vec![header_of(&f)]),
        ],
    );
    let topology = reference();
    // The header is 28 bytes for an IPv4 agent, and it is refused unless 8 bytes at least
    // follow for each of the 2 samples it announces.
    for len in 0..bytes.len() {
        match classify_datagram(&bytes[..len], from(), &topology) {
            Err(CollectError::Header { .. }) => assert!(len < 28 + 16, "cut at {len}"),
            Err(CollectError::Body {
                agent: a,
                sequence_number,
                ..
            }) => {
                assert!(len >= 28 + 16, "cut at {len}");
                assert_eq!((a, sequence_number), (agent(120), 9));
            }
            Ok(s) => panic!("a datagram cut at {len} of {} was read: {s:?}", bytes.len()),
        }
    }
    // A broken record in the second sample loses the first one too.
    let mut broken = bytes.clone();
    let last_record_len_at = broken.len() - 128 - 16 - 4;
    broken[last_record_len_at..last_record_len_at + 4].copy_from_slice(&7u32.to_be_bytes());
    assert!(matches!(
        classify_datagram(&broken, from(), &topology),
        Err(CollectError::Body { .. })
    ));
    // Another sFlow version.
    let mut v4 = bytes;
    v4[3] = 4;
    let e = classify_datagram(&v4, from(), &topology).unwrap_err();
    assert_eq!(
        e.to_string(),
        "datagram from 127.0.0.1:40000 is not sFlow v5: sFlow datagram version 4 is not 5"
    );
}

#[test]
fn sequence_numbers_count_lost_duplicates_and_resets() {
    let mut a = AgentState::default();
    for seq in [1, 2, 5, 5, 6] {
        a.observe(0, seq);
    }
    assert_eq!((a.datagrams, a.lost, a.duplicates, a.resets), (5, 2, 1, 0));
    // Sub-agents have their own sequences.
    a.observe(1, 100);
    a.observe(1, 103);
    assert_eq!(a.lost, 4);
    // The agent restarts: the count restarts from its new numbers.
    a.observe(0, 1);
    a.observe(0, 2);
    assert_eq!((a.lost, a.resets), (4, 1));
    // From 2, u32::MAX - 1 is 4 behind in wrapping arithmetic: another reset. From there the
    // sequence number wraps without a loss until 1 is skipped.
    a.observe(0, u32::MAX - 1);
    a.observe(0, u32::MAX);
    a.observe(0, 0);
    a.observe(0, 2);
    assert_eq!((a.lost, a.resets), (5, 2));
    assert_eq!(a.datagrams, 13);

    let mut b = AgentState::default();
    for sub in 0..MAX_SUB_AGENTS_PER_AGENT as u32 + 2 {
        b.observe(sub, 1);
    }
    assert_eq!(b.untracked_sub_agents, 2);
    assert_eq!(b.last.len(), MAX_SUB_AGENTS_PER_AGENT);
}

#[test]
fn the_counter_table_keeps_the_latest_per_interface_within_a_limit() {
    let table = CounterTable::new();
    let c = |if_index, if_in_octets| IfCounters {
        if_index,
        if_in_octets,
        ..IfCounters::default()
    };
    assert_eq!(
        table.update(agent(120), "h120", &[c(1, 10), c(2, 20)], 5),
        0
    );
    assert_eq!(table.update(agent(120), "h120", &[c(1, 11)], 6), 0);
    let e = table.get(agent(120), 1).unwrap();
    assert_eq!((e.counters.if_in_octets, e.received_at_ms), (11, 6));
    assert_eq!(table.get(agent(121), 1), None);
    let many: Vec<_> = (0..MAX_INTERFACES_PER_AGENT as u32 + 10)
        .map(|i| c(i, 0))
        .collect();
    // Interfaces 1 and 2 exist; of the others, room is left for the limit less 2.
    assert_eq!(table.update(agent(121), "h121", &many, 7), 10);
    assert_eq!(table.update(agent(120), "h120", &many, 7), 10);
    assert_eq!(table.snapshot().len(), 2 * MAX_INTERFACES_PER_AGENT);
    assert_eq!(table.get(agent(120), 1).unwrap().counters.if_in_octets, 0);
}

/// Runs datagrams through `handle_datagram` as the receive loop does.
fn handle_all(
    datagrams: &[Vec<u8>],
    sink: &mpsc::Sender<CollectedSamples>,
    stats: &CollectorStats,
    counters: &CounterTable,
) -> Result<(), CollectorError> {
    let topology = reference();
    datagrams
        .iter()
        .try_for_each(|d| handle_datagram(d, from(), &topology, sink, stats, counters))
}

#[test]
fn statistics_count_everything_that_was_dropped() {
    let f = frame(vm(120, 1), vm(122, 1), None);
    let back = frame(vm(122, 1), vm(120, 1), None);
    let sample = || flow(1, 1, UPLINK, 64, vec![header_of(&f)]);
    let counters_sample = SampleRepr::Counters(CountersSampleRepr {
        expanded: false,
        sequence_number: 1,
        source: DataSource { kind: 0, index: 1 },
        records: vec![CounterRecordRepr::Interface(IfCounters {
            if_index: 1,
            if_in_octets: 1234,
            ..IfCounters::default()
        })],
    });
    let mut truncated = datagram(120, 4, vec![sample()]);
    truncated.truncate(truncated.len() - 4);
    let datagrams = [
        datagram(120, 1, vec![sample(), sample(), counters_sample.clone()]),
        datagram(120, 2, vec![sample()]),
        // 3 is lost; 4 arrives cut short: malformed, but not lost.
        truncated,
        datagram(122, 1, vec![flow(1, UPLINK, 1, 64, vec![header_of(&f)])]),
        datagram(120, 5, vec![sample()]),
        datagram(120, 7, vec![flow(1, UPLINK, 1, 64, vec![header_of(&back)])]),
        datagram_bytes(
            Address::Ipv4(Ipv4Addr::new(192, 0, 2, 9)),
            1,
            vec![sample(), counters_sample],
        ),
        b"not sflow".to_vec(),
    ];
    let (sink, mut consumer) = mpsc::channel(2);
    let stats = CollectorStats::new();
    let table = CounterTable::new();
    handle_all(&datagrams, &sink, &stats, &table).unwrap();

    let snapshot = stats.snapshot();
    assert_eq!(
        snapshot.bytes,
        datagrams.iter().map(|d| d.len() as u64).sum::<u64>()
    );
    let batches: Vec<_> = std::iter::from_fn(|| consumer.try_recv().ok()).collect();
    assert_eq!(
        batches.iter().map(|b| b.samples.len()).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert_eq!(batches[0].agent, agent(120));
    let json = serde_json::to_value(&snapshot).unwrap();
    insta::assert_json_snapshot!("collector_stats", json);
    assert_eq!(table.snapshot().len(), 1);
    assert_eq!(
        table.get(agent(120), 1).unwrap().counters.if_in_octets,
        1234
    );

    // The consumer is gone: the collector says so.
    drop(consumer);
    assert!(matches!(
        handle_all(&datagrams[..1], &sink, &stats, &table),
        Err(CollectorError::SinkClosed)
    ));
}

#[tokio::test]
async fn collects_over_a_loopback_socket_and_stops_on_shutdown() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let topology = Arc::new(reference());
    let (sink, mut consumer) = mpsc::channel(16);
    let stats = Arc::new(CollectorStats::new());
    let counters = Arc::new(CounterTable::new());
    let (stop, shutdown) = watch::channel(false);
    let collector = tokio::spawn(run_collector(
        socket,
        topology.clone(),
        sink,
        stats.clone(),
        counters,
        shutdown,
    ));

    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let f = frame(vm(123, 1), vm(122, 1), None);
    for seq in 1..=5u32 {
        let samples = (0..seq)
            .map(|_| flow(1, 1, UPLINK, 100, vec![header_of(&f)]))
            .collect();
        sender
            .send_to(&datagram(123, seq, samples), address)
            .await
            .unwrap();
    }
    sender.send_to(&[0; 3], address).await.unwrap();

    let mut window = WindowSamples::new();
    for _ in 1..=5 {
        let batch = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
            .await
            .expect("no batch within 10 s")
            .expect("the collector stopped");
        assert_eq!(batch.server, topology.server_id("h123").unwrap());
        assert!(batch.received_at_ms > 0);
        batch.record_into(&mut window).unwrap();
    }
    // 15 samples of 246-byte frames (FCS included: 242 bytes as a switch counts) at 1 in 100.
    let estimate = window.get(VmPair::new(vm(123, 1), vm(122, 1)));
    assert_eq!(
        (estimate.samples, estimate.packets, estimate.bytes),
        (15, 1500, 15 * 242 * 100)
    );
    assert_eq!(window.len(), 1);
    // The malformed datagram was sent last; wait (bounded) until it is counted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.snapshot().datagrams < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "datagram 6 not counted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s = stats.snapshot();
    assert_eq!((s.pair_samples, s.malformed_datagrams), (15, 1));
    assert_eq!(s.agents[0].datagrams_lost, 0);

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), collector)
        .await
        .expect("the collector did not stop")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_slow_consumer_costs_counted_drops_not_a_blocked_socket() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let (sink, mut consumer) = mpsc::channel(1);
    let stats = Arc::new(CollectorStats::new());
    let (stop, shutdown) = watch::channel(false);
    let collector = tokio::spawn(run_collector(
        socket,
        Arc::new(reference()),
        sink,
        stats.clone(),
        Arc::new(CounterTable::new()),
        shutdown,
    ));
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let f = frame(vm(120, 3), vm(121, 1), None);
    for seq in 1..=4u32 {
        let d = datagram(120, seq, vec![flow(3, 3, UPLINK, 2, vec![header_of(&f)])]);
        sender.send_to(&d, address).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.snapshot().datagrams < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "datagrams not counted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s = stats.snapshot();
    assert_eq!((s.queue_full_batches, s.queue_full_samples), (3, 3));
    assert_eq!(consumer.recv().await.unwrap().samples.len(), 1);
    // The sender of the shutdown signal going away stops the collector too.
    drop(stop);
    tokio::time::timeout(Duration::from_secs(10), collector)
        .await
        .expect("the collector did not stop")
        .unwrap()
        .unwrap();
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let topology = reference();
        let _ = classify_datagram(&bytes, from(), &topology);
    }

    /// Valid datagrams with some bytes overwritten: classified or refused, never a panic, and
    /// a datagram that is read counts every flow sample once, as a pair sample or a skip.
    #[test]
    fn corrupted_datagrams_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let topology = reference();
        let f = frame(vm(120, 1), vm(122, 2), None);
        let mut bytes = datagram(120, 3, vec![
            flow(1, 1, UPLINK, 64, vec![header_of(&f)]),
            flow(2, 1, 2, 64, vec![header_of(&f)]),
        ]);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok(s) = classify_datagram(&bytes, from(), &topology) {
            let flow_skips: u64 = s.skipped.iter()
                .filter(|(r, _)| !matches!(r, SkipReason::UnknownFlowRecord
                    | SkipReason::UnknownCounterRecord | SkipReason::UnknownSampleFormat))
                .map(|(_, n)| n)
                .sum();
            prop_assert_eq!(s.pair_samples.len() as u64 + flow_skips, s.flow_samples);
        }
    }
}
