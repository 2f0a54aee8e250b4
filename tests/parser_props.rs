//! Property tests of the P4 front end on hostile input: arbitrary text, soups of P4 tokens, and
//! truncated or mutated versions of the reference programs. The parser must return (never panic,
//! hang or overflow its stack), and every diagnostic it returns must point inside the source.

use proptest::prelude::*;
use vmdep::compiler::{parse, Diagnostics};

mod support;

use support::programs::REFERENCE_P4 as REFERENCE;

/// Keywords, names, literals and punctuation of P4_16, including the tricky ones.
const TOKENS: &[&str] = &[
    "header",
    "struct",
    "enum",
    "error",
    "match_kind",
    "typedef",
    "type",
    "const",
    "parser",
    "control",
    "action",
    "table",
    "state",
    "transition",
    "select",
    "apply",
    "key",
    "actions",
    "default_action",
    "entries",
    "priority",
    "size",
    "default",
    "if",
    "else",
    "switch",
    "return",
    "exit",
    "in",
    "out",
    "inout",
    "bit",
    "int",
    "varbit",
    "bool",
    "tuple",
    "true",
    "false",
    "_",
    "header_union",
    "extern",
    "package",
    "for",
    "this",
    "list",
    "value_set",
    "x",
    "h",
    "main",
    "V1Switch",
    "register",
    "hash",
    "0",
    "8w5",
    "16s3",
    "0x0800",
    "0b101",
    "1_000",
    "\"s\"",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    "<",
    ">",
    ">>",
    "<<",
    "<=",
    ">=",
    "=",
    "==",
    "!=",
    ";",
    ",",
    ":",
    ".",
    "..",
    "+",
    "++",
    "-",
    "|+|",
    "|-|",
    "*",
    "/",
    "%",
    "&",
    "&&",
    "&&&",
    "|",
    "||",
    "^",
    "~",
    "!",
    "?",
    "@",
    "@name(\"n\")",
    "/*",
    "*/",
    "//",
    "#include <core.p4>\n",
    "#define",
    "\n",
    "\u{e9}",
];

/// Parses and checks the result is well formed; returns the diagnostics on failure.
fn parse_checked(source: &str) -> Option<Diagnostics> {
    match parse(source) {
        Ok(program) => {
            for d in &program.decls {
                assert!(d.span.lo <= d.span.hi && d.span.hi as usize <= source.len());
            }
            None
        }
        Err(diagnostics) => {
            assert!(!diagnostics.0.is_empty(), "an error without a diagnostic");
            for d in &diagnostics.0 {
                let spans = std::iter::once(d.span).chain(d.notes.iter().map(|n| n.0));
                for s in spans {
                    assert!(
                        s.lo <= s.hi && s.hi as usize <= source.len(),
                        "span {s:?} outside a source of {} bytes: {}",
                        source.len(),
                        d.message
                    );
                }
            }
            // Rendering must cope with every span the parser produces.
            let rendered = diagnostics.render("prop.p4", source);
            assert!(rendered.contains("error:"));
            Some(diagnostics)
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One edit of a program: delete a range, insert a token, or overwrite a byte.
#[derive(Clone, Debug)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: &'static str },
    Overwrite { at: usize, with: char },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), prop::sample::select(TOKENS))
            .prop_map(|(at, token)| Edit::Insert { at, token }),
        (any::<usize>(), prop::char::range(' ', '~'))
            .prop_map(|(at, with)| Edit::Overwrite { at, with }),
    ]
}

fn apply_edit(src: &mut String, e: &Edit) {
    if src.is_empty() {
        return;
    }
    match *e {
        Edit::Delete { at, len } => {
            let lo = floor_char_boundary(src, at % src.len());
            let hi = floor_char_boundary(src, lo + len);
            src.replace_range(lo..hi, "");
        }
        Edit::Insert { at, token } => {
            let at = floor_char_boundary(src, at % src.len());
            src.insert_str(at, token);
        }
        Edit::Overwrite { at, with } => {
            let lo = floor_char_boundary(src, at % src.len());
            let hi = lo + src[lo..].chars().next().map_or(0, char::len_utf8);
            src.replace_range(lo..hi, with.encode_utf8(&mut [0; 4]));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(source in any::<String>()) {
        parse_checked(&source);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        parse_checked(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn token_soup_never_panics(
        tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..300),
        separator in prop::sample::select(&[" ", "", "\n"][..]),
    ) {
        parse_checked(&tokens.join(separator));
    }

    #[test]
    fn truncated_reference_programs_never_panic(which in 0..REFERENCE.len(), cut in any::<usize>()) {
        let src = REFERENCE[which];
        let cut = floor_char_boundary(src, cut % (src.len() + 1));
        parse_checked(&src[..cut]);
    }

    #[test]
    fn mutated_reference_programs_never_panic(
        which in 0..REFERENCE.len(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let mut src = REFERENCE[which].to_string();
        for e in &edits {
            apply_edit(&mut src, e);
        }
        parse_checked(&src);
    }
}

#[test]
fn reference_programs_parse_and_deleting_a_semicolon_is_reported() {
    for src in REFERENCE {
        assert!(parse_checked(src).is_none());
        // Every `;` the grammar requires: removing it must be an error, not silently accepted.
        let first_field_semi = src.find("bit<48> dst;").unwrap() + "bit<48> dst".len();
        let mut broken = src.to_string();
        broken.remove(first_field_semi);
        let d = parse_checked(&broken).expect("a missing `;` is an error");
        assert!(d.0[0].message.starts_with("expected `;` after field `dst`"));
    }
}
