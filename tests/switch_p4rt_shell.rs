//! `vmdep switch` (the built binary) against a real P4Runtime client, p4runtime-shell:
//!
//! - ref2_ternary_counters (tests/python/p4rt_shell_smoke.py): the shell pushes p4c's pipeline
//!   and inserts ref2's STF entries by name, this test sends ref2's frames through UDP wires on
//!   loopback and checks the frames that come out, and the shell reads the direct counters (the
//!   default entries' too) and the indexed counter back with exact counts;
//! - p4/vmdep.p4 as `vmdep compile` builds it (tests/python/p4rt_shell_vmdep.py): routes and one
//!   `vm_pair` entry, IPv4/UDP frames of the measured pair, of other pairs, with TTL 1 and with a
//!   bad checksum; the forwarded frames are checked byte for byte (MACs, TTL, checksum) and
//!   `vm_pair_counter` must hold exactly the measured pair's packets and bytes.
//!
//! p4runtime-shell lives in the test venv, target/py-venv, which tests/run-all.sh creates from
//! tests/python/requirements.txt (VMDEP_PYTHON overrides the interpreter).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod support;

use support::frames::{from_hex, REF2_STF_FRAMES};
use support::p4rt::P4C_OUT;
use support::process::{lines, venv_python, Reaper};
use support::switch_process::SwitchProcess;

const WAIT: Duration = Duration::from_secs(20);

/// A p4runtime-shell script run against the switch: it prints lines, reads one line on stdin.
struct Shell {
    child: Reaper,
    stdout: mpsc::Receiver<String>,
}

impl Shell {
    fn start(script: &str, args: &[String]) -> Shell {
        let mut child = Reaper(
            Command::new(venv_python())
                .arg(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/python")
                        .join(script),
                )
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start a p4runtime-shell script"),
        );
        let stdout = lines(child.0.stdout.take().unwrap());
        Shell { child, stdout }
    }

    /// The script's next line; a script that exits or stalls first fails the test.
    fn line(&mut self, what: &str) -> String {
        match self.stdout.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(err) => {
                let status = self.child.0.wait().ok();
                panic!("p4runtime-shell did not {what}: {err}, exit {status:?} (2 means not installed)");
            }
        }
    }

    fn expect_ready(&mut self) {
        let line = self.line("set up the switch");
        assert_eq!(
            line, "READY",
            "p4runtime-shell said {line:?} instead of READY"
        );
    }

    /// Tells the script the frames are through, returns its report and waits for it to exit.
    fn finish(mut self) -> serde_json::Value {
        writeln!(self.child.0.stdin.as_mut().unwrap()).unwrap();
        let report = self.line("report the counters");
        let status = self.child.0.wait().unwrap();
        assert!(status.success(), "p4runtime-shell script failed: {status}");
        serde_json::from_str(&report).unwrap()
    }
}

#[test]
fn p4runtime_shell_programs_the_switch_and_reads_exact_counters() {
    let switch = SwitchProcess::start(3);
    let mut shell = Shell::start(
        "p4rt_shell_smoke.py",
        &[
            "--grpc-addr".into(),
            switch.grpc_addr.clone(),
            "--device-id".into(),
            "1".into(),
            "--p4info".into(),
            format!("{P4C_OUT}/ref2_ternary_counters.p4info.txtpb"),
            "--json".into(),
            format!("{P4C_OUT}/ref2_ternary_counters.json"),
        ],
    );
    shell.expect_ready();

    // ref2's STF frames, all into port 0.
    for (hex, _) in &REF2_STF_FRAMES {
        switch.peers[0]
            .send_to(&from_hex(hex), switch.ports[0])
            .unwrap();
    }
    for out_port in [1u32, 2] {
        for (hex, _) in REF2_STF_FRAMES.iter().filter(|(_, p)| *p == Some(out_port)) {
            assert_eq!(switch.receive(out_port as usize), from_hex(hex));
        }
    }
    // The dropped frames leave no trace on the wire: give them time to pass the counters.
    switch.assert_quiet();

    let counts = shell.finish();
    let expect = |key: &str, packets: u64, bytes: u64| {
        assert_eq!(
            (
                counts[key]["packets"].as_u64(),
                counts[key]["bytes"].as_u64()
            ),
            (Some(packets), Some(bytes)),
            "{key}: {counts}"
        );
    };
    expect("e10", 2, 96);
    expect("e20", 2, 96);
    expect("e5", 1, 48);
    expect("f1", 2, 96);
    // acl missed the fifth frame; flows all but the two of f1.
    expect("acl_default", 1, 48);
    expect("flows_default", 4, 192);
    expect("per_port0", 6, 288);
    switch.stop();
}

