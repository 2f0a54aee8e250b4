//! The controller's P4Runtime sessions against real `vmdep switch` instances started in process
//! on 127.0.0.1 port 0: arbitration, pipeline push, routes and pair entries, counters read back
//! after frames crossed the switch, a full table, idle timeouts, a backup controller, primacy
//! lost to a higher election id, and a switch restart on the same address.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use vmdep::controller::paths::Route;
use vmdep::controller::rules::{write_request_text, VmdepProgram};
use vmdep::controller::session::{
    Backoff, PairTotals, PipelineBundle, SessionConfig, SessionError, SessionEvent, SwitchSession,
    WriteJournal,
};
use vmdep::controller::topology::MacAddr;
use vmdep::controller::VmPair;
use vmdep::switch::runner::{start, RunningSwitch, SwitchOptions};
use vmdep::wire::{EthernetAddress, FrameRepr, TransportRepr, UdpRepr};

mod support;

use support::process::venv_python;
use support::programs::{compiled_pipeline, vmdep_p4_with_pair_table_size, VMDEP_P4};

const DEVICE: u64 = 7;
const WAIT: Duration = Duration::from_secs(10);
const SWITCH: &str = "s1";

/// vmdep.p4 compiled, with `vm_pair` holding `vm_pair_size` entries when given.
fn pipeline(vm_pair_size: Option<u32>) -> Arc<PipelineBundle> {
    let source = match vm_pair_size {
        Some(size) => vmdep_p4_with_pair_table_size(size),
        None => VMDEP_P4.to_string(),
    };
    Arc::new(compiled_pipeline(&source))
}

/// A switch with in-process ports 1 and 2.
async fn switch_on(addr: SocketAddr) -> RunningSwitch {
    let mut options = SwitchOptions::new(DEVICE, addr);
    options.channel_ports = vec![1, 2];
    options.idle_scan_interval = Duration::from_millis(10);
    start(options).await.unwrap()
}

fn config(addr: SocketAddr, election_id: u128, pipeline: Arc<PipelineBundle>) -> SessionConfig {
    let mut config = SessionConfig::new(SWITCH, addr, DEVICE, election_id, pipeline);
    config.reconnect = Backoff {
        min: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    config.rpc_timeout = Duration::from_secs(5);
    config
}

async fn next_event(events: &mut mpsc::Receiver<SessionEvent>) -> SessionEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("no session event in time")
        .expect("events channel closed")
}

async fn ready(events: &mut mpsc::Receiver<SessionEvent>) {
    match next_event(events).await {
        SessionEvent::Ready {
            switch,
            dropped_pairs,
        } => {
            assert_eq!(switch, SWITCH);
            assert!(dropped_pairs.is_empty(), "{dropped_pairs:?}");
        }
        other => panic!("expected Ready, got {other:?}"),
    }
}

async fn spawn(config: SessionConfig) -> (SwitchSession, mpsc::Receiver<SessionEvent>) {
    let (tx, rx) = mpsc::channel(64);
    (SwitchSession::spawn(config, tx).unwrap(), rx)
}

const VM_A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const VM_B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);

fn routes() -> Vec<Route> {
    vec![
        Route {
            prefix: VM_B,
            prefix_len: 32,
            src_mac: MacAddr([0x02, 0, 0, 0, 7, 2]),
            dst_mac: MacAddr([0x02, 0x01, 10, 0, 2, 1]),
            egress_port: 2,
        },
        Route {
            prefix: Ipv4Addr::new(10, 0, 1, 0),
            prefix_len: 24,
            src_mac: MacAddr([0x02, 0, 0, 0, 7, 1]),
            dst_mac: MacAddr([0x02, 0x01, 10, 0, 1, 1]),
            egress_port: 1,
        },
    ]
}

/// A UDP frame from VM A to VM B (60 bytes, checksums right).
fn frame_a_to_b() -> Vec<u8> {
    FrameRepr::new(
        EthernetAddress([0x02, 0x01, 10, 0, 1, 1]),
        EthernetAddress([0x02, 0, 0, 0, 7, 1]),
        None,
        VM_A,
        VM_B,
        TransportRepr::Udp(UdpRepr {
            src_port: 40000,
            dst_port: 5432,
        }),
        b"eighteen bytes....",
    )
    .unwrap()
    .to_vec()
    .unwrap()
}

