//! The workload over real kernel sockets: each of the workload's conversations
//! ([`crate::demo::workload::conversations`]) is played by the VMs' own TCP/IP stacks. Servers
//! listen on their ports inside their VM; a client binds its workload address inside its VM,
//! connects and writes each request, the server writes each response, every write at the
//! workload's time; the client closes when the workload does. The kernels make the frames
//! (segments, ACKs, handshakes), so the replay's truth is a capture of the VMs' interfaces, not
//! the workload's frames.
//!
//! Time is the workload's, stepped by [`ReplayClock`]: the run lets it go to the end of one
//! controller window, during which the conversations act when their time comes, then holds it
//! there until the window is measured. A conversation late for its time (its peer's answer took
//! longer than the workload says) acts at once, while the run waits for the window to settle;
//! whatever is due after the window's end waits for the next window.
//!
//! It owns the sockets and the clock; it reads no frame (the capture does) and touches nothing
//! of the lab but its VMs' namespaces.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::controller::topology::VmId;
use crate::demo::netns::NetnsLab;
use crate::demo::workload::conversations::Conversation;
use crate::demo::workload::Transport;

use super::NetnsDemoError;

/// How long any one step of a conversation (connect, accept, a read) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server socket pauses after a failed accept or receive.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Datagrams a UDP server socket queues per conversation.
const DATAGRAM_QUEUE: usize = 64;

/// The workload's clock: it runs until the current window's end and holds there.
#[derive(Debug)]
pub struct ReplayClock {
    state: watch::Sender<ClockState>,
    /// Conversations doing something now (not waiting for a later window, not done).
    busy: AtomicUsize,
}

#[derive(Debug, Clone, Copy)]
struct ClockState {
    /// Workload time at `since`.
    base: Duration,
    since: Instant,
    /// Workload time the replay may not reach: the current window's end.
    limit: Duration,
}

impl ReplayClock {
    pub fn new() -> Arc<ReplayClock> {
        Arc::new(ReplayClock {
            state: watch::Sender::new(ClockState {
                base: Duration::ZERO,
                since: Instant::now(),
                limit: Duration::ZERO,
            }),
            busy: AtomicUsize::new(0),
        })
    }

    /// Lets the clock run from the previous window's end to `end`; returns when (real time)
    /// it gets there.
    pub fn run_window(&self, end: Duration) -> Instant {
        let now = Instant::now();
        let mut reached = now;
        self.state.send_modify(|s| {
            s.base = s.limit;
            s.since = now;
            reached = now + end.saturating_sub(s.limit);
            s.limit = end;
        });
        reached
    }

    /// Conversations still acting in the current window.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    /// Waits until workload time `at`. A caller counts as busy except while it waits for a
    /// later window.
    async fn wait_until(&self, at: Duration) {
        let mut state = self.state.subscribe();
        loop {
            let s = *state.borrow_and_update();
            if at < s.limit {
                tokio::time::sleep_until(s.since + at.saturating_sub(s.base)).await;
                return;
            }
            self.busy.fetch_sub(1, Ordering::SeqCst);
            let changed = state.changed().await;
            self.busy.fetch_add(1, Ordering::SeqCst);
            if changed.is_err() {
                return;
            }
        }
    }
}

/// Marks a conversation busy from its start to its end, however it ends.
struct BusyGuard(Arc<ReplayClock>);

