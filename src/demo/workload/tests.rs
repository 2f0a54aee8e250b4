//! Tests of the workload as its users see it: frames read back with `wire`, TCP connections
//! replayed segment by segment, protocol streams read by the independent readers of
//! [`super::checks`], and the truth recomputed from the frames.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proptest::prelude::*;

use super::apps::BACKUP_CHUNK;
use super::checks::{self, Checked};
use super::*;
use crate::wire::{Ipv4Packet, TcpFlags, TcpPacket};

fn reference() -> Topology {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/reference.toml");
    Topology::from_file(&path).unwrap()
}

fn spec(seed: u64, scale: f64, seconds: u64) -> WorkloadSpec {
    WorkloadSpec {
        duration: Duration::from_secs(seconds),
        seed,
        scale,
    }
}

fn fail<T>(what: impl Into<String>) -> Checked<T> {
    Err(what.into())
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Checked<()> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

/// What the frames show of one application.
#[derive(Debug, Default)]
struct Observed {
    connections: u64,
    requests: u64,
    responses: u64,
    to_server: u64,
    to_client: u64,
    names: BTreeSet<String>,
    response_times: Vec<Nanos>,
}

/// (client address, server address, server port).
type AppKey = (Ipv4Addr, Ipv4Addr, u16);

/// Everything the tests hold true of a workload; the error says which frame or stream broke it.
fn audit(topology: &Topology, spec: WorkloadSpec, w: &Workload) -> Checked<()> {
    let frames = check_frames(topology, spec, w)?;
    let mut observed: BTreeMap<AppKey, Observed> = BTreeMap::new();
    check_tcp(w, &frames, &mut observed)?;
    check_udp(topology, w, &frames, &mut observed)?;
    check_truth(topology, w, &observed)
}

/// A frame as `wire` reads it back.
struct Parsed<'a> {
    repr: FrameRepr<'a>,
}

/// Every frame parses with all checksums right, carries its VMs' addresses, TTL 64 and
/// don't-fragment, comes in time order before the end, and each VM's identifications count up.
fn check_frames<'a>(
    topology: &Topology,
    spec: WorkloadSpec,
    w: &'a Workload,
) -> Checked<Vec<Parsed<'a>>> {
    let mut idents: BTreeMap<VmId, u16> = BTreeMap::new();
    let mut last = Duration::ZERO;
    let mut parsed = Vec::with_capacity(w.frames.len());
    for (i, f) in w.frames.iter().enumerate() {
        let repr = FrameRepr::parse(&f.frame).map_err(|e| format!("frame {i}: {e}"))?;
        let ip = Ipv4Packet::new_checked(&f.frame[14..]).map_err(|e| e.to_string())?;
        ensure(14 + usize::from(ip.total_len()) == f.frame.len(), || {
            format!("frame {i} has trailing bytes")
        })?;
        let (src, dst) = (topology.vm(f.src_vm), topology.vm(f.dst_vm));
        ensure(f.at >= last && f.at < spec.duration, || {
            format!("frame {i} at {:?} out of order or late", f.at)
        })?;
        last = f.at;
        ensure(src.server == f.src_server, || {
            format!("frame {i}: wrong src_server")
        })?;
        ensure(
            repr.ipv4.src_addr == src.ipv4 && repr.ipv4.dst_addr == dst.ipv4,
            || format!("frame {i}: addresses"),
        )?;
        ensure(repr.ethernet.src_addr.0 == src.mac.octets(), || {
            format!("frame {i}: source MAC")
        })?;
        let gateway = topology.port_mac(topology.server(src.server).uplink);
        let dst_mac = if src.server == dst.server {
            dst.mac
        } else {
            gateway
        };
        ensure(repr.ethernet.dst_addr.0 == dst_mac.octets(), || {
            format!("frame {i}: destination MAC")
        })?;
        ensure(repr.ethernet.vlan.is_none(), || {
            format!("frame {i}: tagged")
        })?;
        ensure(repr.ipv4.ttl == 64 && repr.ipv4.dont_frag, || {
            format!("frame {i}: TTL or DF")
        })?;
        if let Some(prev) = idents.insert(f.src_vm, repr.ipv4.ident) {
            ensure(repr.ipv4.ident == prev.wrapping_add(1), || {
                format!("frame {i}: IPv4 identification")
            })?;
        }
        parsed.push(Parsed { repr });
    }
    Ok(parsed)
}

