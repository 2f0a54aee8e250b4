//! `vmdep compile` on the four p4c reference programs and on vmdep's own data plane: they
//! compile, the output is deterministic and snapshotted, and the JSON has the same tables,
//! actions, header types and extern arrays as p4c's; the control plane has p4c's P4Info names.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use vmdep::compiler::{compile, control_plane::CpMatchKind};

const REFERENCE: &[&str] = &[
    "ref1_lpm_checksum",
    "ref2_ternary_counters",
    "ref3_register_clone_hash",
    "ref4_parser_range",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn compile_ok(rel: &str) -> vmdep::compiler::CompileOutput {
    let source = read(rel);
    let name = Path::new(rel).file_name().unwrap().to_string_lossy();
    compile(&source, &name).unwrap_or_else(|d| panic!("{rel}:\n{}", d.render(rel, &source)))
}

fn reference(name: &str) -> (Value, Value) {
    let ours = compile_ok(&format!("tests/fixtures/p4c-reference/{name}.p4"));
    let theirs = read(&format!("tests/fixtures/p4c-reference/p4c-out/{name}.json"));
    (
        serde_json::from_str(&ours.bmv2_json).expect("our JSON parses"),
        serde_json::from_str(&theirs).expect("p4c's JSON parses"),
    )
}

#[test]
fn reference_programs_compile_to_snapshotted_deterministic_json() {
    for name in REFERENCE.iter().copied().chain(["vmdep"]) {
        let rel = if name == "vmdep" {
            "p4/vmdep.p4".to_string()
        } else {
            format!("tests/fixtures/p4c-reference/{name}.p4")
        };
        let a = compile_ok(&rel);
        let b = compile_ok(&rel);
        assert_eq!(a.bmv2_json, b.bmv2_json, "{name}: two compiles differ");
        insta::assert_snapshot!(format!("json_{name}"), a.bmv2_json);
    }
}

/// Program tables (not the synthesized `tbl_*` ones): name, keys, match type, size, flags.
fn tables(j: &Value) -> BTreeSet<String> {
    j["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["tables"].as_array().unwrap().iter())
        .filter(|t| !t["name"].as_str().unwrap().starts_with("tbl_"))
        .map(|t| {
            let keys: Vec<String> = t["key"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| format!("{}={}:{}", k["name"], k["target"], k["match_type"]))
                .collect();
            format!(
                "{} [{}] {} size={} counters={} timeout={} actions={}",
                t["name"],
                keys.join(", "),
                t["match_type"],
                t["max_size"],
                t["with_counters"],
                t["support_timeout"],
                t["actions"]
            )
        })
        .collect()
}

/// Named actions (program actions, not synthesized ones) and their parameters.
fn actions(j: &Value) -> BTreeSet<String> {
    j["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            let n = a["name"].as_str().unwrap();
            n.contains('.') || n == "NoAction"
        })
        .map(|a| format!("{} {}", a["name"], a["runtime_data"]))
        .collect()
}

fn without_source_info(v: &Value) -> Value {
    match v {
        Value::Array(xs) => Value::Array(xs.iter().map(without_source_info).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "source_info")
                .map(|(k, v)| (k.clone(), without_source_info(v)))
                .collect(),
        ),
        v => v.clone(),
    }
}

#[test]
fn reference_json_has_p4cs_tables_actions_headers_and_arrays() {
    for name in REFERENCE {
        let (ours, theirs) = reference(name);
        assert_eq!(tables(&ours), tables(&theirs), "{name}: tables");
        assert_eq!(actions(&ours), actions(&theirs), "{name}: actions");
        // Header types other than the compiler's own scalars (whose temporaries differ).
        let hts = |j: &Value| -> Vec<Value> {
            j["header_types"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| h["name"] != "scalars_0")
                .cloned()
                .collect()
        };
        assert_eq!(hts(&ours), hts(&theirs), "{name}: header types");
        for key in [
            "headers",
            "counter_arrays",
            "register_arrays",
            "errors",
            "deparsers",
            "field_lists",
            "field_aliases",
        ] {
            assert_eq!(
                without_source_info(&ours[key]),
                without_source_info(&theirs[key]),
                "{name}: {key}"
            );
        }
        assert_eq!(
            ours["__meta__"]["version"], theirs["__meta__"]["version"],
            "{name}: version"
        );
    }
}

