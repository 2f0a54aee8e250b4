//! Owned sFlow v5 structures that emit datagrams (for the emulated hosts' agents and for tests)
//! and that a decoded datagram converts into (allocating; the collector's hot path uses the views
//! in `decode` instead).

use super::decode::{CounterRecord, Datagram, FlowRecord, Sample};
use super::types::{
    Address, DataFormat, DataSource, ExtendedSwitch, IfCounters, Interface, SampledIpv4,
};
use super::xdr::{count, put_opaque, put_opaque_with, put_u32};
use super::{Result, SflowError};

/// A whole datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatagramRepr {
    pub agent: Address,
    pub sub_agent_id: u32,
    pub sequence_number: u32,
    pub uptime_ms: u32,
    pub samples: Vec<SampleRepr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleRepr {
    Flow(FlowSampleRepr),
    Counters(CountersSampleRepr),
    /// A sample of a format this module does not decode; emitted as given.
    Unknown {
        format: DataFormat,
        data: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSampleRepr {
    /// Emit format (0,3) rather than (0,1).
    pub expanded: bool,
    pub sequence_number: u32,
    pub source: DataSource,
    pub sampling_rate: u32,
    pub sample_pool: u32,
    pub drops: u32,
    pub input: Interface,
    pub output: Interface,
    pub records: Vec<FlowRecordRepr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowRecordRepr {
    SampledHeader(SampledHeaderRepr),
    SampledIpv4(SampledIpv4),
    ExtendedSwitch(ExtendedSwitch),
    /// A record of a format this module does not decode; emitted as given.
    Unknown {
        format: DataFormat,
        data: Vec<u8>,
    },
}

/// Flow record (0,1), owning its header bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampledHeaderRepr {
    pub protocol: u32,
    pub frame_length: u32,
    pub stripped: u32,
    pub header: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountersSampleRepr {
    /// Emit format (0,4) rather than (0,2).
    pub expanded: bool,
    pub sequence_number: u32,
    pub source: DataSource,
    pub records: Vec<CounterRecordRepr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterRecordRepr {
    Interface(IfCounters),
    /// A record of a format this module does not decode; emitted as given.
    Unknown {
        format: DataFormat,
        data: Vec<u8>,
    },
}

impl DatagramRepr {
    /// Decodes a whole datagram into owned structures.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let datagram = Datagram::parse(bytes)?;
        let samples = datagram
            .samples()
            .map(|s| s.and_then(SampleRepr::from_view))
            .collect::<Result<Vec<_>>>()?;
        Ok(DatagramRepr {
            agent: datagram.agent,
            sub_agent_id: datagram.sub_agent_id,
            sequence_number: datagram.sequence_number,
            uptime_ms: datagram.uptime_ms,
            samples,
        })
    }

    /// Appends the encoded datagram to `out`. On error `out` may hold a partial datagram.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        put_u32(out, 5);
        self.agent.write(out);
        put_u32(out, self.sub_agent_id);
        put_u32(out, self.sequence_number);
        put_u32(out, self.uptime_ms);
        put_u32(out, count(self.samples.len(), "too many samples")?);
        self.samples.iter().try_for_each(|s| s.emit(out))
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.emit(&mut out)?;
        Ok(out)
    }
}

impl SampleRepr {
    fn from_view(sample: Sample<'_>) -> Result<Self> {
        Ok(match sample {
            Sample::Flow(f) => SampleRepr::Flow(FlowSampleRepr {
                expanded: f.expanded,
                sequence_number: f.sequence_number,
                source: f.source,
                sampling_rate: f.sampling_rate,
                sample_pool: f.sample_pool,
                drops: f.drops,
                input: f.input,
                output: f.output,
                records: f
                    .records()
                    .map(|r| r.map(FlowRecordRepr::from_view))
                    .collect::<Result<_>>()?,
            }),
            Sample::Counters(c) => SampleRepr::Counters(CountersSampleRepr {
                expanded: c.expanded,
                sequence_number: c.sequence_number,
                source: c.source,
                records: c
                    .records()
                    .map(|r| r.map(CounterRecordRepr::from_view))
                    .collect::<Result<_>>()?,
            }),
            Sample::Unknown { format, data } => SampleRepr::Unknown {
                format,
                data: data.to_vec(),
            },
        })
    }

    fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        const W: &str = "sample longer than 4 GiB";
        match self {
            SampleRepr::Flow(f) => {
                let format = if f.expanded {
                    DataFormat::FLOW_SAMPLE_EXPANDED
                } else {
                    DataFormat::FLOW_SAMPLE
                };
                put_u32(out, format.raw());
                put_opaque_with(out, W, |o| f.emit_body(o))
            }
            SampleRepr::Counters(c) => {
                let format = if c.expanded {
                    DataFormat::COUNTERS_SAMPLE_EXPANDED
                } else {
                    DataFormat::COUNTERS_SAMPLE
                };
                put_u32(out, format.raw());
                put_opaque_with(out, W, |o| c.emit_body(o))
            }
            SampleRepr::Unknown { format, data } => {
                if matches!(
                    *format,
                    DataFormat::FLOW_SAMPLE
                        | DataFormat::FLOW_SAMPLE_EXPANDED
                        | DataFormat::COUNTERS_SAMPLE
                        | DataFormat::COUNTERS_SAMPLE_EXPANDED
                ) {
                    return Err(SflowError::Unencodable(
                        "an Unknown sample has a format this module decodes",
                    ));
                }
                put_u32(out, format.raw());
                put_opaque(out, W, data)
            }
        }
    }
}

impl FlowSampleRepr {
    fn emit_body(&self, out: &mut Vec<u8>) -> Result<()> {
        put_u32(out, self.sequence_number);
        self.source.write(out, self.expanded)?;
        put_u32(out, self.sampling_rate);
        put_u32(out, self.sample_pool);
        put_u32(out, self.drops);
        self.input.write(out, self.expanded)?;
        self.output.write(out, self.expanded)?;
        put_u32(out, count(self.records.len(), "too many flow records")?);
        self.records.iter().try_for_each(|r| r.emit(out))
    }
}

impl FlowRecordRepr {
    fn from_view(record: FlowRecord<'_>) -> Self {
        match record {
            FlowRecord::SampledHeader(h) => FlowRecordRepr::SampledHeader(SampledHeaderRepr {
                protocol: h.protocol,
                frame_length: h.frame_length,
                stripped: h.stripped,
                header: h.header.to_vec(),
            }),
            FlowRecord::SampledIpv4(v) => FlowRecordRepr::SampledIpv4(v),
            FlowRecord::ExtendedSwitch(s) => FlowRecordRepr::ExtendedSwitch(s),
            FlowRecord::Unknown { format, data } => FlowRecordRepr::Unknown {
                format,
                data: data.to_vec(),
            },
        }
    }

    fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        const W: &str = "flow record longer than 4 GiB";
        match self {
            FlowRecordRepr::SampledHeader(h) => {
                put_u32(out, DataFormat::SAMPLED_HEADER.raw());
                put_opaque_with(out, W, |o| {
                    put_u32(o, h.protocol);
                    put_u32(o, h.frame_length);
                    put_u32(o, h.stripped);
                    put_opaque(o, W, &h.header)
                })
            }
            FlowRecordRepr::SampledIpv4(v) => {
                put_u32(out, DataFormat::SAMPLED_IPV4.raw());
                put_opaque_with(out, W, |o| {
                    v.write(o);
                    Ok(())
                })
            }
            FlowRecordRepr::ExtendedSwitch(s) => {
                put_u32(out, DataFormat::EXTENDED_SWITCH.raw());
                put_opaque_with(out, W, |o| {
                    s.write(o);
                    Ok(())
                })
            }
            FlowRecordRepr::Unknown { format, data } => {
                if matches!(
                    *format,
                    DataFormat::SAMPLED_HEADER
                        | DataFormat::SAMPLED_IPV4
                        | DataFormat::EXTENDED_SWITCH
                ) {
                    return Err(SflowError::Unencodable(
                        "an Unknown flow record has a format this module decodes",
                    ));
                }
                put_u32(out, format.raw());
                put_opaque(out, W, data)
            }
        }
    }
}

