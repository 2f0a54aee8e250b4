//! The fixed-size structures of sFlow v5 that decoded views and Reprs share.

use super::xdr::{put_u32, put_u64, Reader};
use super::{Result, SflowError};
use std::net::{Ipv4Addr, Ipv6Addr};

/// `header_protocol` values of a raw packet header record (the ones vmdep meets).
pub mod header_protocol {
    /// ETHERNET-ISO88023: the header starts with an Ethernet MAC header.
    pub const ETHERNET: u32 = 1;
    pub const IPV4: u32 = 11;
    pub const IPV6: u32 = 12;
}

/// An sFlow `address`: the agent's IP address, or `Unknown` (type 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Address {
    Unknown,
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

impl Address {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        match r.u32("agent address type")? {
            0 => Ok(Address::Unknown),
            1 => Ok(Address::Ipv4(r.array::<4>("agent address")?.into())),
            2 => Ok(Address::Ipv6(r.array::<16>("agent address")?.into())),
            _ => Err(SflowError::Malformed("agent address type is not 0, 1 or 2")),
        }
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        match self {
            Address::Unknown => put_u32(out, 0),
            Address::Ipv4(a) => {
                put_u32(out, 1);
                out.extend_from_slice(&a.octets());
            }
            Address::Ipv6(a) => {
                put_u32(out, 2);
                out.extend_from_slice(&a.octets());
            }
        }
    }
}

/// A `data_format`: a 20-bit enterprise number and a 12-bit format number in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataFormat(u32);

impl DataFormat {
    pub const FLOW_SAMPLE: DataFormat = DataFormat(1);
    pub const COUNTERS_SAMPLE: DataFormat = DataFormat(2);
    pub const FLOW_SAMPLE_EXPANDED: DataFormat = DataFormat(3);
    pub const COUNTERS_SAMPLE_EXPANDED: DataFormat = DataFormat(4);
    /// Flow record: raw packet header.
    pub const SAMPLED_HEADER: DataFormat = DataFormat(1);
    /// Flow record: IPv4 data.
    pub const SAMPLED_IPV4: DataFormat = DataFormat(3);
    /// Flow record: extended switch data.
    pub const EXTENDED_SWITCH: DataFormat = DataFormat(1001);
    /// Counter record: generic interface counters.
    pub const IF_COUNTERS: DataFormat = DataFormat(1);

    /// Fails when `enterprise` exceeds 20 bits or `format` 12 bits.
    pub fn new(enterprise: u32, format: u32) -> Result<Self> {
        if enterprise >= 1 << 20 || format >= 1 << 12 {
            return Err(SflowError::Unencodable("data format exceeds 20+12 bits"));
        }
        Ok(DataFormat(enterprise << 12 | format))
    }

    pub fn from_raw(raw: u32) -> Self {
        DataFormat(raw)
    }

    pub fn raw(self) -> u32 {
        self.0
    }

    pub fn enterprise(self) -> u32 {
        self.0 >> 12
    }

    pub fn format(self) -> u32 {
        self.0 & 0xfff
    }
}

/// The data source a sample describes (`sflow_data_source`): a type (0 ifIndex, 1 VLAN,
/// 2 physical entity, 3 logical entity) and an index. The compact form packs them into 8 and 24
/// bits; the expanded form gives each 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataSource {
    pub kind: u32,
    pub index: u32,
}

impl DataSource {
    pub(crate) fn read(r: &mut Reader<'_>, expanded: bool) -> Result<Self> {
        if expanded {
            Ok(DataSource {
                kind: r.u32("source id type")?,
                index: r.u32("source id index")?,
            })
        } else {
            let word = r.u32("source id")?;
            Ok(DataSource {
                kind: word >> 24,
                index: word & 0x00ff_ffff,
            })
        }
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>, expanded: bool) -> Result<()> {
        if expanded {
            put_u32(out, self.kind);
            put_u32(out, self.index);
        } else {
            if self.kind > 0xff || self.index > 0x00ff_ffff {
                return Err(SflowError::Unencodable(
                    "data source does not fit the compact form (8-bit type, 24-bit index)",
                ));
            }
            put_u32(out, self.kind << 24 | self.index);
        }
        Ok(())
    }
}

/// An input or output `interface` of a flow sample: format 0 is an ifIndex (0 = unknown,
/// 0x3fffffff = internal), 1 a discarded packet (value = reason), 2 several interfaces (value =
/// their number). The compact form packs 2 bits of format and 30 of value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interface {
    pub format: u32,
    pub value: u32,
}

impl Interface {
    pub const fn if_index(value: u32) -> Self {
        Interface { format: 0, value }
    }

    pub(crate) fn read(r: &mut Reader<'_>, expanded: bool) -> Result<Self> {
        if expanded {
            Ok(Interface {
                format: r.u32("interface format")?,
                value: r.u32("interface value")?,
            })
        } else {
            let word = r.u32("interface")?;
            Ok(Interface {
                format: word >> 30,
                value: word & 0x3fff_ffff,
            })
        }
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>, expanded: bool) -> Result<()> {
        if expanded {
            put_u32(out, self.format);
            put_u32(out, self.value);
        } else {
            if self.format > 3 || self.value > 0x3fff_ffff {
                return Err(SflowError::Unencodable(
                    "interface does not fit the compact form (2-bit format, 30-bit value)",
                ));
            }
            put_u32(out, self.format << 30 | self.value);
        }
        Ok(())
    }
}

