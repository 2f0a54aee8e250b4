//! Whole frames: Ethernet II (optionally 802.1Q-tagged) carrying IPv4 carrying TCP or UDP.
//!
//! [`FrameRepr`] builds frames with every length and checksum right (for the emulated hosts and
//! the workload generator) and parses complete frames strictly. [`HeaderSummary`] reads what it
//! can from the first bytes of a frame, as an sFlow sampled header carries them.

use super::ethernet::{self, EthernetAddress, EthernetFrame, EthernetRepr, VlanTag};
use super::ipv4::{self, Ipv4Packet, Ipv4Repr};
use super::tcp::{self, TcpFlags, TcpPacket, TcpRepr};
use super::udp::{self, UdpPacket, UdpRepr};
use super::{be16, ip_protocol, Result, WireError};
use std::net::Ipv4Addr;

/// The transport header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportRepr {
    Tcp(TcpRepr),
    Udp(UdpRepr),
}

impl TransportRepr {
    pub fn protocol(&self) -> u8 {
        match self {
            TransportRepr::Tcp(_) => ip_protocol::TCP,
            TransportRepr::Udp(_) => ip_protocol::UDP,
        }
    }

    pub fn header_len(&self) -> usize {
        match self {
            TransportRepr::Tcp(t) => t.header_len(),
            TransportRepr::Udp(u) => u.header_len(),
        }
    }
}

/// A complete Ethernet/IPv4/TCP-or-UDP frame. The three headers must agree: the EtherType is
/// IPv4, the IP protocol is the transport's, and the IP payload length is the transport header
/// plus `payload`. [`FrameRepr::new`] makes them agree; `emit` refuses frames where they do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameRepr<'a> {
    pub ethernet: EthernetRepr,
    pub ipv4: Ipv4Repr,
    pub transport: TransportRepr,
    pub payload: &'a [u8],
}

impl<'a> FrameRepr<'a> {
    /// A frame with consistent headers and common defaults: TTL 64, TOS 0, ident 0, don't
    /// fragment.
    pub fn new(
        src_mac: EthernetAddress,
        dst_mac: EthernetAddress,
        vlan: Option<VlanTag>,
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
        transport: TransportRepr,
        payload: &'a [u8],
    ) -> Result<Self> {
        let payload_len = u16::try_from(transport.header_len() + payload.len())
            .ok()
            .filter(|l| usize::from(*l) + ipv4::HEADER_LEN <= usize::from(u16::MAX))
            .ok_or(WireError::Malformed(
                "payload too long for one IPv4 datagram",
            ))?;
        Ok(FrameRepr {
            ethernet: EthernetRepr {
                src_addr: src_mac,
                dst_addr: dst_mac,
                vlan,
                ethertype: ethernet::ethertype::IPV4,
            },
            ipv4: Ipv4Repr {
                src_addr: src_ip,
                dst_addr: dst_ip,
                protocol: transport.protocol(),
                ttl: 64,
                tos: 0,
                ident: 0,
                dont_frag: true,
                more_frags: false,
                frag_offset: 0,
                payload_len,
            },
            transport,
            payload,
        })
    }

