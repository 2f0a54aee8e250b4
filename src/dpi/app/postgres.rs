//! PostgreSQL frontend/backend protocol 3.0: the StartupMessage (and the SSL, GSSAPI and cancel
//! requests that may come instead), then typed messages both ways.
//!
//! Details: `user U database D` from the StartupMessage, `query KEYWORD` per query (`query
//! SELECT`), `ssl` or `gssapi` when the connection turns encrypted, `cancel request`. Requests are
//! simple Queries ('Q') and extended-protocol Syncs ('S'): each makes the server send exactly one
//! ReadyForQuery ('Z'), which is the response. The ReadyForQuery that ends the startup answers no
//! request and is not counted.

use super::{cstr, first_keyword, printable, Answered, Dir, Pending, Step, Tally, Verdict};

/// The protocol version's major number, the high half of a StartupMessage's code.
const PROTOCOL_MAJOR: u32 = 3;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// Longest StartupMessage accepted (the server's own limit is 10000).
const MAX_STARTUP: usize = 10_000;
/// Longest typed message accepted; the server's limit for a query is 1 GB.
const MAX_MESSAGE: usize = 1 << 30;
/// How much of a query is looked at for its first keyword.
const KEYWORD_WINDOW: usize = 64;

/// Message types a frontend sends after startup.
const FRONTEND_TYPES: &[u8] = b"BCcdDEfFHPpQSX";
/// Message types a backend sends.
const BACKEND_TYPES: &[u8] = b"123ACcDdEGHIKnNRsSTtVvWZ";

pub(super) fn recognize(buf: &[u8]) -> Verdict {
    if buf.len() < 8 {
        // A length below 2^24 starts with a zero byte; anything else cannot be a startup.
        return if buf.first().is_some_and(|&b| b != 0) {
            Verdict::No
        } else {
            Verdict::NeedMore
        };
    }
    let len = be32(buf, 0) as usize;
    let code = be32(buf, 4);
    let known = code >> 16 == PROTOCOL_MAJOR
        || matches!(code, SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST);
    if (8..=MAX_STARTUP).contains(&len) && known {
        Verdict::Yes
    } else {
        Verdict::No
    }
}

/// Client bytes of a connection past its startup: whole typed frontend messages.
pub(super) fn recognize_messages(buf: &[u8]) -> Verdict {
    super::whole_messages(
        buf,
        |rest| {
            if rest.len() < 5 {
                return Err(Verdict::NeedMore);
            }
            let len = be32(rest, 1) as usize;
            if FRONTEND_TYPES.contains(&rest[0]) && (4..=MAX_MESSAGE).contains(&len) {
                Ok(1 + len)
            } else {
                Err(Verdict::No)
            }
        },
        |_| true,
    )
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the StartupMessage (SSL or GSSAPI negotiation may come first).
    Startup,
    /// Waiting for the server's one-byte answer to an SSL or GSSAPI request.
    EncryptionAnswer,
    Messages,
}

pub(in crate::dpi) struct Postgres {
    phase: Phase,
    requests: Pending<()>,
}

impl Postgres {
    pub(super) fn new() -> Self {
        Postgres {
            phase: Phase::Startup,
            requests: Pending::new(),
        }
    }

    /// Past the startup, as a connection joined after it.
    pub(super) fn mid_stream() -> Self {
        Postgres {
            phase: Phase::Messages,
            ..Postgres::new()
        }
    }

    pub(super) fn step(&mut self, dir: Dir, buf: &[u8], tally: &mut Tally<'_>) -> Step {
        match (dir, self.phase) {
            (Dir::ToServer, Phase::Startup) => self.startup(buf, tally),
            (Dir::ToServer, Phase::EncryptionAnswer) => Step::Fail,
            (Dir::ToClient, Phase::Startup) => Step::Fail,
            (Dir::ToClient, Phase::EncryptionAnswer) => match buf.first() {
                None => Step::More,
                // Accepted: TLS or GSSAPI wrapping follows.
                Some(b'S' | b'G') => Step::Opaque,
                Some(b'N') => {
                    self.phase = Phase::Startup;
                    Step::Advance {
                        consumed: 1,
                        skip: 0,
                    }
                }
                Some(_) => Step::Fail,
            },
            (_, Phase::Messages) => self.message(dir, buf, tally),
        }
    }

