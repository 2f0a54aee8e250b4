//! Decode rate of sFlow v5 datagrams as an agent sends them: 8 flow samples each, each with a
//! 128-byte raw Ethernet/IPv4/TCP header and an extended switch record. Throughput is counted in
//! flow samples. Two levels: the sFlow walk alone, and the walk plus reading the addresses and
//! ports out of each sampled header (what the collector does per sample).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::net::Ipv4Addr;
use vmdep::sflow::{
    header_protocol, Address, DataSource, Datagram, DatagramRepr, ExtendedSwitch, FlowRecord,
    FlowRecordRepr, FlowSampleRepr, Interface, Sample, SampleRepr, SampledHeaderRepr,
};
use vmdep::wire::{EthernetAddress, FrameRepr, HeaderSummary, TcpFlags, TcpRepr, TransportRepr};

const SAMPLES_PER_DATAGRAM: u32 = 8;
const DATAGRAMS: u32 = 64;

fn datagrams() -> Vec<Vec<u8>> {
    (0..DATAGRAMS)
        .map(|d| {
            let samples = (0..SAMPLES_PER_DATAGRAM)
                .map(|s| {
                    let n = d * SAMPLES_PER_DATAGRAM + s;
                    let tcp = TcpRepr {
                        src_port: 30_000 + n as u16,
                        dst_port: 80,
                        seq_number: n,
                        ack_number: 0,
                        flags: TcpFlags::ACK,
                        window_len: 1024,
                        urgent_at: 0,
                    };
                    let payload = [0x5a; 1000];
                    let frame = FrameRepr::new(
                        EthernetAddress([2, 0, 0, 0, 0, 1]),
                        EthernetAddress([2, 0, 0, 0, 0, 2]),
                        None,
                        Ipv4Addr::new(10, 0, (n >> 8) as u8, n as u8),
                        Ipv4Addr::new(10, 1, 0, 1),
                        TransportRepr::Tcp(tcp),
                        &payload,
                    )
                    .unwrap()
                    .to_vec()
                    .unwrap();
                    SampleRepr::Flow(FlowSampleRepr {
                        expanded: false,
                        sequence_number: n,
                        source: DataSource { kind: 0, index: 3 },
                        sampling_rate: 1000,
                        sample_pool: n * 1000,
                        drops: 0,
                        input: Interface::if_index(3),
                        output: Interface::if_index(4),
                        records: vec![
                            FlowRecordRepr::SampledHeader(SampledHeaderRepr {
                                protocol: header_protocol::ETHERNET,
                                frame_length: frame.len() as u32 + 4,
                                stripped: 4,
                                header: frame[..128].to_vec(),
                            }),
                            FlowRecordRepr::ExtendedSwitch(ExtendedSwitch {
                                src_vlan: 1,
                                src_priority: 0,
                                dst_vlan: 1,
                                dst_priority: 0,
                            }),
                        ],
                    })
                })
                .collect();
            DatagramRepr {
                agent: Address::Ipv4(Ipv4Addr::new(192, 0, 2, 1)),
                sub_agent_id: 0,
                sequence_number: d,
                uptime_ms: d * 10,
                samples,
            }
            .to_bytes()
            .unwrap()
        })
        .collect()
}

/// Walks every sample and record; returns a value depending on all of them.
fn walk(datagrams: &[Vec<u8>], read_headers: bool) -> u64 {
    let mut acc = 0u64;
    for bytes in datagrams {
        let datagram = Datagram::parse(bytes).unwrap();
        for sample in datagram.samples() {
            let Sample::Flow(flow) = sample.unwrap() else {
                unreachable!("the bench datagrams hold flow samples only")
            };
            acc += u64::from(flow.sampling_rate);
            for record in flow.records() {
                match record.unwrap() {
                    FlowRecord::SampledHeader(h) if read_headers => {
                        let s = HeaderSummary::parse(h.header).unwrap();
                        let ip = s.ipv4.unwrap();
                        let t = s.transport.unwrap();
                        acc += u64::from(u32::from(ip.src_addr) ^ u32::from(ip.dst_addr));
                        acc += u64::from(t.src_port) + u64::from(t.dst_port);
                    }
                    FlowRecord::SampledHeader(h) => acc += h.header.len() as u64,
                    _ => acc += 1,
                }
            }
        }
    }
    acc
}

fn bench(c: &mut Criterion) {
    let data = datagrams();
    let mut group = c.benchmark_group("sflow_decode");
    group.throughput(Throughput::Elements(u64::from(
        DATAGRAMS * SAMPLES_PER_DATAGRAM,
    )));
    group.bench_function("flow_samples", |b| b.iter(|| walk(black_box(&data), false)));
    group.bench_function("flow_samples_with_header_summary", |b| {
        b.iter(|| walk(black_box(&data), true))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
