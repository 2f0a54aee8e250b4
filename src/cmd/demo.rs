//! `vmdep demo`: the emulated data center (or, with `--netns`, network namespaces behind Open
//! vSwitch), measured end to end, with a readable report.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use vmdep::controller::session::PipelineBundle;
use vmdep::demo::emulated::{self, DemoOptions, DemoReport, Progress};
use vmdep::demo::netns::{self, LabCleanup};
use vmdep::demo::netns_run::{self, NetnsDemoOptions};
use vmdep::demo::processes::children::Program;
use vmdep::demo::processes::{self, ProcessesOptions};
use vmdep::demo::workload::WorkloadSpec;

#[derive(Args)]
pub struct DemoArgs {
    /// Seed of the workload (and of the hosts' samplers).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How much workload time to run.
    #[arg(long, default_value = "15s", value_parser = super::parse_duration)]
    pub duration: Duration,
    /// Workload time per controller window.
    #[arg(long, default_value = "1s", value_parser = super::parse_duration)]
    pub window: Duration,
    /// Multiplies the workload's rates.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// The hosts sample 1 in N frames.
    #[arg(long, default_value_t = 64)]
    pub sampling_rate: u32,
    /// Estimated bytes per window from which a pair is measured exactly.
    #[arg(long, default_value_t = 4_000)]
    pub threshold: u64,
    /// Replay as fast as the fabric takes it instead of at the workload's pace (DPI's
    /// response times then measure the replay, not the workload).
    #[arg(long)]
    pub fast: bool,
    /// Run on real parts, as root: each VM a network namespace behind its server's Open vSwitch
    /// bridge, the switches on veths, the workload over the VMs' own sockets. Everything made
    /// is removed on exit, failure or Ctrl-C.
    #[arg(long, conflicts_with = "processes")]
    pub netns: bool,
    /// Run every part as its own process on loopback UDP wires: the switches, the controller
    /// and the servers are children of this one (logs in OUT_DIR/logs), which plays the VMs.
    #[arg(long)]
    pub processes: bool,
    /// Start each switch with this command in bmv2's command-line shape (`CMD --device-id N
    /// --thrift-port T -i PORT@WHERE ... --no-p4 -- --grpc-server-addr ADDR`), e.g.
    /// simple_switch_grpc with --netns; with --processes its ports are UDP wires
    /// (PORT@udp:LOCAL=PEER), which `vmdep switch` takes.
    #[arg(long, value_name = "CMD")]
    pub switch_cmd: Option<String>,
    /// The compiled pipeline the controller pushes: PREFIX.json and PREFIX.p4info.txtpb (or
    /// .p4info.bin), as `vmdep compile` or p4c write them. Default: the built-in vmdep.p4.
    #[arg(long, value_name = "PREFIX")]
    pub pipeline: Option<PathBuf>,
    /// Serve the controller's HTTP API here during the run (e.g. 127.0.0.1:8080), with an
    /// in-memory history.
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Keep serving the API this long after the last window (the report prints after it).
    #[arg(long, default_value = "0s", value_parser = super::parse_duration, requires = "http_listen")]
    pub linger: Duration,
    /// Directory for graph.json, graph.dot and report.json.
    #[arg(short = 'o', long, default_value = "vmdep-demo")]
    pub out_dir: PathBuf,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.sampling_rate == 0 {
        bail!("--sampling-rate must be at least 1");
    }
    if args.window.is_zero() {
        bail!("--window must be longer than zero");
    }
    let switch_cmd = match &args.switch_cmd {
        Some(cmd) => {
            if !(args.processes || args.netns) {
                bail!(
                    "--switch-cmd starts switches as processes: use it with --processes or --netns"
                );
            }
            Some(Program::parse(cmd).context("--switch-cmd names no command")?)
        }
        None => None,
    };
    if args.pipeline.is_some() && !(args.processes || args.netns) {
        bail!("--pipeline is for --processes and --netns (the in-process demo runs the built-in vmdep.p4)");
    }
    if args.netns {
        if args.fast {
            bail!("--fast replays frames; --netns runs the workload over real sockets at its own pace");
        }
        netns::require_root().context("vmdep demo --netns creates network namespaces and Open vSwitch bridges; run it as root")?;
    }
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let options = DemoOptions {
        workload: WorkloadSpec {
            duration: args.duration,
            seed: args.seed,
            scale: args.scale,
        },
        window: args.window,
        real_time: !args.fast,
        sampling_rate: args.sampling_rate,
        threshold_bytes: args.threshold,
        out_dir: Some(args.out_dir.clone()),
        http_listen: args.http_listen,
        linger: args.linger,
        ..DemoOptions::default()
    };
    println!(
        "vmdep demo{}: reference topology (5 P4 switches, 4 servers, 12 VMs), three-tier workload \
         (seed {}, {} s), sampling 1 in {}, threshold {} B per {} s window",
        if args.netns {
            " --netns (VMs in network namespaces behind Open vSwitch)"
        } else if args.processes {
            " --processes (every switch, server and the controller its own process)"
        } else {
            ""
        },
        args.seed,
        args.duration.as_secs_f64(),
        args.sampling_rate,
        args.threshold,
        args.window.as_secs_f64()
    );
    let report = if args.netns {
        let pipeline = match &args.pipeline {
            Some(_) => Some(super::controller::load_pipeline(args.pipeline.as_deref())?),
            None => None,
        };
        run_netns(options, switch_cmd, pipeline).await?
    } else if args.processes {
        let vmdep = std::env::current_exe().context("cannot find this vmdep binary")?;
        let options = ProcessesOptions {
            demo: options,
            vmdep,
            switch_cmd,
            pipeline: args.pipeline.clone(),
        };
        tokio::select! {
            report = processes::run(options, print_progress) => {
                report.context("the demo failed")?
            }
            // Dropping the run kills its children.
            _ = super::stop_signal() => bail!("interrupted; the demo's processes were stopped"),
        }
    } else {
        emulated::run(options, print_progress)
            .await
            .context("the demo failed")?
    };
    print_report(&report);
    let lossy = report
        .netns
        .as_ref()
        .is_some_and(|n| n.lost_datagrams > 0 || n.unexpected > 0);
    if !report.exact_counts_match()
        || !report.missed.is_empty()
        || !report.phantom.is_empty()
        || lossy
    {
        bail!("the measurements disagree with the ground truth (see above)");
    }
    Ok(())
}

