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
//! Bursts: hundreds of frames back to back one way, then the other, arrive whole and in order;
//! with the switch stopped (SIGSTOP, a host that gives it no CPU) its socket buffer keeps
//! thousands, and what overflows it is counted by the switch, exactly.
//!
//! Needs root. Skipped without it, except under CI (CI=true), where it must run.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

mod support;

use support::env::root_or_skip;
use support::process::{assert_stops_on_sigterm, lines, Reaper};

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

/// A network namespace, deleted (with its interfaces) on drop.
struct Netns(String);

impl Netns {
    fn add(name: String) -> Netns {
        run("ip", &["netns", "add", &name]);
        Netns(name)
    }

    fn run(&self, args: &[&str]) {
        self.output(args);
    }

    fn output(&self, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.0];
        full.extend_from_slice(args);
        run("ip", &full)
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
/// matters), numbered `n` (in the source MAC and the payload's first bytes).
fn test_frame(n: u16) -> Vec<u8> {
    let [hi, lo] = n.to_be_bytes();
    let mut f = vec![
        0x02, 0, 0, 0, 0xbb, 0xbb, 0x02, 0, 0, 0, hi, lo, 0x88, 0xb5, hi, lo,
    ];
    f.extend((0..44u8).map(|i| i.wrapping_mul(lo)));
    f
}

fn marked(frame: &[u8], egress: u8) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0xaa, egress]);
    out
}

/// The switch's namespace and the peer's, joined by two veth pairs, with `vmdep switch`
/// running the crossover pipeline on ports 1 (vds1) and 2 (vds2).
struct Lab {
    // Field order is drop order: the switch stops before its namespaces go.
    switch: Reaper,
    /// The switch's log lines after startup.
    log: std::sync::mpsc::Receiver<String>,
    switch_ns: Netns,
    peer_ns: Netns,
    dir: tempfile::TempDir,
}

