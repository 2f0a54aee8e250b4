//! sFlow version 5 (sflow.org, sflow_version_5.txt): a decoder of borrowed, non-allocating views
//! over datagrams ([`Datagram`]) and owned `*Repr` types that emit datagrams ([`DatagramRepr`]).
//!
//! Decoded: the datagram header (IPv4/IPv6 agent address), flow samples and expanded flow samples
//! with raw packet header, sampled IPv4 and extended switch records, counter samples and expanded
//! counter samples with generic interface counters. Other samples and records are handed back as
//! `Unknown` with their format and bytes, skipped by their length. Every XDR length is checked
//! (including the padding to 4 bytes), and malformed bytes give a [`SflowError`], never a panic.
//!
//! A leaf module: it imports nothing else of vmdep (the packet bytes in a sampled header are the
//! `wire` module's business, and counting decode errors is the collector's).

mod decode;
mod repr;
mod types;
mod xdr;

pub use decode::{
    CounterRecord, CounterRecords, CountersSample, Datagram, FlowRecord, FlowRecords, FlowSample,
    Sample, SampledHeader, Samples,
};
pub use repr::{
    CounterRecordRepr, CountersSampleRepr, DatagramRepr, FlowRecordRepr, FlowSampleRepr,
    SampleRepr, SampledHeaderRepr,
};
pub use types::{
    header_protocol, Address, DataFormat, DataSource, ExtendedSwitch, IfCounters, Interface,
    SampledIpv4,
};

/// The UDP port collectors listen on by default.
pub const DEFAULT_PORT: u16 = 6343;

/// Why bytes could not be decoded as sFlow v5 (or a Repr could not be encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SflowError {
    /// The bytes end inside the named structure.
    #[error("sFlow datagram truncated in {0}")]
    Truncated(&'static str),
    /// A datagram of another sFlow version.
    #[error("sFlow datagram version {0} is not 5")]
    UnsupportedVersion(u32),
    /// A field or length the format forbids; the text names it.
    #[error("malformed sFlow datagram: {0}")]
    Malformed(&'static str),
    /// A Repr holds a value its encoding cannot carry; the text names it.
    #[error("cannot encode sFlow: {0}")]
    Unencodable(&'static str),
}

pub type Result<T> = core::result::Result<T, SflowError>;

#[cfg(test)]
mod tests;
