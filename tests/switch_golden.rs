//! The data plane's behaviour, pinned: a fixed-seed generator makes a few thousand frames (valid
//! ones, mutated, truncated, extended, VLAN-tagged, IPv6, raw bytes) and runs them through every
//! program the switch is meant to run — p4c's reference pipelines ref1–ref4, p4/vmdep.p4 and the
//! construct programs of tests/compile_constructs as vmdep's compiler builds them, and a program
//! with fields wider than 64 bits — with table entries installed, changed half-way and expired
//! by idle timeouts. Every output (port, bytes), the statistics, counters, registers, entry
//! state and idle-timeout notifications go into a digest; the snapshot holds the digests and a
//! short readable summary.
//!
//! The snapshot was recorded before the data plane was optimised for speed: any change to it
//! is a change of behaviour, to be explained, not accepted.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use vmdep::switch::dataplane::Replica;
use vmdep::switch::pipeline::MatchKind;
use vmdep::switch::{ActionCall, EntryKey, MatchValue, Outputs, Switch, TableEntry};

mod support;

use support::xorshift::Rng;

/// Frames run through each program.
const FRAMES: usize = 2500;
/// The simulated switch clock starts far after the (real-clock) insertions of the setup, so
/// that hit times and idle timeouts do not depend on how long the setup took.
const CLOCK_START_NS: u64 = 1_000_000_000_000;
const FRAME_SPACING_NS: u64 = 1_000_000;
const IDLE_TTL_NS: u64 = 300_000_000;
/// Idle timeouts are scanned every this many frames.
const SCAN_EVERY: usize = 200;

/// 64-bit FNV-1a, for digests that stay the same across runs and platforms.
struct Digest(u64);

impl Digest {
    fn new() -> Digest {
        Digest(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    fn text(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.bytes(s.as_bytes());
    }
}

/// Addresses the frames use and the tables hold, so that lookups hit as well as miss.
const ADDRESSES: [u32; 8] = [
    0x0a00_0001,
    0x0a00_0002,
    0x0a00_0009,
    0x0a01_0203,
    0x0ac8_0304,
    0xc000_0207,
    0xac10_0001,
    0x0b00_0001,
];
const L4_PORTS: [u16; 8] = [9, 53, 80, 1000, 1500, 1550, 2000, 0x1234];
/// Bytes raw frames are made of, so that construct programs' keys take few distinct values.
const SMALL_BYTES: [u8; 6] = [0, 1, 2, 0x80, 0xf0, 0xff];

fn address(rng: &mut Rng) -> u32 {
    if rng.chance(8) {
        rng.next() as u32
    } else {
        rng.pick(&ADDRESSES)
    }
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    vmdep::switch::hash::csum16(header)
}

/// Ethernet (+ VLAN tag) + IPv4 + UDP/TCP/ICMP-ish payload, mostly well formed.
fn ipv4_frame(rng: &mut Rng) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2];
    if rng.chance(5) {
        f.extend(rng.pick(&[0x8100u16, 0x9100, 0x8200]).to_be_bytes());
        let vid: u16 = rng.pick(&[0, 10, 11]);
        f.extend((vid | (rng.below(8) as u16) << 13).to_be_bytes());
    }
    f.extend([0x08, 0x00]);
    let protocol: u8 = rng.pick(&[17, 17, 17, 6, 6, 1]);
    let options = rng.chance(10);
    let ihl: u8 = if options { 6 } else { 5 };
    let version: u8 = if rng.chance(20) { 6 } else { 4 };
    let l4_len: usize = match protocol {
        6 => 20,
        17 => 8,
        _ => 4,
    } + rng.below(6) as usize;
    let total = usize::from(ihl) * 4 + l4_len;
    let frag: u16 = if rng.chance(10) { 0x00b9 } else { 0x4000 };
    let ttl: u8 = rng.pick(&[64, 64, 64, 2, 1, 0]);
    let mut ip = vec![version << 4 | ihl, 0];
    ip.extend((total as u16).to_be_bytes());
    ip.extend((rng.next() as u16).to_be_bytes());
    ip.extend(frag.to_be_bytes());
    ip.extend([ttl, protocol, 0, 0]);
    ip.extend(address(rng).to_be_bytes());
    ip.extend(address(rng).to_be_bytes());
    if options {
        ip.extend([1, 1, 1, 0]);
    }
    let mut ck = ipv4_checksum(&ip);
    if rng.chance(20) {
        ck ^= 0x0100;
    }
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    f.extend(ip);
    let sport = rng.pick(&L4_PORTS);
    let dport = rng.pick(&L4_PORTS);
    match protocol {
        6 => {
            f.extend(sport.to_be_bytes());
            f.extend(dport.to_be_bytes());
            f.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
        }
        17 => {
            f.extend(sport.to_be_bytes());
            f.extend(dport.to_be_bytes());
            f.extend((l4_len as u16).to_be_bytes());
            f.extend([0, 0]);
        }
        _ => f.extend([8, 0, 0, 0]),
    }
    let payload = l4_len - (f.len() - 14 - usize::from(ihl) * 4).min(l4_len);
    f.extend((0..payload).map(|_| rng.next() as u8));
    f
}

