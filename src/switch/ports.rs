//! Switch ports: where frames enter and leave `vmdep switch`.
//!
//! Backends:
//! - a UDP "wire" on loopback (`-i 1@udp:127.0.0.1:20001=127.0.0.1:20002`): one Ethernet frame
//!   per datagram, received on the local address and sent to the peer; datagrams from any other
//!   source are ignored (the socket is connected to the peer, so the kernel filters them). Frames
//!   move in batches of up to [`mmsg::BATCH`] messages per syscall, runs of equal-sized frames
//!   as one UDP GSO/GRO message ([`mmsg`]); the peer sees ordinary datagrams either way;
//! - a Linux interface (`-i 1@veth0`): a raw AF_PACKET socket on it ([`af_packet`]), frames
//!   also in batches of up to [`af_packet::BATCH`] per syscall;
//! - an in-process channel, for tests and for wiring switches inside one process.
//!
//! Sending never blocks the data plane: a frame a backend cannot take at once is dropped and
//! counted by the caller, as a congested wire would. Frames a port's kernel buffer had no room
//! for before the switch could read them are counted too
//! ([`FrameSink::dropped_before_receive`]) and logged.
//!
//! Owns only port I/O; it knows nothing of P4Runtime or the pipeline (frames go to a
//! [`FrameSink`]).

pub mod af_packet;
pub mod mmsg;

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::str::FromStr;
use std::sync::Arc;

use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, watch};

use af_packet::{PacketSocket, ReceiveBatch};

/// The largest port number a v1model port can carry, exclusive of 511 (the drop port).
pub const MAX_PORT: u32 = 510;

/// Where frames received on a port go.
pub trait FrameSink: Send + Sync + 'static {
    fn receive(&self, port: u32, frame: &[u8]);

    /// Frames received together on `port`, in order. A sink that can share work across them
    /// (one lock, one batched send) does so here.
    fn receive_batch(&self, port: u32, frames: &mut dyn Iterator<Item = &[u8]>) {
        for frame in frames {
            self.receive(port, frame);
        }
    }

    /// `count` frames arrived on `port` but the kernel dropped them before the port could read
    /// them (its receive buffer was full). The port has logged it already; a sink that keeps
    /// drop counters adds them here.
    fn dropped_before_receive(&self, port: u32, count: u64) {
        let _ = (port, count);
    }
}

/// How one port is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortBackend {
    /// A UDP wire: bind `local`, exchange datagrams with `peer` only.
    Udp { local: SocketAddr, peer: SocketAddr },
    /// A Linux interface, through an AF_PACKET socket.
    Interface { name: String },
}

/// One `-i PORT@WHERE` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub port: u32,
    pub backend: PortBackend,
}

/// A `-i` option that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PortSpecError {
    #[error("`{0}`: expected PORT@INTERFACE or PORT@udp:LOCAL_ADDR:PORT=PEER_ADDR:PORT")]
    Syntax(String),
    #[error("`{0}`: the port number must be an integer in 0..={MAX_PORT}")]
    PortNumber(String),
    #[error("`{spec}`: `{addr}` is not an IP address with a port")]
    Address { spec: String, addr: String },
    #[error("`{spec}`: {addr} is not a loopback address; UDP wires stay on 127.0.0.0/8 or ::1")]
    NotLoopback { spec: String, addr: SocketAddr },
    #[error(
        "`{spec}`: `{name}` is not a Linux interface name (1 to {} bytes, no `/`, `:`, `=` or \
         white space)",
        IFNAME_MAX
    )]
    InterfaceName { spec: String, name: String },
}

/// The longest Linux interface name (IFNAMSIZ less the terminating NUL).
pub const IFNAME_MAX: usize = 15;

/// Whether the kernel would accept `name` as an interface name (its dev_valid_name rules).
fn valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '=' || c == '\0' || c.is_whitespace())
}

