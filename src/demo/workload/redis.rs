//! Redis's RESP2 serialization: commands as arrays of bulk strings, replies as simple strings,
//! integers, bulk strings and the null bulk string. Only the bytes.

/// A command, e.g. `["GET", "session:42"]`.
pub(super) fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(bulk(Some(arg)));
    }
    out
}

/// A bulk string reply, or the null bulk string for a missing key.
pub(super) fn bulk(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        None => b"$-1\r\n".to_vec(),
        Some(v) => {
            let mut out = format!("${}\r\n", v.len()).into_bytes();
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
            out
        }
    }
}

/// A simple string reply such as `+OK`.
pub(super) fn simple(s: &str) -> Vec<u8> {
    format!("+{s}\r\n").into_bytes()
}

/// An integer reply.
pub(super) fn integer(n: i64) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}