/// IPv6 addresses the wide program's tables hold.
const IPV6: [u128; 4] = [
    0x2001_0db8_0000_0000_0000_0000_0000_0001,
    0x2001_0db8_0000_0000_0000_0000_0000_0002,
    0x2001_0db8_0001_0000_0000_0000_0000_0042,
    0xfe80_0000_0000_0000_0211_22ff_fe33_4455,
];

fn ipv6_frame(rng: &mut Rng) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x86, 0xdd];
    let vtf: u32 = 6 << 28 | (rng.below(256) as u32) << 20 | (rng.next() as u32 & 0xf_ffff);
    f.extend(vtf.to_be_bytes());
    f.extend(8u16.to_be_bytes());
    f.extend([17, rng.pick(&[64, 1, 0, 255])]);
    for _ in 0..2 {
        let a = if rng.chance(6) {
            u128::from(rng.next()) << 64 | u128::from(rng.next())
        } else {
            rng.pick(&IPV6)
        };
        f.extend(a.to_be_bytes());
    }
    f.extend([0x12, 0x34, 0, 53, 0, 8, 0, 0]);
    f
}

/// One frame of the corpus.
fn frame(rng: &mut Rng) -> Vec<u8> {
    match rng.below(20) {
        0..=8 => ipv4_frame(rng),
        9..=10 => {
            let mut f = ipv4_frame(rng);
            for _ in 0..=rng.below(3) {
                let at = rng.below(f.len() as u64) as usize;
                f[at] ^= 1 << rng.below(8);
            }
            f
        }
        11..=12 => {
            let mut f = ipv4_frame(rng);
            f.truncate(rng.below(f.len() as u64) as usize);
            f
        }
        13 => {
            let mut f = ipv4_frame(rng);
            let more = rng.below(40);
            f.extend((0..more).map(|_| rng.next() as u8));
            f
        }
        14..=15 => {
            let mut f = ipv6_frame(rng);
            if rng.chance(4) {
                f.truncate(rng.below(f.len() as u64) as usize);
            }
            f
        }
        16..=18 => {
            let len = rng.below(48);
            (0..len).map(|_| rng.pick(&SMALL_BYTES)).collect()
        }
        _ => {
            let len = rng.below(90);
            (0..len).map(|_| rng.next() as u8).collect()
        }
    }
}

/// A value of `width` bits made of SMALL_BYTES, as raw frames' fields are.
fn small_value(rng: &mut Rng, width: u32) -> u128 {
    let mut v = 0u128;
    for _ in 0..width.div_ceil(8) {
        v = v << 8 | u128::from(rng.pick(&SMALL_BYTES));
    }
    v & mask(width)
}

fn mask(width: u32) -> u128 {
    if width >= 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    }
}

