//! The measurement history in SQLite: per window, each pair's sampled estimate and exact counter
//! reading, the placements and the DPI labels, kept for a configurable retention and readable
//! after a restart. It owns the database file, its schema (versioned with `PRAGMA user_version`
//! and upgraded by the migrations below) and the recorder task that writes every window the
//! controller reports ([`super::service::ControllerView::subscribe_windows`]).
//!
//! It reads the controller only through that subscription and never changes its state; the
//! HTTP API ([`super::api`]) queries it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::graph::{
    AppLabel, DependencyEdge, ExactTraffic, GraphSnapshot, RangeTraffic, Rates, VmNode,
};
use super::service::{ControllerView, WindowRecord};
use super::topology::Topology;
use super::VmPair;

/// The schema, one migration per version: migration `i` takes `user_version` from `i` to `i + 1`.
/// Never edit a released migration; add one.
const MIGRATIONS: &[&str] = &[
    // 1: windows, per-pair measurements, placements, labels.
    "CREATE TABLE windows (
        id INTEGER PRIMARY KEY,
        run_started_ms INTEGER NOT NULL,
        window_index INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        sampled_pairs INTEGER NOT NULL,
        selected INTEGER NOT NULL,
        released INTEGER NOT NULL,
        idle INTEGER NOT NULL,
        unplaced INTEGER NOT NULL,
        measured INTEGER NOT NULL,
        errors TEXT NOT NULL
    );
    CREATE INDEX windows_at ON windows(at_ms);
    CREATE TABLE pair_measurements (
        window_id INTEGER NOT NULL REFERENCES windows(id) ON DELETE CASCADE,
        at_ms INTEGER NOT NULL,
        src TEXT NOT NULL,
        dst TEXT NOT NULL,
        src_vm TEXT NOT NULL,
        dst_vm TEXT NOT NULL,
        est_samples INTEGER,
        est_packets INTEGER,
        est_bytes INTEGER,
        est_error_percent REAL,
        exact_packets INTEGER,
        exact_bytes INTEGER,
        exact_at_ms INTEGER,
        measured_by TEXT,
        rate_pps REAL,
        rate_bps REAL,
        rate_interval_ms INTEGER,
        PRIMARY KEY (window_id, src, dst)
    );
    CREATE INDEX pair_measurements_at ON pair_measurements(at_ms);
    CREATE TABLE placements (
        window_id INTEGER NOT NULL REFERENCES windows(id) ON DELETE CASCADE,
        at_ms INTEGER NOT NULL,
        src TEXT NOT NULL,
        dst TEXT NOT NULL,
        switch TEXT NOT NULL,
        PRIMARY KEY (window_id, src, dst)
    );
    CREATE TABLE labels (
        window_id INTEGER NOT NULL REFERENCES windows(id) ON DELETE CASCADE,
        at_ms INTEGER NOT NULL,
        src TEXT NOT NULL,
        dst TEXT NOT NULL,
        protocol TEXT NOT NULL,
        client TEXT NOT NULL,
        server TEXT NOT NULL,
        server_port INTEGER NOT NULL,
        details TEXT NOT NULL,
        requests INTEGER NOT NULL,
        responses INTEGER NOT NULL,
        mean_response_ms REAL,
        PRIMARY KEY (window_id, src, dst, protocol, client, server, server_port)
    );
    CREATE INDEX labels_at ON labels(at_ms);",
    // 2: a pair's readings by time, for the last one before a range (a range's traffic).
    "CREATE INDEX pair_measurements_pair ON pair_measurements(src, dst, at_ms);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Rows one answer of the API's history query holds at most.
pub const MAX_ROWS: usize = 100_000;

#[derive(Debug, Error)]
pub enum HistoryError {
    #[error("cannot open the history database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the history database {path} has schema version {found}, newer than this vmdep's \
         {SCHEMA_VERSION}: use a newer vmdep or another file"
    )]
    TooNew { path: PathBuf, found: u32 },
    #[error("history database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("history database holds a bad value in {column}: {value}")]
    BadValue { column: &'static str, value: String },
    #[error("history: the time range {from_ms}..{to_ms} ends before it starts")]
    Range { from_ms: u64, to_ms: u64 },
}

/// Packets and bytes.
type Totals = (u64, u64);