impl FromStr for PortSpec {
    type Err = PortSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (port, target) = spec
            .split_once('@')
            .ok_or_else(|| PortSpecError::Syntax(spec.to_string()))?;
        let port: u32 = port
            .parse()
            .ok()
            .filter(|p| *p <= MAX_PORT)
            .ok_or_else(|| PortSpecError::PortNumber(spec.to_string()))?;
        let Some(wire) = target.strip_prefix("udp:") else {
            if target.is_empty() || target.contains(':') || target.contains('=') {
                return Err(PortSpecError::Syntax(spec.to_string()));
            }
            if !valid_interface_name(target) {
                return Err(PortSpecError::InterfaceName {
                    spec: spec.to_string(),
                    name: target.to_string(),
                });
            }
            return Ok(PortSpec {
                port,
                backend: PortBackend::Interface {
                    name: target.to_string(),
                },
            });
        };
        let (local, peer) = wire
            .split_once('=')
            .ok_or_else(|| PortSpecError::Syntax(spec.to_string()))?;
        let parse = |addr: &str| -> Result<SocketAddr, PortSpecError> {
            let parsed: SocketAddr = addr.parse().map_err(|_| PortSpecError::Address {
                spec: spec.to_string(),
                addr: addr.to_string(),
            })?;
            if !parsed.ip().is_loopback() {
                return Err(PortSpecError::NotLoopback {
                    spec: spec.to_string(),
                    addr: parsed,
                });
            }
            Ok(parsed)
        };
        Ok(PortSpec {
            port,
            backend: PortBackend::Udp {
                local: parse(local)?,
                peer: parse(peer)?,
            },
        })
    }
}

/// The sending half of a port.
#[derive(Debug, Clone)]
pub enum PortSender {
    /// A UDP socket connected to the wire's peer.
    Udp(Arc<AsyncFd<std::net::UdpSocket>>),
    Interface(Arc<AsyncFd<PacketSocket>>),
    Channel(mpsc::Sender<Vec<u8>>),
}

/// What a port's backend did with a batch of frames.
#[derive(Debug)]
pub struct SendOutcome {
    /// How many of the frames, from the first, the backend took.
    pub sent: usize,
    /// Why none were taken, when the backend said (the kernel reports an error only for a
    /// batch it took nothing of; fewer taken without one means a full buffer or queue).
    pub error: Option<std::io::Error>,
}

impl From<std::io::Result<usize>> for SendOutcome {
    fn from(result: std::io::Result<usize>) -> SendOutcome {
        match result {
            Ok(sent) => SendOutcome { sent, error: None },
            Err(error) => SendOutcome {
                sent: 0,
                error: Some(error),
            },
        }
    }
}

impl PortSender {
    /// Sends `frames` in order without waiting; the frames the backend did not take are the
    /// caller's to count as dropped (and to log: see [`DropLog`]).
    pub fn send_batch(&self, frames: &[&[u8]]) -> SendOutcome {
        match self {
            PortSender::Udp(socket) => mmsg::send_batch(socket.get_ref().as_fd(), frames).into(),
            PortSender::Interface(socket) => socket.get_ref().send_batch(frames).into(),
            PortSender::Channel(tx) => SendOutcome {
                sent: frames
                    .iter()
                    .take_while(|frame| tx.try_send(frame.to_vec()).is_ok())
                    .count(),
                error: None,
            },
        }
    }
}

/// Kernel buffer asked for each UDP wire socket, each way: room for bursts of thousands of
/// frames while the switch is busy.
const UDP_BUFFER_BYTES: usize = 4 << 20;

/// Batches taken from a wire per wake-up before other tasks get a turn.
const UDP_BURST_BATCHES: usize = 16;

/// An opened UDP wire: its sender and the address it is bound to.
pub struct UdpWire {
    pub sender: PortSender,
    pub local: SocketAddr,
    socket: Arc<AsyncFd<std::net::UdpSocket>>,
}

impl UdpWire {
    pub async fn open(local: SocketAddr, peer: SocketAddr) -> std::io::Result<UdpWire> {
        let socket = std::net::UdpSocket::bind(local)?;
        socket.connect(peer)?;
        socket.set_nonblocking(true)?;
        mmsg::set_buffer_sizes(socket.as_fd(), UDP_BUFFER_BYTES)?;
        // Kernels before 5.0 lack UDP_GRO: the wire then receives datagram by datagram.
        if let Err(err) = mmsg::enable_gro(socket.as_fd()) {
            tracing::debug!(%local, %err, "UDP GRO unavailable");
        }
        mmsg::enable_drop_counts(socket.as_fd())?;
        let local = socket.local_addr()?;
        // The kernel reports twice what it granted.
        let granted = mmsg::receive_buffer_bytes(socket.as_fd())? / 2;
        // Info, not a warning: the usual case for a user without CAP_NET_ADMIN, and drops, if
        // any come of it, are warned about when they happen.
        if granted < UDP_BUFFER_BYTES {
            tracing::info!(
                %local,
                granted,
                wanted = UDP_BUFFER_BYTES,
                "UDP wire receive buffer smaller than asked (no CAP_NET_ADMIN and a low \
                 net.core.rmem_max): bursts will overflow it sooner (dropped frames are counted)"
            );
        }
        // Registered for reading only: sends never wait (a full buffer drops), and a socket
        // also watched for writing would have the kernel call into epoll each time one of its
        // sent datagrams is freed.
        // SAFETY: a std UdpSocket owns its descriptor for its whole life and always returns
        // that same one from as_raw_fd, which is what registering it with the reactor requires.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) };
        let socket = Arc::new(socket.map_err(std::io::Error::from)?);
        Ok(UdpWire {
            sender: PortSender::Udp(socket.clone()),
            local,
            socket,
        })
    }