/// The top `len` bits of a `width`-bit value.
fn prefix(width: u32, len: u32) -> u128 {
    mask(width) & !mask(width - len)
}

/// A random entry for any table: keys made of values frames carry, any of its actions.
fn generic_entry(sw: &Switch, table: usize, rng: &mut Rng) -> TableEntry {
    let p = sw.program();
    let t = &p.tables[table];
    let key = t
        .keys
        .iter()
        .map(|k| {
            let w = k.width;
            let v = if w == 32 && rng.chance(2) {
                u128::from(rng.pick(&ADDRESSES))
            } else if w == 16 && rng.chance(2) {
                u128::from(rng.pick(&L4_PORTS))
            } else {
                small_value(rng, w)
            };
            match k.kind {
                MatchKind::Valid => MatchValue::Exact(rng.below(2).into()),
                MatchKind::Exact => MatchValue::Exact(v),
                MatchKind::Lpm => {
                    let len = rng.below(u64::from(w) + 1) as u32;
                    MatchValue::Lpm {
                        value: v & prefix(w, len),
                        prefix_len: len,
                    }
                }
                MatchKind::Ternary => {
                    let random = small_value(rng, w);
                    let m = rng.pick(&[mask(w), prefix(w, w / 2), 0, random]);
                    MatchValue::Ternary {
                        value: v & m,
                        mask: m,
                    }
                }
                MatchKind::Range => {
                    let other = small_value(rng, w);
                    MatchValue::Range {
                        low: v.min(other),
                        high: v.max(other),
                    }
                }
                MatchKind::Optional => {
                    MatchValue::Optional(if rng.chance(3) { None } else { Some(v) })
                }
            }
        })
        .collect();
    let action = rng.pick(&t.actions);
    let args = p.actions[action]
        .params
        .iter()
        .map(|param| u128::from(rng.below(9)) & mask(param.width))
        .collect();
    TableEntry {
        key,
        priority: if t.needs_priority() {
            1 + rng.below(50) as i32
        } else {
            0
        },
        action: ActionCall { action, args },
        idle_timeout_ns: t.support_timeout.then_some(IDLE_TTL_NS),
    }
}

fn table(sw: &Switch, name: &str) -> usize {
    sw.program()
        .table_by_name(name)
        .unwrap_or_else(|| panic!("table {name}"))
}

fn action(sw: &Switch, table: usize, name: &str) -> usize {
    sw.program()
        .table_action_by_name(table, name)
        .unwrap_or_else(|| panic!("action {name}"))
}

fn entry(key: Vec<MatchValue>, priority: i32, action: usize, args: Vec<u128>) -> TableEntry {
    TableEntry {
        key,
        priority,
        action: ActionCall { action, args },
        idle_timeout_ns: None,
    }
}

fn lpm(value: u32, prefix_len: u32) -> MatchValue {
    MatchValue::Lpm {
        value: u128::from(value & (u32::MAX.checked_shl(32 - prefix_len).unwrap_or(0))),
        prefix_len,
    }
}

/// Routes over ADDRESSES (some nested), then `random` others.
fn routes(rng: &mut Rng, random: usize) -> Vec<MatchValue> {
    let mut routes = vec![
        lpm(0x0a00_0000, 8),
        lpm(0x0a00_0000, 24),
        lpm(0x0a01_0203, 32),
        lpm(0xc000_0200, 24),
        lpm(0xac10_0000, 12),
    ];
    for _ in 0..random {
        let len = rng.pick(&[8, 16, 16, 24, 24, 24, 32]);
        routes.push(lpm(rng.next() as u32, len));
    }
    routes
}

fn exact_pair(src: u32, dst: u32) -> Vec<MatchValue> {
    vec![MatchValue::Exact(src.into()), MatchValue::Exact(dst.into())]
}