/// The netns demo, with its lab removed on Ctrl-C or SIGTERM too.
async fn run_netns(
    options: DemoOptions,
    switch_cmd: Option<Program>,
    pipeline: Option<PipelineBundle>,
) -> anyhow::Result<DemoReport> {
    let options = NetnsDemoOptions {
        switch_cmd,
        pipeline,
        workload: options.workload,
        window: options.window,
        sampling_rate: options.sampling_rate,
        threshold_bytes: options.threshold_bytes,
        out_dir: options.out_dir,
        prefix: None,
        http_listen: options.http_listen,
        linger: options.linger,
    };
    let cleanup: std::sync::Mutex<Option<LabCleanup>> = std::sync::Mutex::new(None);
    let remember = |handle: LabCleanup| {
        *cleanup.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    };
    tokio::select! {
        report = netns_run::run(options, remember, print_progress) => {
            report.context("the netns demo failed")
        }
        _ = super::stop_signal() => {
            // The run's tasks may still hold the lab: sweep it by its prefix now.
            let handle = cleanup.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(handle) = handle {
                handle.run().context("removing the netns lab after the interruption")?;
            }
            bail!("interrupted; the netns lab was removed")
        }
    }
}

fn print_progress(p: &Progress) {
    if let (1, Some(addr)) = (p.window, p.http_addr) {
        println!(
            "  dependency map on http://{addr}/ (API: /api/graph and more under /api; metrics: /metrics)"
        );
    }
    println!(
        "  window {:>2}/{}: {:>6} frames sent, {:>4} samples, {:>2} pairs selected, {:>2} released, {:>2} measured",
        p.window, p.windows, p.frames_sent, p.samples, p.selected, p.released, p.measured
    );
}

