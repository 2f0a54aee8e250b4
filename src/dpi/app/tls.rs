//! TLS (RFC 8446 and earlier record layers): the record headers of both directions, the
//! ClientHello's server_name (RFC 6066) and ALPN (RFC 7301) extensions, and the version the
//! ServerHello chose.
//!
//! Details: `sni NAME`, `alpn P1,P2`, `version 1.3`. Contents are encrypted, so requests are
//! counted by flights: after the handshake, each run of client application-data records is one
//! request, and the server's next application-data record starts its response. The response time
//! runs from the request's last record to that first answering record. The handshake is no
//! request: in TLS 1.3 the client's first application-data record is its Finished, and the
//! server's application-data records before it are its encrypted handshake. Server records that
//! answer no request (session tickets) are not counted.

use super::{printable, Answered, Dir, Pending, Step, Tally, Verdict};

const HEADER_LEN: usize = 5;
/// The largest record any version allows (2^14 plus expansion, RFC 5246 section 6.2.3).
const MAX_RECORD: usize = (1 << 14) + 2048;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const TLS_1_3: u16 = 0x0304;
/// A ClientHello longer than this (spread over records) is not read.
const MAX_HELLO: usize = 64 * 1024;

pub(super) fn recognize(buf: &[u8]) -> Verdict {
    // A handshake record of TLS 1.0+ (3.1..3.4; 3.0 too) that starts a ClientHello.
    let expected: [fn(u8) -> bool; 6] = [
        |b| b == HANDSHAKE,
        |b| b == 3,
        |b| b <= 4,
        |_| true,
        |_| true,
        |b| b == CLIENT_HELLO,
    ];
    for (i, ok) in expected.iter().enumerate() {
        match buf.get(i) {
            Some(&b) if !ok(b) => return Verdict::No,
            Some(_) => {}
            None => return Verdict::NeedMore,
        }
    }
    Verdict::Yes
}

/// Client bytes of a connection past its handshake: whole records, the first of them
/// application data.
pub(super) fn recognize_records(buf: &[u8]) -> Verdict {
    super::whole_messages(
        buf,
        |rest| {
            let Some(h) = rest.get(..HEADER_LEN) else {
                return Err(Verdict::NeedMore);
            };
            let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
            if (20..=24).contains(&h[0]) && h[1] == 3 && h[2] <= 4 && len <= MAX_RECORD {
                Ok(HEADER_LEN + len)
            } else {
                Err(Verdict::No)
            }
        },
        |first| first[0] == APPLICATION_DATA,
    )
}

pub(in crate::dpi) struct Tls {
    /// The client's handshake bytes until the ClientHello is whole (it may span records).
    hello: Vec<u8>,
    hello_read: bool,
    /// The version the ServerHello chose, once read (None also when it could not be read).
    version: Option<u16>,
    server_hello_read: bool,
    /// In TLS 1.3, whether the client's Finished (its first application-data record) passed.
    client_finished: bool,
    /// Who sent the last application-data record after the handshake.
    last_data: Option<Dir>,
    requests: Pending<()>,
}

impl Tls {
    pub(super) fn new() -> Self {
        Tls {
            hello: Vec::new(),
            hello_read: false,
            version: None,
            server_hello_read: false,
            client_finished: false,
            last_data: None,
            requests: Pending::new(),
        }
    }

    /// Past the handshake: every application-data flight is a request or its response.
    pub(super) fn mid_stream() -> Self {
        Tls {
            hello_read: true,
            server_hello_read: true,
            client_finished: true,
            ..Tls::new()
        }
    }