/// Pairs of ADDRESSES (all but a few) and `random` others.
fn pairs(rng: &mut Rng, random: usize) -> Vec<Vec<MatchValue>> {
    let mut pairs = Vec::new();
    for (i, &a) in ADDRESSES.iter().enumerate() {
        for (j, &b) in ADDRESSES.iter().enumerate() {
            if (i + j) % 5 != 0 {
                pairs.push(exact_pair(a, b));
            }
        }
    }
    for _ in 0..random {
        pairs.push(exact_pair(rng.next() as u32, rng.next() as u32));
    }
    pairs
}

/// Inserts entries, counting the refusals (duplicates of random keys, say) instead of failing:
/// which ones are refused is part of the behaviour pinned.
fn insert_all(sw: &mut Switch, table: usize, entries: Vec<TableEntry>, refused: &mut u64) {
    for e in entries {
        if sw.insert_entry(table, e).is_err() {
            *refused += 1;
        }
    }
}

fn setup_ref1(sw: &mut Switch, rng: &mut Rng, refused: &mut u64) {
    let t = table(sw, "Ing.routes");
    let route = action(sw, t, "Ing.route");
    let entries = routes(rng, 60)
        .into_iter()
        .enumerate()
        .map(|(i, r)| entry(vec![r], 0, route, vec![1 + i as u128 % 7, 0xa1 + i as u128]))
        .collect();
    insert_all(sw, t, entries, refused);
}

fn setup_ref2(sw: &mut Switch, rng: &mut Rng, refused: &mut u64) {
    let acl = table(sw, "Ing.acl");
    let permit = action(sw, acl, "Ing.permit");
    let deny = action(sw, acl, "Ing.deny");
    let any = MatchValue::Ternary { value: 0, mask: 0 };
    let exact32 = |v: u32| MatchValue::Ternary {
        value: v.into(),
        mask: 0xffff_ffff,
    };
    let acl_entries = vec![
        entry(vec![any; 3], 1, permit, vec![2]),
        entry(vec![any, exact32(0xc000_0207), any], 10, deny, vec![]),
        entry(
            vec![
                any,
                any,
                MatchValue::Ternary {
                    value: 53,
                    mask: 0xffff,
                },
            ],
            20,
            permit,
            vec![5],
        ),
        entry(
            vec![
                MatchValue::Ternary {
                    value: 0x0a00_0000,
                    mask: 0xff00_0000,
                },
                any,
                any,
            ],
            5,
            permit,
            vec![3],
        ),
    ];
    insert_all(sw, acl, acl_entries, refused);
    let flows = table(sw, "Ing.flows");
    let track = action(sw, flows, "Ing.track");
    let entries = pairs(rng, 100)
        .into_iter()
        .map(|k| TableEntry {
            idle_timeout_ns: Some(IDLE_TTL_NS),
            ..entry(k, 0, track, vec![])
        })
        .collect();
    insert_all(sw, flows, entries, refused);
}

fn setup_ref3(sw: &mut Switch, _rng: &mut Rng, _refused: &mut u64) {
    let r = sw.program().register_by_name("Ing.seen_per_port").unwrap();
    sw.write_register(r, 2, 0xffff_fff0).unwrap();
    sw.write_register(r, 5, 41).unwrap();
}

fn setup_ref4(sw: &mut Switch, _rng: &mut Rng, refused: &mut u64) {
    let t = table(sw, "Ing.by_port_range");
    let to_port = action(sw, t, "Ing.to_port");
    let drop = action(sw, t, "Ing.drop");
    let range = |vid: u128, low: u128, high: u128| {
        vec![MatchValue::Exact(vid), MatchValue::Range { low, high }]
    };
    let entries = vec![
        entry(range(10, 1000, 2000), 10, to_port, vec![1]),
        entry(range(0, 53, 53), 10, to_port, vec![2]),
        entry(range(10, 1500, 1600), 20, to_port, vec![3]),
        entry(range(0, 0, 100), 5, to_port, vec![4]),
        entry(range(11, 0, 0xffff), 1, drop, vec![]),
        entry(range(0, 1000, 2000), 30, to_port, vec![6]),
    ];
    insert_all(sw, t, entries, refused);
}

