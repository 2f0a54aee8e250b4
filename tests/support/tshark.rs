//! tshark (the Debian package `tshark`), the independent sFlow decoder: our datagrams written
//! into a pcap file, and the fields tshark reads from it. A test that needs tshark fails without
//! it, under CI or not.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::Command;

use vmdep::switch::capture;
use vmdep::wire::{EthernetAddress, FrameRepr, TransportRepr, UdpRepr};

/// A pcap file (the classic format, with the headers the switch's `--pcap` writes) of the sFlow
/// `datagrams`, one a second, each in an Ethernet/IPv4/UDP frame from `src` to 127.0.0.1:6343.
pub fn sflow_pcap(src: SocketAddrV4, datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut out = capture::file_header().to_vec();
    for (i, datagram) in datagrams.iter().enumerate() {
        let udp = UdpRepr {
            src_port: src.port(),
            dst_port: vmdep::sflow::DEFAULT_PORT,
        };
        let frame = FrameRepr::new(
            EthernetAddress([0x02, 0, 0, 0, 0, 0x0a]),
            EthernetAddress([0x02, 0, 0, 0, 0, 0x0b]),
            None,
            *src.ip(),
            Ipv4Addr::LOCALHOST,
            TransportRepr::Udp(udp),
            datagram,
        )
        .unwrap()
        .to_vec()
        .unwrap();
        out.extend(capture::record_header(
            1_700_000_000 + i as u32,
            0,
            frame.len(),
        ));
        out.extend(frame);
    }
    out
}

/// The `fields` of every packet in `file`, each with all its occurrences joined by commas
/// ("" when absent). tshark checks the IPv4, TCP and UDP checksums as it reads, inner
/// (sampled) headers included, so the `*.checksum.status` fields say whether they are right.
pub fn tshark_fields(file: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(file);
    for proto in ["ip", "tcp", "udp"] {
        cmd.args(["-o", &format!("{proto}.check_checksum:TRUE")]);
    }
    cmd.args([
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run tshark ({e}): this test needs it; install the Debian package with \
             `apt-get install tshark`"
        )
    });
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let values: Vec<String> = line.split('\t').map(str::to_string).collect();
            assert_eq!(values.len(), fields.len(), "tshark line: {line}");
            values
        })
        .collect()
}
