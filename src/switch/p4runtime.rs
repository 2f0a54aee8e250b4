//! The P4Runtime server of `vmdep switch` (the role of bmv2's simple_switch_grpc): the
//! `p4.v1.P4Runtime` gRPC service over one [`Device`], following the P4Runtime 1.4 specification.
//!
//! - `StreamChannel`: client arbitration (default role only; named roles are UNIMPLEMENTED),
//!   PacketOut → the CPU port, PacketIn and IdleTimeoutNotification → the primary;
//! - `SetForwardingPipelineConfig`: VERIFY, VERIFY_AND_SAVE, VERIFY_AND_COMMIT, COMMIT, and
//!   RECONCILE_AND_COMMIT, which keeps the forwarding state only when the new config is the
//!   running one (it then just updates the cookie) and is refused (INVALID_ARGUMENT) otherwise;
//!   a saved config is used from its COMMIT on (until then Reads and Writes refer to the running
//!   pipeline);
//! - `Write` (CONTINUE_ON_ERROR; the other atomicity modes are UNIMPLEMENTED) and `Read`, with
//!   per-update errors as `UNKNOWN` carrying one `p4.v1.Error` per update in the status details;
//! - `Capabilities`.
//!
//! No request makes the server panic; a malformed one gets INVALID_ARGUMENT saying what is wrong.
//! Entity checks and conversions live in [`entities`]; this file owns the RPC-level rules.

// The deprecated numeric `role_id` fields are still checked: a client may set them.
#![allow(deprecated)]

pub mod arbitration;
pub mod device;
pub mod entities;
pub mod packet_io;

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::p4rt::rpc;
use crate::p4rt::v1::p4_runtime_server::P4Runtime;
use crate::p4rt::v1::{
    get_forwarding_pipeline_config_request::ResponseType,
    set_forwarding_pipeline_config_request::Action as SetAction, stream_error,
    stream_message_request, stream_message_response, write_request::Atomicity, CapabilitiesRequest,
    CapabilitiesResponse, Error as P4Error, ForwardingPipelineConfig,
    GetForwardingPipelineConfigRequest, GetForwardingPipelineConfigResponse,
    MasterArbitrationUpdate, PacketOutError, ReadRequest, ReadResponse,
    SetForwardingPipelineConfigRequest, SetForwardingPipelineConfigResponse, StreamError,
    StreamMessageRequest, StreamMessageResponse, StreamOtherError, WriteRequest, WriteResponse,
};

use arbitration::{election_id, ArbitrationError, StreamId};
use device::{ActivePipeline, Device, StreamSender};
use entities::{realize, EntityError};

/// The P4Runtime version of our protos, which this server implements.
pub const P4RUNTIME_API_VERSION: &str = "1.4.1";

/// Messages a stream's response queue holds before packet-ins to it are dropped.
const STREAM_QUEUE: usize = 1024;

/// Entities per ReadResponse message.
const READ_CHUNK: usize = 1000;

