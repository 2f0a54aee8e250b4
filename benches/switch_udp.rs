//! Frames per second through a whole `vmdep switch` over UDP wires on loopback: p4/vmdep.p4 as
//! vmdep's compiler builds it (VM_PAIR_SIZE = 16,384 holds the pairs), 1,000 routes in
//! `ipv4_lpm` over two egress ports, 10,000 pairs in `vm_pair` (with idle timeouts), and a mix
//! of frames of measured pairs (9 in 10) and of other pairs, all routed.
//!
//! The switch runs on one thread (a current-thread tokio runtime: ports, P4Runtime server and
//! data plane together); a generator thread sends into port 0 as fast as the switch takes
//! frames (at most 8,192 in flight), and one sink thread per egress port reads what comes out;
//! generator and sinks batch like the switch does (GSO/GRO). Over a fixed window it reports what
//! was offered, what the switch processed, what reached the sinks, the switch's own drop counts
//! and its thread's CPU time. A throughput over a time window is not criterion's model, hence a
//! plain `main` (`cargo bench --bench switch_udp`; VMDEP_BENCH_SECS sets the window, 3 s).
//!
//! A second run, `wire_only`, sends the same frames through a pipeline that only sets the egress
//! port: the ceiling of the ports themselves, whatever the data plane costs. Both run twice:
//! with frames all of one size (runs the ports move as one GSO/GRO message) and with sizes
//! rising frame by frame (every frame its own datagram and syscall message: a GSO run may only
//! end in a shorter frame, never go on with a longer one; the worst case for the ports).
//!
//! Like criterion, a non-flag argument keeps only the runs whose name contains it
//! (`cargo bench --bench switch_udp -- wire_only`), e.g. to profile one of them.

use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmdep::switch::ports::mmsg::{self, RecvBatch};
use vmdep::switch::ports::{PortBackend, PortSpec};
use vmdep::switch::runner::{self, SwitchOptions};
use vmdep::switch::{ActionCall, MatchValue, Outputs, Switch, TableEntry};

// Shared with tests/switch_golden.rs; a benchmark uses part of it.
#[allow(dead_code)]
#[path = "../tests/support/xorshift.rs"]
mod xorshift;

use xorshift::Rng;

/// Frames the generator lets be on their way through the switch at once (well within the
/// sockets' buffers).
const IN_FLIGHT: u64 = 8192;

/// How long the generator waits for the window to open before sending anyway.
const STALL: Duration = Duration::from_millis(5);

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet + IPv4 (correct header checksum) + UDP with `payload` bytes (22: 64 bytes on the
/// wire).
fn udp_frame(src: u32, dst: u32, payload: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(20u16 + 8 + payload).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src.to_be_bytes());
    f.extend_from_slice(&dst.to_be_bytes());
    let sum = checksum(&f[14..34]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&[0x9c, 0x40, 0x13, 0x89]);
    f.extend_from_slice(&(8 + payload).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum, as IPv4 allows
    f.extend(std::iter::repeat_n(0xab, usize::from(payload)));
    f
}

struct Workload {
    routes: Vec<(u32, u32)>,
    pairs: Vec<(u32, u32)>,
    frames: Vec<Vec<u8>>,
}

/// 1,000 distinct routes in 10/8 (prefixes /12 to /24) plus 10/8 itself, 10,000 pairs whose
/// addresses lie in 10/8, and 1,024 frames: all of 64 bytes, or if `rising`, of 64 to 79 bytes
/// in rising turns (no GSO/GRO runs but where 79 falls back to 64, as with a peer that sends
/// datagram by datagram).
fn workload(rising: bool) -> Workload {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut seen = std::collections::HashSet::new();
    let mut routes = vec![(0x0a00_0000, 8)];
    seen.insert(routes[0]);
    while routes.len() < 1000 {
        let len = 12 + rng.below(13) as u32;
        let prefix = (0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff)) & (u32::MAX << (32 - len));
        if seen.insert((prefix, len)) {
            routes.push((prefix, len));
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut pairs = Vec::new();
    while pairs.len() < 10_000 {
        let src = 0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff);
        let dst = 0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff);
        if seen.insert((src, dst)) {
            pairs.push((src, dst));
        }
    }
    let frames = (0..1024)
        .map(|i| {
            let payload = if rising { 22 + (i % 16) as u16 } else { 22 };
            if rng.below(10) == 0 {
                udp_frame(0x0a00_0000 | i, 0x0aff_0000 | i, payload)
            } else {
                let (src, dst) = pairs[rng.below(pairs.len() as u64) as usize];
                udp_frame(src, dst, payload)
            }
        })
        .collect();
    Workload {
        routes,
        pairs,
        frames,
    }
}

fn vmdep_json() -> String {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/p4/vmdep.p4"))
        .expect("read p4/vmdep.p4");
    vmdep::compiler::compile(&source, "vmdep.p4")
        .unwrap_or_else(|d| panic!("vmdep.p4 does not compile: {d}"))
        .bmv2_json
}

