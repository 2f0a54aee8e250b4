//! Fuzzes the sFlow collector's classification with arbitrary datagrams against the reference
//! topology: it must return, never panic, and a datagram it reads must account for each flow
//! sample once, as a pair sample or as one flow-level skip.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vmdep::controller::collector::{classify_datagram, SkipReason};
use vmdep::controller::topology::Topology;

static TOPOLOGY: OnceLock<Topology> = OnceLock::new();

fuzz_target!(|bytes: &[u8]| {
    let topology = TOPOLOGY.get_or_init(|| {
        Topology::from_toml(include_str!("../../topologies/reference.toml"))
            .expect("the reference topology loads")
    });
    let source = SocketAddr::from(([127, 0, 0, 120], 6343));
    if let Ok(summary) = classify_datagram(bytes, source, topology) {
        let flow_skips: u64 = summary
            .skipped
            .iter()
            .filter(|(reason, _)| {
                !matches!(
                    reason,
                    SkipReason::UnknownFlowRecord
                        | SkipReason::UnknownCounterRecord
                        | SkipReason::UnknownSampleFormat
                )
            })
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            summary.pair_samples.len() as u64 + flow_skips,
            summary.flow_samples
        );
    }
});
