//! `vmdep switch` on Linux interfaces (AF_PACKET ports), in network namespaces this test makes.
//!
//! Two namespaces, unique to the run: the switch's and the peer's, joined by two veth pairs
//! (switch port 1 ↔ peer `vdp1`, port 2 ↔ `vdp2`). No namespace gets an address or a route but
//! the switch's loopback, where its P4Runtime server listens; the root namespace is untouched.
//! The namespaces (and with them the veths) are deleted when the test ends, however it ends.
//!
//! The switch runs a small pipeline (compiled here) that sends the test's EtherType from port 1
//! to 2 and back with a rewritten source MAC, and drops everything else. The peer is
//! tests/python/af_packet_peer.py, the system python3 with its own AF_PACKET sockets.
//!
//! Needs root. Skipped without it, except under CI (CI=true), where it must run.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Sends EtherType 0x88b5 across (1 → 2, anything else → 1) and marks it with a source MAC
/// naming the egress port.
const CROSSOVER_P4: &str = r#"
#include <core.p4>
#include <v1model.p4>

header ethernet_t {
    bit<48> dstAddr;
    bit<48> srcAddr;
    bit<16> etherType;
}
struct headers_t { ethernet_t ethernet; }
struct metadata_t { }

parser P(packet_in packet, out headers_t hdr, inout metadata_t meta,
         inout standard_metadata_t sm) {
    state start {
        packet.extract(hdr.ethernet);
        transition accept;
    }
}
control NoVerify(inout headers_t hdr, inout metadata_t meta) { apply { } }
control Crossover(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t sm) {
    apply {
        if (hdr.ethernet.etherType != 0x88b5) {
            mark_to_drop(sm);
        } else if (sm.ingress_port == 1) {
            sm.egress_spec = 2;
            hdr.ethernet.srcAddr = 0x02000000aa02;
        } else {
            sm.egress_spec = 1;
            hdr.ethernet.srcAddr = 0x02000000aa01;
        }
    }
}
control NoEgress(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t sm) {
    apply { }
}
control NoCompute(inout headers_t hdr, inout metadata_t meta) { apply { } }
control D(packet_out packet, in headers_t hdr) {
    apply { packet.emit(hdr.ethernet); }
}
V1Switch(P(), NoVerify(), Crossover(), NoEgress(), NoCompute(), D()) main;
"#;

const WAIT: Duration = Duration::from_secs(20);

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// True when the test can run; false (skip) when not root outside CI; panics when not root in CI.
fn root_or_skip() -> bool {
    let uid = run("id", &["-u"]);
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "switch_af_packet needs root (network namespaces, AF_PACKET) and CI must run it as root"
    );
    eprintln!("switch_af_packet: skipped, needs root (network namespaces, AF_PACKET sockets)");
    false
}

/// A network namespace, deleted (with its interfaces) on drop.
struct Netns(String);

impl Netns {
    fn add(name: String) -> Netns {
        run("ip", &["netns", "add", &name]);
        Netns(name)
    }

    fn run(&self, args: &[&str]) {
        let mut full = vec!["netns", "exec", &self.0];
        full.extend_from_slice(args);
        run("ip", &full);
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.0, program]);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Kills a child when the test ends, however it ends.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Namespace names no other run (or test in this run) uses.
fn unique_name(role: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "vmdep-{role}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A frame of the test's EtherType to a MAC that is neither veth's (so promiscuous mode
/// matters), numbered `n`.
fn test_frame(n: u8) -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0xbb, 0xbb, 0x02, 0, 0, 0, 0xcc, n, 0x88, 0xb5,
    ];
    f.extend((0..46u8).map(|i| i.wrapping_mul(n)));
    f
}

fn marked(frame: &[u8], egress: u8) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0xaa, egress]);
    out
}

