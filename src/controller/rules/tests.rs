use std::path::Path;

use super::*;
use crate::controller::paths::{Paths, RouteTables};
use crate::controller::topology::{SwitchId, Topology};
use crate::p4rt::v1::Uint128;

fn vmdep_p4info() -> P4Info {
    let source = include_str!("../../../p4/vmdep.p4");
    crate::compiler::compile(source, "vmdep.p4")
        .expect("vmdep.p4 compiles")
        .p4info
}

fn program() -> VmdepProgram {
    VmdepProgram::new(vmdep_p4info()).unwrap()
}

fn route() -> Route {
    Route {
        prefix: Ipv4Addr::new(10, 0, 122, 1),
        prefix_len: 32,
        src_mac: MacAddr([0x02, 0, 0, 113, 0, 3]),
        dst_mac: MacAddr([0x02, 0x01, 10, 0, 122, 1]),
        egress_port: 3,
    }
}

fn table_entry(u: &Update) -> &TableEntry {
    match u.entity.as_ref().and_then(|e| e.entity.as_ref()) {
        Some(entity::Entity::TableEntry(e)) => e,
        other => panic!("not a table entry: {other:?}"),
    }
}

#[test]
fn resolves_every_object_by_name() {
    let program = program();
    let index = program.index();
    let id = |p: Option<&crate::p4rt::config::Preamble>| p.unwrap().id;
    assert_eq!(
        program.ipv4_lpm_id(),
        id(index.table(names::IPV4_LPM).unwrap().preamble.as_ref())
    );
    assert_eq!(
        program.vm_pair_id(),
        id(index.table(names::VM_PAIR).unwrap().preamble.as_ref())
    );
    assert_eq!(
        program.vm_pair_counter_id(),
        id(index
            .direct_counter(names::VM_PAIR_COUNTER)
            .unwrap()
            .preamble
            .as_ref())
    );
}