/// Replays every TCP connection: handshake first (with the MSS option), sequence numbers
/// advancing by payload and SYN/FIN, acknowledgements never ahead of the peer and never going
/// back, nothing beyond the window in flight, segments of at most one MSS, FINs last and all
/// acknowledged. Then reads each connection's two byte streams with the protocol readers.
fn check_tcp(
    w: &Workload,
    frames: &[Parsed],
    observed: &mut BTreeMap<AppKey, Observed>,
) -> Checked<()> {
    // Connections by (client, client port, server, server port), in order of their SYNs.
    let mut open: BTreeMap<(Ipv4Addr, u16, Ipv4Addr, u16), usize> = BTreeMap::new();
    let mut conns: Vec<Vec<usize>> = Vec::new();
    for (i, p) in frames.iter().enumerate() {
        let TransportRepr::Tcp(t) = p.repr.transport else {
            continue;
        };
        let (s, d) = (
            (p.repr.ipv4.src_addr, t.src_port),
            (p.repr.ipv4.dst_addr, t.dst_port),
        );
        if t.flags == TcpFlags::SYN {
            let key = (s.0, s.1, d.0, d.1);
            ensure(!open.contains_key(&key), || {
                format!("frame {i}: SYN on an open connection")
            })?;
            open.insert(key, conns.len());
            conns.push(vec![i]);
            continue;
        }
        let conn = open
            .get(&(s.0, s.1, d.0, d.1))
            .or_else(|| open.get(&(d.0, d.1, s.0, s.1)))
            .ok_or_else(|| format!("frame {i}: segment outside any connection"))?;
        conns[*conn].push(i);
        // The client's last ACK ends a connection; its 4-tuple may be used again.
        if t.flags == TcpFlags::ACK && p.repr.payload.is_empty() {
            let fins = conns[*conn]
                .iter()
                .filter(|&&j| match frames[j].repr.transport {
                    TransportRepr::Tcp(t) => t.flags.contains(TcpFlags::FIN),
                    TransportRepr::Udp(_) => false,
                });
            if fins.count() == 2 {
                let key = if open.contains_key(&(s.0, s.1, d.0, d.1)) {
                    (s.0, s.1, d.0, d.1)
                } else {
                    (d.0, d.1, s.0, s.1)
                };
                open.remove(&key);
            }
        }
    }
    ensure(open.is_empty(), || {
        format!("{} connections never closed", open.len())
    })?;
    for conn in &conns {
        let first = &frames[conn[0]].repr;
        let TransportRepr::Tcp(syn) = first.transport else {
            unreachable!()
        };
        let client = first.ipv4.src_addr;
        let key = (client, first.ipv4.dst_addr, syn.dst_port);
        let (streams, mut response_times) = replay_connection(w, frames, conn, client)
            .map_err(|e| format!("connection {key:?} from frame {}: {e}", conn[0]))?;
        let o = observed.entry(key).or_default();
        // The first answer of TLS, PostgreSQL and MySQL ends a handshake, not a request.
        if [443, 5432, 3306].contains(&syn.dst_port) && !response_times.is_empty() {
            response_times.remove(0);
        }
        o.response_times.extend(response_times);
        o.connections += 1;
        o.to_server += streams[0].len() as u64;
        o.to_client += streams[1].len() as u64;
        read_streams(syn.dst_port, &streams, o)
            .map_err(|e| format!("connection {key:?} from frame {}: {e}", conn[0]))?;
    }
    Ok(())
}

fn seq_le(a: u32, b: u32) -> bool {
    b.wrapping_sub(a) < 1 << 31
}

