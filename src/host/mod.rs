//! `vmdep host`: an emulated server, the role a hypervisor with Open vSwitch plays.
//!
//! It owns the server's VMs as traffic endpoints ([`VmPort`]) and its virtual switch:
//!
//! - **Forwarding** by destination IPv4 address: a frame for a VM of the same server is
//!   delivered to it, any other frame from a VM leaves by the uplink (a UDP wire to the server's
//!   P4 switch port, one frame per datagram, [`UdpWire`]), and a frame from the uplink goes to
//!   the VM it is addressed to. Frames that go nowhere (not IPv4, for no VM of this server, a
//!   full VM queue) are counted on their port, never dropped silently.
//! - **Exact counts of same-server pairs**: no P4 switch sees them, so the vswitch counts every
//!   frame and reports the cumulative counts to the controller (`local_counts` on the host link).
//! - **sFlow v5 export**, as Open vSwitch does it: 1-in-N random sampling at every port's ingress
//!   (frames from VMs and frames from the uplink), flow samples with the frame's first
//!   [`SAMPLED_HEADER_BYTES`] bytes, counter samples with each port's generic interface counters
//!   every counter interval, several samples per datagram, from the server's `sflow_agent`
//!   address. ifIndex 1 is the uplink, 2, 3, ... the server's VMs in the topology's order.
//! - **Mirroring**: frames of the pairs the controller selects (in either direction, so DPI sees
//!   the answers too), and every same-server frame from a pair's first one on, are copied to a
//!   bounded channel of [`MirroredFrame`]s, which the DPI module reads; the labels DPI finds go
//!   back through a [`LabelPublisher`]. (The controller mirrors every pair a server counts, but
//!   learns of it only from the server's next count report: a DNS lookup, one datagram each
//!   way, or a connection's opening would be over before the mirror set arrived.)
//! - **VM wires** ([`VmWire`], `--vm NAME=udp:LOCAL=PEER`): a VM's port as a UDP wire, so the
//!   VMs can run in another process, as QEMU connects a guest's NIC with `-netdev dgram`.
//! - **The DPI module** ([`DpiModule`]) on the mirror port, publishing labels to the host link.
//! - **The host link** to the controller (`crate::hostlink`): `hello`, `local_counts`,
//!   `labels` out, `mirror` sets in, reconnecting with backoff.
//!
//! It reads the topology (which server it is, its VMs and agent address) and speaks the packet
//! codecs (`wire`), `sflow` and `hostlink`. It must not touch the controller's internals beyond
//! the topology, nor the switch: both are reached only over their protocols.

mod agent;
mod dpi_module;
mod link;
mod sampling;
mod uplink;
mod vm_wire;
mod vswitch;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::controller::topology::{MacAddr, Topology};
use crate::hostlink::{AppLabel, LocalPairCount, PairAddrs};
use crate::sflow::Address;

pub use agent::{FLUSH_INTERVAL, MAX_DATAGRAM};
pub use dpi_module::{DpiModule, DPI_TICK};
pub use link::{MAX_BACKOFF, MIN_BACKOFF};
pub use uplink::{UdpWire, UdpWireError};
pub use vm_wire::{VmWire, VmWireError};
pub use vswitch::{
    Discard, Forwarding, MirroredFrame, PortCounters, PortStats, VswitchCounters,
    SAMPLED_HEADER_BYTES,
};

use agent::{AgentCounters, Exporter};
use link::{LinkClient, LinkCounters};
use sampling::{Sampler, SplitMix64};
use vswitch::{Port, Vswitch, UPLINK};

/// Open vSwitch's usual sFlow sampling rate: 1 in 64 frames.
pub const DEFAULT_SAMPLING_RATE: u32 = 64;
pub const DEFAULT_COUNTER_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Frames a VM's receive queue holds, and frames the mirror sink holds, by default.
pub const DEFAULT_QUEUE: usize = 4096;
/// Sampled frames waiting for the sFlow agent; more are counted as the samplers' drops.
const SAMPLE_QUEUE: usize = 4096;
/// Uplink datagrams forwarded per lock of the vswitch.
const UPLINK_BURST: usize = 64;