/// The gRPC service.
pub struct P4RuntimeService {
    device: Arc<Device>,
    next_stream: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl P4RuntimeService {
    /// Serves `device`; open streams end (UNAVAILABLE) when `shutdown` turns true.
    pub fn new(device: Arc<Device>, shutdown: watch::Receiver<bool>) -> P4RuntimeService {
        P4RuntimeService {
            device,
            next_stream: AtomicU64::new(1),
            shutdown,
        }
    }

    /// The Write RPC's work, without gRPC (also the fuzzers' and property tests' entry point).
    pub fn handle_write(&self, req: &WriteRequest) -> Result<WriteResponse, Status> {
        self.check_device(req.device_id)?;
        check_role(&req.role, req.role_id)?;
        let mut slot = self.device.pipeline();
        if !self
            .device
            .sessions()
            .arbitration
            .is_primary_election_id(req.election_id.as_ref().map(election_id))
        {
            return Err(Status::permission_denied(
                "the election id is not the primary controller's",
            ));
        }
        match Atomicity::try_from(req.atomicity) {
            Ok(Atomicity::ContinueOnError) => {}
            Ok(mode) => {
                return Err(Status::unimplemented(format!(
                    "atomicity {} is not supported; use CONTINUE_ON_ERROR",
                    mode.as_str_name()
                )))
            }
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown atomicity {}",
                    req.atomicity
                )))
            }
        }
        let active = slot.active.as_mut().ok_or_else(no_pipeline)?;
        let p4rt = active.p4rt.as_mut().ok_or_else(no_p4info)?;
        // bmv2 logs each table write; so does this, with the debug log (`-L debug`).
        let log = tracing::enabled!(tracing::Level::DEBUG);
        let results: Vec<_> = req
            .updates
            .iter()
            .map(|u| {
                let result = p4rt.write(&mut active.switch, u);
                if log {
                    let update = p4rt.describe_update(u);
                    match &result {
                        Ok(()) => tracing::debug!("P4Runtime write: {update}"),
                        Err(e) => tracing::debug!(
                            "P4Runtime write: {update}: {:?}: {}",
                            e.code,
                            e.message
                        ),
                    }
                }
                result
            })
            .collect();
        if results.iter().all(Result::is_ok) {
            Ok(WriteResponse {})
        } else {
            Err(batch_status(&results, "update"))
        }
    }

    /// The Read RPC's work, without gRPC: the response messages in order, the last one an
    /// error when some entity could not be read.
    pub fn handle_read(
        &self,
        req: &ReadRequest,
    ) -> Result<Vec<Result<ReadResponse, Status>>, Status> {
        self.check_device(req.device_id)?;
        check_role(&req.role, 0)?;
        let mut entities = Vec::new();
        let results: Vec<_> = {
            let mut slot = self.device.pipeline();
            let active = slot.active.as_mut().ok_or_else(no_pipeline)?;
            let p4rt = active.p4rt.as_ref().ok_or_else(no_p4info)?;
            req.entities
                .iter()
                .map(|e| p4rt.read(&mut active.switch, e, &mut entities))
                .collect()
        };
        let mut messages: Vec<Result<ReadResponse, Status>> = entities
            .chunks(READ_CHUNK)
            .map(|chunk| {
                Ok(ReadResponse {
                    entities: chunk.to_vec(),
                })
            })
            .collect();
        if messages.is_empty() {
            messages.push(Ok(ReadResponse::default()));
        }
        if results.iter().any(Result::is_err) {
            messages.push(Err(batch_status(&results, "read request")));
        }
        Ok(messages)
    }

    /// The SetForwardingPipelineConfig RPC's work, without gRPC.
    pub fn handle_set_pipeline(
        &self,
        req: SetForwardingPipelineConfigRequest,
    ) -> Result<SetForwardingPipelineConfigResponse, Status> {
        self.check_device(req.device_id)?;
        check_role(&req.role, req.role_id)?;
        let action = SetAction::try_from(req.action)
            .ok()
            .filter(|a| *a != SetAction::Unspecified)
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "pipeline config action {} is not valid",
                    req.action
                ))
            })?;
        let mut slot = self.device.pipeline();
        if !self
            .device
            .sessions()
            .arbitration
            .is_primary_election_id(req.election_id.as_ref().map(election_id))
        {
            return Err(Status::permission_denied(
                "only the primary controller may set the pipeline",
            ));
        }
        let config = match (action, req.config) {
            (SetAction::Commit, Some(_)) => {
                return Err(Status::invalid_argument("COMMIT takes no config"))
            }
            (SetAction::Commit, None) => slot.saved.take().ok_or_else(|| {
                Status::not_found("no saved config to commit (VERIFY_AND_SAVE first)")
            })?,
            (_, Some(config)) => config,
            (_, None) => {
                return Err(Status::invalid_argument(format!(
                    "{} needs a config",
                    action.as_str_name()
                )))
            }
        };
        if action == SetAction::ReconcileAndCommit {
            if let Some(active) = slot.active.as_mut() {
                let same = active.config.as_ref().is_some_and(|running| {
                    running.p4info == config.p4info
                        && running.p4_device_config == config.p4_device_config
                });
                if !same {
                    return Err(Status::invalid_argument(
                        "RECONCILE_AND_COMMIT keeps the forwarding state only for the running \
                         pipeline; use VERIFY_AND_COMMIT to load a different one",
                    ));
                }
                active.config = Some(config);
                return Ok(SetForwardingPipelineConfigResponse {});
            }
        }
        let (switch, p4rt) = realize(&config).map_err(entity_status)?;
        match action {
            SetAction::Verify => {}
            SetAction::VerifyAndSave => slot.saved = Some(config),
            _ => {
                tracing::info!(
                    tables = p4rt_table_count(&config),
                    "forwarding pipeline committed"
                );
                slot.active = Some(ActivePipeline {
                    switch,
                    p4rt: Some(p4rt),
                    config: Some(config),
                });
            }
        }
        Ok(SetForwardingPipelineConfigResponse {})
    }

    fn check_device(&self, device_id: u64) -> Result<(), Status> {
        if device_id != self.device.device_id {
            return Err(Status::not_found(format!(
                "no device {device_id}: this switch is device {}",
                self.device.device_id
            )));
        }
        Ok(())
    }
}