/// One connection's segments in order; returns the client's and the server's byte streams, and
/// the time from each last client data segment to the server's first data after it.
fn replay_connection(
    w: &Workload,
    frames: &[Parsed],
    conn: &[usize],
    client: Ipv4Addr,
) -> Checked<([Vec<u8>; 2], Vec<Nanos>)> {
    let mut last_request: Option<Duration> = None;
    let mut response_times = Vec::new();
    let mut next = [0u32; 2];
    let mut acked = [0u32; 2];
    let mut fin = [false; 2];
    let mut streams = [Vec::new(), Vec::new()];
    for (k, &i) in conn.iter().enumerate() {
        let p = &frames[i].repr;
        let TransportRepr::Tcp(t) = p.transport else {
            unreachable!()
        };
        let side = usize::from(p.ipv4.src_addr != client);
        let peer = 1 - side;
        let len = p.payload.len() as u32;
        let options = TcpPacket::new_checked(
            &w.frames[i].frame[34..w.frames[i].frame.len() - p.payload.len()],
        )
        .map_err(|e| e.to_string())?
        .options()
        .to_vec();
        match k {
            0 => {
                ensure(side == 0 && t.flags == TcpFlags::SYN && len == 0, || {
                    "SYN first".into()
                })?;
                ensure(options == [2, 4, 0x05, 0xb4], || {
                    "SYN carries MSS 1460".into()
                })?;
                next[0] = t.seq_number.wrapping_add(1);
                continue;
            }
            1 => {
                ensure(
                    side == 1 && t.flags == TcpFlags::SYN | TcpFlags::ACK && len == 0,
                    || "SYN-ACK second".into(),
                )?;
                ensure(t.ack_number == next[0], || {
                    "SYN-ACK acknowledges the SYN".into()
                })?;
                ensure(options == [2, 4, 0x05, 0xb4], || {
                    "SYN-ACK carries MSS 1460".into()
                })?;
                next[1] = t.seq_number.wrapping_add(1);
                acked[1] = t.ack_number;
                // Below the client's first acknowledgement, which takes the SYN-ACK.
                acked[0] = t.seq_number;
                continue;
            }
            _ => {}
        }
        ensure(options.is_empty(), || {
            format!("frame {i}: options after the handshake")
        })?;
        ensure(t.flags.contains(TcpFlags::ACK), || {
            format!("frame {i}: ACK flag")
        })?;
        ensure(
            !t.flags.contains(TcpFlags::SYN) && !t.flags.contains(TcpFlags::RST),
            || format!("frame {i}: SYN or RST late"),
        )?;
        ensure(t.seq_number == next[side], || {
            format!("frame {i}: sequence gap or overlap")
        })?;
        ensure(seq_le(t.ack_number, next[peer]), || {
            format!("frame {i}: acknowledges unsent data")
        })?;
        ensure(seq_le(acked[side], t.ack_number), || {
            format!("frame {i}: acknowledgement goes back")
        })?;
        ensure(len as usize <= MSS, || {
            format!("frame {i}: segment beyond the MSS")
        })?;
        ensure(!fin[side] || len == 0, || {
            format!("frame {i}: data after FIN")
        })?;
        let is_fin = t.flags.contains(TcpFlags::FIN);
        ensure(!is_fin || side == 1 || !fin[1], || {
            format!("frame {i}: the client closes first")
        })?;
        next[side] = next[side].wrapping_add(len + u32::from(is_fin));
        ensure(
            next[side].wrapping_sub(acked[peer]) <= u32::from(tcp::WINDOW),
            || format!("frame {i}: more than a window in flight"),
        )?;
        acked[side] = t.ack_number;
        fin[side] |= is_fin;
        streams[side].extend_from_slice(p.payload);
        let at = w.frames[i].at;
        match (len > 0, side) {
            (true, 0) => last_request = Some(at),
            (true, _) => {
                if let Some(asked) = last_request.take() {
                    response_times.push((at - asked).as_nanos() as Nanos);
                }
            }
            (false, _) => {}
        }
    }
    let last = &frames[*conn.last().unwrap()].repr;
    let TransportRepr::Tcp(t) = last.transport else {
        unreachable!()
    };
    ensure(fin == [true, true], || "both ends sent FIN".into())?;
    ensure(
        last.ipv4.src_addr == client && t.flags == TcpFlags::ACK,
        || "the client's ACK ends it".into(),
    )?;
    ensure(acked == [next[1], next[0]], || {
        "everything is acknowledged".into()
    })?;
    Ok((streams, response_times))
}

