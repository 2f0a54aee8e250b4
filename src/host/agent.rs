//! The host's sFlow agent: it numbers the vswitch's flow samples, polls the ports' counters
//! every counter interval, and packs both into sFlow v5 datagrams to the collector, several
//! samples per datagram, flushed at least every [`FLUSH_INTERVAL`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use super::vswitch::FlowSampleEvent;
use super::Shared;
use crate::sflow::{
    header_protocol, Address, CounterRecordRepr, CountersSampleRepr, DataSource, DatagramRepr,
    FlowRecordRepr, FlowSampleRepr, IfCounters, SampleRepr, SampledHeaderRepr,
};

/// Longest wait of a sample before its datagram leaves.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Datagrams stay below a common MTU, as agents' datagrams do, so none is fragmented.
pub const MAX_DATAGRAM: usize = 1400;
/// Bytes of an Ethernet frame check sequence.
const ETHERNET_FCS: u32 = 4;

/// What the agent sent, for [`super::RunningHost::stats`].
#[derive(Debug, Default)]
pub(crate) struct AgentCounters {
    pub datagrams: AtomicU64,
    pub flow_samples: AtomicU64,
    pub counter_samples: AtomicU64,
    /// Datagrams the socket refused, or samples that could not be encoded.
    pub errors: AtomicU64,
}

/// Encoded sizes, to fill datagrams without encoding twice: the datagram header with an IPv4
/// or IPv6 agent, a compact flow sample with one raw header record, a compact counters sample
/// with one generic interface counters record.
fn header_len(agent: &Address) -> usize {
    match agent {
        Address::Unknown => 24,
        Address::Ipv4(_) => 28,
        Address::Ipv6(_) => 40,
    }
}

fn flow_sample_len(header: usize) -> usize {
    8 + 32 + 8 + 16 + header.div_ceil(4) * 4
}

const COUNTERS_SAMPLE_LEN: usize = 8 + 12 + 8 + 88;

pub(crate) struct Exporter {
    socket: UdpSocket,
    collector: SocketAddr,
    agent: Address,
    started: Instant,
    datagram_sequence: u32,
    /// Per port index, the last flow and counters sample sequence numbers.
    flow_sequence: Vec<u32>,
    counter_sequence: Vec<u32>,
    pending: Vec<SampleRepr>,
    pending_len: usize,
    shared: Arc<Shared>,
}

impl Exporter {
    pub fn new(
        socket: UdpSocket,
        collector: SocketAddr,
        agent: Address,
        ports: usize,
        shared: Arc<Shared>,
    ) -> Exporter {
        Exporter {
            socket,
            collector,
            agent,
            started: shared.started,
            datagram_sequence: 0,
            flow_sequence: vec![0; ports],
            counter_sequence: vec![0; ports],
            pending: Vec::new(),
            pending_len: 0,
            shared,
        }
    }

    /// Runs until `stop` turns true, then exports what is left and a last counter sample.
    pub async fn run(
        mut self,
        mut samples: mpsc::Receiver<FlowSampleEvent>,
        counter_interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut flush = tokio::time::interval(FLUSH_INTERVAL);
        flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval_at(
            tokio::time::Instant::now() + counter_interval,
            counter_interval,
        );
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The only change is to true; an error means the host was dropped: stop either way.
        while !*stop.borrow() {
            tokio::select! {
                event = samples.recv() => match event {
                    Some(event) => self.push_flow(event).await,
                    None => break,
                },
                _ = flush.tick() => self.flush().await,
                _ = poll.tick() => self.push_counters().await,
                _ = stop.changed() => break,
            }
        }
        // Samples taken before the vswitch stopped are still exported.
        while let Ok(event) = samples.try_recv() {
            self.push_flow(event).await;
        }
        self.push_counters().await;
        self.flush().await;
    }

    async fn push(&mut self, sample: SampleRepr, len: usize) {
        if !self.pending.is_empty()
            && header_len(&self.agent) + self.pending_len + len > MAX_DATAGRAM
        {
            self.flush().await;
        }
        self.pending.push(sample);
        self.pending_len += len;
    }

