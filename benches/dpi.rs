//! Frames per second through the DPI engine on a mixed stream, as a server's mirror port would
//! deliver it: interleaved keep-alive HTTP connections with 4 KB bodies, TLS connections with
//! application-data records, PostgreSQL and Redis sessions, and DNS queries over UDP. Each
//! iteration feeds the whole stream to a new engine (connection setup and teardown included).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;
use vmdep::dpi::{DpiConfig, DpiEngine};
use vmdep::wire::{EthernetAddress, FrameRepr, TcpFlags, TcpRepr, TransportRepr, UdpRepr};

/// Connections per protocol.
const CONNECTIONS: u16 = 32;
/// Request/response exchanges per connection.
const EXCHANGES: usize = 8;
const MSS: usize = 1448;

fn frame(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), t: TransportRepr, payload: &[u8]) -> Vec<u8> {
    let (a, b) = (
        EthernetAddress([2, 0, 0, 0, 0, 1]),
        EthernetAddress([2, 0, 0, 0, 0, 2]),
    );
    FrameRepr::new(a, b, None, src.0, dst.0, t, payload)
        .and_then(|f| f.to_vec())
        .unwrap()
}

/// One connection's frames: handshake, the exchanges (each message in MSS-sized segments), FIN.
fn connection(
    client: (Ipv4Addr, u16),
    server: (Ipv4Addr, u16),
    exchanges: &[(Vec<u8>, Vec<u8>)],
) -> Vec<Vec<u8>> {
    let ends = [client, server];
    let mut next = [1000u32, 9000u32];
    let mut frames = Vec::new();
    let segment =
        |frames: &mut Vec<Vec<u8>>, next: &mut [u32; 2], s: usize, flags: u16, payload: &[u8]| {
            let tcp = TcpRepr {
                src_port: ends[s].1,
                dst_port: ends[1 - s].1,
                seq_number: next[s],
                ack_number: next[1 - s],
                flags: TcpFlags(flags),
                window_len: 65535,
                urgent_at: 0,
            };
            frames.push(frame(
                ends[s],
                ends[1 - s],
                TransportRepr::Tcp(tcp),
                payload,
            ));
            let used =
                payload.len() + usize::from(flags & (TcpFlags::SYN.0 | TcpFlags::FIN.0) != 0);
            next[s] = next[s].wrapping_add(used as u32);
        };
    let (syn, ack, fin) = (TcpFlags::SYN.0, TcpFlags::ACK.0, TcpFlags::FIN.0);
    segment(&mut frames, &mut next, 0, syn, &[]);
    segment(&mut frames, &mut next, 1, syn | ack, &[]);
    segment(&mut frames, &mut next, 0, ack, &[]);
    for (request, response) in exchanges {
        for (s, message) in [(0, request), (1, response)] {
            for piece in message.chunks(MSS) {
                segment(&mut frames, &mut next, s, ack | TcpFlags::PSH.0, piece);
            }
        }
    }
    segment(&mut frames, &mut next, 0, fin | ack, &[]);
    segment(&mut frames, &mut next, 1, fin | ack, &[]);
    frames
}

fn tls_record(kind: u8, len: usize) -> Vec<u8> {
    let mut r = vec![kind, 3, 3];
    r.extend((len as u16).to_be_bytes());
    r.extend(std::iter::repeat_n(0x5a, len));
    r
}

fn pg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend(((body.len() + 4) as u32).to_be_bytes());
    m.extend(body);
    m
}

fn dns_query(id: u16, answer: bool) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend(if answer { [0x81, 0x80] } else { [0x01, 0x00] });
    m.extend([0, 1, 0, u8::from(answer), 0, 0, 0, 0]);
    m.extend(b"\x03db1\x02dc\x08internal\x00\x00\x01\x00\x01");
    if answer {
        m.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 7]);
    }
    m
}

/// The mixed stream: connections of every kind interleaved frame by frame.
fn stream() -> Vec<(Duration, Vec<u8>)> {
    let server = Ipv4Addr::new(10, 0, 121, 3);
    let mut per_connection: Vec<Vec<Vec<u8>>> = Vec::new();
    for c in 0..CONNECTIONS {
        let client = (Ipv4Addr::new(10, 0, 120, (c % 200) as u8 + 2), 40_000 + c);
        let mut body = b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n".to_vec();
        body.extend([b'x'; 4096]);
        let get =
            b"GET /index.html HTTP/1.1\r\nHost: web1.dc.internal\r\nAccept: */*\r\n\r\n".to_vec();
        per_connection.push(connection(
            client,
            (server, 80),
            &vec![(get, body); EXCHANGES],
        ));
        let mut hello = tls_record(22, 512);
        hello[5] = 1; // ClientHello type, so the connection is recognized as TLS
        let mut tls = vec![(hello, tls_record(22, 2000))];
        tls.extend(vec![
            (tls_record(23, 300), tls_record(23, 3000));
            EXCHANGES - 1
        ]);
        per_connection.push(connection(client, (server, 443), &tls));
        let mut startup = 196_608u32.to_be_bytes().to_vec();
        startup.extend(b"user\0app\0database\0shop\0\0");
        let mut startup_msg = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
        startup_msg.extend(startup);
        let mut postgres = vec![(startup_msg, pg(b'Z', b"I"))];
        let mut rows = pg(b'T', &[0; 20]);
        for _ in 0..10 {
            rows.extend(pg(b'D', &[0; 40]));
        }
        rows.extend(pg(b'Z', b"I"));
        postgres.extend(vec![
            (pg(b'Q', b"SELECT * FROM orders WHERE id = 7\0"), rows);
            EXCHANGES - 1
        ]);
        per_connection.push(connection(client, (server, 5432), &postgres));
        let redis = (
            b"*2\r\n$3\r\nGET\r\n$8\r\nuser:123\r\n*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"
                .to_vec(),
            b"$5\r\nhello\r\n+OK\r\n".to_vec(),
        );
        per_connection.push(connection(client, (server, 6379), &vec![redis; EXCHANGES]));
        let mut dns = Vec::new();
        for q in 0..EXCHANGES as u16 {
            let port = 50_000 + c * 16 + q;
            let udp = |s: u16, d: u16| {
                TransportRepr::Udp(UdpRepr {
                    src_port: s,
                    dst_port: d,
                })
            };
            dns.push(frame(
                (client.0, port),
                (server, 53),
                udp(port, 53),
                &dns_query(q, false),
            ));
            dns.push(frame(
                (server, 53),
                (client.0, port),
                udp(53, port),
                &dns_query(q, true),
            ));
        }
        per_connection.push(dns);
    }
    // Round-robin over the connections, 10 us apart.
    let mut out = Vec::new();
    let longest = per_connection.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for frames in &per_connection {
            if let Some(f) = frames.get(i) {
                out.push((Duration::from_micros(10 * out.len() as u64), f.clone()));
            }
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let frames = stream();
    // The stream is what it claims: every connection labeled, nothing refused.
    let mut check = DpiEngine::new(DpiConfig::default());
    for (at, f) in &frames {
        check.observe(*at, f).unwrap();
    }
    let stats = check.stats();
    assert_eq!((stats.parse_failures, stats.streams_abandoned), (0, 0));
    assert!(check.labels().iter().all(|l| !l.protocol.contains('/')));

    let mut group = c.benchmark_group("dpi");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("mixed_stream", |b| {
        b.iter(|| {
            let mut engine = DpiEngine::new(DpiConfig::default());
            for (at, f) in &frames {
                let _ = engine.observe(*at, black_box(f));
            }
            engine.labels().len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
