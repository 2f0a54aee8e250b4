//! A running `vmdep switch`: ports, the idle-timeout scanner and the P4Runtime gRPC server,
//! started together and stopped together. Used by the CLI and by in-process tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::p4rt::v1::p4_runtime_server::P4RuntimeServer;

use super::capture::{CaptureError, PortCaptures};
use super::p4runtime::device::Device;
use super::p4runtime::P4RuntimeService;
use super::ports::{self, ChannelPort, FrameSink, InterfacePort, PortBackend, PortSpec, UdpWire};
use super::{LoadError, Switch};

/// How to run a switch.
#[derive(Debug, Clone)]
pub struct SwitchOptions {
    pub device_id: u64,
    pub cpu_port: Option<u32>,
    /// Port 0 picks a free port (see [`RunningSwitch::grpc_addr`]).
    pub grpc_addr: SocketAddr,
    pub ports: Vec<PortSpec>,
    /// Ports backed by in-process channels (see [`RunningSwitch::channel_ports`]).
    pub channel_ports: Vec<u32>,
    /// A bmv2 JSON to run from the start, without a P4Info (like bmv2's positional argument).
    pub json: Option<PathBuf>,
    /// How often entries are checked for idle timeouts.
    pub idle_scan_interval: Duration,
    /// bmv2's `--pcap DIR`: each port's frames in and out, in `DIR/NAME_in.pcap` and
    /// `DIR/NAME_out.pcap` (see [`PortCaptures`]).
    pub pcap_dir: Option<PathBuf>,
}

impl SwitchOptions {
    pub fn new(device_id: u64, grpc_addr: SocketAddr) -> SwitchOptions {
        SwitchOptions {
            device_id,
            cpu_port: None,
            grpc_addr,
            ports: Vec::new(),
            channel_ports: Vec::new(),
            json: None,
            idle_scan_interval: Duration::from_millis(100),
            pcap_dir: None,
        }
    }
}

