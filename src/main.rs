//! The `vmdep` command line: one binary, one subcommand per part of the system.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod cmd;

use vmdep::switch::ports::PortSpec;
use vmdep::switch::runner::{self, SwitchOptions};

#[derive(Parser)]
#[command(
    name = "vmdep",
    version,
    about = "VM communication dependencies, measured with sFlow and P4 counters"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `vmdep=debug`; RUST_LOG also works.
    /// Default: `vmdep=info` for services (controller), `warn` otherwise.
    #[arg(long, global = true)]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a P4_16 v1model program to bmv2 JSON and a P4Info
    /// (DIR/NAME.json, DIR/NAME.p4info.txtpb, DIR/NAME.p4info.bin).
    Compile {
        /// The P4 source file.
        file: PathBuf,
        /// Output directory (created if missing).
        #[arg(short = 'o', long = "out-dir", default_value = ".")]
        out_dir: PathBuf,
    },
    /// A bmv2-compatible software switch served over P4Runtime (simple_switch_grpc's role).
    Switch(SwitchArgs),
    /// The SDN controller: sFlow collector, pre-analysis, paths, placement of one counting entry
    /// per measured VM pair, P4Runtime sessions, the dependency graph.
    Controller(cmd::controller::ControllerArgs),
    /// The whole system on one machine: the reference topology's switches, emulated servers
    /// with DPI, the controller and a three-tier workload, measured against its ground truth.
    Demo(cmd::demo::DemoArgs),
    /// Print a running controller's dependency graph (table, JSON or DOT) from its HTTP API.
    Graph(cmd::graph::GraphArgs),
    /// An emulated server: its VMs' virtual switch with sFlow sampling, exact same-server
    /// counts and mirroring (Open vSwitch's role on a hypervisor).
    Host(HostArgs),
}

#[derive(Args)]
struct HostArgs {
    /// The topology file (TOML).
    #[arg(long)]
    topology: PathBuf,
    /// This server's name in the topology.
    #[arg(long)]
    server: String,
    /// The wire to the server's switch port: udp:LOCAL_ADDR:PORT=PEER_ADDR:PORT.
    #[arg(long)]
    uplink: vmdep::host::UdpWire,
    /// Where sFlow datagrams go.
    #[arg(long, default_value = "127.0.0.1:6343")]
    collector: SocketAddr,
    /// The controller's host-link address (mirror requests in, exact counts and labels out).
    #[arg(long)]
    controller: Option<SocketAddr>,
    /// Sample 1 in N frames at each port.
    #[arg(long, default_value_t = vmdep::host::DEFAULT_SAMPLING_RATE)]
    sampling_rate: u32,
    /// Seconds between counter samples of each port.
    #[arg(long, default_value_t = vmdep::host::DEFAULT_COUNTER_INTERVAL.as_secs_f64())]
    counter_interval: f64,
    /// Seed of the samplers' random numbers.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seconds between exact same-server counts sent to the controller.
    #[arg(long, default_value_t = vmdep::host::DEFAULT_REPORT_INTERVAL.as_secs_f64())]
    report_interval: f64,
    /// A VM's interface as a UDP wire, one Ethernet frame per datagram (like QEMU's
    /// `-netdev dgram`): NAME=udp:LOCAL_ADDR:PORT=PEER_ADDR:PORT. Repeatable.
    #[arg(long = "vm", value_name = "NAME=udp:LOCAL=PEER")]
    vms: Vec<vmdep::host::VmWire>,
}