/// How to run one server.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The server's name in the topology.
    pub server: String,
    pub topology: Arc<Topology>,
    /// The wire to the server's switch port.
    pub uplink: UdpWire,
    /// Where sFlow datagrams go.
    pub collector: SocketAddr,
    /// The controller's host-link address; `None` runs without one (no mirror, no reports).
    pub controller: Option<SocketAddr>,
    /// Sample 1 in this many frames at each port (≥ 1).
    pub sampling_rate: u32,
    /// How often each port's counters are exported.
    pub counter_interval: Duration,
    /// How often `local_counts` go to the controller.
    pub report_interval: Duration,
    /// Seeds the samplers; the same seed and traffic give the same samples.
    pub seed: u64,
    /// Frames each VM's receive queue holds.
    pub vm_queue: usize,
    /// Frames the mirror sink holds.
    pub mirror_queue: usize,
    /// VMs whose port is a UDP wire (the others' ports are handed out by
    /// [`RunningHost::vm_port`]).
    pub vm_wires: Vec<VmWire>,
}

impl HostConfig {
    /// A configuration with the defaults: collector 127.0.0.1:6343, no controller, 1 in 64.
    pub fn new(server: impl Into<String>, topology: Arc<Topology>, uplink: UdpWire) -> Self {
        HostConfig {
            server: server.into(),
            topology,
            uplink,
            collector: SocketAddr::from(([127, 0, 0, 1], crate::sflow::DEFAULT_PORT)),
            controller: None,
            sampling_rate: DEFAULT_SAMPLING_RATE,
            counter_interval: DEFAULT_COUNTER_INTERVAL,
            report_interval: DEFAULT_REPORT_INTERVAL,
            seed: 0,
            vm_queue: DEFAULT_QUEUE,
            mirror_queue: DEFAULT_QUEUE,
            vm_wires: Vec::new(),
        }
    }
}

