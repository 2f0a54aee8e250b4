//! Fuzzes the DPI engine. The first input byte picks the mode:
//! - even: the rest is raw frames, each behind a one-byte length, as a mirror port might
//!   deliver anything;
//! - odd: the rest is segments of one TCP connection (after its handshake), each a direction
//!   byte, a one-byte length and the payload, built into valid frames so that the payload
//!   reaches the recognizers and protocol parsers.
//!
//! Nothing may panic, the labels stay within the configured bounds, and expiring every flow
//! releases every buffered byte.
#![no_main]

use std::net::Ipv4Addr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vmdep::dpi::{DpiConfig, DpiEngine};
use vmdep::wire::{EthernetAddress, FrameRepr, TcpFlags, TcpRepr, TransportRepr};

const CLIENT: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 0, 1), 40_000);
/// A port no recognizer looks at: recognition is by payload.
const SERVER: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 0, 2), 4000);

fn tcp_frame(from_client: bool, seq: u32, ack: u32, flags: TcpFlags, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = if from_client {
        (CLIENT, SERVER)
    } else {
        (SERVER, CLIENT)
    };
    let tcp = TcpRepr {
        src_port: src.1,
        dst_port: dst.1,
        seq_number: seq,
        ack_number: ack,
        flags,
        window_len: 65535,
        urgent_at: 0,
    };
    FrameRepr::new(
        EthernetAddress([2, 0, 0, 0, 0, 1]),
        EthernetAddress([2, 0, 0, 0, 0, 2]),
        None,
        src.0,
        dst.0,
        TransportRepr::Tcp(tcp),
        payload,
    )
    .and_then(|f| f.to_vec())
    .expect("a frame of at most 255 payload bytes builds")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let config = DpiConfig {
        max_stream_bytes: 4096,
        max_details: 4,
        ..DpiConfig::default()
    };
    let mut engine = DpiEngine::new(config.clone());
    let mut t = Duration::ZERO;
    if mode % 2 == 0 {
        while let Some((&len, tail)) = rest.split_first() {
            let len = usize::from(len).min(tail.len());
            let _ = engine.observe(t, &tail[..len]);
            rest = &tail[len..];
            t += Duration::from_micros(100);
        }
    } else {
        let mut next = [1000u32, 5000u32];
        let _ = engine.observe(t, &tcp_frame(true, next[0] - 1, 0, TcpFlags::SYN, &[]));
        let synack = TcpFlags::SYN | TcpFlags::ACK;
        let _ = engine.observe(t, &tcp_frame(false, next[1] - 1, next[0], synack, &[]));
        while let [dir, len, tail @ ..] = rest {
            let len = usize::from(*len).min(tail.len());
            let from_client = dir & 1 == 0;
            let side = usize::from(!from_client);
            // The high bits shift the segment back or ahead: retransmissions and gaps.
            let shift = i32::from(*dir >> 1) - 64;
            let seq = next[side].wrapping_add_signed(shift);
            let flags = TcpFlags::ACK | TcpFlags::PSH;
            let frame = tcp_frame(from_client, seq, next[1 - side], flags, &tail[..len]);
            engine.observe(t, &frame).expect("built frames are valid");
            if shift == 0 {
                next[side] = next[side].wrapping_add(len as u32);
            }
            rest = &tail[len..];
            t += Duration::from_micros(100);
        }
    }
    // Once every flow is gone, so is every byte they held.
    engine.expire_idle(t + config.idle_timeout);
    let stats = engine.stats();
    assert_eq!((stats.flows_active, stats.bytes_buffered), (0, 0));
    let labels = engine.labels();
    assert!(labels.len() <= 1 || mode % 2 == 0);
    for label in labels {
        assert!(label.details.len() <= config.max_details);
        assert!(label.responses >= label.mean_response_ms.map_or(0, |_| 1));
    }
});
