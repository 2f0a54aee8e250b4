//! HTTP/1.0 and 1.1 (RFC 9112): request lines with their Host, status lines, and message bodies
//! framed by Content-Length, chunked transfer coding, or (responses only) the end of the
//! connection, so that keep-alive and pipelined messages are all found.
//!
//! Details: `METHOD HOST` per request (`GET web1.dc.internal`; the method alone without a Host)
//! and `status CODE` per final response. Responses pair with requests in order.

use super::{find_crlf, printable, Answered, Dir, Pending, Step, Tally, Verdict};

/// Methods recognized at the start of a connection (RFC 9110 and PATCH).
const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// Longest accepted message head (request or status line plus header fields).
const MAX_HEAD: usize = 64 * 1024;
/// Longest accepted chunk-size or trailer line.
const MAX_LINE: usize = 4096;

pub(super) fn recognize(buf: &[u8]) -> Verdict {
    let mut verdict = Verdict::No;
    for m in METHODS {
        if buf.starts_with(m) {
            return Verdict::Yes;
        }
        if m.starts_with(buf) {
            verdict = Verdict::NeedMore;
        }
    }
    verdict
}

/// Where one direction is within its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// At the start of a message head.
    Head,
    /// At a chunk-size line of a chunked body.
    ChunkSize,
    /// In the trailer section after the last chunk.
    Trailers,
}

/// What a response needs to know about its request.
#[derive(Debug, Clone, Copy)]
struct RequestKind {
    head: bool,
    connect: bool,
}

pub(in crate::dpi) struct Http {
    framing: [Framing; 2],
    /// How far each direction's head was already searched for its end, so that a head arriving
    /// byte by byte is scanned once.
    scanned: [usize; 2],
    requests: Pending<RequestKind>,
}

/// The header fields a parser acts on.
#[derive(Default)]
struct Fields<'a> {
    host: Option<&'a [u8]>,
    content_length: Option<u64>,
    chunked: bool,
}

impl Http {
    pub(super) fn new() -> Self {
        Http {
            framing: [Framing::Head; 2],
            scanned: [0; 2],
            requests: Pending::new(),
        }
    }