/// Reads a connection's streams with the reader of its port and counts requests and responses.
fn read_streams(port: u16, [client, server]: &[Vec<u8>; 2], o: &mut Observed) -> Checked<()> {
    let (requests, responses) = match port {
        80 | 8080 => {
            let (requests, hosts) = checks::http_messages(client, true)?;
            o.names.extend(hosts);
            (requests, checks::http_messages(server, false)?.0)
        }
        443 => {
            let (records, sni) = checks::tls_records(client, true)?;
            o.names.extend(sni);
            let (server_records, _) = checks::tls_records(server, false)?;
            // The client's first encrypted record is its Finished; each request is one record.
            let requests = records.checked_sub(1).ok_or("no Finished")?;
            ensure(server_records > requests, || {
                "server records: its flight and the answers".into()
            })?;
            (requests, requests)
        }
        5432 => (
            checks::postgres_frontend(client)?,
            checks::postgres_backend(server)?,
        ),
        6379 => (
            checks::resp_values(client, true)?,
            checks::resp_values(server, false)?,
        ),
        3306 => (checks::mysql_client(client)?, checks::mysql_server(server)?),
        9102 => {
            // Opaque: a request, then whole chunks of the stream.
            ensure(!client.is_empty(), || "backup request".into())?;
            ensure(
                !server.is_empty() && server.len().is_multiple_of(BACKUP_CHUNK),
                || "backup stream of whole chunks".into(),
            )?;
            (1, 1)
        }
        _ => return fail(format!("unexpected TCP port {port}")),
    };
    o.requests += requests;
    o.responses += responses;
    Ok(())
}

/// Reads every datagram: DNS queries answered with the right address, NTP requests answered
/// with their origin timestamp; measures their response times.
fn check_udp(
    topology: &Topology,
    w: &Workload,
    frames: &[Parsed],
    observed: &mut BTreeMap<AppKey, Observed>,
) -> Checked<()> {
    // Outstanding requests by (client, client port, server, server port): time and token.
    let mut asked: BTreeMap<(Ipv4Addr, u16, Ipv4Addr, u16), (Duration, u64)> = BTreeMap::new();
    for (i, p) in frames.iter().enumerate() {
        let TransportRepr::Udp(u) = p.repr.transport else {
            continue;
        };
        let at = w.frames[i].at;
        let (src, dst) = (p.repr.ipv4.src_addr, p.repr.ipv4.dst_addr);
        let server_port = u.src_port.min(u.dst_port);
        let to_server = u.dst_port == server_port;
        let key = if to_server {
            (src, u.src_port, dst, u.dst_port)
        } else {
            (dst, u.dst_port, src, u.src_port)
        };
        let o = observed.entry((key.0, key.2, key.3)).or_default();
        if to_server {
            o.to_server += p.repr.payload.len() as u64;
        } else {
            o.to_client += p.repr.payload.len() as u64;
        }
        let token = match server_port {
            53 => {
                let (id, response, name, addr) =
                    checks::dns_message(p.repr.payload).map_err(|e| format!("frame {i}: {e}"))?;
                ensure(response != to_server, || {
                    format!("frame {i}: DNS direction")
                })?;
                let vm = name
                    .strip_suffix(".dc.internal")
                    .and_then(|n| topology.vm_id(n))
                    .ok_or_else(|| format!("frame {i}: unknown name {name}"))?;
                ensure(addr.is_none_or(|a| a == topology.vm(vm).ipv4), || {
                    format!("frame {i}: wrong address for {name}")
                })?;
                o.names.insert(name);
                u64::from(id)
            }
            123 => {
                let (mode, origin, transmit) =
                    checks::ntp_packet(p.repr.payload).map_err(|e| format!("frame {i}: {e}"))?;
                ensure((mode == 3) == to_server, || format!("frame {i}: NTP mode"))?;
                if to_server {
                    transmit
                } else {
                    origin
                }
            }
            _ => return fail(format!("frame {i}: unexpected UDP port {server_port}")),
        };
        if to_server {
            ensure(asked.insert(key, (at, token)).is_none(), || {
                format!("frame {i}: a second request before the answer")
            })?;
            o.requests += 1;
        } else {
            let (asked_at, asked_token) = asked
                .remove(&key)
                .ok_or_else(|| format!("frame {i}: answer without a request"))?;
            ensure(asked_token == token, || {
                format!("frame {i}: answer does not match its request")
            })?;
            o.responses += 1;
            o.response_times.push((at - asked_at).as_nanos() as Nanos);
        }
    }
    ensure(asked.is_empty(), || "unanswered datagrams".into())
}

