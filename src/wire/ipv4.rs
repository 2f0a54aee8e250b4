//! IPv4 headers (RFC 791): options are skipped by the IHL, the header checksum is computed on
//! emit and verified on parse.
//!
//! `Ipv4Packet::new_checked` accepts a datagram whose payload is cut short, because sFlow carries
//! the first bytes of sampled packets; `is_complete` says whether all `total_len` bytes are
//! present, and `Ipv4Repr::parse` insists on it.

use super::{be16, checksum, put16, Result, WireError};
use std::net::Ipv4Addr;

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// A read view of an IPv4 datagram.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after checking the version, that the header (options included) is present,
    /// and that the total length covers at least the header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if packet.version() != 4 {
            return Err(WireError::Malformed("IP version is not 4"));
        }
        if packet.header_len() < HEADER_LEN {
            return Err(WireError::Malformed("IPv4 IHL below 5"));
        }
        if len < packet.header_len() {
            return Err(WireError::Truncated);
        }
        if usize::from(packet.total_len()) < packet.header_len() {
            return Err(WireError::Malformed(
                "IPv4 total length shorter than its header",
            ));
        }
        Ok(packet)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn version(&self) -> u8 {
        self.b()[0] >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[0] & 0x0f) * 4
    }

    /// The former type-of-service byte: DSCP (6 bits) and ECN (2 bits).
    pub fn tos(&self) -> u8 {
        self.b()[1]
    }

    pub fn total_len(&self) -> u16 {
        be16(self.b(), 2)
    }

    pub fn ident(&self) -> u16 {
        be16(self.b(), 4)
    }

    pub fn dont_frag(&self) -> bool {
        self.b()[6] & 0x40 != 0
    }

    pub fn more_frags(&self) -> bool {
        self.b()[6] & 0x20 != 0
    }

    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        be16(self.b(), 6) & 0x1fff
    }

    pub fn ttl(&self) -> u8 {
        self.b()[8]
    }

    pub fn protocol(&self) -> u8 {
        self.b()[9]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.b(), 10)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        let b = self.b();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = self.b();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    pub fn options(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.header_len()]
    }

    /// True when the header checksum (options included) is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::add(0, &self.b()[..self.header_len()])) == 0xffff
    }

    /// True when all `total_len` bytes are in the buffer (a link layer may add padding after).
    pub fn is_complete(&self) -> bool {
        self.b().len() >= usize::from(self.total_len())
    }

    /// The payload: up to `total_len`, or to the end of the buffer if the datagram is cut short.
    pub fn payload(&self) -> &[u8] {
        let end = usize::from(self.total_len()).min(self.b().len());
        &self.b()[self.header_len()..end]
    }
}

/// The fields of an IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// In 8-byte units, 13 bits.
    pub frag_offset: u16,
    /// Payload length in bytes (total length minus the header).
    pub payload_len: u16,
}