#[test]
fn reference_parsers_and_checksums_match_p4c() {
    for name in REFERENCE {
        let (ours, theirs) = reference(name);
        let states = |j: &Value| -> Vec<(Value, Value, Value)> {
            j["parsers"][0]["parse_states"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["name"].clone(),
                        s["transition_key"].clone(),
                        s["transitions"].clone(),
                    )
                })
                .collect()
        };
        assert_eq!(states(&ours), states(&theirs), "{name}: parse states");
        // Checksums: same targets, kinds and conditions, with the same calculation inputs.
        let sums = |j: &Value| -> BTreeSet<String> {
            j["checksums"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    let calc = j["calculations"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|x| x["name"] == c["calculation"])
                        .expect("the checksum's calculation exists");
                    format!(
                        "{} v={} u={} if={} algo={} in={}",
                        c["target"],
                        c["verify"],
                        c["update"],
                        c["if_cond"],
                        calc["algo"],
                        calc["input"]
                    )
                })
                .collect()
        };
        assert_eq!(sums(&ours), sums(&theirs), "{name}: checksums");
    }
}

/// Entity names, match fields and params from p4c's P4Info text (the subset this test reads).
#[derive(Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct P4InfoNames {
    tables: BTreeSet<String>,
    match_fields: BTreeSet<String>,
    actions: BTreeSet<String>,
    params: BTreeSet<String>,
    counters: BTreeSet<String>,
    direct_counters: BTreeSet<String>,
    registers: BTreeSet<String>,
}

fn p4info_names(text: &str) -> P4InfoNames {
    let mut out = P4InfoNames::default();
    let mut path: Vec<String> = Vec::new();
    let mut pending: Vec<(String, String)> = Vec::new();
    let mut owner = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(block) = line.strip_suffix(" {") {
            path.push(block.to_string());
            continue;
        }
        if line == "}" {
            let closed = path.pop().unwrap_or_default();
            if closed == "match_fields" || closed == "params" {
                let get = |k: &str| {
                    pending
                        .iter()
                        .find(|(a, _)| a == k)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let entry = format!(
                    "{owner}/{}/{}/{}",
                    get("name"),
                    get("bitwidth"),
                    get("match_type")
                );
                if closed == "match_fields" {
                    out.match_fields.insert(entry);
                } else {
                    out.params.insert(entry);
                }
            }
            pending.clear();
            continue;
        }
        let Some((k, v)) = line.split_once(": ") else {
            continue;
        };
        let v = v.trim_matches('"').to_string();
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match (p.as_slice(), k) {
            ([top, "preamble"], "name") => {
                owner = v.clone();
                match *top {
                    "tables" => out.tables.insert(v),
                    "actions" => out.actions.insert(v),
                    "counters" => out.counters.insert(v),
                    "direct_counters" => out.direct_counters.insert(v),
                    "registers" => out.registers.insert(v),
                    _ => false,
                };
            }
            ([_, "match_fields" | "params"], _) => pending.push((k.to_string(), v)),
            _ => {}
        }
    }
    out
}

#[test]
fn control_plane_names_match_p4cs_p4info() {
    for name in REFERENCE {
        let out = compile_ok(&format!("tests/fixtures/p4c-reference/{name}.p4"));
        let theirs = p4info_names(&read(&format!(
            "tests/fixtures/p4c-reference/p4c-out/{name}.p4info.txtpb"
        )));
        assert!(
            !theirs.actions.is_empty() || !theirs.registers.is_empty(),
            "{name}: read nothing from p4c's P4Info"
        );
        let cp = &out.control_plane;
        let mut ours = P4InfoNames::default();
        for t in &cp.tables {
            ours.tables.insert(t.preamble.name.clone());
            for f in &t.match_fields {
                let mk = match f.match_kind {
                    CpMatchKind::Exact => "EXACT",
                    CpMatchKind::Lpm => "LPM",
                    CpMatchKind::Ternary => "TERNARY",
                    CpMatchKind::Range => "RANGE",
                    CpMatchKind::Optional => "OPTIONAL",
                };
                ours.match_fields.insert(format!(
                    "{}/{}/{}/{mk}",
                    t.preamble.name, f.name, f.bitwidth
                ));
            }
        }
        for a in &cp.actions {
            ours.actions.insert(a.preamble.name.clone());
            for p in &a.params {
                ours.params
                    .insert(format!("{}/{}/{}/", a.preamble.name, p.name, p.bitwidth));
            }
        }
        ours.counters = cp
            .counters
            .iter()
            .map(|c| c.preamble.name.clone())
            .collect();
        ours.direct_counters = cp
            .direct_counters
            .iter()
            .map(|c| c.preamble.name.clone())
            .collect();
        ours.registers = cp
            .registers
            .iter()
            .map(|c| c.preamble.name.clone())
            .collect();
        assert_eq!(ours, theirs, "{name}: P4Info names");
    }
}

