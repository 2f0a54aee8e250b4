//! `vmdep compile` as a user runs it: the files it writes, and what a bad program prints.

use std::path::Path;

use prost::Message as _;

mod support;

use support::process::vmdep_command;

#[test]
fn compile_writes_json_and_p4info_text_and_binary() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = vmdep_command()
        .arg("compile")
        .arg(root.join("p4/vmdep.p4"))
        .arg("-o")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("vmdep.json")).unwrap()).unwrap();
    assert!(json["pipelines"].as_array().is_some_and(|p| p.len() == 2));
    let text = std::fs::read_to_string(dir.path().join("vmdep.p4info.txtpb")).unwrap();
    let from_text = vmdep::p4rt::p4info_from_text(&text).unwrap();
    let binary = std::fs::read(dir.path().join("vmdep.p4info.bin")).unwrap();
    let from_binary = vmdep::p4rt::config::P4Info::decode(binary.as_slice()).unwrap();
    assert_eq!(from_text, from_binary);
    assert!(from_text
        .tables
        .iter()
        .any(|t| t.preamble.as_ref().unwrap().name == "MyIngress.vm_pair"));
}

#[test]
fn bad_program_prints_location_source_line_and_caret_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.p4");
    std::fs::write(
        &file,
        "#include <core.p4>\n#include <v1model.p4>\nconst bit<8> X = 0x1ff;\nconst bit<8> Y = Z;\n",
    )
    .unwrap();
    let out = vmdep_command()
        .arg("compile")
        .arg(&file)
        .arg("-o")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let shown = file.display().to_string();
    assert!(
        stderr.contains(&format!("{shown}:4:18: error:")),
        "{stderr}"
    );
    assert!(stderr.contains("4 | const bit<8> Y = Z;"), "{stderr}");
    assert!(stderr.contains("  |                  ^"), "{stderr}");
    assert!(!dir.path().join("bad.json").exists());
}

#[test]
fn missing_file_is_an_error_with_context() {
    let out = vmdep_command()
        .args(["compile", "/nonexistent/x.p4", "-o", "/tmp"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("cannot read /nonexistent/x.p4"), "{stderr}");
}
