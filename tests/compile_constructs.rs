//! Small programs in `tests/compile_constructs/`, each exercising one construct of the P4
//! subset: they compile, deterministically, to the snapshotted bmv2 JSON (read each snapshot
//! when it changes: it is the contract with the switch).

use std::path::Path;

#[test]
fn every_construct_program_compiles_to_its_snapshot() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compile_constructs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/compile_constructs exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "p4"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the corpus went missing: {files:?}");
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let file = format!("{name}.p4");
        let source = std::fs::read_to_string(&path).expect("UTF-8 source");
        let out = vmdep::compiler::compile(&source, &file)
            .unwrap_or_else(|d| panic!("{}", d.render(&file, &source)));
        let again = vmdep::compiler::compile(&source, &file).expect("compiles twice");
        assert_eq!(out.bmv2_json, again.bmv2_json, "{name}: not deterministic");
        insta::assert_snapshot!(name, out.bmv2_json);
    }
}
