//! The checker and the bmv2 back end must turn any program the parser accepts into JSON or
//! diagnostics, never a panic: compile mutants of the reference programs (a span of bytes
//! removed or duplicated, or a token swapped).

use proptest::prelude::*;

mod support;

use support::programs::{REFERENCE_P4, VMDEP_P4};

const SOURCES: &[&str] = &[
    REFERENCE_P4[0],
    REFERENCE_P4[1],
    REFERENCE_P4[2],
    REFERENCE_P4[3],
    VMDEP_P4,
];

/// Replacement tokens that keep programs parseable but stress the checker.
const TOKENS: &[&str] = &[
    "8w300",
    "true",
    "h",
    "sm",
    "1",
    "(bit<4>)",
    "exit;",
    "return;",
    "_",
    "error.NoMatch",
    "drop()",
    "0x0800",
];

fn mutate(src: &str, at: usize, len: usize, kind: u8, token: usize) -> String {
    let mut at = at % src.len();
    while !src.is_char_boundary(at) {
        at -= 1;
    }
    let mut end = (at + len).min(src.len());
    while !src.is_char_boundary(end) {
        end -= 1;
    }
    match kind % 3 {
        0 => format!("{}{}", &src[..at], &src[end..]),
        1 => format!("{}{}{}", &src[..end], &src[at..end], &src[end..]),
        _ => format!(
            "{}{}{}",
            &src[..at],
            TOKENS[token % TOKENS.len()],
            &src[end..]
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn mutated_programs_compile_or_report(which in 0usize..5, at in 0usize..10_000, len in 0usize..12, kind in 0u8..3, token in 0usize..64) {
        let src = mutate(SOURCES[which], at, len, kind, token);
        if let Err(d) = vmdep::compiler::compile(&src, "mutant.p4") {
            prop_assert!(!d.0.is_empty());
            for x in &d.0 {
                prop_assert!(x.span.hi as usize <= src.len());
            }
        }
    }
}