/// The Internet checksum (RFC 1071) of `bytes`, an even number of them.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IPv4 header checksum of `frame`'s header (bytes 14..34), computed from scratch.
fn ipv4_checksum(frame: &[u8]) -> u16 {
    let mut header = frame[14..34].to_vec();
    header[10..12].fill(0);
    internet_checksum(&header)
}

/// An Ethernet + IPv4 + UDP frame with correct IPv4 and UDP checksums.
fn udp_frame(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload_len: usize) -> Vec<u8> {
    let udp_len = 8 + payload_len;
    let mut f = Vec::new();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0xaa, 0x01]); // dst MAC: the switch, as the host sees it
    f.extend_from_slice(&[0x02, 0, 0, 0, 0xbb, 0x02]); // src MAC: the sending host
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&u16::try_from(20 + udp_len).unwrap().to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, ttl, 17, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let checksum = ipv4_checksum(&f);
    f[24..26].copy_from_slice(&checksum.to_be_bytes());
    let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7 + 3) as u8).collect();
    let mut udp = Vec::new();
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&5001u16.to_be_bytes());
    udp.extend_from_slice(&u16::try_from(udp_len).unwrap().to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&u16::try_from(udp_len).unwrap().to_be_bytes());
    pseudo.extend_from_slice(&udp);
    if pseudo.len() % 2 == 1 {
        pseudo.push(0);
    }
    let udp_checksum = match internet_checksum(&pseudo) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&udp_checksum.to_be_bytes());
    f.extend_from_slice(&udp);
    f
}

/// `frame` as set_next_hop leaves it: new MACs, TTL one less, header checksum recomputed.
fn forwarded(frame: &[u8], src_mac: u64, dst_mac: u64) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[0..6].copy_from_slice(&dst_mac.to_be_bytes()[2..]);
    out[6..12].copy_from_slice(&src_mac.to_be_bytes()[2..]);
    out[22] -= 1;
    let checksum = ipv4_checksum(&out);
    out[24..26].copy_from_slice(&checksum.to_be_bytes());
    out
}

