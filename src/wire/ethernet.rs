//! Ethernet II frames, with at most one IEEE 802.1Q tag between the source address and the
//! EtherType. Stacked tags (QinQ) are refused rather than half-parsed.

use super::{be16, put16, Result, WireError};
use std::fmt;

/// EtherType values this module and its users name.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
    /// IEEE 802.1ad service tag (the outer tag of QinQ).
    pub const QINQ: u16 = 0x88a8;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// Length of a header carrying one 802.1Q tag.
pub const TAGGED_HEADER_LEN: usize = 18;

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    fn from_slice(b: &[u8]) -> Self {
        let mut a = [0; 6];
        a.copy_from_slice(&b[..6]);
        EthernetAddress(a)
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// The tag control information of an 802.1Q tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// Priority code point (802.1p), 3 bits.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier, 12 bits.
    pub vid: u16,
}

impl VlanTag {
    fn from_tci(tci: u16) -> Self {
        VlanTag {
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }

    fn to_tci(self) -> Result<u16> {
        if self.pcp > 7 {
            return Err(WireError::Malformed("802.1Q priority exceeds 3 bits"));
        }
        if self.vid > 0x0fff {
            return Err(WireError::Malformed("802.1Q VLAN id exceeds 12 bits"));
        }
        Ok(u16::from(self.pcp) << 13 | u16::from(self.dei) << 12 | self.vid)
    }
}

/// A read (and, over a mutable buffer, write) view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    pub fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking that the whole header (including a tag, if the outer
    /// EtherType announces one) is present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        let len = frame.buffer.as_ref().len();
        if len < HEADER_LEN || len < frame.header_len() {
            return Err(WireError::Truncated);
        }
        Ok(frame)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn outer_ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), 12)
    }

    /// 14, or 18 when the frame carries an 802.1Q tag.
    pub fn header_len(&self) -> usize {
        if self.outer_ethertype() == ethertype::VLAN {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_slice(&self.buffer.as_ref()[0..6])
    }

    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_slice(&self.buffer.as_ref()[6..12])
    }

    /// The 802.1Q tag, if there is one.
    pub fn vlan(&self) -> Option<VlanTag> {
        (self.outer_ethertype() == ethertype::VLAN)
            .then(|| VlanTag::from_tci(be16(self.buffer.as_ref(), 14)))
    }

    /// The EtherType of the payload (after the tag, if tagged).
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), self.header_len() - 2)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

/// The fields of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub src_addr: EthernetAddress,
    pub dst_addr: EthernetAddress,
    pub vlan: Option<VlanTag>,
    /// The payload's EtherType; never a tag type (a tag is `vlan`).
    pub ethertype: u16,
}

fn is_tag_type(t: u16) -> bool {
    matches!(t, ethertype::VLAN | ethertype::QINQ | 0x9100)
}

impl EthernetRepr {
    /// Reads a checked frame. A second tag (QinQ) is refused: vmdep's data plane parses one.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self> {
        if frame.vlan().is_none() && is_tag_type(frame.ethertype()) {
            return Err(WireError::Malformed(
                "802.1ad service tag (QinQ) is not supported",
            ));
        }
        if frame.vlan().is_some() && is_tag_type(frame.ethertype()) {
            return Err(WireError::Malformed("more than one VLAN tag"));
        }
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlan: frame.vlan(),
            ethertype: frame.ethertype(),
        })
    }

    pub fn header_len(&self) -> usize {
        if self.vlan.is_some() {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Writes the header into the front of `buf`, which must hold at least `header_len()` bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if buf.len() < self.header_len() {
            return Err(WireError::Truncated);
        }
        if is_tag_type(self.ethertype) {
            return Err(WireError::Malformed("payload EtherType is a tag type"));
        }
        buf[0..6].copy_from_slice(&self.dst_addr.0);
        buf[6..12].copy_from_slice(&self.src_addr.0);
        match self.vlan {
            Some(tag) => {
                put16(buf, 12, ethertype::VLAN);
                put16(buf, 14, tag.to_tci()?);
                put16(buf, 16, self.ethertype);
            }
            None => put16(buf, 12, self.ethertype),
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tagged_frame_from_reference_stf() {
        // ref4_parser_range.stf: a frame tagged VLAN 10 carrying IPv4.
        let bytes = hex("0000000000010000000000028100000a08004500");
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        let repr = EthernetRepr::parse(&frame).unwrap();
        assert_eq!(repr.dst_addr, EthernetAddress([0, 0, 0, 0, 0, 1]));
        assert_eq!(repr.src_addr, EthernetAddress([0, 0, 0, 0, 0, 2]));
        assert_eq!(
            repr.vlan,
            Some(VlanTag {
                pcp: 0,
                dei: false,
                vid: 10
            })
        );
        assert_eq!(repr.ethertype, ethertype::IPV4);
        assert_eq!(frame.payload(), &[0x45, 0x00]);
    }

    #[test]
    fn tag_without_its_tci_is_truncated() {
        let bytes = hex("0000000000010000000000028100000a");
        assert_eq!(
            EthernetFrame::new_checked(&bytes[..]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn double_tag_is_refused() {
        let bytes = hex("0000000000010000000000028100000a8100000b0800");
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            EthernetRepr::parse(&frame).unwrap_err(),
            WireError::Malformed("more than one VLAN tag")
        );
    }

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    pub(crate) fn arb_repr() -> impl Strategy<Value = EthernetRepr> {
        let tag = (0u8..8, any::<bool>(), 0u16..4096).prop_map(|(pcp, dei, vid)| VlanTag {
            pcp,
            dei,
            vid,
        });
        (
            any::<[u8; 6]>(),
            any::<[u8; 6]>(),
            proptest::option::of(tag),
            any::<u16>().prop_filter("tag types are not payload types", |t| !is_tag_type(*t)),
        )
            .prop_map(|(s, d, vlan, ethertype)| EthernetRepr {
                src_addr: EthernetAddress(s),
                dst_addr: EthernetAddress(d),
                vlan,
                ethertype,
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(frame) = EthernetFrame::new_checked(&bytes[..]) {
                let _ = EthernetRepr::parse(&frame);
                let _ = frame.payload();
            }
        }

        #[test]
        fn emit_parse_round_trips(repr in arb_repr(), payload in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut buf = vec![0; repr.header_len() + payload.len()];
            repr.emit(&mut buf).unwrap();
            buf[repr.header_len()..].copy_from_slice(&payload);
            let frame = EthernetFrame::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(EthernetRepr::parse(&frame).unwrap(), repr);
            prop_assert_eq!(frame.payload(), &payload[..]);
        }
    }
}