/// Why a switch could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("port {port} is given twice")]
    DuplicatePort { port: u32 },
    #[error("the CPU port {0} is also a data port")]
    CpuPortInUse(u32),
    #[error("cannot open the UDP wire of port {port} on {local}: {source}")]
    Udp {
        port: u32,
        local: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open interface {name} for port {port}: {source}{hint}")]
    Interface {
        port: u32,
        name: String,
        hint: &'static str,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    ReadJson {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot load {path}: {source}")]
    LoadJson { path: PathBuf, source: LoadError },
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("cannot listen for gRPC on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("a switch task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A started switch; stop it with [`RunningSwitch::shutdown`].
pub struct RunningSwitch {
    pub grpc_addr: SocketAddr,
    /// Each UDP port's bound local address.
    pub udp_ports: HashMap<u32, SocketAddr>,
    /// Each interface port's interface name.
    pub interface_ports: HashMap<u32, String>,
    /// The test side of each in-process port.
    pub channel_ports: HashMap<u32, ChannelPort>,
    pub device: Arc<Device>,
    stop: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts ports, the idle-timeout scanner and the gRPC server.
pub async fn start(options: SwitchOptions) -> Result<RunningSwitch, StartError> {
    let mut seen = std::collections::HashSet::new();
    for port in options
        .ports
        .iter()
        .map(|p| p.port)
        .chain(options.channel_ports.iter().copied())
    {
        if !seen.insert(port) {
            return Err(StartError::DuplicatePort { port });
        }
        if Some(port) == options.cpu_port {
            return Err(StartError::CpuPortInUse(port));
        }
    }
    let initial = match &options.json {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| StartError::ReadJson {
                path: path.clone(),
                source,
            })?;
            Some(
                Switch::from_json_str(&text).map_err(|source| StartError::LoadJson {
                    path: path.clone(),
                    source,
                })?,
            )
        }
    };
    let mut senders = HashMap::new();
    let mut wires = Vec::new();
    let mut udp_ports = HashMap::new();
    let mut interfaces = Vec::new();
    let mut interface_ports = HashMap::new();
    for spec in &options.ports {
        match &spec.backend {
            &PortBackend::Udp { local, peer } => {
                let wire = UdpWire::open(local, peer)
                    .await
                    .map_err(|source| StartError::Udp {
                        port: spec.port,
                        local,
                        source,
                    })?;
                udp_ports.insert(spec.port, wire.local);
                senders.insert(spec.port, wire.sender.clone());
                wires.push((spec.port, wire));
            }
            PortBackend::Interface { name } => {
                let opened = InterfacePort::open(name).map_err(|source| StartError::Interface {
                    port: spec.port,
                    name: name.clone(),
                    hint: if source.kind() == std::io::ErrorKind::PermissionDenied {
                        " (AF_PACKET sockets need CAP_NET_RAW: run as root)"
                    } else {
                        ""
                    },
                    source,
                })?;
                senders.insert(spec.port, opened.sender.clone());
                interface_ports.insert(spec.port, name.clone());
                interfaces.push((spec.port, opened));
            }
        }
    }
    let mut channel_ports = HashMap::new();
    let mut channel_inputs = Vec::new();
    for &port in &options.channel_ports {
        let (sender, test_side, input) = ports::channel_port();
        senders.insert(port, sender);
        channel_ports.insert(port, test_side);
        channel_inputs.push((port, input));
    }
    let mut device = Device::new(options.device_id, options.cpu_port, senders, initial);
    if let Some(dir) = &options.pcap_dir {
        // bmv2 names a port's files after its interface; the other kinds have none.
        let names = options.ports.iter().map(|spec| match &spec.backend {
            PortBackend::Interface { name } => (spec.port, name.clone()),
            PortBackend::Udp { .. } => (spec.port, PortCaptures::unnamed(spec.port)),
        });
        let channels = options
            .channel_ports
            .iter()
            .map(|&port| (port, PortCaptures::unnamed(port)));
        device = device.with_captures(PortCaptures::create(dir, names.chain(channels))?);
    }
    let device = Arc::new(device);
    let listener = tokio::net::TcpListener::bind(options.grpc_addr)
        .await
        .map_err(|source| StartError::Listen {
            addr: options.grpc_addr,
            source,
        })?;
    let grpc_addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: options.grpc_addr,
        source,
    })?;

    let (stop, shutdown) = watch::channel(false);
    let sink: Arc<dyn FrameSink> = device.clone();
    let mut tasks = Vec::new();
    for (port, wire) in wires {
        tasks.push(tokio::spawn(wire.receive_loop(
            port,
            sink.clone(),
            shutdown.clone(),
        )));
    }
    for (port, interface) in interfaces {
        tasks.push(tokio::spawn(interface.receive_loop(
            port,
            sink.clone(),
            shutdown.clone(),
        )));
    }
    for (port, input) in channel_inputs {
        tasks.push(tokio::spawn(ports::channel_receive_loop(
            port,
            input,
            sink.clone(),
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(idle_scanner(
        device.clone(),
        options.idle_scan_interval,
        shutdown.clone(),
    )));

    let service = P4RuntimeService::new(device.clone(), shutdown.clone());
    let mut server_shutdown = shutdown.clone();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(P4RuntimeServer::new(service))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move {
                    let _ = server_shutdown.wait_for(|stopping| *stopping).await;
                },
            ),
    );
    tracing::info!(%grpc_addr, device_id = options.device_id, "P4Runtime server listening");
    Ok(RunningSwitch {
        grpc_addr,
        udp_ports,
        interface_ports,
        channel_ports,
        device,
        stop,
        server,
        tasks,
    })
}

async fn idle_scanner(
    device: Arc<Device>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => device.scan_idle_timeouts(),
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

impl RunningSwitch {
    /// Runs until `signal` completes or the gRPC server stops by itself, then shuts down.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), StartError> {
        tokio::select! {
            _ = signal => self.shutdown().await,
            result = &mut self.server => {
                let _ = self.stop.send(true);
                for task in self.tasks.drain(..) {
                    task.await?;
                }
                result?.map_err(StartError::from)
            }
        }
    }

    /// Stops every task and the server (open streams end with UNAVAILABLE).
    pub async fn shutdown(self) -> Result<(), StartError> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await?;
        }
        self.server.await??;
        self.device.report_send_failures();
        let drops = &self.device.drops;
        // A warning when anything was dropped, so the default log level (warn) shows it.
        macro_rules! summary {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    no_pipeline = drops.no_pipeline.load(Ordering::Relaxed),
                    unknown_port = drops.unknown_port.load(Ordering::Relaxed),
                    port_send_failed = drops.port_send_failed.load(Ordering::Relaxed),
                    port_receive_overflow = drops.port_receive_overflow.load(Ordering::Relaxed),
                    packet_in = drops.packet_in.load(Ordering::Relaxed),
                    idle_timeout = drops.idle_timeout.load(Ordering::Relaxed),
                    "switch stopped; frames and notifications dropped"
                )
            };
        }
        let dropped = [
            &drops.no_pipeline,
            &drops.unknown_port,
            &drops.port_send_failed,
            &drops.port_receive_overflow,
            &drops.packet_in,
            &drops.idle_timeout,
        ]
        .iter()
        .any(|counter| counter.load(Ordering::Relaxed) > 0);
        if dropped {
            summary!(tracing::Level::WARN);
        } else {
            summary!(tracing::Level::INFO);
        }
        Ok(())
    }
}
