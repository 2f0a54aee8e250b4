//! The switch's runtime API and robustness, on the p4c reference programs: what the P4Runtime
//! layer relies on (entry identity, size limits, const defaults, counters, registers, idle
//! timeouts, clone sessions), the refusal of unsupported features at load time, and frames of
//! any shape never panicking.

use proptest::prelude::*;
use serde_json::{json, Value};
use vmdep::switch::dataplane::{IdleTimeout, Replica};
use vmdep::switch::{
    ActionCall, CounterValue, EntryKey, LoadError, MatchValue, Outputs, RuntimeError, Switch,
    TableEntry,
};

mod support;

use support::logs::debug_log_of;

fn reference_json(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/p4c-reference/p4c-out/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

fn reference(name: &str) -> Switch {
    Switch::from_json_str(&reference_json(name)).unwrap()
}

const REFERENCES: [&str; 4] = [
    "ref1_lpm_checksum",
    "ref2_ternary_counters",
    "ref3_register_clone_hash",
    "ref4_parser_range",
];

/// An Ethernet + IPv4 (checksum correct) + UDP frame from 10.0.0.1.
fn udp_frame(dst_ip: [u8; 4], dport: u16) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x08, 0x00];
    let mut ip = vec![
        0x45, 0, 0, 32, 0, 7, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, dst_ip[0], dst_ip[1], dst_ip[2],
        dst_ip[3],
    ];
    let ck = vmdep::switch::hash::csum16(&ip);
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    f.extend(ip);
    f.extend(0x1234u16.to_be_bytes());
    f.extend(dport.to_be_bytes());
    f.extend([0, 12, 0, 0, 1, 2, 3, 4]);
    f
}

fn route(sw: &Switch, value: u128, prefix_len: u32, port: u128) -> TableEntry {
    let p = sw.program();
    let t = p.table_by_name("Ing.routes").unwrap();
    TableEntry {
        key: vec![MatchValue::Lpm { value, prefix_len }],
        priority: 0,
        action: ActionCall {
            action: p.table_action_by_name(t, "Ing.route").unwrap(),
            args: vec![port, 0xa1],
        },
        idle_timeout_ns: None,
    }
}

#[test]
fn entries_are_identified_by_key_and_priority() {
    let mut sw = reference("ref1_lpm_checksum");
    let t = sw.program().table_by_name("Ing.routes").unwrap();
    let e = route(&sw, 0x0a00_0000, 8, 1);
    sw.insert_entry(t, e.clone()).unwrap();
    assert_eq!(
        sw.insert_entry(t, e.clone()),
        Err(RuntimeError::DuplicateEntry("Ing.routes".into()))
    );
    // Same value, other prefix: another entry.
    sw.insert_entry(t, route(&sw, 0x0a00_0000, 16, 2)).unwrap();
    assert_eq!(sw.entries(t).unwrap().len(), 2);
    // The longest prefix is first in match order and wins.
    let mut out = Outputs::new();
    sw.process(0, &udp_frame([10, 0, 0, 9], 1), &mut out);
    assert_eq!(out.iter().map(|(p, _)| p).collect::<Vec<_>>(), vec![2]);

    // Modify keeps the entry, changes its action.
    sw.modify_entry(t, route(&sw, 0x0a00_0000, 16, 7)).unwrap();
    out.clear();
    sw.process(0, &udp_frame([10, 0, 0, 9], 1), &mut out);
    assert_eq!(out.iter().map(|(p, _)| p).collect::<Vec<_>>(), vec![7]);

    let key = EntryKey {
        key: e.key.clone(),
        priority: 0,
    };
    sw.delete_entry(t, &key).unwrap();
    assert_eq!(
        sw.delete_entry(t, &key),
        Err(RuntimeError::NoSuchEntry("Ing.routes".into()))
    );
    assert!(matches!(
        sw.modify_entry(t, route(&sw, 0x0b00_0000, 8, 1)),
        Err(RuntimeError::NoSuchEntry(_))
    ));
}

