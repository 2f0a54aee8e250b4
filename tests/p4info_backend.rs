//! The P4Info back end against p4c: for each reference program, the control-plane model the
//! checker must produce (built here by hand from the .p4 source) must give exactly the P4Info
//! that p4c 1.2.5 wrote for it.

use vmdep::compiler::control_plane::{
    ControlPlane, CpAction, CpActionRef, CpActionScope, CpCounter, CpCounterUnit, CpDigest,
    CpDirectCounter, CpMatchField, CpMatchKind, CpParam, CpPreamble, CpRegister, CpTable,
};
use vmdep::compiler::p4info::{build_p4info, p4info_binary, p4info_text, P4InfoError};
use vmdep::p4rt::config::P4Info;

mod support;

use support::p4rt::p4c_p4info;

fn preamble(name: &str) -> CpPreamble {
    CpPreamble {
        name: name.to_owned(),
        ..Default::default()
    }
}

fn action(name: &str, params: &[(&str, u32)]) -> CpAction {
    CpAction {
        preamble: preamble(name),
        params: params
            .iter()
            .map(|&(name, bitwidth)| CpParam {
                name: name.to_owned(),
                bitwidth,
                annotations: vec![],
            })
            .collect(),
    }
}

/// `NoAction` from core.p4, as every program that uses it sees it.
fn no_action() -> CpAction {
    CpAction {
        preamble: CpPreamble {
            annotations: vec![r#"@noWarn("unused")"#.to_owned()],
            ..preamble("NoAction")
        },
        params: vec![],
    }
}

fn key(name: &str, bitwidth: u32, match_kind: CpMatchKind) -> CpMatchField {
    CpMatchField {
        name: name.to_owned(),
        bitwidth,
        match_kind,
        annotations: vec![],
    }
}

fn refs(actions: &[&str]) -> Vec<CpActionRef> {
    actions
        .iter()
        .map(|a| CpActionRef {
            action: (*a).to_owned(),
            scope: CpActionScope::TableAndDefault,
            annotations: vec![],
        })
        .collect()
}

fn table(name: &str, keys: Vec<CpMatchField>, actions: &[&str], default: &str) -> CpTable {
    CpTable {
        preamble: preamble(name),
        match_fields: keys,
        actions: refs(actions),
        const_default_action: None,
        initial_default_action: Some((default.to_owned(), vec![])),
        direct_counters: vec![],
        size: 1024,
        support_timeout: false,
        is_const_table: false,
    }
}

/// ref1_lpm_checksum: one lpm table, two actions.
pub fn ref1_model() -> ControlPlane {
    ControlPlane {
        arch: "v1model".into(),
        tables: vec![CpTable {
            size: 1024,
            ..table(
                "Ing.routes",
                vec![key("h.ip.dst", 32, CpMatchKind::Lpm)],
                &["Ing.route", "Ing.drop"],
                "Ing.drop",
            )
        }],
        actions: vec![
            action("Ing.drop", &[]),
            action("Ing.route", &[("port", 9), ("next_hop_mac", 48)]),
        ],
        ..Default::default()
    }
}

/// ref2_ternary_counters: ternary + exact tables, a const default, two direct counters, an
/// idle timeout and an indexed counter.
pub fn ref2_model() -> ControlPlane {
    ControlPlane {
        arch: "v1model".into(),
        tables: vec![
            CpTable {
                const_default_action: Some("Ing.deny".into()),
                direct_counters: vec!["Ing.acl_hits".into()],
                size: 256,
                ..table(
                    "Ing.acl",
                    vec![
                        key("h.ip.src", 32, CpMatchKind::Ternary),
                        key("h.ip.dst", 32, CpMatchKind::Ternary),
                        key("h.udp.dport", 16, CpMatchKind::Ternary),
                    ],
                    &["Ing.permit", "Ing.deny"],
                    "Ing.deny",
                )
            },
            CpTable {
                direct_counters: vec!["Ing.flow_bytes".into()],
                support_timeout: true,
                size: 4096,
                ..table(
                    "Ing.flows",
                    vec![
                        key("h.ip.src", 32, CpMatchKind::Exact),
                        key("h.ip.dst", 32, CpMatchKind::Exact),
                    ],
                    &["Ing.track", "NoAction"],
                    "NoAction",
                )
            },
        ],
        actions: vec![
            no_action(),
            action("Ing.deny", &[]),
            action("Ing.permit", &[("port", 9)]),
            action("Ing.track", &[]),
        ],
        counters: vec![CpCounter {
            preamble: preamble("Ing.per_port"),
            unit: CpCounterUnit::Both,
            size: 8,
        }],
        direct_counters: vec![
            CpDirectCounter {
                preamble: preamble("Ing.acl_hits"),
                unit: CpCounterUnit::Both,
                table: "Ing.acl".into(),
            },
            CpDirectCounter {
                preamble: preamble("Ing.flow_bytes"),
                unit: CpCounterUnit::Both,
                table: "Ing.flows".into(),
            },
        ],
        ..Default::default()
    }
}

/// ref3_register_clone_hash: no table, one register.
pub fn ref3_model() -> ControlPlane {
    ControlPlane {
        arch: "v1model".into(),
        registers: vec![CpRegister {
            preamble: preamble("Ing.seen_per_port"),
            bitwidth: 32,
            size: 8,
        }],
        ..Default::default()
    }
}

/// ref4_parser_range: range + exact keys.
pub fn ref4_model() -> ControlPlane {
    ControlPlane {
        arch: "v1model".into(),
        tables: vec![CpTable {
            size: 64,
            ..table(
                "Ing.by_port_range",
                vec![
                    key("m.vid", 12, CpMatchKind::Exact),
                    key("h.udp.dport", 16, CpMatchKind::Range),
                ],
                &["Ing.to_port", "Ing.drop"],
                "Ing.drop",
            )
        }],
        actions: vec![
            action("Ing.to_port", &[("port", 9)]),
            action("Ing.drop", &[]),
        ],
        ..Default::default()
    }
}

fn assert_matches_p4c(program: &str, model: ControlPlane) {
    let ours = build_p4info(&model).expect("the model is valid");
    let (their_text, theirs) = p4c_p4info(program);
    assert_eq!(ours, theirs, "{program}: our P4Info differs from p4c's");
    // The text is p4c's byte for byte, and the binary holds the same message.
    assert_eq!(p4info_text(&ours), their_text, "{program}: text");
    let binary = p4info_binary(&ours);
    assert_eq!(
        <P4Info as prost::Message>::decode(binary.as_slice()).unwrap(),
        theirs,
        "{program}: binary"
    );
}

#[test]
fn ref1_lpm_checksum_matches_p4c() {
    assert_matches_p4c("ref1_lpm_checksum", ref1_model());
}

#[test]
fn ref2_ternary_counters_matches_p4c() {
    assert_matches_p4c("ref2_ternary_counters", ref2_model());
}

#[test]
fn ref3_register_clone_hash_matches_p4c() {
    assert_matches_p4c("ref3_register_clone_hash", ref3_model());
}

#[test]
fn ref4_parser_range_matches_p4c() {
    assert_matches_p4c("ref4_parser_range", ref4_model());
}

#[test]
fn text_starts_with_p4cs_header_lines() {
    let text = p4info_text(&build_p4info(&ref1_model()).unwrap());
    assert!(
        text.starts_with(
            "# proto-file: p4/config/v1/p4info.proto\n# proto-message: p4.config.v1.P4Info\n"
        ),
        "{text}"
    );
}

/// What the four references leave out: `@id`, `@brief`, annotations, action scopes, default
/// arguments, optional keys, const entries, a register and a digest with its struct.
#[test]
fn text_snapshot_of_features_beyond_the_references() {
    let mut model = ref2_model();
    let acl = &mut model.tables[0];
    acl.preamble.brief = Some("first-match ACL".into());
    acl.preamble.annotations = vec!["@my_anno(1)".into()];
    acl.match_fields[2].match_kind = CpMatchKind::Optional;
    acl.actions[1].scope = CpActionScope::DefaultOnly;
    acl.actions[1].annotations = vec!["@defaultonly".into()];
    acl.initial_default_action = Some(("Ing.deny".into(), vec![]));
    let flows = &mut model.tables[1];
    flows.preamble.explicit_id = Some(0x42);
    flows.is_const_table = true;
    flows.actions[0].scope = CpActionScope::TableOnly;
    model.tables.push(CpTable {
        initial_default_action: Some(("Ing.permit".into(), vec![7])),
        ..table(
            "Eg.acl",
            vec![key("m.x", 8, CpMatchKind::Exact)],
            &["Ing.permit"],
            "Ing.permit",
        )
    });
    model.registers.push(CpRegister {
        preamble: preamble("Eg.last"),
        bitwidth: 48,
        size: 16,
    });
    model.digests.push(CpDigest {
        preamble: preamble("learn_t"),
        struct_name: "learn_t".into(),
        fields: vec![("src".into(), 48), ("port".into(), 9)],
    });
    insta::assert_snapshot!(p4info_text(&build_p4info(&model).unwrap()));
}

#[test]
fn ids_do_not_depend_on_declaration_order() {
    let mut reversed = ref2_model();
    reversed.actions.reverse();
    reversed.tables.reverse();
    reversed.direct_counters.reverse();
    let id_of = |p4info: &P4Info, name: &str| {
        let preambles = p4info
            .tables
            .iter()
            .filter_map(|t| t.preamble.as_ref())
            .chain(p4info.actions.iter().filter_map(|a| a.preamble.as_ref()))
            .chain(
                p4info
                    .direct_counters
                    .iter()
                    .filter_map(|c| c.preamble.as_ref()),
            );
        preambles.clone().find(|p| p.name == name).map(|p| p.id)
    };
    let a = build_p4info(&ref2_model()).unwrap();
    let b = build_p4info(&reversed).unwrap();
    for name in [
        "Ing.acl",
        "Ing.flows",
        "NoAction",
        "Ing.deny",
        "Ing.permit",
        "Ing.track",
        "Ing.acl_hits",
        "Ing.flow_bytes",
    ] {
        assert_eq!(id_of(&a, name), id_of(&b, name), "{name}");
        assert!(id_of(&a, name).is_some(), "{name}");
    }
}

#[test]
fn direct_counters_follow_their_tables() {
    // p4c emits a direct counter together with its table: table order wins over model order.
    let mut model = ref2_model();
    model.direct_counters.reverse();
    let p4info = build_p4info(&model).unwrap();
    let names: Vec<_> = p4info
        .direct_counters
        .iter()
        .map(|c| c.preamble.as_ref().unwrap().name.as_str())
        .collect();
    assert_eq!(names, ["Ing.acl_hits", "Ing.flow_bytes"]);
}

#[test]
fn default_action_arguments_are_padded_big_endian() {
    let mut model = ref1_model();
    model.tables[0].initial_default_action = Some(("Ing.route".into(), vec![3, 0x0a0b0c]));
    let p4info = build_p4info(&model).unwrap();
    let call = p4info.tables[0].initial_default_action.as_ref().unwrap();
    let args: Vec<_> = call
        .arguments
        .iter()
        .map(|a| (a.param_id, a.value.clone()))
        .collect();
    assert_eq!(
        args,
        [(1, vec![0x00, 0x03]), (2, vec![0, 0, 0, 0x0a, 0x0b, 0x0c])]
    );
}

#[test]
fn const_entries_set_both_table_flags() {
    let mut model = ref4_model();
    model.tables[0].is_const_table = true;
    let t = &build_p4info(&model).unwrap().tables[0];
    assert!(t.is_const_table && t.has_initial_entries);
}

#[test]
fn action_ref_scopes_and_annotations_reach_p4info() {
    let mut model = ref1_model();
    model.tables[0].actions[0].scope = CpActionScope::TableOnly;
    model.tables[0].actions[1].scope = CpActionScope::DefaultOnly;
    model.tables[0].actions[1].annotations = vec!["@defaultonly".into()];
    model.tables[0].preamble.brief = Some("routes by prefix".into());
    let t = &build_p4info(&model).unwrap().tables[0];
    assert_eq!(t.action_refs[0].scope, 1);
    assert_eq!(t.action_refs[1].scope, 2);
    assert_eq!(t.action_refs[1].annotations, ["@defaultonly"]);
    assert_eq!(
        t.preamble.as_ref().unwrap().doc.as_ref().unwrap().brief,
        "routes by prefix"
    );
}

#[test]
fn digest_describes_its_struct_in_type_info() {
    let mut model = ref1_model();
    model.digests.push(CpDigest {
        preamble: preamble("learn_t"),
        struct_name: "learn_t".into(),
        fields: vec![("src".into(), 48), ("port".into(), 9)],
    });
    let p4info = build_p4info(&model).unwrap();
    let digest = &p4info.digests[0];
    assert_eq!(digest.preamble.as_ref().unwrap().id >> 24, 0x17);
    assert_eq!(digest.preamble.as_ref().unwrap().alias, "learn_t");
    let text = p4info_text(&p4info);
    assert!(text.contains("learn_t"), "{text}");
    let spec = &p4info.type_info.as_ref().unwrap().structs["learn_t"];
    let names: Vec<_> = spec.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["src", "port"]);
}

