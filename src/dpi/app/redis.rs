//! Redis serialization protocol (RESP2 and RESP3): a client sends each command as an array of
//! bulk strings, the server answers each with one value; values nest, and bulk payloads are
//! skipped without being buffered.
//!
//! Details: the command name per request, upper-cased (`GET`). Replies pair with commands in
//! order; RESP3 push messages (`>`) answer nothing and are not counted.

use super::{find_crlf, printable, Answered, Dir, Pending, Step, Tally, Verdict};

/// Longest accepted type line (simple strings and errors included).
const MAX_LINE: usize = 64 * 1024;
/// Deepest accepted nesting of aggregates.
const MAX_DEPTH: usize = 64;
/// Longest command name read.
const MAX_COMMAND: u64 = 64;
/// Largest declared length accepted (Redis' own limit for a bulk string is 512 MB).
const MAX_LEN: i64 = 1 << 32;

pub(super) fn recognize(buf: &[u8]) -> Verdict {
    // `*<count>\r\n$`: an array whose first element is a bulk string.
    let Some((&b'*', rest)) = buf.split_first() else {
        return if buf.is_empty() {
            Verdict::NeedMore
        } else {
            Verdict::No
        };
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 6 {
        return Verdict::No;
    }
    let expected = b"\r\n$";
    let after = &rest[digits..];
    if after.is_empty() {
        return Verdict::NeedMore;
    }
    if digits == 0 {
        return Verdict::No;
    }
    let n = after.len().min(expected.len());
    if after[..n] != expected[..n] {
        Verdict::No
    } else if n < expected.len() {
        Verdict::NeedMore
    } else {
        Verdict::Yes
    }
}

/// Where one direction is within its current top-level value.
#[derive(Debug, Default)]
struct Reader {
    /// Elements still to read, per open aggregate, innermost last.
    open: Vec<u64>,
    /// The next element is the first of a client's top-level array: the command name.
    command_next: bool,
    command: Option<String>,
    /// The current top-level value is a RESP3 push.
    push: bool,
}

pub(in crate::dpi) struct Redis {
    readers: [Reader; 2],
    requests: Pending<()>,
}

impl Redis {
    pub(super) fn new() -> Self {
        Redis {
            readers: Default::default(),
            requests: Pending::new(),
        }
    }

    pub(super) fn step(&mut self, dir: Dir, buf: &[u8], tally: &mut Tally<'_>) -> Step {
        let Some(eol) = find_crlf(buf, 0) else {
            return if buf.len() > MAX_LINE {
                Step::Fail
            } else {
                Step::More
            };
        };
        let r = &mut self.readers[dir as usize];
        let top = r.open.is_empty();
        let (kind, text) = match buf[..eol].split_first() {
            Some((&k, t)) => (k, t),
            None => return Step::Fail,
        };
        let mut consumed = eol + 2;
        let mut skip = 0;
        let first_of_command = std::mem::take(&mut r.command_next);
        match kind {
            b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' => {}
            b'$' | b'!' | b'=' => {
                let Some(len) = length(text) else {
                    return Step::Fail;
                };
                if let Ok(len) = u64::try_from(len) {
                    if first_of_command && len <= MAX_COMMAND {
                        let end = consumed + len as usize;
                        let Some(name) = buf.get(consumed..end) else {
                            // Wait for the whole name; the line is read again then.
                            r.command_next = true;
                            return Step::More;
                        };
                        r.command = Some(printable(&name.to_ascii_uppercase(), 64));
                        consumed = end;
                        skip = 2;
                    } else {
                        skip = len + 2;
                    }
                }
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let Some(len) = length(text) else {
                    return Step::Fail;
                };
                if top {
                    r.push = kind == b'>';
                    r.command_next = dir == Dir::ToServer && kind == b'*' && len > 0;
                }
                if let Ok(n) = u64::try_from(len) {
                    // A map holds pairs; an attribute's pairs precede the value it describes.
                    let elements = match kind {
                        b'%' => n * 2,
                        b'|' => n * 2 + 1,
                        _ => n,
                    };
                    if elements > 0 {
                        if r.open.len() >= MAX_DEPTH {
                            return Step::Fail;
                        }
                        r.open.push(elements);
                        return Step::Advance { consumed, skip: 0 };
                    }
                }
            }
            _ => return Step::Fail,
        }
        // An element is complete: close the aggregates it completes.
        while let Some(left) = r.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return Step::Advance { consumed, skip };
            }
            r.open.pop();
        }
        // A top-level value is complete.
        match dir {
            Dir::ToServer => {
                if let Some(command) = r.command.take() {
                    tally.detail(command);
                }
                tally.request();
                self.requests.push(tally.at, ());
            }
            Dir::ToClient if !std::mem::take(&mut r.push) => match self.requests.pop() {
                Answered::Timed(at, ()) => tally.response(Some(tally.since(at))),
                Answered::Untimed | Answered::None => tally.response(None),
            },
            Dir::ToClient => {}
        }
        Step::Advance { consumed, skip }
    }
}

/// A declared length: -1 (null) or more, at most [`MAX_LEN`].
fn length(text: &[u8]) -> Option<i64> {
    let n: i64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    (-1..=MAX_LEN).contains(&n).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_command_arrays() {
        assert_eq!(recognize(b"*2\r\n$3\r\nGET"), Verdict::Yes);
        assert_eq!(recognize(b"*12\r"), Verdict::NeedMore);
        assert_eq!(recognize(b"*"), Verdict::NeedMore);
        assert_eq!(recognize(b"*\r\n$"), Verdict::No);
        assert_eq!(recognize(b"*2\r\n:1"), Verdict::No);
        assert_eq!(recognize(b"PING\r\n"), Verdict::No);
        assert_eq!(length(b"-1"), Some(-1));
        assert_eq!(length(b"-2"), None);
        assert_eq!(length(b"x"), None);
    }
}
