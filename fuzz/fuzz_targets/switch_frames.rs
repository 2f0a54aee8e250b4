//! Fuzzes `vmdep switch`'s data plane with arbitrary frames on each p4c reference pipeline (with
//! a few table entries and a clone session installed, so lookups hit and clones egress): frame
//! processing must never panic, and every frame must come out at most once per copy it can make.
//! The first input byte picks the pipeline and the ingress port; the rest is the frame.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use vmdep::switch::dataplane::Replica;
use vmdep::switch::{ActionCall, MatchValue, Outputs, Switch, TableEntry};

const PIPELINES: [&str; 4] = [
    include_str!("../../tests/fixtures/p4c-reference/p4c-out/ref1_lpm_checksum.json"),
    include_str!("../../tests/fixtures/p4c-reference/p4c-out/ref2_ternary_counters.json"),
    include_str!("../../tests/fixtures/p4c-reference/p4c-out/ref3_register_clone_hash.json"),
    include_str!("../../tests/fixtures/p4c-reference/p4c-out/ref4_parser_range.json"),
];

/// At most this many copies of one frame leave: the frame itself and one clone.
const MAX_OUTPUTS: usize = 2;

fn entry(key: Vec<MatchValue>, priority: i32, action: usize, args: Vec<u128>) -> TableEntry {
    TableEntry {
        key,
        priority,
        action: ActionCall { action, args },
        idle_timeout_ns: None,
    }
}

/// A table index and one of its actions, by name.
fn table_action(sw: &Switch, table: &str, action: &str) -> (usize, usize) {
    let p = sw.program();
    let t = p.table_by_name(table).expect("reference table");
    (t, p.table_action_by_name(t, action).expect("reference action"))
}

fn switches() -> &'static Mutex<Vec<Switch>> {
    static SWITCHES: OnceLock<Mutex<Vec<Switch>>> = OnceLock::new();
    SWITCHES.get_or_init(|| {
        let mut all: Vec<Switch> = PIPELINES
            .iter()
            .map(|json| Switch::from_json_str(json).expect("reference pipeline loads"))
            .collect();
        // ref1: a default route and a longer one.
        let (t, route) = table_action(&all[0], "Ing.routes", "Ing.route");
        for (value, prefix_len, port) in [(0, 0, 1), (0x0a00_0000, 8, 2)] {
            let key = vec![MatchValue::Lpm { value, prefix_len }];
            all[0].insert_entry(t, entry(key, 0, route, vec![port, 0xa1])).unwrap();
        }
        // ref2: permit everything to port 2; count one flow.
        let (t, permit) = table_action(&all[1], "Ing.acl", "Ing.permit");
        let any = MatchValue::Ternary { value: 0, mask: 0 };
        all[1].insert_entry(t, entry(vec![any; 3], 1, permit, vec![2])).unwrap();
        let (t, track) = table_action(&all[1], "Ing.flows", "Ing.track");
        let flow = vec![MatchValue::Exact(0x0a00_0001), MatchValue::Exact(0x0a00_0002)];
        all[1].insert_entry(t, entry(flow, 0, track, vec![])).unwrap();
        // ref3: the clone session its ingress clones to.
        let replica = Replica { port: 3, instance: 1 };
        all[2].set_clone_session(5, vec![replica], None).unwrap();
        // ref4: VLAN 0's low ports to port 4.
        let (t, to_port) = table_action(&all[3], "Ing.by_port_range", "Ing.to_port");
        let key = vec![MatchValue::Exact(0), MatchValue::Range { low: 0, high: 1023 }];
        all[3].insert_entry(t, entry(key, 1, to_port, vec![4])).unwrap();
        Mutex::new(all)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let mut all = switches().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let sw = &mut all[usize::from(selector) % PIPELINES.len()];
    let mut out = Outputs::new();
    sw.process(u32::from(selector >> 2), frame, &mut out);
    assert!(out.len() <= MAX_OUTPUTS);
});
