//! DNS messages (RFC 1035): over UDP one per datagram, over TCP each behind a two-byte length
//! (RFC 1035 section 4.2.2). A message is read whole and strictly (every record walked to the
//! exact end), so that random bytes are not taken for DNS.
//!
//! Details: `query NAME TYPE` per question asked (`query db1.dc.internal A`) and
//! `rcode RCODE NAME` for answers that are not NOERROR. Responses pair with queries by ID.

use std::collections::HashMap;
use std::time::Duration;

use super::{Dir, Step, Tally, Verdict};

const HEADER_LEN: usize = 12;
/// Longest query accepted when recognizing DNS over TCP (queries are small).
const MAX_RECOGNIZED_QUERY: usize = 4096;
/// Outstanding queries remembered per conversation.
const MAX_PENDING: usize = 256;
/// Compression pointers followed per name before it is taken for a loop.
const MAX_POINTERS: usize = 32;

/// What DPI reads of a DNS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::dpi) struct DnsMessage {
    pub(super) id: u16,
    pub(in crate::dpi) response: bool,
    pub(super) opcode: u8,
    pub(super) rcode: u8,
    pub(super) question: Option<(String, u16)>,
    answers: u16,
}

impl DnsMessage {
    /// Reads a whole message; None unless every section parses to exactly its end.
    pub(in crate::dpi) fn parse(msg: &[u8]) -> Option<Self> {
        if msg.len() < HEADER_LEN {
            return None;
        }
        let be16 = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]);
        let flags = be16(2);
        let counts = [be16(4), be16(6), be16(8), be16(10)];
        let mut at = HEADER_LEN;
        let mut question = None;
        for i in 0..counts[0] {
            let (name, next) = read_name(msg, at)?;
            let qtype = u16::from_be_bytes([*msg.get(next)?, *msg.get(next + 1)?]);
            msg.get(next + 3)?; // class
            at = next + 4;
            if i == 0 {
                question = Some((name, qtype));
            }
        }
        for _ in 0..u32::from(counts[1]) + u32::from(counts[2]) + u32::from(counts[3]) {
            let next = skip_name(msg, at)?;
            let rdlen = usize::from(u16::from_be_bytes([
                *msg.get(next + 8)?,
                *msg.get(next + 9)?,
            ]));
            at = next + 10 + rdlen;
            if at > msg.len() {
                return None;
            }
        }
        if at != msg.len() {
            return None;
        }
        Some(DnsMessage {
            id: be16(0),
            response: flags & 0x8000 != 0,
            opcode: ((flags >> 11) & 0xf) as u8,
            rcode: (flags & 0xf) as u8,
            question,
            answers: counts[1],
        })
    }

    /// An answer to a question, as a server sends it.
    pub(in crate::dpi) fn is_answer(&self) -> bool {
        self.response && self.question.is_some()
    }

    /// A standard query of one question, as a client opens a conversation with.
    pub(in crate::dpi) fn is_plain_query(&self) -> bool {
        !self.response && self.opcode == 0 && self.question.is_some() && self.answers == 0
    }
}

/// The name at `at`, lower-cased and dotted (`.` for the root), and the index after it in the
/// message (after the first pointer if it was compressed).
fn read_name(msg: &[u8], at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut pos = at;
    let mut end = None;
    let mut pointers = 0;
    loop {
        let len = *msg.get(pos)?;
        match len >> 6 {
            0 if len == 0 => break,
            0 => {
                let label = msg.get(pos + 1..pos + 1 + usize::from(len))?;
                if !name.is_empty() {
                    name.push('.');
                }
                for &b in label {
                    match b {
                        b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'*' => name.push(char::from(b)),
                        b'A'..=b'Z' => name.push(char::from(b.to_ascii_lowercase())),
                        _ => name.push_str(&format!("\\{b:03}")),
                    }
                }
                // RFC 1035 limits a name to 255 octets on the wire.
                if name.len() > 1024 {
                    return None;
                }
                pos += 1 + usize::from(len);
            }
            3 => {
                let target = usize::from(u16::from_be_bytes([len, *msg.get(pos + 1)?]) & 0x3fff);
                end.get_or_insert(pos + 2);
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return None;
                }
                pos = target;
            }
            _ => return None, // 0b01 and 0b10 label types are obsolete or unassigned
        }
    }
    if name.is_empty() {
        name.push('.');
    }
    Some((name, end.unwrap_or(pos + 1)))
}

/// The index after the name at `at`, checking the name as `read_name` does.
fn skip_name(msg: &[u8], at: usize) -> Option<usize> {
    read_name(msg, at).map(|(_, next)| next)
}

/// The mnemonic of a record type (RFC 1035, 3596, 2782, 6891, 9460), else `TYPEn` (RFC 3597).
fn type_name(t: u16) -> String {
    let known = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        41 => "OPT",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        _ => return format!("TYPE{t}"),
    };
    known.to_string()
}

/// The mnemonic of a response code (RFC 1035, 2136), else `RCODEn`.
fn rcode_name(r: u8) -> String {
    let known = match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => return format!("RCODE{r}"),
    };
    known.to_string()
}

/// Queries and answers of one conversation, over either transport.
pub(in crate::dpi) struct DnsState {
    pending: HashMap<u16, Duration>,
}

