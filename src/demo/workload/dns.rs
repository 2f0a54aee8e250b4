//! DNS messages (RFC 1035): a recursive A query for one name and the authoritative answer with
//! one A record, its owner name compressed to a pointer at the question. Only the bytes.

use std::net::Ipv4Addr;

/// The domain every workload VM's name lives in.
pub(super) const DOMAIN: &str = "dc.internal";

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// RD: recursion desired.
const QUERY_FLAGS: u16 = 0x0100;
/// QR, AA, RD, RA; RCODE 0.
const ANSWER_FLAGS: u16 = 0x8580;
/// A pointer (top bits 11) to offset 12, where the question's name starts.
const NAME_POINTER: u16 = 0xc000 | 12;

/// The name of a VM in the workload's domain.
pub(super) fn vm_name(vm: &str) -> String {
    format!("{vm}.{DOMAIN}")
}

fn header(id: u16, flags: u16, answers: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for v in [id, flags, 1, answers, 0, 0] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// The question section. Names here are VM names in [`DOMAIN`], whose labels are short.
fn question(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&TYPE_A.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
}

/// A query for the A record of `name`.
pub(super) fn query(id: u16, name: &str) -> Vec<u8> {
    let mut out = header(id, QUERY_FLAGS, 0);
    question(&mut out, name);
    out
}

/// The answer to [`query`]: `name` has address `addr` for `ttl` seconds.
pub(super) fn answer(id: u16, name: &str, addr: Ipv4Addr, ttl: u32) -> Vec<u8> {
    let mut out = header(id, ANSWER_FLAGS, 1);
    question(&mut out, name);
    out.extend_from_slice(&NAME_POINTER.to_be_bytes());
    out.extend_from_slice(&TYPE_A.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&addr.octets());
    out
}