impl BusyGuard {
    fn new(clock: &Arc<ReplayClock>) -> BusyGuard {
        clock.busy.fetch_add(1, Ordering::SeqCst);
        BusyGuard(Arc::clone(clock))
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where accepted connections and received datagrams wait for their conversation, by the
/// client's address.
type Waiting<T> = Arc<Mutex<HashMap<SocketAddrV4, T>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A server port of a VM: its socket's serving task and who waits on it.
struct ServerPort {
    accepted: Waiting<oneshot::Sender<TcpStream>>,
    datagrams: Waiting<mpsc::Sender<Vec<u8>>>,
    udp: Option<Arc<UdpSocket>>,
    task: JoinHandle<()>,
}

impl Drop for ServerPort {
    fn drop(&mut self) {
        // The serving task owns the socket: a replay that stops closes its ports.
        self.task.abort();
    }
}

/// Replays conversations; see the module documentation.
pub struct Replay {
    lab: Arc<NetnsLab>,
    clock: Arc<ReplayClock>,
    servers: HashMap<(SocketAddrV4, Transport), ServerPort>,
    running: JoinSet<Result<(), String>>,
    /// Conversations started.
    pub started: usize,
    /// UDP datagrams that never arrived.
    lost_datagrams: Arc<AtomicU64>,
    /// Connections the servers accepted that no conversation waited for.
    strays: Arc<AtomicU64>,
}

impl Replay {
    /// Opens every server socket the conversations need, inside the servers' VMs.
    pub async fn open(
        lab: Arc<NetnsLab>,
        clock: Arc<ReplayClock>,
        conversations: &[Conversation],
    ) -> Result<Replay, NetnsDemoError> {
        let mut wanted: BTreeMap<(SocketAddrV4, bool), VmId> = BTreeMap::new();
        for c in conversations {
            wanted.insert((c.server, c.transport == Transport::Tcp), c.server_vm);
        }
        let strays = Arc::new(AtomicU64::new(0));
        let mut servers = HashMap::new();
        for ((addr, tcp), vm) in wanted {
            let vm_name = lab.topology().vm(vm).name.clone();
            let accepted: Waiting<oneshot::Sender<TcpStream>> = Arc::default();
            let datagrams: Waiting<mpsc::Sender<Vec<u8>>> = Arc::default();
            let socket_error = |e: std::io::Error| {
                NetnsDemoError::Replay(vec![format!(
                    "{vm_name}: cannot open {} {addr}: {e}",
                    if tcp { "TCP" } else { "UDP" }
                )])
            };
            let (transport, udp, task) = if tcp {
                let listener = lab
                    .in_vm(&vm_name, move || std::net::TcpListener::bind(addr))?
                    .and_then(|l| {
                        l.set_nonblocking(true)?;
                        TcpListener::from_std(l)
                    })
                    .map_err(socket_error)?;
                let task = tokio::spawn(accept_loop(
                    listener,
                    Arc::clone(&accepted),
                    Arc::clone(&strays),
                ));
                (Transport::Tcp, None, task)
            } else {
                let socket = lab
                    .in_vm(&vm_name, move || std::net::UdpSocket::bind(addr))?
                    .and_then(|s| {
                        s.set_nonblocking(true)?;
                        UdpSocket::from_std(s)
                    })
                    .map_err(socket_error)?;
                let socket = Arc::new(socket);
                let task = tokio::spawn(datagram_loop(
                    Arc::clone(&socket),
                    Arc::clone(&datagrams),
                    Arc::clone(&strays),
                ));
                (Transport::Udp, Some(socket), task)
            };
            servers.insert(
                (addr, transport),
                ServerPort {
                    accepted,
                    datagrams,
                    udp,
                    task,
                },
            );
        }
        Ok(Replay {
            lab,
            clock,
            servers,
            running: JoinSet::new(),
            started: 0,
            lost_datagrams: Arc::new(AtomicU64::new(0)),
            strays,
        })
    }

    /// Starts a conversation: it waits for its time on the clock.
    pub fn start(&mut self, conversation: Conversation) {
        let Some(server) = self
            .servers
            .get(&(conversation.server, conversation.transport))
        else {
            // `open` made a socket for every conversation it was given.
            self.running
                .spawn(async move { Err(format!("no server socket for {}", conversation.server)) });
            return;
        };
        let busy = BusyGuard::new(&self.clock);
        let clock = Arc::clone(&self.clock);
        let lab = Arc::clone(&self.lab);
        let client_vm = self.lab.topology().vm(conversation.client_vm).name.clone();
        self.started += 1;
        match conversation.transport {
            Transport::Tcp => {
                let accepted = Arc::clone(&server.accepted);
                self.running.spawn(async move {
                    let _busy = busy;
                    let what = describe(&conversation);
                    tcp_conversation(lab, clock, client_vm, conversation, accepted)
                        .await
                        .map_err(|e| format!("{what}: {e}"))
                });
            }
            Transport::Udp => {
                let datagrams = Arc::clone(&server.datagrams);
                let socket = server.udp.clone();
                let lost = Arc::clone(&self.lost_datagrams);
                self.running.spawn(async move {
                    let _busy = busy;
                    let what = describe(&conversation);
                    let Some(socket) = socket else {
                        return Err(format!("{what}: no UDP server socket"));
                    };
                    udp_conversation(lab, clock, client_vm, conversation, datagrams, socket, lost)
                        .await
                        .map_err(|e| format!("{what}: {e}"))
                });
            }
        }
    }

    /// Failures of the conversations that ended so far (they are collected once).
    pub fn take_failures(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        while let Some(done) = self.running.try_join_next() {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(format!("a conversation task failed: {e}")),
            }
        }
        failures
    }

    /// UDP datagrams that did not arrive within [`STEP_TIMEOUT`].
    pub fn lost_datagrams(&self) -> u64 {
        self.lost_datagrams.load(Ordering::Relaxed)
    }

    /// Connections and datagrams no conversation waited for.
    pub fn strays(&self) -> u64 {
        self.strays.load(Ordering::Relaxed)
    }

    /// Waits for every conversation to end (bounded by their own timeouts) and closes the
    /// server sockets; returns every failure.
    pub async fn finish(mut self) -> Vec<String> {
        let mut failures = Vec::new();
        while let Some(done) = self.running.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(format!("a conversation task failed: {e}")),
            }
        }
        failures
    }
}