#[test]
fn bad_entries_are_refused() {
    let mut sw = reference("ref1_lpm_checksum");
    let t = sw.program().table_by_name("Ing.routes").unwrap();
    // Bits beyond the prefix.
    assert!(matches!(
        sw.insert_entry(t, route(&sw, 0x0a01_0000, 8, 1)),
        Err(RuntimeError::InvalidValue { .. })
    ));
    // A port wider than 9 bits.
    assert!(matches!(
        sw.insert_entry(t, route(&sw, 0x0a00_0000, 8, 512)),
        Err(RuntimeError::TooWide { .. })
    ));
    // A priority on an lpm table.
    let mut e = route(&sw, 0x0a00_0000, 8, 1);
    e.priority = 3;
    assert!(matches!(
        sw.insert_entry(t, e),
        Err(RuntimeError::BadPriority { .. })
    ));
    // The wrong match kind.
    let mut e = route(&sw, 0x0a00_0000, 8, 1);
    e.key = vec![MatchValue::Exact(1)];
    assert!(matches!(
        sw.insert_entry(t, e),
        Err(RuntimeError::WrongMatchKind { .. })
    ));
    // An action of another table.
    let mut e = route(&sw, 0x0a00_0000, 8, 1);
    let other = sw.program().table_by_name("tbl_drop").unwrap();
    e.action.action = sw.program().tables[other].actions[0];
    e.action.args.clear();
    assert!(matches!(
        sw.insert_entry(t, e),
        Err(RuntimeError::ActionNotInTable { .. })
    ));
    // An idle timeout on a table without support_timeout.
    let mut e = route(&sw, 0x0a00_0000, 8, 1);
    e.idle_timeout_ns = Some(1);
    assert!(matches!(
        sw.insert_entry(t, e),
        Err(RuntimeError::NoIdleTimeout(_))
    ));
    assert!(sw.entries(t).unwrap().is_empty());
}

#[test]
fn a_full_table_is_resource_exhausted() {
    let mut sw = reference("ref4_parser_range");
    let p = sw.program();
    let t = p.table_by_name("Ing.by_port_range").unwrap();
    let to_port = p.table_action_by_name(t, "Ing.to_port").unwrap();
    let max = p.tables[t].max_size;
    for i in 0..max {
        let e = TableEntry {
            key: vec![
                MatchValue::Exact(i as u128),
                MatchValue::Range { low: 0, high: 10 },
            ],
            priority: 1,
            action: ActionCall {
                action: to_port,
                args: vec![1],
            },
            idle_timeout_ns: None,
        };
        sw.insert_entry(t, e).unwrap();
    }
    let e = TableEntry {
        key: vec![
            MatchValue::Exact(4000),
            MatchValue::Range { low: 0, high: 10 },
        ],
        priority: 1,
        action: ActionCall {
            action: to_port,
            args: vec![1],
        },
        idle_timeout_ns: None,
    };
    assert_eq!(
        sw.insert_entry(t, e.clone()),
        Err(RuntimeError::TableFull {
            table: "Ing.by_port_range".into(),
            max_size: 64
        })
    );
    // Range tables need a priority.
    let mut e0 = e;
    e0.priority = 0;
    assert!(matches!(
        sw.insert_entry(t, e0),
        Err(RuntimeError::BadPriority { .. })
    ));
}

#[test]
fn default_actions_follow_their_constness() {
    let mut sw = reference("ref2_ternary_counters");
    let p = sw.program();
    let acl = p.table_by_name("Ing.acl").unwrap();
    let permit = p.table_action_by_name(acl, "Ing.permit").unwrap();
    assert_eq!(
        sw.set_default_action(
            acl,
            ActionCall {
                action: permit,
                args: vec![1]
            }
        ),
        Err(RuntimeError::ConstDefaultAction("Ing.acl".into()))
    );
    let flows = sw.program().table_by_name("Ing.flows").unwrap();
    let track = sw
        .program()
        .table_action_by_name(flows, "Ing.track")
        .unwrap();
    sw.set_default_action(
        flows,
        ActionCall {
            action: track,
            args: vec![],
        },
    )
    .unwrap();
    assert_eq!(sw.default_action(flows).unwrap().unwrap().action, track);
    sw.reset_default_action(flows).unwrap();
    assert_ne!(sw.default_action(flows).unwrap().unwrap().action, track);
}