#[derive(Debug, Error)]
pub enum HostError {
    #[error("server {0:?} is not in the topology")]
    UnknownServer(String),
    #[error("sampling rate 0: sFlow samples 1 in N frames, N at least 1")]
    ZeroSamplingRate,
    #[error("the {0} must be longer than zero")]
    ZeroInterval(&'static str),
    #[error("the {0} must hold at least one frame")]
    ZeroQueue(&'static str),
    #[error("cannot open the uplink {wire}: {source}")]
    Uplink {
        wire: UdpWire,
        source: std::io::Error,
    },
    #[error("cannot open the sFlow socket on {addr}: {source}")]
    SflowSocket {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server {server:?} has no VM {vm:?}")]
    UnknownVm { server: String, vm: String },
    #[error("the port of VM {0:?} was already taken")]
    PortTaken(String),
    #[error("cannot open the wire of VM {vm} ({wire}): {source}")]
    VmWire {
        vm: String,
        wire: UdpWire,
        source: std::io::Error,
    },
    #[error("a host task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// State the host's tasks and handles share.
pub(crate) struct Shared {
    vswitch: Mutex<Vswitch>,
    started: Instant,
    agent_counters: AgentCounters,
    link_counters: LinkCounters,
    uplink_receive_errors: std::sync::atomic::AtomicU64,
    vm_wire_errors: Arc<std::sync::atomic::AtomicU64>,
    /// The labels DPI published last; kept here so the link's receiver never sees it closed.
    labels: Arc<watch::Sender<Vec<AppLabel>>>,
}

impl Shared {
    /// The vswitch, locked. Its state stays consistent between calls, so a panic elsewhere
    /// while it was held does not make it unusable.
    fn vswitch(&self) -> MutexGuard<'_, Vswitch> {
        self.vswitch.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the sFlow agent sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SflowStats {
    pub datagrams: u64,
    pub flow_samples: u64,
    pub counter_samples: u64,
    /// Datagrams the socket refused or that could not be encoded.
    pub errors: u64,
}

/// The host link's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    pub connects: u64,
    pub connect_failures: u64,
    pub disconnects: u64,
    /// Lines from the controller that were no valid message (skipped, or the connection
    /// dropped when a line was too long).
    pub bad_lines: u64,
    pub mirror_updates: u64,
    pub local_count_reports: u64,
    pub label_reports: u64,
}

/// A snapshot of everything the host counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStats {
    /// The uplink first, then the VMs, by ifIndex.
    pub ports: Vec<PortStats>,
    /// Cumulative exact counts of the same-server pairs, ordered by pair.
    pub local_pairs: Vec<LocalPairCount>,
    pub vswitch: VswitchCounters,
    pub sflow: SflowStats,
    pub link: LinkStats,
    /// Errors the uplink socket returned on receive (e.g. the switch port not listening yet).
    pub uplink_receive_errors: u64,
    /// Errors the VM wires' sockets returned (e.g. a VM's end not listening).
    pub vm_wire_errors: u64,
}

impl HostStats {
    /// The counters of the port named `name` (`uplink` or a VM's name).
    pub fn port(&self, name: &str) -> Option<&PortStats> {
        self.ports.iter().find(|p| p.name == name)
    }
}

/// Sets the application labels the host reports to the controller (the DPI module's output).
#[derive(Clone)]
pub struct LabelPublisher {
    labels: Arc<watch::Sender<Vec<AppLabel>>>,
}

impl LabelPublisher {
    /// Replaces the labels; the host link sends them at once (or on the next connection).
    pub fn publish(&self, labels: Vec<AppLabel>) {
        self.labels.send_replace(labels);
    }
}

/// One VM's network port: frames it sends enter the vswitch, frames for it come out here.
pub struct VmPort {
    name: String,
    ipv4: Ipv4Addr,
    mac: MacAddr,
    port: usize,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Vec<u8>>,
}

impl VmPort {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ipv4(&self) -> Ipv4Addr {
        self.ipv4
    }

    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// The port's sFlow ifIndex.
    pub fn if_index(&self) -> u32 {
        vswitch::if_index(self.port)
    }

    /// Sends a frame from the VM; it is forwarded before this returns.
    pub fn send(&self, frame: &[u8]) -> Forwarding {
        self.shared.vswitch().forward(self.port, frame)
    }

    /// The next frame delivered to the VM; `None` once the host has shut down and the queue is
    /// empty.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }

    /// A frame delivered to the VM, if one is waiting.
    pub fn try_recv(&mut self) -> Option<Vec<u8>> {
        self.rx.try_recv().ok()
    }

    /// The port's counters: `in` is what the VM sent, `out` what it was given.
    pub fn counters(&self) -> PortCounters {
        self.shared.vswitch().port_stats()[self.port].counters
    }
}

/// A VM port not yet handed out.
struct PendingVmPort {
    port: usize,
    ipv4: Ipv4Addr,
    mac: MacAddr,
    rx: mpsc::Receiver<Vec<u8>>,
}

/// A running server. Dropping it stops its tasks; [`shutdown`](Self::shutdown) also waits for
/// the last sFlow datagram and the final `local_counts`.
pub struct RunningHost {
    server: String,
    shared: Arc<Shared>,
    uplink_local: SocketAddr,
    sflow_source: SocketAddr,
    vm_ports: Mutex<HashMap<String, PendingVmPort>>,
    mirror_rx: Mutex<Option<mpsc::Receiver<MirroredFrame>>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts a server: binds its uplink and sFlow sockets and starts its tasks (uplink receive,
/// sFlow agent, host link when a controller is given).
pub async fn start(config: HostConfig) -> Result<RunningHost, HostError> {
    let topology = &config.topology;
    let server_id = topology
        .server_id(&config.server)
        .ok_or_else(|| HostError::UnknownServer(config.server.clone()))?;
    if config.sampling_rate == 0 {
        return Err(HostError::ZeroSamplingRate);
    }
    for (interval, what) in [
        (config.counter_interval, "counter interval"),
        (config.report_interval, "report interval"),
    ] {
        if interval.is_zero() {
            return Err(HostError::ZeroInterval(what));
        }
    }
    for (queue, what) in [
        (config.vm_queue, "VM queue"),
        (config.mirror_queue, "mirror queue"),
    ] {
        if queue == 0 {
            return Err(HostError::ZeroQueue(what));
        }
    }
    let uplink_error = |source| HostError::Uplink {
        wire: config.uplink,
        source,
    };
    // Two handles on one socket: the vswitch sends with plain non-blocking calls, which fail
    // only when the kernel has no room (tokio's `try_send` also fails until the reactor has
    // seen the socket writable); the receive task waits on the tokio one.
    let uplink_send = std::net::UdpSocket::bind(config.uplink.local).map_err(uplink_error)?;
    uplink_send
        .connect(config.uplink.peer)
        .map_err(uplink_error)?;
    uplink_send.set_nonblocking(true).map_err(uplink_error)?;
    uplink::set_buffer_sizes(&uplink_send, uplink::BUFFER_BYTES).map_err(uplink_error)?;
    let uplink_local = uplink_send.local_addr().map_err(uplink_error)?;
    let uplink_receive = uplink_send
        .try_clone()
        .and_then(UdpSocket::from_std)
        .map_err(uplink_error)?;

    let agent_ip = topology.server(server_id).sflow_agent;
    let sflow_bind = sflow_bind_addr(agent_ip, config.collector);
    let sflow_error = |source| HostError::SflowSocket {
        addr: sflow_bind,
        source,
    };
    let sflow_socket = UdpSocket::bind(sflow_bind).await.map_err(sflow_error)?;
    let sflow_source = sflow_socket.local_addr().map_err(sflow_error)?;

    let mut seeds = SplitMix64::new(config.seed);
    let mut ports = vec![Port::uplink(Sampler::new(
        config.sampling_rate,
        seeds.next_u64(),
    ))];
    let mut vm_ports = HashMap::new();
    for &vm_id in topology.vms_of_server(server_id) {
        let vm = topology.vm(vm_id);
        let (tx, rx) = mpsc::channel(config.vm_queue);
        vm_ports.insert(
            vm.name.clone(),
            PendingVmPort {
                port: ports.len(),
                ipv4: vm.ipv4,
                mac: vm.mac,
                rx,
            },
        );
        ports.push(Port::vm(
            vm.name.clone(),
            vm.ipv4,
            tx,
            Sampler::new(config.sampling_rate, seeds.next_u64()),
        ));
    }
    let port_count = ports.len();
    let started = Instant::now();
    let (mirror_tx, mirror_rx) = mpsc::channel(config.mirror_queue);
    let (samples_tx, samples_rx) = mpsc::channel(SAMPLE_QUEUE);
    let shared = Arc::new(Shared {
        vswitch: Mutex::new(Vswitch::new(
            ports,
            uplink_send,
            mirror_tx,
            samples_tx,
            started,
        )),
        started,
        agent_counters: AgentCounters::default(),
        link_counters: LinkCounters::default(),
        uplink_receive_errors: Default::default(),
        vm_wire_errors: Default::default(),
        labels: Arc::new(watch::channel(Vec::new()).0),
    });
    let (stop, stop_rx) = watch::channel(false);
    let agent = match agent_ip {
        IpAddr::V4(a) => Address::Ipv4(a),
        IpAddr::V6(a) => Address::Ipv6(a),
    };
    let exporter = Exporter::new(
        sflow_socket,
        config.collector,
        agent,
        port_count,
        Arc::clone(&shared),
    );
    let mut tasks = vec![
        tokio::spawn(receive_uplink(
            uplink_receive,
            Arc::clone(&shared),
            stop_rx.clone(),
        )),
        tokio::spawn(exporter.run(samples_rx, config.counter_interval, stop_rx.clone())),
    ];
    if let Some(controller) = config.controller {
        let client = LinkClient {
            controller,
            server: config.server.clone(),
            report_interval: config.report_interval,
            labels: shared.labels.subscribe(),
            shared: Arc::clone(&shared),
        };
        tasks.push(tokio::spawn(client.run(stop_rx.clone())));
    }
    let mut running = RunningHost {
        server: config.server,
        shared,
        uplink_local,
        sflow_source,
        vm_ports: Mutex::new(vm_ports),
        mirror_rx: Mutex::new(Some(mirror_rx)),
        stop,
        tasks,
    };
    for VmWire { vm, wire } in config.vm_wires {
        let port = running.vm_port(&vm)?;
        let socket = wire.open().map_err(|source| HostError::VmWire {
            vm: vm.clone(),
            wire,
            source,
        })?;
        let errors = Arc::clone(&running.shared.vm_wire_errors);
        running.tasks.push(tokio::spawn(vm_wire::relay(
            socket,
            port,
            errors,
            stop_rx.clone(),
        )));
    }
    Ok(running)
}

/// The sFlow socket binds the agent address when it is a loopback address of the collector's
/// family (the collector then sees the agent as the source, as with a real server); otherwise
/// any address of that family.
fn sflow_bind_addr(agent: IpAddr, collector: SocketAddr) -> SocketAddr {
    let ip = if agent.is_loopback() && agent.is_ipv4() == collector.is_ipv4() {
        agent
    } else if collector.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    SocketAddr::new(ip, 0)
}

/// Forwards frames from the uplink until stopped; several per lock when they queue up.
async fn receive_uplink(socket: UdpSocket, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 64 * 1024];
    let count_error = |err: std::io::Error| {
        // ICMP port-unreachable for an earlier send (the switch port not up yet) lands here.
        tracing::debug!(%err, "uplink receive error");
        shared.uplink_receive_errors.fetch_add(1, Ordering::Relaxed);
    };
    loop {
        tokio::select! {
            received = socket.recv(&mut buf) => match received {
                Ok(len) => {
                    let mut vswitch = shared.vswitch();
                    vswitch.forward(UPLINK, &buf[..len]);
                    for _ in 1..UPLINK_BURST {
                        match socket.try_recv(&mut buf) {
                            Ok(len) => {
                                vswitch.forward(UPLINK, &buf[..len]);
                            }
                            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(err) => {
                                count_error(err);
                                break;
                            }
                        }
                    }
                }
                Err(err) => count_error(err),
            },
            _ = stop.changed() => return,
        }
    }
}

impl RunningHost {
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The uplink's bound address (the switch port's peer address).
    pub fn uplink_addr(&self) -> SocketAddr {
        self.uplink_local
    }

    /// The address sFlow datagrams are sent from.
    pub fn sflow_source_addr(&self) -> SocketAddr {
        self.sflow_source
    }

    /// The port of VM `name`; each VM's port is handed out once.
    pub fn vm_port(&self, name: &str) -> Result<VmPort, HostError> {
        let mut pending = self.vm_ports.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(p) = pending.remove(name) else {
            let known = self.shared.vswitch().port_of_vm(name).is_some();
            return Err(if known {
                HostError::PortTaken(name.to_string())
            } else {
                HostError::UnknownVm {
                    server: self.server.clone(),
                    vm: name.to_string(),
                }
            });
        };
        Ok(VmPort {
            name: name.to_string(),
            ipv4: p.ipv4,
            mac: p.mac,
            port: p.port,
            shared: Arc::clone(&self.shared),
            rx: p.rx,
        })
    }

    /// The mirror sink: frames of the mirrored pairs, for the DPI module. Handed out once.
    pub fn mirror_frames(&self) -> Option<mpsc::Receiver<MirroredFrame>> {
        self.mirror_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Where DPI labels go to be reported.
    pub fn label_publisher(&self) -> LabelPublisher {
        LabelPublisher {
            labels: Arc::clone(&self.shared.labels),
        }
    }

    /// Mirrors exactly these directed pairs (and their reverse directions), as a `mirror`
    /// message from the controller does; for running without a controller.
    pub fn set_mirror(&self, pairs: Vec<PairAddrs>) {
        self.shared.vswitch().set_mirror(pairs);
    }

    pub fn stats(&self) -> HostStats {
        let (ports, local_pairs, vswitch) = {
            let v = self.shared.vswitch();
            (v.port_stats(), v.local_counts(), v.counters())
        };
        let a = &self.shared.agent_counters;
        let l = &self.shared.link_counters;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        HostStats {
            ports,
            local_pairs,
            vswitch,
            sflow: SflowStats {
                datagrams: get(&a.datagrams),
                flow_samples: get(&a.flow_samples),
                counter_samples: get(&a.counter_samples),
                errors: get(&a.errors),
            },
            link: LinkStats {
                connects: get(&l.connects),
                connect_failures: get(&l.connect_failures),
                disconnects: get(&l.disconnects),
                bad_lines: get(&l.bad_lines),
                mirror_updates: get(&l.mirror_updates),
                local_count_reports: get(&l.local_count_reports),
                label_reports: get(&l.label_reports),
            },
            uplink_receive_errors: get(&self.shared.uplink_receive_errors),
            vm_wire_errors: get(&self.shared.vm_wire_errors),
        }
    }

    /// Stops forwarding, exports the last samples and counters, sends the final
    /// `local_counts` if the controller is connected, and waits for every task.
    pub async fn shutdown(mut self) -> Result<HostStats, HostError> {
        self.signal_stop();
        for task in std::mem::take(&mut self.tasks) {
            task.await?;
        }
        Ok(self.stats())
    }

    fn signal_stop(&self) {
        self.shared.vswitch().stop();
        self.stop.send_replace(true);
    }
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        self.signal_stop();
    }
}