/// Sends `n` frames A→B into port 1 and checks that they leave on port 2, rewritten by the route.
async fn send_a_to_b(switch: &mut RunningSwitch, n: usize) {
    let frame = frame_a_to_b();
    for _ in 0..n {
        switch.channel_ports[&1]
            .to_switch
            .send(frame.clone())
            .await
            .unwrap();
    }
    let out = switch.channel_ports.get_mut(&2).unwrap();
    for _ in 0..n {
        let got = tokio::time::timeout(WAIT, out.from_switch.recv())
            .await
            .expect("the frame did not leave on port 2")
            .unwrap();
        assert_eq!(
            &got[0..6],
            &[0x02, 0x01, 10, 0, 2, 1],
            "dst MAC from the route"
        );
        assert_eq!(got.len(), frame.len());
    }
}

fn totals(packets: u64, resets: u32) -> PairTotals {
    PairTotals {
        packets,
        bytes: packets * frame_a_to_b().len() as u64,
        resets,
    }
}

#[tokio::test]
async fn routes_and_pairs_are_written_and_counted() {
    let mut switch = switch_on("127.0.0.1:0".parse().unwrap()).await;
    let bundle = pipeline(None);
    let journal = WriteJournal::new(100);
    let mut cfg = config(switch.grpc_addr, 10, bundle.clone());
    cfg.journal = Some(journal.clone());
    let (session, mut events) = spawn(cfg).await;
    ready(&mut events).await;
    let status = session.status();
    assert!(status.connected && status.primary && status.pipeline_pushed);

    session.install_routes(routes()).await.unwrap();
    let pair = VmPair::new(VM_A, VM_B);
    session.insert_pair(pair, None).await.unwrap();
    assert!(matches!(
        session.insert_pair(pair, None).await,
        Err(SessionError::Refused {
            code: tonic::Code::AlreadyExists,
            ..
        })
    ));
    send_a_to_b(&mut switch, 5).await;
    assert_eq!(
        session.read_pairs().await.unwrap(),
        vec![(pair, totals(5, 0))]
    );
    send_a_to_b(&mut switch, 2).await;
    assert_eq!(session.delete_pair(pair).await.unwrap(), Some(totals(7, 0)));
    assert_eq!(session.read_pairs().await.unwrap(), vec![]);
    assert_eq!(session.delete_pair(pair).await.unwrap(), None);

    // Installing the same routes again writes nothing; one route fewer deletes just that one.
    session.install_routes(routes()).await.unwrap();
    session
        .install_routes(routes()[..1].to_vec())
        .await
        .unwrap();

    let status = session.status();
    assert_eq!((status.routes, status.pairs), (1, 0));
    let writes = status.rpcs["write"];
    assert_eq!((writes.calls, writes.errors), (5, 1));
    assert_eq!(
        status.rpcs["read"].calls, 5,
        "2 at connection, 2 read_pairs, 1 before the delete"
    );
    assert_eq!(
        status.rpcs["set_pipeline"].calls, 1,
        "RECONCILE_AND_COMMIT loads a fresh switch"
    );

    let program = VmdepProgram::new(bundle.p4info.clone()).unwrap();
    let text: String = journal
        .requests()
        .iter()
        .map(|r| write_request_text(r, &program))
        .collect();
    insta::assert_snapshot!(text);

    session.shutdown().await;
    assert!(matches!(
        session.read_pairs().await,
        Err(SessionError::Closed { .. })
    ));
    switch.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_table_is_told_apart_and_inserts_are_batched() {
    let switch = switch_on("127.0.0.1:0".parse().unwrap()).await;
    let journal = WriteJournal::new(1000);
    let mut cfg = config(switch.grpc_addr, 1, pipeline(Some(150)));
    cfg.max_batch = 64;
    cfg.journal = Some(journal.clone());
    let (session, mut events) = spawn(cfg).await;
    ready(&mut events).await;

    let inserts: Vec<_> = (0..200u32)
        .map(|i| {
            let session = session.clone();
            let pair = VmPair::new(Ipv4Addr::from(0x0a00_0000 + i), Ipv4Addr::new(10, 9, 9, 9));
            tokio::spawn(async move { session.insert_pair(pair, None).await })
        })
        .collect();
    let mut ok = 0;
    let mut full = 0;
    for insert in inserts {
        match insert.await.unwrap() {
            Ok(()) => ok += 1,
            Err(SessionError::TableFull { switch, .. }) => {
                assert_eq!(switch, SWITCH);
                full += 1
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!((ok, full), (150, 50));
    let requests = journal.requests();
    assert!(requests.iter().all(|r| r.updates.len() <= 64));
    assert_eq!(requests.iter().map(|r| r.updates.len()).sum::<usize>(), 200);
    assert!(
        requests.len() < 20,
        "{} WriteRequests for 200 concurrent inserts",
        requests.len()
    );
    let held = session.read_pairs().await.unwrap();
    assert_eq!(held.len(), 150);
    assert_eq!(session.status().pairs, 150);

    // Concurrent deletes are coalesced too: one Read of the final counters, one Write.
    journal.take();
    let reads_before = session.status().rpcs["read"].calls;
    let deletes: Vec<_> = held
        .iter()
        .map(|&(pair, _)| {
            let session = session.clone();
            tokio::spawn(async move { session.delete_pair(pair).await })
        })
        .collect();
    for delete in deletes {
        assert_eq!(delete.await.unwrap().unwrap(), Some(PairTotals::default()));
    }
    let requests = journal.requests();
    assert_eq!(requests.iter().map(|r| r.updates.len()).sum::<usize>(), 150);
    assert!(requests.len() < 20, "{} WriteRequests", requests.len());
    assert!(session.status().rpcs["read"].calls - reads_before < 20);
    assert_eq!(session.read_pairs().await.unwrap(), vec![]);
    session.shutdown().await;
    switch.shutdown().await.unwrap();
}

#[tokio::test]
async fn idle_timeouts_arrive_as_events() {
    let switch = switch_on("127.0.0.1:0".parse().unwrap()).await;
    let (session, mut events) = spawn(config(switch.grpc_addr, 1, pipeline(None))).await;
    ready(&mut events).await;
    let quiet = VmPair::new(VM_A, VM_B);
    let kept = VmPair::new(VM_B, VM_A);
    session
        .insert_pair(quiet, Some(Duration::from_millis(100)))
        .await
        .unwrap();
    session.insert_pair(kept, None).await.unwrap();
    match next_event(&mut events).await {
        SessionEvent::IdleTimeout { switch, pairs } => {
            assert_eq!(switch, SWITCH);
            assert_eq!(pairs, vec![quiet]);
        }
        other => panic!("expected IdleTimeout, got {other:?}"),
    }
    // The entry stays until the controller deletes it.
    assert_eq!(session.read_pairs().await.unwrap().len(), 2);
    assert!(session.delete_pair(quiet).await.unwrap().is_some());
    session.shutdown().await;
    switch.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_lower_election_id_is_not_primary_and_a_higher_one_takes_over() {
    let switch = switch_on("127.0.0.1:0".parse().unwrap()).await;
    let bundle = pipeline(None);
    let (primary, mut primary_events) = spawn(config(switch.grpc_addr, 10, bundle.clone())).await;
    ready(&mut primary_events).await;

    let (backup, mut backup_events) = spawn(config(switch.grpc_addr, 5, bundle.clone())).await;
    assert_eq!(
        next_event(&mut backup_events).await,
        SessionEvent::NotPrimary {
            switch: SWITCH.to_string(),
            ours: 5,
            primary_election_id: Some(10),
        }
    );
    assert!(!backup.status().primary);
    assert!(matches!(
        backup.insert_pair(VmPair::new(VM_A, VM_B), None).await,
        Err(SessionError::NotPrimary { .. })
    ));
    // The backup never wrote: the primary's view is intact.
    let pair = VmPair::new(VM_A, VM_B);
    primary.insert_pair(pair, None).await.unwrap();

    let (newer, mut newer_events) = spawn(config(switch.grpc_addr, 20, bundle)).await;
    match next_event(&mut newer_events).await {
        SessionEvent::Ready { dropped_pairs, .. } => assert!(dropped_pairs.is_empty()),
        other => panic!("expected Ready, got {other:?}"),
    }
    match next_event(&mut primary_events).await {
        SessionEvent::Lost { reason, .. } => {
            assert!(reason.contains("no longer primary"), "{reason}")
        }
        other => panic!("expected Lost, got {other:?}"),
    }
    match next_event(&mut primary_events).await {
        SessionEvent::NotPrimary {
            primary_election_id,
            ..
        } => assert_eq!(primary_election_id, Some(20)),
        other => panic!("expected NotPrimary, got {other:?}"),
    }
    // The new primary owns the table: it holds no pairs, so it removed the old primary's.
    assert_eq!(newer.read_pairs().await.unwrap(), vec![]);
    for session in [primary, backup, newer] {
        session.shutdown().await;
    }
    switch.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restarted_switch_gets_everything_back_and_totals_keep_growing() {
    let mut switch = switch_on("127.0.0.1:0".parse().unwrap()).await;
    let addr = switch.grpc_addr;
    let (session, mut events) = spawn(config(addr, 3, pipeline(None))).await;
    ready(&mut events).await;
    session.install_routes(routes()).await.unwrap();
    let pair = VmPair::new(VM_A, VM_B);
    session.insert_pair(pair, None).await.unwrap();
    send_a_to_b(&mut switch, 3).await;
    assert_eq!(
        session.read_pairs().await.unwrap(),
        vec![(pair, totals(3, 0))]
    );
    // Counted after the last read: lost with the switch.
    send_a_to_b(&mut switch, 1).await;

    switch.shutdown().await.unwrap();
    match next_event(&mut events).await {
        SessionEvent::Lost { switch, .. } => assert_eq!(switch, SWITCH),
        other => panic!("expected Lost, got {other:?}"),
    }
    assert!(!session.status().connected);
    let mut switch = switch_on(addr).await;
    ready(&mut events).await;
    let status = session.status();
    assert_eq!(status.connections, 2);
    assert!(status.reconnections >= 1);
    assert_eq!((status.routes, status.pairs), (2, 1));

    // The routes are back (frames are forwarded) and the pair counts again from zero.
    assert_eq!(
        session.read_pairs().await.unwrap(),
        vec![(pair, totals(3, 1))]
    );
    send_a_to_b(&mut switch, 2).await;
    assert_eq!(
        session.read_pairs().await.unwrap(),
        vec![(pair, totals(5, 1))]
    );
    assert_eq!(session.delete_pair(pair).await.unwrap(), Some(totals(5, 1)));
    session.shutdown().await;
    switch.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_switch_is_reported_not_waited_for() {
    // A port nobody listens on: bind, note it, close.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (session, _events) = spawn(config(addr, 1, pipeline(None))).await;
    let pair = VmPair::new(VM_A, VM_B);
    let answer = tokio::time::timeout(WAIT, session.insert_pair(pair, None))
        .await
        .unwrap();
    assert!(
        matches!(answer, Err(SessionError::NotConnected { .. })),
        "{answer:?}"
    );
    // Routes stay desired (they are written at the next connection).
    let answer = session.install_routes(routes()).await;
    assert!(matches!(answer, Err(SessionError::NotConnected { .. })));
    let status = session.status();
    assert!(!status.connected && !status.primary);
    assert!(status.rpcs["connect"].errors >= 1);
    let error = status.last_error.unwrap();
    assert!(error.contains("refused"), "{error}");
    tokio::time::timeout(WAIT, session.shutdown())
        .await
        .unwrap();
}

/// A TCP relay to the switch whose connections the test can cut while the switch keeps running
/// (a network failure, not a restart).
struct Relay {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Relay { addr, cut, task }
    }

    /// Drops every open connection (new ones are relayed again).
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

#[tokio::test]
async fn a_broken_connection_keeps_the_switch_state_and_the_counts() {
    let mut switch = switch_on("127.0.0.1:0".parse().unwrap()).await;
    let relay = Relay::start(switch.grpc_addr).await;
    let journal = WriteJournal::new(100);
    let mut cfg = config(relay.addr, 3, pipeline(None));
    cfg.journal = Some(journal.clone());
    let (session, mut events) = spawn(cfg).await;
    ready(&mut events).await;
    session.install_routes(routes()).await.unwrap();
    let pair = VmPair::new(VM_A, VM_B);
    session.insert_pair(pair, None).await.unwrap();
    send_a_to_b(&mut switch, 3).await;
    assert_eq!(
        session.read_pairs().await.unwrap(),
        vec![(pair, totals(3, 0))]
    );
    send_a_to_b(&mut switch, 1).await;
    let writes_before = journal.requests().len();

    relay.cut();
    match next_event(&mut events).await {
        SessionEvent::Lost { switch, .. } => assert_eq!(switch, SWITCH),
        other => panic!("expected Lost, got {other:?}"),
    }
    ready(&mut events).await;
    // The switch still runs our pipeline: RECONCILE_AND_COMMIT kept its entries, so nothing
    // was written again and the packet counted while the session was away is not lost.
    assert_eq!(journal.requests().len(), writes_before);
    assert_eq!(
        session.read_pairs().await.unwrap(),
        vec![(pair, totals(4, 0))]
    );
    send_a_to_b(&mut switch, 1).await;
    assert_eq!(
        session.read_pairs().await.unwrap(),
        vec![(pair, totals(5, 0))]
    );
    assert_eq!(session.status().connections, 2);
    session.shutdown().await;
    relay.task.abort();
    switch.shutdown().await.unwrap();
}

/// The throughput batching is for: 10 000 concurrent inserts, then as many deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_pairs_in_batches() {
    let switch = switch_on("127.0.0.1:0".parse().unwrap()).await;
    let journal = WriteJournal::new(1000);
    let mut cfg = config(switch.grpc_addr, 1, pipeline(None));
    cfg.journal = Some(journal.clone());
    let (session, mut events) = spawn(cfg).await;
    ready(&mut events).await;
    let pairs: Vec<VmPair> = (0..10_000u32)
        .map(|i| {
            VmPair::new(
                Ipv4Addr::from(0x0a00_0000 + i),
                Ipv4Addr::new(10, 200, 0, 1),
            )
        })
        .collect();
    let started = std::time::Instant::now();
    let inserts: Vec<_> = pairs
        .iter()
        .map(|&pair| {
            let session = session.clone();
            tokio::spawn(async move { session.insert_pair(pair, None).await })
        })
        .collect();
    for insert in inserts {
        insert.await.unwrap().unwrap();
    }
    let inserted = started.elapsed();
    assert_eq!(session.read_pairs().await.unwrap().len(), 10_000);
    let started = std::time::Instant::now();
    let deletes: Vec<_> = pairs
        .iter()
        .map(|&pair| {
            let session = session.clone();
            tokio::spawn(async move { session.delete_pair(pair).await })
        })
        .collect();
    for delete in deletes {
        assert!(delete.await.unwrap().unwrap().is_some());
    }
    let deleted = started.elapsed();
    let requests = journal.requests();
    eprintln!(
        "10k inserts in {inserted:?}, 10k deletes in {deleted:?}, {} WriteRequests",
        requests.len()
    );
    assert!(requests.iter().all(|r| r.updates.len() <= 1000));
    assert!(requests.len() < 200, "{} WriteRequests", requests.len());
    assert_eq!(session.status().pairs, 0);
    session.shutdown().await;
    switch.shutdown().await.unwrap();
}

/// The official client's view of what the session wrote: names from the P4Info the session
/// pushed, values decoded by p4runtime-shell, counters through its DirectCounterEntry.
#[tokio::test]
async fn p4runtime_shell_reads_back_what_the_session_wrote() {
    let mut switch = switch_on("127.0.0.1:0".parse().unwrap()).await;
    let (session, mut events) = spawn(config(switch.grpc_addr, 10, pipeline(None))).await;
    ready(&mut events).await;
    session.install_routes(routes()).await.unwrap();
    let pair = VmPair::new(VM_A, VM_B);
    session
        .insert_pair(pair, Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    send_a_to_b(&mut switch, 4).await;

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/p4rt_shell_read_back.py"
    );
    let run = tokio::process::Command::new(venv_python())
        .arg(script)
        .args(["--grpc-addr", &switch.grpc_addr.to_string()])
        .args(["--device-id", &DEVICE.to_string()])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("p4runtime-shell did not finish")
        .unwrap();
    assert!(
        output.status.success(),
        "p4runtime-shell failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let read: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let ip = |a: Ipv4Addr| u64::from(u32::from(a));
    let mac = |m: [u8; 6]| m.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let expected = serde_json::json!({
        "MyIngress.ipv4_lpm": [
            {
                "match": {"hdr.ipv4.dstAddr": {"lpm": ip(Ipv4Addr::new(10, 0, 1, 0)), "prefix_len": 24}},
                "action": "MyIngress.set_next_hop",
                "params": {"src_mac": mac([0x02, 0, 0, 0, 7, 1]), "dst_mac": mac([0x02, 0x01, 10, 0, 1, 1]), "port": 1},
                "priority": 0,
                "idle_timeout_ns": 0,
            },
            {
                "match": {"hdr.ipv4.dstAddr": {"lpm": ip(VM_B), "prefix_len": 32}},
                "action": "MyIngress.set_next_hop",
                "params": {"src_mac": mac([0x02, 0, 0, 0, 7, 2]), "dst_mac": mac([0x02, 0x01, 10, 0, 2, 1]), "port": 2},
                "priority": 0,
                "idle_timeout_ns": 0,
            },
        ],
        "MyIngress.vm_pair": [
            {
                "match": {"hdr.ipv4.srcAddr": {"exact": ip(VM_A)}, "hdr.ipv4.dstAddr": {"exact": ip(VM_B)}},
                "action": "MyIngress.count_pair",
                "params": {},
                "priority": 0,
                "idle_timeout_ns": 3_600_000_000_000u64,
                "packets": 4,
                "bytes": 4 * frame_a_to_b().len(),
            },
        ],
    });
    assert_eq!(read, expected);
    // The backup's reads did not disturb the primary session.
    assert_eq!(
        session.read_pairs().await.unwrap(),
        vec![(pair, totals(4, 0))]
    );
    assert!(session.status().primary);
    session.shutdown().await;
    switch.shutdown().await.unwrap();
}

#[tokio::test]
async fn routes_that_cannot_be_written_are_reported_and_the_rest_installed() {
    let switch = switch_on("127.0.0.1:0".parse().unwrap()).await;
    let (session, mut events) = spawn(config(switch.grpc_addr, 1, pipeline(None))).await;
    ready(&mut events).await;
    let mut wanted = routes();
    wanted.push(Route {
        prefix: Ipv4Addr::new(10, 0, 3, 0),
        prefix_len: 24,
        egress_port: 600,
        ..wanted[0]
    });
    match session.install_routes(wanted.clone()).await {
        Err(SessionError::Updates { switch, failed }) => {
            assert_eq!(switch, SWITCH);
            assert_eq!(failed.len(), 1);
            assert_eq!(failed[0].update, "INSERT 10.0.3.0/24");
            assert_eq!(failed[0].code, tonic::Code::InvalidArgument);
            assert!(
                failed[0].message.contains("port 600"),
                "{}",
                failed[0].message
            );
        }
        other => panic!("expected Updates, got {other:?}"),
    }
    assert_eq!(session.status().routes, 2);
    // Without the bad route, nothing is left to write.
    session.install_routes(routes()).await.unwrap();
    assert_eq!(session.status().rpcs["write"].calls, 1);
    session.shutdown().await;
    switch.shutdown().await.unwrap();
}