#[test]
fn modify_restarts_the_idle_timer_only_when_the_ttl_changes() {
    let mut sw = reference("ref2_ternary_counters");
    let p = sw.program();
    let flows = p.table_by_name("Ing.flows").unwrap();
    let track = p.table_action_by_name(flows, "Ing.track").unwrap();
    let key = vec![
        MatchValue::Exact(0x0a00_0001),
        MatchValue::Exact(0xc000_0207),
    ];
    let with_ttl = |idle_timeout_ns| TableEntry {
        key: key.clone(),
        priority: 0,
        action: ActionCall {
            action: track,
            args: vec![],
        },
        idle_timeout_ns,
    };
    sw.insert_entry(flows, with_ttl(Some(1_000))).unwrap();
    let id = EntryKey {
        key: key.clone(),
        priority: 0,
    };
    let expired = vec![IdleTimeout {
        table: flows,
        key: id.clone(),
    }];
    let mut out = Outputs::new();
    sw.process_at(3, &udp_frame([192, 0, 2, 7], 80), 500, &mut out);
    assert_eq!(sw.idle_timeouts(1_500), expired);

    // The same TTL: the timer keeps running from the notification at 1500.
    sw.modify_entry_at(flows, with_ttl(Some(1_000)), 2_000)
        .unwrap();
    assert_eq!(sw.idle_timeouts(2_500), expired);
    // A new TTL counts from the MODIFY.
    sw.modify_entry_at(flows, with_ttl(Some(3_000)), 2_600)
        .unwrap();
    assert!(sw.idle_timeouts(5_599).is_empty());
    assert_eq!(sw.idle_timeouts(5_600), expired);
    // No TTL, or a TTL of 0 (never expires): no notifications at all.
    sw.modify_entry_at(flows, with_ttl(None), 6_000).unwrap();
    assert!(sw.idle_timeouts(100_000).is_empty());
    sw.modify_entry_at(flows, with_ttl(Some(0)), 100_000)
        .unwrap();
    assert!(sw.idle_timeouts(200_000).is_empty());
    // A TTL again: it counts from this MODIFY, not from the last hit long ago.
    sw.modify_entry_at(flows, with_ttl(Some(1_000)), 300_000)
        .unwrap();
    assert!(sw.idle_timeouts(300_999).is_empty());
    assert_eq!(sw.idle_timeouts(301_000), expired);
    assert_eq!(sw.entry(flows, &id).unwrap().last_hit_ns, 500);
}

