//! The task behind a [`SwitchSession`](super::SwitchSession): it owns the gRPC connection and
//! the desired state, and answers the handle's commands. Every RPC and connection step is
//! bounded by the RPC timeout; reconnection backs off exponentially.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

use crate::p4rt::rpc;
use crate::p4rt::v1::p4_runtime_client::P4RuntimeClient;
use crate::p4rt::v1::{
    entity, forwarding_pipeline_config,
    set_forwarding_pipeline_config_request::Action as SetAction, stream_message_request,
    stream_message_response, write_request::Atomicity, Entity, Error as P4Error,
    ForwardingPipelineConfig, MasterArbitrationUpdate, ReadRequest,
    SetForwardingPipelineConfigRequest, StreamMessageRequest, StreamMessageResponse, TableEntry,
    Uint128, Update, WriteRequest,
};

use super::super::paths::Route;
use super::super::rules::{UpdateKind, VmdepProgram};
use super::super::VmPair;
use super::{
    lock_status, Command, PairTotals, PairTracker, Reply, SessionConfig, SessionError,
    SessionEvent, SessionStatus, UpdateError,
};

/// Entities one Read may return before the session calls the answer broken.
const MAX_READ_ENTITIES: usize = 1 << 22;

/// Largest gRPC message accepted or sent (pipelines and read answers can be large).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Requests the StreamChannel's outbound queue holds (only arbitration goes there).
const STREAM_QUEUE: usize = 4;

type RouteKey = (Ipv4Addr, u8);

fn route_key(r: &Route) -> RouteKey {
    (r.prefix, r.prefix_len)
}

fn uint128(value: u128) -> Uint128 {
    Uint128 {
        high: (value >> 64) as u64,
        low: value as u64,
    }
}

fn from_uint128(value: &Uint128) -> u128 {
    (u128::from(value.high) << 64) | u128::from(value.low)
}

/// A whole RPC that failed (as opposed to some updates of a Write).
#[derive(Debug, Clone)]
pub(super) struct RpcFailure {
    rpc: &'static str,
    code: Code,
    message: String,
}

impl RpcFailure {
    fn timeout(rpc: &'static str, after: Duration) -> RpcFailure {
        RpcFailure {
            rpc,
            code: Code::DeadlineExceeded,
            message: format!("no answer within {after:?}"),
        }
    }