    /// Parses a complete frame, verifying the IPv4, TCP and UDP checksums. Bytes after the IPv4
    /// total length (Ethernet padding) are ignored; fragments are refused (only a whole datagram
    /// has a transport header and payload to return).
    pub fn parse(frame: &'a [u8]) -> Result<Self> {
        let eth_frame = EthernetFrame::new_checked(frame)?;
        let ethernet = EthernetRepr::parse(&eth_frame)?;
        if ethernet.ethertype != ethernet::ethertype::IPV4 {
            return Err(WireError::Malformed("EtherType is not IPv4"));
        }
        let ip_bytes = &frame[eth_frame.header_len()..];
        let ip_packet = Ipv4Packet::new_checked(ip_bytes)?;
        let ipv4 = Ipv4Repr::parse(&ip_packet)?;
        if ipv4.more_frags || ipv4.frag_offset != 0 {
            return Err(WireError::Malformed("IPv4 fragment"));
        }
        // Sliced from `ip_bytes` rather than through the view, to keep the frame's lifetime.
        let segment = &ip_bytes[ip_packet.header_len()..usize::from(ip_packet.total_len())];
        let (transport, header_len) = match ipv4.protocol {
            ip_protocol::TCP => {
                let p = TcpPacket::new_checked(segment)?;
                let repr = TcpRepr::parse(&p, ipv4.src_addr, ipv4.dst_addr)?;
                (TransportRepr::Tcp(repr), p.header_len())
            }
            ip_protocol::UDP => {
                let p = UdpPacket::new_checked(segment)?;
                if usize::from(p.len()) != segment.len() {
                    return Err(WireError::Malformed(
                        "UDP length disagrees with IPv4 length",
                    ));
                }
                let repr = UdpRepr::parse(&p, ipv4.src_addr, ipv4.dst_addr)?;
                (TransportRepr::Udp(repr), udp::HEADER_LEN)
            }
            _ => return Err(WireError::Malformed("IP protocol is neither TCP nor UDP")),
        };
        let payload = &segment[header_len..];
        // The Repr drops TCP and IPv4 options, so it describes the frame as `emit` would write
        // it: the IPv4 payload length is the option-less transport header plus the payload.
        let mut ipv4 = ipv4;
        ipv4.payload_len = (transport.header_len() + payload.len()) as u16;
        Ok(FrameRepr {
            ethernet,
            ipv4,
            transport,
            payload,
        })
    }

    /// Length of the emitted frame in bytes.
    pub fn frame_len(&self) -> usize {
        self.ethernet.header_len() + ipv4::HEADER_LEN + usize::from(self.ipv4.payload_len)
    }

    /// Writes the frame into the front of `buf` (at least `len()` bytes) with every checksum.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if self.ethernet.ethertype != ethernet::ethertype::IPV4 {
            return Err(WireError::Malformed("EtherType is not IPv4"));
        }
        if self.ipv4.protocol != self.transport.protocol() {
            return Err(WireError::Malformed(
                "IP protocol disagrees with the transport",
            ));
        }
        if usize::from(self.ipv4.payload_len) != self.transport.header_len() + self.payload.len() {
            return Err(WireError::Malformed(
                "IPv4 payload length disagrees with the payload",
            ));
        }
        if self.ipv4.more_frags || self.ipv4.frag_offset != 0 {
            return Err(WireError::Malformed("IPv4 fragment"));
        }
        let len = self.frame_len();
        if buf.len() < len {
            return Err(WireError::Truncated);
        }
        let buf = &mut buf[..len];
        let l2 = self.ethernet.header_len();
        self.ethernet.emit(buf)?;
        self.ipv4.emit(&mut buf[l2..])?;
        let segment = &mut buf[l2 + ipv4::HEADER_LEN..];
        let (src, dst) = (self.ipv4.src_addr, self.ipv4.dst_addr);
        let th = self.transport.header_len();
        segment[th..].copy_from_slice(self.payload);
        match &self.transport {
            TransportRepr::Tcp(t) => {
                t.emit(segment)?;
                tcp::fill_checksum(segment, src, dst)
            }
            TransportRepr::Udp(u) => {
                u.emit(segment, self.payload.len())?;
                udp::fill_checksum(segment, src, dst)
            }
        }
    }

    /// The frame as a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0; self.frame_len()];
        self.emit(&mut buf)?;
        Ok(buf)
    }
}

/// The IPv4 fields of a [`HeaderSummary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Summary {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: u8,
    pub tos: u8,
    /// The datagram's declared length, which the sampled bytes may not reach.
    pub total_len: u16,
    /// False for the second and later fragments, which carry no transport header.
    pub first_fragment: bool,
}

/// The transport fields of a [`HeaderSummary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransportSummary {
    pub src_port: u16,
    pub dst_port: u16,
    /// For TCP, when the flags are among the sampled bytes.
    pub tcp_flags: Option<TcpFlags>,
}

