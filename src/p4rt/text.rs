//! P4Info in protobuf text format (the `.p4info.txtpb` files p4c writes and bmv2 reads), through
//! prost-reflect's dynamic messages over the embedded descriptor set.
//!
//! Parsing is prost-reflect's. Printing is our own walk over the dynamic message, because
//! prost-reflect prints repeated fields in list syntax (`tables: [{...}, {...}]`), which is valid
//! but unlike what p4c and protoc write (one `tables { ... }` block per element) and what people
//! expect to diff against p4c's output.

use std::fmt::Write as _;

use prost::Message;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value};
use thiserror::Error;

use super::config::P4Info;
use super::descriptor_pool;

const P4INFO_MESSAGE: &str = "p4.config.v1.P4Info";

/// Why a P4Info text could not be read.
#[derive(Debug, Error)]
pub enum TextFormatError {
    #[error("invalid P4Info text: {0}")]
    Parse(#[from] prost_reflect::text_format::ParseError),
    #[error("P4Info text does not decode as p4.config.v1.P4Info: {0}")]
    Decode(#[from] prost::DecodeError),
}

fn p4info_descriptor() -> MessageDescriptor {
    descriptor_pool()
        .get_message_by_name(P4INFO_MESSAGE)
        .expect("the embedded descriptor set defines p4.config.v1.P4Info")
}

/// Prints a P4Info as text format the way protoc and p4c do: fields in number order, one
/// block or line per element of a repeated field, two-space indentation.
pub fn p4info_to_text(p4info: &P4Info) -> String {
    let mut dynamic = DynamicMessage::new(p4info_descriptor());
    // The generated type and the descriptor come from the same .proto files, so the bytes of
    // one always decode as the other.
    dynamic
        .transcode_from(p4info)
        .expect("P4Info transcodes to its own descriptor");
    let mut text = String::new();
    print_message(&mut text, &dynamic, 0);
    text
}

fn print_message(out: &mut String, message: &DynamicMessage, depth: usize) {
    let mut fields: Vec<_> = message.fields().collect();
    fields.sort_by_key(|(field, _)| field.number());
    for (field, value) in fields {
        match value {
            Value::List(items) => {
                for item in items {
                    print_field(out, &field, item, depth);
                }
            }
            Value::Map(entries) => {
                let mut entries: Vec<_> = entries.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                let entry_kind = field.kind();
                let value_field = entry_kind
                    .as_message()
                    .map(|entry| entry.map_entry_value_field());
                for (key, entry_value) in entries {
                    indent(out, depth);
                    let _ = writeln!(out, "{} {{", field.name());
                    indent(out, depth + 1);
                    out.push_str("key: ");
                    print_map_key(out, key);
                    out.push('\n');
                    if let Some(value_field) = &value_field {
                        print_field(out, value_field, entry_value, depth + 1);
                    }
                    indent(out, depth);
                    out.push_str("}\n");
                }
            }
            single => print_field(out, &field, single, depth),
        }
    }
}

/// One `name: scalar` line or one `name { ... }` block.
fn print_field(out: &mut String, field: &FieldDescriptor, value: &Value, depth: usize) {
    indent(out, depth);
    out.push_str(field.name());
    if let Value::Message(message) = value {
        out.push_str(" {\n");
        print_message(out, message, depth + 1);
        indent(out, depth);
        out.push_str("}\n");
        return;
    }
    out.push_str(": ");
    match value {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::I32(n) => out.push_str(&n.to_string()),
        Value::I64(n) => out.push_str(&n.to_string()),
        Value::U32(n) => out.push_str(&n.to_string()),
        Value::U64(n) => out.push_str(&n.to_string()),
        Value::F32(x) => print_float(out, f64::from(*x)),
        Value::F64(x) => print_float(out, *x),
        Value::String(s) => print_quoted(out, s.as_bytes()),
        Value::Bytes(b) => print_quoted(out, b),
        Value::EnumNumber(number) => {
            let name = match field.kind() {
                Kind::Enum(e) => e.get_value(*number).map(|v| v.name().to_string()),
                _ => None,
            };
            out.push_str(&name.unwrap_or_else(|| number.to_string()));
        }
        // Lists and maps are expanded by print_message, messages handled above.
        Value::Message(_) | Value::List(_) | Value::Map(_) => {}
    }
    out.push('\n');
}

fn print_map_key(out: &mut String, key: &MapKey) {
    match key {
        MapKey::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        MapKey::I32(n) => out.push_str(&n.to_string()),
        MapKey::I64(n) => out.push_str(&n.to_string()),
        MapKey::U32(n) => out.push_str(&n.to_string()),
        MapKey::U64(n) => out.push_str(&n.to_string()),
        MapKey::String(s) => print_quoted(out, s.as_bytes()),
    }
}

fn print_float(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("nan");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "inf" } else { "-inf" });
    } else {
        out.push_str(&x.to_string());
    }
}

