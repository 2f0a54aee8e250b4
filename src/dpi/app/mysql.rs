//! MySQL client/server protocol: packets of a 3-byte little-endian length and a sequence id; the
//! server's greeting (protocol version 10), the client's handshake response, then commands.
//!
//! Details: `server VERSION` from the greeting, `user U database D` (or `user U`) from the
//! handshake response, `ssl` when the client switches to TLS, `query KEYWORD` per COM_QUERY.
//! Requests are COM_QUERY commands; the response is the server's first packet of the answer (an
//! OK, an ERR, or a result set's column count, sequence id 1).

use super::{cstr, first_keyword, printable, Answered, Dir, Pending, Step, Tally, Verdict};

const HEADER_LEN: usize = 4;
/// Longest greeting or handshake response accepted: both are short.
const MAX_HANDSHAKE: usize = 8192;
const PROTOCOL_10: u8 = 10;
const COM_QUERY: u8 = 0x03;
/// Capability flags of the handshake response.
const CLIENT_CONNECT_WITH_DB: u32 = 0x0000_0008;
const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
const CLIENT_SSL: u32 = 0x0000_0800;
const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x0020_0000;
/// How much of a query is looked at for its first keyword.
const KEYWORD_WINDOW: usize = 64;

/// A packet's payload length and sequence id, if its header is there.
fn header(buf: &[u8]) -> Option<(usize, u8)> {
    let h = buf.get(..HEADER_LEN)?;
    Some((
        usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16,
        h[3],
    ))
}

/// The server version of a whole greeting packet at the front of `buf`; Err(true) when more
/// bytes are needed, Err(false) when it is no greeting.
fn greeting_version(buf: &[u8]) -> Result<&[u8], bool> {
    let Some((len, seq)) = header(buf) else {
        return Err(!buf.is_empty() && buf.len() < HEADER_LEN);
    };
    if seq != 0 || !(HEADER_LEN + 1..=MAX_HANDSHAKE).contains(&len) {
        return Err(false);
    }
    match buf.get(HEADER_LEN) {
        Some(&PROTOCOL_10) => {}
        Some(_) => return Err(false),
        None => return Err(true),
    }
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Err(true);
    };
    // The version, then a thread id, 8 bytes of scramble, a filler and capability flags.
    match cstr(&payload[1..]) {
        Some((version, after))
            if !version.is_empty()
                && version.iter().all(u8::is_ascii_graphic)
                && payload.len() >= 1 + after + 4 + 8 + 1 + 2 =>
        {
            Ok(version)
        }
        _ => Err(false),
    }
}

pub(super) fn recognize(buf: &[u8]) -> Verdict {
    match greeting_version(buf) {
        Ok(_) => Verdict::Yes,
        Err(true) => Verdict::NeedMore,
        Err(false) => Verdict::No,
    }
}

/// Commands a client sends in the command phase (COM_QUIT, COM_INIT_DB, COM_QUERY, COM_PING,
/// COM_STMT_PREPARE, _EXECUTE, _SEND_LONG_DATA, _CLOSE, _RESET, COM_SET_OPTION, _FETCH,
/// COM_RESET_CONNECTION).
const COMMANDS: &[u8] = &[
    0x01, 0x02, 0x03, 0x0e, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1f,
];

