//! Fuzzes the P4 front end with arbitrary UTF-8: `parse` must return, never panic or overflow,
//! and every diagnostic must point inside the source and render.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|source: &str| {
    if let Err(diagnostics) = vmdep::compiler::parse(source) {
        assert!(!diagnostics.0.is_empty());
        for d in &diagnostics.0 {
            assert!(d.span.lo <= d.span.hi && d.span.hi as usize <= source.len());
            for (span, _) in &d.notes {
                assert!(span.lo <= span.hi && span.hi as usize <= source.len());
            }
        }
        diagnostics.render("fuzz.p4", source);
    }
});