fn check_role(role: &str, role_id: u64) -> Result<(), Status> {
    if !role.is_empty() || role_id != 0 {
        return Err(Status::not_found(format!(
            "unknown role `{role}` (id {role_id}): this switch has only the default role"
        )));
    }
    Ok(())
}

fn code_number(code: Code) -> i32 {
    code as i32
}

/// The status of a batch where some item failed: UNKNOWN with one p4.v1.Error per item.
fn batch_status(results: &[Result<(), EntityError>], what: &str) -> Status {
    let failed: Vec<&EntityError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let message = match failed.as_slice() {
        [only] => format!("1 of {} {what}s failed: {}", results.len(), only.message),
        _ => format!("{} of {} {what}s failed", failed.len(), results.len()),
    };
    let details = results
        .iter()
        .map(|r| {
            let error = match r {
                Ok(()) => P4Error::default(),
                Err(e) => P4Error {
                    canonical_code: code_number(e.code),
                    message: e.message.clone(),
                    ..P4Error::default()
                },
            };
            prost_types::Any {
                type_url: "type.googleapis.com/p4.v1.Error".to_string(),
                value: error.encode_to_vec(),
            }
        })
        .collect();
    let status = rpc::Status {
        code: code_number(Code::Unknown),
        message: message.clone(),
        details,
    };
    Status::with_details(Code::Unknown, message, status.encode_to_vec().into())
}

fn entity_status(e: EntityError) -> Status {
    Status::new(e.code, e.message)
}

fn no_p4info() -> Status {
    Status::failed_precondition(
        "the running pipeline was loaded without a P4Info; set one with SetForwardingPipelineConfig",
    )
}

fn no_pipeline() -> Status {
    Status::failed_precondition("no forwarding pipeline is set")
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl P4Runtime for P4RuntimeService {
    async fn write(
        &self,
        request: Request<WriteRequest>,
    ) -> Result<Response<WriteResponse>, Status> {
        self.handle_write(request.get_ref()).map(Response::new)
    }

    type ReadStream = BoxStream<ReadResponse>;

    async fn read(
        &self,
        request: Request<ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let messages = self.handle_read(request.get_ref())?;
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }

    async fn set_forwarding_pipeline_config(
        &self,
        request: Request<SetForwardingPipelineConfigRequest>,
    ) -> Result<Response<SetForwardingPipelineConfigResponse>, Status> {
        self.handle_set_pipeline(request.into_inner())
            .map(Response::new)
    }

    async fn get_forwarding_pipeline_config(
        &self,
        request: Request<GetForwardingPipelineConfigRequest>,
    ) -> Result<Response<GetForwardingPipelineConfigResponse>, Status> {
        let req = request.into_inner();
        self.check_device(req.device_id)?;
        let response_type = ResponseType::try_from(req.response_type).map_err(|_| {
            Status::invalid_argument(format!("unknown response type {}", req.response_type))
        })?;
        let slot = self.device.pipeline();
        let config = slot
            .active
            .as_ref()
            .and_then(|a| a.config.as_ref())
            .map(|c| {
                let mut reply = ForwardingPipelineConfig {
                    cookie: c.cookie,
                    ..ForwardingPipelineConfig::default()
                };
                if matches!(
                    response_type,
                    ResponseType::All | ResponseType::P4infoAndCookie
                ) {
                    reply.p4info = c.p4info.clone();
                }
                if matches!(
                    response_type,
                    ResponseType::All | ResponseType::DeviceConfigAndCookie
                ) {
                    reply.p4_device_config = c.p4_device_config.clone();
                }
                reply
            });
        Ok(Response::new(GetForwardingPipelineConfigResponse {
            config,
        }))
    }

    type StreamChannelStream = BoxStream<StreamMessageResponse>;

    async fn stream_channel(
        &self,
        request: Request<Streaming<StreamMessageRequest>>,
    ) -> Result<Response<Self::StreamChannelStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let device = self.device.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    message = inbound.message() => message,
                    _ = tx.closed() => break,
                    _ = shutdown.changed() => {
                        let _ = tx.send(Err(Status::unavailable("the switch is shutting down"))).await;
                        break;
                    }
                };
                match message {
                    Ok(Some(message)) => {
                        if let Err(status) = handle_stream_message(&device, stream, &tx, message) {
                            let _ = tx.send(Err(status)).await;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(stream, %status, "stream read error");
                        break;
                    }
                }
            }
            stream_closed(&device, stream);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn capabilities(
        &self,
        _request: Request<CapabilitiesRequest>,
    ) -> Result<Response<CapabilitiesResponse>, Status> {
        Ok(Response::new(CapabilitiesResponse {
            p4runtime_api_version: P4RUNTIME_API_VERSION.to_string(),
        }))
    }
}