#[test]
fn counters_registers_and_idle_timeouts() {
    let mut sw = reference("ref2_ternary_counters");
    let p = sw.program();
    let flows = p.table_by_name("Ing.flows").unwrap();
    let track = p.table_action_by_name(flows, "Ing.track").unwrap();
    let per_port = p.counter_by_name("Ing.per_port").unwrap();
    let key = vec![
        MatchValue::Exact(0x0a00_0001),
        MatchValue::Exact(0xc000_0207),
    ];
    sw.insert_entry(
        flows,
        TableEntry {
            key: key.clone(),
            priority: 0,
            action: ActionCall {
                action: track,
                args: vec![],
            },
            idle_timeout_ns: Some(1_000),
        },
    )
    .unwrap();
    let id = EntryKey { key, priority: 0 };
    let frame = udp_frame([192, 0, 2, 7], 80);
    let mut out = Outputs::new();
    sw.process_at(3, &frame, 500, &mut out);
    let c = sw.read_direct_counter(flows, &id).unwrap();
    assert_eq!(
        c,
        CounterValue {
            packets: 1,
            bytes: frame.len() as u64
        }
    );
    assert_eq!(sw.entry(flows, &id).unwrap().last_hit_ns, 500);
    assert_eq!(sw.read_counter(per_port, 3).unwrap().packets, 1);
    sw.write_direct_counter(flows, &id, CounterValue::default())
        .unwrap();
    assert_eq!(sw.read_direct_counter(flows, &id).unwrap().packets, 0);
    sw.write_counter(per_port, 3, CounterValue::default())
        .unwrap();
    assert_eq!(sw.read_counter(per_port, 3).unwrap().packets, 0);
    assert!(matches!(
        sw.read_counter(per_port, 8),
        Err(RuntimeError::IndexOutOfRange { .. })
    ));
    let acl_hits = sw.program().counter_by_name("Ing.acl_hits").unwrap();
    assert!(matches!(
        sw.read_counter(acl_hits, 0),
        Err(RuntimeError::CounterIsDirect(_))
    ));

    // Idle since the hit at 500: not yet at 1499, reported at 1500, then once per further
    // 1000 ns of idleness counted from each report, however late or often the scans come.
    let expired = vec![IdleTimeout {
        table: flows,
        key: id.clone(),
    }];
    assert!(sw.idle_timeouts(1_499).is_empty());
    assert_eq!(sw.idle_timeouts(1_500), expired);
    assert!(sw.idle_timeouts(1_500).is_empty());
    assert!(sw.idle_timeouts(2_499).is_empty());
    assert_eq!(sw.idle_timeouts(2_500), expired);
    // A late scan reports once (no catch-up burst) and restarts the timer from its own time.
    assert_eq!(sw.idle_timeouts(5_000), expired);
    assert!(sw.idle_timeouts(5_999).is_empty());
    // A hit restarts the timer; the notifications do not touch the time of the last hit.
    sw.process_at(3, &frame, 5_900, &mut out);
    assert!(sw.idle_timeouts(6_899).is_empty());
    assert_eq!(sw.idle_timeouts(6_900), expired);
    assert_eq!(sw.entry(flows, &id).unwrap().last_hit_ns, 5_900);
    // Hit within every period: never reported.
    for t in (7_000..12_000).step_by(500) {
        sw.process_at(3, &frame, t, &mut out);
        assert!(sw.idle_timeouts(t + 999).is_empty(), "at {t}");
    }
    // The entry is still there, with its counter.
    assert_eq!(sw.read_direct_counter(flows, &id).unwrap().packets, 11);

    let mut sw = reference("ref3_register_clone_hash");
    let r = sw.program().register_by_name("Ing.seen_per_port").unwrap();
    sw.write_register(r, 2, 41).unwrap();
    sw.process(2, &udp_frame([10, 0, 0, 2], 7), &mut out);
    assert_eq!(sw.read_register(r, 2).unwrap(), 42);
    assert!(matches!(
        sw.write_register(r, 2, 1 << 32),
        Err(RuntimeError::TooWide { .. })
    ));
    assert!(matches!(
        sw.read_register(r, 8),
        Err(RuntimeError::IndexOutOfRange { .. })
    ));
}