    /// Receives datagrams from the peer into `sink` until `shutdown` turns true.
    pub async fn receive_loop(
        self,
        port: u32,
        sink: Arc<dyn FrameSink>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut batch = mmsg::RecvBatch::new();
        let mut drops = KernelDrops::new(port, "UDP wire");
        // The socket's wrapping drop counter as last accounted for.
        let mut counted = 0u32;
        let mut account = |counter: u32, drops: &mut KernelDrops, last: bool| {
            drops.add(u64::from(counter.wrapping_sub(counted)), sink.as_ref());
            counted = counter;
            drops.warn_if_due(last);
        };
        loop {
            tokio::select! {
                ready = self.socket.readable() => {
                    let mut guard = match ready {
                        Ok(guard) => guard,
                        Err(err) => {
                            tracing::error!(port, %err, "UDP wire cannot be polled; port stopped");
                            return;
                        }
                    };
                    for _ in 0..UDP_BURST_BATCHES {
                        match batch.receive(self.socket.get_ref().as_fd()) {
                            Ok(received) => {
                                sink.receive_batch(port, &mut batch.frames());
                                // A short batch drained the queue: wait for the next datagram
                                // now rather than spend a syscall to hear "would block"
                                // (epoll reports any datagram queued after the drain). One
                                // exception, accepted: a batch cut short by a socket error (an
                                // ICMP error for a datagram sent to a peer that just went away)
                                // leaves the datagrams queued behind it until the next arrives.
                                if received < mmsg::BATCH {
                                    guard.clear_ready();
                                    break;
                                }
                            }
                            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                                guard.clear_ready();
                                break;
                            }
                            // ICMP port-unreachable from an absent peer shows up here; keep going.
                            Err(err) => {
                                tracing::debug!(port, %err, "UDP wire receive error");
                                break;
                            }
                        }
                    }
                    if let Some(counter) = batch.drop_counter() {
                        account(counter, &mut drops, false);
                    }
                }
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                // Drops after the last datagram received were reported with none.
                match mmsg::drop_counter_now(self.socket.get_ref().as_fd()) {
                    Ok(counter) => account(counter, &mut drops, true),
                    Err(err) => tracing::debug!(port, %err, "UDP wire drop count unreadable"),
                }
                return;
            }
        }
    }
}

/// An opened Linux interface port.
pub struct InterfacePort {
    pub sender: PortSender,
    socket: Arc<AsyncFd<PacketSocket>>,
}

/// Batches taken from an interface per wake-up before other tasks get a turn.
const INTERFACE_BURST_BATCHES: usize = 16;

