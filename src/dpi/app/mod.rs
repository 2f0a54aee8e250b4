//! Application protocols: recognizing one from a connection's first bytes, and the incremental
//! parsers that turn each direction's reassembled bytes into requests, responses and details.
//!
//! A parser never sees a byte out of order or twice: the flow layer hands it each direction's
//! contiguous bytes, and skips bodies the parser asked to skip. A parser that meets something it
//! cannot read says [`Step::Fail`] and gets no more bytes of that direction, so it can stop
//! counting but never misparse.

pub(super) mod dns;
pub(super) mod http;
pub(super) mod mysql;
pub(super) mod ntp;
pub(super) mod postgres;
pub(super) mod redis;
pub(super) mod tls;

use std::collections::VecDeque;
use std::time::Duration;

use super::LabelStats;

/// The protocols DPI recognizes; anything else is labeled by transport and server port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Protocol {
    Http,
    Tls,
    Dns,
    Postgresql,
    Mysql,
    Redis,
    Ntp,
    OtherTcp,
    OtherUdp,
}

impl Protocol {
    /// The name an [`crate::hostlink::AppLabel`] carries.
    pub(super) fn name(self, server_port: u16) -> String {
        match self {
            Protocol::Http => "http".into(),
            Protocol::Tls => "tls".into(),
            Protocol::Dns => "dns".into(),
            Protocol::Postgresql => "postgresql".into(),
            Protocol::Mysql => "mysql".into(),
            Protocol::Redis => "redis".into(),
            Protocol::Ntp => "ntp".into(),
            Protocol::OtherTcp => format!("tcp/{server_port}"),
            Protocol::OtherUdp => format!("udp/{server_port}"),
        }
    }
}

/// A direction of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    ToServer,
    ToClient,
}

/// What a parser did with the bytes it was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Nothing can be read until more bytes arrive.
    More,
    /// `consumed` bytes of the buffer are read; the `skip` bytes after them (which may not have
    /// arrived yet) are to be dropped unread (bodies). `u64::MAX` skips to the end of the stream.
    Advance { consumed: usize, skip: u64 },
    /// This direction is not what the parser expects: stop parsing it (counted as a failure).
    Fail,
    /// The rest of the connection is no longer this protocol (a TLS upgrade, a tunnel): stop
    /// parsing both directions.
    Opaque,
}

/// Where a parser's findings go: the label of its connection, at the time of the frame whose
/// bytes completed the message being read.
pub(super) struct Tally<'a> {
    pub(super) at: Duration,
    label: Option<&'a mut LabelStats>,
    max_details: usize,
    details_dropped: &'a mut u64,
}

impl<'a> Tally<'a> {
    /// `label` is None when the label table is full: findings are then dropped (and that was
    /// counted when the label was refused).
    pub(super) fn new(
        at: Duration,
        label: Option<&'a mut LabelStats>,
        max_details: usize,
        details_dropped: &'a mut u64,
    ) -> Self {
        Tally {
            at,
            label,
            max_details,
            details_dropped,
        }
    }

    pub(super) fn request(&mut self) {
        if let Some(l) = self.label.as_deref_mut() {
            l.requests += 1;
        }
    }

    /// A response; `elapsed` is the time since its request when the protocol pairs them.
    pub(super) fn response(&mut self, elapsed: Option<Duration>) {
        if let Some(l) = self.label.as_deref_mut() {
            l.responses += 1;
            if let Some(e) = elapsed {
                l.response_time_sum += e;
                l.timed_responses += 1;
            }
        }
    }

    /// Records a detail unless the label already has it; past `max_details` distinct details,
    /// new ones are counted as dropped.
    pub(super) fn detail(&mut self, detail: String) {
        let Some(l) = self.label.as_deref_mut() else {
            return;
        };
        if l.details.contains(&detail) {
            return;
        }
        if l.details.len() < self.max_details {
            l.details.push(detail);
        } else {
            *self.details_dropped += 1;
        }
    }

    /// The time since `then`, or zero if the frames' clock went backwards.
    pub(super) fn since(&self, then: Duration) -> Duration {
        self.at.saturating_sub(then)
    }
}

/// Most requests a connection can have outstanding with their send times remembered.
const MAX_PENDING: usize = 1024;

/// Requests waiting for their responses, oldest first, with what the response parser needs to
/// know about each. Past [`MAX_PENDING`] the newest requests are only counted: their responses
/// (which come after all remembered ones) are then untimed.
#[derive(Debug)]
pub(super) struct Pending<T> {
    queue: VecDeque<(Duration, T)>,
    untimed: u64,
}

/// The request a response answers.
pub(super) enum Answered<T> {
    Timed(Duration, T),
    /// One of the requests past the bound.
    Untimed,
    /// No request is outstanding (it was missed, or the response is unsolicited).
    None,
}

impl<T> Pending<T> {
    pub(super) fn new() -> Self {
        Pending {
            queue: VecDeque::new(),
            untimed: 0,
        }
    }