#[test]
fn clone_sessions() {
    let mut sw = reference("ref3_register_clone_hash");
    let mut out = Outputs::new();
    // No session yet: the original goes out, the clone is counted as missing.
    sw.process(0, &udp_frame([10, 0, 0, 2], 9), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(sw.stats().clones_no_session, 1);
    sw.set_clone_session(
        5,
        vec![
            Replica {
                port: 4,
                instance: 0,
            },
            Replica {
                port: 6,
                instance: 1,
            },
        ],
        None,
    )
    .unwrap();
    out.clear();
    sw.process(0, &udp_frame([10, 0, 0, 2], 9), &mut out);
    let mut ports: Vec<u32> = out.iter().map(|(p, _)| p).collect();
    ports.sort();
    assert_eq!(ports, vec![1, 4, 6]);
    // Clones carry the broadcast mark egress sets for instance_type 1.
    for (p, f) in out.iter() {
        assert_eq!(f[..6] == [0xff; 6], p != 1, "port {p}");
    }
    assert!(sw
        .set_clone_session(
            6,
            vec![Replica {
                port: 512,
                instance: 0
            }],
            None
        )
        .is_err());
    assert!(sw
        .set_clone_session(
            6,
            vec![Replica {
                port: 4,
                instance: 0
            }],
            Some(0)
        )
        .is_err());

    // A session with a length limit: its copies leave cut to it, the original whole.
    sw.set_clone_session(
        5,
        vec![Replica {
            port: 4,
            instance: 0,
        }],
        Some(20),
    )
    .unwrap();
    out.clear();
    let frame = udp_frame([10, 0, 0, 2], 9);
    sw.process(0, &frame, &mut out);
    let mut sent: Vec<(u32, Vec<u8>)> = out.iter().map(|(p, f)| (p, f.to_vec())).collect();
    sent.sort();
    assert_eq!(sent.len(), 2);
    let (original, copy) = (&sent[0], &sent[1]);
    assert_eq!((original.0, original.1.len()), (1, frame.len()));
    assert_eq!((copy.0, copy.1.len()), (4, 20));
    // The copy's bytes are the clone's own (the frame as received, with egress's broadcast
    // mark), cut.
    assert_eq!(copy.1[..6], [0xff; 6]);
    assert_eq!(copy.1[6..20], frame[6..20]);
    // A limit longer than the frame changes nothing.
    sw.set_clone_session(
        5,
        vec![Replica {
            port: 4,
            instance: 0,
        }],
        Some(1500),
    )
    .unwrap();
    out.clear();
    sw.process(0, &frame, &mut out);
    assert_eq!(
        out.iter().map(|(_, f)| f.len()).collect::<Vec<_>>(),
        vec![frame.len(); 2]
    );
    assert_eq!(sw.clone_session(5).map(|s| s.max_length), Some(Some(1500)));
    sw.remove_clone_session(5).unwrap();
    assert_eq!(
        sw.remove_clone_session(5),
        Err(RuntimeError::NoSuchCloneSession(5))
    );
}

#[test]
fn truncated_and_bad_frames_are_counted() {
    let mut sw = reference("ref1_lpm_checksum");
    let t = sw.program().table_by_name("Ing.routes").unwrap();
    sw.insert_entry(t, route(&sw, 0, 0, 1)).unwrap();
    let mut out = Outputs::new();
    let good = udp_frame([10, 0, 0, 2], 9);
    sw.process(0, &good, &mut out);
    assert_eq!(out.len(), 1);
    // A frame cut inside the IPv4 header: PacketTooShort, ip invalid, dropped by ingress.
    sw.process(0, &good[..20], &mut out);
    // Shorter than Ethernet.
    sw.process(0, &good[..5], &mut out);
    sw.process(0, &[], &mut out);
    // A bad checksum.
    let mut bad = good.clone();
    bad[24] ^= 1;
    sw.process(0, &bad, &mut out);
    assert_eq!(out.len(), 1);
    let s = sw.stats();
    assert_eq!(s.frames_in, 5);
    assert_eq!(s.frames_out, 1);
    assert_eq!(s.packet_too_short, 3);
    assert_eq!(s.parser_errors, 3);
    assert_eq!(s.checksum_errors, 1);
    assert_eq!(s.dropped_ingress, 4);
}

#[test]
fn the_output_checksum_is_recomputed() {
    let mut sw = reference("ref1_lpm_checksum");
    let t = sw.program().table_by_name("Ing.routes").unwrap();
    sw.insert_entry(t, route(&sw, 0, 0, 1)).unwrap();
    let mut out = Outputs::new();
    sw.process(0, &udp_frame([10, 0, 0, 2], 9), &mut out);
    let (_, f) = out.iter().next().unwrap();
    assert_eq!(f[14 + 8], 63, "ttl decremented");
    assert_eq!(vmdep::switch::hash::csum16(&f[14..34]), 0, "checksum valid");
}

/// A program whose checksums must be computed from field values, not summed from header bytes:
/// its parser writes an IPv4 field (so verification cannot sum the frame's bytes) and its ingress
/// puts a tag before IPv4 (so the update cannot sum the bytes sent, which moved).
const TAGGING_PROGRAM: &str = r#"
#include <core.p4>
#include <v1model.p4>
header ethernet_t { bit<48> dst; bit<48> src; bit<16> etherType; }
header tag_t { bit<16> id; bit<16> etherType; }
header ipv4_t {
    bit<4> version; bit<4> ihl; bit<8> diffserv; bit<16> totalLen; bit<16> identification;
    bit<3> flags; bit<13> fragOffset; bit<8> ttl; bit<8> protocol; bit<16> hdrChecksum;
    bit<32> srcAddr; bit<32> dstAddr;
}
struct headers_t { ethernet_t ethernet; tag_t tag; ipv4_t ipv4; }
struct meta_t { }
parser P(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    state start {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.etherType) { 0x0800: parse_ipv4; default: accept; }
    }
    state parse_ipv4 {
        pkt.extract(hdr.ipv4);
        hdr.ipv4.ttl = hdr.ipv4.ttl;
        transition accept;
    }
}
control V(inout headers_t hdr, inout meta_t meta) {
    apply {
        verify_checksum(hdr.ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.diffserv, hdr.ipv4.totalLen,
              hdr.ipv4.identification, hdr.ipv4.flags, hdr.ipv4.fragOffset, hdr.ipv4.ttl,
              hdr.ipv4.protocol, hdr.ipv4.srcAddr, hdr.ipv4.dstAddr },
            hdr.ipv4.hdrChecksum, HashAlgorithm.csum16);
    }
}
control I(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    apply {
        if (sm.checksum_error == 1) {
            mark_to_drop(sm);
        } else {
            hdr.tag.setValid();
            hdr.tag.id = 7;
            hdr.tag.etherType = hdr.ethernet.etherType;
            hdr.ethernet.etherType = 0x8100;
            hdr.ipv4.ttl = hdr.ipv4.ttl - 2;
            sm.egress_spec = 1;
        }
    }
}
control E(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) { apply { } }
control U(inout headers_t hdr, inout meta_t meta) {
    apply {
        update_checksum(hdr.ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.diffserv, hdr.ipv4.totalLen,
              hdr.ipv4.identification, hdr.ipv4.flags, hdr.ipv4.fragOffset, hdr.ipv4.ttl,
              hdr.ipv4.protocol, hdr.ipv4.srcAddr, hdr.ipv4.dstAddr },
            hdr.ipv4.hdrChecksum, HashAlgorithm.csum16);
    }
}
control D(packet_out pkt, in headers_t hdr) {
    apply { pkt.emit(hdr.ethernet); pkt.emit(hdr.tag); pkt.emit(hdr.ipv4); }
}
V1Switch(P(), V(), I(), E(), U(), D()) main;
"#;