/// Client bytes of a connection in its command phase: whole packets of sequence id 0, each a
/// known command.
pub(super) fn recognize_commands(buf: &[u8]) -> Verdict {
    super::whole_messages(
        buf,
        |rest| match (header(rest), rest.get(HEADER_LEN)) {
            (Some((len, 0)), Some(command)) if len > 0 && COMMANDS.contains(command) => {
                Ok(HEADER_LEN + len)
            }
            (Some(_), Some(_)) => Err(Verdict::No),
            _ => Err(Verdict::NeedMore),
        },
        |_| true,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Greeting,
    HandshakeResponse,
    Commands,
}

pub(in crate::dpi) struct MySql {
    phase: Phase,
    /// Whether the last command was a COM_QUERY whose answer has not begun.
    query_outstanding: bool,
    requests: Pending<()>,
}

impl MySql {
    pub(super) fn new() -> Self {
        MySql {
            phase: Phase::Greeting,
            query_outstanding: false,
            requests: Pending::new(),
        }
    }

    /// In the command phase, as a connection joined after its login.
    pub(super) fn mid_stream() -> Self {
        MySql {
            phase: Phase::Commands,
            ..MySql::new()
        }
    }

    pub(super) fn step(&mut self, dir: Dir, buf: &[u8], tally: &mut Tally<'_>) -> Step {
        let Some((len, seq)) = header(buf) else {
            return Step::More;
        };
        match (dir, self.phase) {
            (Dir::ToClient, Phase::Greeting) => match greeting_version(buf) {
                Ok(version) => {
                    tally.detail(format!("server {}", printable(version, 64)));
                    self.phase = Phase::HandshakeResponse;
                    Step::Advance {
                        consumed: HEADER_LEN + len,
                        skip: 0,
                    }
                }
                Err(true) => Step::More,
                Err(false) => Step::Fail,
            },
            (Dir::ToServer, Phase::Greeting) => Step::Fail,
            (Dir::ToServer, Phase::HandshakeResponse) => {
                if seq != 1 || len > MAX_HANDSHAKE {
                    return Step::Fail;
                }
                let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
                    return Step::More;
                };
                match handshake_response(payload) {
                    Some(Handshake::Ssl) => {
                        tally.detail("ssl".into());
                        Step::Opaque
                    }
                    Some(Handshake::Login { user, database }) => {
                        tally.detail(match database {
                            Some(db) => {
                                format!(
                                    "user {} database {}",
                                    printable(user, 64),
                                    printable(db, 64)
                                )
                            }
                            None => format!("user {}", printable(user, 64)),
                        });
                        self.phase = Phase::Commands;
                        Step::Advance {
                            consumed: HEADER_LEN + len,
                            skip: 0,
                        }
                    }
                    None => Step::Fail,
                }
            }
            (Dir::ToServer, Phase::Commands) if seq == 0 => {
                if len == 0 {
                    return Step::Fail;
                }
                let command = buf.get(HEADER_LEN);
                if command == Some(&COM_QUERY) {
                    let window = (len - 1).min(KEYWORD_WINDOW);
                    let Some(query) = buf.get(HEADER_LEN + 1..HEADER_LEN + 1 + window) else {
                        return Step::More;
                    };
                    if let Some(keyword) = first_keyword(query) {
                        tally.detail(format!("query {keyword}"));
                    }
                    tally.request();
                    self.requests.push(tally.at, ());
                    self.query_outstanding = true;
                } else if command.is_none() {
                    return Step::More;
                } else {
                    self.query_outstanding = false;
                }
                skip_packet(len)
            }
            (Dir::ToClient, _) => {
                // The first packet of an answer has sequence id 1; later ones, and the
                // packets of the authentication exchange, have higher ids.
                if seq == 1 && self.query_outstanding {
                    self.query_outstanding = false;
                    match self.requests.pop() {
                        Answered::Timed(at, ()) => tally.response(Some(tally.since(at))),
                        Answered::Untimed | Answered::None => tally.response(None),
                    }
                }
                skip_packet(len)
            }
            // Continuations of long packets and authentication exchanges.
            (Dir::ToServer, _) => skip_packet(len),
        }
    }
}

fn skip_packet(len: usize) -> Step {
    Step::Advance {
        consumed: HEADER_LEN,
        skip: len as u64,
    }
}

enum Handshake<'a> {
    /// An SSLRequest: the handshake continues inside TLS.
    Ssl,
    Login {
        user: &'a [u8],
        database: Option<&'a [u8]>,
    },
}

