//! The engine fed with protocol-correct frames built here: labels, roles, counts and response
//! times per protocol; reassembly under arbitrary splits, reordering and retransmission; bounds;
//! and arbitrary bytes.

use super::app::dns::tests::message as dns_message;
use super::app::mysql::tests::{greeting, login, packet as mysql_packet};
use super::app::ntp::tests::packet as ntp_packet;
use super::app::postgres::tests::{message as pg_message, startup};
use super::app::tls::tests::{client_hello, server_hello};
use super::*;
use crate::wire::{EthernetAddress, TcpFlags, TcpRepr, UdpRepr};
use proptest::prelude::*;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 120, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 121, 3);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn frame(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    transport: TransportRepr,
    payload: &[u8],
) -> Vec<u8> {
    FrameRepr::new(
        EthernetAddress([2, 0, 0, 0, 0, 1]),
        EthernetAddress([2, 0, 0, 0, 0, 2]),
        None,
        src.0,
        dst.0,
        transport,
        payload,
    )
    .unwrap()
    .to_vec()
    .unwrap()
}

fn udp_frame(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    };
    frame(src, dst, TransportRepr::Udp(udp), payload)
}

/// One TCP connection's frames, built in order: sequence and acknowledgment numbers follow the
/// bytes sent. The server's ISN is near 2^32 so that its sequence numbers wrap.
struct Conn {
    ends: [(Ipv4Addr, u16); 2],
    /// Next sequence number per sender (0 = client).
    next: [u32; 2],
    frames: Vec<(Duration, Vec<u8>)>,
}

impl Conn {
    fn new(client: (Ipv4Addr, u16), server: (Ipv4Addr, u16)) -> Self {
        Conn {
            ends: [client, server],
            next: [0x1000_0000, u32::MAX - 100],
            frames: Vec::new(),
        }
    }

    fn segment(
        &mut self,
        from_client: bool,
        at: Duration,
        seq: u32,
        flags: TcpFlags,
        payload: &[u8],
    ) {
        let (s, r) = if from_client { (0, 1) } else { (1, 0) };
        let tcp = TcpRepr {
            src_port: self.ends[s].1,
            dst_port: self.ends[r].1,
            seq_number: seq,
            ack_number: self.next[r],
            flags,
            window_len: 65535,
            urgent_at: 0,
        };
        let f = frame(self.ends[s], self.ends[r], TransportRepr::Tcp(tcp), payload);
        self.frames.push((at, f));
    }

    /// The three-way handshake.
    fn open(mut self, at: Duration) -> Self {
        self.segment(true, at, self.next[0], TcpFlags::SYN, &[]);
        self.next[0] = self.next[0].wrapping_add(1);
        self.segment(false, at, self.next[1], TcpFlags::SYN | TcpFlags::ACK, &[]);
        self.next[1] = self.next[1].wrapping_add(1);
        self.segment(true, at, self.next[0], TcpFlags::ACK, &[]);
        self
    }

    /// `data` in segments of at most 1400 bytes.
    fn send(&mut self, from_client: bool, at: Duration, data: &[u8]) {
        self.send_pieces(from_client, at, data, &split_every(data.len(), 1400));
    }

    /// `data` as segments of the byte ranges `pieces`, in that order; they must cover `data`,
    /// and may overlap (retransmissions, possibly cut differently).
    fn send_pieces(
        &mut self,
        from_client: bool,
        at: Duration,
        data: &[u8],
        pieces: &[(usize, usize)],
    ) {
        let s = usize::from(!from_client);
        let base = self.next[s];
        for &(a, b) in pieces {
            let flags = TcpFlags::ACK | TcpFlags::PSH;
            self.segment(
                from_client,
                at,
                base.wrapping_add(a as u32),
                flags,
                &data[a..b],
            );
        }
        self.next[s] = base.wrapping_add(data.len() as u32);
    }

    /// A bare ACK of everything received so far.
    fn ack(&mut self, from_client: bool, at: Duration) {
        let s = usize::from(!from_client);
        self.segment(from_client, at, self.next[s], TcpFlags::ACK, &[]);
    }

    /// FIN from each side, then the last ACK.
    fn close(mut self, at: Duration) -> Vec<(Duration, Vec<u8>)> {
        for from_client in [true, false] {
            let s = usize::from(!from_client);
            self.segment(
                from_client,
                at,
                self.next[s],
                TcpFlags::FIN | TcpFlags::ACK,
                &[],
            );
            self.next[s] = self.next[s].wrapping_add(1);
        }
        self.segment(true, at, self.next[0], TcpFlags::ACK, &[]);
        self.frames
    }
}

/// Byte ranges of `n` bytes (the last one shorter) over `len` bytes.
fn split_every(len: usize, n: usize) -> Vec<(usize, usize)> {
    (0..len).step_by(n).map(|a| (a, len.min(a + n))).collect()
}

/// A conversation over one connection: who says what, when.
#[derive(Clone)]
struct Script {
    client: (Ipv4Addr, u16),
    server: (Ipv4Addr, u16),
    messages: Vec<(bool, u64, Vec<u8>)>,
}

impl Script {
    fn new(client_port: u16, server_port: u16) -> Self {
        Script {
            client: (CLIENT, client_port),
            server: (SERVER, server_port),
            messages: Vec::new(),
        }
    }

    fn client(mut self, at_ms: u64, data: impl AsRef<[u8]>) -> Self {
        self.messages.push((true, at_ms, data.as_ref().to_vec()));
        self
    }

    fn server(mut self, at_ms: u64, data: impl AsRef<[u8]>) -> Self {
        self.messages.push((false, at_ms, data.as_ref().to_vec()));
        self
    }