#[test]
fn route_entries_are_canonical_and_masked() {
    let program = program();
    let u = program.route_update(UpdateKind::Insert, &route()).unwrap();
    assert_eq!(u.r#type, update::Type::Insert as i32);
    let e = table_entry(&u);
    assert_eq!(e.table_id, program.ipv4_lpm_id());
    let Some(field_match::FieldMatchType::Lpm(lpm)) = &e.r#match[0].field_match_type else {
        panic!("{e:?}")
    };
    assert_eq!(
        (lpm.value.as_slice(), lpm.prefix_len),
        (&[10, 0, 122, 1][..], 32)
    );
    let Some(table_action::Type::Action(a)) = e.action.as_ref().unwrap().r#type.as_ref() else {
        panic!()
    };
    let values: Vec<&[u8]> = a.params.iter().map(|p| p.value.as_slice()).collect();
    // Leading zero bytes dropped (the src MAC starts with 0x02, the port is one byte).
    assert_eq!(
        values,
        vec![
            &[0x02, 0, 0, 113, 0, 3][..],
            &[0x02, 0x01, 10, 0, 122, 1][..],
            &[3][..]
        ]
    );
    assert_eq!(program.decode_route_entry(e), Some(route()));

    // Host bits past the prefix are cleared; a small first byte shortens the string.
    let wide = Route {
        prefix: Ipv4Addr::new(0, 0, 7, 9),
        prefix_len: 24,
        src_mac: MacAddr([0, 0, 0, 0, 0, 1]),
        ..route()
    };
    let e = program.route_entry(&wide).unwrap();
    let Some(field_match::FieldMatchType::Lpm(lpm)) = &e.r#match[0].field_match_type else {
        panic!()
    };
    assert_eq!((lpm.value.as_slice(), lpm.prefix_len), (&[7, 0][..], 24));
    let Some(table_action::Type::Action(a)) = e.action.as_ref().unwrap().r#type.as_ref() else {
        panic!()
    };
    assert_eq!(a.params[0].value, vec![1]);

    // A default route has no key field; a delete carries the key only.
    let default = Route {
        prefix_len: 0,
        ..route()
    };
    let d = program.route_update(UpdateKind::Delete, &default).unwrap();
    let e = table_entry(&d);
    assert!(e.r#match.is_empty() && e.action.is_none());
    assert_eq!(d.r#type, update::Type::Delete as i32);

    assert!(matches!(
        program.route_entry(&Route {
            prefix_len: 33,
            ..route()
        }),
        Err(RulesError::PrefixTooLong { .. })
    ));
    assert!(matches!(
        program.route_entry(&Route {
            egress_port: 512,
            ..route()
        }),
        Err(RulesError::PortDoesNotFit {
            port: 512,
            bitwidth: 9,
            ..
        })
    ));
}

#[test]
fn pair_entries_round_trip_through_decode() {
    let program = program();
    let pair = VmPair::new(Ipv4Addr::new(10, 0, 120, 1), Ipv4Addr::new(0, 0, 0, 0));
    let u = program
        .pair_update(UpdateKind::Insert, pair, Some(Duration::from_millis(1500)))
        .unwrap();
    let e = table_entry(&u).clone();
    assert_eq!(e.idle_timeout_ns, 1_500_000_000);
    let Some(field_match::FieldMatchType::Exact(dst)) = &e.r#match[1].field_match_type else {
        panic!()
    };
    assert_eq!(dst.value, vec![0]);
    assert_eq!(program.decode_pair_key(&e), Ok(pair));
    assert_eq!(
        program.decode_pair_entry(&e),
        Err(RulesError::NoCounterData { pair })
    );
    let counted = TableEntry {
        counter_data: Some(CounterData {
            packet_count: 7,
            byte_count: 700,
        }),
        ..e.clone()
    };
    assert_eq!(
        program.decode_pair_entry(&counted),
        Ok((
            pair,
            PairCount {
                packets: 7,
                bytes: 700
            }
        ))
    );
    let negative = TableEntry {
        counter_data: Some(CounterData {
            packet_count: -1,
            byte_count: 0,
        }),
        ..e.clone()
    };
    assert!(matches!(
        program.decode_pair_entry(&negative),
        Err(RulesError::NegativeCounter { .. })
    ));
    let delete = program.pair_update(UpdateKind::Delete, pair, None).unwrap();
    assert!(table_entry(&delete).action.is_none());
    assert_eq!(table_entry(&delete).idle_timeout_ns, 0);
    assert_eq!(
        program.pair_entry(pair, Some(Duration::ZERO)),
        Err(RulesError::IdleTimeout(Duration::ZERO))
    );
    assert_eq!(
        program.pair_entry(pair, Some(Duration::MAX)),
        Err(RulesError::IdleTimeout(Duration::MAX))
    );
}

#[test]
fn malformed_pair_entries_are_errors() {
    let program = program();
    let pair = VmPair::new(Ipv4Addr::new(10, 0, 120, 1), Ipv4Addr::new(10, 0, 122, 2));
    let good = program.pair_key(pair);
    let wrong_table = TableEntry {
        table_id: program.ipv4_lpm_id(),
        ..good.clone()
    };
    assert!(matches!(
        program.decode_pair_key(&wrong_table),
        Err(RulesError::NotVmPair { .. })
    ));
    let mut half = good.clone();
    half.r#match.pop();
    assert!(matches!(
        program.decode_pair_key(&half),
        Err(RulesError::BadPairKey(_))
    ));
    let mut twice = good.clone();
    twice.r#match[1] = twice.r#match[0].clone();
    assert!(matches!(
        program.decode_pair_key(&twice),
        Err(RulesError::BadPairKey(_))
    ));
    let mut too_wide = good.clone();
    too_wide.r#match[0].field_match_type =
        Some(field_match::FieldMatchType::Exact(field_match::Exact {
            value: vec![1, 0, 0, 0, 0],
        }));
    assert!(matches!(
        program.decode_pair_key(&too_wide),
        Err(RulesError::BadPairValue {
            field: "srcAddr",
            ..
        })
    ));
    let mut lpm = good;
    lpm.r#match[0].field_match_type = Some(field_match::FieldMatchType::Lpm(field_match::Lpm {
        value: vec![1],
        prefix_len: 8,
    }));
    assert!(matches!(
        program.decode_pair_key(&lpm),
        Err(RulesError::BadPairKey(_))
    ));
}