/// Least time between two warnings about kernel drops on one interface (counts accumulate).
const DROP_WARNING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl InterfacePort {
    /// Opens `name` (needs CAP_NET_RAW); must run inside a tokio runtime.
    pub fn open(name: &str) -> std::io::Result<InterfacePort> {
        let socket = PacketSocket::open(name)?;
        // The kernel reports twice what it granted; without CAP_NET_ADMIN it granted at most
        // net.core.rmem_max.
        let granted = socket.receive_buffer_bytes()? / 2;
        if granted < af_packet::SOCKET_BUFFER_BYTES {
            tracing::warn!(
                interface = name,
                granted,
                wanted = af_packet::SOCKET_BUFFER_BYTES,
                "interface receive buffer smaller than asked (no CAP_NET_ADMIN and a low \
                 net.core.rmem_max): bursts will overflow it sooner (dropped frames are counted)"
            );
        }
        // SAFETY: a PacketSocket owns its descriptor for its whole life and always returns that
        // same one from as_raw_fd, which is what registering it with the reactor requires.
        let socket = Arc::new(unsafe { AsyncFd::register(socket) }.map_err(std::io::Error::from)?);
        Ok(InterfacePort {
            sender: PortSender::Interface(socket.clone()),
            socket,
        })
    }

    /// Receives the interface's frames into `sink` until `shutdown` turns true.
    pub async fn receive_loop(
        self,
        port: u32,
        sink: Arc<dyn FrameSink>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut batch = ReceiveBatch::new();
        let mut drops = KernelDrops::new(port, "interface");
        loop {
            tokio::select! {
                ready = self.socket.readable() => {
                    let mut guard = match ready {
                        Ok(guard) => guard,
                        Err(err) => {
                            tracing::error!(port, %err, "interface port cannot be polled; port stopped");
                            return;
                        }
                    };
                    for _ in 0..INTERFACE_BURST_BATCHES {
                        match guard.try_io(|socket| socket.get_ref().receive_batch(&mut batch)) {
                            Ok(Ok(_)) => sink.receive_batch(port, &mut batch.frames()),
                            // The interface went down or away: keep polling, it may come back.
                            Ok(Err(err)) => {
                                tracing::debug!(port, %err, "interface receive error");
                                break;
                            }
                            // Drained: readiness was cleared, wait for the next frame.
                            Err(_would_block) => break,
                        }
                    }
                    drops.collect(self.socket.get_ref(), sink.as_ref(), false);
                }
                _ = shutdown.changed() => {
                    drops.collect(self.socket.get_ref(), sink.as_ref(), true);
                    return;
                }
            }
            if *shutdown.borrow() {
                drops.collect(self.socket.get_ref(), sink.as_ref(), true);
                return;
            }
        }
    }
}

/// Frames one port lost, counted as they are lost and logged at most once per
/// `DROP_WARNING_INTERVAL`: a port losing frames by the thousand gets one line a second, with
/// how many since the last line and in all.
#[derive(Debug, Default)]
pub struct DropLog {
    total: u64,
    unreported: u64,
    last_warning: Option<std::time::Instant>,
}

impl DropLog {
    /// `count` more frames lost.
    pub fn add(&mut self, count: u64) {
        self.total += count;
        self.unreported += count;
    }

    /// The frames lost since the last report and in all, if a report is due: some were lost
    /// and the last report is old enough, or `last` (the port is stopping).
    pub fn report_due(&mut self, last: bool) -> Option<(u64, u64)> {
        let due = self
            .last_warning
            .is_none_or(|at| at.elapsed() >= DROP_WARNING_INTERVAL);
        if self.unreported == 0 || !(due || last) {
            return None;
        }
        let report = (self.unreported, self.total);
        self.unreported = 0;
        self.last_warning = Some(std::time::Instant::now());
        Some(report)
    }
}

/// The kernel's drops on one port (interface or UDP wire): handed to the sink as they are
/// read, and logged through a [`DropLog`].
struct KernelDrops {
    port: u32,
    kind: &'static str,
    log: DropLog,
}

impl KernelDrops {
    fn new(port: u32, kind: &'static str) -> KernelDrops {
        KernelDrops {
            port,
            kind,
            log: DropLog::default(),
        }
    }

    /// `count` more frames dropped.
    fn add(&mut self, count: u64, sink: &dyn FrameSink) {
        if count > 0 {
            sink.dropped_before_receive(self.port, count);
            self.log.add(count);
        }
    }

    /// Reads an interface socket's drop count (which reading resets); `last` as in
    /// [`KernelDrops::warn_if_due`].
    fn collect(&mut self, socket: &PacketSocket, sink: &dyn FrameSink, last: bool) {
        match socket.take_drops() {
            Ok(count) => self.add(count, sink),
            Err(err) => tracing::debug!(port = self.port, %err, "interface drop count unreadable"),
        }
        self.warn_if_due(last);
    }

    /// Logs the unreported drops if the last warning is old enough, or if `last` (at shutdown).
    fn warn_if_due(&mut self, last: bool) {
        if let Some((dropped, total)) = self.log.report_due(last) {
            tracing::warn!(
                port = self.port,
                dropped,
                total,
                "{} port: the kernel dropped frames the receive buffer had no room for \
                 (the switch did not read them in time)",
                self.kind
            );
        }
    }
}

/// The test side of an in-process port.
#[derive(Debug)]
pub struct ChannelPort {
    /// Frames sent here enter the switch on this port.
    pub to_switch: mpsc::Sender<Vec<u8>>,
    /// Frames the switch sends out of this port.
    pub from_switch: mpsc::Receiver<Vec<u8>>,
}

/// Frames each direction of an in-process port can queue.
pub const CHANNEL_DEPTH: usize = 1024;