    /// The frames, each message sent as the ranges `cut(index, message)` gives.
    fn frames_with(
        &self,
        mut cut: impl FnMut(usize, &[u8]) -> Vec<(usize, usize)>,
    ) -> Vec<(Duration, Vec<u8>)> {
        let mut conn = Conn::new(self.client, self.server).open(ms(0));
        let mut last = 0;
        for (i, (from_client, at, data)) in self.messages.iter().enumerate() {
            conn.send_pieces(*from_client, ms(*at), data, &cut(i, data));
            last = *at;
        }
        conn.close(ms(last + 1))
    }

    fn frames(&self) -> Vec<(Duration, Vec<u8>)> {
        self.frames_with(|_, data| split_every(data.len(), 1400))
    }

    /// The frames from message `from` on, as a mirror that began while the connection was
    /// open sees them: no handshake, nothing before.
    fn joined(&self, from: usize) -> Vec<(Duration, Vec<u8>)> {
        let mut conn = Conn::new(self.client, self.server);
        let mut last = 0;
        for (from_client, at, data) in &self.messages[from..] {
            conn.send(*from_client, ms(*at), data);
            last = *at;
        }
        conn.close(ms(last + 1))
    }
}

fn run(frames: &[(Duration, Vec<u8>)]) -> DpiEngine {
    run_with(DpiConfig::default(), frames)
}

fn run_with(config: DpiConfig, frames: &[(Duration, Vec<u8>)]) -> DpiEngine {
    let mut engine = DpiEngine::new(config);
    for (at, f) in frames {
        engine.observe(*at, f).unwrap();
    }
    engine
}

/// Checks one label's fields; the mean response time to a microsecond.
#[track_caller]
fn assert_label(
    l: &AppLabel,
    protocol: &str,
    server_port: u16,
    details: &[&str],
    counts: (u64, u64),
    mean_ms: Option<f64>,
) {
    assert_eq!(l.protocol, protocol);
    assert_eq!(
        (l.client, l.server, l.server_port),
        (CLIENT, SERVER, server_port)
    );
    assert_eq!(l.details, details);
    assert_eq!((l.requests, l.responses), counts);
    match (l.mean_response_ms, mean_ms) {
        (Some(got), Some(want)) => {
            assert!((got - want).abs() < 1e-3, "mean {got} ms, expected {want}")
        }
        (got, want) => assert_eq!(got, want),
    }
}

