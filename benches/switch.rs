//! Frames per second through `vmdep switch`'s data plane, in process: ref1 (parse Ethernet+IPv4,
//! verify and update the checksum, one lpm lookup, TTL decrement, deparse).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vmdep::switch::{ActionCall, MatchValue, Outputs, Switch, TableEntry};

fn ref1_routing(c: &mut Criterion) {
    let json = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/p4c-reference/p4c-out/ref1_lpm_checksum.json"
    ))
    .unwrap();
    let mut sw = Switch::from_json_str(&json).unwrap();
    let t = sw.program().table_by_name("Ing.routes").unwrap();
    let route = sw.program().table_action_by_name(t, "Ing.route").unwrap();
    for (port, (value, prefix_len)) in [
        (0x0a00_0000u128, 8u32),
        (0x0a01_0000, 16),
        (0x0a01_0203, 32),
    ]
    .into_iter()
    .enumerate()
    {
        sw.insert_entry(
            t,
            TableEntry {
                key: vec![MatchValue::Lpm { value, prefix_len }],
                priority: 0,
                action: ActionCall {
                    action: route,
                    args: vec![port as u128 + 1, 0xa1],
                },
                idle_timeout_ns: None,
            },
        )
        .unwrap();
    }
    let frame =
        hex("00000000000100000000000208004500001c1234000040119392c00002010a010909abababababababab");
    let mut out = Outputs::new();
    let mut g = c.benchmark_group("switch");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ref1_route_one_frame", |b| {
        b.iter(|| {
            out.clear();
            sw.process(0, &frame, &mut out);
            assert_eq!(out.len(), 1);
        })
    });
    g.finish();
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

criterion_group!(benches, ref1_routing);
criterion_main!(benches);
