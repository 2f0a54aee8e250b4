//! Our hand-written P4Runtime .proto files against the official definitions: the descriptor set
//! build.rs embeds is compared, message by message and field by field, with the descriptors of
//! the `p4runtime` package from PyPI (tests/python/compare_protos.py).

use std::process::Command;

mod support;

use support::process::venv_python;

#[test]
fn protos_match_the_official_p4runtime_package() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let descriptor_path = dir.path().join("vmdep_p4runtime.desc");
    std::fs::write(&descriptor_path, vmdep::p4rt::FILE_DESCRIPTOR_SET).expect("write descriptors");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/compare_protos.py"
    );

    let output = match Command::new(venv_python())
        .arg(script)
        .arg(&descriptor_path)
        .output()
    {
        Ok(output) => output,
        Err(err) => panic!(
            "cannot run {} ({err}); this test needs the venv with the official P4Runtime \
             definitions: `python3 -m venv target/py-venv && target/py-venv/bin/pip install \
             -r tests/python/requirements.txt` (tests/run-all.sh does this)",
            venv_python()
        ),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(2) => panic!(
            "the official P4Runtime definitions are missing from {}: install \
             tests/python/requirements.txt into it (tests/run-all.sh does this)\n{stderr}",
            venv_python()
        ),
        _ => panic!("our protos differ from the official P4Runtime definitions:\n{stdout}{stderr}"),
    }
    // The script names the files it compared; all six must have been checked.
    for file in [
        "p4/v1/p4runtime.proto",
        "p4/v1/p4data.proto",
        "p4/config/v1/p4info.proto",
        "p4/config/v1/p4types.proto",
        "google/rpc/status.proto",
        "google/rpc/code.proto",
    ] {
        assert!(stderr.contains(file), "{file} was not compared:\n{stderr}");
    }
}