impl Lab {
    fn start() -> Lab {
        let compiled = vmdep::compiler::compile(CROSSOVER_P4, "crossover.p4")
            .unwrap_or_else(|d| panic!("crossover.p4 does not compile: {d}"));
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("crossover.json");
        std::fs::write(&json, &compiled.bmv2_json).unwrap();

        let switch_ns = Netns::add(unique_name("sw"));
        let peer_ns = Netns::add(unique_name("peer"));
        for ns in [&switch_ns, &peer_ns] {
            // No IPv6 chatter (router solicitations, MLD) on the veths: their packet counters
            // then count the test's frames only. Not every kernel has IPv6.
            ns.run(&[
                "sh",
                "-c",
                "for f in all default; do p=/proc/sys/net/ipv6/conf/$f/disable_ipv6; \
                 [ ! -e $p ] || echo 1 > $p; done",
            ]);
        }
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
                // Info: the drop summary at shutdown is logged even when nothing was dropped.
                .args([
                    "switch",
                    "--log",
                    "vmdep=info",
                    "-i",
                    "1@vds1",
                    "-i",
                    "2@vds2",
                ])
                .arg(&json)
                .args(["--", "--grpc-server-addr", "127.0.0.1:0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start vmdep switch in its namespace"),
        );
        let lines = lines(switch.0.stderr.take().unwrap());
        let mut ports = Vec::new();
        loop {
            let line = lines.recv_timeout(WAIT).unwrap_or_else(|e| {
                panic!("vmdep switch did not start ({e}); ports so far {ports:?}")
            });
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
        Lab {
            switch,
            log: lines,
            switch_ns,
            peer_ns,
            dir,
        }
    }

    /// Starts the peer script in `ns` on `spec`; returns once its sockets are open.
    fn peer(&self, ns: &Netns, spec: &serde_json::Value) -> Peer {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = self.dir.path().join(format!(
            "peer-{}.json",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, spec.to_string()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/af_packet_peer.py");
        let mut child = Reaper(
            ns.command("python3")
                .arg(&script)
                .arg(&path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("run the peer in its namespace"),
        );
        let mut out = BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "LISTENING", "the peer did not start");
        Peer { child, out }
    }

    /// Sends `frames` from the peer's `interface` and waits until it has sent them all.
    fn send_from_peer(&self, interface: &str, frames: &[Vec<u8>]) {
        let send: Vec<_> = frames
            .iter()
            .map(|f| serde_json::json!([interface, hex(f)]))
            .collect();
        let spec = serde_json::json!({
            "phases": [{"send": send, "expect": {}}], "quiet_ms": 0,
        });
        self.peer(&self.peer_ns, &spec).finish();
    }

    fn signal(&self, signal: &str) {
        run("kill", &[signal, &self.switch.0.id().to_string()]);
    }

    /// Packets the switch namespace's `interface` received and sent.
    fn counters(&self, interface: &str) -> (u64, u64) {
        let output = self
            .switch_ns
            .output(&["ip", "-j", "-s", "link", "show", interface]);
        let links: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let stats = &links[0]["stats64"];
        let packets = |way: &str| stats[way]["packets"].as_u64().unwrap();
        (packets("rx"), packets("tx"))
    }

    /// Bytes queued in the switch's sockets on `interface`, not yet read (/proc/net/packet's
    /// Rmem, in the switch's namespace).
    fn unread_bytes(&self, interface: &str) -> u64 {
        let link = self
            .switch_ns
            .output(&["ip", "-j", "link", "show", interface]);
        let links: serde_json::Value = serde_json::from_slice(&link.stdout).unwrap();
        let ifindex = links[0]["ifindex"].as_u64().unwrap().to_string();
        let table = self.switch_ns.output(&["cat", "/proc/net/packet"]);
        let table = String::from_utf8(table.stdout).unwrap();
        // Columns: sk RefCnt Type Proto Iface R Rmem User Inode.
        table
            .lines()
            .skip(1)
            .map(|row| row.split_whitespace().collect::<Vec<_>>())
            .filter(|cols| cols.get(4) == Some(&ifindex.as_str()))
            .map(|cols| cols[6].parse::<u64>().unwrap())
            .sum()
    }

    /// Stops the switch with SIGTERM, checks that it exits cleanly and returns its log lines
    /// after startup, without terminal colours.
    fn stop(self) -> Vec<String> {
        let mut switch = self.switch;
        assert_stops_on_sigterm(&mut switch.0, "vmdep switch", WAIT);
        // The reader thread ends with the switch's stderr.
        self.log.iter().map(|line| strip_colours(&line)).collect()
    }
}

/// A running peer script.
struct Peer {
    child: Reaper,
    out: BufReader<std::process::ChildStdout>,
}

/// What the peer script received and what its own sockets lost.
#[derive(Debug, serde::Deserialize)]
struct PeerReport {
    received: std::collections::BTreeMap<String, Vec<String>>,
    kernel_drops: std::collections::BTreeMap<String, u64>,
}

impl Peer {
    /// Lets the peer go (send, then collect) and returns its report once it has finished.
    fn finish(mut self) -> PeerReport {
        writeln!(self.child.0.stdin.as_mut().unwrap()).unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let status = self.child.0.wait().unwrap();
        assert!(status.success(), "peer failed: {status}");
        let report: PeerReport = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("peer report unreadable ({e}): {line}"));
        assert!(
            report.kernel_drops.values().all(|&d| d == 0),
            "the peer's own sockets dropped frames: {:?}",
            report.kernel_drops
        );
        report
    }
}

fn strip_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters, ending with a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `field=N` in a log line.
fn log_field(line: &str, field: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(field)?.strip_prefix('='))
        .and_then(|value| value.parse().ok())
}

/// The switch's drop summary at shutdown.
fn drop_summary(log: &[String]) -> &str {
    log.iter()
        .find(|line| line.contains("switch stopped; frames and notifications dropped"))
        .unwrap_or_else(|| panic!("no drop summary in the switch's log: {log:#?}"))
}

fn hexes(frames: &[Vec<u8>], egress: u8) -> Vec<String> {
    frames.iter().map(|f| hex(&marked(f, egress))).collect()
}

#[test]
fn switch_forwards_bursts_between_veths_in_namespaces() {
    if !root_or_skip("switch_af_packet", "network namespaces, AF_PACKET sockets") {
        return;
    }
    let lab = Lab::start();

    // 300 frames sent back to back from vdp1 with nothing coming the other way, then 300 from
    // vdp2: more than the 256 small frames the kernel's default socket buffer held, which is
    // what got lost when the switch was not scheduled during a burst.
    let to_2: Vec<Vec<u8>> = (1000..1300).map(test_frame).collect();
    let to_1: Vec<Vec<u8>> = (2000..2300).map(test_frame).collect();
    let sends = |interface: &str, frames: &[Vec<u8>]| -> Vec<serde_json::Value> {
        frames
            .iter()
            .map(|f| serde_json::json!([interface, hex(f)]))
            .collect()
    };
    // The host frame below arrives on vdp1 before the bursts.
    let spec = serde_json::json!({
        "phases": [
            {"send": sends("vdp1", &to_2), "expect": {"vdp2": to_2.len()}},
            {"send": sends("vdp2", &to_1), "expect": {"vdp1": to_1.len() + 1}},
        ],
        // Long enough for a frame the switch wrongly took as input to come out.
        "quiet_ms": 500,
    });
    let peer = lab.peer(&lab.peer_ns, &spec);

    // A frame the switch's host itself sends out of vds1 (what the host's own stack does) must
    // go out to vdp1 and not be taken as input by the switch, which would forward it to vdp2.
    let host_frame = test_frame(9);
    let host_spec = serde_json::json!({
        "phases": [{"send": [["vds1", hex(&host_frame)]], "expect": {}}], "quiet_ms": 0,
    });
    lab.peer(&lab.switch_ns, &host_spec).finish();

    let report = peer.finish();
    let on_vdp1: Vec<String> = [hex(&host_frame)]
        .into_iter()
        .chain(hexes(&to_1, 1))
        .collect();
    assert!(
        report.received["vdp2"] == hexes(&to_2, 2),
        "vdp2 got {} frames, not the {} sent to it whole and in order",
        report.received["vdp2"].len(),
        to_2.len()
    );
    assert!(
        report.received["vdp1"] == on_vdp1,
        "vdp1 got {} frames, not the host's and the {} sent to it, whole and in order",
        report.received["vdp1"].len(),
        to_1.len()
    );

    let log = lab.stop();
    let summary = drop_summary(&log);
    for field in ["port_send_failed", "port_receive_overflow"] {
        assert_eq!(log_field(summary, field), Some(0), "{summary}");
    }
}

#[test]
fn a_stalled_switch_keeps_a_burst_and_counts_what_overflows() {
    if !root_or_skip("switch_af_packet", "network namespaces, AF_PACKET sockets") {
        return;
    }
    let lab = Lab::start();

    // The switch stopped (as a busy host would leave it without a CPU) while 2,000 frames
    // arrive: its socket buffer holds them all, and they come out whole and in order.
    let held: Vec<Vec<u8>> = (0..2000).map(test_frame).collect();
    let receiver = lab.peer(
        &lab.peer_ns,
        &serde_json::json!({
            "phases": [{"send": [], "expect": {"vdp2": held.len()}}], "quiet_ms": 100,
        }),
    );
    lab.signal("-STOP");
    lab.send_from_peer("vdp1", &held);
    lab.signal("-CONT");
    let report = receiver.finish();
    assert!(
        report.received["vdp2"] == hexes(&held, 2),
        "vdp2 got {} frames, not the {} held while the switch was stopped, whole and in order",
        report.received["vdp2"].len(),
        held.len()
    );

    // Far more than the buffer holds: the kernel drops the rest, and the switch counts every
    // one of them.
    let flood: Vec<Vec<u8>> = (0..20_000u32).map(|n| test_frame(n as u16)).collect();
    let (rx_before, _) = lab.counters("vds1");
    let (_, tx_before) = lab.counters("vds2");
    lab.signal("-STOP");
    lab.send_from_peer("vdp1", &flood);
    let (rx_after, _) = lab.counters("vds1");
    assert_eq!(
        rx_after - rx_before,
        flood.len() as u64,
        "vds1 missed frames"
    );
    lab.signal("-CONT");
    // Wait until the switch has read everything queued and sent all it read (its count then
    // stays still).
    let deadline = std::time::Instant::now() + WAIT;
    let mut last = (tx_before, std::time::Instant::now());
    while lab.unread_bytes("vds1") > 0 || last.1.elapsed() < Duration::from_millis(200) {
        assert!(
            std::time::Instant::now() < deadline,
            "the switch never settled"
        );
        std::thread::sleep(Duration::from_millis(50));
        let (_, tx) = lab.counters("vds2");
        if tx != last.0 {
            last = (tx, std::time::Instant::now());
        }
    }
    let forwarded = last.0 - tx_before;

    let log = lab.stop();
    let summary = drop_summary(&log);
    let overflow = log_field(summary, "port_receive_overflow")
        .unwrap_or_else(|| panic!("no port_receive_overflow count: {summary}"));
    eprintln!("flood: {forwarded} forwarded, {overflow} dropped by the kernel and counted");
    assert!(
        forwarded < flood.len() as u64,
        "all {} frames fit in the switch's buffer: the test no longer overflows it",
        flood.len()
    );
    assert_eq!(
        forwarded + overflow,
        flood.len() as u64,
        "{forwarded} forwarded and {overflow} counted as dropped of {} sent",
        flood.len()
    );
    assert_eq!(log_field(summary, "port_send_failed"), Some(0), "{summary}");
    assert!(
        summary.contains("WARN"),
        "drops are logged as a warning: {summary}"
    );
    // The port warned when it found the drops, with the same total.
    let warned = log
        .iter()
        .filter(|line| line.contains("the kernel dropped frames the receive buffer had no room"))
        .filter_map(|line| log_field(line, "total"))
        .max();
    assert_eq!(warned, Some(overflow), "{log:#?}");
}

#[test]
fn a_missing_interface_is_a_clear_startup_error() {
    if !root_or_skip("switch_af_packet", "network namespaces, AF_PACKET sockets") {
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