    fn startup(&mut self, buf: &[u8], tally: &mut Tally<'_>) -> Step {
        if buf.len() < 8 {
            return Step::More;
        }
        let len = be32(buf, 0) as usize;
        if !(8..=MAX_STARTUP).contains(&len) {
            return Step::Fail;
        }
        let Some(msg) = buf.get(..len) else {
            return Step::More;
        };
        match be32(msg, 4) {
            SSL_REQUEST | GSSENC_REQUEST => {
                let what = if be32(msg, 4) == SSL_REQUEST {
                    "ssl"
                } else {
                    "gssapi"
                };
                tally.detail(what.into());
                self.phase = Phase::EncryptionAnswer;
            }
            CANCEL_REQUEST => {
                tally.detail("cancel request".into());
                return Step::Opaque;
            }
            code if code >> 16 == PROTOCOL_MAJOR => {
                let Some(params) = startup_params(&msg[8..]) else {
                    return Step::Fail;
                };
                let find = |key: &[u8]| params.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
                let user = find(b"user").unwrap_or_default();
                // The database defaults to the user name.
                let database = find(b"database").unwrap_or(user);
                tally.detail(format!(
                    "user {} database {}",
                    printable(user, 64),
                    printable(database, 64)
                ));
                self.phase = Phase::Messages;
            }
            _ => return Step::Fail,
        }
        Step::Advance {
            consumed: len,
            skip: 0,
        }
    }

    fn message(&mut self, dir: Dir, buf: &[u8], tally: &mut Tally<'_>) -> Step {
        if buf.len() < 5 {
            return Step::More;
        }
        let kind = buf[0];
        let len = be32(buf, 1) as usize;
        let types = match dir {
            Dir::ToServer => FRONTEND_TYPES,
            Dir::ToClient => BACKEND_TYPES,
        };
        if !types.contains(&kind) || !(4..=MAX_MESSAGE).contains(&len) {
            return Step::Fail;
        }
        let body_len = len - 4;
        match (dir, kind) {
            (Dir::ToServer, b'Q' | b'P' | b'S') => {
                // Enough of the body to find the query's first keyword.
                let window = body_len.min(KEYWORD_WINDOW * 4);
                let Some(body) = buf.get(5..5 + window) else {
                    return Step::More;
                };
                let query = match kind {
                    b'Q' => Some(body),
                    // Parse: statement name, then the query, each NUL-terminated.
                    b'P' => cstr(body).map(|(_, after)| &body[after..]),
                    _ => None,
                };
                if let Some(keyword) = query.and_then(first_keyword) {
                    tally.detail(format!("query {keyword}"));
                }
                if kind != b'P' {
                    tally.request();
                    self.requests.push(tally.at, ());
                }
            }
            (Dir::ToClient, b'Z') => match self.requests.pop() {
                Answered::Timed(at, ()) => tally.response(Some(tally.since(at))),
                Answered::Untimed => tally.response(None),
                // The ReadyForQuery that ends the startup.
                Answered::None => {}
            },
            _ => {}
        }
        Step::Advance {
            consumed: 5,
            skip: body_len as u64,
        }
    }
}

/// The name/value pairs of a StartupMessage body, which ends with an empty name.
fn startup_params(mut body: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut params = Vec::new();
    loop {
        let (key, next) = cstr(body)?;
        if key.is_empty() {
            return Some(params);
        }
        let (value, after) = cstr(&body[next..])?;
        params.push((key, value));
        body = &body[next + after..];
    }
}

#[cfg(test)]
pub(in crate::dpi) mod tests {
    use super::*;

    /// A StartupMessage for `user`, naming `database` when given.
    pub(in crate::dpi) fn startup(user: &str, database: Option<&str>) -> Vec<u8> {
        let mut body = (PROTOCOL_MAJOR << 16).to_be_bytes().to_vec();
        for (k, v) in [
            ("user", Some(user)),
            ("database", database),
            ("application_name", Some("psql")),
        ] {
            if let Some(v) = v {
                body.extend(k.as_bytes());
                body.push(0);
                body.extend(v.as_bytes());
                body.push(0);
            }
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend(body);
        msg
    }

    /// A typed message.
    pub(in crate::dpi) fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut msg = vec![kind];
        msg.extend(((body.len() + 4) as u32).to_be_bytes());
        msg.extend(body);
        msg
    }

    #[test]
    fn recognizes_startup_and_ssl_requests() {
        assert_eq!(recognize(&startup("app", None)), Verdict::Yes);
        assert_eq!(recognize(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]), Verdict::Yes);
        assert_eq!(recognize(&[0, 0, 0]), Verdict::NeedMore);
        assert_eq!(recognize(b"GET / HTTP/1.1"), Verdict::No);
        assert_eq!(recognize(&[0, 0, 0, 8, 0, 2, 0, 0]), Verdict::No);
    }

    #[test]
    fn startup_params_need_their_terminator() {
        let msg = startup("app", Some("shop"));
        let params = startup_params(&msg[8..]).unwrap();
        assert_eq!(params[0], (&b"user"[..], &b"app"[..]));
        assert_eq!(params[1], (&b"database"[..], &b"shop"[..]));
        assert!(startup_params(&msg[8..msg.len() - 1]).is_none());
    }
}
