//! `vmdep switch` (the built binary) started with the command line the p4lang tutorials give
//! simple_switch_grpc (utils/p4runtime_switch.py: `-i`, `--pcap DIR`, `--nanolog`, `--device-id`,
//! the JSON, `--debugger`, `--log-console`, `--thrift-port`, then `-- --grpc-server-addr ...
//! --cpu-port ...`), UDP wires standing in for the tutorials' veths. Frames go through a small
//! program that forwards port 1 to port 2 and rewrites the source MAC; tshark, the independent
//! reader, decodes the pcap files the switch wrote: the frames in on port 1, out on port 2, as
//! the peers sent and received them; the other two files hold none.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;

use support::process::{assert_stops_on_sigterm, lines, Reaper};
use support::tshark::tshark_fields;
use vmdep::wire::{EthernetAddress, FrameRepr, TransportRepr, UdpRepr};

const WAIT: Duration = Duration::from_secs(20);

/// Port 1 to port 2 (anything else back to port 1), with the source MAC rewritten, so the
/// captures in and out differ.
const FORWARD_P4: &str = r#"
#include <core.p4>
#include <v1model.p4>

header ethernet_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
struct headers_t { ethernet_t ethernet; }
struct meta_t { }

parser P(packet_in pkt, out headers_t h, inout meta_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(h.ethernet); transition accept; }
}
control VC(inout headers_t h, inout meta_t m) { apply { } }
control Ing(inout headers_t h, inout meta_t m, inout standard_metadata_t sm) {
    apply {
        if (sm.ingress_port == 1) { sm.egress_spec = 2; } else { sm.egress_spec = 1; }
        h.ethernet.src = 0x0200000000aa;
    }
}
control Eg(inout headers_t h, inout meta_t m, inout standard_metadata_t sm) { apply { } }
control CC(inout headers_t h, inout meta_t m) { apply { } }
control D(packet_out pkt, in headers_t h) { apply { pkt.emit(h.ethernet); } }

V1Switch(P(), VC(), Ing(), Eg(), CC(), D()) main;
"#;

fn compile(dir: &Path) -> std::path::PathBuf {
    let source = dir.join("forward.p4");
    std::fs::write(&source, FORWARD_P4).unwrap();
    let out = dir.join("build");
    let status = Command::new(env!("CARGO_BIN_EXE_vmdep"))
        .arg("compile")
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "vmdep compile failed");
    out.join("forward.json")
}

fn udp_frame(i: u8) -> Vec<u8> {
    FrameRepr::new(
        EthernetAddress([0x02, 0, 0, 0, 0, 0x01]),
        EthernetAddress([0x02, 0, 0, 0, 0, 0x02]),
        None,
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
        TransportRepr::Udp(UdpRepr {
            src_port: 40_000 + u16::from(i),
            dst_port: 53,
        }),
        &[i; 20],
    )
    .unwrap()
    .to_vec()
    .unwrap()
}

