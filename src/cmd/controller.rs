//! `vmdep controller --topology FILE`: the SDN controller that measures VM dependencies.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use prost::Message;

use vmdep::controller::api;
use vmdep::controller::estimate::{Metric, SelectionPolicy};
use vmdep::controller::history::{HistoryRecorder, HistoryStore};
use vmdep::controller::service::{self, ControllerOptions};
use vmdep::controller::session::PipelineBundle;
use vmdep::controller::topology::Topology;
use vmdep::p4rt::config::P4Info;

/// The data plane every fabric switch runs, built into the binary.
pub const VMDEP_P4: &str = include_str!("../../p4/vmdep.p4");

#[derive(Args)]
pub struct ControllerArgs {
    /// The fabric: switches, links, servers, VMs (TOML; see topologies/README.md).
    #[arg(long)]
    pub topology: PathBuf,
    /// A compiled pipeline: PREFIX.json (bmv2 JSON) and PREFIX.p4info.txtpb or .p4info.bin, as
    /// `vmdep compile` or p4c write them. Default: p4/vmdep.p4, built into vmdep.
    #[arg(long, value_name = "PREFIX")]
    pub pipeline: Option<PathBuf>,
    /// sFlow v5 collector address (UDP).
    #[arg(long, default_value = "127.0.0.1:6343")]
    pub sflow_listen: SocketAddr,
    /// Host-link address (TCP): servers' exact same-server counts and DPI labels.
    #[arg(long, default_value = "127.0.0.1:6344")]
    pub hostlink_listen: SocketAddr,
    /// Pre-analysis window.
    #[arg(long, default_value = "2s", value_parser = super::parse_duration)]
    pub window: Duration,
    /// What closes a window: the `--window` timer, or each SIGUSR2 (an outside clock, e.g.
    /// `vmdep demo --processes`, which replays a window's traffic before it is measured).
    #[arg(long, value_enum, default_value_t = WindowTrigger::Timer)]
    pub window_trigger: WindowTrigger,
    /// What estimates are ranked and thresholded by.
    #[arg(long, value_enum, default_value_t = MetricArg::Bytes)]
    pub metric: MetricArg,
    /// Estimated bytes (or packets, with --metric packets) per window from which a pair is
    /// measured exactly.
    #[arg(long, default_value_t = 10_000)]
    pub threshold: u64,
    /// The window's K largest pairs are measured whatever the threshold.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Most pairs measured at once, fabric-wide (one vm_pair entry each).
    #[arg(long, default_value_t = 16_384)]
    pub entry_budget: usize,
    /// Windows in a row without traffic after which a measured pair is released.
    #[arg(long, default_value_t = 5)]
    pub idle_windows: u32,
    /// Idle timeout of vm_pair entries on the switches (0 turns it off).
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    pub idle_timeout: Duration,
    /// P4Runtime election id (the highest connected controller is primary).
    #[arg(long, default_value_t = 1)]
    pub election_id: u64,
    /// Updates per P4Runtime WriteRequest.
    #[arg(long, default_value_t = 1000)]
    pub max_batch: usize,
    /// Directory for graph.json and graph.dot, written on SIGUSR1 and on exit.
    #[arg(short = 'o', long, default_value = ".")]
    pub out_dir: PathBuf,
    /// HTTP API address (JSON under /api, Prometheus text at /metrics).
    #[arg(long, default_value = api::DEFAULT_LISTEN)]
    pub http_listen: SocketAddr,
    /// The measurement history (SQLite). Default: OUT_DIR/vmdep-history.sqlite.
    #[arg(long, value_name = "FILE", conflicts_with = "no_history")]
    pub history: Option<PathBuf>,
    /// Keep no history.
    #[arg(long)]
    pub no_history: bool,
    /// How long the history keeps a window (0 keeps everything).
    #[arg(long, default_value = "7d", value_parser = super::parse_duration)]
    pub history_retention: Duration,
}

