//! NTP (RFC 5905) over UDP: client requests (mode 3) and server replies (mode 4), 48-byte
//! headers optionally followed by extension fields and a MAC.
//!
//! Details: `version N` from requests, `stratum N` from replies. A reply pairs with the request
//! whose transmit timestamp it echoes as its origin timestamp.

use std::collections::HashMap;
use std::time::Duration;

use super::Tally;

const HEADER_LEN: usize = 48;
const MODE_CLIENT: u8 = 3;
const MODE_SERVER: u8 = 4;
/// Outstanding requests remembered per conversation.
const MAX_PENDING: usize = 64;

/// What DPI reads of an NTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::dpi) struct NtpPacket {
    version: u8,
    mode: u8,
    stratum: u8,
    origin: u64,
    transmit: u64,
}

impl NtpPacket {
    /// Reads a client request or server reply of versions 1 to 4; None for anything else.
    pub(in crate::dpi) fn parse(b: &[u8]) -> Option<Self> {
        // Extension fields and MACs come in whole 32-bit words after the header.
        if b.len() < HEADER_LEN || !b.len().is_multiple_of(4) {
            return None;
        }
        let be64 = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().expect("eight bytes"));
        let p = NtpPacket {
            version: (b[0] >> 3) & 7,
            mode: b[0] & 7,
            stratum: b[1],
            origin: be64(24),
            transmit: be64(40),
        };
        ((1..=4).contains(&p.version) && matches!(p.mode, MODE_CLIENT | MODE_SERVER)).then_some(p)
    }

    pub(in crate::dpi) fn is_request(&self) -> bool {
        self.mode == MODE_CLIENT
    }
}

/// Requests and replies of one conversation.
pub(in crate::dpi) struct NtpState {
    pending: HashMap<u64, Duration>,
}

impl NtpState {
    pub(in crate::dpi) fn new() -> Self {
        NtpState {
            pending: HashMap::new(),
        }
    }

    pub(in crate::dpi) fn all_answered(&self) -> bool {
        self.pending.is_empty()
    }

    pub(in crate::dpi) fn packet(&mut self, p: &NtpPacket, tally: &mut Tally<'_>) {
        if p.is_request() {
            tally.request();
            tally.detail(format!("version {}", p.version));
            if self.pending.len() < MAX_PENDING || self.pending.contains_key(&p.transmit) {
                self.pending.insert(p.transmit, tally.at);
            }
        } else {
            let elapsed = self.pending.remove(&p.origin).map(|at| tally.since(at));
            tally.response(elapsed);
            tally.detail(format!("stratum {}", p.stratum));
        }
    }
}

#[cfg(test)]
pub(in crate::dpi) mod tests {
    use super::*;

    /// A request sent with `transmit`, or the reply echoing it.
    pub(in crate::dpi) fn packet(reply: bool, transmit: u64) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN];
        p[0] = 4 << 3 | if reply { MODE_SERVER } else { MODE_CLIENT };
        if reply {
            p[1] = 2;
            p[24..32].copy_from_slice(&transmit.to_be_bytes());
            p[40..48].copy_from_slice(&(transmit + 1).to_be_bytes());
        } else {
            p[40..48].copy_from_slice(&transmit.to_be_bytes());
        }
        p
    }

    #[test]
    fn parses_requests_and_replies_only() {
        let q = NtpPacket::parse(&packet(false, 77)).unwrap();
        assert!(q.is_request());
        assert_eq!((q.version, q.transmit), (4, 77));
        let r = NtpPacket::parse(&packet(true, 77)).unwrap();
        assert_eq!((r.is_request(), r.stratum, r.origin), (false, 2, 77));
        let mut broadcast = packet(true, 1);
        broadcast[0] = 4 << 3 | 5;
        assert!(NtpPacket::parse(&broadcast).is_none());
        assert!(NtpPacket::parse(&packet(false, 1)[..47]).is_none());
        let mut v0 = packet(false, 1);
        v0[0] = MODE_CLIENT;
        assert!(NtpPacket::parse(&v0).is_none());
    }
}
