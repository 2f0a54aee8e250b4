//! The controller's metrics in the Prometheus text exposition format (version 0.0.4): the sFlow
//! collector's counts, the measurement loop's totals, per-switch entries and P4Runtime RPC
//! statistics, the host links and the history recorder. It owns only the rendering, from plain
//! snapshots the caller takes ([`MetricsInput`]); it reads and changes no state itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::collector::{CollectorStatsSnapshot, SkipReason};
use super::history::HistoryStats;
use super::service::{HostReport, SwitchReport, WindowReport, WindowTotals};
use super::session::{SessionStatus, RPC_LATENCY_BOUNDS};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything /metrics shows, taken at one moment.
pub struct MetricsInput {
    pub collector: CollectorStatsSnapshot,
    pub totals: WindowTotals,
    pub last_window: Option<WindowReport>,
    pub switches: Vec<SwitchReport>,
    pub sessions: Vec<SessionStatus>,
    /// Every server of the topology, with its host-link report (default when never connected).
    pub hosts: BTreeMap<String, HostReport>,
    pub history: Option<HistoryStats>,
}

/// Writes metric families: each family's HELP and TYPE once, before its samples.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }

    /// A family with a single unlabeled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        // Integers print without a fraction; Rust's shortest round-trip form otherwise.
        format!("{value}")
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

fn skip_reason_name(reason: SkipReason) -> String {
    // The JSON name (snake_case) is the label value, so the API and /metrics agree.
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{reason:?}"))
}