#[test]
fn reads_ask_for_counter_data() {
    let program = program();
    let read = program.read_all_pairs(113);
    assert_eq!(read.device_id, 113);
    let Some(entity::Entity::TableEntry(q)) = read.entities[0].entity.as_ref() else {
        panic!()
    };
    assert_eq!(q.table_id, program.vm_pair_id());
    assert!(q.r#match.is_empty() && q.counter_data.is_some());
}

#[test]
fn other_shapes_are_refused_with_the_reason() {
    let shaped = |edit: &dyn Fn(&mut P4Info)| {
        let mut p4info = vmdep_p4info();
        edit(&mut p4info);
        VmdepProgram::new(p4info).unwrap_err()
    };
    let table = |p: &mut P4Info, name: &str| -> usize {
        p.tables
            .iter()
            .position(|t| t.preamble.as_ref().unwrap().name == name)
            .unwrap()
    };
    let err = shaped(&|p| {
        let t = table(p, names::VM_PAIR);
        p.tables.remove(t);
    });
    assert!(matches!(err, RulesError::Missing(_)), "{err}");
    let err = shaped(&|p| {
        let t = table(p, names::VM_PAIR);
        p.tables[t].match_fields[0].bitwidth = 128;
    });
    assert_eq!(
        err.to_string(),
        "the P4Info is not vmdep.p4's: match field `hdr.ipv4.srcAddr` of `MyIngress.vm_pair` \
         is EXACT of 128 bits, expected EXACT of 32 bits"
    );
    let err = shaped(&|p| {
        let t = table(p, names::IPV4_LPM);
        p.tables[t].match_fields[0].r#match = Some(
            crate::p4rt::config::match_field::Match::MatchType(MatchType::Ternary as i32),
        );
    });
    assert!(matches!(err, RulesError::MatchFieldShape { .. }), "{err}");
    let err = shaped(&|p| {
        let a = p
            .actions
            .iter()
            .position(|a| a.preamble.as_ref().unwrap().name == names::SET_NEXT_HOP)
            .unwrap();
        p.actions[a].params[1].bitwidth = 32;
    });
    assert!(
        matches!(err, RulesError::ParamWidth { ref param, found: 32, .. } if param == "dst_mac"),
        "{err}"
    );
    let err = shaped(&|p| {
        let t = table(p, names::VM_PAIR);
        p.tables[t].idle_timeout_behavior = IdleTimeoutBehavior::NoTimeout as i32;
    });
    assert!(matches!(err, RulesError::NoIdleTimeout { .. }), "{err}");
    let err = shaped(&|p| {
        p.direct_counters[0].spec.as_mut().unwrap().unit =
            crate::p4rt::config::counter_spec::Unit::Packets as i32;
    });
    assert!(matches!(err, RulesError::CounterShape { .. }), "{err}");
    let err = shaped(&|p| {
        let t = table(p, names::VM_PAIR);
        p.tables[t].action_refs.clear();
    });
    assert!(matches!(err, RulesError::ActionNotInTable { .. }), "{err}");
    let err = shaped(&|p| {
        let t = table(p, names::VM_PAIR);
        p.tables[t].match_fields.pop();
    });
    assert!(
        matches!(err, RulesError::KeyArity { found: 1, .. }),
        "{err}"
    );
}

/// The route WriteRequests of every switch of the reference topology, as the session sends
/// them on its first connection (one INSERT per VM, sorted by prefix).
#[test]
fn reference_topology_route_requests() {
    let program = program();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/reference.toml");
    let topology = Topology::from_file(&path).unwrap();
    let paths = Paths::compute(&topology);
    let routes = RouteTables::compute(&topology, &paths);
    let mut text = String::new();
    for (s, switch) in topology.switches().iter().enumerate() {
        let req = WriteRequest {
            device_id: u64::from(switch.device_id),
            election_id: Some(Uint128 { high: 0, low: 1 }),
            updates: routes
                .table(SwitchId(s))
                .iter()
                .map(|r| program.route_update(UpdateKind::Insert, r).unwrap())
                .collect(),
            atomicity: Atomicity::ContinueOnError as i32,
            ..WriteRequest::default()
        };
        text.push_str(&format!("# {}\n", switch.name));
        text.push_str(&write_request_text(&req, &program));
    }
    insta::assert_snapshot!(text);
}
