//! UDP headers (RFC 768): the checksum covers the IPv4 pseudo-header; zero means "none".
//!
//! Like IPv4, `UdpPacket::new_checked` accepts a datagram cut short (sampled headers);
//! `is_complete` says whether all `len` bytes are there and `UdpRepr::parse` insists on it.

use super::{be16, checksum, ip_protocol, put16, Result, WireError};
use std::net::Ipv4Addr;

pub const HEADER_LEN: usize = 8;

/// A read view of a UDP datagram (the IPv4 payload).
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    pub fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after checking that the header is present and the length covers it.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        if packet.b().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if usize::from(packet.len()) < HEADER_LEN {
            return Err(WireError::Malformed("UDP length shorter than its header"));
        }
        Ok(packet)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn src_port(&self) -> u16 {
        be16(self.b(), 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.b(), 2)
    }

    /// Header plus payload length, as the header declares it.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        be16(self.b(), 4)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.b(), 6)
    }

    pub fn is_complete(&self) -> bool {
        self.b().len() >= usize::from(self.len())
    }

    /// The payload: up to `len`, or to the end of the buffer if the datagram is cut short.
    pub fn payload(&self) -> &[u8] {
        let end = usize::from(self.len()).min(self.b().len());
        &self.b()[HEADER_LEN..end]
    }

    /// True when the checksum is zero (not computed) or right over pseudo-header and datagram.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let end = usize::from(self.len()).min(self.b().len());
        let pseudo = checksum::pseudo_header_v4(src, dst, ip_protocol::UDP, self.len());
        checksum::fold(checksum::add(pseudo, &self.b()[..end])) == 0xffff
    }
}

/// Computes and writes the checksum of a whole datagram in `buf` (header and payload in place).
pub fn fill_checksum(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<()> {
    if buf.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let len =
        u16::try_from(buf.len()).map_err(|_| WireError::Malformed("UDP datagram too long"))?;
    put16(buf, 6, 0);
    let pseudo = checksum::pseudo_header_v4(src, dst, ip_protocol::UDP, len);
    // A computed zero is sent as all ones: zero on the wire means "no checksum".
    let sum = match !checksum::fold(checksum::add(pseudo, buf)) {
        0 => 0xffff,
        s => s,
    };
    put16(buf, 6, sum);
    Ok(())
}

/// The fields of a UDP header (the length comes from the payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    /// Reads a checked, complete datagram whose checksum (if any) is right for the addresses.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<Self> {
        if !packet.is_complete() {
            return Err(WireError::Truncated);
        }
        if !packet.verify_checksum(src, dst) {
            return Err(WireError::Malformed("UDP checksum"));
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
        })
    }

    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header for `payload_len` bytes of payload, checksum zero; write the payload
    /// after it, then call [`fill_checksum`] over the whole datagram.
    pub fn emit(&self, buf: &mut [u8], payload_len: usize) -> Result<()> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = u16::try_from(HEADER_LEN + payload_len)
            .map_err(|_| WireError::Malformed("UDP datagram too long"))?;
        put16(buf, 0, self.src_port);
        put16(buf, 2, self.dst_port);
        put16(buf, 4, len);
        put16(buf, 6, 0);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::ethernet::tests::hex;
    use proptest::prelude::*;

    #[test]
    fn reference_stf_udp_datagram() {
        // ref4_parser_range.stf: 10.0.0.1 -> 10.0.0.2, ports 4321 -> 1200, no checksum.
        let bytes = hex("10e104b0000c000002020202");
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let repr = UdpRepr::parse(&packet, src, dst).unwrap();
        assert_eq!(
            repr,
            UdpRepr {
                src_port: 4321,
                dst_port: 1200
            }
        );
        assert_eq!(packet.payload(), &[2, 2, 2, 2]);
    }

    #[test]
    fn wrong_checksum_is_refused_and_zero_is_none() {
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let mut buf = hex("10e104b0000c000002020202");
        fill_checksum(&mut buf, src, dst).unwrap();
        assert_ne!(be16(&buf, 6), 0);
        assert!(UdpRepr::parse(&UdpPacket::new_unchecked(&buf[..]), src, dst).is_ok());
        buf[11] ^= 1;
        assert_eq!(
            UdpRepr::parse(&UdpPacket::new_unchecked(&buf[..]), src, dst).unwrap_err(),
            WireError::Malformed("UDP checksum")
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40), a: [u8; 4], b: [u8; 4]) {
            if let Ok(packet) = UdpPacket::new_checked(&bytes[..]) {
                let _ = UdpRepr::parse(&packet, a.into(), b.into());
                let _ = packet.payload();
            }
        }

        #[test]
        fn emit_parse_round_trips(
            sp: u16, dp: u16,
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            a: [u8; 4],
            b: [u8; 4],
        ) {
            let repr = UdpRepr { src_port: sp, dst_port: dp };
            let mut buf = vec![0; HEADER_LEN + payload.len()];
            repr.emit(&mut buf, payload.len()).unwrap();
            buf[HEADER_LEN..].copy_from_slice(&payload);
            fill_checksum(&mut buf, a.into(), b.into()).unwrap();
            let packet = UdpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.checksum() != 0);
            prop_assert_eq!(UdpRepr::parse(&packet, a.into(), b.into()).unwrap(), repr);
            prop_assert_eq!(packet.payload(), &payload[..]);
        }
    }
}
