//! Decoder tests against datagrams written out word by word from the specification, error
//! cases, and property tests (round trip; arbitrary and corrupted bytes never panic).

use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Big-endian words, as the XDR layouts in sflow_version_5.txt list them.
fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// A datagram from agent 2001:db8::1 with: a compact flow sample carrying a 6-byte raw header
/// (padded to 8), an extended switch record and an unknown (enterprise 4300) record; an unknown
/// sample; and an expanded counters sample with generic interface counters.
fn spec_datagram() -> Vec<u8> {
    let mut d = words(&[5, 2]);
    d.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets());
    d.extend(words(&[7, 1000, 123_456, 3]));
    // Flow sample (0,1): 9 words of fields plus records.
    let header_record = [
        &words(&[1, 24, 1, 20, 4, 6])[..],
        &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0, 0],
    ]
    .concat();
    let switch_record = words(&[1001, 16, 10, 3, 20, 5]);
    let unknown_record = words(&[4300 << 12 | 7, 4, 0xdead_beef]);
    let records = [header_record, switch_record, unknown_record].concat();
    let flow_fields = words(&[
        42,             // sequence_number
        (1 << 24) | 77, // source_id: VLAN 77
        256,            // sampling_rate
        10_000,         // sample_pool
        2,              // drops
        5,              // input ifIndex 5
        (2 << 30) | 3,  // output: 3 interfaces
        3,              // records
    ]);
    d.extend(words(&[1, (flow_fields.len() + records.len()) as u32]));
    d.extend(flow_fields);
    d.extend(records);
    // Unknown sample (enterprise 9, format 9), 3 bytes padded to 4.
    d.extend(words(&[9 << 12 | 9, 3]));
    d.extend_from_slice(&[1, 2, 3, 0]);
    // Expanded counters sample (0,4) with if_counters (0,1), 88 bytes.
    let mut counters = words(&[4, 0]);
    let mut ifc = words(&[1000, 6]);
    ifc.extend(10_000_000_000u64.to_be_bytes());
    ifc.extend(words(&[1, 3]));
    ifc.extend(123_456_789_012u64.to_be_bytes());
    ifc.extend(words(&[1, 2, 3, 4, 5, 6]));
    ifc.extend(987_654_321u64.to_be_bytes());
    ifc.extend(words(&[7, 8, 9, 10, 11, 0]));
    assert_eq!(ifc.len(), 88);
    counters.extend(words(&[1, 88]));
    counters.extend(ifc);
    let fields = words(&[99, 0, 1000, 1]); // sequence, source type 0, index 1000, 1 record
    d.extend(words(&[4, (fields.len() + counters.len() - 8) as u32]));
    d.extend(fields);
    d.extend(&counters[8..]);
    d
}