fn print_report(r: &DemoReport) {
    println!();
    println!(
        "Dependency graph (VM → VM; exact counts on the measuring switch or server; ↩ = answers):"
    );
    println!(
        "  {:<20} {:<16} {:>8} {:>11}  {:<12} check",
        "pair", "protocol", "packets", "bytes", "measured by"
    );
    for p in &r.pairs {
        let pair = format!("{} → {}", p.src, p.dst);
        let protocol = match (p.protocols.is_empty(), p.answers.is_empty()) {
            (false, true) => p.protocols.join(","),
            (false, false) => format!("{} ↩ {}", p.protocols.join(","), p.answers.join(",")),
            (true, false) => format!("↩ {}", p.answers.join(",")),
            (true, true) => "-".to_string(),
        };
        match (p.exact_packets, p.exact_bytes, &p.measured_by) {
            (Some(packets), Some(bytes), Some(by)) => {
                let check = match (p.exact_matches, p.expected_packets) {
                    (Some(true), _) if p.same_server => "= truth".to_string(),
                    (Some(true), _) => "= truth since its entry went in".to_string(),
                    (Some(false), Some(e)) => format!("MISMATCH: truth {e} packets"),
                    _ => String::new(),
                };
                println!("  {pair:<20} {protocol:<16} {packets:>8} {bytes:>11}  {by:<12} {check}");
            }
            _ if p.samples == 0 => println!(
                "  {pair:<20} {protocol:<16} {:>8} {:>11}  {:<12} never sampled ({} packets in truth)",
                "-", "-", "-", p.truth_packets
            ),
            _ => println!(
                "  {pair:<20} {protocol:<16} {:>8} {:>11}  {:<12} estimated from {} samples",
                format!("~{}", p.estimated_packets),
                format!("~{}", p.estimated_bytes),
                "-",
                p.samples
            ),
        }
    }

    println!();
    println!("Sampled estimates against the ground truth (whole run, packets):");
    println!(
        "  {:<20} {:>8} {:>9} {:>8} {:>9}",
        "pair", "truth", "estimate", "error", "95% bound"
    );
    for p in r.pairs.iter().filter(|p| p.samples > 0) {
        println!(
            "  {:<20} {:>8} {:>9} {:>7.1}% {:>8.1}%",
            format!("{} → {}", p.src, p.dst),
            p.truth_packets,
            p.estimated_packets,
            p.estimate_error_percent.unwrap_or(0.0),
            p.estimate_bound_percent.unwrap_or(0.0)
        );
    }
    let unsampled = r.pairs.iter().filter(|p| p.samples == 0).count();
    if unsampled > 0 {
        println!("  ({unsampled} pairs were never sampled)");
    }

    println!();
    println!("Counting entries per switch at the peak (vmdep: one switch per pair; everywhere: every switch of each pair's path):");
    println!(
        "  {:<8} {:>6} {:>11} {:>9}",
        "switch", "vmdep", "everywhere", "capacity"
    );
    for e in &r.entries {
        println!(
            "  {:<8} {:>6} {:>11} {:>9}",
            e.switch, e.vmdep, e.everywhere, e.capacity
        );
    }

    if let Some(placement) = &r.placement {
        println!(
            "  the same {} pairs placed three ways (highest switch load): {}; every switch of the path: {:.4}",
            placement.pairs,
            placement
                .strategies
                .iter()
                .map(|s| format!("{:?} {:.4}", s.strategy, s.max_load).to_lowercase())
                .collect::<Vec<_>>()
                .join(", "),
            placement.every_switch_of_path.max_load
        );
    }

    println!();
    println!("Application labels (DPI on the servers' mirror ports) against the workload:");
    for l in &r.labels {
        let dpi = match (&l.dpi_protocol, l.mirrored) {
            (Some(p), _) => p.as_str(),
            (None, false) => "-  (not mirrored while it spoke)",
            (None, true) => "(not labeled)",
        };
        let rt = match (l.truth_mean_response_ms, l.dpi_mean_response_ms) {
            (Some(t), Some(d)) => format!("response {d:.2} ms (truth {t:.2} ms)"),
            _ => String::new(),
        };
        println!(
            "  {:<24} {:<12} DPI: {:<12} {}{}",
            format!("{} → {}:{}", l.client, l.server, l.server_port),
            l.truth_protocol,
            dpi,
            if l.matches || !l.mirrored { "" } else { "✗ " },
            rt
        );
    }

    let measured = r.pairs.iter().filter(|p| p.exact_matches.is_some()).count();
    let matching = r
        .pairs
        .iter()
        .filter(|p| p.exact_matches == Some(true))
        .count();
    let mirrored = r.labels.iter().filter(|l| l.mirrored).count();
    let labeled = r.labels.iter().filter(|l| l.mirrored && l.matches).count();
    println!();
    println!(
        "Result: {} pairs communicated; {measured} counted exactly, {matching} equal to the ground truth; \
         {} missed above the threshold; {} invented; {labeled}/{mirrored} mirrored conversations \
         labeled with their protocol ({} conversations in all).",
        r.pairs.len(),
        r.missed.len(),
        r.phantom.len(),
        r.labels.len()
    );
    for m in &r.missed {
        println!("  missed: {m}");
    }
    for p in &r.phantom {
        println!("  invented: {p}");
    }
    println!(
        "{} frames in {} windows, {:.1} s.",
        r.frames, r.windows, r.elapsed_seconds
    );
    if let Some(n) = &r.netns {
        println!(
            "netns lab {}: {} conversations over the VMs' sockets, {} datagrams lost, {} unexpected \
             connections or datagrams, {} non-IPv4 frames, {} sFlow datagrams, {} mirrored frames \
             dropped, {} captured frames dropped; the lab is removed.",
            n.prefix,
            n.conversations,
            n.lost_datagrams,
            n.unexpected,
            n.non_ipv4_frames,
            n.sflow_datagrams,
            n.mirror_drops,
            n.capture_drops
        );
    }
    for f in &r.files {
        println!("wrote {}", f.display());
    }
}