#[test]
fn control_plane_details_of_ref2() {
    let out = compile_ok("tests/fixtures/p4c-reference/ref2_ternary_counters.p4");
    let cp = &out.control_plane;
    let acl = cp
        .tables
        .iter()
        .find(|t| t.preamble.name == "Ing.acl")
        .unwrap();
    assert_eq!(acl.const_default_action.as_deref(), Some("Ing.deny"));
    assert_eq!(acl.direct_counters, vec!["Ing.acl_hits".to_string()]);
    assert_eq!(acl.size, 256);
    let flows = cp
        .tables
        .iter()
        .find(|t| t.preamble.name == "Ing.flows")
        .unwrap();
    assert!(flows.support_timeout);
    assert_eq!(
        flows.initial_default_action,
        Some(("NoAction".to_string(), vec![]))
    );
    assert_eq!(flows.const_default_action, None);
    let no_action = cp
        .actions
        .iter()
        .find(|a| a.preamble.name == "NoAction")
        .unwrap();
    assert_eq!(
        no_action.preamble.annotations,
        vec!["@noWarn(\"unused\")".to_string()]
    );
    let per_port = cp
        .counters
        .iter()
        .find(|c| c.preamble.name == "Ing.per_port")
        .unwrap();
    assert_eq!(per_port.size, 8);
    assert_eq!(
        cp.direct_counters
            .iter()
            .find(|c| c.preamble.name == "Ing.flow_bytes")
            .unwrap()
            .table,
        "Ing.flows"
    );
}

#[test]
fn vmdep_data_plane_exposes_the_names_the_controller_uses() {
    let out = compile_ok("p4/vmdep.p4");
    let cp = &out.control_plane;
    let vm_pair = cp
        .tables
        .iter()
        .find(|t| t.preamble.name == "MyIngress.vm_pair")
        .unwrap();
    assert!(vm_pair.support_timeout);
    assert_eq!(vm_pair.size, 16384);
    assert_eq!(
        vm_pair.direct_counters,
        vec!["MyIngress.vm_pair_counter".to_string()]
    );
    let keys: Vec<(&str, u32)> = vm_pair
        .match_fields
        .iter()
        .map(|f| (f.name.as_str(), f.bitwidth))
        .collect();
    assert_eq!(
        keys,
        vec![("hdr.ipv4.srcAddr", 32), ("hdr.ipv4.dstAddr", 32)]
    );
    for a in [
        "MyIngress.set_next_hop",
        "MyIngress.count_pair",
        "MyIngress.drop",
        "NoAction",
    ] {
        assert!(cp.actions.iter().any(|x| x.preamble.name == a), "{a}");
    }
    assert!(cp
        .tables
        .iter()
        .any(|t| t.preamble.name == "MyIngress.ipv4_lpm"));
}

/// The P4Info that `vmdep compile` writes for each reference program is p4c's, byte for byte
/// in text form (ids, names, aliases, order), and its binary form decodes to the same message.
#[test]
fn reference_p4info_is_p4cs() {
    use prost::Message as _;
    for name in REFERENCE {
        let ours = compile_ok(&format!("tests/fixtures/p4c-reference/{name}.p4"));
        let theirs = read(&format!(
            "tests/fixtures/p4c-reference/p4c-out/{name}.p4info.txtpb"
        ));
        assert_eq!(
            ours.p4info_text(),
            theirs,
            "{name}: P4Info text differs from p4c's"
        );
        let decoded = vmdep::p4rt::config::P4Info::decode(ours.p4info_binary().as_slice())
            .expect("binary P4Info decodes");
        assert_eq!(decoded, ours.p4info, "{name}: binary P4Info round trip");
    }
}

/// vmdep.p4's P4Info, reviewed as a snapshot: the controller depends on these names and ids.
#[test]
fn vmdep_p4info_snapshot() {
    let out = compile_ok("p4/vmdep.p4");
    assert_eq!(out.p4info_text(), compile_ok("p4/vmdep.p4").p4info_text());
    insta::assert_snapshot!("p4info_vmdep", out.p4info_text());
}

/// `@name` and `@id` reach the P4Info as p4c applies them: a relative `@name` stays inside its
/// control, a leading dot makes it global, a key's `@name` renames the match field, and an `@id`
/// without a prefix gets the kind's.
#[test]
fn name_and_id_annotations_reach_the_p4info() {
    let out = compile_ok("tests/compile_constructs/annotations_name_id.p4");
    let table = out
        .p4info
        .tables
        .iter()
        .find(|t| t.preamble.as_ref().unwrap().name == "I.acl_table")
        .expect("table renamed by @name");
    assert_eq!(table.preamble.as_ref().unwrap().id, 0x0200_0042);
    assert_eq!(table.match_fields[0].name, "first_byte");
    let action = |name: &str| {
        out.p4info
            .actions
            .iter()
            .find(|a| a.preamble.as_ref().unwrap().name == name)
            .unwrap_or_else(|| panic!("no action {name}"))
            .preamble
            .clone()
            .unwrap()
    };
    assert_eq!(action("I.fwd").id, 0x0100_0007);
    assert_eq!(action("global_drop").id >> 24, 0x01);
}
