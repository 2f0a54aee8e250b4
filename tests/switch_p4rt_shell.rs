//! `vmdep switch` (the built binary) against a real P4Runtime client: p4runtime-shell pushes
//! ref2_ternary_counters' pipeline and inserts its entries by name (tests/python/p4rt_shell_smoke.py),
//! this test sends ref2's frames through UDP wires on loopback, checks the frames that come out,
//! and p4runtime-shell reads the direct and indexed counters back with exact counts.
//!
//! p4runtime-shell lives in the test venv, target/py-venv, which tests/run-all.sh creates from
//! tests/python/requirements.txt (VMDEP_PYTHON overrides the interpreter).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn python() -> String {
    if let Ok(path) = std::env::var("VMDEP_PYTHON") {
        return path;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/py-venv/bin/python");
    assert!(
        std::path::Path::new(path).exists(),
        "{path} is missing: create it with\n  python3 -m venv target/py-venv && \
         target/py-venv/bin/pip install -r tests/python/requirements.txt\n\
         (tests/run-all.sh does this)"
    );
    path.to_string()
}

/// Lines of a child's pipe, read on a thread so the test can wait with a timeout.
fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Kills a child when the test ends, however it ends.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn frame(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn p4runtime_shell_programs_the_switch_and_reads_exact_counters() {
    let python = python();
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/p4c-reference/p4c-out"
    );
    let peers: Vec<UdpSocket> = (0..3)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .collect();
    let mut switch = Command::new(env!("CARGO_BIN_EXE_vmdep"));
    switch.args(["switch", "--device-id", "1"]);
    for (port, peer) in peers.iter().enumerate() {
        switch.arg("-i").arg(format!(
            "{port}@udp:127.0.0.1:0={}",
            peer.local_addr().unwrap()
        ));
    }
    switch.args(["--", "--grpc-server-addr", "127.0.0.1:0"]);
    let mut switch = Reaper(
        switch
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vmdep switch"),
    );
    let stderr = lines(switch.0.stderr.take().unwrap());
    let mut grpc_addr = None;
    let mut switch_ports: Vec<Option<SocketAddr>> = vec![None; 3];
    while grpc_addr.is_none() || switch_ports.iter().any(Option::is_none) {
        let line = stderr
            .recv_timeout(WAIT)
            .expect("vmdep switch did not print its addresses");
        if let Some(addr) = line.strip_prefix("vmdep switch: P4Runtime on ") {
            grpc_addr = Some(addr.to_string());
        } else if let Some(rest) = line.strip_prefix("vmdep switch: port ") {
            let (port, addr) = rest.split_once(" on udp ").unwrap();
            switch_ports[port.parse::<usize>().unwrap()] = Some(addr.parse().unwrap());
        }
    }
    let grpc_addr = grpc_addr.unwrap();
    let port0 = switch_ports[0].unwrap();

    let mut shell = Reaper(
        Command::new(&python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/python/p4rt_shell_smoke.py"
            ))
            .args(["--grpc-addr", &grpc_addr, "--device-id", "1"])
            .arg("--p4info")
            .arg(format!("{fixtures}/ref2_ternary_counters.p4info.txtpb"))
            .arg("--json")
            .arg(format!("{fixtures}/ref2_ternary_counters.json"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the p4runtime-shell script"),
    );
    let stdout = lines(shell.0.stdout.take().unwrap());
    match stdout.recv_timeout(WAIT) {
        Ok(line) if line == "READY" => {}
        other => {
            let status = shell.0.wait().ok();
            panic!("p4runtime-shell did not set up the switch: {other:?}, exit {status:?} (2 means not installed)");
        }
    }

    // ref2's STF frames, all into port 0, with the port each one must leave on.
    let frames = [
        ("00000000000100000000000208004500002200010000401100000a0000010808080804d20035000e0000010101010101", Some(1)),
        ("00000000000100000000000208004500002200010000401100000a0000420808080804d20035000e0000010101010101", None),
        ("00000000000100000000000208004500002200010000401100000a000001c000020704d20050000e0000010101010101", Some(2)),
        ("00000000000100000000000208004500002200010000401100000a000001c000020704d20035000e0000010101010101", Some(1)),
        ("0000000000010000000000020800450000220001000040110000ac1000010808040404d20035000e0000010101010101", None),
        ("00000000000100000000000208004500002200010000401100000a000042c000020704d20050000e0000010101010101", None),
    ];
    for (hex, _) in &frames {
        peers[0].send_to(&frame(hex), port0).unwrap();
    }
    let mut buf = [0u8; 2048];
    for out_port in [1usize, 2] {
        for (hex, _) in frames.iter().filter(|(_, p)| *p == Some(out_port)) {
            let (n, from) = peers[out_port]
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("no frame on port {out_port}: {e}"));
            assert_eq!(from, switch_ports[out_port].unwrap());
            assert_eq!(&buf[..n], frame(hex).as_slice());
        }
    }
    // The dropped frames leave no trace on the wire: give them time to pass the counters.
    std::thread::sleep(Duration::from_millis(300));

    writeln!(shell.0.stdin.as_mut().unwrap()).unwrap();
    let report = stdout
        .recv_timeout(WAIT)
        .expect("p4runtime-shell did not report the counters");
    let counts: serde_json::Value = serde_json::from_str(&report).unwrap();
    let expect = |key: &str, packets: u64, bytes: u64| {
        assert_eq!(
            (
                counts[key]["packets"].as_u64(),
                counts[key]["bytes"].as_u64()
            ),
            (Some(packets), Some(bytes)),
            "{key}: {report}"
        );
    };
    expect("e10", 2, 96);
    expect("e20", 2, 96);
    expect("e5", 1, 48);
    expect("f1", 2, 96);
    expect("per_port0", 6, 288);
    let status = shell.0.wait().unwrap();
    assert!(status.success(), "p4runtime-shell script failed: {status}");

    // SIGTERM stops the switch gracefully.
    let pid = switch.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
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
