//! NTPv4 packets (RFC 5905): a client request (mode 3) and the server's reply (mode 4), 48
//! bytes each, with timestamps counted from the run's start at 2026-01-01T00:00:00Z. Only the
//! bytes.

use super::Nanos;

/// NTP seconds (since 1900) at the run's start: 2026-01-01 is Unix time 1,767,225,600, and the
/// NTP era starts 2,208,988,800 s before Unix time's.
const RUN_START_NTP_SECONDS: u64 = 1_767_225_600 + 2_208_988_800;
pub(super) const PACKET_LEN: usize = 48;
const VERSION: u8 = 4;
const MODE_CLIENT: u8 = 3;
const MODE_SERVER: u8 = 4;

/// The 64-bit NTP timestamp (32.32 fixed point seconds) of a run time.
pub(super) fn timestamp(t: Nanos) -> u64 {
    let seconds = RUN_START_NTP_SECONDS + t / 1_000_000_000;
    let fraction = ((t % 1_000_000_000) << 32) / 1_000_000_000;
    seconds << 32 | fraction
}

fn packet(mode: u8, stratum: u8, precision: i8, reference_id: [u8; 4]) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = VERSION << 3 | mode; // leap indicator 0
    p[1] = stratum;
    p[2] = 6; // poll interval 2^6 s
    p[3] = precision as u8;
    p[12..16].copy_from_slice(&reference_id);
    p
}

/// A client request sent at `t`: only the transmit timestamp is set.
pub(super) fn request(t: Nanos) -> [u8; PACKET_LEN] {
    let mut p = packet(MODE_CLIENT, 0, -20, [0; 4]);
    p[40..48].copy_from_slice(&timestamp(t).to_be_bytes());
    p
}

/// A stratum-2 server's reply to `request`, received at `received` and sent at `sent`; its
/// clock follows `upstream`, last synchronised at `reference`.
pub(super) fn reply(
    request: &[u8; PACKET_LEN],
    received: Nanos,
    sent: Nanos,
    upstream: [u8; 4],
    reference: Nanos,
) -> [u8; PACKET_LEN] {
    let mut p = packet(MODE_SERVER, 2, -23, upstream);
    p[4..8].copy_from_slice(&0x0000_0120u32.to_be_bytes()); // root delay, 16.16 s
    p[8..12].copy_from_slice(&0x0000_0200u32.to_be_bytes()); // root dispersion
    p[16..24].copy_from_slice(&timestamp(reference).to_be_bytes());
    p[24..32].copy_from_slice(&request[40..48]); // origin = the client's transmit
    p[32..40].copy_from_slice(&timestamp(received).to_be_bytes());
    p[40..48].copy_from_slice(&timestamp(sent).to_be_bytes());
    p
}