    pub(super) fn step(&mut self, dir: Dir, buf: &[u8], tally: &mut Tally<'_>) -> Step {
        let d = dir as usize;
        match self.framing[d] {
            Framing::Head => {
                // Empty lines before a message are to be ignored (RFC 9112 section 2.2).
                if buf.starts_with(b"\r\n") {
                    return Step::Advance {
                        consumed: 2,
                        skip: 0,
                    };
                }
                let from = self.scanned[d].saturating_sub(3);
                let Some(end) = buf[from.min(buf.len())..]
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|i| from + i + 4)
                else {
                    self.scanned[d] = buf.len();
                    return if buf.len() > MAX_HEAD {
                        Step::Fail
                    } else {
                        Step::More
                    };
                };
                self.scanned[d] = 0;
                match dir {
                    Dir::ToServer => self.request(&buf[..end], tally),
                    Dir::ToClient => self.response(&buf[..end], tally),
                }
            }
            Framing::ChunkSize => {
                let Some(eol) = find_crlf(buf, 0) else {
                    return line_pending(buf);
                };
                // The size is hex digits, optionally followed by extensions after ';'.
                let digits = buf[..eol]
                    .iter()
                    .take_while(|b| b.is_ascii_hexdigit())
                    .count();
                let Some(size) = std::str::from_utf8(&buf[..digits])
                    .ok()
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                else {
                    return Step::Fail;
                };
                if size == 0 {
                    self.framing[d] = Framing::Trailers;
                    return Step::Advance {
                        consumed: eol + 2,
                        skip: 0,
                    };
                }
                // The chunk's data and the CRLF that ends it.
                Step::Advance {
                    consumed: eol + 2,
                    skip: size.saturating_add(2),
                }
            }
            Framing::Trailers => {
                let Some(eol) = find_crlf(buf, 0) else {
                    return line_pending(buf);
                };
                if eol == 0 {
                    self.framing[d] = Framing::Head;
                }
                Step::Advance {
                    consumed: eol + 2,
                    skip: 0,
                }
            }
        }
    }

    fn request(&mut self, head: &[u8], tally: &mut Tally<'_>) -> Step {
        let line_end = find_crlf(head, 0).unwrap_or(head.len());
        let mut parts = head[..line_end].split(|&b| b == b' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Step::Fail;
        };
        if method.is_empty()
            || !method.iter().all(|b| b.is_ascii_uppercase())
            || target.is_empty()
            || !is_version(version)
        {
            return Step::Fail;
        }
        let Some(fields) = fields(&head[line_end..]) else {
            return Step::Fail;
        };
        let method_text = printable(method, 16);
        tally.detail(match fields.host {
            Some(host) => format!(
                "{method_text} {}",
                printable(&host.to_ascii_lowercase(), 255)
            ),
            None => method_text,
        });
        tally.request();
        self.requests.push(
            tally.at,
            RequestKind {
                head: method == b"HEAD",
                connect: method == b"CONNECT",
            },
        );
        self.body(Dir::ToServer, head.len(), &fields, false)
    }

    fn response(&mut self, head: &[u8], tally: &mut Tally<'_>) -> Step {
        let line_end = find_crlf(head, 0).unwrap_or(head.len());
        let line = &head[..line_end];
        // HTTP-version SP 3DIGIT SP [reason]
        if line.len() < 12 || !is_version(&line[..8]) || line[8] != b' ' {
            return Step::Fail;
        }
        let code = &line[9..12];
        if !code.iter().all(u8::is_ascii_digit) || line.get(12).is_some_and(|&b| b != b' ') {
            return Step::Fail;
        }
        let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        let Some(fields) = fields(&head[line_end..]) else {
            return Step::Fail;
        };
        if (100..200).contains(&status) && status != 101 {
            // Interim (100 Continue): the final response is still to come.
            return Step::Advance {
                consumed: head.len(),
                skip: 0,
            };
        }
        let request = match self.requests.pop() {
            Answered::Timed(at, kind) => {
                tally.response(Some(tally.since(at)));
                Some(kind)
            }
            Answered::Untimed | Answered::None => {
                tally.response(None);
                None
            }
        };
        tally.detail(format!("status {status}"));
        let connect = request.is_some_and(|r| r.connect);
        if status == 101 || (connect && (200..300).contains(&status)) {
            // Switching protocols or an established tunnel: what follows is not HTTP.
            return Step::Opaque;
        }
        let no_body = request.is_some_and(|r| r.head) || status == 204 || status == 304;
        if no_body {
            return Step::Advance {
                consumed: head.len(),
                skip: 0,
            };
        }
        self.body(Dir::ToClient, head.len(), &fields, true)
    }

    /// The step after a head of `head_len` bytes, by how its body is framed.
    fn body(&mut self, dir: Dir, head_len: usize, fields: &Fields<'_>, response: bool) -> Step {
        if fields.chunked {
            self.framing[dir as usize] = Framing::ChunkSize;
            return Step::Advance {
                consumed: head_len,
                skip: 0,
            };
        }
        let skip = match fields.content_length {
            Some(n) => n,
            // A response without a length runs to the end of the connection; a request
            // without one has no body (RFC 9112 section 6.3).
            None if response => u64::MAX,
            None => 0,
        };
        Step::Advance {
            consumed: head_len,
            skip,
        }
    }
}

fn is_version(v: &[u8]) -> bool {
    v == b"HTTP/1.1" || v == b"HTTP/1.0"
}

/// A line without its CRLF yet: more bytes, unless it is already too long to be a chunk line.
fn line_pending(buf: &[u8]) -> Step {
    if buf.len() > MAX_LINE {
        Step::Fail
    } else {
        Step::More
    }
}

/// Reads the header fields after the start line (`block` starts with its CRLF and ends with the
/// empty line). None when a field is malformed or the body's length is ambiguous.
fn fields(block: &[u8]) -> Option<Fields<'_>> {
    let mut f = Fields::default();
    let mut rest = block.strip_prefix(b"\r\n")?;
    while let Some(eol) = find_crlf(rest, 0) {
        let line = &rest[..eol];
        rest = &rest[eol + 2..];
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) {
            return None;
        }
        if name.eq_ignore_ascii_case(b"host") {
            f.host = Some(value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value).ok()?.parse::<u64>().ok()?;
            // Repeated lengths must agree, or the message's end is ambiguous.
            if f.content_length.is_some_and(|m| m != n) {
                return None;
            }
            f.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.rsplit(|&b| b == b',').next().unwrap_or(value);
            f.chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
        }
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_methods_not_lookalikes() {
        assert_eq!(recognize(b"GET / HTTP/1.1\r\n"), Verdict::Yes);
        assert_eq!(recognize(b"OPTIO"), Verdict::NeedMore);
        assert_eq!(recognize(b"GETX"), Verdict::No);
        assert_eq!(recognize(b"get / HTTP/1.1"), Verdict::No);
    }

    #[test]
    fn fields_refuse_conflicting_lengths() {
        assert!(fields(b"\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\n").is_none());
        let f = fields(b"\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").unwrap();
        assert!(f.chunked);
        assert_eq!(f.host, Some(&b"a"[..]));
        assert!(fields(b"\r\nno colon here\r\n\r\n").is_none());
    }
}