/// The truth equals what the frames show: per pair the packets and bytes, per application the
/// connections, requests, responses, payload bytes, names, and (for UDP) response times.
fn check_truth(
    topology: &Topology,
    w: &Workload,
    observed: &BTreeMap<AppKey, Observed>,
) -> Checked<()> {
    let mut pairs: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for f in &w.frames {
        let key = (
            topology.vm(f.src_vm).name.clone(),
            topology.vm(f.dst_vm).name.clone(),
        );
        let e = pairs.entry(key).or_default();
        e.0 += 1;
        e.1 += f.frame.len() as u64;
    }
    ensure(pairs.len() == w.truth.pairs.len(), || {
        "the truth lists exactly the pairs seen".into()
    })?;
    for t in &w.truth.pairs {
        let seen = pairs.get(&(t.src.clone(), t.dst.clone()));
        ensure(seen == Some(&(t.packets, t.bytes)), || {
            format!(
                "pair {} -> {}: truth {:?}, frames {seen:?}",
                t.src,
                t.dst,
                (t.packets, t.bytes)
            )
        })?;
        let (s, d) = (
            topology.vm(topology.vm_id(&t.src).unwrap()),
            topology.vm(topology.vm_id(&t.dst).unwrap()),
        );
        ensure(
            t.same_server == (s.server == d.server) && t.src_ipv4 == s.ipv4,
            || format!("pair {} -> {}", t.src, t.dst),
        )?;
    }
    ensure(observed.len() == w.truth.applications.len(), || {
        "the truth lists exactly the applications seen".into()
    })?;
    for a in &w.truth.applications {
        let o = observed
            .get(&(a.client_ipv4, a.server_ipv4, a.server_port))
            .ok_or_else(|| {
                format!(
                    "application {}->{}:{} not in the frames",
                    a.client, a.server, a.server_port
                )
            })?;
        let names: BTreeSet<String> = a.names.iter().cloned().collect();
        let counts = (
            o.connections,
            o.requests,
            o.responses,
            o.to_server,
            o.to_client,
        );
        let truth = (
            a.connections,
            a.requests,
            a.responses,
            a.payload_bytes_to_server,
            a.payload_bytes_to_client,
        );
        ensure(counts == truth, || {
            format!(
                "{}->{}:{}: frames {counts:?}, truth {truth:?}",
                a.client, a.server, a.server_port
            )
        })?;
        ensure(names == o.names, || {
            format!("{}->{}:{}: names", a.client, a.server, a.server_port)
        })?;
        ensure(a.requests == a.responses && a.requests > 0, || {
            format!("{}->{}:{}: unanswered", a.client, a.server, a.server_port)
        })?;
        let rt = a.response_time.ok_or("no response times")?;
        ensure(rt.min_us <= rt.mean_us && rt.mean_us <= rt.max_us, || {
            "response time order".into()
        })?;
        let times = &o.response_times;
        let seen = ResponseTimes {
            min_us: times.iter().min().ok_or("no response seen")? / 1000,
            mean_us: times.iter().sum::<Nanos>() / times.len() as Nanos / 1000,
            max_us: times.iter().max().ok_or("no response seen")? / 1000,
        };
        ensure(times.len() as u64 == a.responses && seen == rt, || {
            format!(
                "{}->{}:{}: response times {rt:?}, frames show {} of {seen:?}",
                a.client,
                a.server,
                a.server_port,
                times.len()
            )
        })?;
        let client = topology.vm(topology.vm_id(&a.client).unwrap());
        let role = VM_ROLES.iter().find(|(n, _)| *n == a.client).unwrap().1;
        ensure(
            a.client_ipv4 == client.ipv4 && a.client_role == role,
            || format!("{}: role", a.client),
        )?;
    }
    Ok(())
}

#[test]
fn default_run_holds_every_invariant() {
    let topology = reference();
    let spec = WorkloadSpec::default();
    let w = three_tier(&topology, spec).unwrap();
    assert!(
        (15_000..40_000).contains(&w.frames.len()),
        "{} frames",
        w.frames.len()
    );
    audit(&topology, spec, &w).unwrap();
    // Every application of the design shows up, the same-server ones among them.
    for (client, server, port, protocol) in [
        ("client1", "web1", 80, AppProtocol::Http),
        ("client2", "web1", 443, AppProtocol::Tls),
        ("web1", "app2", 8080, AppProtocol::Http),
        ("app1", "db1", 5432, AppProtocol::Postgresql),
        ("app2", "cache1", 6379, AppProtocol::Redis),
        ("batch1", "db2", 3306, AppProtocol::Mysql),
        ("app2", "dns1", 53, AppProtocol::Dns),
        ("backup1", "db2", 9102, AppProtocol::Opaque),
    ] {
        let app = w.truth.application(client, server, port).unwrap();
        assert_eq!(app.protocol, protocol, "{client}->{server}:{port}");
    }
    assert!(w.truth.pair("client1", "web1").unwrap().same_server);
    assert!(!w.truth.pair("batch1", "db2").unwrap().same_server);
    assert!(w
        .truth
        .applications
        .iter()
        .any(|a| a.protocol == AppProtocol::Ntp));
    // Service times set the response times apart: a cache answers far faster than a web page.
    let rt = |c, s, p| {
        w.truth
            .application(c, s, p)
            .unwrap()
            .response_time
            .unwrap()
            .mean_us
    };
    assert!(rt("app1", "cache1", 6379) < 1000);
    assert!(rt("client1", "web2", 80) > 2000);
}