#[test]
fn switch_forwards_between_veths_in_namespaces() {
    if !root_or_skip() {
        return;
    }
    let compiled = vmdep::compiler::compile(CROSSOVER_P4, "crossover.p4")
        .unwrap_or_else(|d| panic!("crossover.p4 does not compile: {d}"));
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("crossover.json");
    std::fs::write(&json, &compiled.bmv2_json).unwrap();

    let switch_ns = Netns::add(unique_name("sw"));
    let peer_ns = Netns::add(unique_name("peer"));
    for (switch_end, peer_end) in [("vds1", "vdp1"), ("vds2", "vdp2")] {
        // Both ends are created directly inside their namespaces.
        run(
            "ip",
            &[
                "link",
                "add",
                switch_end,
                "netns",
                &switch_ns.0,
                "type",
                "veth",
                "peer",
                "name",
                peer_end,
                "netns",
                &peer_ns.0,
            ],
        );
        switch_ns.run(&["ip", "link", "set", switch_end, "up"]);
        peer_ns.run(&["ip", "link", "set", peer_end, "up"]);
    }
    // The P4Runtime server needs a loopback to listen on, inside the switch's namespace.
    switch_ns.run(&["ip", "link", "set", "lo", "up"]);

    let mut switch = Reaper(
        switch_ns
            .command(env!("CARGO_BIN_EXE_vmdep"))
            .args(["switch", "-i", "1@vds1", "-i", "2@vds2"])
            .arg(&json)
            .args(["--", "--grpc-server-addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vmdep switch in its namespace"),
    );
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stderr = switch.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut ports = Vec::new();
    loop {
        let line = lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("vmdep switch did not start ({e}); ports so far {ports:?}"));
        if let Some(rest) = line.strip_prefix("vmdep switch: port ") {
            ports.push(rest.to_string());
        }
        if line.starts_with("vmdep switch: P4Runtime on ") {
            // Ports are printed after this line; both are expected.
            let second = lines.recv_timeout(WAIT).unwrap();
            let third = lines.recv_timeout(WAIT).unwrap();
            assert_eq!(
                [second, third],
                [
                    "vmdep switch: port 1 on interface vds1",
                    "vmdep switch: port 2 on interface vds2"
                ]
            );
            break;
        }
    }

    // Dozens of frames each way, sent back to back, for the switch to take and send in batches.
    let to_2: Vec<Vec<u8>> = (10..=39).map(test_frame).collect();
    let to_1: Vec<Vec<u8>> = (50..=78).map(test_frame).collect();
    let mut send = Vec::new();
    for (a, b) in to_2.iter().zip(to_1.iter().map(Some).chain([None])) {
        send.push(serde_json::json!(["vdp1", hex(a)]));
        if let Some(b) = b {
            send.push(serde_json::json!(["vdp2", hex(b)]));
        }
    }
    let spec = serde_json::json!({
        "send": send,
        "expect": {"vdp1": to_1.len(), "vdp2": to_2.len()},
        // Long enough for a frame the switch wrongly took as input to come out.
        "quiet_ms": 500,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/af_packet_peer.py");
    let mut peer = Reaper(
        peer_ns
            .command("python3")
            .arg(&script)
            .arg(spec.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run the peer in its namespace"),
    );
    let mut peer_out = BufReader::new(peer.0.stdout.take().unwrap());
    let mut line = String::new();
    peer_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "LISTENING", "the peer did not start");

    // A frame the switch's host itself sends out of vds1 (what the host's own stack does) must
    // go out to vdp1 and not be taken as input by the switch, which would forward it to vdp2.
    let host_frame = test_frame(9);
    let host_spec = serde_json::json!({
        "send": [["vds1", hex(&host_frame)]], "expect": {}, "quiet_ms": 0,
    });
    let host = switch_ns
        .command("python3")
        .arg(&script)
        .arg(host_spec.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        host.status.success(),
        "host-side sender failed: {}",
        String::from_utf8_lossy(&host.stderr)
    );

    writeln!(peer.0.stdin.as_mut().unwrap()).unwrap();
    line.clear();
    peer_out.read_line(&mut line).unwrap();
    let status = peer.0.wait().unwrap();
    assert!(status.success(), "peer failed: {status}");
    let received: serde_json::Value = serde_json::from_str(&line).unwrap();
    let on_vdp1: Vec<String> = [hex(&host_frame)]
        .into_iter()
        .chain(to_1.iter().map(|f| hex(&marked(f, 1))))
        .collect();
    let on_vdp2: Vec<String> = to_2.iter().map(|f| hex(&marked(f, 2))).collect();
    let expected = serde_json::json!({"vdp1": on_vdp1, "vdp2": on_vdp2});
    assert_eq!(received, expected);

    // The switch stops cleanly on SIGTERM.
    run("kill", &["-TERM", &switch.0.id().to_string()]);
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = switch.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "vmdep switch ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "vmdep switch exited with {status}");
}

#[test]
fn a_missing_interface_is_a_clear_startup_error() {
    if !root_or_skip() {
        return;
    }
    let ns = Netns::add(unique_name("lone"));
    let output = ns
        .command(env!("CARGO_BIN_EXE_vmdep"))
        .args(["switch", "--no-p4", "-i", "1@vdabsent0"])
        .args(["--", "--grpc-server-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot open interface vdabsent0 for port 1"),
        "{stderr}"
    );
}
