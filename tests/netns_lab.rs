//! The netns lab of `vmdep demo --netns` with the real parts: the reference topology's VMs as
//! network namespaces behind Open vSwitch bridges (userspace datapath), five `vmdep switch`es in
//! process on the uplink and link veths, running vmdep.p4 with the routes the controller would
//! install. Real kernel TCP and UDP between VMs on one server, on two servers of one switch and
//! across the fabric; the bridges' sFlow decoded from a loopback socket; a mirror, and the copies
//! of same-server frames, read where the DPI module would read them; and nothing of the run left
//! afterwards.
//!
//! Needs root. Skipped without it, except under CI (CI=true), where it must run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use vmdep::controller::paths::{Paths, RouteTables};
use vmdep::controller::session::PipelineBundle;
use vmdep::controller::topology::{SwitchId, Topology};
use vmdep::controller::VmPair;
use vmdep::demo::emulated::REFERENCE_TOPOLOGY;
use vmdep::demo::netns::{cleanup_leftovers, LabError, LabOptions, NetnsLab};
use vmdep::p4rt::v1::p4_runtime_client::P4RuntimeClient;
use vmdep::p4rt::v1::*;
use vmdep::p4rt::{bytestring, P4InfoIndex};
use vmdep::sflow::{header_protocol, Address, Datagram, FlowRecord, Sample};
use vmdep::switch::ports::af_packet::{PacketSocket, Received};
use vmdep::switch::runner::{start, RunningSwitch, SwitchOptions};

mod support;

use support::env::{root_or_skip, FOR_NETNS_LAB};
use support::netns::{lab_names_left, processes_using};
use support::p4rt::{set_pipeline_request, uint128, Controller};
use support::programs::{compiled_pipeline, VMDEP_P4};

const WAIT: Duration = Duration::from_secs(10);
const ELECTION: u64 = 1;

