//! Snapshot test of the compiler's diagnostics over the corpus of bad programs in
//! `tests/compile_errors/` (see its README.md for how to add a case).

use std::path::Path;

/// The whole compiler (parse, check, lower): every program must fail in it.
fn front_end_diagnostics(source: &str) -> Option<vmdep::compiler::Diagnostics> {
    vmdep::compiler::compile(source, "corpus.p4").err()
}

#[test]
fn every_bad_program_is_rejected_with_the_snapshotted_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compile_errors");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/compile_errors exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "p4"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus went missing: {files:?}");
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(&path).expect("corpus files are UTF-8");
        let shown_path = format!("tests/compile_errors/{name}.p4");
        let diagnostics = front_end_diagnostics(&source)
            .unwrap_or_else(|| panic!("{shown_path} compiled, but it is in the error corpus"));
        for d in &diagnostics.0 {
            assert!(
                d.span.hi as usize <= source.len(),
                "{shown_path}: span {:?} outside the source",
                d.span
            );
        }
        insta::assert_snapshot!(name, diagnostics.render(&shown_path, &source));
    }
}