fn mac_text(mac: u64) -> String {
    let b = mac.to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

#[test]
fn p4runtime_shell_counts_a_vm_pair_on_vmdep_p4() {
    let out_dir = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_vmdep"))
        .arg("compile")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("p4/vmdep.p4"))
        .arg("-o")
        .arg(out_dir.path())
        .status()
        .expect("run vmdep compile");
    assert!(status.success(), "vmdep compile failed: {status}");

    // (prefix, prefix length, src MAC, dst MAC, port): two /24s and a /8 under them.
    let routes: [(Ipv4Addr, u32, u64, u64, u32); 3] = [
        (
            Ipv4Addr::new(10, 0, 1, 0),
            24,
            0x02_00_00_00_01_00,
            0x02_00_00_00_01_01,
            1,
        ),
        (
            Ipv4Addr::new(10, 0, 2, 0),
            24,
            0x02_00_00_00_02_00,
            0x02_00_00_00_02_02,
            2,
        ),
        (
            Ipv4Addr::new(10, 0, 0, 0),
            8,
            0x02_00_00_00_00_00,
            0x02_00_00_00_00_ff,
            1,
        ),
    ];
    let vm_a = Ipv4Addr::new(10, 0, 1, 5);
    let vm_b = Ipv4Addr::new(10, 0, 2, 7);
    let vm_c = Ipv4Addr::new(10, 7, 9, 9);
    let idle_timeout_ns: u64 = 60_000_000_000;

    let switch = SwitchProcess::start(3);
    let mut args = vec![
        "--grpc-addr".to_string(),
        switch.grpc_addr.clone(),
        "--device-id".into(),
        "1".into(),
        "--p4info".into(),
        out_dir
            .path()
            .join("vmdep.p4info.txtpb")
            .display()
            .to_string(),
        "--json".into(),
        out_dir.path().join("vmdep.json").display().to_string(),
        "--pair".into(),
        format!("{vm_a},{vm_b}"),
        "--idle-timeout-ns".into(),
        idle_timeout_ns.to_string(),
    ];
    for (prefix, len, src_mac, dst_mac, port) in routes {
        args.push("--route".into());
        args.push(format!(
            "{prefix}/{len},{},{},{port}",
            mac_text(src_mac),
            mac_text(dst_mac)
        ));
    }
    let mut shell = Shell::start("p4rt_shell_vmdep.py", &args);

    // The tables as p4runtime-shell read them back, in any order (objects compare by keys and
    // values; entries are ordered here by their match).
    let tables: serde_json::Value =
        serde_json::from_str(&shell.line("read the tables back")).unwrap();
    let sorted = |v: &serde_json::Value| {
        let mut entries = v
            .as_array()
            .unwrap_or_else(|| panic!("not a list of entries: {v}"))
            .clone();
        entries.sort_by_key(|e| e["match"]["hdr.ipv4.dstAddr"].to_string());
        entries
    };
    let expected_routes: Vec<serde_json::Value> = routes
        .iter()
        .map(|&(prefix, len, src_mac, dst_mac, port)| {
            serde_json::json!({
                "match": {"hdr.ipv4.dstAddr": {"lpm": u32::from(prefix), "prefix_len": len}},
                "action": "MyIngress.set_next_hop",
                "params": {"src_mac": src_mac, "dst_mac": dst_mac, "port": port},
                "priority": 0,
                "idle_timeout_ns": 0,
            })
        })
        .collect();
    assert_eq!(
        sorted(&tables["MyIngress.ipv4_lpm"]),
        sorted(&serde_json::Value::Array(expected_routes))
    );
    let expected_pair = serde_json::json!([{
        "match": {
            "hdr.ipv4.srcAddr": {"exact": u32::from(vm_a)},
            "hdr.ipv4.dstAddr": {"exact": u32::from(vm_b)},
        },
        "action": "MyIngress.count_pair",
        "params": {},
        "priority": 0,
        "idle_timeout_ns": idle_timeout_ns,
    }]);
    assert_eq!(sorted(&tables["MyIngress.vm_pair"]), sorted(&expected_pair));
    shell.expect_ready();

    let (_, _, a_src, a_dst, _) = routes[0];
    let (_, _, b_src, b_dst, _) = routes[1];
    let (_, _, wide_src, wide_dst, _) = routes[2];
    let measured = [
        udp_frame(vm_a, vm_b, 64, 18),
        udp_frame(vm_a, vm_b, 5, 100),
        udp_frame(vm_a, vm_b, 2, 0),
    ];
    let reverse = udp_frame(vm_b, vm_a, 64, 30);
    let other = udp_frame(vm_a, vm_c, 64, 10);
    let ttl_one = udp_frame(vm_a, vm_b, 1, 18);
    let mut bad_checksum = udp_frame(vm_a, vm_b, 64, 18);
    bad_checksum[25] ^= 0x01;

    // Interleaved, all into port 0.
    let sent = [
        &measured[0],
        &reverse,
        &ttl_one,
        &measured[1],
        &other,
        &bad_checksum,
        &measured[2],
    ];
    for f in sent {
        switch.peers[0].send_to(f, switch.ports[0]).unwrap();
    }
    for f in &measured {
        assert_eq!(switch.receive(2), forwarded(f, b_src, b_dst));
    }
    assert_eq!(switch.receive(1), forwarded(&reverse, a_src, a_dst));
    assert_eq!(switch.receive(1), forwarded(&other, wide_src, wide_dst));
    // TTL 1 and the bad checksum are dropped; also lets them pass the counters before reading.
    switch.assert_quiet();

    let count = shell.finish();
    let bytes: usize = measured.iter().map(Vec::len).sum();
    assert_eq!(bytes, 60 + 142 + 42);
    assert_eq!(
        (count["packets"].as_u64(), count["bytes"].as_u64()),
        (Some(measured.len() as u64), Some(bytes as u64)),
        "vm_pair_counter: {count}"
    );
    switch.stop();
}
