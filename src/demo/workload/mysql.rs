//! The MySQL client/server protocol (protocol 10, 4.1 packets without CLIENT_DEPRECATE_EOF):
//! the server's greeting, the client's HandshakeResponse41 with mysql_native_password, OK
//! packets, COM_QUERY with text result sets (column count, column definitions, EOF, rows, EOF)
//! and COM_QUIT. Only the bytes.

use rand::{Rng, RngExt};

const CLIENT_LONG_PASSWORD: u32 = 0x1;
const CLIENT_FOUND_ROWS: u32 = 0x2;
const CLIENT_LONG_FLAG: u32 = 0x4;
const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_TRANSACTIONS: u32 = 0x2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_MULTI_RESULTS: u32 = 0x2_0000;
const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
/// What the client asks for; the server offers these too.
const CLIENT_FLAGS: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH;
const UTF8MB4_0900_AI_CI: u8 = 255;
const SERVER_STATUS_AUTOCOMMIT: u16 = 0x0002;
const AUTH_PLUGIN: &str = "mysql_native_password";
const COM_QUIT: u8 = 0x01;
const COM_QUERY: u8 = 0x03;
const TYPE_LONG: u8 = 0x03;
const TYPE_VAR_STRING: u8 = 0xfd;

/// One packet: a 3-byte little-endian payload length, the sequence id, the payload.
fn packet(out: &mut Vec<u8>, seq: u8, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
    out.push(seq);
    out.extend_from_slice(payload);
}

/// A length-encoded integer (values below 2^24 suffice here).
fn lenenc_int(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=250 => out.push(n as u8),
        251..=0xffff => {
            out.push(0xfc);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        _ => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        }
    }
}

fn lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    lenenc_int(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// The server's greeting (HandshakeV10), sequence 0.
pub(super) fn greeting<R: Rng>(rng: &mut R, connection_id: u32) -> Vec<u8> {
    let mut p = vec![10];
    p.extend_from_slice(b"8.0.36\0");
    p.extend_from_slice(&connection_id.to_le_bytes());
    // 20 bytes of scramble: 8 here, 12 (plus a terminating zero) below. Never zero bytes.
    let scramble: Vec<u8> = (0..20).map(|_| rng.random_range(1..=0x7f)).collect();
    p.extend_from_slice(&scramble[..8]);
    p.push(0);
    p.extend_from_slice(&(CLIENT_FLAGS as u16).to_le_bytes());
    p.push(UTF8MB4_0900_AI_CI);
    p.extend_from_slice(&SERVER_STATUS_AUTOCOMMIT.to_le_bytes());
    p.extend_from_slice(&((CLIENT_FLAGS >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&scramble[8..]);
    p.push(0);
    p.extend_from_slice(AUTH_PLUGIN.as_bytes());
    p.push(0);
    let mut out = Vec::new();
    packet(&mut out, 0, &p);
    out
}

/// The client's HandshakeResponse41, sequence 1, with a 20-byte scrambled password.
pub(super) fn login<R: Rng>(rng: &mut R, user: &str, database: &str) -> Vec<u8> {
    let mut p = CLIENT_FLAGS.to_le_bytes().to_vec();
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(UTF8MB4_0900_AI_CI);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    let mut auth = [0u8; 20];
    rng.fill(&mut auth[..]);
    p.push(auth.len() as u8);
    p.extend_from_slice(&auth);
    p.extend_from_slice(database.as_bytes());
    p.push(0);
    p.extend_from_slice(AUTH_PLUGIN.as_bytes());
    p.push(0);
    let mut out = Vec::new();
    packet(&mut out, 1, &p);
    out
}

/// An OK packet with sequence `seq`.
pub(super) fn ok(seq: u8, affected_rows: u64, last_insert_id: u64) -> Vec<u8> {
    let mut p = vec![0x00];
    lenenc_int(&mut p, affected_rows);
    lenenc_int(&mut p, last_insert_id);
    p.extend_from_slice(&SERVER_STATUS_AUTOCOMMIT.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    let mut out = Vec::new();
    packet(&mut out, seq, &p);
    out
}

/// COM_QUERY, sequence 0.
pub(super) fn query(sql: &str) -> Vec<u8> {
    let mut p = vec![COM_QUERY];
    p.extend_from_slice(sql.as_bytes());
    let mut out = Vec::new();
    packet(&mut out, 0, &p);
    out
}

/// COM_QUIT, sequence 0 (the server closes without answering).
pub(super) fn quit() -> Vec<u8> {
    let mut out = Vec::new();
    packet(&mut out, 0, &[COM_QUIT]);
    out
}

fn eof(out: &mut Vec<u8>, seq: u8) {
    let mut p = vec![0xfe];
    p.extend_from_slice(&0u16.to_le_bytes());
    p.extend_from_slice(&SERVER_STATUS_AUTOCOMMIT.to_le_bytes());
    packet(out, seq, &p);
}

/// A text result set of `rows` rows of (id INT, sku VARCHAR, qty INT) from `table`.
pub(super) fn result_set<R: Rng>(rng: &mut R, table: &str, rows: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seq = 1u8;
    let columns: [(&str, u8, u32); 3] = [
        ("id", TYPE_LONG, 11),
        ("sku", TYPE_VAR_STRING, 256),
        ("qty", TYPE_LONG, 11),
    ];
    let mut count = Vec::new();
    lenenc_int(&mut count, columns.len() as u64);
    packet(&mut out, seq, &count);
    for (name, kind, length) in columns {
        let mut def = Vec::new();
        for s in ["def", "inventory", table, table, name, name] {
            lenenc_str(&mut def, s.as_bytes());
        }
        lenenc_int(&mut def, 0x0c);
        def.extend_from_slice(&u16::from(UTF8MB4_0900_AI_CI).to_le_bytes());
        def.extend_from_slice(&length.to_le_bytes());
        def.push(kind);
        def.extend_from_slice(&0u16.to_le_bytes());
        def.push(0);
        def.extend_from_slice(&[0, 0]);
        seq = seq.wrapping_add(1);
        packet(&mut out, seq, &def);
    }
    seq = seq.wrapping_add(1);
    eof(&mut out, seq);
    for _ in 0..rows {
        let mut row = Vec::new();
        lenenc_str(
            &mut row,
            rng.random_range(1..10_000_000u32).to_string().as_bytes(),
        );
        lenenc_str(
            &mut row,
            format!("SKU-{:06}", rng.random_range(0..1_000_000u32)).as_bytes(),
        );
        lenenc_str(&mut row, rng.random_range(0..500u32).to_string().as_bytes());
        seq = seq.wrapping_add(1);
        packet(&mut out, seq, &row);
    }
    seq = seq.wrapping_add(1);
    eof(&mut out, seq);
    out
}