    pub(super) fn push(&mut self, at: Duration, what: T) {
        if self.queue.len() < MAX_PENDING && self.untimed == 0 {
            self.queue.push_back((at, what));
        } else {
            self.untimed += 1;
        }
    }

    /// Moves the newest request's time to `at` (it continues in a later record or frame).
    pub(super) fn renew_newest(&mut self, at: Duration) {
        if self.untimed == 0 {
            if let Some(newest) = self.queue.back_mut() {
                newest.0 = at;
            }
        }
    }

    pub(super) fn pop(&mut self) -> Answered<T> {
        if let Some((at, what)) = self.queue.pop_front() {
            Answered::Timed(at, what)
        } else if self.untimed > 0 {
            self.untimed -= 1;
            Answered::Untimed
        } else {
            Answered::None
        }
    }
}

/// The outcome of looking at a connection's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recognition {
    Known(Protocol),
    /// A connection joined after its start, at a message boundary after its handshake: its
    /// parser starts past the handshake.
    MidStream(Protocol),
    /// None of the recognizers can match whatever follows.
    Unknown,
    /// A recognizer needs more bytes to decide.
    NeedMore,
}

/// One recognizer's answer about a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Yes,
    No,
    NeedMore,
}

/// Looks at a client's first bytes for one protocol.
type Recognizer = fn(&[u8]) -> Verdict;

/// Recognizes a TCP connection from the first bytes of each direction (either may be empty).
/// The client's bytes decide when there are any; a server that speaks first (MySQL) is
/// recognized from its greeting while the client has said nothing.
pub(super) fn recognize_tcp(to_server: &[u8], to_client: &[u8]) -> Recognition {
    if to_server.is_empty() {
        return match mysql::recognize(to_client) {
            Verdict::Yes => Recognition::Known(Protocol::Mysql),
            // An unknown greeting: wait for the client, whose bytes may still say more.
            Verdict::No | Verdict::NeedMore => Recognition::NeedMore,
        };
    }
    let candidates: [(Recognizer, Protocol); 5] = [
        (http::recognize, Protocol::Http),
        (tls::recognize, Protocol::Tls),
        (postgres::recognize, Protocol::Postgresql),
        (redis::recognize, Protocol::Redis),
        (dns::recognize_tcp, Protocol::Dns),
    ];
    let mut undecided = false;
    for (recognize, protocol) in candidates {
        match recognize(to_server) {
            Verdict::Yes => return Recognition::Known(protocol),
            Verdict::NeedMore => undecided = true,
            Verdict::No => {}
        }
    }
    if undecided {
        Recognition::NeedMore
    } else if mysql::recognize(to_client) == Verdict::Yes {
        // The greeting came first and the client is answering it.
        Recognition::Known(Protocol::Mysql)
    } else {
        Recognition::Unknown
    }
}

/// Recognizes a TCP connection whose handshake was not seen (mirroring began while it was
/// open): a request of the handshake-free recognizers, or the client's bytes read as whole
/// messages of a protocol past its handshake: TLS records, MySQL commands, PostgreSQL messages.
/// Those framings say little alone, so the client's bytes must end exactly where a message does.
pub(super) fn recognize_tcp_mid_stream(to_server: &[u8], to_client: &[u8]) -> Recognition {
    if to_server.is_empty() {
        return recognize_tcp(to_server, to_client);
    }
    let candidates: [(Recognizer, Protocol); 3] = [
        (tls::recognize_records, Protocol::Tls),
        (mysql::recognize_commands, Protocol::Mysql),
        (postgres::recognize_messages, Protocol::Postgresql),
    ];
    let mut undecided = false;
    for (recognize, protocol) in candidates {
        match recognize(to_server) {
            Verdict::Yes => return Recognition::MidStream(protocol),
            Verdict::NeedMore => undecided = true,
            Verdict::No => {}
        }
    }
    match recognize_tcp(to_server, to_client) {
        Recognition::Unknown if undecided => Recognition::NeedMore,
        other => other,
    }
}

/// Walks `buf` as a run of messages: `frame` gives the length of the message at the front of
/// what it is shown (or says No, or NeedMore for a header cut short), and `first` vets the first
/// message. Yes only when the run ends exactly at the end of `buf`.
fn whole_messages(
    buf: &[u8],
    mut frame: impl FnMut(&[u8]) -> Result<usize, Verdict>,
    first: impl Fn(&[u8]) -> bool,
) -> Verdict {
    if buf.is_empty() {
        return Verdict::NeedMore;
    }
    if !first(buf) {
        return Verdict::No;
    }
    let mut at = 0;
    while at < buf.len() {
        match frame(&buf[at..]) {
            Ok(len) => at += len,
            Err(verdict) => return verdict,
        }
    }
    if at == buf.len() {
        Verdict::Yes
    } else {
        Verdict::NeedMore
    }
}

/// The parser of a recognized TCP connection.
pub(super) enum TcpParser {
    Http(http::Http),
    Tls(tls::Tls),
    Dns(dns::DnsOverTcp),
    Postgresql(postgres::Postgres),
    Mysql(mysql::MySql),
    Redis(redis::Redis),
}

