//! Runs the reference STF packet tests (tests/fixtures/p4c-reference, confirmed on bmv2) against
//! `vmdep switch`'s data plane loaded with p4c's JSON. Names in the STF are P4Info names, which
//! equal the bmv2 JSON names of tables, actions, keys and params in these programs (checked by
//! `stf_names_are_the_p4info_names`), so the runner works from the JSON alone.
//!
//! Output checking is stricter than the STF README asks: every frame the switch sends must be
//! expected, on any port, in per-port order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;

use vmdep::switch::dataplane::Replica;
use vmdep::switch::pipeline::MatchKind;
use vmdep::switch::stf::{self, CounterKind, Statement, StfMatch};
use vmdep::switch::{ActionCall, EntryKey, MatchValue, Outputs, Switch, TableEntry};

fn fixture(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/p4c-reference")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn matches_pattern(frame: &[u8], pattern: &[Option<u8>]) -> bool {
    frame.len() * 2 == pattern.len()
        && frame
            .iter()
            .flat_map(|b| [b >> 4, b & 0xf])
            .zip(pattern)
            .all(|(n, p)| p.is_none_or(|p| p == n))
}

fn pattern_text(pattern: &[Option<u8>]) -> String {
    pattern
        .iter()
        .map(|n| n.map_or('*', |n| char::from_digit(u32::from(n), 16).unwrap()))
        .collect()
}

/// An `expect` line: its line number and nibble pattern.
type ExpectedFrame = (usize, Vec<Option<u8>>);

/// Runs one STF script against a switch; returns the failures found (empty = pass).
fn run_stf(json: &str, script: &str) -> Vec<String> {
    let mut sw = Switch::from_json_str(json).expect("pipeline loads");
    let lines = stf::parse(script).expect("STF parses");
    let mut failures = Vec::new();
    let mut labels: HashMap<String, (usize, EntryKey)> = HashMap::new();
    let mut expected: BTreeMap<u32, VecDeque<ExpectedFrame>> = BTreeMap::new();
    let mut received: BTreeMap<u32, VecDeque<Vec<u8>>> = BTreeMap::new();
    let mut out = Outputs::new();

    for line in lines {
        let at = line.line;
        match line.statement {
            Statement::Add {
                table,
                priority,
                keys,
                action,
                args,
                label,
            } => {
                let program = sw.program();
                let ti = program
                    .table_by_name(&table)
                    .unwrap_or_else(|| panic!("line {at}: no table {table}"));
                let t = &program.tables[ti];
                let mut key = Vec::new();
                for k in &t.keys {
                    let given = keys.iter().find(|(n, _)| *n == k.name).map(|(_, m)| *m);
                    key.push(match (k.kind, given) {
                        (MatchKind::Exact | MatchKind::Valid, Some(StfMatch::Exact(v))) => {
                            MatchValue::Exact(v)
                        }
                        (MatchKind::Lpm, Some(StfMatch::Lpm(value, prefix_len))) => {
                            MatchValue::Lpm { value, prefix_len }
                        }
                        (MatchKind::Lpm, None) => MatchValue::Lpm {
                            value: 0,
                            prefix_len: 0,
                        },
                        (MatchKind::Ternary, Some(StfMatch::Ternary(value, mask))) => {
                            MatchValue::Ternary { value, mask }
                        }
                        (MatchKind::Ternary, None) => MatchValue::Ternary { value: 0, mask: 0 },
                        (MatchKind::Range, Some(StfMatch::Range(low, high))) => {
                            MatchValue::Range { low, high }
                        }
                        (MatchKind::Optional, Some(StfMatch::Exact(v))) => {
                            MatchValue::Optional(Some(v))
                        }
                        (MatchKind::Optional, None) => MatchValue::Optional(None),
                        (kind, m) => panic!("line {at}: key {} ({kind:?}) given {m:?}", k.name),
                    });
                }
                assert_eq!(
                    keys.len(),
                    keys.iter()
                        .filter(|(n, _)| t.keys.iter().any(|k| k.name == *n))
                        .count(),
                    "line {at}: a key name is not one of the table's"
                );
                let action = action_call(&sw, ti, &action, &args, at);
                let priority = priority.unwrap_or(0);
                let entry = TableEntry {
                    key: key.clone(),
                    priority,
                    action,
                    idle_timeout_ns: None,
                };
                sw.insert_entry(ti, entry)
                    .unwrap_or_else(|e| panic!("line {at}: {e}"));
                if let Some(label) = label {
                    labels.insert(label, (ti, EntryKey { key, priority }));
                }
            }
            Statement::SetDefault {
                table,
                action,
                args,
            } => {
                let ti = sw
                    .program()
                    .table_by_name(&table)
                    .unwrap_or_else(|| panic!("line {at}: no table {table}"));
                let call = action_call(&sw, ti, &action, &args, at);
                sw.set_default_action(ti, call)
                    .unwrap_or_else(|e| panic!("line {at}: {e}"));
            }
            Statement::MirroringAdd { session, port } => {
                sw.set_clone_session(session, vec![Replica { port, instance: 0 }], None)
                    .unwrap_or_else(|e| panic!("line {at}: {e}"));
            }
            Statement::Packet { port, data } => {
                out.clear();
                sw.process(port, &data, &mut out);
                for (p, frame) in out.iter() {
                    received.entry(p).or_default().push_back(frame.to_vec());
                }
            }
            Statement::Expect { port, pattern } => {
                expected.entry(port).or_default().push_back((at, pattern));
            }
            Statement::Wait => {}
            Statement::CheckCounter {
                counter,
                index,
                kind,
                op,
                value,
            } => {
                let ci = sw
                    .program()
                    .counter_by_name(&counter)
                    .unwrap_or_else(|| panic!("line {at}: no counter {counter}"));
                let v = match index {
                    Ok(i) => sw.read_counter(ci, i),
                    Err(label) => {
                        let (ti, key) = labels
                            .get(&label)
                            .unwrap_or_else(|| panic!("line {at}: no entry labeled {label}"));
                        assert_eq!(
                            sw.program().counters[ci].direct_table,
                            Some(*ti),
                            "line {at}: {counter} is not the direct counter of {label}'s table"
                        );
                        sw.read_direct_counter(*ti, key)
                    }
                }
                .unwrap_or_else(|e| panic!("line {at}: {e}"));
                let actual = match kind {
                    CounterKind::Packets => v.packets,
                    CounterKind::Bytes => v.bytes,
                };
                if !op.holds(actual, value) {
                    failures.push(format!(
                        "line {at}: {counter} {kind:?} is {actual}, expected {op:?} {value}"
                    ));
                }
            }
        }
    }

    // Every frame sent must be expected, per port and in order.
    let ports: Vec<u32> = expected.keys().chain(received.keys()).copied().collect();
    for port in ports {
        let mut exp = expected.remove(&port).unwrap_or_default();
        let mut got = received.remove(&port).unwrap_or_default();
        loop {
            match (exp.pop_front(), got.pop_front()) {
                (None, None) => break,
                (Some((at, pattern)), Some(frame)) => {
                    if !matches_pattern(&frame, &pattern) {
                        failures.push(format!(
                            "line {at}: port {port}: expected {}, got {}",
                            pattern_text(&pattern),
                            hex(&frame)
                        ));
                    }
                }
                (Some((at, pattern)), None) => failures.push(format!(
                    "line {at}: port {port}: expected {}, nothing came out",
                    pattern_text(&pattern)
                )),
                (None, Some(frame)) => {
                    failures.push(format!("port {port}: unexpected frame {}", hex(&frame)))
                }
            }
        }
    }
    failures
}