#[test]
fn bad_models_are_rejected_with_the_reason() {
    let mut unknown_action = ref1_model();
    unknown_action.tables[0].actions[0].action = "Ing.nope".into();
    assert_eq!(
        build_p4info(&unknown_action),
        Err(P4InfoError::UnknownAction {
            table: "Ing.routes".into(),
            action: "Ing.nope".into()
        })
    );

    let mut default_not_in_table = ref2_model();
    default_not_in_table.tables[0].initial_default_action = Some(("Ing.track".into(), vec![]));
    assert!(matches!(
        build_p4info(&default_not_in_table),
        Err(P4InfoError::DefaultActionNotInTable { .. })
    ));

    let mut arity = ref1_model();
    arity.tables[0].initial_default_action = Some(("Ing.route".into(), vec![1]));
    assert!(matches!(
        build_p4info(&arity),
        Err(P4InfoError::DefaultActionArity {
            expected: 2,
            found: 1,
            ..
        })
    ));

    let mut too_wide = ref1_model();
    too_wide.tables[0].initial_default_action = Some(("Ing.route".into(), vec![512, 0]));
    assert!(matches!(
        build_p4info(&too_wide),
        Err(P4InfoError::ArgumentTooWide {
            bitwidth: 9,
            value: 512,
            ..
        })
    ));

    let mut unknown_counter = ref2_model();
    unknown_counter.tables[1].direct_counters = vec!["Ing.nope".into()];
    assert!(matches!(
        build_p4info(&unknown_counter),
        Err(P4InfoError::UnknownDirectCounter { .. })
    ));

    let mut swapped = ref2_model();
    swapped.tables[0].direct_counters = vec!["Ing.flow_bytes".into()];
    swapped.tables[1].direct_counters = vec!["Ing.acl_hits".into()];
    assert!(matches!(
        build_p4info(&swapped),
        Err(P4InfoError::DirectCounterTableMismatch { .. })
    ));

    let mut detached = ref2_model();
    detached.tables[1].direct_counters.clear();
    assert!(matches!(
        build_p4info(&detached),
        Err(P4InfoError::DirectCounterNotAttached { .. })
    ));

    let mut duplicate = ref1_model();
    duplicate.actions.push(action("Ing.drop", &[]));
    assert!(matches!(
        build_p4info(&duplicate),
        Err(P4InfoError::DuplicateName { .. })
    ));

    let mut huge_register = ref3_model();
    huge_register.registers[0].size = 1 << 40;
    assert!(matches!(
        build_p4info(&huge_register),
        Err(P4InfoError::TooLarge { .. })
    ));

    let mut conflicting = ref1_model();
    for fields in [vec![("a".to_owned(), 8)], vec![("a".to_owned(), 16)]] {
        conflicting.digests.push(CpDigest {
            preamble: preamble(&format!("d{}", fields[0].1)),
            struct_name: "s".into(),
            fields,
        });
    }
    assert!(matches!(
        build_p4info(&conflicting),
        Err(P4InfoError::ConflictingDigestStruct { .. })
    ));
}