/// Options in bmv2 simple_switch_grpc's shape: `vmdep switch -i 1@udp:A=B prog.json -- --cpu-port 255`
/// works, and so does the same without `--`.
#[derive(Args)]
struct SwitchArgs {
    /// Device id used in P4Runtime requests.
    #[arg(long, default_value_t = 0)]
    device_id: u64,
    /// A port: PORT@INTERFACE (a Linux interface, AF_PACKET; needs root) or
    /// PORT@udp:LOCAL_ADDR:PORT=PEER_ADDR:PORT (loopback UDP wire, one frame per datagram).
    #[arg(short = 'i', long = "interface", value_name = "PORT@WHERE")]
    interfaces: Vec<PortSpec>,
    /// bmv2 log level (trace, debug, info, warn, error, off); overrides --log.
    #[arg(short = 'L', long)]
    log_level: Option<String>,
    /// Log to standard output, as bmv2 does (level: -L, default debug: each packet's way
    /// through the pipeline, as bmv2's console log shows it).
    #[arg(long, conflicts_with = "log_file")]
    log_console: bool,
    /// Log to this file, appended to (level: -L, default debug, as for --log-console).
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Write each port's frames to DIR/NAME_in.pcap (received) and DIR/NAME_out.pcap (sent),
    /// NAME being the interface's name (`port<N>` for a UDP wire); DIR defaults to `.`.
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = ".")]
    pcap: Option<PathBuf>,
    /// Accepted for bmv2's command line (the p4lang tutorials pass it); vmdep has no nanomsg
    /// event log.
    #[arg(long, value_name = "ADDR")]
    nanolog: Option<String>,
    /// Accepted for bmv2's command line (the p4lang tutorials pass it); vmdep has no bmv2
    /// debugger.
    #[arg(long)]
    debugger: bool,
    /// Start without a program; the controller sets one with SetForwardingPipelineConfig.
    #[arg(long, conflicts_with = "json")]
    no_p4: bool,
    /// Accepted for bmv2's command line (bmv2 instances on one machine each need their own
    /// Thrift port); vmdep serves P4Runtime only, no Thrift runtime CLI.
    #[arg(long, value_name = "PORT")]
    thrift_port: Option<u16>,
    /// A bmv2 JSON to run from the start (a controller still sets a P4Info before writing).
    json: Option<PathBuf>,
    #[command(flatten)]
    target: TargetArgs,
    /// bmv2 target options after `--` (--grpc-server-addr, --cpu-port).
    #[arg(last = true, value_name = "TARGET_OPTIONS")]
    target_options: Vec<String>,
}

#[derive(Args, Clone)]
struct TargetArgs {
    /// Address of the P4Runtime gRPC server.
    #[arg(long)]
    grpc_server_addr: Option<SocketAddr>,
    /// The port packet-in/packet-out use (frames the program sends there go to the controller).
    #[arg(long)]
    cpu_port: Option<u32>,
}

/// The target options bmv2 takes after `--`.
#[derive(Parser)]
#[command(name = "vmdep switch --", no_binary_name = true)]
struct TrailingTargetArgs {
    #[command(flatten)]
    target: TargetArgs,
}

const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:9559";

fn log_filter(cli: &Cli) -> EnvFilter {
    match &cli.command {
        Command::Switch(SwitchArgs {
            log_level: Some(level),
            ..
        }) => EnvFilter::new(format!("vmdep={level}")),
        // bmv2 logs only when asked to, and then everything, each packet's way included.
        Command::Switch(args) if args.log_console || args.log_file.is_some() => {
            EnvFilter::new("vmdep=debug")
        }
        _ => EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new(cli.log.as_deref().unwrap_or(match cli.command {
                // Long-running services report each window; one-shot commands stay quiet.
                Command::Controller(_) => "vmdep=info",
                _ => "warn",
            }))
        }),
    }
}

fn switch_options(args: SwitchArgs) -> anyhow::Result<SwitchOptions> {
    let trailing = TrailingTargetArgs::try_parse_from(&args.target_options)
        .context("bad target options after `--`")?
        .target;
    let grpc_addr = match trailing.grpc_server_addr.or(args.target.grpc_server_addr) {
        Some(addr) => addr,
        None => DEFAULT_GRPC_ADDR.parse().context("default gRPC address")?,
    };
    let mut options = SwitchOptions::new(args.device_id, grpc_addr);
    options.cpu_port = trailing.cpu_port.or(args.target.cpu_port);
    options.ports = args.interfaces;
    options.json = if args.no_p4 { None } else { args.json };
    options.pcap_dir = args.pcap;
    Ok(options)
}