fn p4rt_table_count(config: &ForwardingPipelineConfig) -> usize {
    config.p4info.as_ref().map_or(0, |p| p.tables.len())
}

/// Handles one stream message; an error ends the stream with that status.
fn handle_stream_message(
    device: &Device,
    stream: StreamId,
    tx: &StreamSender,
    message: StreamMessageRequest,
) -> Result<(), Status> {
    use stream_message_request::Update;
    match message.update {
        Some(Update::Arbitration(update)) => arbitrate(device, stream, tx, update),
        Some(Update::Packet(packet)) => {
            let primary = device.sessions().arbitration.primary() == Some(stream);
            let result = if primary {
                device.packet_out(&packet)
            } else {
                Err(EntityError::new(
                    Code::PermissionDenied,
                    "only the primary controller may send packets",
                ))
            };
            if let Err(e) = result {
                stream_error(
                    tx,
                    e,
                    stream_error::Details::PacketOut(PacketOutError {
                        packet_out: Some(packet),
                    }),
                );
            }
            Ok(())
        }
        Some(Update::DigestAck(ack)) => {
            stream_error(
                tx,
                EntityError::new(Code::Unimplemented, "this switch has no digests"),
                stream_error::Details::DigestListAck(crate::p4rt::v1::DigestListAckError {
                    digest_list_ack: Some(ack),
                }),
            );
            Ok(())
        }
        Some(Update::Other(other)) => {
            stream_error(
                tx,
                EntityError::new(
                    Code::Unimplemented,
                    format!("stream message `{}` is not supported", other.type_url),
                ),
                stream_error::Details::Other(StreamOtherError { other: Some(other) }),
            );
            Ok(())
        }
        None => {
            stream_error(
                tx,
                EntityError::new(Code::InvalidArgument, "empty stream message"),
                stream_error::Details::Other(StreamOtherError { other: None }),
            );
            Ok(())
        }
    }
}

/// Reports a failed stream request on the stream (best effort: dropped if the stream is full).
fn stream_error(tx: &StreamSender, e: EntityError, details: stream_error::Details) {
    let message = StreamMessageResponse {
        update: Some(stream_message_response::Update::Error(StreamError {
            canonical_code: code_number(e.code),
            message: e.message,
            details: Some(details),
            ..StreamError::default()
        })),
    };
    let _ = tx.try_send(Ok(message));
}

fn arbitrate(
    device: &Device,
    stream: StreamId,
    tx: &StreamSender,
    update: MasterArbitrationUpdate,
) -> Result<(), Status> {
    if let Some(role) = &update.role {
        if !role.name.is_empty() || role.id != 0 {
            return Err(Status::unimplemented(format!(
                "role `{}` (id {}): this switch supports only the default role",
                role.name, role.id
            )));
        }
        if role.config.is_some() {
            return Err(Status::invalid_argument(
                "role configs are not supported: leave role.config unset",
            ));
        }
    }
    // Lock order: pipeline, then sessions (a primary change waits for a Write in flight).
    let _pipeline = device.pipeline();
    let mut sessions = device.sessions();
    let live = sessions.arbitration.is_live(stream);
    if update.device_id != device.device_id {
        let message = format!(
            "no device {}: this switch is device {}",
            update.device_id, device.device_id
        );
        return Err(if live {
            Status::failed_precondition(message)
        } else {
            Status::not_found(message)
        });
    }
    let notes = sessions
        .arbitration
        .update(stream, update.election_id.as_ref().map(election_id))
        .map_err(|e| match e {
            ArbitrationError::DuplicateElectionId(_) => Status::invalid_argument(e.to_string()),
        })?;
    if !live {
        sessions.add_sender(stream, tx.clone());
    }
    sessions.deliver(notes);
    Ok(())
}

fn stream_closed(device: &Device, stream: StreamId) {
    let _pipeline = device.pipeline();
    let mut sessions = device.sessions();
    let notes = sessions.arbitration.leave(stream);
    sessions.remove_sender(stream);
    sessions.deliver(notes);
}
