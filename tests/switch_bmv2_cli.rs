//! `vmdep switch` (the built binary) started with the command line the p4lang tutorials give
//! simple_switch_grpc (utils/p4runtime_switch.py: `-i`, `--pcap DIR`, `--nanolog`, `--device-id`,
//! the JSON, `--debugger`, `--log-console`, `--thrift-port`, then `-- --grpc-server-addr ...
//! --cpu-port ...`), UDP wires standing in for the tutorials' veths. Frames go through a small
//! program that forwards port 1 to port 2 and rewrites the source MAC; tshark, the independent
//! reader, decodes the pcap files the switch wrote: the frames in on port 1, out on port 2, as
//! the peers sent and received them; the other files hold none. Also: the packet log on
//! standard output, `--log-file`, and a clear error for a missing capture directory.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;

use support::process::{assert_stops_on_sigterm, lines, Reaper};
use support::switch_process::SwitchProcess;
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
    // Ports 0 to 2; the program forwards 1 to 2.
    let args: Vec<&OsStr> = vec![
        "--pcap".as_ref(),
        pcaps.as_os_str(),
        "--nanolog".as_ref(),
        "ipc:///tmp/bm-0-log.ipc".as_ref(),
        "--device-id".as_ref(),
        "0".as_ref(),
        json.as_os_str(),
        "--debugger".as_ref(),
        "--log-console".as_ref(),
        "--thrift-port".as_ref(),
        "9090".as_ref(),
        "--".as_ref(),
        "--grpc-server-addr".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--cpu-port".as_ref(),
        "255".as_ref(),
    ];
    let switch = SwitchProcess::start_with(3, args);
    // --log-console: the logs are on standard output, as bmv2 writes them.
    let listening = std::iter::from_fn(|| switch.stdout.recv_timeout(WAIT).ok())
        .find(|line| line.contains("P4Runtime server listening"));
    assert!(listening.is_some(), "no log line on standard output");

    let sent: Vec<Vec<u8>> = (0..5).map(udp_frame).collect();
    let received: Vec<Vec<u8>> = sent
        .iter()
        .map(|frame| {
            switch.send(1, frame);
            switch.receive(2)
        })
        .collect();
    let rest = switch.stop();
    // As bmv2's console log without -L, the packet log: each frame's way.
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
    for quiet in [
        "port1_out.pcap",
        "port2_in.pcap",
        "port0_in.pcap",
        "port0_out.pcap",
    ] {
        assert!(decoded(quiet).is_empty(), "{quiet}");
    }
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