fn describe(c: &Conversation) -> String {
    let transport = match c.transport {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
    };
    format!("{transport} {} -> {}", c.client, c.server)
}

/// Hands each accepted connection to the conversation waiting for its client address.
async fn accept_loop(
    listener: TcpListener,
    accepted: Waiting<oneshot::Sender<TcpStream>>,
    strays: Arc<AtomicU64>,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            // A failed accept (out of descriptors, a connection reset before it was taken)
            // is retried after a pause rather than in a spin.
            tokio::time::sleep(ERROR_PAUSE).await;
            continue;
        };
        let waiting = match peer {
            SocketAddr::V4(peer) => lock(&accepted).remove(&peer),
            SocketAddr::V6(_) => None,
        };
        match waiting {
            Some(conversation) => {
                let _ = conversation.send(stream);
            }
            None => {
                strays.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Hands each datagram to the conversation of its sender.
async fn datagram_loop(
    socket: Arc<UdpSocket>,
    datagrams: Waiting<mpsc::Sender<Vec<u8>>>,
    strays: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            tokio::time::sleep(ERROR_PAUSE).await;
            continue;
        };
        let waiting = match from {
            SocketAddr::V4(from) => lock(&datagrams).get(&from).cloned(),
            SocketAddr::V6(_) => None,
        };
        match waiting {
            Some(conversation) if conversation.try_send(buf[..n].to_vec()).is_ok() => {}
            _ => {
                strays.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn within<T>(
    what: &str,
    step: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(STEP_TIMEOUT, step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no progress within {STEP_TIMEOUT:?}")),
    }
}

async fn tcp_conversation(
    lab: Arc<NetnsLab>,
    clock: Arc<ReplayClock>,
    client_vm: String,
    c: Conversation,
    accepted: Waiting<oneshot::Sender<TcpStream>>,
) -> Result<(), String> {
    clock.wait_until(c.opened).await;
    let (accept_tx, accept_rx) = oneshot::channel();
    lock(&accepted).insert(c.client, accept_tx);
    let client_addr = c.client;
    // The socket is the client VM's: made in its namespace, used from here.
    let socket = tokio::task::spawn_blocking(move || {
        lab.in_vm(&client_vm, move || {
            let socket = TcpSocket::new_v4()?;
            // The workload's client port; an earlier connection of it may be in TIME_WAIT.
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::V4(client_addr))?;
            Ok::<_, std::io::Error>(socket)
        })
    })
    .await
    .map_err(|e| format!("opening the client socket: {e}"))?
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("binding {client_addr}: {e}"))?;
    let connected = within("connect", socket.connect(SocketAddr::V4(c.server))).await;
    let mut client = match connected {
        Ok(stream) => stream,
        Err(e) => {
            lock(&accepted).remove(&c.client);
            return Err(e);
        }
    };
    let mut server = within("accept", async {
        accept_rx
            .await
            .map_err(|_| std::io::Error::other("the listener stopped"))
    })
    .await?;
    // The workload sends each write at once, as one burst.
    for s in [&client, &server] {
        s.set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    }
    let mut buf = Vec::new();
    for m in &c.messages {
        clock.wait_until(m.at).await;
        let (from, to) = if m.from_client {
            (&mut client, &mut server)
        } else {
            (&mut server, &mut client)
        };
        buf.resize(m.payload.len(), 0);
        let write = async { from.write_all(&m.payload).await };
        let read = async { to.read_exact(&mut buf).await.map(drop) };
        within("exchange", async {
            tokio::try_join!(write, read).map(drop)
        })
        .await?;
        if buf != m.payload {
            return Err("the bytes arrived changed".into());
        }
    }
    if let Some(closed) = c.closed {
        clock.wait_until(closed).await;
    }
    // The client closes first, as in the workload: FIN, the server's FIN, the last ACK.
    within("close", client.shutdown()).await?;
    let mut rest = [0u8; 1];
    if within("server sees the close", server.read(&mut rest)).await? != 0 {
        return Err("data after the last message".into());
    }
    within("server closes", server.shutdown()).await?;
    if within("client sees the close", client.read(&mut rest)).await? != 0 {
        return Err("data after the server's last message".into());
    }
    Ok(())
}

async fn udp_conversation(
    lab: Arc<NetnsLab>,
    clock: Arc<ReplayClock>,
    client_vm: String,
    c: Conversation,
    datagrams: Waiting<mpsc::Sender<Vec<u8>>>,
    server: Arc<UdpSocket>,
    lost: Arc<AtomicU64>,
) -> Result<(), String> {
    clock.wait_until(c.opened).await;
    let (to_server_tx, mut to_server) = mpsc::channel(DATAGRAM_QUEUE);
    lock(&datagrams).insert(c.client, to_server_tx);
    let result = async {
        let client_addr = c.client;
        let client = tokio::task::spawn_blocking(move || {
            lab.in_vm(&client_vm, move || std::net::UdpSocket::bind(client_addr))
        })
        .await
        .map_err(|e| format!("opening the client socket: {e}"))?
        .map_err(|e| e.to_string())?
        .and_then(|s| {
            s.set_nonblocking(true)?;
            UdpSocket::from_std(s)
        })
        .map_err(|e| format!("binding {client_addr}: {e}"))?;
        within("connect", client.connect(SocketAddr::V4(c.server))).await?;
        let mut buf = vec![0u8; 65_536];
        for m in &c.messages {
            clock.wait_until(m.at).await;
            let arrived = if m.from_client {
                within("send", client.send(&m.payload)).await?;
                tokio::time::timeout(STEP_TIMEOUT, to_server.recv())
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|d| d == m.payload)
            } else {
                within("send", server.send_to(&m.payload, SocketAddr::V4(c.client))).await?;
                matches!(
                    tokio::time::timeout(STEP_TIMEOUT, client.recv(&mut buf)).await,
                    Ok(Ok(n)) if buf[..n] == m.payload[..]
                )
            };
            if !arrived {
                lost.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
    .await;
    lock(&datagrams).remove(&c.client);
    result
}