    pub(super) fn step(&mut self, dir: Dir, buf: &[u8], tally: &mut Tally<'_>) -> Step {
        if buf.len() < HEADER_LEN {
            return Step::More;
        }
        let (kind, major, len) = (
            buf[0],
            buf[1],
            usize::from(u16::from_be_bytes([buf[3], buf[4]])),
        );
        // change_cipher_spec, alert, handshake, application_data, heartbeat.
        if !(20..=24).contains(&kind) || major != 3 || len > MAX_RECORD {
            return Step::Fail;
        }
        let first_hello = match dir {
            Dir::ToServer => !self.hello_read,
            Dir::ToClient => !self.server_hello_read,
        };
        if kind == HANDSHAKE && first_hello {
            // Hellos are read whole.
            let Some(fragment) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
                return Step::More;
            };
            match dir {
                Dir::ToServer => self.read_client_hello(fragment, tally),
                Dir::ToClient => self.read_server_hello(fragment, tally),
            }
            return Step::Advance {
                consumed: HEADER_LEN + len,
                skip: 0,
            };
        }
        if kind == APPLICATION_DATA {
            self.application_data(dir, tally);
        }
        Step::Advance {
            consumed: HEADER_LEN,
            skip: len as u64,
        }
    }

    fn application_data(&mut self, dir: Dir, tally: &mut Tally<'_>) {
        if self.version == Some(TLS_1_3) && !self.client_finished {
            // The server's encrypted handshake, or the client's Finished that ends it.
            self.client_finished = dir == Dir::ToServer;
            return;
        }
        let continues = self.last_data == Some(dir);
        self.last_data = Some(dir);
        match dir {
            // A flight's later records move its request's time to the last of them.
            Dir::ToServer if continues => self.requests.renew_newest(tally.at),
            Dir::ToServer => {
                tally.request();
                self.requests.push(tally.at, ());
            }
            Dir::ToClient if continues => {}
            Dir::ToClient => match self.requests.pop() {
                Answered::Timed(at, ()) => tally.response(Some(tally.since(at))),
                Answered::Untimed => tally.response(None),
                Answered::None => {}
            },
        }
    }

    /// Adds a handshake record's fragment; once the ClientHello is whole, reads it.
    fn read_client_hello(&mut self, fragment: &[u8], tally: &mut Tally<'_>) {
        self.hello.extend_from_slice(fragment);
        if self.hello.len() < 4 {
            return;
        }
        let msg_len = usize::from(self.hello[1]) << 16
            | usize::from(self.hello[2]) << 8
            | usize::from(self.hello[3]);
        if self.hello[0] != CLIENT_HELLO || msg_len > MAX_HELLO {
            self.finish_hello();
            return;
        }
        if self.hello.len() < 4 + msg_len {
            return;
        }
        if let Some(hello) = ClientHello::parse(&self.hello[4..4 + msg_len]) {
            if let Some(name) = hello.server_name {
                tally.detail(format!(
                    "sni {}",
                    printable(&name.to_ascii_lowercase(), 255)
                ));
            }
            if !hello.alpn.is_empty() {
                let names: Vec<String> = hello.alpn.iter().map(|p| printable(p, 32)).collect();
                tally.detail(format!("alpn {}", names.join(",")));
            }
        }
        self.finish_hello();
    }

    fn finish_hello(&mut self) {
        self.hello_read = true;
        self.hello = Vec::new();
    }

    /// Reads the version from the server's first handshake record (a ServerHello, whole in
    /// one record as servers send it).
    fn read_server_hello(&mut self, fragment: &[u8], tally: &mut Tally<'_>) {
        self.server_hello_read = true;
        let Some((&SERVER_HELLO, rest)) = fragment.split_first() else {
            return;
        };
        let mut r = Reader { buf: rest };
        let Some(body) = r.u24().and_then(|n| r.take(n)) else {
            return;
        };
        self.version = server_hello_version(body);
        if let Some(v) = self.version {
            tally.detail(match v {
                0x0301..=0x0304 => format!("version 1.{}", v - 0x0301),
                _ => format!("version {v:#06x}"),
            });
        }
    }
}

/// The version a ServerHello body selects: its supported_versions extension (RFC 8446
/// section 4.2.1), else its legacy_version.
fn server_hello_version(body: &[u8]) -> Option<u16> {
    let mut r = Reader { buf: body };
    let legacy = r.u16()? as u16;
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id_echo
    r.take(2 + 1)?; // cipher_suite, legacy_compression_method
    if r.buf.is_empty() {
        return Some(legacy);
    }
    let mut extensions = Reader { buf: r.vec16()? };
    while !extensions.buf.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        if kind == 43 {
            return Some(u16::from_be_bytes(data.try_into().ok()?));
        }
    }
    Some(legacy)
}

/// What DPI reads of a ClientHello.
#[derive(Debug, Default, PartialEq)]
struct ClientHello<'a> {
    server_name: Option<&'a [u8]>,
    alpn: Vec<&'a [u8]>,
}

/// A cursor over big-endian, length-prefixed fields; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }

    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    /// A vector with a 1- or 2-byte length prefix.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