impl Ipv4Repr {
    /// Reads a checked packet; the whole datagram must be present and its checksum right.
    /// Options are skipped (vmdep's data plane never needs them).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Self> {
        if !packet.is_complete() {
            return Err(WireError::Truncated);
        }
        if !packet.verify_checksum() {
            return Err(WireError::Malformed("IPv4 header checksum"));
        }
        if packet.b()[6] & 0x80 != 0 {
            return Err(WireError::Malformed("IPv4 reserved flag set"));
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            tos: packet.tos(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
            payload_len: packet.total_len() - packet.header_len() as u16,
        })
    }

    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with its checksum into the front of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.frag_offset > 0x1fff {
            return Err(WireError::Malformed("IPv4 fragment offset exceeds 13 bits"));
        }
        let total = self
            .payload_len
            .checked_add(HEADER_LEN as u16)
            .ok_or(WireError::Malformed("IPv4 total length exceeds 65535"))?;
        buf[0] = 0x45;
        buf[1] = self.tos;
        put16(buf, 2, total);
        put16(buf, 4, self.ident);
        let flags = u16::from(self.dont_frag) << 14 | u16::from(self.more_frags) << 13;
        put16(buf, 6, flags | self.frag_offset);
        buf[8] = self.ttl;
        buf[9] = self.protocol;
        put16(buf, 10, 0);
        buf[12..16].copy_from_slice(&self.src_addr.octets());
        buf[16..20].copy_from_slice(&self.dst_addr.octets());
        let sum = checksum::of(&buf[..HEADER_LEN]);
        put16(buf, 10, sum);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::ethernet::tests::hex;
    use proptest::prelude::*;

    #[test]
    fn reference_stf_packet_parses_and_its_checksum_verifies() {
        // ref1_lpm_checksum.stf, first packet, after the Ethernet header.
        let bytes = hex("4500001c123400004011938ac00002010a090909abababababababab");
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(packet.verify_checksum());
        let repr = Ipv4Repr::parse(&packet).unwrap();
        assert_eq!(repr.src_addr, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(repr.dst_addr, Ipv4Addr::new(10, 9, 9, 9));
        assert_eq!(repr.protocol, 17);
        assert_eq!(repr.ttl, 64);
        assert_eq!(repr.ident, 0x1234);
        assert_eq!(repr.payload_len, 8);
        // Emitting the same fields reproduces the header byte for byte, checksum included.
        let mut out = [0u8; 20];
        repr.emit(&mut out).unwrap();
        assert_eq!(&out[..], &bytes[..20]);
    }

    #[test]
    fn reference_stf_bad_checksum_is_refused() {
        // ref1_lpm_checksum.stf's last packet: checksum 9b99 where 9b98 is right.
        let bytes = hex("4500001c1234000040119b99c00002010a010203abababababababab");
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(!packet.verify_checksum());
        assert_eq!(
            Ipv4Repr::parse(&packet).unwrap_err(),
            WireError::Malformed("IPv4 header checksum")
        );
    }

    #[test]
    fn options_are_skipped_by_ihl() {
        // IHL 6: one 4-byte option (NOP NOP NOP EOL) before a 4-byte payload.
        let mut b = hex("4600001c000000004011000001020304050607080101010000112233");
        let sum = checksum::of(&b[..24]);
        put16(&mut b, 10, sum);
        let packet = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.options(), &[1, 1, 1, 0]);
        assert_eq!(packet.payload(), &[0, 0x11, 0x22, 0x33]);
        assert_eq!(Ipv4Repr::parse(&packet).unwrap().payload_len, 4);
    }

    #[test]
    fn cut_short_datagram_is_viewable_but_not_parsable() {
        let bytes = hex("4500001c123400004011938ac00002010a090909abab");
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(!packet.is_complete());
        assert_eq!(packet.payload(), &[0xab, 0xab]);
        assert_eq!(Ipv4Repr::parse(&packet).unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn bad_ihl_and_version_are_malformed() {
        let mut b = hex("4500001c123400004011938ac00002010a090909");
        b[0] = 0x44;
        assert!(matches!(
            Ipv4Packet::new_checked(&b[..]),
            Err(WireError::Malformed(_))
        ));
        b[0] = 0x65;
        assert!(matches!(
            Ipv4Packet::new_checked(&b[..]),
            Err(WireError::Malformed(_))
        ));
        b[0] = 0x4f;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            WireError::Truncated
        );
    }

    pub(crate) fn arb_repr() -> impl Strategy<Value = Ipv4Repr> {
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<(u8, u8, u8, u16)>(),
            any::<(bool, bool)>(),
            0u16..0x2000,
            0u16..2000,
        )
            .prop_map(
                |(s, d, (protocol, ttl, tos, ident), (df, mf), frag_offset, payload_len)| {
                    Ipv4Repr {
                        src_addr: s.into(),
                        dst_addr: d.into(),
                        protocol,
                        ttl,
                        tos,
                        ident,
                        dont_frag: df,
                        more_frags: mf,
                        frag_offset,
                        payload_len,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(packet) = Ipv4Packet::new_checked(&bytes[..]) {
                let _ = Ipv4Repr::parse(&packet);
                let _ = (packet.payload(), packet.options(), packet.verify_checksum());
            }
        }

        #[test]
        fn emit_parse_round_trips(repr in arb_repr()) {
            let mut buf = vec![0x5a; HEADER_LEN + usize::from(repr.payload_len)];
            repr.emit(&mut buf).unwrap();
            let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Ipv4Repr::parse(&packet).unwrap(), repr);
        }
    }
}
