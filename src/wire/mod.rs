//! Packet header codecs: Ethernet II (with at most one 802.1Q tag), IPv4, TCP and UDP, in the
//! manner of smoltcp's `wire`: zero-copy views (`*Packet<T: AsRef<[u8]>>`, `EthernetFrame<T>`)
//! whose `new_checked` validates lengths before any accessor runs, plus plain `*Repr` structs to
//! parse into and emit from. [`frame`] builds and parses whole frames with correct checksums.
//!
//! A leaf module: it imports nothing else of vmdep. It owns byte layouts and checksums only; what a
//! packet means (flows, VM pairs, sampling) belongs to its users.

pub mod checksum;
pub mod ethernet;
pub mod frame;
pub mod ipv4;
pub mod tcp;
pub mod udp;

pub use ethernet::{EthernetAddress, EthernetFrame, EthernetRepr, VlanTag};
pub use frame::{FrameRepr, HeaderSummary, TransportRepr, TransportSummary};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use tcp::{TcpFlags, TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};

/// Why bytes could not be read as a packet (or a packet could not be written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before the header (or the length a header declares) does.
    #[error("packet truncated")]
    Truncated,
    /// A field holds a value the format forbids; the text names the field.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

pub type Result<T> = core::result::Result<T, WireError>;

/// IP protocol numbers this module decodes.
pub mod ip_protocol {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
