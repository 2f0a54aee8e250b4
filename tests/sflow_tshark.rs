//! tshark, an independent sFlow decoder, must read the datagrams vmdep's encoder writes into the
//! same fields. The datagrams (flow samples with Ethernet/IPv4/TCP headers built by `wire`,
//! expanded flow samples, counter samples with generic interface counters) go into a pcap file as
//! UDP/6343 packets on 127.0.0.1; tshark decodes it and every field is compared.
//!
//! Needs the Debian package `tshark`; the test fails (does not skip) without it.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use vmdep::sflow::{
    header_protocol, Address, CounterRecordRepr, CountersSampleRepr, DataSource, DatagramRepr,
    ExtendedSwitch, FlowRecordRepr, FlowSampleRepr, IfCounters, Interface, SampleRepr,
    SampledHeaderRepr, SampledIpv4,
};
use vmdep::wire::{EthernetAddress, FrameRepr, TcpFlags, TcpRepr, TransportRepr, VlanTag};

mod support;

use support::tshark::{sflow_pcap, tshark_fields};

fn mac(last: u8) -> EthernetAddress {
    EthernetAddress([0x02, 0, 0, 0, 0, last])
}

/// An Ethernet/IPv4/TCP frame between two VMs.
fn vm_frame(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    vlan: Option<VlanTag>,
    payload: &[u8],
) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq_number: 1000,
        ack_number: 2000,
        flags: TcpFlags::ACK | TcpFlags::PSH,
        window_len: 4096,
        urgent_at: 0,
    };
    FrameRepr::new(
        mac(1),
        mac(2),
        vlan,
        src,
        dst,
        TransportRepr::Tcp(tcp),
        payload,
    )
    .unwrap()
    .to_vec()
    .unwrap()
}

/// A raw-header record as an agent takes it: the first `max` bytes, the 4-byte FCS stripped.
fn header_record(frame: &[u8], max: usize) -> FlowRecordRepr {
    FlowRecordRepr::SampledHeader(SampledHeaderRepr {
        protocol: header_protocol::ETHERNET,
        frame_length: frame.len() as u32 + 4,
        stripped: 4,
        header: frame[..frame.len().min(max)].to_vec(),
    })
}

fn if_counters(index: u32) -> IfCounters {
    IfCounters {
        if_index: index,
        if_type: 6,
        if_speed: 10_000_000_000,
        if_direction: 1,
        if_status: 3,
        if_in_octets: 5_000_000_000 + u64::from(index),
        if_in_ucast_pkts: 1001,
        if_in_multicast_pkts: 1002,
        if_in_broadcast_pkts: 1003,
        if_in_discards: 1004,
        if_in_errors: 1005,
        if_in_unknown_protos: 1006,
        if_out_octets: 7_000_000_000 + u64::from(index),
        if_out_ucast_pkts: 2001,
        if_out_multicast_pkts: 2002,
        if_out_broadcast_pkts: 2003,
        if_out_discards: 2004,
        if_out_errors: 2005,
        if_promiscuous_mode: 1,
    }
}