#[test]
fn decodes_a_datagram_written_from_the_spec() {
    let bytes = spec_datagram();
    let dg = Datagram::parse(&bytes).unwrap();
    assert_eq!(
        dg.agent,
        Address::Ipv6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
    );
    assert_eq!(
        (
            dg.sub_agent_id,
            dg.sequence_number,
            dg.uptime_ms,
            dg.sample_count
        ),
        (7, 1000, 123_456, 3)
    );
    let samples: Vec<_> = dg.samples().collect::<Result<_>>().unwrap();
    assert_eq!(samples.len(), 3);

    let Sample::Flow(f) = samples[0] else {
        panic!("not a flow sample: {:?}", samples[0])
    };
    assert!(!f.expanded);
    assert_eq!(f.sequence_number, 42);
    assert_eq!(f.source, DataSource { kind: 1, index: 77 });
    assert_eq!((f.sampling_rate, f.sample_pool, f.drops), (256, 10_000, 2));
    assert_eq!(f.input, Interface::if_index(5));
    assert_eq!(
        f.output,
        Interface {
            format: 2,
            value: 3
        }
    );
    let records: Vec<_> = f.records().collect::<Result<_>>().unwrap();
    assert_eq!(
        records,
        vec![
            FlowRecord::SampledHeader(SampledHeader {
                protocol: header_protocol::ETHERNET,
                frame_length: 20,
                stripped: 4,
                header: &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff][..],
            }),
            FlowRecord::ExtendedSwitch(ExtendedSwitch {
                src_vlan: 10,
                src_priority: 3,
                dst_vlan: 20,
                dst_priority: 5
            }),
            FlowRecord::Unknown {
                format: DataFormat::new(4300, 7).unwrap(),
                data: &[0xde, 0xad, 0xbe, 0xef][..]
            },
        ]
    );

    assert_eq!(
        samples[1],
        Sample::Unknown {
            format: DataFormat::new(9, 9).unwrap(),
            data: &[1, 2, 3][..]
        }
    );

    let Sample::Counters(c) = samples[2] else {
        panic!("not a counters sample: {:?}", samples[2])
    };
    assert!(c.expanded);
    assert_eq!(
        (c.sequence_number, c.source),
        (
            99,
            DataSource {
                kind: 0,
                index: 1000
            }
        )
    );
    let records: Vec<_> = c.records().collect::<Result<_>>().unwrap();
    let [CounterRecord::Interface(ifc)] = records[..] else {
        panic!("{records:?}")
    };
    assert_eq!(
        (ifc.if_index, ifc.if_type, ifc.if_speed),
        (1000, 6, 10_000_000_000)
    );
    assert_eq!(
        (ifc.if_direction, ifc.if_status, ifc.if_in_octets),
        (1, 3, 123_456_789_012)
    );
    assert_eq!(ifc.if_in_unknown_protos, 6);
    assert_eq!(
        (ifc.if_out_octets, ifc.if_out_ucast_pkts, ifc.if_out_errors),
        (987_654_321, 7, 11)
    );

    // The encoder writes the same bytes for what the decoder read.
    assert_eq!(
        DatagramRepr::parse(&bytes).unwrap().to_bytes().unwrap(),
        bytes
    );
}

#[test]
fn every_cut_short_datagram_is_an_error() {
    let bytes = spec_datagram();
    for len in 0..bytes.len() {
        assert!(
            DatagramRepr::parse(&bytes[..len]).is_err(),
            "prefix of {len} bytes decoded"
        );
    }
}

#[test]
fn trailing_bytes_and_bad_lengths_are_malformed() {
    let mut bytes = spec_datagram();
    bytes.extend([0; 4]);
    assert_eq!(
        DatagramRepr::parse(&bytes).unwrap_err(),
        SflowError::Malformed("bytes after the last sample")
    );

    // if_counters announced as 84 bytes: still inside the sample, but not the structure's size.
    let mut bytes = spec_datagram();
    let at = bytes.len() - 88 - 4;
    bytes[at..at + 4].copy_from_slice(&84u32.to_be_bytes());
    assert!(DatagramRepr::parse(&bytes).is_err());
}

#[test]
fn other_versions_and_address_types_are_refused() {
    let mut bytes = spec_datagram();
    bytes[3] = 4;
    assert_eq!(
        Datagram::parse(&bytes).unwrap_err(),
        SflowError::UnsupportedVersion(4)
    );
    let mut bytes = spec_datagram();
    bytes[7] = 3;
    assert!(matches!(
        Datagram::parse(&bytes),
        Err(SflowError::Malformed(_))
    ));
}

#[test]
fn an_absurd_sample_count_fails_before_iterating() {
    let bytes = words(&[5, 1, 0x7f00_0001, 0, 1, 2, u32::MAX]);
    assert_eq!(
        Datagram::parse(&bytes).unwrap_err(),
        SflowError::Truncated("samples")
    );
}

#[test]
fn iteration_stops_after_an_error() {
    let bytes = spec_datagram();
    // Cut inside the first sample (the header takes 40 bytes): one error, then nothing.
    let dg = Datagram::parse(&bytes[..70]).unwrap();
    let items: Vec<_> = dg.samples().collect();
    assert_eq!(items.len(), 1);
    assert!(items[0].is_err());
}