/// Becomes primary of `device_id`, loads vmdep.p4 and installs the switch's routes; the
/// switch keeps this primary while the returned stream lives.
async fn program_switch(
    running: &RunningSwitch,
    device_id: u64,
    pipeline: &PipelineBundle,
    routes: &[vmdep::controller::paths::Route],
) -> Controller {
    let mut client = P4RuntimeClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .unwrap();
    // The answer must be an arbitration update; whether this controller is primary shows
    // in the writes below.
    let (primary, _) = Controller::join(&mut client, device_id, ELECTION).await;
    client
        .set_forwarding_pipeline_config(set_pipeline_request(
            device_id,
            ELECTION,
            set_forwarding_pipeline_config_request::Action::VerifyAndCommit,
            Some(ForwardingPipelineConfig {
                p4info: Some(pipeline.p4info.clone()),
                p4_device_config: pipeline.device_config.clone(),
                cookie: None,
            }),
        ))
        .await
        .unwrap();

    let index = P4InfoIndex::new(pipeline.p4info.clone()).unwrap();
    let table = index.table("MyIngress.ipv4_lpm").unwrap();
    let table_id = table.preamble.as_ref().unwrap().id;
    let dst = index
        .match_field("MyIngress.ipv4_lpm", "hdr.ipv4.dstAddr")
        .unwrap();
    let action = index.action("MyIngress.set_next_hop").unwrap();
    let action_id = action.preamble.as_ref().unwrap().id;
    let param = |name: &str, value: u128| {
        let p = index.action_param("MyIngress.set_next_hop", name).unwrap();
        action::Param {
            param_id: p.id,
            value: bytestring::encode(value, p.bitwidth as u32).unwrap(),
        }
    };
    let mac = |m: vmdep::controller::topology::MacAddr| {
        m.octets()
            .iter()
            .fold(0u128, |acc, &b| (acc << 8) | u128::from(b))
    };
    let updates = routes
        .iter()
        .map(|route| Update {
            r#type: update::Type::Insert as i32,
            entity: Some(Entity {
                entity: Some(entity::Entity::TableEntry(TableEntry {
                    table_id,
                    r#match: vec![FieldMatch {
                        field_id: dst.id,
                        field_match_type: Some(field_match::FieldMatchType::Lpm(
                            field_match::Lpm {
                                value: bytestring::encode(u128::from(u32::from(route.prefix)), 32)
                                    .unwrap(),
                                prefix_len: i32::from(route.prefix_len),
                            },
                        )),
                    }],
                    action: Some(TableAction {
                        r#type: Some(table_action::Type::Action(Action {
                            action_id,
                            params: vec![
                                param("src_mac", mac(route.src_mac)),
                                param("dst_mac", mac(route.dst_mac)),
                                param("port", u128::from(route.egress_port)),
                            ],
                        })),
                    }),
                    ..Default::default()
                })),
            }),
        })
        .collect();
    client
        .write(WriteRequest {
            device_id,
            election_id: Some(uint128(ELECTION)),
            updates,
            atomicity: write_request::Atomicity::ContinueOnError as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    primary
}

fn vm_ip(topology: &Topology, vm: &str) -> Ipv4Addr {
    topology.vm(topology.vm_id(vm).unwrap()).ipv4
}

/// A payload larger than one segment, so TCP segments and checksums are really exercised.
fn payload(tag: u8) -> Vec<u8> {
    (0..20_000u32)
        .map(|i| (i as u8).wrapping_mul(31) ^ tag)
        .collect()
}

/// One TCP connection from `client` to `server`: a request and its echo, both ways whole.
fn tcp_exchange(lab: &NetnsLab, client: &str, server: &str) {
    let server_ip = vm_ip(lab.topology(), server);
    let listener = lab
        .in_vm(server, || TcpListener::bind((server_ip, 0)))
        .unwrap()
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let request = payload(1);
    let expected = request.clone();
    let serving = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + WAIT;
        let (mut conn, peer) = loop {
            match listener.accept() {
                Ok(accepted) => break accepted,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no connection within {WAIT:?}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = vec![0u8; expected.len()];
        conn.read_exact(&mut got).unwrap();
        assert!(got == expected, "the request arrived changed");
        conn.write_all(&got).unwrap();
        peer
    });
    let client_ip = vm_ip(lab.topology(), client);
    let mut stream = lab
        .in_vm(client, || TcpStream::connect_timeout(&addr, WAIT))
        .unwrap()
        .unwrap_or_else(|e| panic!("TCP {client} -> {server}: {e}"));
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(&request).unwrap();
    let mut echo = vec![0u8; request.len()];
    stream
        .read_exact(&mut echo)
        .unwrap_or_else(|e| panic!("TCP {client} -> {server}: no echo: {e}"));
    assert!(echo == request, "the echo arrived changed");
    let peer = serving.join().unwrap();
    assert_eq!(
        peer.ip(),
        client_ip,
        "the server saw the client's own address"
    );
}

/// One UDP datagram from `client` to `server` and the answer back.
fn udp_exchange(lab: &NetnsLab, client: &str, server: &str) {
    let server_ip = vm_ip(lab.topology(), server);
    let client_ip = vm_ip(lab.topology(), client);
    let server_socket = lab
        .in_vm(server, || UdpSocket::bind((server_ip, 0)))
        .unwrap()
        .unwrap();
    let client_socket = lab
        .in_vm(client, || UdpSocket::bind((client_ip, 0)))
        .unwrap()
        .unwrap();
    for s in [&server_socket, &client_socket] {
        s.set_read_timeout(Some(WAIT)).unwrap();
    }
    let question = format!("question from {client}");
    client_socket
        .send_to(question.as_bytes(), server_socket.local_addr().unwrap())
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = server_socket
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("UDP {client} -> {server}: {e}"));
    assert_eq!(&buf[..n], question.as_bytes());
    assert_eq!(from, client_socket.local_addr().unwrap());
    server_socket.send_to(b"answer", from).unwrap();
    let (n, from) = client_socket
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("UDP {server} -> {client}: {e}"));
    assert_eq!(&buf[..n], b"answer");
    assert_eq!(from, server_socket.local_addr().unwrap());
}