fn action_call(
    sw: &Switch,
    table: usize,
    name: &str,
    args: &[(String, u128)],
    at: usize,
) -> ActionCall {
    let program = sw.program();
    let action = program
        .table_action_by_name(table, name)
        .unwrap_or_else(|| panic!("line {at}: {name} is not an action of the table"));
    let params = &program.actions[action].params;
    assert_eq!(params.len(), args.len(), "line {at}: argument count");
    let args = params
        .iter()
        .map(|p| {
            args.iter()
                .find(|(n, _)| *n == p.name)
                .unwrap_or_else(|| panic!("line {at}: missing argument {}", p.name))
                .1
        })
        .collect();
    ActionCall { action, args }
}

fn run_reference(name: &str) {
    let json = fixture(&format!("p4c-out/{name}.json"));
    let script = fixture(&format!("{name}.stf"));
    let failures = run_stf(&json, &script);
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

#[test]
fn ref1_lpm_checksum() {
    run_reference("ref1_lpm_checksum");
}

#[test]
fn ref2_ternary_counters() {
    run_reference("ref2_ternary_counters");
}

#[test]
fn ref3_register_clone_hash() {
    run_reference("ref3_register_clone_hash");
}

#[test]
fn ref4_parser_range() {
    run_reference("ref4_parser_range");
}

const REFERENCES: [&str; 4] = [
    "ref1_lpm_checksum",
    "ref2_ternary_counters",
    "ref3_register_clone_hash",
    "ref4_parser_range",
];

/// Changing any one expectation (a nibble of an `expect`, a counter value) must make the test
/// fail: the runner really checks what the scripts say.
#[test]
fn altered_expectations_fail() {
    for name in REFERENCES {
        let json = fixture(&format!("p4c-out/{name}.json"));
        let script = fixture(&format!("{name}.stf"));
        let lines: Vec<&str> = script.lines().collect();
        let mut altered_any = false;
        for (i, line) in lines.iter().enumerate() {
            let altered = if let Some(rest) = line.strip_prefix("expect ") {
                // Flip the last hex digit of the frame.
                let mut s = rest.trim_end().to_string();
                let last = s.pop().unwrap();
                let flipped = if last == '0' { '1' } else { '0' };
                format!("expect {s}{flipped}")
            } else if line.starts_with("check_counter ") {
                let (head, n) = line.trim_end().rsplit_once(' ').unwrap();
                format!("{head} {}", n.parse::<u64>().unwrap() + 1)
            } else {
                continue;
            };
            let mut changed = lines.clone();
            changed[i] = &altered;
            let failures = run_stf(&json, &changed.join("\n"));
            assert!(
                !failures.is_empty(),
                "{name}: altering line {} ({altered}) did not fail",
                i + 1
            );
            altered_any = true;
        }
        assert!(altered_any, "{name} has no expectations");
        // Removing an expect (a frame that now comes out unexpected) fails too.
        if let Some(i) = lines.iter().position(|l| l.starts_with("expect ")) {
            let mut changed = lines.clone();
            changed.remove(i);
            assert!(!run_stf(&json, &changed.join("\n")).is_empty(), "{name}");
        }
    }
}

/// The STF (P4Info) names of tables, actions, keys and params are the bmv2 JSON names.
#[test]
fn stf_names_are_the_p4info_names() {
    for name in REFERENCES {
        let p4info = fixture(&format!("p4c-out/{name}.p4info.txtpb"));
        let sw = Switch::from_json_str(&fixture(&format!("p4c-out/{name}.json"))).unwrap();
        let program = sw.program();
        // Each `name: "..."` inside a `preamble`, and each match field / param name, must exist
        // in the JSON among tables, actions, counters, registers, keys or params.
        let mut json_names: Vec<String> = Vec::new();
        for t in &program.tables {
            json_names.push(t.name.clone());
            json_names.extend(t.keys.iter().map(|k| k.name.clone()));
        }
        for a in &program.actions {
            json_names.push(a.name.clone());
            json_names.extend(a.params.iter().map(|p| p.name.clone()));
        }
        json_names.extend(program.counters.iter().map(|c| c.name.clone()));
        json_names.extend(program.registers.iter().map(|r| r.name.clone()));
        let mut checked = 0;
        for l in p4info.lines() {
            let l = l.trim();
            if let Some(n) = l.strip_prefix("name: \"").and_then(|r| r.strip_suffix('"')) {
                assert!(
                    json_names.iter().any(|j| j == n),
                    "{name}: P4Info name {n} is not in the JSON"
                );
                checked += 1;
            }
        }
        assert!(checked >= 1, "{name}: found no names");
    }
}

/// The same packet tests on the JSON that `vmdep compile` produces for the same programs: the
/// switch runs p4c's pipeline and vmdep's own identically.
#[test]
fn reference_stf_passes_on_vmdep_compiled_json() {
    for name in REFERENCES {
        let source = fixture(&format!("{name}.p4"));
        let compiled = vmdep::compiler::compile(&source, &format!("{name}.p4"))
            .unwrap_or_else(|d| panic!("{name}:\n{}", d.render(name, &source)));
        let failures = run_stf(&compiled.bmv2_json, &fixture(&format!("{name}.stf")));
        assert!(
            failures.is_empty(),
            "{name} (vmdep compile's JSON):\n{}",
            failures.join("\n")
        );
    }
}

/// vmdep's own data plane: routing, MAC rewrite, TTL, the drops, and exact vm_pair counts.
#[test]
fn vmdep_p4_stf() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("p4/vmdep.p4")).unwrap();
    let compiled = vmdep::compiler::compile(&source, "vmdep.p4")
        .unwrap_or_else(|d| panic!("{}", d.render("p4/vmdep.p4", &source)));
    let script = std::fs::read_to_string(root.join("tests/fixtures/vmdep/vmdep.stf")).unwrap();
    let failures = run_stf(&compiled.bmv2_json, &script);
    assert!(failures.is_empty(), "vmdep.stf:\n{}", failures.join("\n"));
    // The counts are really checked: one byte more must fail.
    let altered = script.replace("bytes == 92", "bytes == 93");
    assert_ne!(altered, script);
    assert!(!run_stf(&compiled.bmv2_json, &altered).is_empty());
}
