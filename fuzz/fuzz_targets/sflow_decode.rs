//! Fuzzes the sFlow v5 decoder with arbitrary datagrams: walking every sample and record must
//! return, never panic; sampled Ethernet headers go through the `wire` parsers too; and whatever
//! decodes re-encodes to a datagram that decodes to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmdep::sflow::{header_protocol, Datagram, DatagramRepr, FlowRecord, Sample};
use vmdep::wire::{FrameRepr, HeaderSummary};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(datagram) = Datagram::parse(bytes) {
        for sample in datagram.samples() {
            match sample {
                Ok(Sample::Flow(flow)) => {
                    for record in flow.records() {
                        if let Ok(FlowRecord::SampledHeader(h)) = record {
                            if h.protocol == header_protocol::ETHERNET {
                                let _ = HeaderSummary::parse(h.header);
                                let _ = FrameRepr::parse(h.header);
                            }
                        }
                    }
                }
                Ok(Sample::Counters(counters)) => counters.records().for_each(drop),
                Ok(Sample::Unknown { .. }) | Err(_) => {}
            }
        }
    }
    if let Ok(repr) = DatagramRepr::parse(bytes) {
        let again = repr.to_bytes().expect("a decoded datagram must re-encode");
        assert_eq!(DatagramRepr::parse(&again).as_ref(), Ok(&repr));
    }
});