impl TcpParser {
    /// A parser for `protocol`, or None for the port-only ones.
    pub(super) fn new(protocol: Protocol) -> Option<Self> {
        Some(match protocol {
            Protocol::Http => TcpParser::Http(http::Http::new()),
            Protocol::Tls => TcpParser::Tls(tls::Tls::new()),
            Protocol::Dns => TcpParser::Dns(dns::DnsOverTcp::new()),
            Protocol::Postgresql => TcpParser::Postgresql(postgres::Postgres::new()),
            Protocol::Mysql => TcpParser::Mysql(mysql::MySql::new()),
            Protocol::Redis => TcpParser::Redis(redis::Redis::new()),
            Protocol::Ntp | Protocol::OtherTcp | Protocol::OtherUdp => return None,
        })
    }

    /// A parser for a connection joined past its handshake (see [`Recognition::MidStream`]).
    pub(super) fn mid_stream(protocol: Protocol) -> Option<Self> {
        Some(match protocol {
            Protocol::Tls => TcpParser::Tls(tls::Tls::mid_stream()),
            Protocol::Postgresql => TcpParser::Postgresql(postgres::Postgres::mid_stream()),
            Protocol::Mysql => TcpParser::Mysql(mysql::MySql::mid_stream()),
            other => return TcpParser::new(other),
        })
    }

    /// Reads at most one message (or message part) from the front of `buf`.
    pub(super) fn step(&mut self, dir: Dir, buf: &[u8], tally: &mut Tally<'_>) -> Step {
        match self {
            TcpParser::Http(p) => p.step(dir, buf, tally),
            TcpParser::Tls(p) => p.step(dir, buf, tally),
            TcpParser::Dns(p) => p.step(dir, buf, tally),
            TcpParser::Postgresql(p) => p.step(dir, buf, tally),
            TcpParser::Mysql(p) => p.step(dir, buf, tally),
            TcpParser::Redis(p) => p.step(dir, buf, tally),
        }
    }
}

/// `bytes` as detail text: printable ASCII kept (at most `max` characters), anything else
/// escaped as `\xNN`, so a detail is always one readable line.
pub(super) fn printable(bytes: &[u8], max: usize) -> String {
    let mut out = String::new();
    for &b in bytes.iter().take(max) {
        if b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The first word of a query text, upper-cased (`SELECT`), or None when it does not start with
/// a letter. Leading blanks are skipped; at most 16 letters are kept.
pub(super) fn first_keyword(text: &[u8]) -> Option<String> {
    let start = text.iter().position(|b| !b.is_ascii_whitespace())?;
    let word: String = text[start..]
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .take(16)
        .map(|b| char::from(b.to_ascii_uppercase()))
        .collect();
    (!word.is_empty()).then_some(word)
}

/// The index of the first `\r\n` in `buf` at or after `from`.
pub(super) fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let from = from.min(buf.len());
    buf[from..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

/// The bytes of `buf` up to its first NUL, and the index after that NUL.
pub(super) fn cstr(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = buf.iter().position(|&b| b == 0)?;
    Some((&buf[..end], end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_requests_past_the_bound_answer_untimed_after_the_remembered_ones() {
        let mut p = Pending::new();
        for i in 0..MAX_PENDING as u64 + 2 {
            p.push(Duration::from_millis(i), ());
        }
        assert!(matches!(p.pop(), Answered::Timed(t, ()) if t == Duration::ZERO));
        for _ in 1..MAX_PENDING {
            assert!(matches!(p.pop(), Answered::Timed(..)));
        }
        assert!(matches!(p.pop(), Answered::Untimed));
        assert!(matches!(p.pop(), Answered::Untimed));
        assert!(matches!(p.pop(), Answered::None));
    }

    #[test]
    fn recognition_needs_only_a_short_prefix() {
        assert_eq!(recognize_tcp(b"GE", b""), Recognition::NeedMore);
        assert_eq!(
            recognize_tcp(b"GET ", b""),
            Recognition::Known(Protocol::Http)
        );
        assert_eq!(
            recognize_tcp(b"SSH-2.0-OpenSSH\r\n", b""),
            Recognition::Unknown
        );
        assert_eq!(recognize_tcp(b"", b""), Recognition::NeedMore);
        assert_eq!(
            recognize_tcp(b"", b"220 smtp ready\r\n"),
            Recognition::NeedMore
        );
    }

    #[test]
    fn details_are_printable_and_keywords_upper_case() {
        assert_eq!(printable(b"a b\n\xff", 10), "a\\x20b\\x0a\\xff");
        assert_eq!(first_keyword(b"  select * from t"), Some("SELECT".into()));
        assert_eq!(first_keyword(b"(select 1)"), None);
        assert_eq!(find_crlf(b"ab\r\ncd\r\n", 3), Some(6));
        assert_eq!(cstr(b"ab\0c"), Some((&b"ab"[..], 3)));
    }
}