/// Creates an in-process port: the switch's sender, the test side, and the receive half to
/// drive with [`channel_receive_loop`].
pub fn channel_port() -> (PortSender, ChannelPort, mpsc::Receiver<Vec<u8>>) {
    let (out_tx, out_rx) = mpsc::channel(CHANNEL_DEPTH);
    let (in_tx, in_rx) = mpsc::channel(CHANNEL_DEPTH);
    (
        PortSender::Channel(out_tx),
        ChannelPort {
            to_switch: in_tx,
            from_switch: out_rx,
        },
        in_rx,
    )
}

/// Feeds frames from an in-process port into `sink` until the sender closes or shutdown.
pub async fn channel_receive_loop(
    port: u32,
    mut frames: mpsc::Receiver<Vec<u8>>,
    sink: Arc<dyn FrameSink>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(frame) => sink.receive(port, &frame),
                None => return,
            },
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::net::UdpSocket;

    #[test]
    fn drop_logs_report_at_most_once_per_interval_and_everything_at_the_end() {
        let mut log = DropLog::default();
        assert_eq!(log.report_due(true), None, "nothing lost, nothing to say");
        log.add(3);
        assert_eq!(log.report_due(false), Some((3, 3)));
        log.add(2);
        log.add(4);
        assert_eq!(log.report_due(false), None, "within the interval");
        assert_eq!(
            log.report_due(true),
            Some((6, 9)),
            "the port stops: say it now"
        );
        assert_eq!(log.report_due(true), None);
    }

    #[tokio::test]
    async fn a_wire_whose_peer_is_gone_says_why_it_cannot_send() {
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let gone = peer.local_addr().unwrap();
        drop(peer);
        let wire = UdpWire::open("127.0.0.1:0".parse().unwrap(), gone)
            .await
            .unwrap();
        // The first datagram leaves; the ICMP port-unreachable it draws fails a later send.
        let first = wire.sender.send_batch(&[b"frame"]);
        assert_eq!((first.sent, first.error.is_none()), (1, true));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let refused = loop {
            let outcome = wire.sender.send_batch(&[b"frame", b"frame"]);
            if let Some(err) = outcome.error {
                assert_eq!(outcome.sent, 0);
                break err;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no ICMP error came back"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn udp_wire_specs() {
        let spec: PortSpec = "1@udp:127.0.0.1:20001=127.0.0.1:20002".parse().unwrap();
        assert_eq!(
            spec,
            PortSpec {
                port: 1,
                backend: PortBackend::Udp {
                    local: "127.0.0.1:20001".parse().unwrap(),
                    peer: "127.0.0.1:20002".parse().unwrap(),
                }
            }
        );
        let v6: PortSpec = "510@udp:[::1]:0=[::1]:9".parse().unwrap();
        assert_eq!(v6.port, 510);
        let veth: PortSpec = "2@veth0".parse().unwrap();
        assert_eq!(
            veth,
            PortSpec {
                port: 2,
                backend: PortBackend::Interface {
                    name: "veth0".into()
                }
            }
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let err = |s: &str| s.parse::<PortSpec>().unwrap_err();
        assert!(matches!(
            err("1@abcdefghijklmnop"),
            PortSpecError::InterfaceName { .. }
        ));
        assert!(matches!(err("1@a b"), PortSpecError::InterfaceName { .. }));
        assert!(matches!(err("1@a/b"), PortSpecError::InterfaceName { .. }));
        assert!(matches!(err("1@.."), PortSpecError::InterfaceName { .. }));
        assert!(matches!(err("1@"), PortSpecError::Syntax(_)));
        assert!(matches!(err("veth0"), PortSpecError::Syntax(_)));
        assert!(matches!(
            err("511@udp:127.0.0.1:1=127.0.0.1:2"),
            PortSpecError::PortNumber(_)
        ));
        assert!(matches!(
            err("x@udp:127.0.0.1:1=127.0.0.1:2"),
            PortSpecError::PortNumber(_)
        ));
        assert!(matches!(err("1@udp:127.0.0.1:1"), PortSpecError::Syntax(_)));
        assert!(matches!(
            err("1@udp:127.0.0.1=127.0.0.1:2"),
            PortSpecError::Address { .. }
        ));
        assert!(matches!(
            err("1@udp:127.0.0.1:1=10.0.0.1:2"),
            PortSpecError::NotLoopback { .. }
        ));
        assert!(matches!(
            err("1@udp:0.0.0.0:1=127.0.0.1:2"),
            PortSpecError::NotLoopback { .. }
        ));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<PortSpec>();
        }
    }

    #[tokio::test]
    async fn udp_wire_carries_frames_both_ways_and_ignores_strangers() {
        struct Collect(std::sync::Mutex<Vec<(u32, Vec<u8>)>>);
        impl FrameSink for Collect {
            fn receive(&self, port: u32, frame: &[u8]) {
                self.0.lock().unwrap().push((port, frame.to_vec()));
            }
        }
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let wire = UdpWire::open("127.0.0.1:0".parse().unwrap(), peer.local_addr().unwrap())
            .await
            .unwrap();
        let local = wire.local;
        let sender = wire.sender.clone();
        let sink = Arc::new(Collect(std::sync::Mutex::new(Vec::new())));
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(wire.receive_loop(3, sink.clone(), shutdown));

        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        stranger.send_to(b"stranger", local).await.unwrap();
        peer.send_to(b"frame-in", local).await.unwrap();
        assert_eq!(sender.send_batch(&[b"frame-out"]).sent, 1);
        let mut buf = [0u8; 64];
        let (n, from) =
            tokio::time::timeout(std::time::Duration::from_secs(5), peer.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
        assert_eq!((&buf[..n], from), (&b"frame-out"[..], local));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while sink.0.lock().unwrap().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        stop.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(*sink.0.lock().unwrap(), vec![(3, b"frame-in".to_vec())]);
    }

    #[tokio::test]
    async fn udp_wire_counts_what_its_full_buffer_dropped() {
        #[derive(Default)]
        struct Count {
            received: std::sync::atomic::AtomicU64,
            dropped: std::sync::atomic::AtomicU64,
        }
        impl FrameSink for Count {
            fn receive(&self, _port: u32, _frame: &[u8]) {
                self.received.fetch_add(1, Ordering::Relaxed);
            }
            fn dropped_before_receive(&self, port: u32, count: u64) {
                assert_eq!(port, 4);
                self.dropped.fetch_add(count, Ordering::Relaxed);
            }
        }
        use std::sync::atomic::Ordering;
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let wire = UdpWire::open("127.0.0.1:0".parse().unwrap(), peer.local_addr().unwrap())
            .await
            .unwrap();
        peer.connect(wire.local).unwrap();
        // Far more than the wire's 4 MB buffer holds (the kernel charges each small datagram
        // several hundred bytes), sent while nothing reads.
        const SENT: u64 = 30_000;
        for _ in 0..SENT {
            peer.send(&[0u8; 60]).unwrap();
        }
        let sink = Arc::new(Count::default());
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(wire.receive_loop(4, sink.clone(), shutdown));
        // One more after the drain: it carries the drop count.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut last = u64::MAX;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let now = sink.received.load(Ordering::Relaxed);
            if now == last || tokio::time::Instant::now() > deadline {
                break;
            }
            last = now;
        }
        peer.send(&[0u8; 60]).unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while sink.received.load(Ordering::Relaxed) + sink.dropped.load(Ordering::Relaxed)
            < SENT + 1
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (received, dropped) = (
            sink.received.load(Ordering::Relaxed),
            sink.dropped.load(Ordering::Relaxed),
        );
        assert!(dropped > 0, "nothing was dropped ({received} received)");
        assert_eq!(received + dropped, SENT + 1);
        // Nothing more at shutdown: every drop was already counted.
        stop.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(sink.dropped.load(Ordering::Relaxed), dropped);
    }

    #[tokio::test]
    async fn udp_wire_counts_drops_no_later_datagram_reported_when_it_stops() {
        #[derive(Default)]
        struct Dropped(std::sync::atomic::AtomicU64);
        impl FrameSink for Dropped {
            fn receive(&self, _port: u32, _frame: &[u8]) {}
            fn dropped_before_receive(&self, _port: u32, count: u64) {
                self.0
                    .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let wire = UdpWire::open("127.0.0.1:0".parse().unwrap(), peer.local_addr().unwrap())
            .await
            .unwrap();
        peer.connect(wire.local).unwrap();
        for _ in 0..30_000 {
            peer.send(&[0u8; 60]).unwrap();
        }
        let sink = Arc::new(Dropped::default());
        let (stop, shutdown) = watch::channel(false);
        // Stopped before it ever runs: the count comes from the socket itself.
        stop.send(true).unwrap();
        wire.receive_loop(5, sink.clone(), shutdown).await;
        assert!(sink.0.load(std::sync::atomic::Ordering::Relaxed) > 0);
    }
}
