//! `bmv2/run-demo.sh`, the script for users who have bmv2 and p4c: it refuses clearly when
//! simple_switch_grpc or p4c is missing, and its whole path (compile, then `vmdep demo --netns
//! --switch-cmd CMD --pipeline PREFIX`) runs with vmdep's own switch and compiler standing in
//! for them (the real bmv2 cannot be installed here; see bmv2/README.md).
//!
//! The full run needs root (network namespaces, Open vSwitch): skipped without it, except
//! under CI (CI=true), where it must run.

use std::path::Path;
use std::process::{Command, Output};

mod support;

use support::env::root_or_skip;

const VMDEP: &str = env!("CARGO_BIN_EXE_vmdep");

fn script(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("bmv2/run-demo.sh"));
    command.args(args).env("VMDEP", VMDEP);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn the_script_refuses_clearly_without_bmv2_or_p4c() {
    if installed("simple_switch_grpc") || installed("p4c") {
        eprintln!("bmv2_script: bmv2 or p4c is installed in /usr/bin; cannot test their absence");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("run").display().to_string();
    let without_bmv2 = script(&[("PATH", "/usr/bin:/bin"), ("OUT", &out_dir)], &[]);
    assert_eq!(without_bmv2.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&without_bmv2.stderr);
    assert!(
        stderr.contains("simple_switch_grpc not found: install bmv2"),
        "{stderr}"
    );

    let switch = format!("{VMDEP} switch");
    let without_p4c = script(
        &[
            ("PATH", "/usr/bin:/bin"),
            ("OUT", &out_dir),
            ("VMDEP_SWITCH_CMD", &switch),
        ],
        &[],
    );
    assert_eq!(without_p4c.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&without_p4c.stderr);
    assert!(stderr.contains("p4c not found"), "{stderr}");
    assert!(stderr.contains("VMDEP_P4_COMPILER=vmdep"), "{stderr}");
    // Nothing was made.
    assert!(!out.path().join("run").exists());
}

#[test]
fn the_script_runs_the_netns_demo_with_the_switches_as_an_external_command() {
    if !root_or_skip("bmv2_script", "network namespaces, veths, Open vSwitch") {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let switch = format!("{VMDEP} switch");
    let output = script(
        &[
            ("OUT", &out.path().display().to_string()),
            ("VMDEP_SWITCH_CMD", &switch),
            ("VMDEP_P4_COMPILER", "vmdep"),
        ],
        &["--duration", "3s", "--seed", "7", "--sampling-rate", "16"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("0 missed above the threshold; 0 invented"),
        "{stdout}"
    );
    assert!(out.path().join("build/vmdep.json").exists());

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    let pairs = report["pairs"].as_array().unwrap();
    let measured: Vec<_> = pairs
        .iter()
        .filter(|p| !p["exact_matches"].is_null())
        .collect();
    assert!(measured.len() >= 5, "{pairs:#?}");
    for p in measured {
        assert_eq!(p["exact_matches"], true, "{p:#?}");
    }
    // DPI labeled what was mirrored, among the same-server conversations h120's DNS lookups
    // (one datagram each way, all in the first window) and h123's backup stream.
    support::labels::assert_mirrored_conversations_labeled(&report, 3);
    let labels = report["labels"].as_array().unwrap();
    for (client, server) in [("web1", "dns1"), ("client1", "dns1"), ("backup1", "db2")] {
        assert!(
            labels
                .iter()
                .any(|l| l["client"] == client && l["server"] == server),
            "{client} → {server} is a conversation of the workload: {labels:#?}"
        );
    }
    // The switches were processes of the given command, on the lab's veths, with bmv2's
    // options.
    for name in ["s110", "s111", "s112", "s113", "s114"] {
        let log = std::fs::read_to_string(out.path().join(format!("logs/{name}.log"))).unwrap();
        assert!(log.contains("vmdep switch: --thrift-port"), "{log}");
        assert!(log.contains("on interface"), "{log}");
    }
}
