//! The device a P4Runtime server controls: the running pipeline (data plane + P4Runtime state),
//! the saved config, the controllers' stream sessions, and the frame path between ports, the
//! data plane and the controller (packet-in, packet-out, idle-timeout notifications).
//!
//! Lock order, everywhere: `pipeline`, then `sessions`; neither is held across an `await`. A
//! primary change takes the pipeline lock first, so it waits for a Write in flight, as the spec's
//! arbitration rules ask.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tonic::{Code, Status};

use crate::p4rt::v1::{
    stream_message_response, ForwardingPipelineConfig, IdleTimeoutNotification, PacketIn,
    PacketOut, StreamMessageResponse,
};
use crate::switch::capture::PortCaptures;
use crate::switch::ports::{DropLog, FrameSink, PortSender};
use crate::switch::{Outputs, Switch};

use super::arbitration::{Arbitration, Notification, StreamId};
use super::entities::{EntityError, P4rtState};
use super::packet_io::ControllerHeader;

/// What a stream's response half receives.
pub type StreamSender = mpsc::Sender<Result<StreamMessageResponse, Status>>;

/// The pipeline the data plane runs.
pub struct ActivePipeline {
    pub switch: Switch,
    /// None when the pipeline came from the command line without a P4Info.
    pub p4rt: Option<P4rtState>,
    /// The config as SetForwardingPipelineConfig gave it (None when from the command line).
    pub config: Option<ForwardingPipelineConfig>,
}

/// The running and saved pipelines.
#[derive(Default)]
pub struct PipelineSlot {
    pub active: Option<ActivePipeline>,
    /// Saved by VERIFY_AND_SAVE, run by COMMIT.
    pub saved: Option<ForwardingPipelineConfig>,
}

/// The controllers: arbitration plus each live stream's sender.
pub struct Sessions {
    pub arbitration: Arbitration,
    senders: HashMap<StreamId, StreamSender>,
}

impl Sessions {
    pub fn add_sender(&mut self, stream: StreamId, sender: StreamSender) {
        self.senders.insert(stream, sender);
    }

    pub fn remove_sender(&mut self, stream: StreamId) {
        self.senders.remove(&stream);
    }

    /// Sends arbitration updates; a full or closed stream misses its update (it is going away
    /// or not reading, and the next change tells it again).
    pub fn deliver(&self, notes: Vec<Notification>) {
        for note in notes {
            if let Some(tx) = self.senders.get(&note.stream) {
                let msg = StreamMessageResponse {
                    update: Some(stream_message_response::Update::Arbitration(note.update)),
                };
                if tx.try_send(Ok(msg)).is_err() {
                    tracing::warn!(stream = note.stream, "arbitration update not delivered");
                }
            }
        }
    }

    /// Sends to the primary; false if there is none or its stream is full.
    fn send_to_primary(&self, update: stream_message_response::Update) -> bool {
        let Some(tx) = self
            .arbitration
            .primary()
            .and_then(|p| self.senders.get(&p))
        else {
            return false;
        };
        tx.try_send(Ok(StreamMessageResponse {
            update: Some(update),
        }))
        .is_ok()
    }
}

/// Frames and messages the device could not deliver, by reason.
#[derive(Debug, Default)]
pub struct DropCounters {
    /// Frames received while no pipeline was loaded.
    pub no_pipeline: AtomicU64,
    /// Frames the data plane sent to a port with no backend.
    pub unknown_port: AtomicU64,
    /// Frames a port backend could not take (full queue, socket error).
    pub port_send_failed: AtomicU64,
    /// Frames that reached an interface port or a UDP wire but that the kernel dropped before
    /// the switch read them (the socket's receive buffer was full).
    pub port_receive_overflow: AtomicU64,
    /// Packet-ins with no primary to take them (or a full stream).
    pub packet_in: AtomicU64,
    /// Idle-timeout notifications with no primary to take them (or a full stream).
    pub idle_timeout: AtomicU64,
}

thread_local! {
    /// Per-thread scratch for the frames one `process` call sends.
    static OUTPUTS: RefCell<Outputs> = RefCell::new(Outputs::new());
}

