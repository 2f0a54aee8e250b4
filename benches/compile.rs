//! Compile time of p4/vmdep.p4, the whole pipeline: parse, check, bmv2 JSON, P4Info.
//! The goal (issue 2) is under 20 ms; the README records the measured figure.

use criterion::{criterion_group, criterion_main, Criterion};

fn compile_vmdep(c: &mut Criterion) {
    let source = include_str!("../p4/vmdep.p4");
    c.bench_function("compile vmdep.p4", |b| {
        b.iter(|| {
            let out = vmdep::compiler::compile(std::hint::black_box(source), "vmdep.p4")
                .expect("vmdep.p4 compiles");
            std::hint::black_box(out.p4info_binary());
            out
        })
    });
}

criterion_group!(benches, compile_vmdep);
criterion_main!(benches);