/// One pair's rows in a range, for its traffic in the range.
#[derive(Default)]
struct RangeRows {
    /// By run (when its controller started): the totals of its latest reading in the range.
    exact: std::collections::BTreeMap<u64, Totals>,
    /// The sum of the estimates made in the range.
    estimates: Option<Totals>,
}

/// One pair in one window, as the history holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairRecord {
    pub window_at_ms: u64,
    pub window_index: u64,
    /// When the controller that recorded it started (tells runs apart).
    pub run_started_ms: u64,
    pub pair: VmPair,
    pub src_vm: String,
    pub dst_vm: String,
    /// The window's sampled estimate; none when the pair was not sampled in it.
    pub estimate: Option<WindowEstimate>,
    /// A counter reading taken in this window; none when none was.
    pub exact: Option<ExactReading>,
    /// The switch counting the pair as the window ended.
    pub placed_on: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowEstimate {
    pub samples: u64,
    pub packets: u64,
    pub bytes: u64,
    /// sFlow's 95 % bound on the packet estimate's error, in percent.
    pub error_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExactReading {
    /// Cumulative since the pair was first measured.
    pub packets: u64,
    pub bytes: u64,
    pub measured_by: String,
    pub at_ms: u64,
    pub rate: Option<Rates>,
}

/// What the recorder did, for /metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HistoryStats {
    pub windows_recorded: u64,
    pub write_errors: u64,
    /// Windows the recorder fell too far behind to see.
    pub windows_missed: u64,
    pub windows_pruned: u64,
}

/// The history database.
pub struct HistoryStore {
    conn: Mutex<Connection>,
    retention: Option<Duration>,
    /// Exact readings after this time (the previous recorded window of this process) are new.
    last_window_ms: Mutex<u64>,
    windows_recorded: AtomicU64,
    write_errors: AtomicU64,
    windows_missed: AtomicU64,
    windows_pruned: AtomicU64,
}