#[test]
fn same_spec_same_bytes_other_seed_other_bytes() {
    let topology = reference();
    let a = three_tier(&topology, spec(7, 0.5, 3)).unwrap();
    let b = three_tier(&topology, spec(7, 0.5, 3)).unwrap();
    assert_eq!(a, b);
    let c = three_tier(&topology, spec(8, 0.5, 3)).unwrap();
    assert_ne!(a.frames, c.frames);
}

#[test]
fn stream_and_per_server_frames_match_the_whole() {
    let topology = reference();
    let s = spec(3, 0.5, 3);
    let w = three_tier(&topology, s).unwrap();
    let mut total = 0;
    for (index, _) in topology.servers().iter().enumerate() {
        let server = ServerId(index);
        let mine: Vec<&TimedFrame> = w.frames_from_server(server).collect();
        assert!(!mine.is_empty());
        assert!(mine.iter().all(|f| topology.vm(f.src_vm).server == server));
        let streamed: Vec<TimedFrame> = three_tier_stream(&topology, s)
            .unwrap()
            .frames_from_server(server)
            .collect();
        assert_eq!(streamed.iter().collect::<Vec<_>>(), mine);
        total += mine.len();
    }
    assert_eq!(total, w.frames.len());
    // Partway through, the stream's truth counts what it has yielded.
    let mut stream = three_tier_stream(&topology, s).unwrap();
    let first: Vec<TimedFrame> = stream.by_ref().take(100).collect();
    let packets: u64 = stream.truth().pairs.iter().map(|p| p.packets).sum();
    assert_eq!(packets, first.len() as u64);
}

#[test]
fn scale_multiplies_the_traffic() {
    let topology = reference();
    let one = three_tier(&topology, spec(5, 1.0, 4)).unwrap().frames.len();
    let three = three_tier(&topology, spec(5, 3.0, 4)).unwrap().frames.len();
    assert!(
        three > 2 * one && three < 4 * one,
        "{one} frames at scale 1, {three} at 3"
    );
}

#[test]
fn bad_specs_and_missing_vms_are_clear_errors() {
    let topology = reference();
    for (s, want) in [
        (spec(1, 1.0, 1), "duration"),
        (spec(1, 0.0, 5), "scale"),
        (spec(1, f64::NAN, 5), "scale"),
        (spec(1, 1000.0, 5), "scale"),
    ] {
        let err = three_tier(&topology, s).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/reference.toml"),
    )
    .unwrap();
    let renamed = Topology::from_toml(&text.replace("\"cache1\"", "\"memcache1\"")).unwrap();
    assert_eq!(
        three_tier(&renamed, WorkloadSpec::default()).unwrap_err(),
        WorkloadError::MissingVm {
            name: "cache1".into(),
            role: "cache"
        }
    );
}

#[test]
fn truth_serializes_and_reads_back() {
    let topology = reference();
    let w = three_tier(&topology, spec(2, 0.3, 2)).unwrap();
    let json = serde_json::to_string(&w.truth).unwrap();
    assert_eq!(serde_json::from_str::<GroundTruth>(&json).unwrap(), w.truth);
    assert!(json.contains("\"protocol\":\"dns\""));
}

#[test]
fn application_table() {
    // Who calls whom with what: the design (and, at this seed, the NTP noise pairs).
    let topology = reference();
    let w = three_tier(&topology, spec(1, 1.0, 10)).unwrap();
    let table: Vec<String> = w
        .truth
        .applications
        .iter()
        .map(|a| {
            format!(
                "{} ({}) -> {} ({}) {:?}/{} {:?} {:?}",
                a.client,
                a.client_role,
                a.server,
                a.server_role,
                a.transport,
                a.server_port,
                a.protocol,
                a.names
            )
        })
        .collect();
    insta::assert_json_snapshot!(table);
}