/// CPU time so far of the thread at /proc/`task` (its first schedstat field, in ns).
fn thread_cpu_ns(task: &std::path::Path) -> u64 {
    let path = std::path::Path::new("/proc").join(task).join("schedstat");
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {}", path.display()))
}

fn bound_socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback socket");
    mmsg::set_buffer_sizes(socket.as_fd(), 4 << 20).expect("socket buffers");
    socket
}

/// Port 0 to port 1, nothing else: the ports' own cost.
const WIRE_ONLY_P4: &str = r#"
#include <core.p4>
#include <v1model.p4>
struct headers_t { }
struct metadata_t { }
parser P(packet_in packet, out headers_t hdr, inout metadata_t meta,
         inout standard_metadata_t sm) {
    state start { transition accept; }
}
control NoChecksum(inout headers_t hdr, inout metadata_t meta) { apply { } }
control Forward(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t sm) {
    apply { sm.egress_spec = 1; }
}
control NoEgress(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t sm) {
    apply { }
}
control D(packet_out packet, in headers_t hdr) { apply { } }
V1Switch(P(), NoChecksum(), Forward(), NoEgress(), NoChecksum(), D()) main;
"#;

fn main() {
    let window = Duration::from_secs_f64(
        std::env::var("VMDEP_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
    );
    let json = vmdep_json();
    let wire_only = vmdep::compiler::compile(WIRE_ONLY_P4, "wire_only.p4")
        .unwrap_or_else(|d| panic!("wire_only.p4 does not compile: {d}"))
        .bmv2_json;
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    for (sizes, rising) in [("64-byte frames", false), ("64-79-byte frames", true)] {
        let work = workload(rising);
        let name = format!("vmdep_1000_routes_10000_pairs, {sizes}");
        if wanted(&name) {
            let install = |sw: &mut Switch| install(sw, &work);
            run(&name, &json, 2, install, &work.frames, window);
        }
        let name = format!("wire_only, {sizes}");
        if wanted(&name) {
            run(&name, &wire_only, 1, |_| {}, &work.frames, window);
        }
    }
}

/// 1,000 routes over ports 1 and 2, 10,000 counted pairs with idle timeouts.
fn install(sw: &mut Switch, work: &Workload) {
    let p = sw.program();
    let lpm = p.table_by_name("MyIngress.ipv4_lpm").unwrap();
    let next_hop = p
        .table_action_by_name(lpm, "MyIngress.set_next_hop")
        .unwrap();
    let vm_pair = p.table_by_name("MyIngress.vm_pair").unwrap();
    let count = p
        .table_action_by_name(vm_pair, "MyIngress.count_pair")
        .unwrap();
    for (i, &(prefix, len)) in work.routes.iter().enumerate() {
        let port = 1 + i as u128 % 2;
        sw.insert_entry(
            lpm,
            TableEntry {
                key: vec![MatchValue::Lpm {
                    value: u128::from(prefix),
                    prefix_len: len,
                }],
                priority: 0,
                action: ActionCall {
                    action: next_hop,
                    args: vec![0x0200_0000_0001, 0x0200_0001_0000 + i as u128, port],
                },
                idle_timeout_ns: None,
            },
        )
        .unwrap();
    }
    for &(src, dst) in &work.pairs {
        sw.insert_entry(
            vm_pair,
            TableEntry {
                key: vec![
                    MatchValue::Exact(u128::from(src)),
                    MatchValue::Exact(u128::from(dst)),
                ],
                priority: 0,
                action: ActionCall {
                    action: count,
                    args: vec![],
                },
                idle_timeout_ns: Some(60_000_000_000),
            },
        )
        .unwrap();
    }
}

/// One measurement: a switch running `json` with ports 0 (in) to `egress_ports` (out).
fn run(
    name: &str,
    json: &str,
    egress_ports: u32,
    setup: impl FnOnce(&mut Switch),
    frames: &[Vec<u8>],
    window: Duration,
) {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("pipeline.json");
    std::fs::write(&json_path, json).unwrap();

    let generator = bound_socket();
    let sinks: Vec<UdpSocket> = (0..egress_ports).map(|_| bound_socket()).collect();
    let mut options = SwitchOptions::new(0, "127.0.0.1:0".parse().unwrap());
    options.json = Some(json_path);
    let wire = |port: u32, peer: &UdpSocket| PortSpec {
        port,
        backend: PortBackend::Udp {
            local: "127.0.0.1:0".parse().unwrap(),
            peer: peer.local_addr().unwrap(),
        },
    };
    options.ports.push(wire(0, &generator));
    for (i, sink) in sinks.iter().enumerate() {
        options.ports.push(wire(1 + i as u32, sink));
    }

    // The switch, alone on its thread.
    let (started_tx, started) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let switch_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let running = runner::start(options).await.expect("start the switch");
            // "/proc/thread-self" links to "<pid>/task/<tid>": where this thread's CPU time is.
            let task = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
            started_tx
                .send((running.device.clone(), running.udp_ports.clone(), task))
                .unwrap();
            running
                .run_until(async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("switch run");
        });
    });
    let (device, udp_ports, switch_task) = started.recv().expect("the switch did not start");
    setup(
        &mut device
            .pipeline()
            .active
            .as_mut()
            .expect("pipeline loaded")
            .switch,
    );

    // The data plane alone, on this thread, for comparison: what the switch could do without
    // any I/O.
    let alone = {
        let mut slot = device.pipeline();
        let sw = &mut slot.active.as_mut().unwrap().switch;
        let mut out = Outputs::new();
        let start = Instant::now();
        let mut count = 0u64;
        while start.elapsed() < Duration::from_millis(500) {
            for frame in frames {
                out.clear();
                sw.process(0, frame, &mut out);
            }
            count += frames.len() as u64;
        }
        count as f64 / start.elapsed().as_secs_f64()
    };

    let running = Arc::new(AtomicBool::new(true));
    let offered = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for (i, sink) in sinks.into_iter().enumerate() {
        sink.connect(udp_ports[&(1 + i as u32)]).unwrap();
        sink.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let running = running.clone();
        let delivered = delivered.clone();
        // The sinks take GRO runs, as a vmdep switch on the far end of the wire would.
        mmsg::enable_gro(sink.as_fd()).expect("UDP_GRO");
        threads.push(std::thread::spawn(move || {
            let mut batch = RecvBatch::new();
            while running.load(Ordering::Relaxed) {
                // Block until something is queued (a peek takes nothing), then drain it a
                // batch at a time.
                if sink.peek(&mut []).is_err() {
                    continue;
                }
                let mut got = 0;
                while batch.receive(sink.as_fd()).is_ok() {
                    got += batch.frames().count() as u64;
                }
                delivered.fetch_add(got, Ordering::Relaxed);
            }
        }));
    }
    generator.connect(udp_ports[&0]).unwrap();
    {
        let running = running.clone();
        let offered = offered.clone();
        let delivered = delivered.clone();
        let frames = frames.to_vec();
        threads.push(std::thread::spawn(move || {
            let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            let mut at = 0;
            let mut waited_since: Option<Instant> = None;
            while running.load(Ordering::Relaxed) {
                // Closed loop: at most IN_FLIGHT frames between generator and sinks, so the
                // generator does not spend the machine's cores on frames that would only be
                // dropped; a stall (lost frames) reopens the window after STALL.
                let in_flight = offered.load(Ordering::Relaxed) - delivered.load(Ordering::Relaxed);
                if in_flight > IN_FLIGHT {
                    let since = *waited_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < STALL {
                        std::thread::sleep(Duration::from_micros(50));
                        continue;
                    }
                }
                waited_since = None;
                let chunk = &refs[at..at + mmsg::BATCH];
                at = (at + mmsg::BATCH) % refs.len();
                if let Ok(sent) = mmsg::send_batch(generator.as_fd(), chunk) {
                    offered.fetch_add(sent as u64, Ordering::Relaxed);
                }
            }
        }));
    }

    let sample = || {
        let slot = device.pipeline();
        let stats = slot.active.as_ref().unwrap().switch.stats();
        (
            offered.load(Ordering::Relaxed),
            stats.frames_in,
            stats.frames_out,
            delivered.load(Ordering::Relaxed),
            device.drops.port_send_failed.load(Ordering::Relaxed),
            thread_cpu_ns(&switch_task),
        )
    };
    std::thread::sleep(Duration::from_secs(1)); // warm-up
    let (o0, in0, out0, d0, f0, c0) = sample();
    let t0 = Instant::now();
    std::thread::sleep(window);
    let (o1, in1, out1, d1, f1, c1) = sample();
    let secs = t0.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let _ = stop_tx.send(());
    switch_thread.join().unwrap();

    let rate = |a: u64, b: u64| (b - a) as f64 / secs;
    println!(
        "switch_udp {name} over {secs:.2} s ({} frames, switch on one thread):",
        frames.len()
    );
    println!("  data plane alone, no I/O   {alone:>12.0} frames/s");
    println!(
        "  offered by the generator   {:>12.0} frames/s",
        rate(o0, o1)
    );
    println!(
        "  processed by the switch    {:>12.0} frames/s",
        rate(in0, in1)
    );
    println!(
        "  sent by the switch         {:>12.0} frames/s",
        rate(out0, out1)
    );
    println!(
        "  received by the sinks      {:>12.0} frames/s",
        rate(d0, d1)
    );
    println!(
        "  switch send failures       {:>12.0} frames/s",
        rate(f0, f1)
    );
    let cpu = (c1 - c0) as f64 / 1e9;
    println!(
        "  switch thread CPU          {:>12.0} % of a core; {:.0} frames per CPU second",
        100.0 * cpu / secs,
        (in1 - in0) as f64 / cpu
    );
    assert_eq!(
        in1 - in0,
        out1 - out0,
        "every frame of the workload is forwarded"
    );
}