impl DnsState {
    pub(in crate::dpi) fn new() -> Self {
        DnsState {
            pending: HashMap::new(),
        }
    }

    /// Whether every query seen has been answered.
    pub(in crate::dpi) fn all_answered(&self) -> bool {
        self.pending.is_empty()
    }

    pub(in crate::dpi) fn message(&mut self, msg: &DnsMessage, tally: &mut Tally<'_>) {
        if msg.response {
            let elapsed = self.pending.remove(&msg.id).map(|at| tally.since(at));
            tally.response(elapsed);
            if msg.rcode != 0 {
                let name = msg.question.as_ref().map_or(".", |(n, _)| n.as_str());
                tally.detail(format!("rcode {} {name}", rcode_name(msg.rcode)));
            }
        } else {
            tally.request();
            if let Some((name, qtype)) = &msg.question {
                tally.detail(format!("query {name} {}", type_name(*qtype)));
            }
            if self.pending.len() < MAX_PENDING || self.pending.contains_key(&msg.id) {
                self.pending.insert(msg.id, tally.at);
            }
        }
    }
}

/// Recognizes a client's first bytes as a length-prefixed DNS query.
pub(super) fn recognize_tcp(buf: &[u8]) -> Verdict {
    let Some(len) = buf
        .get(..2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    else {
        return Verdict::NeedMore;
    };
    if !(HEADER_LEN + 5..=MAX_RECOGNIZED_QUERY).contains(&len) {
        return Verdict::No;
    }
    let Some(msg) = buf.get(2..2 + len) else {
        return Verdict::NeedMore;
    };
    match DnsMessage::parse(msg) {
        Some(m) if m.is_plain_query() => Verdict::Yes,
        _ => Verdict::No,
    }
}

pub(in crate::dpi) struct DnsOverTcp {
    state: DnsState,
}

impl DnsOverTcp {
    pub(super) fn new() -> Self {
        DnsOverTcp {
            state: DnsState::new(),
        }
    }

    pub(super) fn step(&mut self, _dir: Dir, buf: &[u8], tally: &mut Tally<'_>) -> Step {
        let Some(len) = buf
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            return Step::More;
        };
        let Some(msg) = buf.get(2..2 + len) else {
            return Step::More;
        };
        match DnsMessage::parse(msg) {
            Some(m) => {
                self.state.message(&m, tally);
                Step::Advance {
                    consumed: 2 + len,
                    skip: 0,
                }
            }
            None => Step::Fail,
        }
    }
}

#[cfg(test)]
pub(in crate::dpi) mod tests {
    use super::*;

    /// A query for `name` of type `qtype`, or its answer (one A record, by a pointer to the
    /// question's name) with `rcode`.
    pub(in crate::dpi) fn message(id: u16, name: &str, qtype: u16, answer: Option<u8>) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        let flags: u16 = match answer {
            None => 0x0100,
            Some(rcode) => 0x8180 | u16::from(rcode),
        };
        m.extend(flags.to_be_bytes());
        let answers = u16::from(answer == Some(0));
        m.extend([0, 1]);
        m.extend(answers.to_be_bytes());
        m.extend([0, 0, 0, 0]);
        for label in name.split('.').filter(|l| !l.is_empty()) {
            m.push(label.len() as u8);
            m.extend(label.as_bytes());
        }
        m.push(0);
        m.extend(qtype.to_be_bytes());
        m.extend([0, 1]);
        if answers == 1 {
            m.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 7]);
        }
        m
    }

    #[test]
    fn parses_queries_and_compressed_answers() {
        let q = DnsMessage::parse(&message(7, "DB1.dc.internal", 1, None)).unwrap();
        assert!(q.is_plain_query());
        assert_eq!(q.question, Some(("db1.dc.internal".into(), 1)));
        let a = DnsMessage::parse(&message(7, "db1.dc.internal", 28, Some(0))).unwrap();
        assert!(a.response && !a.is_plain_query());
        assert_eq!((a.id, a.rcode, a.answers), (7, 0, 1));
        let nx = DnsMessage::parse(&message(8, "x.internal", 1, Some(3))).unwrap();
        assert_eq!(rcode_name(nx.rcode), "NXDOMAIN");
        // Trailing bytes, truncation and a pointer loop are all refused.
        let mut long = message(7, "a.b", 1, None);
        long.push(0);
        assert!(DnsMessage::parse(&long).is_none());
        let full = message(7, "db1.dc.internal", 28, Some(0));
        for cut in 0..full.len() {
            assert!(DnsMessage::parse(&full[..cut]).is_none(), "cut at {cut}");
        }
        let mut looped = message(1, "", 1, None);
        looped.truncate(HEADER_LEN);
        looped.extend([0xc0, 12, 0, 1, 0, 1]);
        assert!(DnsMessage::parse(&looped).is_none());
    }

    #[test]
    fn names_escape_odd_bytes() {
        let mut m = message(1, "", 16, None);
        m.truncate(HEADER_LEN);
        m.extend([3, b'a', b' ', 0xff, 0, 0, 16, 0, 1]);
        let q = DnsMessage::parse(&m).unwrap();
        assert_eq!(q.question, Some(("a\\032\\255".into(), 16)));
        assert_eq!(type_name(16), "TXT");
        assert_eq!(type_name(999), "TYPE999");
    }
}
