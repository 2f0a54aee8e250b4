//! The PostgreSQL frontend/backend protocol, version 3.0: the startup message and the server's
//! AuthenticationOk through ReadyForQuery, simple queries ('Q') and their RowDescription,
//! DataRow, CommandComplete and ReadyForQuery answers, and Terminate. Only the bytes.

use rand::{Rng, RngExt};

/// Protocol version 3.0 as the startup message writes it.
const PROTOCOL_3_0: i32 = 3 << 16;
const OID_INT4: i32 = 23;
const OID_TEXT: i32 = 25;
const OID_NUMERIC: i32 = 1700;

/// A typed message: its type byte, then a length that counts itself and the body.
fn message(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
}

fn cstring(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// The client's StartupMessage (untyped: length, version, name/value pairs, a final zero).
pub(super) fn startup(user: &str, database: &str, application: &str) -> Vec<u8> {
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    for (name, value) in [
        ("user", user),
        ("database", database),
        ("application_name", application),
        ("client_encoding", "UTF8"),
    ] {
        cstring(&mut body, name);
        cstring(&mut body, value);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// The server's answer to a trusted startup: AuthenticationOk, a few ParameterStatus messages,
/// BackendKeyData and ReadyForQuery.
pub(super) fn startup_reply<R: Rng>(rng: &mut R) -> Vec<u8> {
    let mut out = Vec::new();
    message(&mut out, b'R', &0i32.to_be_bytes());
    for (name, value) in [
        ("server_version", "16.4"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("integer_datetimes", "on"),
    ] {
        let mut body = Vec::new();
        cstring(&mut body, name);
        cstring(&mut body, value);
        message(&mut out, b'S', &body);
    }
    let mut key = rng.random_range(1000..65000i32).to_be_bytes().to_vec();
    key.extend_from_slice(&rng.random::<i32>().to_be_bytes());
    message(&mut out, b'K', &key);
    ready_for_query(&mut out);
    out
}

fn ready_for_query(out: &mut Vec<u8>) {
    message(out, b'Z', b"I");
}

/// A simple query.
pub(super) fn query(sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstring(&mut body, sql);
    let mut out = Vec::new();
    message(&mut out, b'Q', &body);
    out
}

/// The answer to a SELECT of `rows` rows of (id int4, name text, price numeric).
pub(super) fn select_reply<R: Rng>(rng: &mut R, rows: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let columns: [(&str, i32, i16); 3] = [
        ("id", OID_INT4, 4),
        ("name", OID_TEXT, -1),
        ("price", OID_NUMERIC, -1),
    ];
    let mut desc = (columns.len() as i16).to_be_bytes().to_vec();
    for (attnum, (name, oid, size)) in columns.iter().enumerate() {
        cstring(&mut desc, name);
        desc.extend_from_slice(&16_384i32.to_be_bytes()); // the table's OID
        desc.extend_from_slice(&(attnum as i16 + 1).to_be_bytes());
        desc.extend_from_slice(&oid.to_be_bytes());
        desc.extend_from_slice(&size.to_be_bytes());
        desc.extend_from_slice(&(-1i32).to_be_bytes()); // no type modifier
        desc.extend_from_slice(&0i16.to_be_bytes()); // text format
    }
    message(&mut out, b'T', &desc);
    for _ in 0..rows {
        let values = [
            rng.random_range(1..1_000_000u32).to_string(),
            format!("product-{}", rng.random_range(0..50_000u32)),
            format!(
                "{}.{:02}",
                rng.random_range(1..500u32),
                rng.random_range(0..100u32)
            ),
        ];
        let mut row = (values.len() as i16).to_be_bytes().to_vec();
        for v in &values {
            row.extend_from_slice(&(v.len() as i32).to_be_bytes());
            row.extend_from_slice(v.as_bytes());
        }
        message(&mut out, b'D', &row);
    }
    command_complete(&mut out, &format!("SELECT {rows}"));
    ready_for_query(&mut out);
    out
}

/// The answer to a statement without rows, e.g. `INSERT 0 1` or `UPDATE 3`.
pub(super) fn command_reply(tag: &str) -> Vec<u8> {
    let mut out = Vec::new();
    command_complete(&mut out, tag);
    ready_for_query(&mut out);
    out
}

fn command_complete(out: &mut Vec<u8>, tag: &str) {
    let mut body = Vec::new();
    cstring(&mut body, tag);
    message(out, b'C', &body);
}

/// The client's goodbye.
pub(super) fn terminate() -> Vec<u8> {
    let mut out = Vec::new();
    message(&mut out, b'X', &[]);
    out
}