impl CountersSampleRepr {
    fn emit_body(&self, out: &mut Vec<u8>) -> Result<()> {
        put_u32(out, self.sequence_number);
        self.source.write(out, self.expanded)?;
        put_u32(out, count(self.records.len(), "too many counter records")?);
        self.records.iter().try_for_each(|r| r.emit(out))
    }
}

impl CounterRecordRepr {
    fn from_view(record: CounterRecord<'_>) -> Self {
        match record {
            CounterRecord::Interface(c) => CounterRecordRepr::Interface(c),
            CounterRecord::Unknown { format, data } => CounterRecordRepr::Unknown {
                format,
                data: data.to_vec(),
            },
        }
    }

    fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        const W: &str = "counter record longer than 4 GiB";
        match self {
            CounterRecordRepr::Interface(c) => {
                put_u32(out, DataFormat::IF_COUNTERS.raw());
                put_opaque_with(out, W, |o| {
                    c.write(o);
                    Ok(())
                })
            }
            CounterRecordRepr::Unknown { format, data } => {
                if *format == DataFormat::IF_COUNTERS {
                    return Err(SflowError::Unencodable(
                        "an Unknown counter record has a format this module decodes",
                    ));
                }
                put_u32(out, format.raw());
                put_opaque(out, W, data)
            }
        }
    }
}
