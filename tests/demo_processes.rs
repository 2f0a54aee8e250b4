//! `vmdep demo --processes` end to end, the built binary with a fixed seed: five `vmdep switch`
//! processes, the controller and four `vmdep host` processes on loopback UDP wires, the demo
//! as the VMs. The checks are the emulated demo's (tests/demo_emulated.rs): every exact count
//! equals the ground truth of the windows its entry was in, nothing above the threshold is
//! missed, nothing is invented, DPI names the workload's protocols with the right roles, the
//! graph files are written; and no child process outlives the demo, also when it is
//! interrupted. `--switch-cmd` runs with vmdep's own switch as the external command.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const VMDEP: &str = env!("CARGO_BIN_EXE_vmdep");

/// A tag in the demo's environment, which its children inherit: how the tests find them.
fn tag(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// The command lines of the processes whose environment carries the tag.
fn tagged(tag: &str) -> Vec<String> {
    let wanted = format!("VMDEP_DEMO_TEST_TAG={tag}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let path = entry.path();
        // Zombies and processes that ended meanwhile have no readable environment.
        let Ok(environ) = std::fs::read(path.join("environ")) else {
            continue;
        };
        if environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes()) {
            let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
            found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

/// The tagged processes still there after waiting up to 5 s for them to go.
fn survivors(tag: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = tagged(tag);
        if found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn demo(tag: &str, out: &Path, extra: &[&str]) -> Output {
    Command::new(VMDEP)
        .args(["demo", "--processes", "--seed", "7", "--duration", "4s"])
        // Denser sampling than the default 1 in 64, so a short run selects enough pairs.
        .args(["--sampling-rate", "16", "-o"])
        .arg(out)
        .args(extra)
        .env("VMDEP_DEMO_TEST_TAG", tag)
        .output()
        .unwrap()
}

/// The checks of the emulated demo's test, on report.json.
fn check_report(out: &Path, min_switch_pairs: usize) -> Value {
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let pairs = report["pairs"].as_array().unwrap();
    let by_switch = pairs
        .iter()
        .filter(|p| {
            p["measured_by"]
                .as_str()
                .is_some_and(|m| m.starts_with('s'))
        })
        .count();
    let by_server = pairs
        .iter()
        .filter(|p| p["same_server"] == true && !p["exact_packets"].is_null())
        .count();
    assert!(by_switch >= min_switch_pairs, "{pairs:#?}");
    assert!(by_server >= 3, "{pairs:#?}");
    for p in pairs.iter().filter(|p| !p["exact_matches"].is_null()) {
        assert_eq!(
            (&p["exact_packets"], &p["exact_bytes"]),
            (&p["expected_packets"], &p["expected_bytes"]),
            "{} → {} measured by {}",
            p["src"],
            p["dst"],
            p["measured_by"]
        );
        assert_eq!(p["exact_matches"], true);
    }
    assert_eq!(report["missed"], serde_json::json!([]));
    assert_eq!(report["phantom"], serde_json::json!([]));

    let mut recognized = BTreeSet::new();
    for l in report["labels"].as_array().unwrap() {
        if l["mirrored"] != true {
            continue;
        }
        assert_eq!(l["roles_swapped"], false, "{l:#?}");
        // Whatever DPI labeled carries the workload's protocol, also for connections that
        // opened before the mirror started.
        if !l["dpi_protocol"].is_null() {
            assert_eq!(l["matches"], true, "{l:#?}");
            recognized.insert(l["truth_protocol"].as_str().unwrap().to_string());
        }
        // DPI's response times near the workload's (generous for a loaded machine; a response
        // paired with the request before it, a client's think time away, fails it).
        if let (Some(truth), Some(dpi)) = (
            l["truth_mean_response_ms"].as_f64(),
            l["dpi_mean_response_ms"].as_f64(),
        ) {
            assert!(dpi <= 2.0 * truth + 20.0, "{l:#?}");
        }
    }
    let named: Vec<&str> = ["http", "tls", "postgresql", "redis", "mysql", "dns"]
        .into_iter()
        .filter(|p| recognized.contains(*p))
        .collect();
    assert!(named.len() >= 3, "recognized only {named:?}");

    let graph: Value =
        serde_json::from_slice(&std::fs::read(out.join("graph.json")).unwrap()).unwrap();
    assert!(graph["edges"].as_array().is_some_and(|e| !e.is_empty()));
    assert!(std::fs::read_to_string(out.join("graph.dot"))
        .unwrap()
        .starts_with("digraph"));
    report
}

#[test]
fn every_part_in_its_own_process_measures_the_workload_exactly() {
    let out = tempfile::tempdir().unwrap();
    let tag = tag("processes");
    let started = Instant::now();
    let output = demo(&tag, out.path(), &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("--processes (every switch, server and the controller its own process)"),
        "{stdout}"
    );
    assert!(stdout.contains("window  4/4"), "{stdout}");
    assert!(
        stdout.contains("0 missed above the threshold; 0 invented"),
        "{stdout}"
    );
    let report = check_report(out.path(), 5);
    assert_eq!(report["windows"], 5, "four windows and the final reading");

    // Every child logged to its own file; the controller's windows came from SIGUSR2.
    for name in [
        "s110",
        "s111",
        "s112",
        "s113",
        "s114",
        "controller",
        "h120",
        "h121",
        "h122",
        "h123",
    ] {
        assert!(
            out.path().join(format!("logs/{name}.log")).exists(),
            "{name}"
        );
    }
    let controller = std::fs::read_to_string(out.path().join("logs/controller.log")).unwrap();
    assert!(controller.contains("window=5"), "{controller}");
    assert_eq!(survivors(&tag), Vec::<String>::new());
    eprintln!("demo --processes took {:?}", started.elapsed());
}

#[test]
fn switches_run_as_an_external_command_in_bmv2s_shape() {
    let out = tempfile::tempdir().unwrap();
    let tag = tag("switch-cmd");
    let switch_cmd = format!("{VMDEP} switch");
    let output = demo(&tag, out.path(), &["--switch-cmd", &switch_cmd]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    check_report(out.path(), 5);
    // Started with bmv2's options: each its own Thrift port, which vmdep's switch accepts.
    let mut thrift_ports = BTreeSet::new();
    for name in ["s110", "s111", "s112", "s113", "s114"] {
        let log = std::fs::read_to_string(out.path().join(format!("logs/{name}.log"))).unwrap();
        let port = log
            .lines()
            .find_map(|l| l.strip_prefix("vmdep switch: --thrift-port "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{name} got no --thrift-port: {log}"))
            .to_string();
        thrift_ports.insert(port);
    }
    assert_eq!(thrift_ports.len(), 5, "{thrift_ports:?}");
    assert_eq!(survivors(&tag), Vec::<String>::new());
}

#[test]
fn an_interrupted_demo_leaves_no_process_behind() {
    let out = tempfile::tempdir().unwrap();
    let tag = tag("interrupted");
    let mut child = Command::new(VMDEP)
        .args(["demo", "--processes", "--duration", "30s", "-o"])
        .arg(out.path())
        .env("VMDEP_DEMO_TEST_TAG", &tag)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first_window = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("window  1/30"));
    assert!(
        first_window.is_some(),
        "the demo ended before its first window"
    );
    // The demo, five switches, the controller and four servers.
    let running = tagged(&tag);
    assert_eq!(running.len(), 11, "{running:#?}");
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: sends SIGINT (Ctrl-C) to our own child, which has not been reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(survivors(&tag), Vec::<String>::new());
}

#[test]
fn switch_processes_options_are_refused_where_they_mean_nothing() {
    for (args, want) in [
        (
            &["demo", "--switch-cmd", "vmdep switch"][..],
            "use it with --processes or --netns",
        ),
        (
            &["demo", "--pipeline", "build/vmdep"][..],
            "--pipeline is for --processes and --netns",
        ),
        (
            &["demo", "--processes", "--switch-cmd", "  "][..],
            "--switch-cmd names no command",
        ),
        (
            &["demo", "--processes", "--netns"][..],
            "cannot be used with",
        ),
    ] {
        let out = tempfile::tempdir().unwrap();
        let output = Command::new(VMDEP)
            .args(args)
            .arg("-o")
            .arg(out.path())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
