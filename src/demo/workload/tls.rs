//! TLS 1.3 as it looks on the wire (RFC 8446): a ClientHello with SNI, key share and supported
//! versions; the server's ServerHello, ChangeCipherSpec and encrypted flight; application data
//! records whose contents are random (they stand for ciphertext). Only the bytes.

use rand::{Rng, RngExt};

const HANDSHAKE: u8 = 22;
const CHANGE_CIPHER_SPEC: u8 = 20;
const APPLICATION_DATA: u8 = 23;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const EXT_SERVER_NAME: u16 = 0;
const EXT_SUPPORTED_GROUPS: u16 = 10;
const EXT_SIGNATURE_ALGORITHMS: u16 = 13;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_PSK_KEY_EXCHANGE_MODES: u16 = 45;
const EXT_KEY_SHARE: u16 = 51;
const X25519: u16 = 0x001d;
const TLS_AES_128_GCM_SHA256: u16 = 0x1301;
/// The AEAD tag and inner content type every encrypted record adds to its plaintext.
const ENCRYPTION_OVERHEAD: usize = 16 + 1;
/// The largest plaintext of one record.
const MAX_PLAINTEXT: usize = 1 << 14;

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends `body` behind a big-endian length of `width` bytes.
fn with_len(out: &mut Vec<u8>, width: usize, body: &[u8]) {
    let len = (body.len() as u32).to_be_bytes();
    out.extend_from_slice(&len[4 - width..]);
    out.extend_from_slice(body);
}

fn extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    put16(out, kind);
    with_len(out, 2, data);
}

fn record(out: &mut Vec<u8>, content_type: u8, version: u16, fragment: &[u8]) {
    out.push(content_type);
    put16(out, version);
    with_len(out, 2, fragment);
}

fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut msg = vec![msg_type];
    with_len(&mut msg, 3, body);
    msg
}

fn random_bytes<R: Rng, const N: usize>(rng: &mut R) -> [u8; N] {
    let mut b = [0; N];
    rng.fill(&mut b[..]);
    b
}

/// The client's first flight: one handshake record with a ClientHello naming `server_name`.
pub(super) fn client_hello<R: Rng>(rng: &mut R, server_name: &str) -> Vec<u8> {
    let mut body = Vec::new();
    put16(&mut body, 0x0303);
    body.extend_from_slice(&random_bytes::<_, 32>(rng));
    with_len(&mut body, 1, &random_bytes::<_, 32>(rng));
    let mut suites = Vec::new();
    for s in [TLS_AES_128_GCM_SHA256, 0x1302, 0x1303] {
        put16(&mut suites, s);
    }
    with_len(&mut body, 2, &suites);
    with_len(&mut body, 1, &[0]);
    let mut exts = Vec::new();
    let mut name_entry = vec![0];
    with_len(&mut name_entry, 2, server_name.as_bytes());
    let mut names = Vec::new();
    with_len(&mut names, 2, &name_entry);
    extension(&mut exts, EXT_SERVER_NAME, &names);
    let mut groups = Vec::new();
    with_len(&mut groups, 2, &[0x00, 0x1d, 0x00, 0x17]);
    extension(&mut exts, EXT_SUPPORTED_GROUPS, &groups);
    let mut algorithms = Vec::new();
    with_len(&mut algorithms, 2, &[0x04, 0x03, 0x08, 0x04, 0x04, 0x01]);
    extension(&mut exts, EXT_SIGNATURE_ALGORITHMS, &algorithms);
    let mut alpn = Vec::new();
    with_len(&mut alpn, 2, b"\x08http/1.1");
    extension(&mut exts, EXT_ALPN, &alpn);
    extension(&mut exts, EXT_SUPPORTED_VERSIONS, &[2, 0x03, 0x04]);
    extension(&mut exts, EXT_PSK_KEY_EXCHANGE_MODES, &[1, 1]);
    let mut share = Vec::new();
    put16(&mut share, X25519);
    with_len(&mut share, 2, &random_bytes::<_, 32>(rng));
    let mut shares = Vec::new();
    with_len(&mut shares, 2, &share);
    extension(&mut exts, EXT_KEY_SHARE, &shares);
    with_len(&mut body, 2, &exts);
    let mut out = Vec::new();
    // A first ClientHello's record says TLS 1.0 for old middleboxes' sake (RFC 8446, 5.1).
    record(&mut out, HANDSHAKE, 0x0301, &handshake(CLIENT_HELLO, &body));
    out
}

/// The server's first flight: ServerHello, ChangeCipherSpec, and the encrypted rest of the
/// handshake (EncryptedExtensions through Finished, about `encrypted_len` bytes).
pub(super) fn server_flight<R: Rng>(rng: &mut R, encrypted_len: usize) -> Vec<u8> {
    let mut body = Vec::new();
    put16(&mut body, 0x0303);
    body.extend_from_slice(&random_bytes::<_, 32>(rng));
    with_len(&mut body, 1, &random_bytes::<_, 32>(rng));
    put16(&mut body, TLS_AES_128_GCM_SHA256);
    body.push(0);
    let mut exts = Vec::new();
    extension(&mut exts, EXT_SUPPORTED_VERSIONS, &[0x03, 0x04]);
    let mut share = Vec::new();
    put16(&mut share, X25519);
    with_len(&mut share, 2, &random_bytes::<_, 32>(rng));
    extension(&mut exts, EXT_KEY_SHARE, &share);
    with_len(&mut body, 2, &exts);
    let mut out = Vec::new();
    record(&mut out, HANDSHAKE, 0x0303, &handshake(SERVER_HELLO, &body));
    record(&mut out, CHANGE_CIPHER_SPEC, 0x0303, &[1]);
    out.extend(application_data(rng, encrypted_len));
    out
}

/// The client's second flight before its first request: ChangeCipherSpec and its encrypted
/// Finished (a 32-byte verify_data behind a 4-byte handshake header).
pub(super) fn client_finished<R: Rng>(rng: &mut R) -> Vec<u8> {
    let mut out = Vec::new();
    record(&mut out, CHANGE_CIPHER_SPEC, 0x0303, &[1]);
    out.extend(application_data(rng, 4 + 32));
    out
}

/// `plaintext_len` bytes of application data, encrypted: records of at most 2^14 plaintext
/// bytes each, their contents random.
pub(super) fn application_data<R: Rng>(rng: &mut R, plaintext_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut left = plaintext_len.max(1);
    while left > 0 {
        let n = left.min(MAX_PLAINTEXT);
        let mut fragment = vec![0; n + ENCRYPTION_OVERHEAD];
        rng.fill(&mut fragment[..]);
        record(&mut out, APPLICATION_DATA, 0x0303, &fragment);
        left -= n;
    }
    out
}

/// A plausible size for an encrypted server handshake flight (certificate chains vary).
pub(super) fn server_flight_len<R: Rng>(rng: &mut R) -> usize {
    rng.random_range(1800..4200)
}