    async fn push_flow(&mut self, event: FlowSampleEvent) {
        let port = event.source_if_index as usize - 1;
        self.flow_sequence[port] = self.flow_sequence[port].wrapping_add(1);
        let len = flow_sample_len(event.header.len());
        let sample = SampleRepr::Flow(FlowSampleRepr {
            expanded: false,
            sequence_number: self.flow_sequence[port],
            source: DataSource {
                kind: 0,
                index: event.source_if_index,
            },
            sampling_rate: event.sampling_rate,
            sample_pool: event.sample_pool,
            drops: event.drops,
            input: event.input,
            output: event.output,
            records: vec![FlowRecordRepr::SampledHeader(SampledHeaderRepr {
                protocol: header_protocol::ETHERNET,
                // sFlow counts an Ethernet frame with its FCS (as Open vSwitch reports it); the
                // vswitch's frames carry none, so those 4 bytes are the ones "stripped".
                frame_length: event.frame_length + ETHERNET_FCS,
                stripped: ETHERNET_FCS,
                header: event.header,
            })],
        });
        self.push(sample, len).await;
        self.shared
            .agent_counters
            .flow_samples
            .fetch_add(1, Ordering::Relaxed);
    }

    async fn push_counters(&mut self) {
        let counters: Vec<IfCounters> = self.shared.vswitch().if_counters();
        for c in counters {
            let port = c.if_index as usize - 1;
            self.counter_sequence[port] = self.counter_sequence[port].wrapping_add(1);
            let sample = SampleRepr::Counters(CountersSampleRepr {
                expanded: false,
                sequence_number: self.counter_sequence[port],
                source: DataSource {
                    kind: 0,
                    index: c.if_index,
                },
                records: vec![CounterRecordRepr::Interface(c)],
            });
            self.push(sample, COUNTERS_SAMPLE_LEN).await;
            self.shared
                .agent_counters
                .counter_samples
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.datagram_sequence = self.datagram_sequence.wrapping_add(1);
        let datagram = DatagramRepr {
            agent: self.agent,
            sub_agent_id: 0,
            sequence_number: self.datagram_sequence,
            uptime_ms: self.started.elapsed().as_millis() as u32,
            samples: std::mem::take(&mut self.pending),
        };
        self.pending_len = 0;
        let counters = &self.shared.agent_counters;
        let bytes = match datagram.to_bytes() {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::error!(%err, "cannot encode an sFlow datagram");
                counters.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match self.socket.send_to(&bytes, self.collector).await {
            Ok(_) => {
                counters.datagrams.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => {
                tracing::debug!(collector = %self.collector, %err, "sFlow datagram not sent");
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sflow::Interface;
    use std::net::Ipv4Addr;

    /// The size formulas agree with the encoder, so datagrams stay under MAX_DATAGRAM.
    #[test]
    fn size_formulas_match_the_encoding() {
        for header in [0usize, 1, 54, 127, 128] {
            let sample = SampleRepr::Flow(FlowSampleRepr {
                expanded: false,
                sequence_number: 1,
                source: DataSource { kind: 0, index: 2 },
                sampling_rate: 64,
                sample_pool: 100,
                drops: 0,
                input: Interface::if_index(2),
                output: Interface::if_index(1),
                records: vec![FlowRecordRepr::SampledHeader(SampledHeaderRepr {
                    protocol: header_protocol::ETHERNET,
                    frame_length: 1000,
                    stripped: 0,
                    header: vec![7; header],
                })],
            });
            let counters = SampleRepr::Counters(CountersSampleRepr {
                expanded: false,
                sequence_number: 1,
                source: DataSource { kind: 0, index: 1 },
                records: vec![CounterRecordRepr::Interface(IfCounters::default())],
            });
            let agent = Address::Ipv4(Ipv4Addr::new(127, 0, 0, 120));
            let datagram = |samples| DatagramRepr {
                agent,
                sub_agent_id: 0,
                sequence_number: 1,
                uptime_ms: 0,
                samples,
            };
            assert_eq!(
                datagram(vec![]).to_bytes().unwrap().len(),
                header_len(&agent)
            );
            assert_eq!(
                datagram(vec![sample]).to_bytes().unwrap().len(),
                header_len(&agent) + flow_sample_len(header)
            );
            assert_eq!(
                datagram(vec![counters]).to_bytes().unwrap().len(),
                header_len(&agent) + COUNTERS_SAMPLE_LEN
            );
        }
    }
}