#[test]
fn explicit_ids_are_honored_and_checked() {
    let mut model = ref1_model();
    model.actions[0].preamble.explicit_id = Some(7);
    model.tables[0].preamble.explicit_id = Some(0x0200_0009);
    let p4info = build_p4info(&model).unwrap();
    assert_eq!(p4info.actions[0].preamble.as_ref().unwrap().id, 0x0100_0007);
    assert_eq!(p4info.tables[0].preamble.as_ref().unwrap().id, 0x0200_0009);
    // The table refers to the action by its explicit id.
    assert!(p4info.tables[0]
        .action_refs
        .iter()
        .any(|r| r.id == 0x0100_0007));

    let mut wrong_prefix = ref1_model();
    wrong_prefix.tables[0].preamble.explicit_id = Some(0x0100_0009);
    assert_eq!(
        build_p4info(&wrong_prefix),
        Err(P4InfoError::WrongIdPrefix {
            kind: vmdep::compiler::p4info::EntityKind::Table,
            name: "Ing.routes".into(),
            id: 0x0100_0009,
            found: 0x01,
            expected: 0x02,
        })
    );

    let mut duplicate = ref1_model();
    duplicate.actions[0].preamble.explicit_id = Some(5);
    duplicate.actions[1].preamble.explicit_id = Some(0x0100_0005);
    assert!(matches!(
        build_p4info(&duplicate),
        Err(P4InfoError::DuplicateId {
            id: 0x0100_0005,
            ..
        })
    ));
}