/// What the first bytes of a frame say, read leniently: the frame (as in an sFlow sampled
/// header) may stop anywhere after the IPv4 header, and checksums are not verified because the
/// bytes they cover may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderSummary {
    pub src_mac: EthernetAddress,
    pub dst_mac: EthernetAddress,
    pub vlan: Option<VlanTag>,
    pub ethertype: u16,
    /// Present when the EtherType is IPv4.
    pub ipv4: Option<Ipv4Summary>,
    /// Present for TCP and UDP first fragments whose ports are among the bytes.
    pub transport: Option<TransportSummary>,
}

impl HeaderSummary {
    /// Reads a frame's first bytes. The Ethernet header, and for IPv4 the IPv4 header, must be
    /// whole; the transport header is read as far as it goes.
    pub fn parse(frame: &[u8]) -> Result<Self> {
        let eth = EthernetFrame::new_checked(frame)?;
        let ethernet = EthernetRepr::parse(&eth)?;
        let mut summary = HeaderSummary {
            src_mac: ethernet.src_addr,
            dst_mac: ethernet.dst_addr,
            vlan: ethernet.vlan,
            ethertype: ethernet.ethertype,
            ipv4: None,
            transport: None,
        };
        if ethernet.ethertype != ethernet::ethertype::IPV4 {
            return Ok(summary);
        }
        let ip = Ipv4Packet::new_checked(eth.payload())?;
        let ipv4 = Ipv4Summary {
            src_addr: ip.src_addr(),
            dst_addr: ip.dst_addr(),
            protocol: ip.protocol(),
            tos: ip.tos(),
            total_len: ip.total_len(),
            first_fragment: ip.frag_offset() == 0,
        };
        summary.ipv4 = Some(ipv4);
        let seg = ip.payload();
        let is_transport = matches!(ipv4.protocol, ip_protocol::TCP | ip_protocol::UDP);
        if ipv4.first_fragment && is_transport && seg.len() >= 4 {
            let tcp_flags = (ipv4.protocol == ip_protocol::TCP && seg.len() >= 14)
                .then(|| TcpFlags(be16(seg, 12) & 0x1ff));
            summary.transport = Some(TransportSummary {
                src_port: be16(seg, 0),
                dst_port: be16(seg, 2),
                tcp_flags,
            });
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::tests::{arb_repr as arb_ethernet, hex};
    use crate::wire::tcp::tests::arb_repr as arb_tcp;
    use proptest::prelude::*;

    #[test]
    fn reference_stf_frames() {
        // ref1_lpm_checksum.stf's first packet and the frame bmv2 sent out for it (TTL 63). Their
        // IPv4 headers are right, but the "UDP" bytes are filler (length 0xabab), so the strict
        // parser refuses them while the summary still reads addresses and ports.
        for (stf, ttl) in [
            ("00000000000100000000000208004500001c123400004011938ac00002010a090909abababababababab", 64),
            ("0000000000a100000000000108004500001c123400003f11948ac00002010a090909abababababababab", 63),
        ] {
            let bytes = hex(stf);
            assert_eq!(
                FrameRepr::parse(&bytes).unwrap_err(),
                WireError::Malformed("UDP length disagrees with IPv4 length")
            );
            let s = HeaderSummary::parse(&bytes).unwrap();
            let ip = s.ipv4.unwrap();
            assert_eq!((ip.src_addr, ip.dst_addr), (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(10, 9, 9, 9)));
            assert_eq!(ip.total_len, 28);
            let t = s.transport.unwrap();
            assert_eq!((t.src_port, t.dst_port), (0xabab, 0xabab));
            let ip_packet = Ipv4Packet::new_checked(&bytes[14..]).unwrap();
            assert_eq!(Ipv4Repr::parse(&ip_packet).unwrap().ttl, ttl);
        }
    }

    #[test]
    fn tagged_udp_frame_summary() {
        // ref4_parser_range.stf: VLAN 10, 10.0.0.1:4321 -> 10.0.0.2:1200.
        let bytes = hex("0000000000010000000000028100000a08004500002000070000401100000a0000010a00000210e104b0000c000002020202");
        let s = HeaderSummary::parse(&bytes).unwrap();
        assert_eq!(s.vlan.unwrap().vid, 10);
        let ip = s.ipv4.unwrap();
        assert_eq!(
            (ip.src_addr, ip.dst_addr),
            (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))
        );
        assert_eq!(ip.protocol, 17);
        let t = s.transport.unwrap();
        assert_eq!((t.src_port, t.dst_port, t.tcp_flags), (4321, 1200, None));
        // Its IPv4 checksum field is zero, so the strict parser refuses what the summary reads.
        assert_eq!(
            FrameRepr::parse(&bytes).unwrap_err(),
            WireError::Malformed("IPv4 header checksum")
        );
    }

    #[test]
    fn summary_of_a_cut_short_tcp_frame() {
        let tcp = TcpRepr {
            src_port: 5000,
            dst_port: 80,
            seq_number: 7,
            ack_number: 9,
            flags: TcpFlags::ACK | TcpFlags::PSH,
            window_len: 512,
            urgent_at: 0,
        };
        let payload = [0x42u8; 300];
        let f = FrameRepr::new(
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            EthernetAddress([2, 0, 0, 0, 0, 2]),
            None,
            Ipv4Addr::new(10, 1, 0, 1),
            Ipv4Addr::new(10, 1, 0, 2),
            TransportRepr::Tcp(tcp),
            &payload,
        )
        .unwrap();
        let bytes = f.to_vec().unwrap();
        assert_eq!(FrameRepr::parse(&bytes).unwrap(), f);
        // sFlow's default: the first 128 bytes.
        let s = HeaderSummary::parse(&bytes[..128]).unwrap();
        assert_eq!(s.ipv4.unwrap().total_len, 20 + 20 + 300);
        let t = s.transport.unwrap();
        assert_eq!((t.src_port, t.dst_port), (5000, 80));
        assert_eq!(t.tcp_flags, Some(TcpFlags::ACK | TcpFlags::PSH));
        // Cut inside the TCP header: ports but no flags. Cut inside IPv4: an error.
        let t = HeaderSummary::parse(&bytes[..14 + 20 + 8])
            .unwrap()
            .transport
            .unwrap();
        assert_eq!((t.src_port, t.tcp_flags), (5000, None));
        assert_eq!(
            HeaderSummary::parse(&bytes[..14 + 19]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            FrameRepr::parse(&bytes[..128]).unwrap_err(),
            WireError::Truncated
        );
    }

    fn arb_frame() -> impl Strategy<Value = (EthernetRepr, TransportRepr, [u8; 4], [u8; 4], Vec<u8>)>
    {
        let transport = prop_oneof![
            arb_tcp().prop_map(TransportRepr::Tcp),
            any::<(u16, u16)>().prop_map(|(s, d)| TransportRepr::Udp(UdpRepr {
                src_port: s,
                dst_port: d
            })),
        ];
        (
            arb_ethernet(),
            transport,
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            proptest::collection::vec(any::<u8>(), 0..200),
        )
    }

    proptest! {
        #[test]
        fn parse_and_summary_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = FrameRepr::parse(&bytes);
            let _ = HeaderSummary::parse(&bytes);
        }

        #[test]
        fn built_frames_round_trip((eth, transport, s, d, payload) in arb_frame()) {
            let f = FrameRepr::new(eth.src_addr, eth.dst_addr, eth.vlan, s.into(), d.into(), transport, &payload).unwrap();
            let bytes = f.to_vec().unwrap();
            prop_assert_eq!(bytes.len(), f.frame_len());
            prop_assert_eq!(FrameRepr::parse(&bytes).unwrap(), f);
            let summary = HeaderSummary::parse(&bytes).unwrap();
            prop_assert_eq!(summary.ipv4.unwrap().src_addr, Ipv4Addr::from(s));
            let ports = summary.transport.unwrap();
            let (sp, dp) = match transport {
                TransportRepr::Tcp(t) => (t.src_port, t.dst_port),
                TransportRepr::Udp(u) => (u.src_port, u.dst_port),
            };
            prop_assert_eq!((ports.src_port, ports.dst_port), (sp, dp));
        }
    }
}