fn setup_vmdep(sw: &mut Switch, rng: &mut Rng, refused: &mut u64) {
    let lpm_t = table(sw, "MyIngress.ipv4_lpm");
    let next_hop = action(sw, lpm_t, "MyIngress.set_next_hop");
    let drop = action(sw, lpm_t, "MyIngress.drop");
    let entries = routes(rng, 200)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            if i % 50 == 7 {
                entry(vec![r], 0, drop, vec![])
            } else {
                let args = vec![
                    0x0200_0000_0001,
                    0x0200_0000_0100 + i as u128,
                    1 + i as u128 % 8,
                ];
                entry(vec![r], 0, next_hop, args)
            }
        })
        .collect();
    insert_all(sw, lpm_t, entries, refused);
    let vm_pair = table(sw, "MyIngress.vm_pair");
    let count = action(sw, vm_pair, "MyIngress.count_pair");
    let no_action = action(sw, vm_pair, "NoAction");
    let entries = pairs(rng, 1000)
        .into_iter()
        .enumerate()
        .map(|(i, k)| TableEntry {
            idle_timeout_ns: Some(IDLE_TTL_NS),
            ..entry(k, 0, if i % 13 == 3 { no_action } else { count }, vec![])
        })
        .collect();
    insert_all(sw, vm_pair, entries, refused);
}

/// Fields wider than 64 bits (IPv6 addresses, a 72-bit metadata field) in keys, actions,
/// arithmetic, slices, a hash and the deparser.
const WIDE_P4: &str = r#"
#include <core.p4>
#include <v1model.p4>
header eth_t { bit<48> dst; bit<48> src; bit<16> ether_type; }
header ip6_t {
    bit<4> version; bit<8> tc; bit<20> flow; bit<16> len; bit<8> next; bit<8> hops;
    bit<128> src; bit<128> dst;
}
struct hs_t { eth_t eth; ip6_t ip6; }
struct m_t { bit<72> w; bit<64> s; bit<32> h; }
parser P(packet_in pkt, out hs_t hdr, inout m_t m, inout standard_metadata_t sm) {
    state start {
        pkt.extract(hdr.eth);
        transition select(hdr.eth.ether_type) { 0x86dd: parse_ip6; default: accept; }
    }
    state parse_ip6 { pkt.extract(hdr.ip6); transition accept; }
}
control VC(inout hs_t hdr, inout m_t m) { apply { } }
control I(inout hs_t hdr, inout m_t m, inout standard_metadata_t sm) {
    direct_counter(CounterType.packets_and_bytes) pair_counter;
    action drop() { mark_to_drop(sm); }
    action fwd(bit<9> port, bit<128> new_src) {
        sm.egress_spec = port;
        hdr.ip6.src = new_src;
        hdr.ip6.hops = hdr.ip6.hops - 1;
    }
    table by_dst {
        key = { hdr.ip6.dst : lpm; }
        actions = { fwd; drop; }
        default_action = drop();
    }
    action count_pair() { pair_counter.count(); }
    table pairs {
        key = { hdr.ip6.src : exact; hdr.ip6.dst : exact; }
        actions = { count_pair; NoAction; }
        default_action = NoAction();
        counters = pair_counter;
    }
    apply {
        if (!hdr.ip6.isValid()) {
            drop();
            return;
        }
        m.w = (bit<72>) hdr.ip6.dst + 72w0xff_0000_0000_0000_0001;
        m.s = hdr.ip6.src[63:0] ^ hdr.ip6.dst[127:64];
        hdr.eth.src = m.s[47:0];
        hdr.ip6.flow = (bit<20>) (m.w >> 52);
        if (m.w[71:64] == 0xff) {
            hdr.ip6.tc = hdr.ip6.tc + 1;
        }
        hash(m.h, HashAlgorithm.crc32, 32w0, { hdr.ip6.src, hdr.ip6.dst }, 32w65536);
        hdr.eth.dst = m.h ++ hdr.eth.dst[15:0];
        pairs.apply();
        by_dst.apply();
    }
}
control E(inout hs_t hdr, inout m_t m, inout standard_metadata_t sm) { apply { } }
control CC(inout hs_t hdr, inout m_t m) { apply { } }
control D(packet_out pkt, in hs_t hdr) { apply { pkt.emit(hdr.eth); pkt.emit(hdr.ip6); } }
V1Switch(P(), VC(), I(), E(), CC(), D()) main;
"#;

