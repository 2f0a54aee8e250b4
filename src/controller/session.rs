//! One P4Runtime session per switch: the controller's only way to a switch.
//!
//! A [`SwitchSession`] is a cloneable handle to one background tokio task that owns the
//! connection (see `worker`): it connects, opens the StreamChannel, arbitrates with its
//! election id, pushes the pipeline, and makes the switch hold the desired state — the routes and
//! `vm_pair` entries the controller asked it to keep — again after every reconnection. The handle
//! only sends commands and reads the status; every answer comes back through a oneshot.
//!
//! On every connection the session first tries RECONCILE_AND_COMMIT, which keeps the switch's
//! entries and counters when it already runs the same pipeline (the connection broke, the switch
//! did not), and falls back to VERIFY_AND_COMMIT; it then reads both tables and writes only the
//! difference with the desired state. A session that finds another controller primary closes
//! its stream and retries with backoff: it takes over only when the primary is gone and its
//! election id is the highest the switch has seen (the P4Runtime rule).
//!
//! Counts are kept cumulative here ([`PairTotals`]): a raw counter reading below the previous one,
//! or an entry that had to be inserted again, is a reset (the counter started from zero), never a
//! negative delta.
//!
//! It builds entries with [`super::rules`] only and must not touch the switch's or the compiler's
//! Rust types: a switch is reached over P4Runtime.

mod worker;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Code;

use crate::p4rt::config::P4Info;
use crate::p4rt::v1::WriteRequest;

use super::paths::Route;
use super::rules::{PairCount, RulesError, VmdepProgram};
use super::VmPair;

/// What `SetForwardingPipelineConfig` pushes: the P4Info and the bmv2 JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineBundle {
    pub p4info: P4Info,
    /// The target's device config: bmv2 JSON bytes.
    pub device_config: Vec<u8>,
}

/// Exponential reconnection backoff: from `min`, doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

/// A recorder of every WriteRequest the sessions sharing it send, in order (for snapshot tests
/// of the exact requests each switch got). It keeps at most `limit` requests and counts the rest.
#[derive(Debug, Clone)]
pub struct WriteJournal {
    inner: Arc<Mutex<JournalInner>>,
}

#[derive(Debug, Default)]
struct JournalInner {
    limit: usize,
    requests: Vec<WriteRequest>,
    overflow: u64,
}