#[test]
fn values_the_compact_forms_cannot_carry_are_unencodable() {
    let sample = |source, input| DatagramRepr {
        agent: Address::Unknown,
        sub_agent_id: 0,
        sequence_number: 0,
        uptime_ms: 0,
        samples: vec![SampleRepr::Flow(FlowSampleRepr {
            expanded: false,
            sequence_number: 0,
            source,
            sampling_rate: 1,
            sample_pool: 1,
            drops: 0,
            input,
            output: Interface::if_index(0),
            records: vec![],
        })],
    };
    let ok = DataSource { kind: 0, index: 1 };
    assert!(matches!(
        sample(
            DataSource {
                kind: 0,
                index: 1 << 24
            },
            Interface::if_index(1)
        )
        .to_bytes(),
        Err(SflowError::Unencodable(_))
    ));
    assert!(matches!(
        sample(ok, Interface::if_index(1 << 30)).to_bytes(),
        Err(SflowError::Unencodable(_))
    ));
    assert!(sample(ok, Interface::if_index((1 << 30) - 1))
        .to_bytes()
        .is_ok());
    let mut unknown = sample(ok, Interface::if_index(1));
    unknown.samples = vec![SampleRepr::Unknown {
        format: DataFormat::FLOW_SAMPLE,
        data: vec![],
    }];
    assert!(matches!(
        unknown.to_bytes(),
        Err(SflowError::Unencodable(_))
    ));
}

// ---- property tests ----

fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// Formats outside enterprise 0, so they can never collide with a decoded one.
fn arb_unknown_format() -> impl Strategy<Value = DataFormat> {
    (1u32..1 << 20, 0u32..1 << 12).prop_map(|(e, f)| DataFormat::new(e, f).unwrap())
}

fn arb_address() -> impl Strategy<Value = Address> {
    prop_oneof![
        Just(Address::Unknown),
        any::<[u8; 4]>().prop_map(|a| Address::Ipv4(a.into())),
        any::<[u8; 16]>().prop_map(|a| Address::Ipv6(a.into())),
    ]
}

fn arb_source(expanded: bool) -> BoxedStrategy<DataSource> {
    if expanded {
        any::<(u32, u32)>()
            .prop_map(|(kind, index)| DataSource { kind, index })
            .boxed()
    } else {
        (0u32..256, 0u32..1 << 24)
            .prop_map(|(kind, index)| DataSource { kind, index })
            .boxed()
    }
}

fn arb_interface(expanded: bool) -> BoxedStrategy<Interface> {
    if expanded {
        any::<(u32, u32)>()
            .prop_map(|(format, value)| Interface { format, value })
            .boxed()
    } else {
        (0u32..4, 0u32..1 << 30)
            .prop_map(|(format, value)| Interface { format, value })
            .boxed()
    }
}

fn arb_flow_record() -> impl Strategy<Value = FlowRecordRepr> {
    prop_oneof![
        (any::<(u32, u32, u32)>(), arb_bytes(200)).prop_map(
            |((protocol, frame_length, stripped), header)| {
                FlowRecordRepr::SampledHeader(SampledHeaderRepr {
                    protocol,
                    frame_length,
                    stripped,
                    header,
                })
            }
        ),
        (
            any::<(u32, u32, [u8; 4], [u8; 4])>(),
            any::<(u32, u32, u32, u32)>()
        )
            .prop_map(|((length, protocol, s, d), (sp, dp, flags, tos))| {
                FlowRecordRepr::SampledIpv4(SampledIpv4 {
                    length,
                    protocol,
                    src_ip: Ipv4Addr::from(s),
                    dst_ip: Ipv4Addr::from(d),
                    src_port: sp,
                    dst_port: dp,
                    tcp_flags: flags,
                    tos,
                })
            }),
        any::<(u32, u32, u32, u32)>().prop_map(|(a, b, c, d)| FlowRecordRepr::ExtendedSwitch(
            ExtendedSwitch {
                src_vlan: a,
                src_priority: b,
                dst_vlan: c,
                dst_priority: d,
            }
        )),
        (arb_unknown_format(), arb_bytes(40))
            .prop_map(|(format, data)| FlowRecordRepr::Unknown { format, data }),
    ]
}