async fn run_switch(args: SwitchArgs) -> anyhow::Result<()> {
    if let Some(port) = args.thrift_port {
        eprintln!(
            "vmdep switch: --thrift-port {port} accepted; vmdep serves no Thrift, only P4Runtime"
        );
    }
    if let Some(addr) = &args.nanolog {
        eprintln!("vmdep switch: --nanolog {addr} accepted; vmdep has no nanomsg event log");
    }
    if args.debugger {
        eprintln!("vmdep switch: --debugger accepted; vmdep has no bmv2 debugger");
    }
    let options = switch_options(args)?;
    // Handlers first: a signal sent as soon as the addresses below are printed must stop the
    // switch cleanly, not kill it.
    let stop = cmd::stop_signal();
    let running = runner::start(options)
        .await
        .context("cannot start the switch")?;
    // Tools that start the switch with port 0 addresses read the bound ones from these lines.
    eprintln!("vmdep switch: P4Runtime on {}", running.grpc_addr);
    let mut udp_ports: Vec<_> = running.udp_ports.iter().collect();
    udp_ports.sort();
    for (port, local) in udp_ports {
        eprintln!("vmdep switch: port {port} on udp {local}");
    }
    let mut interface_ports: Vec<_> = running.interface_ports.iter().collect();
    interface_ports.sort();
    for (port, name) in interface_ports {
        eprintln!("vmdep switch: port {port} on interface {name}");
    }
    running
        .run_until(stop)
        .await
        .context("switch stopped with an error")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt().with_env_filter(log_filter(&cli));
    match &cli.command {
        Command::Switch(args) if args.log_console => logs.with_writer(std::io::stdout).init(),
        Command::Switch(SwitchArgs {
            log_file: Some(path),
            ..
        }) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            logs.with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init()
        }
        _ => logs.with_writer(std::io::stderr).init(),
    }
    match cli.command {
        Command::Compile { file, out_dir } => compile(&file, &out_dir),
        Command::Switch(args) => tokio::runtime::Runtime::new()
            .context("cannot start the async runtime")?
            .block_on(run_switch(args)),
        Command::Demo(args) => tokio::runtime::Runtime::new()
            .context("cannot start the async runtime")?
            .block_on(cmd::demo::run(args)),
        Command::Controller(args) => tokio::runtime::Runtime::new()
            .context("cannot start the async runtime")?
            .block_on(cmd::controller::run(args)),
        Command::Graph(args) => tokio::runtime::Runtime::new()
            .context("cannot start the async runtime")?
            .block_on(cmd::graph::run(args)),
        Command::Host(args) => tokio::runtime::Runtime::new()
            .context("cannot start the async runtime")?
            .block_on(run_host(args)),
    }
}

async fn run_host(args: HostArgs) -> anyhow::Result<()> {
    let topology = vmdep::controller::topology::Topology::from_file(&args.topology)
        .context("cannot load the topology")?;
    let mut config =
        vmdep::host::HostConfig::new(args.server, std::sync::Arc::new(topology), args.uplink);
    config.collector = args.collector;
    config.controller = args.controller;
    config.sampling_rate = args.sampling_rate;
    config.counter_interval = std::time::Duration::try_from_secs_f64(args.counter_interval)
        .context("bad --counter-interval")?;
    config.report_interval = std::time::Duration::try_from_secs_f64(args.report_interval)
        .context("bad --report-interval")?;
    config.seed = args.seed;
    config.vm_wires = args.vms;
    // Handlers before the address line, as for the switch.
    let stop = cmd::stop_signal();
    let running = vmdep::host::start(config)
        .await
        .context("cannot start the host")?;
    // Tools that start the host with a port 0 uplink read the bound address from this line.
    eprintln!(
        "vmdep host {}: uplink on udp {}, sFlow from {}",
        running.server(),
        running.uplink_addr(),
        running.sflow_source_addr()
    );
    let dpi = vmdep::host::DpiModule::start(&running);
    stop.await;
    if let Some(dpi) = dpi {
        dpi.stop().await;
    }
    let stats = running
        .shutdown()
        .await
        .context("host stopped with an error")?;
    tracing::info!(?stats, "host stopped");
    Ok(())
}

fn compile(file: &Path, out_dir: &Path) -> anyhow::Result<()> {
    let source =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file.display().to_string();
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.clone());
    let out = match vmdep::compiler::compile(&source, &file_name) {
        Ok(out) => out,
        Err(diags) => {
            eprint!("{}", diags.render(&name, &source));
            eprintln!("{}: {}", name, diags);
            std::process::exit(1);
        }
    };
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "program".into());
    let json_path = out_dir.join(format!("{stem}.json"));
    std::fs::write(&json_path, &out.bmv2_json)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let text_path = out_dir.join(format!("{stem}.p4info.txtpb"));
    std::fs::write(&text_path, out.p4info_text())
        .with_context(|| format!("cannot write {}", text_path.display()))?;
    let bin_path = out_dir.join(format!("{stem}.p4info.bin"));
    std::fs::write(&bin_path, out.p4info_binary())
        .with_context(|| format!("cannot write {}", bin_path.display()))?;
    tracing::info!(
        json = %json_path.display(),
        p4info = %text_path.display(),
        "compiled {}",
        file.display()
    );
    Ok(())
}