fn setup_wide(sw: &mut Switch, _rng: &mut Rng, refused: &mut u64) {
    let by_dst = table(sw, "I.by_dst");
    let fwd = action(sw, by_dst, "I.fwd");
    let route = |value: u128, prefix_len: u32, port: u128| {
        let value = value & prefix(128, prefix_len);
        entry(
            vec![MatchValue::Lpm { value, prefix_len }],
            0,
            fwd,
            vec![port, value ^ 0xabcd],
        )
    };
    let entries = vec![
        route(IPV6[0], 32, 1),
        route(IPV6[0], 128, 2),
        route(IPV6[2], 48, 3),
        route(IPV6[3], 10, 4),
        route(IPV6[3], 100, 5),
    ];
    insert_all(sw, by_dst, entries, refused);
    let pairs = table(sw, "I.pairs");
    let count = action(sw, pairs, "I.count_pair");
    let mut entries = Vec::new();
    for &a in &IPV6 {
        for &b in &IPV6[1..] {
            entries.push(entry(
                vec![MatchValue::Exact(a), MatchValue::Exact(b)],
                0,
                count,
                vec![],
            ));
        }
    }
    insert_all(sw, pairs, entries, refused);
}

/// Tables the control plane fills: not the keyless ones the compiler makes for actions called
/// in control flow, nor those with const entries.
fn takes_entries(sw: &Switch, t: usize) -> bool {
    let t = &sw.program().tables[t];
    !t.keys.is_empty() && !t.actions.is_empty() && t.const_entries.is_empty()
}

/// Every table gets generic entries (on top of a program's own).
fn setup_generic(sw: &mut Switch, rng: &mut Rng, refused: &mut u64) {
    for t in 0..sw.program().tables.len() {
        if !takes_entries(sw, t) {
            continue;
        }
        let entries = (0..12).map(|_| generic_entry(sw, t, rng)).collect();
        insert_all(sw, t, entries, refused);
    }
}

/// Half-way: delete some entries, modify others, add new ones, change default actions.
fn churn(sw: &mut Switch, rng: &mut Rng, now_ns: u64, refused: &mut u64) {
    for t in 0..sw.program().tables.len() {
        if !takes_entries(sw, t) {
            continue;
        }
        let mut entries: Vec<TableEntry> = sw
            .entries(t)
            .unwrap()
            .iter()
            .map(|e| e.entry.clone())
            .collect();
        // Storage order is not behaviour: go by key.
        entries.sort_by_key(|e| format!("{:?}", (&e.key, e.priority)));
        for (i, e) in entries.iter().enumerate() {
            let id = EntryKey {
                key: e.key.clone(),
                priority: e.priority,
            };
            if i % 3 == 1 {
                sw.delete_entry(t, &id).unwrap();
            } else if i % 4 == 2 {
                let mut changed = e.clone();
                let widths: Vec<u32> = sw.program().actions[e.action.action]
                    .params
                    .iter()
                    .map(|p| p.width)
                    .collect();
                for (a, w) in changed.action.args.iter_mut().zip(widths) {
                    *a = (*a + 1) & mask(w);
                }
                if changed.idle_timeout_ns.is_some() && i % 8 == 2 {
                    changed.idle_timeout_ns = Some(IDLE_TTL_NS * 2);
                }
                sw.modify_entry_at(t, changed, now_ns).unwrap();
            }
        }
        let entries = (0..5).map(|_| generic_entry(sw, t, rng)).collect();
        insert_all(sw, t, entries, refused);
        let call = generic_entry(sw, t, rng).action;
        if sw.set_default_action(t, call).is_err() {
            *refused += 1;
        }
    }
}