fn arb_if_counters() -> impl Strategy<Value = IfCounters> {
    (any::<[u32; 8]>(), any::<[u32; 8]>(), any::<[u64; 3]>()).prop_map(|(a, b, w)| IfCounters {
        if_index: a[0],
        if_type: a[1],
        if_speed: w[0],
        if_direction: a[2],
        if_status: a[3],
        if_in_octets: w[1],
        if_in_ucast_pkts: a[4],
        if_in_multicast_pkts: a[5],
        if_in_broadcast_pkts: a[6],
        if_in_discards: a[7],
        if_in_errors: b[0],
        if_in_unknown_protos: b[1],
        if_out_octets: w[2],
        if_out_ucast_pkts: b[2],
        if_out_multicast_pkts: b[3],
        if_out_broadcast_pkts: b[4],
        if_out_discards: b[5],
        if_out_errors: b[6],
        if_promiscuous_mode: b[7],
    })
}

fn arb_sample() -> impl Strategy<Value = SampleRepr> {
    let flow = any::<bool>().prop_flat_map(|expanded| {
        (
            any::<(u32, u32, u32, u32)>(),
            arb_source(expanded),
            arb_interface(expanded),
            arb_interface(expanded),
            proptest::collection::vec(arb_flow_record(), 0..4),
        )
            .prop_map(
                move |((seq, rate, pool, drops), source, input, output, records)| {
                    SampleRepr::Flow(FlowSampleRepr {
                        expanded,
                        sequence_number: seq,
                        source,
                        sampling_rate: rate,
                        sample_pool: pool,
                        drops,
                        input,
                        output,
                        records,
                    })
                },
            )
    });
    let counter_record = prop_oneof![
        arb_if_counters().prop_map(CounterRecordRepr::Interface),
        (arb_unknown_format(), arb_bytes(40))
            .prop_map(|(format, data)| CounterRecordRepr::Unknown { format, data }),
    ];
    let counters = (
        any::<bool>(),
        any::<u32>(),
        proptest::collection::vec(counter_record, 0..3),
    )
        .prop_flat_map(|(expanded, seq, records)| {
            arb_source(expanded).prop_map(move |source| {
                SampleRepr::Counters(CountersSampleRepr {
                    expanded,
                    sequence_number: seq,
                    source,
                    records: records.clone(),
                })
            })
        });
    prop_oneof![
        3 => flow,
        1 => counters,
        1 => (arb_unknown_format(), arb_bytes(40)).prop_map(|(format, data)| SampleRepr::Unknown { format, data }),
    ]
}

fn arb_datagram() -> impl Strategy<Value = DatagramRepr> {
    (
        arb_address(),
        any::<(u32, u32, u32)>(),
        proptest::collection::vec(arb_sample(), 0..6),
    )
        .prop_map(
            |(agent, (sub_agent_id, sequence_number, uptime_ms), samples)| DatagramRepr {
                agent,
                sub_agent_id,
                sequence_number,
                uptime_ms,
                samples,
            },
        )
}

/// Walks everything the views expose, as a collector would.
fn walk(bytes: &[u8]) {
    let Ok(dg) = Datagram::parse(bytes) else {
        return;
    };
    for sample in dg.samples() {
        match sample {
            Ok(Sample::Flow(f)) => f.records().for_each(drop),
            Ok(Sample::Counters(c)) => c.records().for_each(drop),
            Ok(Sample::Unknown { .. }) | Err(_) => {}
        }
    }
}

proptest! {
    #[test]
    fn emit_then_decode_round_trips(repr in arb_datagram()) {
        let bytes = repr.to_bytes().unwrap();
        prop_assert_eq!(bytes.len() % 4, 0);
        prop_assert_eq!(DatagramRepr::parse(&bytes).unwrap(), repr);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in arb_bytes(600)) {
        walk(&bytes);
        let _ = DatagramRepr::parse(&bytes);
    }

    /// Random bytes rarely get past the version word; corrupting a valid datagram reaches the
    /// sample and record decoders.
    #[test]
    fn corrupted_datagrams_never_panic(
        repr in arb_datagram(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = repr.to_bytes().unwrap();
        if bytes.is_empty() { return Ok(()); }
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        walk(&bytes);
        let _ = DatagramRepr::parse(&bytes);
        let end = cut.index(bytes.len() + 1);
        walk(&bytes[..end]);
    }
}
