//! The switch's pipeline loader takes bmv2 JSON from outside (a file, or a controller's
//! SetForwardingPipelineConfig): corrupted, truncated or structurally altered JSON is refused
//! with an error, never a panic.

use proptest::prelude::*;
use serde_json::Value;
use vmdep::switch::Switch;

const REFERENCES: [&str; 4] = [
    include_str!("fixtures/p4c-reference/p4c-out/ref1_lpm_checksum.json"),
    include_str!("fixtures/p4c-reference/p4c-out/ref2_ternary_counters.json"),
    include_str!("fixtures/p4c-reference/p4c-out/ref3_register_clone_hash.json"),
    include_str!("fixtures/p4c-reference/p4c-out/ref4_parser_range.json"),
];

/// Every leaf of a JSON tree, as a path of object keys / array indices.
fn leaves(v: &Value, path: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                path.push(Value::String(k.clone()));
                leaves(x, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(Value::from(i));
                leaves(x, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn at<'a>(v: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(v, |v, step| match step {
        Value::String(k) => &mut v[k.as_str()],
        Value::Number(i) => &mut v[i.as_u64().unwrap() as usize],
        _ => unreachable!("paths hold keys and indices only"),
    })
}

fn replacement(choice: u8, n: i64) -> Value {
    match choice % 6 {
        0 => Value::Null,
        1 => Value::from(n),
        2 => Value::from(-n.abs() - 1),
        3 => Value::from("x"),
        4 => Value::from(u64::MAX),
        _ => Value::Array(vec![]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// One leaf replaced by a value of another kind or range: the pipeline loads or is refused.
    #[test]
    fn altered_leaves_never_panic(which in 0usize..4, leaf in any::<prop::sample::Index>(),
                                  choice in any::<u8>(), n in any::<i64>()) {
        let mut json: Value = serde_json::from_str(REFERENCES[which]).unwrap();
        let mut all = Vec::new();
        leaves(&json, &mut Vec::new(), &mut all);
        let path = &all[leaf.index(all.len())];
        *at(&mut json, path) = replacement(choice, n);
        let _ = Switch::from_json_str(&json.to_string());
    }

    /// Truncated or byte-corrupted text is an error, not a panic.
    #[test]
    fn corrupted_text_never_panics(which in 0usize..4, cut in any::<prop::sample::Index>(),
                                   flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4)) {
        let mut bytes = REFERENCES[which].as_bytes().to_vec();
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let text = String::from_utf8_lossy(&bytes);
        let _ = Switch::from_json_str(&text);
    }
}

#[test]
fn the_unaltered_references_load() {
    for json in REFERENCES {
        Switch::from_json_str(json).expect("p4c's JSON loads");
    }
}