impl WriteJournal {
    pub fn new(limit: usize) -> WriteJournal {
        WriteJournal {
            inner: Arc::new(Mutex::new(JournalInner {
                limit,
                ..JournalInner::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, JournalInner> {
        // A panic elsewhere cannot leave a Vec half-pushed: the data stays usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, request: &WriteRequest) {
        let mut inner = self.lock();
        if inner.requests.len() < inner.limit {
            inner.requests.push(request.clone());
        } else {
            inner.overflow += 1;
        }
    }

    /// The requests recorded so far.
    pub fn requests(&self) -> Vec<WriteRequest> {
        self.lock().requests.clone()
    }

    /// Removes and returns the requests recorded so far.
    pub fn take(&self) -> Vec<WriteRequest> {
        std::mem::take(&mut self.lock().requests)
    }

    /// Requests not recorded because the journal was full.
    pub fn overflow(&self) -> u64 {
        self.lock().overflow
    }
}

/// How to run one switch's session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The switch's name in the topology, carried in events and errors.
    pub switch_name: String,
    pub addr: SocketAddr,
    pub device_id: u64,
    pub election_id: u128,
    pub pipeline: Arc<PipelineBundle>,
    /// Updates per WriteRequest.
    pub max_batch: usize,
    pub reconnect: Backoff,
    /// The longest any one RPC (or connection step) may take.
    pub rpc_timeout: Duration,
    /// Commands the handle may queue before callers wait.
    pub command_queue: usize,
    pub journal: Option<WriteJournal>,
}

impl SessionConfig {
    /// A config with defaults: batches of 1000 updates, reconnection backoff 100 ms to 5 s,
    /// 10 s per RPC, 4096 queued commands, no journal.
    pub fn new(
        switch_name: impl Into<String>,
        addr: SocketAddr,
        device_id: u64,
        election_id: u128,
        pipeline: Arc<PipelineBundle>,
    ) -> SessionConfig {
        SessionConfig {
            switch_name: switch_name.into(),
            addr,
            device_id,
            election_id,
            pipeline,
            max_batch: 1000,
            reconnect: Backoff {
                min: Duration::from_millis(100),
                max: Duration::from_secs(5),
            },
            rpc_timeout: Duration::from_secs(10),
            command_queue: 4096,
            journal: None,
        }
    }
}

/// A pair's counts since the controller first installed it, across switch restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PairTotals {
    pub packets: u64,
    pub bytes: u64,
    /// How many times the switch's counter started again from zero.
    pub resets: u32,
}

/// Turns raw counter readings into cumulative totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct PairTracker {
    totals: PairTotals,
    /// The last raw reading since the counter last started from zero.
    last: PairCount,
}

impl PairTracker {
    /// Adds the counts since the last reading; a reading below it means the counter restarted.
    fn observe(&mut self, raw: PairCount) {
        let (packets, bytes) = if raw.packets < self.last.packets || raw.bytes < self.last.bytes {
            self.totals.resets = self.totals.resets.saturating_add(1);
            (raw.packets, raw.bytes)
        } else {
            (raw.packets - self.last.packets, raw.bytes - self.last.bytes)
        };
        self.totals.packets = self.totals.packets.saturating_add(packets);
        self.totals.bytes = self.totals.bytes.saturating_add(bytes);
        self.last = raw;
    }

    /// The entry was inserted again: its counter starts from zero.
    fn restarted(&mut self) {
        self.totals.resets = self.totals.resets.saturating_add(1);
        self.last = PairCount::default();
    }
}

/// What a session tells the controller without being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Connected, primary, pipeline pushed and desired state written. `dropped_pairs` are pairs
    /// the switch refused to take back (e.g. a smaller table after a restart): they are no
    /// longer counted there.
    Ready {
        switch: String,
        dropped_pairs: Vec<VmPair>,
    },
    /// The connection broke; the session reconnects by itself.
    Lost { switch: String, reason: String },
    /// Another controller is primary (its election id is `primary_election_id`, ours is lower);
    /// the session retries with backoff and never writes meanwhile.
    NotPrimary {
        switch: String,
        ours: u128,
        primary_election_id: Option<u128>,
    },
    /// These pairs' entries saw no packet for their idle timeout (they stay until deleted).
    IdleTimeout { switch: String, pairs: Vec<VmPair> },
}

/// Upper bounds of the RPC latency histogram's buckets, in seconds: from a loopback Write of a
/// few entries (well under a millisecond) to a pipeline push to a slow switch.
pub const RPC_LATENCY_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Calls, failures and latencies of one kind of RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RpcStats {
    pub calls: u64,
    pub errors: u64,
    /// The sum of all calls' latencies.
    pub latency: Duration,
    /// Calls per bucket of [`RPC_LATENCY_BOUNDS`]: `buckets[i]` counts the calls that took at
    /// most bound `i` and more than bound `i - 1`; slower calls are only in `calls`.
    pub buckets: [u64; RPC_LATENCY_BOUNDS.len()],
}

impl RpcStats {
    /// Counts one call.
    pub fn record(&mut self, elapsed: Duration, ok: bool) {
        self.calls += 1;
        self.errors += u64::from(!ok);
        self.latency += elapsed;
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = RPC_LATENCY_BOUNDS.iter().position(|&le| seconds <= le) {
            self.buckets[i] += 1;
        }
    }
}

/// A session's state, for logs and the /metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionStatus {
    pub switch: String,
    /// A StreamChannel is open.
    pub connected: bool,
    pub primary: bool,
    /// The pipeline of this connection is pushed and the desired state written.
    pub pipeline_pushed: bool,
    /// Connections that reached Ready.
    pub connections: u64,
    /// Attempts to connect again after a failure or a loss.
    pub reconnections: u64,
    pub last_error: Option<String>,
    /// Per RPC: "connect", "stream", "set_pipeline", "write", "read".
    pub rpcs: BTreeMap<&'static str, RpcStats>,
    /// Routes and pairs the switch holds (as far as the session knows).
    pub routes: usize,
    pub pairs: usize,
    /// Events not delivered because the events channel was full or closed.
    pub events_dropped: u64,
}

/// One refused update of a batch, decoded from the `p4.v1.Error` details of the Write status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateError {
    /// The update, e.g. `INSERT 10.0.2.0/24`.
    pub update: String,
    pub code: Code,
    pub message: String,
}

/// Why a session call failed.
#[derive(Debug, Clone, Error)]
pub enum SessionError {
    #[error("switch {switch}: not connected ({reason})")]
    NotConnected { switch: String, reason: String },
    #[error("switch {switch}: another controller is primary")]
    NotPrimary { switch: String },
    #[error("switch {switch}: the table is full: {message}")]
    TableFull { switch: String, message: String },
    #[error("switch {switch}: the update was refused ({code:?}): {message}")]
    Refused {
        switch: String,
        code: Code,
        message: String,
    },
    #[error("switch {switch}: {} of the updates were refused, the first: {}", failed.len(), failed.first().map_or("", |f| f.message.as_str()))]
    Updates {
        switch: String,
        failed: Vec<UpdateError>,
    },
    #[error("switch {switch}: {rpc} failed ({code:?}): {message}")]
    Rpc {
        switch: String,
        rpc: &'static str,
        code: Code,
        message: String,
    },
    #[error("switch {switch}: a read answer is not vmdep.p4's: {source}")]
    BadReply { switch: String, source: RulesError },
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("the session of switch {switch} has stopped")]
    Closed { switch: String },
}