/// The parser extracts only the fields a program names; the others stay in the frame's bytes,
/// and a checksum computed from field values reads them from there first: in verification
/// (with the parser's write) and in the update (without it, the first to need them).
#[test]
fn checksums_from_field_values_see_the_fields_extraction_skipped() {
    let without_parser_write = TAGGING_PROGRAM.replace("hdr.ipv4.ttl = hdr.ipv4.ttl;", "");
    for source in [TAGGING_PROGRAM, &without_parser_write] {
        let out = vmdep::compiler::compile(source, "tagging.p4")
            .unwrap_or_else(|d| panic!("{}", d.render("tagging.p4", source)));
        let mut sw = Switch::from_json_str(&out.bmv2_json).unwrap();
        let ipv4 = sw
            .program()
            .headers
            .iter()
            .find(|h| h.name == "ipv4")
            .unwrap();
        // Named: ttl (written) and hdrChecksum (the target); the checksum's inputs are not.
        let eager: Vec<u32> = ipv4
            .lazy
            .as_ref()
            .unwrap()
            .eager
            .iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(eager, [7, 9]);

        let frame = udp_frame([10, 0, 0, 2], 9);
        let mut out = Outputs::new();
        sw.process(0, &frame, &mut out);
        let (port, sent) = out.iter().next().expect("forwarded: the checksum verified");
        assert_eq!(port, 1);
        let mut expected = frame[..12].to_vec();
        expected.extend([0x81, 0x00, 0, 7, 0x08, 0x00]);
        let mut ip = frame[14..34].to_vec();
        ip[8] = 62;
        ip[10..12].fill(0);
        let ck = vmdep::switch::hash::csum16(&ip);
        ip[10..12].copy_from_slice(&ck.to_be_bytes());
        expected.extend(ip);
        expected.extend(&frame[34..]);
        assert_eq!(sent, &expected[..]);

        // A wrong checksum is still seen as wrong.
        let mut bad = frame.clone();
        bad[24] ^= 1;
        out.clear();
        sw.process(0, &bad, &mut out);
        assert!(out.is_empty());
        assert_eq!(sw.stats().checksum_errors, 1);
    }
}