/// The whole exposition.
pub fn render(input: &MetricsInput) -> String {
    let mut m = Exposition { out: String::new() };
    let c = &input.collector;
    let n = |v: u64| v as f64;

    m.single(
        "vmdep_sflow_datagrams_total",
        "counter",
        "sFlow datagrams received.",
        n(c.datagrams),
    );
    m.single(
        "vmdep_sflow_bytes_total",
        "counter",
        "sFlow bytes received.",
        n(c.bytes),
    );
    m.single(
        "vmdep_sflow_flow_samples_total",
        "counter",
        "sFlow flow samples read.",
        n(c.flow_samples),
    );
    m.single(
        "vmdep_sflow_counter_samples_total",
        "counter",
        "sFlow counter samples read.",
        n(c.counter_samples),
    );
    m.single(
        "vmdep_sflow_pair_samples_total",
        "counter",
        "Flow samples that gave a VM pair sample.",
        n(c.pair_samples),
    );
    m.family(
        "vmdep_sflow_datagrams_dropped_total",
        "counter",
        "sFlow datagrams not used, by reason (malformed: refused whole; unknown_agent: from no server of the topology).",
    );
    m.sample(
        "vmdep_sflow_datagrams_dropped_total",
        &[("reason", "malformed")],
        n(c.malformed_datagrams),
    );
    m.sample(
        "vmdep_sflow_datagrams_dropped_total",
        &[("reason", "unknown_agent")],
        n(c.unknown_agent_datagrams),
    );
    m.family(
        "vmdep_sflow_samples_dropped_total",
        "counter",
        "sFlow samples or records that gave no pair sample, by reason; queue_full: pair samples the pre-analysis had no room for.",
    );
    for reason in SkipReason::ALL {
        let count = c.skipped.get(&reason).copied().unwrap_or(0);
        m.sample(
            "vmdep_sflow_samples_dropped_total",
            &[("reason", &skip_reason_name(reason))],
            n(count),
        );
    }
    m.sample(
        "vmdep_sflow_samples_dropped_total",
        &[("reason", "queue_full")],
        n(c.queue_full_samples),
    );
    m.single(
        "vmdep_sflow_counter_records_dropped_total",
        "counter",
        "Interface counter records refused by the per-agent interface limit.",
        n(c.counter_table_full),
    );
    m.family(
        "vmdep_sflow_agent_datagrams_total",
        "counter",
        "sFlow datagrams per known agent.",
    );
    for a in &c.agents {
        let agent = a.agent.to_string();
        m.sample(
            "vmdep_sflow_agent_datagrams_total",
            &[("agent", &agent), ("server", &a.server)],
            n(a.datagrams),
        );
    }
    m.family(
        "vmdep_sflow_agent_datagrams_lost_total",
        "counter",
        "sFlow datagrams missing from an agent's sequence numbers.",
    );
    for a in &c.agents {
        let agent = a.agent.to_string();
        m.sample(
            "vmdep_sflow_agent_datagrams_lost_total",
            &[("agent", &agent), ("server", &a.server)],
            n(a.datagrams_lost),
        );
    }

    let t = &input.totals;
    m.single(
        "vmdep_windows_total",
        "counter",
        "Pre-analysis windows run.",
        n(t.windows),
    );
    m.single(
        "vmdep_window_samples_total",
        "counter",
        "Pair samples taken into the windows' estimates.",
        n(t.samples),
    );
    m.single(
        "vmdep_pairs_selected_total",
        "counter",
        "Pairs selected and placed for an exact count.",
        n(t.selected),
    );
    m.family(
        "vmdep_pairs_released_total",
        "counter",
        "Measured pairs whose counting entry was removed, by reason.",
    );
    m.sample(
        "vmdep_pairs_released_total",
        &[("reason", "quiet")],
        n(t.released),
    );
    m.sample(
        "vmdep_pairs_released_total",
        &[("reason", "idle_timeout")],
        n(t.idle),
    );
    m.single(
        "vmdep_pairs_unplaced_total",
        "counter",
        "Selected pairs no switch of their path could take.",
        n(t.unplaced),
    );
    m.single(
        "vmdep_window_errors_total",
        "counter",
        "Switch-side failures reported by windows.",
        n(t.errors),
    );
    let last = input.last_window.as_ref();
    m.single(
        "vmdep_pairs_sampled",
        "gauge",
        "Pairs sampled in the last window.",
        last.map_or(0.0, |w| w.sampled_pairs as f64),
    );
    m.single(
        "vmdep_pairs_measured",
        "gauge",
        "Pairs counted exactly on a switch after the last window.",
        last.map_or(0.0, |w| w.measured as f64),
    );

    m.family(
        "vmdep_switch_entries",
        "gauge",
        "vm_pair counting entries on each switch.",
    );
    for s in &input.switches {
        m.sample(
            "vmdep_switch_entries",
            &[("switch", &s.name)],
            f64::from(s.entries),
        );
    }
    m.family(
        "vmdep_switch_capacity",
        "gauge",
        "vm_pair entries each switch may hold.",
    );
    for s in &input.switches {
        m.sample(
            "vmdep_switch_capacity",
            &[("switch", &s.name)],
            f64::from(s.capacity),
        );
    }
    m.family(
        "vmdep_switch_routes",
        "gauge",
        "ipv4_lpm entries the session holds on each switch.",
    );
    for s in &input.switches {
        m.sample(
            "vmdep_switch_routes",
            &[("switch", &s.name)],
            s.routes as f64,
        );
    }

    m.family(
        "vmdep_p4runtime_session_ready",
        "gauge",
        "1 when the session is connected, primary and its pipeline pushed.",
    );
    for s in &input.sessions {
        let ready = s.connected && s.primary && s.pipeline_pushed;
        m.sample(
            "vmdep_p4runtime_session_ready",
            &[("switch", &s.switch)],
            if ready { 1.0 } else { 0.0 },
        );
    }
    m.family(
        "vmdep_p4runtime_connections_total",
        "counter",
        "Connections that reached the ready state.",
    );
    for s in &input.sessions {
        m.sample(
            "vmdep_p4runtime_connections_total",
            &[("switch", &s.switch)],
            n(s.connections),
        );
    }
    m.family(
        "vmdep_p4runtime_reconnections_total",
        "counter",
        "Attempts to connect again after a failure or a loss.",
    );
    for s in &input.sessions {
        m.sample(
            "vmdep_p4runtime_reconnections_total",
            &[("switch", &s.switch)],
            n(s.reconnections),
        );
    }
    m.family(
        "vmdep_p4runtime_events_dropped_total",
        "counter",
        "Session events lost because the controller's queue was full.",
    );
    for s in &input.sessions {
        m.sample(
            "vmdep_p4runtime_events_dropped_total",
            &[("switch", &s.switch)],
            n(s.events_dropped),
        );
    }
    m.family(
        "vmdep_p4runtime_rpc_errors_total",
        "counter",
        "Failed P4Runtime RPCs per switch and RPC.",
    );
    for s in &input.sessions {
        for (rpc, stats) in &s.rpcs {
            m.sample(
                "vmdep_p4runtime_rpc_errors_total",
                &[("switch", &s.switch), ("rpc", rpc)],
                n(stats.errors),
            );
        }
    }
    m.family(
        "vmdep_p4runtime_rpc_duration_seconds",
        "histogram",
        "P4Runtime RPC latency per switch and RPC.",
    );
    for s in &input.sessions {
        for (rpc, stats) in &s.rpcs {
            let labels = [("switch", s.switch.as_str()), ("rpc", *rpc)];
            let mut cumulative = 0;
            for (le, in_bucket) in RPC_LATENCY_BOUNDS.iter().zip(stats.buckets) {
                cumulative += in_bucket;
                let le = format_value(*le);
                m.sample(
                    "vmdep_p4runtime_rpc_duration_seconds_bucket",
                    &[labels[0], labels[1], ("le", &le)],
                    n(cumulative),
                );
            }
            m.sample(
                "vmdep_p4runtime_rpc_duration_seconds_bucket",
                &[labels[0], labels[1], ("le", "+Inf")],
                n(stats.calls),
            );
            m.sample(
                "vmdep_p4runtime_rpc_duration_seconds_sum",
                &labels,
                stats.latency.as_secs_f64(),
            );
            m.sample(
                "vmdep_p4runtime_rpc_duration_seconds_count",
                &labels,
                n(stats.calls),
            );
        }
    }

    m.family(
        "vmdep_hostlink_connected",
        "gauge",
        "1 while the server's host link is open.",
    );
    for (server, h) in &input.hosts {
        m.sample(
            "vmdep_hostlink_connected",
            &[("server", server)],
            if h.connected { 1.0 } else { 0.0 },
        );
    }
    m.family(
        "vmdep_hostlink_messages_total",
        "counter",
        "Host-link messages received per server.",
    );
    for (server, h) in &input.hosts {
        m.sample(
            "vmdep_hostlink_messages_total",
            &[("server", server)],
            n(h.messages),
        );
    }
    m.family(
        "vmdep_hostlink_rejected_total",
        "counter",
        "Pair counts, labels or lines refused per server.",
    );
    for (server, h) in &input.hosts {
        m.sample(
            "vmdep_hostlink_rejected_total",
            &[("server", server)],
            n(h.rejected),
        );
    }

    if let Some(h) = &input.history {
        m.single(
            "vmdep_history_windows_recorded_total",
            "counter",
            "Windows written to the history database.",
            n(h.windows_recorded),
        );
        m.single(
            "vmdep_history_write_errors_total",
            "counter",
            "Windows the history database refused.",
            n(h.write_errors),
        );
        m.single(
            "vmdep_history_windows_missed_total",
            "counter",
            "Windows the history recorder fell too far behind to see.",
            n(h.windows_missed),
        );
        m.single(
            "vmdep_history_windows_pruned_total",
            "counter",
            "Windows dropped from the history by the retention.",
            n(h.windows_pruned),
        );
    }
    m.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
    }

    #[test]
    fn rpc_latencies_are_a_cumulative_histogram() {
        use super::super::session::RpcStats;
        use std::time::Duration;
        let mut write = RpcStats::default();
        for ms in [0.2, 0.7, 3.0, 3.0, 4000.0] {
            write.record(Duration::from_secs_f64(ms / 1000.0), ms < 1000.0);
        }
        let session = SessionStatus {
            switch: "s111".into(),
            rpcs: [("write", write)].into(),
            ..SessionStatus::default()
        };
        let text = render(&MetricsInput {
            collector: Default::default(),
            totals: Default::default(),
            last_window: None,
            switches: Vec::new(),
            sessions: vec![session],
            hosts: BTreeMap::new(),
            history: None,
        });
        let series = |le: &str| {
            let line = format!(
                "vmdep_p4runtime_rpc_duration_seconds_bucket{{switch=\"s111\",rpc=\"write\",le=\"{le}\"}} "
            );
            let at = text
                .find(&line)
                .unwrap_or_else(|| panic!("{line} in\n{text}"));
            text[at + line.len()..].lines().next().unwrap().to_string()
        };
        assert_eq!(series("0.0005"), "1");
        assert_eq!(series("0.001"), "2");
        assert_eq!(series("0.0025"), "2");
        assert_eq!(series("0.005"), "4");
        assert_eq!(series("2.5"), "4");
        assert_eq!(series("+Inf"), "5");
        assert!(text.contains("# TYPE vmdep_p4runtime_rpc_duration_seconds histogram"));
        assert!(text.contains(
            "vmdep_p4runtime_rpc_duration_seconds_count{switch=\"s111\",rpc=\"write\"} 5"
        ));
        assert!(text.contains("vmdep_p4runtime_rpc_errors_total{switch=\"s111\",rpc=\"write\"} 1"));
    }
}