fn sql_int(value: u64) -> i64 {
    // Counts and Unix milliseconds stay far below 2^63; clamp rather than wrap if one did not.
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_sql_int(column: &'static str, value: i64) -> Result<u64, HistoryError> {
    u64::try_from(value).map_err(|_| HistoryError::BadValue {
        column,
        value: value.to_string(),
    })
}

fn parse_ip(column: &'static str, text: &str) -> Result<Ipv4Addr, HistoryError> {
    text.parse().map_err(|_| HistoryError::BadValue {
        column,
        value: text.to_string(),
    })
}

impl HistoryStore {
    /// Opens (creating if missing) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path, retention: Option<Duration>) -> Result<HistoryStore, HistoryError> {
        let open_err = |source| HistoryError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        // WAL lets the API read while the recorder writes.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        Self::with_connection(conn, path, retention)
    }

    /// A database that lives as long as the store (the demo, tests).
    pub fn open_in_memory(retention: Option<Duration>) -> Result<HistoryStore, HistoryError> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| HistoryError::Open {
            path: path.to_owned(),
            source,
        })?;
        Self::with_connection(conn, path, retention)
    }

    fn with_connection(
        mut conn: Connection,
        path: &Path,
        retention: Option<Duration>,
    ) -> Result<HistoryStore, HistoryError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        migrate(&mut conn, path)?;
        Ok(HistoryStore {
            conn: Mutex::new(conn),
            retention,
            last_window_ms: Mutex::new(0),
            windows_recorded: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            windows_missed: AtomicU64::new(0),
            windows_pruned: AtomicU64::new(0),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-transaction rolls the transaction back: the connection stays usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn schema_version(&self) -> Result<u32, HistoryError> {
        Ok(self
            .conn()
            .pragma_query_value(None, "user_version", |row| row.get(0))?)
    }

    pub fn retention(&self) -> Option<Duration> {
        self.retention
    }

    pub fn stats(&self) -> HistoryStats {
        HistoryStats {
            windows_recorded: self.windows_recorded.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            windows_missed: self.windows_missed.load(Ordering::Relaxed),
            windows_pruned: self.windows_pruned.load(Ordering::Relaxed),
        }
    }

    /// Writes one window: a row per pair sampled in it or read exactly since the previous
    /// window, its placements and the labels of the pairs active in it; then drops what is
    /// older than the retention.
    pub fn record_window(
        &self,
        record: &WindowRecord,
        run_started_ms: u64,
    ) -> Result<(), HistoryError> {
        let report = &record.report;
        let mut last_window_ms = self
            .last_window_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let since = *last_window_ms;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO windows (run_started_ms, window_index, at_ms, samples, sampled_pairs,
                selected, released, idle, unplaced, measured, errors)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                sql_int(run_started_ms),
                sql_int(report.index),
                sql_int(report.at_ms),
                sql_int(report.samples),
                sql_int(report.sampled_pairs as u64),
                sql_int(report.selected.len() as u64),
                sql_int(report.released.len() as u64),
                sql_int(report.idle.len() as u64),
                sql_int(report.unplaced.len() as u64),
                sql_int(report.measured as u64),
                serde_json::to_string(&report.errors).unwrap_or_else(|_| "[]".into()),
            ],
        )?;
        let window_id = tx.last_insert_rowid();
        let at = sql_int(report.at_ms);
        {
            let mut insert_pair = tx.prepare(
                "INSERT INTO pair_measurements (window_id, at_ms, src, dst, src_vm, dst_vm,
                    est_samples, est_packets, est_bytes, est_error_percent,
                    exact_packets, exact_bytes, exact_at_ms, measured_by,
                    rate_pps, rate_bps, rate_interval_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            )?;
            let estimates: std::collections::BTreeMap<VmPair, _> = report
                .estimates
                .iter()
                .map(|e| (e.pair, (e.samples, e.error_percent)))
                .collect();
            for edge in &record.graph.edges {
                let estimate = estimates.get(&edge.pair);
                let exact = edge.exact.as_ref().filter(|x| x.at_ms > since);
                if estimate.is_none() && exact.is_none() {
                    continue;
                }
                insert_pair.execute(params![
                    window_id,
                    at,
                    edge.pair.src.to_string(),
                    edge.pair.dst.to_string(),
                    edge.src_vm,
                    edge.dst_vm,
                    estimate.map(|(s, _)| sql_int(s.samples)),
                    estimate.map(|(s, _)| sql_int(s.packets)),
                    estimate.map(|(s, _)| sql_int(s.bytes)),
                    estimate.and_then(|(_, e)| *e),
                    exact.map(|x| sql_int(x.packets)),
                    exact.map(|x| sql_int(x.bytes)),
                    exact.map(|x| sql_int(x.at_ms)),
                    exact.map(|x| x.measured_by.clone()),
                    exact.and_then(|x| x.rate).map(|r| r.pps),
                    exact.and_then(|x| x.rate).map(|r| r.bps),
                    exact.and_then(|x| x.rate).map(|r| sql_int(r.interval_ms)),
                ])?;
            }
            let mut insert_placement = tx.prepare(
                "INSERT INTO placements (window_id, at_ms, src, dst, switch)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (pair, switch) in &record.placements {
                insert_placement.execute(params![
                    window_id,
                    at,
                    pair.src.to_string(),
                    pair.dst.to_string(),
                    switch
                ])?;
            }
            let mut insert_label = tx.prepare(
                "INSERT OR REPLACE INTO labels (window_id, at_ms, src, dst, protocol, client,
                    server, server_port, details, requests, responses, mean_response_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for edge in record.graph.edges.iter().filter(|e| e.last_seen_ms > since) {
                for label in &edge.labels {
                    insert_label.execute(params![
                        window_id,
                        at,
                        edge.pair.src.to_string(),
                        edge.pair.dst.to_string(),
                        label.protocol,
                        label.client.to_string(),
                        label.server.to_string(),
                        label.server_port,
                        serde_json::to_string(&label.details).unwrap_or_else(|_| "[]".into()),
                        sql_int(label.requests),
                        sql_int(label.responses),
                        label.mean_response_ms,
                    ])?;
                }
            }
        }
        let pruned = match self.retention {
            Some(retention) => {
                let cutoff = report
                    .at_ms
                    .saturating_sub(retention.as_millis().try_into().unwrap_or(u64::MAX));
                // The window rows cascade to their pairs, placements and labels.
                tx.execute("DELETE FROM windows WHERE at_ms < ?1", [sql_int(cutoff)])?
            }
            None => 0,
        };
        tx.commit()?;
        *last_window_ms = report.at_ms.max(since);
        self.windows_recorded.fetch_add(1, Ordering::Relaxed);
        self.windows_pruned
            .fetch_add(pruned as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The oldest window time held, if any.
    pub fn oldest_ms(&self) -> Result<Option<u64>, HistoryError> {
        let oldest: Option<i64> = self
            .conn()
            .query_row("SELECT MIN(at_ms) FROM windows", [], |row| row.get(0))
            .optional()?
            .flatten();
        oldest.map(|v| from_sql_int("windows.at_ms", v)).transpose()
    }

    /// Per-pair rows of the windows that ended in `[from_ms, to_ms]`, oldest first, then by
    /// pair; at most `limit`.
    pub fn pairs_between(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<PairRecord>, HistoryError> {
        check_range(from_ms, to_ms)?;
        let conn = self.conn();
        let mut query = conn.prepare(
            "SELECT w.at_ms, w.window_index, w.run_started_ms, p.src, p.dst, p.src_vm, p.dst_vm,
                p.est_samples, p.est_packets, p.est_bytes, p.est_error_percent,
                p.exact_packets, p.exact_bytes, p.exact_at_ms, p.measured_by,
                p.rate_pps, p.rate_bps, p.rate_interval_ms, pl.switch
             FROM pair_measurements p
             JOIN windows w ON w.id = p.window_id
             LEFT JOIN placements pl
                ON pl.window_id = p.window_id AND pl.src = p.src AND pl.dst = p.dst
             WHERE p.at_ms BETWEEN ?1 AND ?2
             ORDER BY w.at_ms, w.id, p.src, p.dst
             LIMIT ?3",
        )?;
        let mut rows = query.query(params![
            sql_int(from_ms),
            sql_int(to_ms),
            sql_int(limit as u64)
        ])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let int = |i: usize, column: &'static str| -> Result<u64, HistoryError> {
                from_sql_int(column, row.get(i)?)
            };
            let opt_int = |i: usize, column: &'static str| -> Result<Option<u64>, HistoryError> {
                row.get::<_, Option<i64>>(i)?
                    .map(|v| from_sql_int(column, v))
                    .transpose()
            };
            let src: String = row.get(3)?;
            let dst: String = row.get(4)?;
            let estimate = match (
                opt_int(7, "est_samples")?,
                opt_int(8, "est_packets")?,
                opt_int(9, "est_bytes")?,
            ) {
                (Some(samples), Some(packets), Some(bytes)) => Some(WindowEstimate {
                    samples,
                    packets,
                    bytes,
                    error_percent: row.get(10)?,
                }),
                _ => None,
            };
            let exact = match (
                opt_int(11, "exact_packets")?,
                opt_int(12, "exact_bytes")?,
                opt_int(13, "exact_at_ms")?,
                row.get::<_, Option<String>>(14)?,
            ) {
                (Some(packets), Some(bytes), Some(at_ms), Some(measured_by)) => {
                    let rate = match (
                        row.get::<_, Option<f64>>(15)?,
                        row.get::<_, Option<f64>>(16)?,
                        opt_int(17, "rate_interval_ms")?,
                    ) {
                        (Some(pps), Some(bps), Some(interval_ms)) => Some(Rates {
                            pps,
                            bps,
                            interval_ms,
                        }),
                        _ => None,
                    };
                    Some(ExactReading {
                        packets,
                        bytes,
                        measured_by,
                        at_ms,
                        rate,
                    })
                }
                _ => None,
            };
            out.push(PairRecord {
                window_at_ms: int(0, "windows.at_ms")?,
                window_index: int(1, "window_index")?,
                run_started_ms: int(2, "run_started_ms")?,
                pair: VmPair::new(parse_ip("src", &src)?, parse_ip("dst", &dst)?),
                src_vm: row.get(5)?,
                dst_vm: row.get(6)?,
                estimate,
                exact,
                placed_on: row.get(18)?,
            });
        }
        Ok(out)
    }

    /// The dependency graph of `[from_ms, to_ms]` as the history tells it: the topology's VMs,
    /// and an edge per pair with a row in the range, carrying its latest estimate, latest exact
    /// reading and latest labels in the range; first and last seen are its first and last
    /// window in the range.
    pub fn graph_between(
        &self,
        topology: &Topology,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<GraphSnapshot, HistoryError> {
        let rows = self.pairs_between(from_ms, to_ms, usize::MAX)?;
        // Per pair: exact totals by run (latest in the range), estimates' sum.
        let mut in_range: std::collections::BTreeMap<VmPair, RangeRows> =
            std::collections::BTreeMap::new();
        for row in &rows {
            let RangeRows { exact, estimates } = in_range.entry(row.pair).or_default();
            if let Some(x) = &row.exact {
                exact.insert(row.run_started_ms, (x.packets, x.bytes));
            }
            if let Some(e) = &row.estimate {
                let (p, b) = estimates.unwrap_or_default();
                *estimates = Some((p.saturating_add(e.packets), b.saturating_add(e.bytes)));
            }
        }
        let mut edges: std::collections::BTreeMap<VmPair, DependencyEdge> =
            std::collections::BTreeMap::new();
        for row in rows {
            let edge = edges.entry(row.pair).or_insert_with(|| DependencyEdge {
                src_vm: row.src_vm.clone(),
                dst_vm: row.dst_vm.clone(),
                pair: row.pair,
                exact: None,
                estimate: None,
                labels: Vec::new(),
                first_seen_ms: row.window_at_ms,
                last_seen_ms: row.window_at_ms,
                in_range: None,
            });
            edge.first_seen_ms = edge.first_seen_ms.min(row.window_at_ms);
            edge.last_seen_ms = edge.last_seen_ms.max(row.window_at_ms);
            if let Some(e) = row.estimate {
                edge.estimate = Some(super::graph::SampledEstimate {
                    window_end_ms: row.window_at_ms,
                    samples: e.samples,
                    packets: e.packets,
                    bytes: e.bytes,
                    error_percent: e.error_percent,
                });
            }
            if let Some(x) = row.exact {
                edge.exact = Some(ExactTraffic::reading(
                    x.packets,
                    x.bytes,
                    x.measured_by,
                    x.at_ms,
                    x.rate,
                ));
            }
        }
        for (pair, RangeRows { exact, estimates }) in in_range {
            let Some(edge) = edges.get_mut(&pair) else {
                continue;
            };
            // A run's totals start from zero: what each run counted in the range adds up.
            edge.in_range = if exact.is_empty() {
                estimates.map(|(packets, bytes)| RangeTraffic {
                    packets,
                    bytes,
                    exact: false,
                })
            } else {
                let mut sum = (0u64, 0u64);
                for (&run, last) in &exact {
                    let before = self.exact_totals_before(run, pair, from_ms)?;
                    let before = before.unwrap_or_default();
                    sum.0 = sum.0.saturating_add(last.0.saturating_sub(before.0));
                    sum.1 = sum.1.saturating_add(last.1.saturating_sub(before.1));
                }
                let (packets, bytes) = sum;
                Some(RangeTraffic {
                    packets,
                    bytes,
                    exact: true,
                })
            };
        }
        for (pair, labels) in self.labels_between(from_ms, to_ms)? {
            if let Some(edge) = edges.get_mut(&pair) {
                edge.labels = labels;
            }
        }
        let mut nodes: Vec<VmNode> = topology
            .vms()
            .iter()
            .map(|vm| VmNode {
                name: vm.name.clone(),
                ipv4: vm.ipv4,
                server: topology.server(vm.server).name.clone(),
            })
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut edges: Vec<DependencyEdge> = edges.into_values().collect();
        edges.sort_by(|a, b| (&a.src_vm, &a.dst_vm).cmp(&(&b.src_vm, &b.dst_vm)));
        Ok(GraphSnapshot { nodes, edges })
    }

    /// The exact totals of `pair`'s latest reading in run `run` recorded before `before_ms`
    /// (one indexed lookup: the pair's rows by time).
    fn exact_totals_before(
        &self,
        run: u64,
        pair: VmPair,
        before_ms: u64,
    ) -> Result<Option<Totals>, HistoryError> {
        let conn = self.conn();
        let mut query = conn.prepare_cached(
            "SELECT p.exact_packets, p.exact_bytes
             FROM pair_measurements p JOIN windows w ON w.id = p.window_id
             WHERE p.src = ?1 AND p.dst = ?2 AND p.at_ms < ?3 AND w.run_started_ms = ?4
                AND p.exact_packets IS NOT NULL
             ORDER BY p.at_ms DESC LIMIT 1",
        )?;
        let totals = query
            .query_row(
                params![
                    pair.src.to_string(),
                    pair.dst.to_string(),
                    sql_int(before_ms),
                    sql_int(run)
                ],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
            )
            .optional()?;
        totals
            .map(|(packets, bytes)| {
                Ok((
                    from_sql_int("exact_packets", packets)?,
                    from_sql_int("exact_bytes", bytes)?,
                ))
            })
            .transpose()
    }

    /// Per pair, the latest version of each label (by protocol, client, server, port) in the
    /// range, sorted as the live graph sorts them.
    fn labels_between(
        &self,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<std::collections::BTreeMap<VmPair, Vec<AppLabel>>, HistoryError> {
        let conn = self.conn();
        let mut query = conn.prepare(
            "SELECT src, dst, protocol, client, server, server_port, details, requests,
                responses, mean_response_ms
             FROM labels WHERE at_ms BETWEEN ?1 AND ?2
             ORDER BY at_ms, window_id",
        )?;
        let mut rows = query.query(params![sql_int(from_ms), sql_int(to_ms)])?;
        let mut latest: std::collections::BTreeMap<
            (VmPair, String, Ipv4Addr, Ipv4Addr, u16),
            AppLabel,
        > = std::collections::BTreeMap::new();
        while let Some(row) = rows.next()? {
            let src: String = row.get(0)?;
            let dst: String = row.get(1)?;
            let client: String = row.get(3)?;
            let server: String = row.get(4)?;
            let details: String = row.get(6)?;
            let label = AppLabel {
                protocol: row.get(2)?,
                client: parse_ip("client", &client)?,
                server: parse_ip("server", &server)?,
                server_port: row.get(5)?,
                details: serde_json::from_str(&details).map_err(|_| HistoryError::BadValue {
                    column: "details",
                    value: details.clone(),
                })?,
                requests: from_sql_int("requests", row.get(7)?)?,
                responses: from_sql_int("responses", row.get(8)?)?,
                mean_response_ms: row.get(9)?,
            };
            let pair = VmPair::new(parse_ip("src", &src)?, parse_ip("dst", &dst)?);
            latest.insert(
                (
                    pair,
                    label.protocol.clone(),
                    label.client,
                    label.server,
                    label.server_port,
                ),
                label,
            );
        }
        let mut out: std::collections::BTreeMap<VmPair, Vec<AppLabel>> =
            std::collections::BTreeMap::new();
        for ((pair, ..), label) in latest {
            out.entry(pair).or_default().push(label);
        }
        Ok(out)
    }
}

fn check_range(from_ms: u64, to_ms: u64) -> Result<(), HistoryError> {
    if from_ms > to_ms {
        return Err(HistoryError::Range { from_ms, to_ms });
    }
    Ok(())
}

/// Applies the migrations the database has not seen, each in its own transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), HistoryError> {
    let found: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(HistoryError::TooNew {
            path: path.to_owned(),
            found,
        });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as u32 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

async fn write_record(store: &Arc<HistoryStore>, record: Arc<WindowRecord>, run_started_ms: u64) {
    let writer = store.clone();
    let written =
        tokio::task::spawn_blocking(move || writer.record_window(&record, run_started_ms)).await;
    let failed = match written {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(err.to_string()),
        Err(join) => Some(join.to_string()),
    };
    if let Some(err) = failed {
        store.write_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(%err, "a window was not written to the history");
    }
}

/// The task that writes every window of a controller into a [`HistoryStore`].
pub struct HistoryRecorder {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HistoryRecorder {
    /// Subscribes now: every window from here on is recorded.
    pub fn start(store: Arc<HistoryStore>, view: &ControllerView) -> HistoryRecorder {
        let mut windows = view.subscribe_windows();
        let run_started_ms = view.started_ms();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    received = windows.recv() => match received {
                        Ok(record) => write_record(&store, record, run_started_ms).await,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            store.windows_missed.fetch_add(missed, Ordering::Relaxed);
                            tracing::warn!(missed, "the history recorder fell behind");
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = stopped.changed() => {
                        // Windows already reported are still written.
                        loop {
                            match windows.try_recv() {
                                Ok(record) => write_record(&store, record, run_started_ms).await,
                                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                                    store.windows_missed.fetch_add(missed, Ordering::Relaxed);
                                }
                                Err(_) => break,
                            }
                        }
                        break;
                    }
                }
            }
        });
        HistoryRecorder { stop, task }
    }

    /// Writes the windows already reported, then stops.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(err) = self.task.await {
            tracing::error!(%err, "the history recorder failed");
        }
    }
}

#[cfg(test)]
mod tests;