/// Installs a program's own entries and state; counts the entries refused.
type Setup = fn(&mut Switch, &mut Rng, &mut u64);

/// What one program did with the corpus.
struct Run {
    summary: String,
    outputs: Digest,
    state: Digest,
}

/// The switch's refusal if it refuses the program (pinned too: the summary says so).
fn run(name: &str, json: &str, setup: Setup) -> Result<Run, String> {
    let mut sw = Switch::from_json_str(json).map_err(|e| e.to_string())?;
    let mut rng = Rng(0x5eed_0000_0000_0001);
    let mut refused = 0u64;
    setup(&mut sw, &mut rng, &mut refused);
    setup_generic(&mut sw, &mut rng, &mut refused);
    sw.set_clone_session(
        5,
        vec![
            Replica {
                port: 4,
                instance: 0,
            },
            Replica {
                port: 6,
                instance: 1,
            },
        ],
        Some(40),
    )
    .unwrap();
    sw.set_clone_session(
        100,
        vec![Replica {
            port: 7,
            instance: 3,
        }],
        None,
    )
    .unwrap();

    // The same frames for every program.
    let mut frames = Rng(0x00f4_a3e5_0000_0007);
    let mut outputs = Digest::new();
    let mut state = Digest::new();
    let mut per_port: BTreeMap<u32, u64> = BTreeMap::new();
    let mut idle_notifications = 0u64;
    let mut out = Outputs::new();
    for i in 0..FRAMES {
        let now = CLOCK_START_NS + i as u64 * FRAME_SPACING_NS;
        if i == FRAMES / 2 {
            churn(&mut sw, &mut rng, now, &mut refused);
        }
        let f = frame(&mut frames);
        let port = if frames.chance(30) {
            frames.below(600) as u32
        } else {
            frames.below(8) as u32
        };
        out.clear();
        sw.process_at(port, &f, now, &mut out);
        outputs.u64(i as u64);
        for (p, bytes) in out.iter() {
            *per_port.entry(p).or_default() += 1;
            outputs.u64(p.into());
            outputs.u64(bytes.len() as u64);
            outputs.bytes(bytes);
        }
        if i % SCAN_EVERY == SCAN_EVERY - 1 {
            let mut expired: Vec<String> = sw
                .idle_timeouts(now)
                .iter()
                .map(|t| format!("{} {:?}", t.table, t.key))
                .collect();
            expired.sort();
            idle_notifications += expired.len() as u64;
            for e in expired {
                state.text(&e);
            }
        }
    }

    let mut counter_lines = Vec::new();
    for (c, array) in sw.program().counters.clone().iter().enumerate() {
        if array.direct_table.is_some() {
            continue;
        }
        let (mut total, mut cells) = (vmdep::switch::CounterValue::default(), 0u64);
        for i in 0..array.size {
            let v = sw.read_counter(c, i).unwrap();
            state.u64(v.packets);
            state.u64(v.bytes);
            total.packets += v.packets;
            total.bytes += v.bytes;
            cells += u64::from(v.packets != 0);
        }
        counter_lines.push(format!(
            "{}: {cells} cells counted, {} packets, {} bytes",
            array.name, total.packets, total.bytes
        ));
    }
    let mut register_lines = Vec::new();
    for (r, array) in sw.program().registers.clone().iter().enumerate() {
        let (mut sum, mut cells) = (0u128, 0u64);
        for i in 0..array.size {
            let v = sw.read_register(r, i).unwrap();
            state.bytes(&v.to_le_bytes());
            sum = sum.wrapping_add(v);
            cells += u64::from(v != 0);
        }
        register_lines.push(format!("{}: {cells} cells set, sum {sum:#x}", array.name));
    }
    let mut table_lines = Vec::new();
    for (t, table) in sw.program().tables.iter().enumerate() {
        let mut entries: Vec<String> = sw
            .entries(t)
            .unwrap()
            .iter()
            .map(|e| {
                // Entries never hit still carry their (real-clock) insertion time.
                let hit = e.last_hit_ns >= CLOCK_START_NS;
                format!(
                    "{:?} {:?} {:?} {:?} hit {} {} {}",
                    e.entry.key,
                    e.entry.priority,
                    e.entry.action,
                    e.counter,
                    hit,
                    if hit { e.last_hit_ns } else { 0 },
                    if e.idle_timer_ns >= CLOCK_START_NS {
                        e.idle_timer_ns
                    } else {
                        0
                    },
                )
            })
            .collect();
        entries.sort();
        for e in &entries {
            state.text(e);
        }
        state.text(&format!("{:?}", sw.default_action(t).unwrap()));
        if table.direct_counter.is_some() {
            let d = sw.read_default_counter(t).unwrap();
            state.u64(d.packets);
            state.u64(d.bytes);
            let packets: u64 = sw
                .entries(t)
                .unwrap()
                .iter()
                .map(|e| e.counter.packets)
                .sum();
            table_lines.push(format!(
                "{}: {} entries, {packets} packets counted on entries, {} on the default entry",
                table.name,
                entries.len(),
                d.packets
            ));
        } else if !table.keys.is_empty() {
            table_lines.push(format!("{}: {} entries", table.name, entries.len()));
        }
    }
    let stats = sw.stats();
    state.text(&format!("{stats:?}"));

    let mut summary = String::new();
    writeln!(summary, "== {name}").unwrap();
    writeln!(summary, "outputs per port: {per_port:?}").unwrap();
    writeln!(summary, "{stats:#?}").unwrap();
    writeln!(
        summary,
        "entries refused: {refused}, idle notifications: {idle_notifications}"
    )
    .unwrap();
    for l in table_lines
        .iter()
        .chain(&counter_lines)
        .chain(&register_lines)
    {
        writeln!(summary, "{l}").unwrap();
    }
    writeln!(summary, "outputs digest: {:016x}", outputs.0).unwrap();
    writeln!(summary, "state digest: {:016x}", state.0).unwrap();
    Ok(Run {
        summary,
        outputs,
        state,
    })
}