/// A switch device under P4Runtime control.
pub struct Device {
    pub device_id: u64,
    pub cpu_port: Option<u32>,
    pipeline: Mutex<PipelineSlot>,
    sessions: Mutex<Sessions>,
    ports: HashMap<u32, PortSender>,
    pub drops: DropCounters,
    /// Frames each port's backend did not take, for the warnings (the total is in `drops`).
    send_failures: Mutex<HashMap<u32, DropLog>>,
    /// `--pcap`: the ports' capture files.
    captures: Option<PortCaptures>,
}

/// Locks a mutex even if a thread panicked while holding it: the state is still the last one
/// written, and refusing service forever would be worse.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Device {
    pub fn new(
        device_id: u64,
        cpu_port: Option<u32>,
        ports: HashMap<u32, PortSender>,
        initial: Option<Switch>,
    ) -> Device {
        Device {
            device_id,
            cpu_port,
            pipeline: Mutex::new(PipelineSlot {
                active: initial.map(|switch| ActivePipeline {
                    switch,
                    p4rt: None,
                    config: None,
                }),
                saved: None,
            }),
            sessions: Mutex::new(Sessions {
                arbitration: Arbitration::new(device_id),
                senders: HashMap::new(),
            }),
            ports,
            drops: DropCounters::default(),
            send_failures: Mutex::new(HashMap::new()),
            captures: None,
        }
    }

    /// Writes every frame the ports receive and send to `captures` too (`--pcap`).
    pub fn with_captures(mut self, captures: PortCaptures) -> Device {
        self.captures = Some(captures);
        self
    }

    pub fn pipeline(&self) -> MutexGuard<'_, PipelineSlot> {
        lock(&self.pipeline)
    }

    pub fn sessions(&self) -> MutexGuard<'_, Sessions> {
        lock(&self.sessions)
    }

    /// Runs `frame` through the data plane as if received on `port`, then delivers its outputs.
    fn inject(&self, port: u32, frame: &[u8]) {
        self.inject_batch(port, &mut std::iter::once(frame));
    }

    /// Runs frames received together on `port` through the data plane under one lock, then
    /// delivers their outputs, each port's in one batch.
    fn inject_batch(&self, port: u32, frames: &mut dyn Iterator<Item = &[u8]>) {
        // Captured as they come in, before the pipeline (or its absence) decides anything.
        let mut capture = self.captures.as_ref().and_then(|c| c.received(port));
        let frames = &mut frames.inspect(|frame| {
            if let Some(batch) = capture.as_mut() {
                batch.write(frame);
            }
        });
        OUTPUTS.with(|outputs| {
            let mut outputs = outputs.borrow_mut();
            outputs.clear();
            let packet_in = {
                let mut slot = self.pipeline();
                let Some(active) = slot.active.as_mut() else {
                    let count = u64::try_from(frames.count()).unwrap_or(u64::MAX);
                    self.drops.no_pipeline.fetch_add(count, Ordering::Relaxed);
                    return;
                };
                // One clock reading for the batch (a batch takes microseconds; idle timeouts, milliseconds).
                let now = active.switch.now_ns();
                for frame in frames {
                    active.switch.process_at(port, frame, now, &mut outputs);
                }
                let to_cpu = outputs.iter().any(|(p, _)| Some(p) == self.cpu_port);
                if to_cpu {
                    active.p4rt.as_ref().and_then(|p| p.map.packet_in.clone())
                } else {
                    None
                }
            };
            self.deliver(&outputs, packet_in.as_ref());
        });
    }

    fn deliver(&self, outputs: &Outputs, packet_in: Option<&ControllerHeader>) {
        // Each port's frames in order, so its backend sends them in one call.
        let mut by_port: Vec<(u32, Vec<&[u8]>)> = Vec::new();
        for (port, frame) in outputs.iter() {
            if Some(port) == self.cpu_port {
                self.packet_in(frame, packet_in);
                continue;
            }
            match by_port.iter_mut().find(|(p, _)| *p == port) {
                Some((_, frames)) => frames.push(frame),
                None => by_port.push((port, vec![frame])),
            }
        }
        for (port, frames) in by_port {
            let count = frames.len() as u64;
            if let Some(mut capture) = self.captures.as_ref().and_then(|c| c.sent(port)) {
                for frame in &frames {
                    capture.write(frame);
                }
            }
            match self.ports.get(&port) {
                Some(sender) => {
                    let outcome = sender.send_batch(&frames);
                    let failed = count - outcome.sent as u64;
                    if failed > 0 {
                        self.drops
                            .port_send_failed
                            .fetch_add(failed, Ordering::Relaxed);
                        self.log_send_failure(port, failed, outcome.error);
                    }
                }
                None => {
                    tracing::debug!(port, count, "frames to a port with no backend dropped");
                    self.drops.unknown_port.fetch_add(count, Ordering::Relaxed);
                }
            }
        }
    }

    /// Counts `failed` frames `port` did not send, warning (at most once a second per port) with
    /// the backend's reason when it gave one.
    fn log_send_failure(&self, port: u32, failed: u64, error: Option<std::io::Error>) {
        let mut logs = lock(&self.send_failures);
        let log = logs.entry(port).or_default();
        log.add(failed);
        if let Some((dropped, total)) = log.report_due(false) {
            let reason = error.map_or_else(
                || "its send buffer or queue was full".to_string(),
                |err| err.to_string(),
            );
            tracing::warn!(port, dropped, total, %reason, "port could not send frames; dropped");
        }
    }

    /// Logs the send failures not yet reported (when the switch stops).
    pub fn report_send_failures(&self) {
        for (port, log) in lock(&self.send_failures).iter_mut() {
            if let Some((dropped, total)) = log.report_due(true) {
                tracing::warn!(port, dropped, total, "port could not send frames; dropped");
            }
        }
    }

    fn packet_in(&self, frame: &[u8], header: Option<&ControllerHeader>) {
        let packet = match header {
            Some(h) => match h.decode(frame) {
                Some((metadata, payload)) => PacketIn {
                    payload: payload.to_vec(),
                    metadata,
                },
                None => {
                    tracing::warn!("frame to the CPU port is shorter than the packet_in header");
                    self.drops.packet_in.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            None => PacketIn {
                payload: frame.to_vec(),
                metadata: Vec::new(),
            },
        };
        if !self
            .sessions()
            .send_to_primary(stream_message_response::Update::Packet(packet))
        {
            self.drops.packet_in.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Injects a controller's PacketOut on the CPU port, with its packet_out header in front.
    pub fn packet_out(&self, packet: &PacketOut) -> Result<(), EntityError> {
        let cpu_port = self.cpu_port.ok_or_else(|| {
            EntityError::new(
                Code::FailedPrecondition,
                "packet-out needs a CPU port: start the switch with --cpu-port",
            )
        })?;
        let mut frame = Vec::with_capacity(packet.payload.len() + 16);
        {
            let slot = self.pipeline();
            let header = match slot.active.as_ref() {
                None => {
                    return Err(EntityError::new(
                        Code::FailedPrecondition,
                        "no pipeline is loaded",
                    ))
                }
                Some(active) => active.p4rt.as_ref().and_then(|p| p.map.packet_out.as_ref()),
            };
            match header {
                Some(h) => h
                    .encode(&packet.metadata, &mut frame)
                    .map_err(|e| EntityError::new(Code::InvalidArgument, e.to_string()))?,
                None if packet.metadata.is_empty() => {}
                None => {
                    return Err(EntityError::new(
                        Code::InvalidArgument,
                        "the P4Info has no packet_out header, so a PacketOut carries no metadata",
                    ))
                }
            }
        }
        frame.extend_from_slice(&packet.payload);
        self.inject(cpu_port, &frame);
        Ok(())
    }

    /// One idle-timeout scan: notifies the primary of the entries that expired since the last.
    pub fn scan_idle_timeouts(&self) {
        let groups = {
            let mut slot = self.pipeline();
            match slot.active.as_mut() {
                Some(ActivePipeline {
                    switch,
                    p4rt: Some(p4rt),
                    ..
                }) => p4rt.idle_timeouts(switch),
                _ => return,
            }
        };
        if groups.is_empty() {
            return;
        }
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let sessions = self.sessions();
        for table_entry in groups {
            let note = IdleTimeoutNotification {
                table_entry,
                timestamp,
            };
            let update = stream_message_response::Update::IdleTimeoutNotification(note);
            if !sessions.send_to_primary(update) {
                self.drops.idle_timeout.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl FrameSink for Device {
    fn receive(&self, port: u32, frame: &[u8]) {
        self.inject(port, frame);
    }

    fn receive_batch(&self, port: u32, frames: &mut dyn Iterator<Item = &[u8]>) {
        self.inject_batch(port, frames);
    }

    fn dropped_before_receive(&self, _port: u32, count: u64) {
        self.drops
            .port_receive_overflow
            .fetch_add(count, Ordering::Relaxed);
    }
}