/// The IPv4 source and destination of an Ethernet frame carrying IPv4.
fn ipv4_pair(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let addr = |at: usize| Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3]);
    Some((addr(26), addr(30)))
}

/// The (agent, src, dst) of every sampled IPv4 frame in the datagrams received until
/// `expected` are all seen or the time is up, with the sample's input ifIndex; also checks every
/// datagram's agent is known.
fn collect_samples(
    socket: &UdpSocket,
    agents: &BTreeSet<Ipv4Addr>,
    expected: &BTreeSet<(Ipv4Addr, Ipv4Addr, Ipv4Addr)>,
) -> BTreeMap<(Ipv4Addr, Ipv4Addr, Ipv4Addr), BTreeSet<u32>> {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut seen = BTreeMap::<_, BTreeSet<u32>>::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline && !expected.iter().all(|e| seen.contains_key(e)) {
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let datagram = Datagram::parse(&buf[..n]).expect("OVS sends valid sFlow v5");
        let Address::Ipv4(agent) = datagram.agent else {
            panic!("agent address {:?} is not IPv4", datagram.agent)
        };
        assert!(agents.contains(&agent), "unknown agent {agent}");
        for sample in datagram.samples() {
            let Sample::Flow(flow) = sample.unwrap() else {
                continue;
            };
            for record in flow.records() {
                if let FlowRecord::SampledHeader(h) = record.unwrap() {
                    assert_eq!(h.protocol, header_protocol::ETHERNET);
                    if let Some((src, dst)) = ipv4_pair(h.header) {
                        assert_eq!(flow.input.format, 0, "a single input port");
                        seen.entry((agent, src, dst))
                            .or_default()
                            .insert(flow.input.value);
                    }
                }
            }
        }
    }
    seen
}

/// The IPv4 pairs of the frames queued on a DPI interface (it is drained).
fn drain_mirror(socket: &PacketSocket) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let mut pairs = Vec::new();
    let mut buf = vec![0u8; 65_536];
    // Bounded: the queue holds what arrived before the call, plus a short grace period.
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        match socket.receive(&mut buf) {
            Ok(Received::Frame(n)) => pairs.extend(ipv4_pair(&buf[..n])),
            Ok(Received::Outgoing) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("reading the DPI interface: {e}"),
        }
    }
    pairs
}