fn reference_json(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/p4c-reference/p4c-out/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

fn compiled(source: &str, file: &str) -> String {
    vmdep::compiler::compile(source, file)
        .unwrap_or_else(|d| panic!("{}", d.render(file, source)))
        .bmv2_json
}

fn no_setup(_: &mut Switch, _: &mut Rng, _: &mut u64) {}

#[test]
fn every_program_processes_the_corpus_as_recorded() {
    let mut programs: Vec<(String, String, Setup)> = vec![
        (
            "ref1".into(),
            reference_json("ref1_lpm_checksum"),
            setup_ref1,
        ),
        (
            "ref2".into(),
            reference_json("ref2_ternary_counters"),
            setup_ref2,
        ),
        (
            "ref3".into(),
            reference_json("ref3_register_clone_hash"),
            setup_ref3,
        ),
        (
            "ref4".into(),
            reference_json("ref4_parser_range"),
            setup_ref4,
        ),
        (
            "vmdep.p4".into(),
            compiled(include_str!("../p4/vmdep.p4"), "vmdep.p4"),
            setup_vmdep,
        ),
        ("wide".into(), compiled(WIDE_P4, "wide.p4"), setup_wide),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compile_constructs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "p4"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the construct programs went missing");
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(&path).unwrap();
        let json = compiled(&source, &format!("{name}.p4"));
        programs.push((name, json, no_setup));
    }

    let mut all = Digest::new();
    let mut summary = String::new();
    for (name, json, setup) in &programs {
        let r = match run(name, json, *setup) {
            Ok(r) => r,
            Err(e) => {
                writeln!(summary, "== {name}: refused: {e}").unwrap();
                continue;
            }
        };
        all.u64(r.outputs.0);
        all.u64(r.state.0);
        summary.push_str(&r.summary);
    }
    writeln!(summary, "== all programs: {:016x}", all.0).unwrap();
    insta::assert_snapshot!(summary);
}