#[test]
fn readers_reject_broken_streams() {
    // The checks can fail: each reader refuses its own kind of damage.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut hello = tls::client_hello(&mut rng, "web1.dc.internal");
    assert_eq!(
        checks::tls_records(&hello, true).unwrap().1.as_deref(),
        Some("web1.dc.internal")
    );
    hello[4] ^= 1; // record length
    assert!(checks::tls_records(&hello, true).is_err());
    let mut query = postgres::query("SELECT 1;");
    query.extend(postgres::terminate());
    let mut stream = postgres::startup("u", "d", "a");
    stream.extend(&query);
    assert_eq!(checks::postgres_frontend(&stream).unwrap(), 1);
    let terminate_len = stream.len() - 4;
    stream[terminate_len] = 0x7f; // the Terminate's length
    assert!(checks::postgres_frontend(&stream).is_err());
    let set = redis::command(&[b"SET", b"k", b"value"]);
    assert_eq!(checks::resp_values(&set, true).unwrap(), 1);
    assert!(checks::resp_values(&set[..set.len() - 1], true).is_err());
    let answer = dns::answer(7, "db1.dc.internal", Ipv4Addr::new(10, 0, 123, 1), 5);
    let (id, response, name, addr) = checks::dns_message(&answer).unwrap();
    assert_eq!(
        (id, response, name.as_str(), addr),
        (
            7,
            true,
            "db1.dc.internal",
            Some(Ipv4Addr::new(10, 0, 123, 1))
        )
    );
    let mut looping = answer.clone();
    looping[12] = 0xc0;
    looping[13] = 12; // a pointer to itself
    assert!(checks::dns_message(&looping).is_err());
    let mut greeting = mysql::greeting(&mut rng, 9);
    greeting.extend(mysql::ok(2, 0, 0));
    greeting.extend(mysql::result_set(&mut rng, "stock", 3));
    assert_eq!(checks::mysql_server(&greeting).unwrap(), 1);
    let cut = greeting.len() - 5;
    assert!(checks::mysql_server(&greeting[..cut]).is_err());
    let request = http::request("GET", "/", "web1.dc.internal", None);
    assert_eq!(
        checks::http_messages(&request, true).unwrap(),
        (1, vec!["web1.dc.internal".to_string()])
    );
    let response = http::response(200, "text/html", &http::html_page(&mut rng, 500));
    assert_eq!(
        response.len() - response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4,
        500
    );
    assert!(checks::http_messages(&response[..response.len() - 1], false).is_err());
}

#[test]
fn a_tampered_frame_fails_the_audit() {
    let topology = reference();
    let s = spec(4, 0.3, 2);
    let mut w = three_tier(&topology, s).unwrap();
    // Shift one data segment's sequence number (checksums made right again): its connection
    // now has a gap.
    let victim = w
        .frames
        .iter()
        .position(|f| f.frame.len() > 200 && f.frame[23] == 6)
        .unwrap();
    let mut gapped = w.clone();
    let bytes = w.frames[victim].frame.clone();
    let mut repr = FrameRepr::parse(&bytes).unwrap();
    let TransportRepr::Tcp(ref mut tcp) = repr.transport else {
        unreachable!()
    };
    tcp.seq_number = tcp.seq_number.wrapping_add(1);
    gapped.frames[victim].frame = repr.to_vec().unwrap();
    let err = audit(&topology, s, &gapped).unwrap_err();
    assert!(err.contains("sequence gap"), "{err}");
    // Drop a frame: its VM's IPv4 identifications skip one.
    gapped.frames.remove(victim);
    let err = audit(&topology, s, &gapped).unwrap_err();
    assert!(err.contains("IPv4 identification"), "{err}");
    // Change one count of the truth.
    w.truth.pairs[0].bytes += 1;
    assert!(audit(&topology, s, &w).unwrap_err().contains("pair"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_for_any_seed_and_scale(seed: u64, scale in 0.05f64..2.5, seconds in 2u64..4) {
        let topology = reference();
        let s = spec(seed, scale, seconds);
        let w = three_tier(&topology, s).unwrap();
        if let Err(e) = audit(&topology, s, &w) {
            return Err(TestCaseError::fail(e));
        }
    }
}