type Reply<T> = oneshot::Sender<Result<T, SessionError>>;

enum Command {
    InstallRoutes {
        routes: Vec<Route>,
        reply: Reply<()>,
    },
    InsertPair {
        pair: VmPair,
        idle_timeout: Option<Duration>,
        reply: Reply<()>,
    },
    DeletePair {
        pair: VmPair,
        reply: Reply<Option<PairTotals>>,
    },
    ReadPairs {
        reply: Reply<Vec<(VmPair, PairTotals)>>,
    },
}

/// The handle of one switch's session; clones share the session.
#[derive(Clone)]
pub struct SwitchSession {
    switch: String,
    commands: mpsc::Sender<Command>,
    status: Arc<Mutex<SessionStatus>>,
    stop: Arc<watch::Sender<bool>>,
    task: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

fn lock_status(status: &Mutex<SessionStatus>) -> MutexGuard<'_, SessionStatus> {
    // Status fields are plain values: usable even if a holder panicked.
    status.lock().unwrap_or_else(|e| e.into_inner())
}

impl SwitchSession {
    /// Starts the session's task (it connects in the background); events go to `events`.
    /// Fails only when the pipeline's P4Info is not vmdep.p4's.
    pub fn spawn(
        config: SessionConfig,
        events: mpsc::Sender<SessionEvent>,
    ) -> Result<SwitchSession, SessionError> {
        let program = VmdepProgram::new(config.pipeline.p4info.clone())?;
        let (commands, queue) = mpsc::channel(config.command_queue.max(1));
        let status = Arc::new(Mutex::new(SessionStatus {
            switch: config.switch_name.clone(),
            ..SessionStatus::default()
        }));
        let (stop, stopped) = watch::channel(false);
        let switch = config.switch_name.clone();
        let worker = worker::Worker::new(config, program, queue, events, status.clone(), stopped);
        let task = tokio::spawn(worker.run());
        Ok(SwitchSession {
            switch,
            commands,
            status,
            stop: Arc::new(stop),
            task: Arc::new(tokio::sync::Mutex::new(Some(task))),
        })
    }

    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, SessionError> {
        let closed = || SessionError::Closed {
            switch: self.switch.clone(),
        };
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Makes `routes` the switch's whole route set (of two routes for one prefix, the last
    /// wins): writes the difference with what it holds, deletes first. The set is kept as
    /// desired even when the switch is unreachable (`NotConnected`): it is written at the next
    /// connection; refused routes (`Updates`) are tried again at the next call.
    pub async fn install_routes(&self, routes: Vec<Route>) -> Result<(), SessionError> {
        self.call(|reply| Command::InstallRoutes { routes, reply })
            .await
    }

    /// Installs `pair`'s counting entry. Concurrent calls are coalesced into batched
    /// WriteRequests. `TableFull` means the switch has no room (try another switch); a pair
    /// already held is `Refused` with ALREADY_EXISTS.
    pub async fn insert_pair(
        &self,
        pair: VmPair,
        idle_timeout: Option<Duration>,
    ) -> Result<(), SessionError> {
        self.call(|reply| Command::InsertPair {
            pair,
            idle_timeout,
            reply,
        })
        .await
    }

    /// Reads `pair`'s counter a last time and deletes its entry; `None` if the session does
    /// not hold the pair. When the switch is unreachable the pair is forgotten anyway (it will
    /// not be written again) and the error says so.
    pub async fn delete_pair(&self, pair: VmPair) -> Result<Option<PairTotals>, SessionError> {
        self.call(|reply| Command::DeletePair { pair, reply }).await
    }

    /// One wildcard Read of `vm_pair` with counters: the cumulative totals of every pair the
    /// switch holds, sorted by pair.
    pub async fn read_pairs(&self) -> Result<Vec<(VmPair, PairTotals)>, SessionError> {
        self.call(|reply| Command::ReadPairs { reply }).await
    }

    /// A copy of the session's status.
    pub fn status(&self) -> SessionStatus {
        lock_status(&self.status).clone()
    }

    /// Stops the task: the stream closes (a backup may take over), queued commands are answered
    /// `Closed`. Entries stay on the switch. Waits for the task (at most one RPC timeout).
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().await.take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(switch = %self.switch, error = %e, "session task failed");
            }
        }
    }
}

#[cfg(test)]
mod tests;