#[test]
fn vms_talk_through_ovs_and_vmdep_switches_with_sflow_and_mirrors() {
    if !root_or_skip("netns_lab", FOR_NETNS_LAB) {
        return;
    }
    let topology = Topology::from_toml(REFERENCE_TOPOLOGY).unwrap();
    let started = Instant::now();
    let lab = NetnsLab::create(
        &topology,
        LabOptions {
            sflow_polling_secs: 1,
            ..LabOptions::default()
        },
    )
    .unwrap();
    eprintln!("lab {} built in {:?}", lab.prefix(), started.elapsed());
    let prefix = lab.prefix().to_string();
    let run_dir = lab.run_dir().to_path_buf();

    // Root-namespace interfaces carry no address at all (not even IPv6 link-local).
    let addrs = std::process::Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .unwrap();
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(
        !addrs.lines().any(|l| l.contains(&format!("{prefix}-"))),
        "an interface of the lab has an address in the root namespace:\n{addrs}"
    );
    let routes = std::process::Command::new("ip")
        .args(["route", "show", "table", "all"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&routes.stdout).contains("10.0.12"));

    // Inside a VM: its address as a /32, its MAC, no IPv6.
    let inside = lab
        .vm_command("web1", "ip")
        .unwrap()
        .args(["-o", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    let inside = String::from_utf8_lossy(&inside.stdout);
    assert!(inside.contains("inet 10.0.120.1/32"), "{inside}");
    assert!(!inside.contains("inet6"), "{inside}");

    // Switches on the lab's interfaces, programmed like the controller would.
    let pipeline = compiled_pipeline(VMDEP_P4);
    let routes = RouteTables::compute(&topology, &Paths::compute(&topology));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut switches = Vec::new();
    let mut primaries = Vec::new();
    for (index, switch) in topology.switches().iter().enumerate() {
        let mut options =
            SwitchOptions::new(u64::from(switch.device_id), "127.0.0.1:0".parse().unwrap());
        options.ports = lab.switch_ports(&switch.name).unwrap();
        assert_eq!(
            options.ports.len(),
            topology.ports(SwitchId(index)).len(),
            "every cabled port of {} has an interface",
            switch.name
        );
        let running = runtime.block_on(start(options)).unwrap();
        primaries.push(runtime.block_on(program_switch(
            &running,
            u64::from(switch.device_id),
            &pipeline,
            routes.table(SwitchId(index)),
        )));
        switches.push(running);
    }

    // sFlow of every bridge to a loopback collector; every packet sampled.
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    lab.set_sflow(collector.local_addr().unwrap(), 1).unwrap();
    assert!(matches!(
        lab.set_sflow("192.0.2.1:6343".parse::<SocketAddr>().unwrap(), 1),
        Err(LabError::TargetNotLoopback(_))
    ));

    // h122 mirrors web1 <-> app1 to its DPI interface.
    let ip = |vm: &str| vm_ip(&topology, vm);
    let dpi = PacketSocket::open(&lab.server("h122").unwrap().dpi).unwrap();
    // h120's same-server frames reach its DPI module without any mirror.
    let local_dpi = PacketSocket::open(&lab.server("h120").unwrap().local_dpi).unwrap();
    lab.set_mirror("h122", &[VmPair::new(ip("web1"), ip("app1"))])
        .unwrap();
    assert!(matches!(
        lab.set_mirror("h122", &[VmPair::new(ip("web1"), ip("web2"))]),
        Err(LabError::PairNotOnServer { .. })
    ));
    assert!(matches!(
        lab.set_mirror(
            "h122",
            &[VmPair::new(ip("app1"), Ipv4Addr::new(10, 9, 9, 9))]
        ),
        Err(LabError::UnknownPairAddress(_))
    ));

    // Across the fabric (s113 -> s111/s112 -> s114), between two servers of s114, and on one
    // server (h120, h121), TCP and UDP.
    tcp_exchange(&lab, "web1", "app1");
    udp_exchange(&lab, "cache1", "db1");
    tcp_exchange(&lab, "client1", "web1");
    udp_exchange(&lab, "client2", "batch1");
    udp_exchange(&lab, "db2", "dns1");

    let agent = |server: &str| match topology
        .server(topology.server_id(server).unwrap())
        .sflow_agent
    {
        std::net::IpAddr::V4(a) => a,
        other => panic!("the reference topology's agents are IPv4, not {other}"),
    };
    let agents: BTreeSet<Ipv4Addr> = topology.servers().iter().map(|s| agent(&s.name)).collect();
    let expected: BTreeSet<(Ipv4Addr, Ipv4Addr, Ipv4Addr)> = [
        ("h120", "web1", "app1"),
        ("h122", "web1", "app1"),
        ("h122", "app1", "web1"),
        ("h120", "app1", "web1"),
        ("h122", "cache1", "db1"),
        ("h123", "db1", "cache1"),
        ("h120", "client1", "web1"),
        ("h120", "web1", "client1"),
        ("h121", "client2", "batch1"),
        ("h121", "batch1", "client2"),
        ("h123", "db2", "dns1"),
        ("h120", "dns1", "db2"),
    ]
    .iter()
    .map(|&(server, src, dst)| (agent(server), ip(src), ip(dst)))
    .collect();
    let seen = collect_samples(&collector, &agents, &expected);
    assert!(lab.sflow_relayed() > 0);
    let missing: Vec<_> = expected.iter().filter(|e| !seen.contains_key(e)).collect();
    assert!(
        missing.is_empty(),
        "no sFlow sample of (agent, src, dst) {missing:?}; seen {seen:?}"
    );
    // A VM's packets are sampled entering from its port; at the far server, entering from the
    // uplink.
    let from_uplink = |server: &str, src: &str, dst: &str| {
        let inputs = &seen[&(agent(server), ip(src), ip(dst))];
        let uplink = lab.uplink_if_index(server).unwrap();
        assert_eq!(inputs.len(), 1, "{server} {src}->{dst}: {inputs:?}");
        inputs.contains(&uplink)
    };
    assert!(!from_uplink("h120", "web1", "app1"));
    assert!(from_uplink("h120", "app1", "web1"));
    assert!(!from_uplink("h122", "app1", "web1"));
    assert!(from_uplink("h122", "web1", "app1"));
    assert!(!from_uplink("h120", "client1", "web1"));

    // The mirror carried web1 <-> app1 both ways, and not cache1's traffic on the same bridge.
    let mirrored = drain_mirror(&dpi);
    let web1_app1 = (ip("web1"), ip("app1"));
    let app1_web1 = (ip("app1"), ip("web1"));
    assert!(mirrored.contains(&web1_app1), "{mirrored:?}");
    assert!(mirrored.contains(&app1_web1), "{mirrored:?}");
    assert!(
        mirrored.iter().all(|p| *p == web1_app1 || *p == app1_web1),
        "only the selected VM's traffic is mirrored: {mirrored:?}"
    );
    // h120's counting rules copied client1 <-> web1 both ways, and nothing that left or
    // entered the server (web1 -> app1, dns1 <-> db2).
    let copied = drain_mirror(&local_dpi);
    let client1_web1 = (ip("client1"), ip("web1"));
    let web1_client1 = (ip("web1"), ip("client1"));
    assert!(copied.contains(&client1_web1), "{copied:?}");
    assert!(copied.contains(&web1_client1), "{copied:?}");
    assert!(
        copied
            .iter()
            .all(|p| *p == client1_web1 || *p == web1_client1),
        "only same-server frames are copied: {copied:?}"
    );
    drop(local_dpi);
    // Without the mirror, nothing more arrives there.
    lab.set_mirror("h122", &[]).unwrap();
    udp_exchange(&lab, "web1", "app1");
    assert_eq!(drain_mirror(&dpi), Vec::new());
    drop(dpi);

    // The bridges' flows did the forwarding (the uplink rule of h120 carried web1's packets).
    let flows = lab.dump_flows("h120").unwrap();
    assert!(
        flows.lines().any(|l| l.contains("priority=200")
            && l.contains("dl_src=02:01:0a:00:78:01")
            && !l.contains("n_packets=0,")),
        "{flows}"
    );

    drop(primaries);
    for running in switches {
        runtime.block_on(running.shutdown()).unwrap();
    }
    lab.destroy().unwrap();
    assert_eq!(lab_names_left(&prefix), Vec::<String>::new());
    assert!(!run_dir.exists(), "{} is left", run_dir.display());
    assert_eq!(processes_using(&run_dir), Vec::<String>::new());
    eprintln!("whole test took {:?}", started.elapsed());
}

/// One switch, one server, two VMs: a lab that builds fast.
fn small_topology() -> Topology {
    Topology::from_toml(
        r#"
        [[switch]]
        name = "s1"
        device_id = 1
        p4runtime = "127.0.0.1:50001"
        vm_pair_capacity = 16

        [[server]]
        name = "h1"
        sflow_agent = "127.0.0.11"
        uplink = "s1:1"

        [[vm]]
        name = "a"
        ipv4 = "10.1.0.1"
        mac = "02:01:0a:01:00:01"
        server = "h1"

        [[vm]]
        name = "b"
        ipv4 = "10.1.0.2"
        mac = "02:01:0a:01:00:02"
        server = "h1"
        "#,
    )
    .unwrap()
}

/// A lab whose owner vanished without removing it (as after a crash) is swept by its prefix.
#[test]
fn leftovers_of_a_vanished_lab_are_removed_by_prefix() {
    if !root_or_skip("netns_lab", FOR_NETNS_LAB) {
        return;
    }
    let small = small_topology();
    let lab = NetnsLab::create(&small, LabOptions::default()).unwrap();
    let prefix = lab.prefix().to_string();
    let run_dir = lab.run_dir().to_path_buf();
    // Same-server traffic works in a lab without any switch.
    udp_exchange(&lab, "a", "b");
    assert!(!lab_names_left(&prefix).is_empty());
    // A second lab with the same prefix is refused: it would sweep the first one's names.
    assert!(matches!(
        NetnsLab::create(
            &small,
            LabOptions {
                prefix: Some(prefix.clone()),
                ..LabOptions::default()
            }
        ),
        Err(LabError::RunDirExists(_))
    ));
    assert!(
        !lab_names_left(&prefix).is_empty(),
        "the refusal removed nothing"
    );
    std::mem::forget(lab);

    let removed = cleanup_leftovers(&prefix).unwrap();
    assert_eq!(removed.processes.len(), 2, "{removed:?}");
    // Two VMs and the OVS namespace.
    assert_eq!(removed.namespaces.len(), 3, "{removed:?}");
    assert!(removed.run_dir.is_some());
    assert_eq!(lab_names_left(&prefix), Vec::<String>::new());
    assert!(!run_dir.exists());
    assert_eq!(processes_using(&run_dir), Vec::<String>::new());
    // A second sweep finds nothing.
    assert!(cleanup_leftovers(&prefix).unwrap().is_empty());
}

/// The Ctrl-C path: a handle sweeps a lab in use; destroying the lab afterwards still succeeds.
#[test]
fn a_cleanup_handle_removes_a_live_lab() {
    if !root_or_skip("netns_lab", FOR_NETNS_LAB) {
        return;
    }
    let lab = NetnsLab::create(&small_topology(), LabOptions::default()).unwrap();
    let prefix = lab.prefix().to_string();
    let run_dir = lab.run_dir().to_path_buf();
    let handle = lab.cleanup_handle();
    let removed = std::thread::spawn(move || handle.run())
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(removed.processes.len(), 2, "{removed:?}");
    assert_eq!(lab_names_left(&prefix), Vec::<String>::new());
    assert!(matches!(
        lab.in_vm("a", || ()),
        Err(LabError::Namespace { .. })
    ));
    assert!(lab.destroy().unwrap().is_empty());
    assert!(!run_dir.exists());
    assert_eq!(processes_using(&run_dir), Vec::<String>::new());
}

/// Leftovers under the default prefix of a process that is gone are swept; a live run's are not.
#[test]
fn leftovers_of_dead_processes_are_found_by_their_prefix() {
    if !root_or_skip("netns_lab", FOR_NETNS_LAB) {
        return;
    }
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let dead_prefix = format!("vd{dead}q");
    let live_prefix = format!("vd{}zz", std::process::id());
    let run = |args: &[&str]| {
        let status = std::process::Command::new("ip")
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "ip {args:?}");
    };
    for prefix in [&dead_prefix, &live_prefix] {
        run(&[
            "link",
            "add",
            &format!("{prefix}-x0"),
            "type",
            "veth",
            "peer",
            "name",
            &format!("{prefix}-x1"),
        ]);
        run(&["netns", "add", &format!("{prefix}-vm")]);
    }
    std::fs::create_dir(std::env::temp_dir().join(format!("{dead_prefix}-ovs"))).unwrap();

    let swept = vmdep::demo::netns::cleanup_dead_runs().unwrap();
    let (_, removed) = swept
        .iter()
        .find(|(prefix, _)| *prefix == dead_prefix)
        .unwrap_or_else(|| panic!("{dead_prefix} not swept: {swept:?}"));
    assert_eq!(removed.namespaces, [format!("{dead_prefix}-vm")]);
    assert!(
        removed.interfaces.contains(&format!("{dead_prefix}-x0"))
            || removed.interfaces.contains(&format!("{dead_prefix}-x1"))
    );
    assert!(removed.run_dir.is_some());
    assert_eq!(lab_names_left(&dead_prefix), Vec::<String>::new());
    assert!(swept.iter().all(|(prefix, _)| *prefix != live_prefix));
    assert_eq!(lab_names_left(&live_prefix).len(), 3);
    cleanup_leftovers(&live_prefix).unwrap();
    assert_eq!(lab_names_left(&live_prefix), Vec::<String>::new());
}