fn datagrams() -> Vec<DatagramRepr> {
    let agent = Address::Ipv4(Ipv4Addr::new(192, 0, 2, 10));
    let (a, b, c) = (
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
        Ipv4Addr::new(10, 0, 1, 3),
    );
    let short = vm_frame(a, b, 40001, 80, None, b"GET / HTTP/1.1\r\n\r\n");
    let long = vm_frame(b, c, 443, 50123, None, &[0x17; 400]);
    let tagged = vm_frame(
        c,
        a,
        5432,
        41000,
        Some(VlanTag {
            pcp: 5,
            dei: false,
            vid: 42,
        }),
        &[0x33; 60],
    );
    vec![
        DatagramRepr {
            agent,
            sub_agent_id: 3,
            sequence_number: 101,
            uptime_ms: 360_000,
            samples: vec![
                SampleRepr::Flow(FlowSampleRepr {
                    expanded: false,
                    sequence_number: 11,
                    source: DataSource { kind: 0, index: 7 },
                    sampling_rate: 256,
                    sample_pool: 25_600,
                    drops: 0,
                    input: Interface::if_index(7),
                    output: Interface::if_index(9),
                    records: vec![
                        header_record(&short, 128),
                        FlowRecordRepr::ExtendedSwitch(ExtendedSwitch {
                            src_vlan: 10,
                            src_priority: 0,
                            dst_vlan: 20,
                            dst_priority: 6,
                        }),
                    ],
                }),
                SampleRepr::Flow(FlowSampleRepr {
                    expanded: false,
                    sequence_number: 12,
                    source: DataSource { kind: 0, index: 7 },
                    sampling_rate: 256,
                    sample_pool: 25_856,
                    drops: 1,
                    input: Interface::if_index(9),
                    output: Interface::if_index(7),
                    records: vec![header_record(&long, 128)],
                }),
            ],
        },
        DatagramRepr {
            agent,
            sub_agent_id: 3,
            sequence_number: 102,
            uptime_ms: 361_000,
            samples: vec![SampleRepr::Flow(FlowSampleRepr {
                expanded: true,
                sequence_number: 13,
                source: DataSource {
                    kind: 0,
                    index: 70_000_000,
                },
                sampling_rate: 512,
                sample_pool: 90_000,
                drops: 2,
                input: Interface::if_index(70_000_001),
                output: Interface::if_index(70_000_002),
                records: vec![
                    header_record(&tagged, 128),
                    FlowRecordRepr::SampledIpv4(SampledIpv4 {
                        length: 100,
                        protocol: 6,
                        src_ip: c,
                        dst_ip: a,
                        src_port: 5432,
                        dst_port: 41000,
                        tcp_flags: 0x18,
                        tos: 0,
                    }),
                ],
            })],
        },
        DatagramRepr {
            agent,
            sub_agent_id: 3,
            sequence_number: 103,
            uptime_ms: 362_000,
            samples: vec![
                SampleRepr::Counters(CountersSampleRepr {
                    expanded: false,
                    sequence_number: 21,
                    source: DataSource { kind: 0, index: 7 },
                    records: vec![CounterRecordRepr::Interface(if_counters(7))],
                }),
                SampleRepr::Counters(CountersSampleRepr {
                    expanded: true,
                    sequence_number: 22,
                    source: DataSource {
                        kind: 0,
                        index: 70_000_001,
                    },
                    records: vec![CounterRecordRepr::Interface(if_counters(70_000_001))],
                }),
            ],
        },
    ]
}