fn load_modified(name: &str, change: impl FnOnce(&mut Value)) -> Result<Switch, LoadError> {
    let mut v: Value = serde_json::from_str(&reference_json(name)).unwrap();
    change(&mut v);
    Switch::from_json_str(&v.to_string())
}

fn refused_feature(r: Result<Switch, LoadError>) -> String {
    match r {
        Err(LoadError::Unsupported { feature, .. }) => feature,
        Err(e) => panic!("expected an unsupported feature, got {e}"),
        Ok(_) => panic!("expected a refusal"),
    }
}

#[test]
fn unsupported_features_are_refused_by_name() {
    let action0 = |v: &mut Value, op: &str, params: Value| {
        v["actions"][0]["primitives"]
            .as_array_mut()
            .unwrap()
            .push(json!({"op": op, "parameters": params}));
    };
    let f = refused_feature(load_modified("ref1_lpm_checksum", |v| {
        action0(v, "recirculate_preserving_field_list", json!([]))
    }));
    assert_eq!(f, "recirculate");
    let f = refused_feature(load_modified("ref1_lpm_checksum", |v| {
        action0(v, "resubmit_preserving_field_list", json!([]))
    }));
    assert_eq!(f, "resubmit");
    let f = refused_feature(load_modified("ref1_lpm_checksum", |v| {
        v["header_stacks"] = json!([{"name": "s", "id": 0, "header_type": "ethernet_h", "size": 2, "header_ids": [2]}]);
    }));
    assert_eq!(f, "header stacks");
    let f = refused_feature(load_modified("ref1_lpm_checksum", |v| {
        v["meter_arrays"] = json!([{"name": "m", "id": 0}]);
    }));
    assert_eq!(f, "meters");
    let f = refused_feature(load_modified("ref1_lpm_checksum", |v| {
        v["header_types"][2]["fields"][0] = json!(["dst", "*"]);
    }));
    assert!(f.contains("varbit"), "{f}");
    let f = refused_feature(load_modified("ref1_lpm_checksum", |v| {
        v["calculations"][0]["algo"] = json!("crc32_custom");
    }));
    assert!(f.contains("crc32_custom"), "{f}");
    let f = refused_feature(load_modified("ref1_lpm_checksum", |v| {
        v["pipelines"][0]["conditionals"][0]["expression"]["value"]["op"] = json!("two_comp_mod");
    }));
    assert!(f.contains("signed"), "{f}");
}

