//! Borrowed views over an sFlow v5 datagram. Nothing here allocates: the iterators walk the
//! datagram's bytes, each step checking the XDR lengths, and hand out fixed-size structures and
//! sub-slices (sample bytes, sampled packet headers) of the datagram.
//!
//! Every iterator yields `Err` at most once and then stops: after a framing error the positions
//! of later items are unknown. It also yields an error when bytes remain after the number of
//! items its count announced.

use super::types::{
    Address, DataFormat, DataSource, ExtendedSwitch, IfCounters, Interface, SampledIpv4,
};
use super::xdr::Reader;
use super::{Result, SflowError};

/// The smallest encoded item of any list: a data format and an opaque length.
const MIN_ITEM_LEN: usize = 8;

/// A datagram whose header has been read; its samples are read on iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub agent: Address,
    pub sub_agent_id: u32,
    /// Incremented with each datagram the sub-agent sends.
    pub sequence_number: u32,
    /// Milliseconds since the agent started.
    pub uptime_ms: u32,
    /// The number of samples the header announces.
    pub sample_count: u32,
    samples: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// Reads the header of a version 5 datagram.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let version = r.u32("datagram header")?;
        if version != 5 {
            return Err(SflowError::UnsupportedVersion(version));
        }
        let agent = Address::read(&mut r)?;
        let sub_agent_id = r.u32("datagram header")?;
        let sequence_number = r.u32("datagram header")?;
        let uptime_ms = r.u32("datagram header")?;
        let sample_count = r.u32("datagram header")?;
        check_count(sample_count, r.remaining(), "samples")?;
        Ok(Datagram {
            agent,
            sub_agent_id,
            sequence_number,
            uptime_ms,
            sample_count,
            samples: r.take_rest(),
        })
    }

    pub fn samples(&self) -> Samples<'a> {
        Samples(Framed::new(
            self.samples,
            self.sample_count,
            "sample",
            "bytes after the last sample",
        ))
    }
}

/// Refuses a count that could not fit in the bytes left, before any item is read.
fn check_count(count: u32, remaining: usize, what: &'static str) -> Result<()> {
    if (count as usize).saturating_mul(MIN_ITEM_LEN) > remaining {
        return Err(SflowError::Truncated(what));
    }
    Ok(())
}

/// The list walker the three iterators share: `count` items of (data format, opaque data).
#[derive(Debug, Clone)]
struct Framed<'a> {
    reader: Reader<'a>,
    left: u32,
    done: bool,
    what: &'static str,
    trailing: &'static str,
}

impl<'a> Framed<'a> {
    fn new(bytes: &'a [u8], count: u32, what: &'static str, trailing: &'static str) -> Self {
        Framed {
            reader: Reader::new(bytes),
            left: count,
            done: false,
            what,
            trailing,
        }
    }

    fn next_item(&mut self) -> Option<Result<(DataFormat, &'a [u8])>> {
        if self.done {
            return None;
        }
        if self.left == 0 {
            self.done = true;
            return (!self.reader.is_empty()).then_some(Err(SflowError::Malformed(self.trailing)));
        }
        self.left -= 1;
        let item = self
            .reader
            .u32(self.what)
            .and_then(|f| Ok((DataFormat::from_raw(f), self.reader.opaque(self.what)?)));
        self.done = item.is_err();
        Some(item)
    }

    /// Passes a decode result through, stopping the walk after an error.
    fn settle<T>(&mut self, r: Result<T>) -> Result<T> {
        self.done |= r.is_err();
        r
    }
}

/// One sample of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample<'a> {
    /// A flow sample (0,1) or expanded flow sample (0,3).
    Flow(FlowSample<'a>),
    /// A counters sample (0,2) or expanded counters sample (0,4).
    Counters(CountersSample<'a>),
    /// A sample of another format, with its bytes (padding excluded).
    Unknown { format: DataFormat, data: &'a [u8] },
}

/// The samples of a datagram, in order.
#[derive(Debug, Clone)]
pub struct Samples<'a>(Framed<'a>);

impl<'a> Iterator for Samples<'a> {
    type Item = Result<Sample<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (format, data) = match self.0.next_item()? {
            Ok(item) => item,
            Err(e) => return Some(Err(e)),
        };
        let sample = match format {
            DataFormat::FLOW_SAMPLE => FlowSample::parse(data, false).map(Sample::Flow),
            DataFormat::FLOW_SAMPLE_EXPANDED => FlowSample::parse(data, true).map(Sample::Flow),
            DataFormat::COUNTERS_SAMPLE => CountersSample::parse(data, false).map(Sample::Counters),
            DataFormat::COUNTERS_SAMPLE_EXPANDED => {
                CountersSample::parse(data, true).map(Sample::Counters)
            }
            _ => Ok(Sample::Unknown { format, data }),
        };
        Some(self.0.settle(sample))
    }
}

/// A flow sample: one sampled packet, described by its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSample<'a> {
    /// Format (0,3) rather than (0,1).
    pub expanded: bool,
    pub sequence_number: u32,
    pub source: DataSource,
    /// One packet in `sampling_rate` is sampled.
    pub sampling_rate: u32,
    /// Packets that could have been sampled (skipped plus sampled).
    pub sample_pool: u32,
    /// Samples lost for lack of resources.
    pub drops: u32,
    pub input: Interface,
    pub output: Interface,
    pub record_count: u32,
    records: &'a [u8],
}