/// Reads a HandshakeResponse41 (or an SSLRequest, its first 32 bytes alone).
fn handshake_response(p: &[u8]) -> Option<Handshake<'_>> {
    let caps = u32::from_le_bytes(p.get(..4)?.try_into().ok()?);
    if caps & CLIENT_PROTOCOL_41 == 0 {
        return None; // the pre-4.1 handshake is not read
    }
    if caps & CLIENT_SSL != 0 && p.len() == 32 {
        return Some(Handshake::Ssl);
    }
    // capabilities, max packet size, character set, 23 filler bytes
    let rest = p.get(32..)?;
    let (user, after) = cstr(rest)?;
    let rest = &rest[after..];
    let rest = if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        let (n, used) = lenenc(rest)?;
        rest.get(used + usize::try_from(n).ok()?..)?
    } else if caps & CLIENT_SECURE_CONNECTION != 0 {
        let n = usize::from(*rest.first()?);
        rest.get(1 + n..)?
    } else {
        let (_, after) = cstr(rest)?;
        &rest[after..]
    };
    let database = if caps & CLIENT_CONNECT_WITH_DB != 0 {
        Some(cstr(rest)?.0)
    } else {
        None
    };
    Some(Handshake::Login { user, database })
}

/// A length-encoded integer and the bytes it took.
fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let le = |n: usize| -> Option<u64> {
        let bytes = b.get(1..1 + n)?;
        Some(bytes.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x)))
    };
    match first {
        0..=0xfa => Some((u64::from(first), 1)),
        0xfc => Some((le(2)?, 3)),
        0xfd => Some((le(3)?, 4)),
        0xfe => Some((le(8)?, 9)),
        _ => None,
    }
}

#[cfg(test)]
pub(in crate::dpi) mod tests {
    use super::*;

    /// A packet with its header.
    pub(in crate::dpi) fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        p.push(seq);
        p.extend(payload);
        p
    }

    /// A protocol-10 greeting of `version`.
    pub(in crate::dpi) fn greeting(version: &str) -> Vec<u8> {
        let mut p = vec![PROTOCOL_10];
        p.extend(version.as_bytes());
        p.push(0);
        p.extend(42u32.to_le_bytes()); // thread id
        p.extend([0x3a; 8]); // scramble, first part
        p.push(0);
        p.extend(0xf7ffu16.to_le_bytes()); // capabilities, lower half
        p.push(0x21); // utf8
        p.extend(2u16.to_le_bytes()); // status
        p.extend(0x81ffu16.to_le_bytes()); // capabilities, upper half
        p.push(21);
        p.extend([0; 10]);
        p.extend([0x3b; 13]);
        p.extend(b"caching_sha2_password\0");
        packet(0, &p)
    }

    /// A HandshakeResponse41 with a 20-byte auth response.
    pub(in crate::dpi) fn login(user: &str, database: Option<&str>) -> Vec<u8> {
        let mut caps = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION;
        if database.is_some() {
            caps |= CLIENT_CONNECT_WITH_DB;
        }
        let mut p = caps.to_le_bytes().to_vec();
        p.extend((1u32 << 24).to_le_bytes());
        p.push(0x21);
        p.extend([0; 23]);
        p.extend(user.as_bytes());
        p.push(0);
        p.push(20);
        p.extend([0x5c; 20]);
        if let Some(db) = database {
            p.extend(db.as_bytes());
            p.push(0);
        }
        packet(1, &p)
    }

    #[test]
    fn greeting_and_login() {
        let g = greeting("8.0.36");
        assert_eq!(greeting_version(&g), Ok(&b"8.0.36"[..]));
        assert_eq!(recognize(&g[..3]), Verdict::NeedMore);
        assert_eq!(recognize(&g[..g.len() - 1]), Verdict::NeedMore);
        assert_eq!(recognize(b"220 mail ESMTP\r\n"), Verdict::No);
        let l = login("app", Some("shop"));
        let Some(Handshake::Login { user, database }) = handshake_response(&l[4..]) else {
            panic!("a login")
        };
        assert_eq!((user, database), (&b"app"[..], Some(&b"shop"[..])));
        for cut in 4..l.len() - 1 {
            assert!(handshake_response(&l[4..cut]).is_none(), "cut at {cut}");
        }
        assert_eq!(lenenc(&[0xfc, 0x10, 0x27]), Some((10_000, 3)));
        assert_eq!(lenenc(&[0xfb]), None);
    }
}