    fn from_status(rpc: &'static str, status: &Status) -> RpcFailure {
        RpcFailure {
            rpc,
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    /// Whether the connection (or our primacy) is gone, so the session must start again.
    fn ends_connection(&self) -> bool {
        matches!(
            self.code,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::PermissionDenied
        )
    }

    fn reason(&self) -> String {
        format!("{} failed ({:?}): {}", self.rpc, self.code, self.message)
    }

    fn into_error(self, switch: &str) -> SessionError {
        if self.code == Code::PermissionDenied {
            return SessionError::NotPrimary {
                switch: switch.to_string(),
            };
        }
        SessionError::Rpc {
            switch: switch.to_string(),
            rpc: self.rpc,
            code: self.code,
            message: self.message,
        }
    }
}

/// The per-update outcome of a Write whose status is UNKNOWN with one `p4.v1.Error` per update
/// in its details (P4Runtime spec, "Batching and Ordering of Updates"); `None` when the status
/// does not have that shape (then the whole RPC failed).
pub(super) fn per_update_errors(
    status: &Status,
    updates: usize,
) -> Option<Vec<Result<(), (Code, String)>>> {
    if status.code() != Code::Unknown {
        return None;
    }
    let decoded = rpc::Status::decode(status.details()).ok()?;
    if decoded.details.len() != updates {
        return None;
    }
    decoded
        .details
        .iter()
        .map(|any| {
            if !any.type_url.ends_with("/p4.v1.Error") {
                return None;
            }
            let error = P4Error::decode(any.value.as_slice()).ok()?;
            Some(if error.canonical_code == Code::Ok as i32 {
                Ok(())
            } else {
                Err((Code::from(error.canonical_code), error.message))
            })
        })
        .collect()
}

/// Why a connection attempt ended before Ready.
enum ConnectFailure {
    Failed(String),
    NotPrimary { primary: Option<u128> },
    Stopped,
}

/// Why a served connection ended.
enum Exit {
    Lost(String),
    Stopped,
}

struct Connection {
    client: P4RuntimeClient<Channel>,
    /// Kept to keep the stream open; dropping it ends the stream.
    _stream_tx: mpsc::Sender<StreamMessageRequest>,
    stream_rx: Streaming<StreamMessageResponse>,
}

/// A pair the switch holds.
struct HeldPair {
    idle_timeout: Option<Duration>,
    tracker: PairTracker,
}

pub(super) struct Worker {
    config: SessionConfig,
    program: VmdepProgram,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<SessionEvent>,
    status: Arc<Mutex<SessionStatus>>,
    stop: watch::Receiver<bool>,
    /// A command taken from the queue while gathering a batch, to handle next.
    pending: Option<Command>,
    desired_routes: BTreeMap<RouteKey, Route>,
    installed_routes: BTreeMap<RouteKey, Route>,
    pairs: BTreeMap<VmPair, HeldPair>,
    /// Why the session is not ready, for commands arriving meanwhile.
    down: SessionError,
}

impl Worker {
    pub(super) fn new(
        config: SessionConfig,
        program: VmdepProgram,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<SessionEvent>,
        status: Arc<Mutex<SessionStatus>>,
        stop: watch::Receiver<bool>,
    ) -> Worker {
        let down = SessionError::NotConnected {
            switch: config.switch_name.clone(),
            reason: "connecting".to_string(),
        };
        Worker {
            config,
            program,
            commands,
            events,
            status,
            stop,
            pending: None,
            desired_routes: BTreeMap::new(),
            installed_routes: BTreeMap::new(),
            pairs: BTreeMap::new(),
            down,
        }
    }

    fn switch(&self) -> String {
        self.config.switch_name.clone()
    }

    fn update_status(&self, f: impl FnOnce(&mut SessionStatus)) {
        let mut status = lock_status(&self.status);
        f(&mut status);
        status.routes = self.installed_routes.len();
        status.pairs = self.pairs.len();
    }

    fn emit(&self, event: SessionEvent) {
        // Never wait on the controller: it may be waiting on us.
        if self.events.try_send(event).is_err() {
            tracing::warn!(switch = %self.config.switch_name, "session event dropped");
            self.update_status(|s| s.events_dropped += 1);
        }
    }

    fn account(&self, rpc: &'static str, started: Instant, ok: bool) {
        let elapsed = started.elapsed();
        self.update_status(|s| s.rpcs.entry(rpc).or_default().record(elapsed, ok));
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    pub(super) async fn run(mut self) {
        let mut backoff = self.config.reconnect.min;
        // The other primary last reported in a NotPrimary event, since the last Ready.
        let mut reported_primary: Option<Option<u128>> = None;
        loop {
            if self.stopping() {
                break;
            }
            let attempt = {
                let mut stop = self.stop.clone();
                tokio::select! {
                    result = self.connect() => result,
                    _ = stop.wait_for(|s| *s) => Err(ConnectFailure::Stopped),
                }
            };
            match attempt {
                Ok((conn, dropped_pairs)) => {
                    backoff = self.config.reconnect.min;
                    reported_primary = None;
                    self.update_status(|s| {
                        s.pipeline_pushed = true;
                        s.connections += 1;
                        s.last_error = None;
                    });
                    self.emit(SessionEvent::Ready {
                        switch: self.switch(),
                        dropped_pairs,
                    });
                    match self.serve(conn).await {
                        Exit::Stopped => break,
                        Exit::Lost(reason) => {
                            tracing::warn!(switch = %self.config.switch_name, %reason, "P4Runtime session lost");
                            self.went_down(&reason);
                            self.emit(SessionEvent::Lost {
                                switch: self.switch(),
                                reason,
                            });
                        }
                    }
                }
                Err(ConnectFailure::Stopped) => break,
                Err(ConnectFailure::Failed(reason)) => {
                    tracing::debug!(switch = %self.config.switch_name, %reason, "cannot connect");
                    self.went_down(&reason);
                }
                Err(ConnectFailure::NotPrimary { primary }) => {
                    let reason = format!(
                        "another controller is primary (election id {}, ours {})",
                        primary.map_or("unknown".to_string(), |p| p.to_string()),
                        self.config.election_id
                    );
                    self.went_down(&reason);
                    self.down = SessionError::NotPrimary {
                        switch: self.switch(),
                    };
                    // Retries find the same primary: tell the controller once per change.
                    if reported_primary != Some(primary) {
                        tracing::warn!(switch = %self.config.switch_name, %reason);
                        reported_primary = Some(primary);
                        self.emit(SessionEvent::NotPrimary {
                            switch: self.switch(),
                            ours: self.config.election_id,
                            primary_election_id: primary,
                        });
                    }
                }
            }
            if !self.wait_answering(backoff).await {
                break;
            }
            backoff = (backoff * 2).min(self.config.reconnect.max);
            self.update_status(|s| s.reconnections += 1);
        }
        self.close_queue();
    }

    fn went_down(&mut self, reason: &str) {
        self.down = SessionError::NotConnected {
            switch: self.switch(),
            reason: reason.to_string(),
        };
        self.update_status(|s| {
            s.connected = false;
            s.primary = false;
            s.pipeline_pushed = false;
            s.last_error = Some(reason.to_string());
        });
    }

    /// Answers every queued command `Closed` once the task stops.
    fn close_queue(&mut self) {
        self.commands.close();
        let closed = SessionError::Closed {
            switch: self.switch(),
        };
        let pending = self.pending.take();
        let mut next = pending.or_else(|| self.commands.try_recv().ok());
        while let Some(command) = next {
            answer_all(command, &closed);
            next = self.commands.try_recv().ok();
        }
        self.update_status(|s| {
            s.connected = false;
            s.primary = false;
        });
    }

    /// Waits `delay` while answering commands from the desired state; false when stopping.
    async fn wait_answering(&mut self, delay: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            if let Some(command) = self.pending.take() {
                self.answer_while_down(command);
                continue;
            }
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return true,
                _ = stop.wait_for(|s| *s) => return false,
                command = self.commands.recv() => match command {
                    Some(command) => self.answer_while_down(command),
                    None => return false,
                },
            }
        }
    }

    fn answer_while_down(&mut self, command: Command) {
        let down = self.down.clone();
        match command {
            Command::InstallRoutes { routes, reply } => {
                self.desired_routes = routes.into_iter().map(|r| (route_key(&r), r)).collect();
                let _ = reply.send(Err(down));
            }
            Command::DeletePair { pair, reply } => {
                self.pairs.remove(&pair);
                self.update_status(|_| {});
                let _ = reply.send(Err(down));
            }
            other => answer_all(other, &down),
        }
    }

    // ------------------------------------------------------------------------- connecting

    async fn connect(&mut self) -> Result<(Connection, Vec<VmPair>), ConnectFailure> {
        let timeout = self.config.rpc_timeout;
        let started = Instant::now();
        let endpoint = Endpoint::from_shared(format!("http://{}", self.config.addr))
            .map_err(|e| ConnectFailure::Failed(format!("bad address: {e}")))?
            .connect_timeout(timeout)
            .http2_keep_alive_interval(timeout)
            .keep_alive_timeout(timeout)
            .keep_alive_while_idle(true);
        let channel = tokio::time::timeout(timeout, endpoint.connect()).await;
        let channel = match channel {
            Ok(Ok(channel)) => {
                self.account("connect", started, true);
                channel
            }
            Ok(Err(e)) => {
                self.account("connect", started, false);
                return Err(ConnectFailure::Failed(format!(
                    "cannot connect to {}: {}",
                    self.config.addr,
                    error_chain(&e)
                )));
            }
            Err(_) => {
                self.account("connect", started, false);
                return Err(ConnectFailure::Failed(format!(
                    "no connection to {} within {timeout:?}",
                    self.config.addr
                )));
            }
        };
        let mut client = P4RuntimeClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);

        // The stream and arbitration.
        let started = Instant::now();
        let (stream_tx, rx) = mpsc::channel(STREAM_QUEUE);
        let opened =
            tokio::time::timeout(timeout, client.stream_channel(ReceiverStream::new(rx))).await;
        let mut stream_rx = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                self.account("stream", started, false);
                return Err(ConnectFailure::Failed(
                    RpcFailure::from_status("StreamChannel", &status).reason(),
                ));
            }
            Err(_) => {
                self.account("stream", started, false);
                return Err(ConnectFailure::Failed(
                    RpcFailure::timeout("StreamChannel", timeout).reason(),
                ));
            }
        };
        let arbitration = StreamMessageRequest {
            update: Some(stream_message_request::Update::Arbitration(
                MasterArbitrationUpdate {
                    device_id: self.config.device_id,
                    election_id: Some(uint128(self.config.election_id)),
                    ..MasterArbitrationUpdate::default()
                },
            )),
        };
        if stream_tx.send(arbitration).await.is_err() {
            self.account("stream", started, false);
            return Err(ConnectFailure::Failed(
                "the stream closed before arbitration".to_string(),
            ));
        }
        self.update_status(|s| s.connected = true);
        let answer = match tokio::time::timeout(timeout, arbitration_answer(&mut stream_rx)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no arbitration answer within {timeout:?}")),
        };
        self.account("stream", started, answer.is_ok());
        let update = answer.map_err(ConnectFailure::Failed)?;
        let code = update
            .status
            .as_ref()
            .map_or(Code::Unknown as i32, |s| s.code);
        if code != Code::Ok as i32 {
            return Err(ConnectFailure::NotPrimary {
                primary: update.election_id.as_ref().map(from_uint128),
            });
        }
        self.update_status(|s| s.primary = true);
        let mut conn = Connection {
            client,
            _stream_tx: stream_tx,
            stream_rx,
        };
        self.push_pipeline(&mut conn).await?;
        let dropped = self
            .replay(&mut conn)
            .await
            .map_err(|f| ConnectFailure::Failed(f.reason()))?;
        Ok((conn, dropped))
    }

    /// Keeps the switch's forwarding state when it already runs our pipeline
    /// (RECONCILE_AND_COMMIT), and loads it afresh otherwise (VERIFY_AND_COMMIT).
    async fn push_pipeline(&mut self, conn: &mut Connection) -> Result<(), ConnectFailure> {
        let bundle = self.config.pipeline.clone();
        let request = |action: SetAction| SetForwardingPipelineConfigRequest {
            device_id: self.config.device_id,
            election_id: Some(uint128(self.config.election_id)),
            action: action as i32,
            config: Some(ForwardingPipelineConfig {
                p4info: Some(bundle.p4info.clone()),
                p4_device_config: bundle.device_config.clone(),
                cookie: Some(forwarding_pipeline_config::Cookie { cookie: 0 }),
            }),
            ..SetForwardingPipelineConfigRequest::default()
        };
        let reconciled = self
            .set_pipeline(conn, request(SetAction::ReconcileAndCommit))
            .await;
        match reconciled {
            Ok(()) => Ok(()),
            Err(f) if f.ends_connection() => Err(ConnectFailure::Failed(f.reason())),
            Err(f) => {
                tracing::debug!(switch = %self.config.switch_name, reason = %f.reason(), "reconcile refused; committing afresh");
                self.set_pipeline(conn, request(SetAction::VerifyAndCommit))
                    .await
                    .map_err(|f| ConnectFailure::Failed(f.reason()))
            }
        }
    }

    async fn set_pipeline(
        &self,
        conn: &mut Connection,
        request: SetForwardingPipelineConfigRequest,
    ) -> Result<(), RpcFailure> {
        let started = Instant::now();
        let timeout = self.config.rpc_timeout;
        let result =
            tokio::time::timeout(timeout, conn.client.set_forwarding_pipeline_config(request))
                .await;
        let result = match result {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(RpcFailure::from_status(
                "SetForwardingPipelineConfig",
                &status,
            )),
            Err(_) => Err(RpcFailure::timeout("SetForwardingPipelineConfig", timeout)),
        };
        self.account("set_pipeline", started, result.is_ok());
        result
    }

    /// Makes the switch hold exactly the desired routes and the held pairs: reads both tables
    /// and writes the difference. Returns the pairs the switch refused to take back.
    async fn replay(&mut self, conn: &mut Connection) -> Result<Vec<VmPair>, RpcFailure> {
        // Routes.
        let on_switch = self
            .read(conn, self.program.read_all_routes(self.config.device_id))
            .await?;
        let mut kept = BTreeMap::new();
        let mut modified = BTreeSet::new();
        let mut updates: Vec<(Option<RouteKey>, Update)> = Vec::new();
        for entry in table_entries(on_switch) {
            match self.program.decode_route_entry(&entry) {
                Some(route) if self.desired_routes.get(&route_key(&route)) == Some(&route) => {
                    kept.insert(route_key(&route), route);
                }
                Some(route) if self.desired_routes.contains_key(&route_key(&route)) => {
                    let wanted = self.desired_routes[&route_key(&route)];
                    if let Ok(u) = self.program.route_update(UpdateKind::Modify, &wanted) {
                        modified.insert(route_key(&route));
                        updates.push((Some(route_key(&route)), u));
                    }
                }
                // Not ours, or not a route we can read: the primary owns the table.
                _ => updates.push((None, key_only_delete(entry))),
            }
        }
        for (key, route) in &self.desired_routes {
            if !kept.contains_key(key) && !modified.contains(key) {
                match self.program.route_update(UpdateKind::Insert, route) {
                    Ok(u) => updates.push((Some(*key), u)),
                    Err(e) => {
                        tracing::warn!(switch = %self.config.switch_name, error = %e, "route cannot be written")
                    }
                }
            }
        }
        let (keys, batch): (Vec<_>, Vec<_>) = updates.into_iter().unzip();
        let results = self.write_batched(conn, batch).await;
        self.installed_routes = kept;
        for (key, result) in keys.into_iter().zip(&results) {
            if let (Some(key), Ok(())) = (key, result) {
                self.installed_routes.insert(key, self.desired_routes[&key]);
            }
        }
        if let Some(failure) = connection_failure(&results) {
            return Err(failure);
        }

        // Pairs.
        let on_switch = self
            .read(conn, self.program.read_all_pairs(self.config.device_id))
            .await?;
        let mut present = BTreeSet::new();
        let mut updates = Vec::new();
        for entry in table_entries(on_switch) {
            match self.program.decode_pair_entry(&entry) {
                Ok((pair, count)) if self.pairs.contains_key(&pair) => {
                    let held = self.pairs.get_mut(&pair).expect("checked just above");
                    held.tracker.observe(count);
                    present.insert(pair);
                    let timeout_ns = held.idle_timeout.map_or(0, |t| t.as_nanos());
                    if u128::try_from(entry.idle_timeout_ns).ok() != Some(timeout_ns) {
                        if let Ok(u) =
                            self.program
                                .pair_update(UpdateKind::Modify, pair, held.idle_timeout)
                        {
                            updates.push((None, u));
                        }
                    }
                }
                _ => updates.push((None, key_only_delete(entry))),
            }
        }
        for (pair, held) in &self.pairs {
            if !present.contains(pair) {
                if let Ok(u) =
                    self.program
                        .pair_update(UpdateKind::Insert, *pair, held.idle_timeout)
                {
                    updates.push((Some(*pair), u));
                }
            }
        }
        let (pairs, batch): (Vec<_>, Vec<_>) = updates.into_iter().unzip();
        let results = self.write_batched(conn, batch).await;
        let lost = connection_failure(&results);
        let mut dropped = Vec::new();
        for (pair, result) in pairs.into_iter().zip(results) {
            let Some(pair) = pair else { continue };
            match result {
                Ok(()) => {
                    if let Some(held) = self.pairs.get_mut(&pair) {
                        held.tracker.restarted();
                    }
                }
                // Not refused, just not sent: the next connection tries again.
                Err(WriteOutcome {
                    failure: Some(_), ..
                }) => {}
                Err(e) => {
                    tracing::warn!(switch = %self.config.switch_name, %pair, error = %e.message, "pair not written back");
                    self.pairs.remove(&pair);
                    dropped.push(pair);
                }
            }
        }
        self.update_status(|_| {});
        lost.map_or(Ok(dropped), Err)
    }

    // ------------------------------------------------------------------------- serving

    async fn serve(&mut self, mut conn: Connection) -> Exit {
        loop {
            if self.stopping() {
                return Exit::Stopped;
            }
            let command = match self.pending.take() {
                Some(command) => command,
                None => {
                    let mut stop = self.stop.clone();
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return Exit::Stopped,
                        message = conn.stream_rx.message() => {
                            match self.on_stream_message(message) {
                                Ok(()) => continue,
                                Err(reason) => return Exit::Lost(reason),
                            }
                        }
                        command = self.commands.recv() => match command {
                            Some(command) => command,
                            None => return Exit::Stopped,
                        },
                    }
                }
            };
            let outcome = match command {
                Command::InstallRoutes { routes, reply } => {
                    self.install_routes(&mut conn, routes, reply).await
                }
                Command::InsertPair {
                    pair,
                    idle_timeout,
                    reply,
                } => {
                    let batch = self.gather_inserts(pair, idle_timeout, reply);
                    self.insert_pairs(&mut conn, batch).await
                }
                Command::DeletePair { pair, reply } => {
                    let batch = self.gather_deletes(pair, reply);
                    self.delete_pairs(&mut conn, batch).await
                }
                Command::ReadPairs { reply } => self.read_pairs(&mut conn, reply).await,
            };
            if let Err(failure) = outcome {
                return Exit::Lost(failure.reason());
            }
        }
    }

    fn on_stream_message(
        &mut self,
        message: Result<Option<StreamMessageResponse>, Status>,
    ) -> Result<(), String> {
        use stream_message_response::Update as U;
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => return Err("the switch closed the stream".to_string()),
            Err(status) => return Err(RpcFailure::from_status("StreamChannel", &status).reason()),
        };
        match message.update {
            Some(U::Arbitration(update)) => {
                let code = update
                    .status
                    .as_ref()
                    .map_or(Code::Unknown as i32, |s| s.code);
                if code != Code::Ok as i32 {
                    return Err(format!(
                        "no longer primary: a controller with election id {} took over",
                        update
                            .election_id
                            .as_ref()
                            .map_or("unknown".to_string(), |e| from_uint128(e).to_string())
                    ));
                }
            }
            Some(U::IdleTimeoutNotification(note)) => {
                let mut pairs = Vec::new();
                for entry in &note.table_entry {
                    match self.program.decode_pair_key(entry) {
                        Ok(pair) => pairs.push(pair),
                        Err(e) => {
                            tracing::warn!(switch = %self.config.switch_name, error = %e, "idle-timeout entry ignored")
                        }
                    }
                }
                if !pairs.is_empty() {
                    self.emit(SessionEvent::IdleTimeout {
                        switch: self.switch(),
                        pairs,
                    });
                }
            }
            Some(U::Error(error)) => {
                tracing::warn!(switch = %self.config.switch_name, code = error.canonical_code, message = %error.message, "stream error from the switch");
            }
            Some(other) => {
                tracing::debug!(switch = %self.config.switch_name, ?other, "stream message ignored");
            }
            None => {}
        }
        Ok(())
    }

    /// This insert and the inserts queued right behind it, up to one batch.
    fn gather_inserts(
        &mut self,
        pair: VmPair,
        idle_timeout: Option<Duration>,
        reply: Reply<()>,
    ) -> Vec<(VmPair, Option<Duration>, Reply<()>)> {
        let mut batch = vec![(pair, idle_timeout, reply)];
        while batch.len() < self.config.max_batch.max(1) {
            match self.commands.try_recv() {
                Ok(Command::InsertPair {
                    pair,
                    idle_timeout,
                    reply,
                }) => batch.push((pair, idle_timeout, reply)),
                Ok(other) => {
                    self.pending = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        batch
    }

    async fn insert_pairs(
        &mut self,
        conn: &mut Connection,
        batch: Vec<(VmPair, Option<Duration>, Reply<()>)>,
    ) -> Result<(), RpcFailure> {
        let mut updates = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        for (pair, idle_timeout, reply) in batch {
            match self
                .program
                .pair_update(UpdateKind::Insert, pair, idle_timeout)
            {
                Ok(u) => {
                    updates.push(u);
                    waiting.push((pair, idle_timeout, reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            }
        }
        let results = self.write_batched(conn, updates).await;
        let lost = connection_failure(&results);
        for ((pair, idle_timeout, reply), result) in waiting.into_iter().zip(results) {
            let answer = match result {
                Ok(()) => {
                    self.pairs.insert(
                        pair,
                        HeldPair {
                            idle_timeout,
                            tracker: PairTracker::default(),
                        },
                    );
                    Ok(())
                }
                Err(e) => Err(self.update_error(e)),
            };
            let _ = reply.send(answer);
        }
        self.update_status(|_| {});
        lost.map_or(Ok(()), Err)
    }

    fn update_error(&self, e: WriteOutcome) -> SessionError {
        match e.failure {
            Some(f) => f.into_error(&self.config.switch_name),
            None if e.code == Code::ResourceExhausted => SessionError::TableFull {
                switch: self.switch(),
                message: e.message,
            },
            None => SessionError::Refused {
                switch: self.switch(),
                code: e.code,
                message: e.message,
            },
        }
    }

    async fn install_routes(
        &mut self,
        conn: &mut Connection,
        routes: Vec<Route>,
        reply: Reply<()>,
    ) -> Result<(), RpcFailure> {
        self.desired_routes = routes.into_iter().map(|r| (route_key(&r), r)).collect();
        let mut changes: Vec<(UpdateKind, Route)> = Vec::new();
        for (key, route) in &self.installed_routes {
            if !self.desired_routes.contains_key(key) {
                changes.push((UpdateKind::Delete, *route));
            }
        }
        for (key, route) in &self.desired_routes {
            match self.installed_routes.get(key) {
                Some(installed) if installed == route => {}
                Some(_) => changes.push((UpdateKind::Modify, *route)),
                None => changes.push((UpdateKind::Insert, *route)),
            }
        }
        let describe = |kind: UpdateKind, r: &Route| {
            format!("{} {}/{}", kind.as_str(), r.prefix, r.prefix_len)
        };
        let mut failed = Vec::new();
        let mut updates = Vec::new();
        let mut written = Vec::new();
        for (kind, route) in changes {
            match self.program.route_update(kind, &route) {
                Ok(u) => {
                    updates.push(u);
                    written.push((kind, route));
                }
                Err(e) => failed.push(UpdateError {
                    update: describe(kind, &route),
                    code: Code::InvalidArgument,
                    message: e.to_string(),
                }),
            }
        }
        let results = self.write_batched(conn, updates).await;
        let lost = connection_failure(&results);
        for ((kind, route), result) in written.into_iter().zip(results) {
            match result {
                Ok(()) if kind == UpdateKind::Delete => {
                    self.installed_routes.remove(&route_key(&route));
                }
                Ok(()) => {
                    self.installed_routes.insert(route_key(&route), route);
                }
                Err(e) => failed.push(UpdateError {
                    update: describe(kind, &route),
                    code: e.code,
                    message: e.message,
                }),
            }
        }
        self.update_status(|_| {});
        let answer = match (&lost, failed.is_empty()) {
            (Some(f), _) => Err(f.clone().into_error(&self.config.switch_name)),
            (None, true) => Ok(()),
            (None, false) => Err(SessionError::Updates {
                switch: self.switch(),
                failed,
            }),
        };
        let _ = reply.send(answer);
        lost.map_or(Ok(()), Err)
    }

    /// This delete and the deletes queued right behind it, up to one batch.
    fn gather_deletes(
        &mut self,
        pair: VmPair,
        reply: Reply<Option<PairTotals>>,
    ) -> Vec<(VmPair, Reply<Option<PairTotals>>)> {
        let mut batch = vec![(pair, reply)];
        while batch.len() < self.config.max_batch.max(1) {
            match self.commands.try_recv() {
                Ok(Command::DeletePair { pair, reply }) => batch.push((pair, reply)),
                Ok(other) => {
                    self.pending = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        batch
    }

    /// Reads the counters of the held pairs of `batch` in one Read, then deletes them in one
    /// Write; pairs not held (or named twice) are answered `None` without an RPC.
    async fn delete_pairs(
        &mut self,
        conn: &mut Connection,
        batch: Vec<(VmPair, Reply<Option<PairTotals>>)>,
    ) -> Result<(), RpcFailure> {
        let mut seen = BTreeSet::new();
        let mut waiting = Vec::with_capacity(batch.len());
        for (pair, reply) in batch {
            if self.pairs.contains_key(&pair) && seen.insert(pair) {
                waiting.push((pair, reply));
            } else {
                let _ = reply.send(Ok(None));
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        let request = self
            .program
            .read_pairs(self.config.device_id, waiting.iter().map(|(pair, _)| *pair));
        let entities = match self.read(conn, request).await {
            Ok(entities) => entities,
            Err(f) => {
                let error = f.clone().into_error(&self.config.switch_name);
                for (_, reply) in waiting {
                    let _ = reply.send(Err(error.clone()));
                }
                return if f.ends_connection() { Err(f) } else { Ok(()) };
            }
        };
        for entry in table_entries(entities) {
            match self.program.decode_pair_entry(&entry) {
                Ok((pair, count)) => {
                    if let Some(held) = self.pairs.get_mut(&pair) {
                        held.tracker.observe(count);
                    }
                }
                Err(source) => {
                    for (_, reply) in waiting {
                        let _ = reply.send(Err(SessionError::BadReply {
                            switch: self.switch(),
                            source: source.clone(),
                        }));
                    }
                    return Ok(());
                }
            }
        }
        let updates = waiting
            .iter()
            .map(|(pair, _)| self.program.pair_delete(*pair))
            .collect();
        let results = self.write_batched(conn, updates).await;
        let lost = connection_failure(&results);
        for ((pair, reply), result) in waiting.into_iter().zip(results) {
            let answer = match result {
                // Gone already (e.g. the switch restarted empty): nothing left to delete.
                Ok(())
                | Err(WriteOutcome {
                    code: Code::NotFound,
                    failure: None,
                    ..
                }) => Ok(self.pairs.remove(&pair).map(|held| held.tracker.totals)),
                Err(e) => Err(self.update_error(e)),
            };
            let _ = reply.send(answer);
        }
        self.update_status(|_| {});
        lost.map_or(Ok(()), Err)
    }

    async fn read_pairs(
        &mut self,
        conn: &mut Connection,
        reply: Reply<Vec<(VmPair, PairTotals)>>,
    ) -> Result<(), RpcFailure> {
        let entities = match self
            .read(conn, self.program.read_all_pairs(self.config.device_id))
            .await
        {
            Ok(entities) => entities,
            Err(f) => {
                let _ = reply.send(Err(f.clone().into_error(&self.config.switch_name)));
                return if f.ends_connection() { Err(f) } else { Ok(()) };
            }
        };
        let mut decoded = Vec::new();
        for entry in table_entries(entities) {
            match self.program.decode_pair_entry(&entry) {
                Ok(read) => decoded.push(read),
                Err(source) => {
                    let _ = reply.send(Err(SessionError::BadReply {
                        switch: self.switch(),
                        source,
                    }));
                    return Ok(());
                }
            }
        }
        let mut totals = Vec::new();
        for (pair, count) in decoded {
            match self.pairs.get_mut(&pair) {
                Some(held) => {
                    held.tracker.observe(count);
                    totals.push((pair, held.tracker.totals));
                }
                None => {
                    tracing::debug!(switch = %self.config.switch_name, %pair, "entry not held by this session")
                }
            }
        }
        totals.sort_by_key(|(pair, _)| *pair);
        let _ = reply.send(Ok(totals));
        Ok(())
    }

    // ------------------------------------------------------------------------- RPCs

    /// Writes `updates` in WriteRequests of at most `max_batch`, returning one outcome per
    /// update. After a failure that ends the connection, the remaining updates are not sent
    /// and carry that failure.
    async fn write_batched(
        &self,
        conn: &mut Connection,
        updates: Vec<Update>,
    ) -> Vec<Result<(), WriteOutcome>> {
        let mut results = Vec::with_capacity(updates.len());
        let mut remaining = updates.into_iter().peekable();
        let mut lost: Option<RpcFailure> = None;
        while remaining.peek().is_some() {
            let chunk: Vec<Update> = remaining
                .by_ref()
                .take(self.config.max_batch.max(1))
                .collect();
            if let Some(f) = &lost {
                results.extend(chunk.iter().map(|_| Err(WriteOutcome::whole(f.clone()))));
                continue;
            }
            let count = chunk.len();
            match self.write(conn, chunk).await {
                Ok(outcomes) => results.extend(outcomes),
                Err(f) => {
                    results.extend((0..count).map(|_| Err(WriteOutcome::whole(f.clone()))));
                    if f.ends_connection() {
                        lost = Some(f);
                    }
                }
            }
        }
        results
    }

    /// One Write RPC: per-update outcomes, or the failure of the whole RPC.
    async fn write(
        &self,
        conn: &mut Connection,
        updates: Vec<Update>,
    ) -> Result<Vec<Result<(), WriteOutcome>>, RpcFailure> {
        let count = updates.len();
        let request = WriteRequest {
            device_id: self.config.device_id,
            election_id: Some(uint128(self.config.election_id)),
            updates,
            atomicity: Atomicity::ContinueOnError as i32,
            ..WriteRequest::default()
        };
        if let Some(journal) = &self.config.journal {
            journal.record(&request);
        }
        let started = Instant::now();
        let timeout = self.config.rpc_timeout;
        let result = tokio::time::timeout(timeout, conn.client.write(request)).await;
        let result = match result {
            Ok(Ok(_)) => Ok((0..count).map(|_| Ok(())).collect::<Vec<_>>()),
            Ok(Err(status)) => match per_update_errors(&status, count) {
                Some(outcomes) => Ok(outcomes
                    .into_iter()
                    .map(|o| {
                        o.map_err(|(code, message)| WriteOutcome {
                            code,
                            message,
                            failure: None,
                        })
                    })
                    .collect()),
                None => Err(RpcFailure::from_status("Write", &status)),
            },
            Err(_) => Err(RpcFailure::timeout("Write", timeout)),
        };
        let ok = matches!(&result, Ok(outcomes) if outcomes.iter().all(Result::is_ok));
        self.account("write", started, ok);
        result
    }

    /// One Read RPC, every answer message collected (bounded in time and size).
    async fn read(
        &self,
        conn: &mut Connection,
        request: ReadRequest,
    ) -> Result<Vec<Entity>, RpcFailure> {
        let started = Instant::now();
        let timeout = self.config.rpc_timeout;
        let mut client = conn.client.clone();
        let collect = async move {
            let mut stream = client
                .read(request)
                .await
                .map_err(|s| RpcFailure::from_status("Read", &s))?
                .into_inner();
            let mut entities = Vec::new();
            while let Some(message) = stream
                .message()
                .await
                .map_err(|s| RpcFailure::from_status("Read", &s))?
            {
                entities.extend(message.entities);
                if entities.len() > MAX_READ_ENTITIES {
                    return Err(RpcFailure {
                        rpc: "Read",
                        code: Code::OutOfRange,
                        message: format!("more than {MAX_READ_ENTITIES} entities"),
                    });
                }
            }
            Ok(entities)
        };
        let result = match tokio::time::timeout(timeout, collect).await {
            Ok(result) => result,
            Err(_) => Err(RpcFailure::timeout("Read", timeout)),
        };
        self.account("read", started, result.is_ok());
        result
    }
}

/// One update's failure: refused by the switch (`failure` None, with the switch's code), or
/// lost with its whole RPC.
#[derive(Debug, Clone)]
struct WriteOutcome {
    code: Code,
    message: String,
    failure: Option<RpcFailure>,
}

impl WriteOutcome {
    fn whole(f: RpcFailure) -> WriteOutcome {
        WriteOutcome {
            code: f.code,
            message: f.message.clone(),
            failure: Some(f),
        }
    }
}

/// The failure that ended the connection during these writes, if one did.
fn connection_failure(results: &[Result<(), WriteOutcome>]) -> Option<RpcFailure> {
    results.iter().find_map(|r| match r {
        Err(WriteOutcome {
            failure: Some(f), ..
        }) if f.ends_connection() => Some(f.clone()),
        _ => None,
    })
}

/// The first arbitration update on the stream (other messages before it are skipped).
async fn arbitration_answer(
    stream: &mut Streaming<StreamMessageResponse>,
) -> Result<MasterArbitrationUpdate, String> {
    loop {
        match stream.message().await {
            Ok(Some(StreamMessageResponse {
                update: Some(stream_message_response::Update::Arbitration(update)),
            })) => return Ok(update),
            Ok(Some(_)) => continue,
            Ok(None) => return Err("the switch closed the stream during arbitration".to_string()),
            Err(status) => return Err(RpcFailure::from_status("StreamChannel", &status).reason()),
        }
    }
}

fn table_entries(entities: Vec<Entity>) -> impl Iterator<Item = TableEntry> {
    entities.into_iter().filter_map(|e| match e.entity {
        Some(entity::Entity::TableEntry(t)) => Some(t),
        _ => None,
    })
}

/// A DELETE of an entry read back from the switch: its key only.
fn key_only_delete(entry: TableEntry) -> Update {
    Update {
        r#type: crate::p4rt::v1::update::Type::Delete as i32,
        entity: Some(Entity {
            entity: Some(entity::Entity::TableEntry(TableEntry {
                table_id: entry.table_id,
                r#match: entry.r#match,
                priority: entry.priority,
                ..TableEntry::default()
            })),
        }),
    }
}

/// Answers a command that cannot be served with `error`.
fn answer_all(command: Command, error: &SessionError) {
    let error = error.clone();
    match command {
        Command::InstallRoutes { reply, .. } | Command::InsertPair { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Command::DeletePair { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Command::ReadPairs { reply } => {
            let _ = reply.send(Err(error));
        }
    }
}

/// An error and its sources, as one line ("transport error: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