impl<'a> ClientHello<'a> {
    /// Reads the body of a ClientHello handshake message (RFC 8446 section 4.1.2).
    fn parse(body: &'a [u8]) -> Option<Self> {
        let mut r = Reader { buf: body };
        r.take(2 + 32)?; // legacy_version, random
        r.vec8()?; // legacy_session_id
        r.vec16()?; // cipher_suites
        r.vec8()?; // legacy_compression_methods
        let mut hello = ClientHello::default();
        if r.buf.is_empty() {
            return Some(hello); // no extensions (allowed before TLS 1.3)
        }
        let mut extensions = Reader { buf: r.vec16()? };
        while !extensions.buf.is_empty() {
            let kind = extensions.u16()?;
            let data = extensions.vec16()?;
            match kind {
                0 => hello.server_name = server_name(data),
                16 => {
                    let mut list = Reader {
                        buf: Reader { buf: data }.vec16()?,
                    };
                    while !list.buf.is_empty() {
                        hello.alpn.push(list.vec8()?);
                    }
                }
                _ => {}
            }
        }
        Some(hello)
    }
}

/// The host_name entry of a server_name extension.
fn server_name(data: &[u8]) -> Option<&[u8]> {
    let mut list = Reader {
        buf: Reader { buf: data }.vec16()?,
    };
    while !list.buf.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == 0 {
            return Some(name);
        }
    }
    None
}

#[cfg(test)]
pub(in crate::dpi) mod tests {
    use super::*;

    /// A ClientHello handshake message (type and length included) with the given SNI and ALPN.
    pub(in crate::dpi) fn client_hello(sni: &str, alpn: &[&str]) -> Vec<u8> {
        let mut ext = Vec::new();
        let mut sni_list = vec![0u8];
        sni_list.extend((sni.len() as u16).to_be_bytes());
        sni_list.extend(sni.as_bytes());
        ext.extend(0u16.to_be_bytes());
        ext.extend(((sni_list.len() + 2) as u16).to_be_bytes());
        ext.extend((sni_list.len() as u16).to_be_bytes());
        ext.extend(sni_list);
        if !alpn.is_empty() {
            let mut list = Vec::new();
            for p in alpn {
                list.push(p.len() as u8);
                list.extend(p.as_bytes());
            }
            ext.extend(16u16.to_be_bytes());
            ext.extend(((list.len() + 2) as u16).to_be_bytes());
            ext.extend((list.len() as u16).to_be_bytes());
            ext.extend(list);
        }
        // supported_versions: TLS 1.3, an extension DPI skips.
        ext.extend([0, 43, 0, 3, 2, 3, 4]);
        let mut body = vec![3, 3];
        body.extend([0x11; 32]);
        body.push(32);
        body.extend([0x22; 32]);
        body.extend([0, 4, 0x13, 0x01, 0x13, 0x02]);
        body.extend([1, 0]);
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut msg = vec![CLIENT_HELLO];
        msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend(body);
        msg
    }

    /// A ServerHello handshake message choosing TLS 1.3 (by supported_versions) or 1.2.
    pub(in crate::dpi) fn server_hello(tls13: bool) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([0x33; 32]);
        body.push(0); // no session id
        body.extend([0x13, 0x01, 0]);
        if tls13 {
            body.extend([0, 6, 0, 43, 0, 2, 3, 4]);
        }
        let mut msg = vec![SERVER_HELLO];
        msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend(body);
        msg
    }

    #[test]
    fn server_hello_versions() {
        assert_eq!(
            server_hello_version(&server_hello(true)[4..]),
            Some(TLS_1_3)
        );
        assert_eq!(
            server_hello_version(&server_hello(false)[4..]),
            Some(0x0303)
        );
        let full = server_hello(true);
        for cut in 4..full.len() - 1 {
            assert_ne!(
                server_hello_version(&full[4..cut]),
                Some(TLS_1_3),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn client_hello_extensions() {
        let msg = client_hello("shop.example", &["h2", "http/1.1"]);
        let hello = ClientHello::parse(&msg[4..]).unwrap();
        assert_eq!(hello.server_name, Some(&b"shop.example"[..]));
        assert_eq!(hello.alpn, vec![&b"h2"[..], &b"http/1.1"[..]]);
        // Every truncation is refused or read as far as it goes, never a panic.
        for cut in 0..msg.len() - 4 {
            let _ = ClientHello::parse(&msg[4..4 + cut]);
        }
    }

    #[test]
    fn recognizes_a_client_hello_record_only() {
        assert_eq!(recognize(&[22, 3, 1, 0, 200, 1]), Verdict::Yes);
        assert_eq!(recognize(&[22, 3, 1]), Verdict::NeedMore);
        assert_eq!(recognize(&[22, 3, 9]), Verdict::No);
        assert_eq!(recognize(&[23, 3, 3, 0, 5, 1]), Verdict::No);
    }
}