#[test]
fn inconsistent_pipelines_are_invalid() {
    // A cycle in the control graph.
    let r = load_modified("ref1_lpm_checksum", |v| {
        v["pipelines"][0]["conditionals"][2]["false_next"] = json!("node_2");
    });
    assert!(
        matches!(&r, Err(LoadError::Invalid { message, .. }) if message.contains("cycle")),
        "{:?}",
        r.err()
    );
    // A dangling field reference.
    let r = load_modified("ref1_lpm_checksum", |v| {
        v["pipelines"][0]["tables"][2]["key"][0]["target"] = json!(["ip", "nope"]);
    });
    assert!(matches!(r, Err(LoadError::Invalid { .. })));
    // A missing required key names its path.
    let r = load_modified("ref2_ternary_counters", |v| {
        v["parsers"][0]["parse_states"][1]
            .as_object_mut()
            .unwrap()
            .remove("transitions");
    });
    match r {
        Err(LoadError::Json(e)) => {
            assert_eq!(e.path, "parsers[0].parse_states[1]");
            assert!(e.message.contains("transitions"));
        }
        other => panic!("{:?}", other.err()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Arbitrary frames, and arbitrary corruptions of a valid one, never panic in any reference
    /// pipeline, and every frame is accounted for.
    #[test]
    fn arbitrary_frames_never_panic(
        frame in prop::collection::vec(any::<u8>(), 0..120),
        flips in prop::collection::vec((0usize..46, any::<u8>()), 0..6),
        cut in 0usize..60,
        port in 0u32..600,
    ) {
        for name in REFERENCES {
            let mut sw = reference(name);
            sw.set_clone_session(5, vec![Replica { port: 4, instance: 0 }], None).unwrap();
            let mut out = Outputs::new();
            sw.process(port, &frame, &mut out);
            let mut valid = udp_frame([10, 0, 0, 2], 9);
            for (at, b) in &flips {
                valid[*at] ^= b;
            }
            sw.process(port, &valid, &mut out);
            sw.process(port, &valid[..cut.min(valid.len())], &mut out);
            prop_assert_eq!(sw.stats().frames_in, 3);
            prop_assert_eq!(sw.stats().frames_out as usize, out.len());
        }
    }
}

/// ref1 with its start state selecting on a lookahead of the byte after Ethernet (0x45 → IPv4)
/// instead of the EtherType, and no default transition.
fn lookahead_ref1() -> Switch {
    load_modified("ref1_lpm_checksum", |v| {
        let start = &mut v["parsers"][0]["parse_states"][0];
        start["transition_key"] = json!([{"type": "lookahead", "value": [0, 8]}]);
        start["transitions"] = json!([
            {"type": "hexstr", "value": "0x45", "mask": null, "next_state": "parse_ip"}
        ]);
    })
    .unwrap()
}

#[test]
fn lookahead_select_and_no_match() {
    let mut sw = lookahead_ref1();
    let t = sw.program().table_by_name("Ing.routes").unwrap();
    sw.insert_entry(t, route(&sw, 0, 0, 1)).unwrap();
    let mut out = Outputs::new();
    let mut frame = udp_frame([10, 0, 0, 2], 9);
    frame[12] = 0x12; // the EtherType no longer matters
    sw.process(0, &frame, &mut out);
    assert_eq!(out.len(), 1, "0x45 after Ethernet parses as IPv4");
    assert_eq!(sw.stats().parser_errors, 0);
    frame[14] = 0x46;
    sw.process(0, &frame, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(sw.stats().parser_errors, 1, "NoMatch");
    assert_eq!(sw.stats().packet_too_short, 0);
    // Exactly an Ethernet header: the lookahead runs past the end.
    sw.process(0, &frame[..14], &mut out);
    assert_eq!(sw.stats().packet_too_short, 1);
}

/// The packet log (`vmdep switch -L debug`), what bmv2's console log is for: each frame's way
/// through ref1 (p4c's JSON, so conditions carry their P4 source), step by step: a routed frame,
/// one cut inside its IPv4 header, one with a wrong checksum, one no route matches.
#[test]
fn the_packet_log_tells_each_frames_way() {
    let mut sw = reference("ref1_lpm_checksum");
    let t = sw.program().table_by_name("Ing.routes").unwrap();
    sw.insert_entry(t, route(&sw, 0x0a00_0000, 8, 3)).unwrap();
    let good = udp_frame([10, 0, 0, 2], 9);
    let mut bad = good.clone();
    bad[24] ^= 1;
    let unrouted = udp_frame([192, 168, 0, 1], 9);
    let text = debug_log_of(|| {
        let mut out = Outputs::new();
        for frame in [&good[..], &good[..20], &bad, &unrouted] {
            sw.process(1, frame, &mut out);
        }
        assert_eq!(out.len(), 1);
    });
    insta::assert_snapshot!(text);
}