/// Opens the history and starts recording a controller's windows into it.
pub fn start_history(
    path: &Path,
    retention: Duration,
    running: &service::RunningController,
) -> anyhow::Result<(Arc<HistoryStore>, HistoryRecorder)> {
    let retention = (!retention.is_zero()).then_some(retention);
    let store = Arc::new(
        HistoryStore::open(path, retention)
            .with_context(|| format!("cannot open the history {}", path.display()))?,
    );
    let recorder = HistoryRecorder::start(store.clone(), running);
    Ok((store, recorder))
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WindowTrigger {
    Timer,
    Sigusr2,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum MetricArg {
    Bytes,
    Packets,
}

/// The pipeline to push: a compiled one from disk, or vmdep.p4 compiled now.
pub fn load_pipeline(prefix: Option<&Path>) -> anyhow::Result<PipelineBundle> {
    let Some(prefix) = prefix else {
        let out = vmdep::compiler::compile(VMDEP_P4, "vmdep.p4")
            .map_err(|diags| anyhow::anyhow!("the built-in vmdep.p4 does not compile: {diags}"))?;
        return Ok(PipelineBundle {
            p4info: out.p4info,
            device_config: out.bmv2_json.into_bytes(),
        });
    };
    let with = |ext: &str| PathBuf::from(format!("{}{ext}", prefix.display()));
    let json_path = with(".json");
    let device_config = std::fs::read(&json_path)
        .with_context(|| format!("cannot read the bmv2 JSON {}", json_path.display()))?;
    let text_path = with(".p4info.txtpb");
    let bin_path = with(".p4info.bin");
    let p4info = if text_path.exists() {
        let text = std::fs::read_to_string(&text_path)
            .with_context(|| format!("cannot read {}", text_path.display()))?;
        vmdep::p4rt::p4info_from_text(&text)
            .with_context(|| format!("{} is not a P4Info in text format", text_path.display()))?
    } else if bin_path.exists() {
        let bytes = std::fs::read(&bin_path)
            .with_context(|| format!("cannot read {}", bin_path.display()))?;
        P4Info::decode(bytes.as_slice())
            .with_context(|| format!("{} is not a binary P4Info", bin_path.display()))?
    } else {
        bail!(
            "no P4Info next to {}: expected {} or {}",
            json_path.display(),
            text_path.display(),
            bin_path.display()
        );
    };
    Ok(PipelineBundle {
        p4info,
        device_config,
    })
}

pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let topology = Topology::from_file(&args.topology)
        .with_context(|| format!("cannot load the topology {}", args.topology.display()))?;
    let pipeline = load_pipeline(args.pipeline.as_deref())?;
    let mut options = ControllerOptions::new(Arc::new(topology), Arc::new(pipeline));
    options.sflow_listen = args.sflow_listen;
    options.hostlink_listen = args.hostlink_listen;
    options.window = (args.window_trigger == WindowTrigger::Timer).then_some(args.window);
    options.policy = SelectionPolicy {
        metric: match args.metric {
            MetricArg::Bytes => Metric::Bytes,
            MetricArg::Packets => Metric::Packets,
        },
        threshold: args.threshold,
        top_k: args.top_k,
        entry_budget: args.entry_budget,
        idle_windows: args.idle_windows,
    };
    if args.idle_windows == 0 {
        bail!("--idle-windows must be at least 1");
    }
    options.idle_timeout = (!args.idle_timeout.is_zero()).then_some(args.idle_timeout);
    options.election_id = u128::from(args.election_id);
    options.max_batch = args.max_batch.max(1);
    options.output_dir = Some(args.out_dir.clone());
    let history_path = match (&args.history, args.no_history) {
        (_, true) => None,
        (Some(path), false) => Some(path.clone()),
        (None, false) => Some(args.out_dir.join("vmdep-history.sqlite")),
    };
    if history_path.is_some() {
        std::fs::create_dir_all(&args.out_dir)
            .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    }
    let running = service::start(options)
        .await
        .context("cannot start the controller")?;
    let history = match &history_path {
        Some(path) => Some(start_history(path, args.history_retention, &running)?),
        None => None,
    };
    let http = api::serve(
        args.http_listen,
        running.view(),
        history.as_ref().map(|(store, _)| store.clone()),
    )
    .await
    .context("cannot start the HTTP API")?;
    // Before the line below: whoever reads it may signal at once.
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .context("cannot wait for SIGUSR1")?;
    // Only when asked for: a caught SIGUSR2 no longer stops the process.
    let mut usr2 = match args.window_trigger {
        WindowTrigger::Sigusr2 => Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
                .context("cannot wait for SIGUSR2")?,
        ),
        WindowTrigger::Timer => None,
    };
    let stop = super::stop_signal();
    tokio::pin!(stop);
    // Tools that start the controller with port 0 addresses read the bound ones from this line.
    eprintln!(
        "vmdep controller: sFlow on udp {}, host link on tcp {}, HTTP on http://{}, graph in {}",
        running.sflow_addr,
        running.hostlink_addr,
        http.addr,
        args.out_dir.display()
    );
    eprintln!("vmdep controller: dependency map on http://{}/", http.addr);
    if let Some(path) = &history_path {
        eprintln!("vmdep controller: history in {}", path.display());
    }
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = usr1.recv() => match running.write_graph() {
                Ok(Some(dir)) => eprintln!("vmdep controller: graph written to {}", dir.display()),
                Ok(None) => {}
                Err(err) => eprintln!("vmdep controller: {err:#}"),
            },
            Some(_) = async { usr2.as_mut()?.recv().await }, if usr2.is_some() => {
                running.step_window().await.log();
            }
        }
    }
    http.shutdown().await;
    let stopped = running.shutdown().await;
    // After the controller: its last windows are written before the recorder stops.
    if let Some((_, recorder)) = history {
        recorder.shutdown().await;
    }
    stopped.context("the controller stopped with an error")?;
    eprintln!(
        "vmdep controller: graph written to {}",
        args.out_dir.join("graph.json").display()
    );
    Ok(())
}