impl<'a> FlowSample<'a> {
    fn parse(data: &'a [u8], expanded: bool) -> Result<Self> {
        const W: &str = "flow sample";
        let mut r = Reader::new(data);
        let sequence_number = r.u32(W)?;
        let source = DataSource::read(&mut r, expanded)?;
        let sampling_rate = r.u32(W)?;
        let sample_pool = r.u32(W)?;
        let drops = r.u32(W)?;
        let input = Interface::read(&mut r, expanded)?;
        let output = Interface::read(&mut r, expanded)?;
        let record_count = r.u32(W)?;
        check_count(record_count, r.remaining(), "flow records")?;
        Ok(FlowSample {
            expanded,
            sequence_number,
            source,
            sampling_rate,
            sample_pool,
            drops,
            input,
            output,
            record_count,
            records: r.take_rest(),
        })
    }

    pub fn records(&self) -> FlowRecords<'a> {
        FlowRecords(Framed::new(
            self.records,
            self.record_count,
            "flow record",
            "bytes after the last flow record",
        ))
    }
}

/// Flow record (0,1): the first bytes of the sampled packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampledHeader<'a> {
    /// See [`super::header_protocol`]; 1 is Ethernet.
    pub protocol: u32,
    /// The packet's length before sampling (for Ethernet, FCS included).
    pub frame_length: u32,
    /// Bytes removed before the header was taken (for Ethernet, at least the 4-byte FCS).
    pub stripped: u32,
    pub header: &'a [u8],
}

impl<'a> SampledHeader<'a> {
    fn parse(data: &'a [u8]) -> Result<Self> {
        const W: &str = "sampled_header";
        let mut r = Reader::new(data);
        let header = SampledHeader {
            protocol: r.u32(W)?,
            frame_length: r.u32(W)?,
            stripped: r.u32(W)?,
            header: r.opaque(W)?,
        };
        if !r.is_empty() {
            return Err(SflowError::Malformed(
                "sampled_header longer than its header bytes",
            ));
        }
        Ok(header)
    }
}

/// One record of a flow sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowRecord<'a> {
    SampledHeader(SampledHeader<'a>),
    SampledIpv4(SampledIpv4),
    ExtendedSwitch(ExtendedSwitch),
    /// A record of another format, with its bytes (padding excluded).
    Unknown {
        format: DataFormat,
        data: &'a [u8],
    },
}

/// Reads a fixed-size record whose length must be exactly `len`.
fn fixed<T>(
    data: &[u8],
    len: usize,
    wrong_len: &'static str,
    read: impl FnOnce(&mut Reader<'_>) -> Result<T>,
) -> Result<T> {
    if data.len() != len {
        return Err(SflowError::Malformed(wrong_len));
    }
    read(&mut Reader::new(data))
}

/// The records of a flow sample, in order.
#[derive(Debug, Clone)]
pub struct FlowRecords<'a>(Framed<'a>);

impl<'a> Iterator for FlowRecords<'a> {
    type Item = Result<FlowRecord<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (format, data) = match self.0.next_item()? {
            Ok(item) => item,
            Err(e) => return Some(Err(e)),
        };
        let record = match format {
            DataFormat::SAMPLED_HEADER => SampledHeader::parse(data).map(FlowRecord::SampledHeader),
            DataFormat::SAMPLED_IPV4 => fixed(
                data,
                SampledIpv4::LEN,
                "sampled_ipv4 length is not 32",
                SampledIpv4::read,
            )
            .map(FlowRecord::SampledIpv4),
            DataFormat::EXTENDED_SWITCH => fixed(
                data,
                ExtendedSwitch::LEN,
                "extended_switch length is not 16",
                ExtendedSwitch::read,
            )
            .map(FlowRecord::ExtendedSwitch),
            _ => Ok(FlowRecord::Unknown { format, data }),
        };
        Some(self.0.settle(record))
    }
}

/// A counters sample: the counters of one data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountersSample<'a> {
    /// Format (0,4) rather than (0,2).
    pub expanded: bool,
    pub sequence_number: u32,
    pub source: DataSource,
    pub record_count: u32,
    records: &'a [u8],
}

impl<'a> CountersSample<'a> {
    fn parse(data: &'a [u8], expanded: bool) -> Result<Self> {
        let mut r = Reader::new(data);
        let sequence_number = r.u32("counters sample")?;
        let source = DataSource::read(&mut r, expanded)?;
        let record_count = r.u32("counters sample")?;
        check_count(record_count, r.remaining(), "counter records")?;
        Ok(CountersSample {
            expanded,
            sequence_number,
            source,
            record_count,
            records: r.take_rest(),
        })
    }

    pub fn records(&self) -> CounterRecords<'a> {
        CounterRecords(Framed::new(
            self.records,
            self.record_count,
            "counter record",
            "bytes after the last counter record",
        ))
    }
}

/// One record of a counters sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterRecord<'a> {
    Interface(IfCounters),
    /// A record of another format, with its bytes (padding excluded).
    Unknown {
        format: DataFormat,
        data: &'a [u8],
    },
}

/// The records of a counters sample, in order.
#[derive(Debug, Clone)]
pub struct CounterRecords<'a>(Framed<'a>);

impl<'a> Iterator for CounterRecords<'a> {
    type Item = Result<CounterRecord<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (format, data) = match self.0.next_item()? {
            Ok(item) => item,
            Err(e) => return Some(Err(e)),
        };
        let record = match format {
            DataFormat::IF_COUNTERS => fixed(
                data,
                IfCounters::LEN,
                "if_counters length is not 88",
                IfCounters::read,
            )
            .map(CounterRecord::Interface),
            _ => Ok(CounterRecord::Unknown { format, data }),
        };
        Some(self.0.settle(record))
    }
}