#[test]
fn the_tutorials_command_line_runs_and_pcap_files_hold_each_ports_frames() {
    let dir = tempfile::tempdir().unwrap();
    let json = compile(dir.path());
    let pcaps = dir.path().join("pcaps");
    std::fs::create_dir(&pcaps).unwrap();
    let peers: Vec<UdpSocket> = (0..2)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .collect();

    let mut switch = Command::new(env!("CARGO_BIN_EXE_vmdep"));
    switch.arg("switch");
    for (i, peer) in peers.iter().enumerate() {
        switch.arg("-i").arg(format!(
            "{}@udp:127.0.0.1:0={}",
            i + 1,
            peer.local_addr().unwrap()
        ));
    }
    switch
        .arg("--pcap")
        .arg(&pcaps)
        .args(["--nanolog", "ipc:///tmp/bm-0-log.ipc", "--device-id", "0"])
        .arg(&json)
        .args(["--debugger", "--log-console", "--thrift-port", "9090"])
        .args([
            "--",
            "--grpc-server-addr",
            "127.0.0.1:0",
            "--cpu-port",
            "255",
        ]);
    let mut child = Reaper(
        switch
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vmdep switch"),
    );
    let stdout = lines(child.0.stdout.take().unwrap());
    let stderr = lines(child.0.stderr.take().unwrap());
    let mut switch_ports: Vec<Option<SocketAddr>> = vec![None; 2];
    while switch_ports.iter().any(Option::is_none) {
        let line = stderr
            .recv_timeout(WAIT)
            .expect("vmdep switch did not print its ports");
        if let Some(rest) = line.strip_prefix("vmdep switch: port ") {
            let (port, addr) = rest.split_once(" on udp ").unwrap();
            switch_ports[port.parse::<usize>().unwrap() - 1] = Some(addr.parse().unwrap());
        }
    }
    // --log-console: the logs are on standard output, as bmv2 writes them.
    let listening = std::iter::from_fn(|| stdout.recv_timeout(WAIT).ok())
        .find(|line| line.contains("P4Runtime server listening"));
    assert!(listening.is_some(), "no log line on standard output");

    let sent: Vec<Vec<u8>> = (0..5).map(udp_frame).collect();
    let mut received = Vec::new();
    for frame in &sent {
        peers[0].send_to(frame, switch_ports[0].unwrap()).unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = peers[1].recv_from(&mut buf).expect("frame out of port 2");
        assert_eq!(from, switch_ports[1].unwrap());
        received.push(buf[..n].to_vec());
    }
    assert_stops_on_sigterm(&mut child.0, "vmdep switch", WAIT);
    // As bmv2's console log without -L, the packet log: each frame's way.
    // (The switch has exited: its output ends, and so does this.)
    let rest: Vec<String> = std::iter::from_fn(|| stdout.recv_timeout(WAIT).ok()).collect();
    let sent_lines = rest
        .iter()
        .filter(|line| line.contains("sent on port 2, 62 bytes"))
        .count();
    assert_eq!(sent_lines, 5, "{rest:#?}");

    let fields = ["eth.src", "eth.dst", "ip.src", "udp.srcport", "frame.len"];
    let decoded = |name: &str| tshark_fields(&pcaps.join(name), &fields);
    let expected = |frames: &[Vec<u8>], src: &str| -> Vec<Vec<String>> {
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                vec![
                    src.to_string(),
                    "02:00:00:00:00:02".to_string(),
                    "10.0.0.1".to_string(),
                    (40_000 + i).to_string(),
                    f.len().to_string(),
                ]
            })
            .collect()
    };
    assert_eq!(
        decoded("port1_in.pcap"),
        expected(&sent, "02:00:00:00:00:01")
    );
    assert_eq!(
        decoded("port2_out.pcap"),
        expected(&received, "02:00:00:00:00:aa")
    );
    assert!(decoded("port1_out.pcap").is_empty());
    assert!(decoded("port2_in.pcap").is_empty());
}

#[test]
fn a_pcap_directory_that_does_not_exist_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let json = compile(dir.path());
    let missing = dir.path().join("no-pcaps");
    let out = Command::new(env!("CARGO_BIN_EXE_vmdep"))
        .args(["switch", "-i", "1@udp:127.0.0.1:0=127.0.0.1:9", "--pcap"])
        .arg(&missing)
        .arg(&json)
        .args(["--", "--grpc-server-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot create the capture file")
            && stderr.contains(&*missing.join("port1_in.pcap").to_string_lossy()),
        "{stderr}"
    );
}

#[test]
fn log_file_takes_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("s1.log");
    let mut child = Reaper(
        Command::new(env!("CARGO_BIN_EXE_vmdep"))
            .args(["switch", "--no-p4", "--log-file"])
            .arg(&log)
            .args(["--", "--grpc-server-addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vmdep switch"),
    );
    let stderr = lines(child.0.stderr.take().unwrap());
    let started = std::iter::from_fn(|| stderr.recv_timeout(WAIT).ok())
        .any(|line| line.starts_with("vmdep switch: P4Runtime on "));
    assert!(started, "vmdep switch did not start");
    assert_stops_on_sigterm(&mut child.0, "vmdep switch", WAIT);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("P4Runtime server listening"), "{text}");
    assert!(text.contains("switch stopped"), "{text}");
    // No terminal colours in a file.
    assert!(!text.contains('\u{1b}'), "{text}");
}