/// What tshark must report for each packet, field by field; a field a packet does not list must
/// be absent from it. Values of repeated fields are in order, comma-separated; the first `ip.*`
/// value is the 127.0.0.1 wrapper, the others are the sampled headers'.
fn expected() -> Vec<Vec<(&'static str, &'static str)>> {
    let header = [
        ("sflow_245.version", "5"),
        ("sflow_245.agent", "192.0.2.10"),
        ("sflow_245.sub_agent_id", "3"),
        ("udp.checksum.status", "1"), // 1: Good
    ];
    let mut packets = vec![
        vec![
            ("sflow_245.sequence_number", "101"),
            ("sflow_245.sysuptime", "360000"),
            ("sflow_245.numsamples", "2"),
            ("sflow_245.sampletype", "1,1"),
            ("sflow.flow_sample.sequence_number", "11,12"),
            ("sflow.flow_sample.source_id_class", "0,0"),
            ("sflow.flow_sample.index", "7,7"),
            ("sflow.flow_sample.sampling_rate", "256,256"),
            ("sflow.flow_sample.sample_pool", "25600,25856"),
            ("sflow.flow_sample.dropped_packets", "0,1"),
            ("sflow.flow_sample.input_interface", "7,9"),
            ("sflow.flow_sample.output_interface_format", "0,0"),
            ("sflow.flow_sample.output_interface_value", "9,7"),
            ("sflow_245.header_protocol", "1,1"),
            // 14 + 20 + 20 + 18 bytes of frame (+4 FCS); 14 + 20 + 20 + 400 cut to 128.
            ("sflow_245.header.frame_length", "76,458"),
            ("sflow_245.header.payload_stripped", "4,4"),
            ("sflow_245.header.sampled_header_length", "72,128"),
            ("sflow_245.vlan.in", "10"),
            ("sflow_245.pri.in", "0"),
            ("sflow_245.vlan.out", "20"),
            ("sflow_245.pri.out", "6"),
            ("ip.src", "127.0.0.1,10.0.0.1,10.0.0.2"),
            ("ip.dst", "127.0.0.1,10.0.0.2,10.0.1.3"),
            ("ip.checksum.status", "1,1,1"),
            ("tcp.srcport", "40001,443"),
            ("tcp.dstport", "80,50123"),
            ("tcp.flags", "0x0018,0x0018"),
            // The second header is cut short, so its TCP checksum cannot be checked (2).
            ("tcp.checksum.status", "1,2"),
        ],
        vec![
            ("sflow_245.sequence_number", "102"),
            ("sflow_245.sysuptime", "361000"),
            ("sflow_245.numsamples", "1"),
            ("sflow_245.sampletype", "3"),
            ("sflow.flow_sample.sequence_number", "13"),
            ("sflow.flow_sample.source_id_type", "0"),
            ("sflow.flow_sample.source_id_index", "70000000"),
            ("sflow.flow_sample.sampling_rate", "512"),
            ("sflow.flow_sample.sample_pool", "90000"),
            ("sflow.flow_sample.dropped_packets", "2"),
            ("sflow.flow_sample.input_interface_format", "0"),
            ("sflow.flow_sample.input_interface_value", "70000001"),
            ("sflow.flow_sample.output_interface_value", "70000002"),
            ("sflow_245.header_protocol", "1"),
            ("sflow_245.header.frame_length", "122"),
            ("sflow_245.header.payload_stripped", "4"),
            ("sflow_245.header.sampled_header_length", "118"),
            ("vlan.id", "42"),
            ("vlan.priority", "5"),
            ("ip.src", "127.0.0.1,10.0.1.3"),
            ("ip.dst", "127.0.0.1,10.0.0.1"),
            ("ip.checksum.status", "1,1"),
            ("tcp.srcport", "5432"),
            ("tcp.dstport", "41000"),
            ("tcp.flags", "0x0018"),
            ("tcp.checksum.status", "1"),
            ("sflow_245.ip.length", "100"),
            ("sflow.ip_protocol", "6"),
            ("sflow_245.ipv4_src", "10.0.1.3"),
            ("sflow_245.ipv4_dst", "10.0.0.1"),
            ("sflow_245.ip.source_port", "5432"),
            ("sflow.ip.destination_port", "41000"),
        ],
        vec![
            ("sflow_245.sequence_number", "103"),
            ("sflow_245.sysuptime", "362000"),
            ("sflow_245.numsamples", "2"),
            ("sflow_245.sampletype", "2,4"),
            ("sflow.counters_sample.sequence_number", "21,22"),
            ("sflow.counters_sample.source_id_type", "0,0"),
            ("sflow.counters_sample.source_id_index", "7,70000001"),
            ("sflow.counters_sample.counters_records", "1,1"),
            ("sflow_245.ifindex", "7,70000001"),
            ("sflow_245.iftype", "6,6"),
            ("sflow_245.ifspeed", "10000000000,10000000000"),
            ("sflow_245.ifdirection", "1,1"),
            ("sflow_245.ifadmin_status", "1,1"),
            ("sflow_245.ifoper_status", "1,1"),
            ("sflow_245.ifinoct", "5000000007,5070000001"),
            ("sflow_245.ifinpkt", "1001,1001"),
            ("sflow_245.ifinmcast", "1002,1002"),
            ("sflow_245.ifinbcast", "1003,1003"),
            ("sflow_245.ifindisc", "1004,1004"),
            ("sflow_245.ifinerr", "1005,1005"),
            ("sflow_245.ifinunk", "1006,1006"),
            ("sflow_245.ifoutoct", "7000000007,7070000001"),
            ("sflow_245.ifoutpkt", "2001,2001"),
            ("sflow_245.ifoutmcast", "2002,2002"),
            ("sflow_245.ifoutbcast", "2003,2003"),
            ("sflow_245.ifoutdisc", "2004,2004"),
            ("sflow_245.ifouterr", "2005,2005"),
            ("sflow_245.ifpromisc", "1,1"),
            ("ip.src", "127.0.0.1"),
            ("ip.dst", "127.0.0.1"),
            ("ip.checksum.status", "1"),
        ],
    ];
    for p in &mut packets {
        p.extend(header);
    }
    packets
}

#[test]
fn tshark_decodes_what_the_encoder_writes() {
    let reprs = datagrams();
    let encoded: Vec<Vec<u8>> = reprs.iter().map(|d| d.to_bytes().unwrap()).collect();
    // Our own decoder agrees with the encoder before tshark is asked.
    for (bytes, repr) in encoded.iter().zip(&reprs) {
        assert_eq!(&DatagramRepr::parse(bytes).unwrap(), repr);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sflow.pcap");
    let from = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40000);
    std::fs::write(&file, sflow_pcap(from, &encoded)).unwrap();

    let expected = expected();
    let mut fields: Vec<&str> = expected.iter().flatten().map(|(f, _)| *f).collect();
    fields.sort_unstable();
    fields.dedup();
    let decoded: Vec<BTreeMap<&str, String>> = tshark_fields(&file, &fields)
        .into_iter()
        .map(|values| fields.iter().copied().zip(values).collect())
        .collect();
    assert_eq!(
        decoded.len(),
        expected.len(),
        "tshark read {} packets",
        decoded.len()
    );
    let mut mismatches = Vec::new();
    for (i, (got, want)) in decoded.iter().zip(&expected).enumerate() {
        let want: BTreeMap<&str, &str> = want.iter().copied().collect();
        for field in &fields {
            let w = want.get(field).copied().unwrap_or("");
            if got[*field] != w {
                mismatches.push(format!(
                    "packet {}: {field}: tshark says {:?}, expected {w:?}",
                    i + 1,
                    got[*field]
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "tshark disagrees:\n{}",
        mismatches.join("\n")
    );
}