/// Flow record (0,3) `sampled_ipv4`: what an agent read from a packet's IPv4 and transport
/// headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SampledIpv4 {
    /// The IP packet's length.
    pub length: u32,
    pub protocol: u32,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u32,
    pub dst_port: u32,
    pub tcp_flags: u32,
    pub tos: u32,
}

impl SampledIpv4 {
    pub(crate) const LEN: usize = 32;

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        const W: &str = "sampled_ipv4";
        Ok(SampledIpv4 {
            length: r.u32(W)?,
            protocol: r.u32(W)?,
            src_ip: r.array::<4>(W)?.into(),
            dst_ip: r.array::<4>(W)?.into(),
            src_port: r.u32(W)?,
            dst_port: r.u32(W)?,
            tcp_flags: r.u32(W)?,
            tos: r.u32(W)?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        put_u32(out, self.length);
        put_u32(out, self.protocol);
        out.extend_from_slice(&self.src_ip.octets());
        out.extend_from_slice(&self.dst_ip.octets());
        put_u32(out, self.src_port);
        put_u32(out, self.dst_port);
        put_u32(out, self.tcp_flags);
        put_u32(out, self.tos);
    }
}

/// Flow record (0,1001) `extended_switch`: 802.1Q VLAN ids and priorities in and out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtendedSwitch {
    pub src_vlan: u32,
    pub src_priority: u32,
    pub dst_vlan: u32,
    pub dst_priority: u32,
}

impl ExtendedSwitch {
    pub(crate) const LEN: usize = 16;

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        const W: &str = "extended_switch";
        Ok(ExtendedSwitch {
            src_vlan: r.u32(W)?,
            src_priority: r.u32(W)?,
            dst_vlan: r.u32(W)?,
            dst_priority: r.u32(W)?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        for v in [
            self.src_vlan,
            self.src_priority,
            self.dst_vlan,
            self.dst_priority,
        ] {
            put_u32(out, v);
        }
    }
}

/// Counter record (0,1) `if_counters`: the generic interface counters of RFC 2233.
/// Serializable with those names, as the controller's API shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct IfCounters {
    pub if_index: u32,
    pub if_type: u32,
    pub if_speed: u64,
    /// 0 unknown, 1 full-duplex, 2 half-duplex, 3 in, 4 out.
    pub if_direction: u32,
    /// Bit 0 admin up, bit 1 operational up.
    pub if_status: u32,
    pub if_in_octets: u64,
    pub if_in_ucast_pkts: u32,
    pub if_in_multicast_pkts: u32,
    pub if_in_broadcast_pkts: u32,
    pub if_in_discards: u32,
    pub if_in_errors: u32,
    pub if_in_unknown_protos: u32,
    pub if_out_octets: u64,
    pub if_out_ucast_pkts: u32,
    pub if_out_multicast_pkts: u32,
    pub if_out_broadcast_pkts: u32,
    pub if_out_discards: u32,
    pub if_out_errors: u32,
    pub if_promiscuous_mode: u32,
}

impl IfCounters {
    pub(crate) const LEN: usize = 88;

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        const W: &str = "if_counters";
        Ok(IfCounters {
            if_index: r.u32(W)?,
            if_type: r.u32(W)?,
            if_speed: r.u64(W)?,
            if_direction: r.u32(W)?,
            if_status: r.u32(W)?,
            if_in_octets: r.u64(W)?,
            if_in_ucast_pkts: r.u32(W)?,
            if_in_multicast_pkts: r.u32(W)?,
            if_in_broadcast_pkts: r.u32(W)?,
            if_in_discards: r.u32(W)?,
            if_in_errors: r.u32(W)?,
            if_in_unknown_protos: r.u32(W)?,
            if_out_octets: r.u64(W)?,
            if_out_ucast_pkts: r.u32(W)?,
            if_out_multicast_pkts: r.u32(W)?,
            if_out_broadcast_pkts: r.u32(W)?,
            if_out_discards: r.u32(W)?,
            if_out_errors: r.u32(W)?,
            if_promiscuous_mode: r.u32(W)?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        put_u32(out, self.if_index);
        put_u32(out, self.if_type);
        put_u64(out, self.if_speed);
        put_u32(out, self.if_direction);
        put_u32(out, self.if_status);
        put_u64(out, self.if_in_octets);
        for v in [
            self.if_in_ucast_pkts,
            self.if_in_multicast_pkts,
            self.if_in_broadcast_pkts,
            self.if_in_discards,
            self.if_in_errors,
            self.if_in_unknown_protos,
        ] {
            put_u32(out, v);
        }
        put_u64(out, self.if_out_octets);
        for v in [
            self.if_out_ucast_pkts,
            self.if_out_multicast_pkts,
            self.if_out_broadcast_pkts,
            self.if_out_discards,
            self.if_out_errors,
            self.if_promiscuous_mode,
        ] {
            put_u32(out, v);
        }
    }
}