fn http_script() -> Script {
    let mut body = vec![b'x'; 5000];
    // A body that looks like a response must be skipped, not read.
    body[..22].copy_from_slice(b"HTTP/1.1 500 Fake\r\n\r\n\n");
    let mut first_response = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n".to_vec();
    first_response.extend(body);
    Script::new(40_001, 80)
        .client(10, b"GET /index.html HTTP/1.1\r\nHost: web1.dc.internal\r\nUser-Agent: t\r\n\r\n")
        .server(12, first_response)
        // Three pipelined requests, the first with a chunked body.
        .client(
            20,
            b"POST /api HTTP/1.1\r\nHost: API.dc.internal:8080\r\nTransfer-Encoding: chunked\r\n\r\n\
              4\r\nGET \r\n0\r\n\r\n\
              HEAD /h HTTP/1.1\r\nHost: web1.dc.internal\r\n\r\n\
              GET /x HTTP/1.1\r\nHost: web1.dc.internal\r\n\r\n",
        )
        .server(
            26,
            b"HTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n\
              HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        )
}

#[test]
fn http_requests_responses_and_bodies() {
    let mut frames = http_script().frames();
    // A late retransmission of the last response, after the close, starts no label of its own.
    let (_, last_data) = frames[frames.len() - 4].clone();
    frames.push((ms(40), last_data));
    let mut engine = run(&frames);
    engine.expire_idle(Duration::from_secs(1000));
    let labels = engine.labels();
    assert_eq!(labels.len(), 1);
    assert_label(
        &labels[0],
        "http",
        80,
        &[
            "GET web1.dc.internal",
            "status 200",
            "POST api.dc.internal:8080",
            "HEAD web1.dc.internal",
            "status 201",
            "status 404",
        ],
        (4, 4),
        // 2 ms, then three answered 6 ms after they were sent.
        Some(5.0),
    );
    let stats = engine.stats();
    assert_eq!(
        (
            stats.parse_failures,
            stats.streams_abandoned,
            stats.bytes_buffered
        ),
        (0, 0, 0)
    );
    assert_eq!(
        (stats.flows_started, stats.flows_closed, stats.flows_expired),
        (2, 1, 1)
    );
}

#[test]
fn http_bodies_to_the_close_and_unreadable_requests() {
    // HTTP/1.0 without a length: the body runs to the close, whatever it looks like.
    let until_close = Script::new(40_018, 80)
        .client(1, b"GET /old HTTP/1.0\r\n\r\n")
        .server(2, b"HTTP/1.0 200 OK\r\n\r\nHTTP/1.1 500 Fake\r\n\r\n")
        .server(3, b"HTTP/1.1 502 Fake\r\n\r\n");
    // A request line that is not HTTP after a good request: that direction stops there.
    let garbage = Script::new(40_019, 80)
        .client(1, b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET  HTTP/9\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n")
        .server(2, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let mut frames = until_close.frames();
    frames.extend(garbage.frames());
    let engine = run(&frames);
    assert_label(
        &engine.labels()[0],
        "http",
        80,
        &["GET", "status 200", "GET a"],
        (2, 2),
        Some(1.0),
    );
    assert_eq!(engine.stats().parse_failures, 1);
}

/// A TLS record.
fn record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![kind, 3, 3];
    r.extend((body.len() as u16).to_be_bytes());
    r.extend(body);
    r
}

fn tls_script() -> Script {
    let hello = client_hello("Shop.example", &["h2", "http/1.1"]);
    // TLS 1.3: the server's encrypted handshake rides in application-data records, and so does
    // the client's Finished, which its first request follows in the same flight.
    let mut server_flight = record(22, &server_hello(true));
    server_flight.extend(record(20, &[1]));
    server_flight.extend(record(23, &[0xaa; 300]));
    let mut client_flight = record(20, &[1]);
    client_flight.extend(record(23, &[0xbb; 40]));
    client_flight.extend(record(23, &[0xcc; 2000]));
    let mut second_request = record(23, &[0xee; 50]);
    second_request.extend(record(23, &[0xee; 60]));
    Script::new(40_002, 443)
        .client(5, record(22, &hello))
        .server(8, server_flight)
        .client(9, client_flight)
        // The first request's flight goes on; the response is timed from its last record.
        .client(10, record(23, &[0xcc; 100]))
        .server(12, record(23, &[0xdd; 500]))
        .server(13, record(23, &[0xdd; 200]))
        .client(20, second_request)
        .server(26, record(23, &[0xdd; 700]))
}

#[test]
fn tls_names_version_and_request_flights() {
    let engine = run(&tls_script().frames());
    let labels = engine.labels();
    assert_eq!(labels.len(), 1);
    assert_label(
        &labels[0],
        "tls",
        443,
        &["sni shop.example", "alpn h2,http/1.1", "version 1.3"],
        (2, 2),
        // 12 - 10 and 26 - 20 ms.
        Some(4.0),
    );
}

#[test]
fn tls_1_2_with_a_client_hello_over_two_records() {
    let hello = client_hello("api.example", &[]);
    let (a, b) = hello.split_at(30);
    let mut two = record(22, a);
    two.extend(record(22, b));
    let mut server_flight = record(22, &server_hello(false));
    server_flight.extend(record(22, &[11; 900])); // Certificate and the rest, in the clear
    let mut client_flight = record(22, &[16; 70]); // ClientKeyExchange
    client_flight.extend(record(20, &[1]));
    client_flight.extend(record(22, &[0x99; 40])); // the encrypted Finished
    let mut server_finish = record(20, &[1]);
    server_finish.extend(record(22, &[0x98; 40]));
    let script = Script::new(40_003, 8443)
        .client(1, two)
        .server(2, server_flight)
        .client(3, client_flight)
        .server(4, server_finish)
        // Application data before any request answers nothing.
        .server(4, record(23, &[0x77; 30]))
        .client(5, record(23, &[0xcc; 100]))
        .server(7, record(23, &[0xdd; 100]))
        // A record from the server that answers nothing.
        .client(9, record(21, &[1, 0]))
        .server(10, record(23, &[0xdd; 100]));
    let labels = run(&script.frames()).labels();
    assert_label(
        &labels[0],
        "tls",
        8443,
        &["sni api.example", "version 1.2"],
        (1, 1),
        Some(2.0),
    );
}

#[test]
fn dns_over_udp_pairs_answers_by_id() {
    let server = (SERVER, 53);
    let mut frames = vec![
        (
            ms(1),
            udp_frame(
                (CLIENT, 53_001),
                server,
                &dns_message(1, "db1.dc.internal", 1, None),
            ),
        ),
        (
            ms(10),
            udp_frame(
                (CLIENT, 53_002),
                server,
                &dns_message(2, "nope.dc.internal", 28, None),
            ),
        ),
        // The first answer comes after the second query was sent.
        (
            ms(11),
            udp_frame(
                server,
                (CLIENT, 53_001),
                &dns_message(1, "db1.dc.internal", 1, Some(0)),
            ),
        ),
        (
            ms(12),
            udp_frame(
                server,
                (CLIENT, 53_002),
                &dns_message(2, "nope.dc.internal", 28, Some(3)),
            ),
        ),
        // An answer whose query was not seen: its receiver is the client.
        (
            ms(20),
            udp_frame(
                server,
                (Ipv4Addr::new(10, 0, 120, 9), 40_000),
                &dns_message(3, "x.dc", 1, Some(0)),
            ),
        ),
    ];
    // Not DNS on a DNS conversation still waiting for its answer: counted, not read.
    let not_dns = (ms(5), udp_frame((CLIENT, 53_001), server, b"hello"));
    frames.insert(1, not_dns);
    let engine = run(&frames);
    let labels = engine.labels();
    assert_eq!(labels.len(), 2);
    assert_label(
        &labels[0],
        "dns",
        53,
        &[
            "query db1.dc.internal A",
            "query nope.dc.internal AAAA",
            "rcode NXDOMAIN nope.dc.internal",
        ],
        (2, 2),
        Some(6.0),
    );
    let missed = &labels[1];
    assert_eq!(
        (missed.client, missed.server, missed.server_port),
        (Ipv4Addr::new(10, 0, 120, 9), SERVER, 53)
    );
    assert_eq!(
        (missed.requests, missed.responses, missed.mean_response_ms),
        (0, 1, None)
    );
    let s = engine.stats();
    assert_eq!(s.parse_failures, 1);
    // Each exchange left the table with its answer.
    assert_eq!((s.flows_started, s.flows_closed, s.flows_active), (3, 3, 0));
}

#[test]
fn ntp_requests_pair_with_the_replies_that_echo_them() {
    let server = (SERVER, 123);
    let frames = [
        (
            ms(1),
            udp_frame((CLIENT, 40_100), server, &ntp_packet(false, 1000)),
        ),
        (
            ms(4),
            udp_frame(server, (CLIENT, 40_100), &ntp_packet(true, 1000)),
        ),
        // A reply to another request than the one outstanding is not timed.
        (
            ms(10),
            udp_frame((CLIENT, 40_101), server, &ntp_packet(false, 2000)),
        ),
        (
            ms(11),
            udp_frame(server, (CLIENT, 40_101), &ntp_packet(true, 1999)),
        ),
    ];
    let engine = run(&frames);
    assert_label(
        &engine.labels()[0],
        "ntp",
        123,
        &["version 4", "stratum 2"],
        (2, 2),
        Some(3.0),
    );
    // The first exchange ended with its reply; the second still waits for its own.
    let s = engine.stats();
    assert_eq!((s.flows_closed, s.flows_active), (1, 1));
}

fn dns_tcp_script() -> Script {
    let framed = |m: Vec<u8>| {
        let mut f = (m.len() as u16).to_be_bytes().to_vec();
        f.extend(m);
        f
    };
    let mut two = framed(dns_message(7, "a.dc.internal", 1, None));
    two.extend(framed(dns_message(8, "b.dc.internal", 33, None)));
    let mut answers = framed(dns_message(8, "b.dc.internal", 33, Some(2)));
    answers.extend(framed(dns_message(7, "a.dc.internal", 1, Some(0))));
    Script::new(40_004, 53).client(3, two).server(7, answers)
}

#[test]
fn dns_over_tcp_with_length_prefixes() {
    let labels = run(&dns_tcp_script().frames()).labels();
    assert_label(
        &labels[0],
        "dns",
        53,
        &[
            "query a.dc.internal A",
            "query b.dc.internal SRV",
            "rcode SERVFAIL b.dc.internal",
        ],
        (2, 2),
        Some(4.0),
    );
}

fn postgres_script() -> Script {
    let mut ready = pg_message(b'R', &[0, 0, 0, 0]);
    ready.extend(pg_message(b'S', b"server_version\x0016.2\0"));
    ready.extend(pg_message(b'K', &[0, 0, 0, 1, 0, 0, 0, 2]));
    ready.extend(pg_message(b'Z', b"I"));
    let mut result = pg_message(
        b'T',
        &[
            0, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    );
    result.extend(pg_message(b'D', &[0, 1, 0, 0, 0, 1, b'1']));
    result.extend(pg_message(b'C', b"SELECT 1\0"));
    result.extend(pg_message(b'Z', b"I"));
    // The extended protocol: Parse, Bind, Execute, Sync.
    let mut extended = pg_message(b'P', b"\0INSERT INTO t VALUES ($1)\0\0\0");
    extended.extend(pg_message(
        b'B',
        &[0, 0, 0, 0, 0, 1, 0, 0, 0, 1, b'7', 0, 0],
    ));
    extended.extend(pg_message(b'E', &[0, 0, 0, 0, 0]));
    extended.extend(pg_message(b'S', &[]));
    let mut inserted = pg_message(b'1', &[]);
    inserted.extend(pg_message(b'2', &[]));
    inserted.extend(pg_message(b'C', b"INSERT 0 1\0"));
    inserted.extend(pg_message(b'Z', b"I"));
    Script::new(40_005, 5432)
        .client(1, startup("app", Some("shop")))
        .server(2, ready)
        .client(10, pg_message(b'Q', b"select * from orders\0"))
        .server(15, result)
        .client(20, extended)
        .server(21, inserted)
        .client(30, pg_message(b'X', &[]))
}

#[test]
fn postgresql_startup_queries_and_ready_for_query() {
    let labels = run(&postgres_script().frames()).labels();
    assert_label(
        &labels[0],
        "postgresql",
        5432,
        &["user app database shop", "query SELECT", "query INSERT"],
        (2, 2),
        Some(3.0),
    );
}

#[test]
fn database_connections_over_ssl_stop_being_read() {
    let postgres = Script::new(40_006, 5432)
        .client(1, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .server(2, b"S")
        .client(3, record(22, &client_hello("db.example", &[])))
        .server(4, record(22, &[2; 50]));
    // MySQL's SSLRequest: capabilities (PROTOCOL_41, SSL, SECURE_CONNECTION), max packet size,
    // character set, filler; 32 bytes.
    let mut ssl_request = 0x8a00u32.to_le_bytes().to_vec();
    ssl_request.extend((1u32 << 24).to_le_bytes());
    ssl_request.push(0x21);
    ssl_request.extend([0; 23]);
    let mysql = Script::new(40_023, 3306)
        .server(1, greeting("8.4.0"))
        .client(2, mysql_packet(1, &ssl_request))
        .client(3, record(22, &client_hello("db.example", &[])))
        .server(4, record(22, &[2; 50]));
    let mut frames = postgres.frames();
    frames.extend(mysql.frames());
    let engine = run(&frames);
    let labels = engine.labels();
    assert_label(
        &labels[0],
        "mysql",
        3306,
        &["server 8.4.0", "ssl"],
        (0, 0),
        None,
    );
    assert_label(&labels[1], "postgresql", 5432, &["ssl"], (0, 0), None);
    assert_eq!(engine.stats().parse_failures, 0);
}

fn mysql_script() -> Script {
    let mut result_set = mysql_packet(1, &[1]);
    result_set.extend(mysql_packet(
        2,
        b"\x03def\x04shop\x05users\x05users\x02id\x02id\x0c\x3f\0\x0b\0\0\0\x03\0\0\0\0\0",
    ));
    result_set.extend(mysql_packet(3, &[0xfe, 0, 0, 2, 0]));
    result_set.extend(mysql_packet(4, b"\x017"));
    result_set.extend(mysql_packet(5, &[0xfe, 0, 0, 2, 0]));
    let ok = |seq| mysql_packet(seq, &[0, 0, 0, 2, 0, 0, 0]);
    let mut query = vec![0x03];
    query.extend(b"SELECT id FROM users");
    let mut insert = vec![0x03];
    insert.extend(b"insert into t values (1)");
    Script::new(40_007, 3306)
        .server(1, greeting("8.0.36"))
        .client(2, login("app", Some("shop")))
        .server(3, ok(2))
        .client(10, mysql_packet(0, &query))
        .server(14, result_set)
        .client(20, mysql_packet(0, &[0x0e])) // COM_PING: no request counted
        .server(21, ok(1))
        .client(30, mysql_packet(0, &insert))
        .server(32, ok(1))
}

#[test]
fn mysql_greeting_login_and_queries() {
    let labels = run(&mysql_script().frames()).labels();
    assert_label(
        &labels[0],
        "mysql",
        3306,
        &[
            "server 8.0.36",
            "user app database shop",
            "query SELECT",
            "query INSERT",
        ],
        (2, 2),
        Some(3.0),
    );
}

fn redis_script() -> Script {
    Script::new(40_008, 6379)
        .client(
            1,
            "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n*2\r\n$3\r\nget\r\n$3\r\nkey\r\n",
        )
        .server(3, "+OK\r\n$5\r\nvalue\r\n")
        .client(10, "*2\r\n$7\r\nHGETALL\r\n$1\r\nh\r\n")
        // A RESP3 push (not an answer), then a map with a nested array and a null.
        .server(
            14,
            ">2\r\n$7\r\nmessage\r\n$1\r\nx\r\n%2\r\n$1\r\na\r\n*2\r\n:1\r\n:2\r\n$1\r\nb\r\n_\r\n",
        )
        .client(20, "*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n")
        .server(21, "$-1\r\n")
}

#[test]
fn redis_commands_and_replies() {
    let labels = run(&redis_script().frames()).labels();
    // 2 + 2 + 4 + 1 ms over four replies.
    assert_label(
        &labels[0],
        "redis",
        6379,
        &["SET", "GET", "HGETALL"],
        (4, 4),
        Some(2.25),
    );
}

#[test]
fn unrecognized_conversations_are_labeled_by_port() {
    // The server speaks first; the client's answer settles it.
    let ssh = Script::new(40_009, 22)
        .server(1, "SSH-2.0-OpenSSH_9.6\r\n")
        .client(2, "SSH-2.0-client\r\n");
    let mut frames = ssh.frames();
    // A connection that carried nothing, and a datagram nobody recognizes.
    frames.extend(
        Conn::new((CLIENT, 40_010), (SERVER, 9000))
            .open(ms(3))
            .close(ms(4)),
    );
    frames.push((
        ms(5),
        udp_frame(
            (CLIENT, 40_011),
            (SERVER, 4789),
            &[0x08, 0, 0, 0, 0, 0, 1, 0],
        ),
    ));
    let engine = run(&frames);
    let labels = engine.labels();
    assert_eq!(labels.len(), 3);
    assert_label(&labels[0], "tcp/22", 22, &[], (0, 0), None);
    assert_label(&labels[1], "udp/4789", 4789, &[], (0, 0), None);
    assert_label(&labels[2], "tcp/9000", 9000, &[], (0, 0), None);
}

#[test]
fn roles_without_the_handshake_come_from_the_ports() {
    // Mirroring starts mid-connection: the first frame seen is a response.
    let mut conn = Conn::new((CLIENT, 40_012), (SERVER, 8080));
    conn.send(
        false,
        ms(1),
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    conn.send(true, ms(2), b"GET /b HTTP/1.1\r\nHost: app\r\n\r\n");
    conn.send(false, ms(5), b"HTTP/1.1 204 No Content\r\n\r\n");
    let engine = run(&conn.frames);
    let labels = engine.labels();
    assert_eq!(labels.len(), 1);
    assert_label(
        &labels[0],
        "http",
        8080,
        &["status 200", "GET app", "status 204"],
        (1, 2),
        Some(3.0),
    );
    assert!(second_is_server(40_000, 3306));
    assert!(!second_is_server(443, 50_000));
    assert!(second_is_server(50_001, 50_000));
}

#[test]
fn connections_joined_past_their_handshake_are_recognized_by_their_framing() {
    // TLS from the first request's last record on: 12 - 10 and 26 - 20 ms.
    let labels = run(&tls_script().joined(3)).labels();
    assert_label(&labels[0], "tls", 443, &[], (2, 2), Some(4.0));
    // PostgreSQL and MySQL from their first query on: 5 and 1 ms, 4 and 2 ms.
    let labels = run(&postgres_script().joined(2)).labels();
    let queries = ["query SELECT", "query INSERT"];
    assert_label(&labels[0], "postgresql", 5432, &queries, (2, 2), Some(3.0));
    let labels = run(&mysql_script().joined(3)).labels();
    assert_label(&labels[0], "mysql", 3306, &queries, (2, 2), Some(3.0));
    // The handshake-free recognizers still work, and decide first.
    let labels = run(&redis_script().joined(2)).labels();
    assert_eq!(labels[0].protocol, "redis");
}

#[test]
fn joined_connections_are_read_only_from_a_message_boundary() {
    let request = record(23, &[0xbb; 300]);
    let conversation = |pieces: &[(usize, usize)], data: &[u8]| {
        let mut conn = Conn::new((CLIENT, 40_020), (SERVER, 443));
        conn.send_pieces(true, ms(1), data, pieces);
        conn.send(false, ms(3), &record(23, &[0xdd; 80]));
        run(&conn.close(ms(4))).labels()
    };
    // A record over two segments is recognized once it is whole.
    let labels = conversation(&[(0, 100), (100, request.len())], &request);
    assert_label(&labels[0], "tls", 443, &[], (1, 1), Some(2.0));
    // From the middle of a record, nothing is recognized: the port labels it.
    let labels = conversation(&[(0, request.len() - 7)], &request[7..]);
    assert_label(&labels[0], "tcp/443", 443, &[], (0, 0), None);
    // Bytes that frame as records but do not end where one does are no TLS either.
    let mut trailing = request.clone();
    trailing.extend([0x17, 3, 3]);
    let labels = conversation(&[(0, trailing.len())], &trailing);
    assert_eq!(labels[0].protocol, "tcp/443");
    // A connection seen from its SYN never takes the mid-stream framings.
    let opened = Script::new(40_021, 443)
        .client(1, &request)
        .server(3, record(23, &[0xdd; 80]));
    let labels = run(&opened.frames()).labels();
    assert_eq!(labels[0].protocol, "tcp/443");
}

#[test]
fn a_connection_joined_inside_a_message_is_recognized_from_the_next_one() {
    // The mirror starts in the middle of a long COM_QUERY that spans three segments: its
    // tail frames as nothing, nor does the result set; the next query does.
    let mut long_query = vec![0x03];
    long_query.extend(b"SELECT * FROM orders WHERE note = '");
    long_query.extend([b'x'; 3000]);
    long_query.extend(b"'");
    let long_query = mysql_packet(0, &long_query);
    let mut insert = vec![0x03];
    insert.extend(b"insert into t values (1)");
    let mut conn = Conn::new((CLIENT, 40_030), (SERVER, 3306));
    conn.send(true, ms(1), &long_query[1400..]);
    conn.send(false, ms(3), &mysql_packet(1, &[0, 0, 0, 2, 0, 0, 0]));
    conn.send(true, ms(10), &mysql_packet(0, &insert));
    conn.send(false, ms(14), &mysql_packet(1, &[0, 0, 0, 2, 0, 0, 0]));
    let labels = run(&conn.close(ms(15))).labels();
    assert_label(
        &labels[0],
        "mysql",
        3306,
        &["query INSERT"],
        (1, 1),
        Some(4.0),
    );

    // An unknown protocol joined mid-stream is still labeled by its port, once the fresh
    // starts are spent.
    let mut conn = Conn::new((CLIENT, 40_031), (SERVER, 9102));
    for i in 0..12 {
        conn.send(true, ms(i), &[0x5a; 200]);
        conn.send(false, ms(i), &[0xa5; 100]);
    }
    let labels = run(&conn.close(ms(13))).labels();
    assert_label(&labels[0], "tcp/9102", 9102, &[], (0, 0), None);
}

#[test]
fn a_stream_joined_while_only_its_server_sends_is_labeled_by_its_port() {
    // A backup stream mirrored from its middle: 16 KiB chunks from the server, which the
    // client only acknowledges.
    let stream = || {
        let mut conn = Conn::new((CLIENT, 40_040), (SERVER, 9102));
        for i in 0..8 {
            conn.send(false, ms(i * 100), &[0x42; 16 * 1024]);
            conn.ack(true, ms(i * 100 + 1));
        }
        conn
    };
    let labels = run(&stream().close(ms(900))).labels();
    assert_eq!(labels.len(), 1);
    assert_label(&labels[0], "tcp/9102", 9102, &[], (0, 0), None);
    // Still open, it waits (the client may yet say what it speaks), also past its buffer
    // bound, and is labeled when it goes idle.
    let config = DpiConfig {
        max_stream_bytes: 32 * 1024,
        idle_timeout: Duration::from_secs(10),
        ..DpiConfig::default()
    };
    let mut engine = run_with(config.clone(), &stream().frames);
    assert!(engine.labels().is_empty());
    assert_eq!(engine.stats().streams_abandoned, 1);
    engine.expire_idle(Duration::from_secs(20));
    let labels = engine.labels();
    assert_eq!(labels.len(), 1);
    assert_label(&labels[0], "tcp/9102", 9102, &[], (0, 0), None);

    // Server bytes the client acknowledges with the number it had already sent are no
    // connection: a segment retransmitted after the close, answered from TIME_WAIT.
    let mut late = Conn::new((CLIENT, 40_041), (SERVER, 9102));
    for at in [1, 3] {
        late.send(false, ms(at), &[0x42; 1400]);
        late.ack(true, ms(at + 1));
        // The same segment again.
        late.next[1] = late.next[1].wrapping_sub(1400);
    }
    let mut engine = run_with(config, &late.frames);
    engine.expire_idle(Duration::from_secs(20));
    assert_eq!(engine.labels(), Vec::new());
}

#[test]
fn a_gap_stops_parsing_that_direction_only() {
    let config = DpiConfig {
        max_stream_bytes: 2000,
        ..DpiConfig::default()
    };
    let mut conn = Conn::new((CLIENT, 40_013), (SERVER, 80)).open(ms(0));
    conn.send(true, ms(1), b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
    // 100 bytes are lost; what follows is held until the window is full, then given up.
    conn.next[0] = conn.next[0].wrapping_add(100);
    for i in 0..4 {
        conn.send(true, ms(2 + i), &[b'G'; 600]);
    }
    conn.send(
        false,
        ms(8),
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    let engine = run_with(config, &conn.close(ms(9)));
    assert_label(
        &engine.labels()[0],
        "http",
        80,
        &["GET a", "status 200"],
        (1, 1),
        Some(7.0),
    );
    assert_eq!(engine.stats().streams_abandoned, 1);
}

#[test]
fn frames_that_cannot_be_inspected_are_refused_and_counted() {
    let mut engine = DpiEngine::new(DpiConfig::default());
    let good = udp_frame((CLIENT, 1), (SERVER, 2), b"x");
    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(
        engine.observe(ms(0), &arp),
        Err(DpiFrameError::NotIpv4(0x0806))
    );
    let mut icmp = good.clone();
    icmp[14 + 9] = 1;
    assert_eq!(
        engine.observe(ms(0), &icmp),
        Err(DpiFrameError::NotTcpOrUdp(1))
    );
    let mut corrupt = good.clone();
    *corrupt.last_mut().unwrap() ^= 1;
    assert!(matches!(
        engine.observe(ms(0), &corrupt),
        Err(DpiFrameError::Malformed(_))
    ));
    assert!(matches!(
        engine.observe(ms(0), &good[..20]),
        Err(DpiFrameError::Malformed(_))
    ));
    engine.observe(ms(0), &good).unwrap();
    let s = engine.stats();
    assert_eq!(
        (
            s.frames,
            s.frames_not_ipv4,
            s.frames_not_tcp_udp,
            s.frames_malformed,
            s.udp_datagrams
        ),
        (5, 1, 1, 2, 1)
    );

    // Checksums left to offload are accepted when asked; the rest is checked as before.
    let mut lenient = DpiEngine::new(DpiConfig {
        verify_checksums: false,
        ..DpiConfig::default()
    });
    lenient.observe(ms(0), &corrupt).unwrap();
    let mut tcp = Conn::new((CLIENT, 40_020), (SERVER, 80)).open(ms(0));
    tcp.send(true, ms(1), b"GET / HTTP/1.1\r\nHost: offload\r\n\r\n");
    for (at, mut f) in tcp.frames {
        f[14 + 20 + 16] ^= 0xff; // the TCP checksum
        assert!(matches!(
            engine.observe(at, &f),
            Err(DpiFrameError::Malformed(_))
        ));
        lenient.observe(at, &f).unwrap();
    }
    let mut long = good.clone();
    long[14 + 3] += 1; // an IPv4 total length beyond the frame
    assert_eq!(
        lenient.observe(ms(2), &long),
        Err(WireError::Truncated.into())
    );
    assert_eq!(lenient.labels()[1].details, ["GET offload"]);
    assert_eq!(lenient.stats().udp_datagrams, 1);
}

#[test]
fn the_engine_wide_byte_budget() {
    let config = DpiConfig {
        max_buffered_bytes: 3000,
        ..DpiConfig::default()
    };
    let mut frames = Vec::new();
    for port in [40_021, 40_022] {
        let mut c = Conn::new((CLIENT, port), (SERVER, 80)).open(ms(0));
        // A gap: what follows is held until it fills.
        c.next[0] = c.next[0].wrapping_add(10);
        c.send(true, ms(1), &[b'x'; 2000]);
        frames.extend(c.frames);
    }
    let mut engine = run_with(config, &frames);
    let s = engine.stats();
    // The second connection's first held segment went over: it gave up and let go.
    assert_eq!((s.bytes_buffered, s.streams_abandoned), (2000, 1));
    engine.expire_idle(Duration::from_secs(1000));
    assert_eq!(engine.stats().bytes_buffered, 0);
}

#[test]
fn flow_table_and_label_bounds() {
    let config = DpiConfig {
        max_flows: 1,
        max_details: 2,
        ..DpiConfig::default()
    };
    let mut a = Conn::new((CLIENT, 40_014), (SERVER, 80)).open(ms(0));
    a.send(true, ms(1), b"GET / HTTP/1.1\r\nHost: one\r\n\r\nGET / HTTP/1.1\r\nHost: two\r\n\r\nGET / HTTP/1.1\r\nHost: three\r\n\r\n");
    let mut frames = a.frames;
    let b = Conn::new((CLIENT, 40_015), (SERVER, 80)).open(ms(2));
    frames.extend(b.frames);
    let engine = run_with(config, &frames);
    let s = engine.stats();
    // The second connection's SYN and SYN-ACK are refused; its bare ACK would not start a flow.
    assert_eq!(
        (s.flows_started, s.frames_untracked, s.details_dropped),
        (1, 2, 1)
    );
    assert_label(
        &engine.labels()[0],
        "http",
        80,
        &["GET one", "GET two"],
        (3, 0),
        None,
    );

    let config = DpiConfig {
        max_labels: 1,
        ..DpiConfig::default()
    };
    let frames = [53_001, 53_002].map(|port| {
        let c = (Ipv4Addr::new(10, 0, 0, (port % 100) as u8), port);
        (
            ms(0),
            udp_frame(c, (SERVER, 53), &dns_message(1, "a", 1, None)),
        )
    });
    let engine = run_with(config, &frames);
    assert_eq!(
        (engine.labels().len(), engine.stats().labels_refused),
        (1, 1)
    );
}

#[test]
fn idle_flows_expire_and_undecided_ones_get_their_port_label() {
    let config = DpiConfig {
        idle_timeout: Duration::from_secs(10),
        ..DpiConfig::default()
    };
    let mut engine = run_with(
        config,
        &Conn::new((CLIENT, 40_016), (SERVER, 7000))
            .open(ms(0))
            .frames,
    );
    assert!(
        engine.labels().is_empty(),
        "an open connection that said nothing has no label yet"
    );
    engine.expire_idle(Duration::from_secs(5));
    assert_eq!(engine.stats().flows_active, 1);
    // A later frame of another flow sweeps it out.
    let late = udp_frame((CLIENT, 1), (SERVER, 2), b"x");
    engine.observe(Duration::from_secs(11), &late).unwrap();
    let s = engine.stats();
    assert_eq!((s.flows_expired, s.flows_active), (1, 1));
    let protocols: Vec<String> = engine.labels().into_iter().map(|l| l.protocol).collect();
    assert_eq!(protocols, ["udp/2", "tcp/7000"]);
}

#[test]
fn a_new_syn_on_the_same_ports_is_a_new_connection() {
    let first = Conn::new((CLIENT, 40_017), (SERVER, 6379)).open(ms(0));
    let mut frames = first.frames;
    // The first connection vanishes without FIN (its host rebooted); a second one, with
    // another ISN, reuses the ports and speaks Redis.
    let mut second = Conn::new((CLIENT, 40_017), (SERVER, 6379));
    second.next = [7, 9];
    let mut second = second.open(ms(5));
    second.send(true, ms(6), b"*1\r\n$4\r\nPING\r\n");
    second.send(false, ms(7), b"+PONG\r\n");
    frames.extend(second.frames);
    let engine = run(&frames);
    let labels = engine.labels();
    assert_eq!(labels.len(), 2);
    assert_label(&labels[0], "redis", 6379, &["PING"], (1, 1), Some(1.0));
    assert_eq!(labels[1].protocol, "tcp/6379");
}

fn scripts() -> Vec<Script> {
    vec![
        http_script(),
        tls_script(),
        dns_tcp_script(),
        postgres_script(),
        mysql_script(),
        redis_script(),
    ]
}

#[test]
fn every_two_way_split_of_every_message_gives_the_same_labels() {
    for script in scripts() {
        let expected = run(&script.frames()).labels();
        for (m, (_, _, data)) in script.messages.iter().enumerate() {
            // The big body is covered by the property test; here every boundary of the rest.
            if data.len() > 3000 {
                continue;
            }
            for cut in 1..data.len() {
                let frames = script.frames_with(|i, d| {
                    if i == m {
                        // The second piece first: held out of order, then completed by a
                        // segment overlapping it, then retransmitted.
                        vec![(cut, d.len()), (0, d.len().min(cut + 3)), (cut, d.len())]
                    } else {
                        vec![(0, d.len())]
                    }
                });
                assert_eq!(run(&frames).labels(), expected, "message {m} cut at {cut}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_splits_reorderings_and_retransmissions_give_the_same_labels(
        which in 0usize..6,
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        keys in proptest::collection::vec(any::<u16>(), 1..32),
        resent in proptest::collection::vec(any::<(prop::sample::Index, prop::sample::Index)>(), 0..4),
    ) {
        let script = &scripts()[which];
        let expected = run(&script.frames()).labels();
        let frames = script.frames_with(|i, data| {
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            points.extend([0, data.len()]);
            points.sort_unstable();
            points.dedup();
            let mut pieces: Vec<(usize, usize)> = points.windows(2).map(|w| (w[0], w[1])).collect();
            // Reordered, and with retransmissions of arbitrary ranges anywhere among them.
            for (a, b) in &resent {
                let (a, b) = (a.index(data.len() + 1), b.index(data.len() + 1));
                pieces.push((a.min(b), a.max(b)));
            }
            let mut keyed: Vec<(u16, (usize, usize))> = pieces
                .into_iter()
                .enumerate()
                .map(|(p, range)| (keys[(p + i) % keys.len()], range))
                .collect();
            keyed.sort_by_key(|&(k, _)| k);
            keyed.into_iter().map(|(_, range)| range).filter(|(a, b)| a < b).collect()
        });
        prop_assert_eq!(run(&frames).labels(), expected);
    }

    #[test]
    fn arbitrary_bytes_as_frames_never_panic(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20)
    ) {
        let mut engine = DpiEngine::new(DpiConfig::default());
        for (i, f) in frames.iter().enumerate() {
            let _ = engine.observe(ms(i as u64), f);
        }
        let _ = engine.labels();
        prop_assert_eq!(engine.stats().frames, frames.len() as u64);
    }

    /// Valid frames of one connection whose payloads start like each protocol and continue
    /// with arbitrary bytes: every parser meets garbage, and must stop, not panic.
    #[test]
    fn arbitrary_payloads_after_a_protocol_prefix_never_panic(
        prefix in 0usize..7,
        payloads in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)), 1..12),
    ) {
        let prefixes: [Vec<u8>; 7] = [
            b"GET / HTTP/1.1\r\n".to_vec(),
            record(22, &client_hello("a", &[]))[..20].to_vec(),
            startup("u", None),
            b"*2\r\n$3\r\n".to_vec(),
            vec![0, 20, 0, 0],
            vec![],
            greeting("5.7"),
        ];
        let mut conn = Conn::new((CLIENT, 40_100), (SERVER, 1234)).open(ms(0));
        let server_first = prefix == 6;
        conn.send(!server_first, ms(1), &prefixes[prefix]);
        for (i, (from_client, data)) in payloads.iter().enumerate() {
            conn.send(*from_client, ms(2 + i as u64), data);
        }
        let mut engine = run(&conn.close(ms(100)));
        engine.expire_idle(Duration::from_secs(1000));
        let s = engine.stats();
        prop_assert_eq!((s.flows_active, s.bytes_buffered), (0, 0));
        let labels = engine.labels();
        prop_assert!(labels.len() <= 1);
        for l in &labels {
            prop_assert!(l.details.len() <= DpiConfig::default().max_details);
        }
    }
}