/// A double-quoted string; everything outside printable ASCII as a three-digit octal escape.
fn print_quoted(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Parses a P4Info from text format (comments and either field order accepted).
pub fn p4info_from_text(text: &str) -> Result<P4Info, TextFormatError> {
    let dynamic = DynamicMessage::parse_text_format(p4info_descriptor(), text)?;
    Ok(P4Info::decode(dynamic.encode_to_vec().as_slice())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p4rt::config::{
        counter_spec, Action, Counter, CounterSpec, P4HeaderTypeSpec, P4TypeInfo, Preamble, Table,
    };

    #[test]
    fn small_p4info_round_trips() {
        let p4info = P4Info {
            tables: vec![Table {
                preamble: Some(Preamble {
                    id: 0x0200_0001,
                    name: "Ingress.vm_pair".into(),
                    alias: "vm_pair".into(),
                    ..Default::default()
                }),
                size: 1024,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = p4info_to_text(&p4info);
        assert!(text.contains("name: \"Ingress.vm_pair\""), "{text}");
        assert_eq!(p4info_from_text(&text).unwrap(), p4info);
    }

    #[test]
    fn escapes_maps_and_enums_round_trip() {
        let mut headers = std::collections::HashMap::new();
        for name in ["ipv4_t", "ethernet_t"] {
            headers.insert(name.to_string(), P4HeaderTypeSpec::default());
        }
        let p4info = P4Info {
            actions: vec![Action {
                preamble: Some(Preamble {
                    id: 0x0100_0001,
                    name: "Ing.caf\u{e9}\t\"quoted\"\\".into(),
                    annotations: vec!["@name(\"x\")\n\u{1}".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            counters: vec![Counter {
                spec: Some(CounterSpec {
                    unit: counter_spec::Unit::Packets as i32,
                }),
                ..Default::default()
            }],
            type_info: Some(P4TypeInfo {
                headers,
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = p4info_to_text(&p4info);
        assert!(text.contains("unit: PACKETS\n"), "{text}");
        assert!(
            text.contains("name: \"Ing.caf\\303\\251\\t\\\"quoted\\\"\\\\\"\n"),
            "{text}"
        );
        // Map entries sorted by key, one block each.
        let ethernet = text.find("key: \"ethernet_t\"").unwrap();
        let ipv4 = text.find("key: \"ipv4_t\"").unwrap();
        assert!(ethernet < ipv4, "{text}");
        assert_eq!(p4info_from_text(&text).unwrap(), p4info);
    }

    proptest::proptest! {
        #[test]
        fn printed_names_parse_back(name in ".*", annotation in proptest::collection::vec(proptest::num::u8::ANY, 0..8), id: u32) {
            let p4info = P4Info {
                tables: vec![Table {
                    preamble: Some(Preamble {
                        id,
                        name,
                        annotations: vec![String::from_utf8_lossy(&annotation).into_owned()],
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            };
            proptest::prop_assert_eq!(p4info_from_text(&p4info_to_text(&p4info)).unwrap(), p4info);
        }

        #[test]
        fn arbitrary_text_is_an_error_or_a_p4info(text in ".{0,200}") {
            let _ = p4info_from_text(&text);
        }
    }

    #[test]
    fn bad_text_is_an_error() {
        assert!(matches!(
            p4info_from_text("tables { preamble { id: \"x\" } }"),
            Err(TextFormatError::Parse(_))
        ));
        assert!(matches!(
            p4info_from_text("no_such_field: 1"),
            Err(TextFormatError::Parse(_))
        ));
        assert!(matches!(
            p4info_from_text("tables {"),
            Err(TextFormatError::Parse(_))
        ));
    }
}

#[cfg(test)]
mod reference_tests {
    use super::*;

    /// Every P4Info p4c wrote for the reference programs parses, prints as p4c printed it, and
    /// parses back equal.
    #[test]
    fn p4c_reference_p4infos_round_trip() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/p4c-reference/p4c-out"
        );
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().ends_with(".p4info.txtpb") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed =
                p4info_from_text(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_ne!(parsed, P4Info::default(), "{}", path.display());
            let printed = p4info_to_text(&parsed);
            // Byte for byte what p4c wrote, once its leading comment header is set aside.
            let p4c_body: String = text
                .lines()
                .skip_while(|l| l.starts_with('#') || l.is_empty())
                .map(|l| format!("{l}\n"))
                .collect();
            assert_eq!(printed, p4c_body, "{}", path.display());
            let reparsed = p4info_from_text(&printed)
                .unwrap_or_else(|e| panic!("{} reprinted: {e}\n{printed}", path.display()));
            assert_eq!(reparsed, parsed, "{}", path.display());
            seen += 1;
        }
        assert_eq!(seen, 4, "expected the four reference P4Infos in {dir}");
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;

    /// The printed form of a p4c P4Info: one field a line, nested messages indented.
    #[test]
    fn prints_like_protobuf_text_format() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/p4c-reference/p4c-out/ref2_ternary_counters.p4info.txtpb"
        ))
        .unwrap();
        insta::assert_snapshot!(p4info_to_text(&p4info_from_text(&text).unwrap()));
    }
}
