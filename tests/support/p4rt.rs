//! A P4Runtime controller's side of a switch's gRPC server, for the tests that drive one with
//! tonic: the arbitration stream, pipeline pushes, and p4c's outputs for the reference programs.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

use vmdep::p4rt::config::P4Info;
use vmdep::p4rt::p4info_from_text;
use vmdep::p4rt::v1::p4_runtime_client::P4RuntimeClient;
use vmdep::p4rt::v1::*;

/// How long a stream message may take to arrive.
pub const STREAM_WAIT: Duration = Duration::from_secs(10);

/// p4c's outputs (bmv2 JSON, P4Info text) for the reference programs.
pub const P4C_OUT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/p4c-reference/p4c-out"
);

/// p4c's P4Info text for `program`, and the message it holds.
pub fn p4c_p4info(program: &str) -> (String, P4Info) {
    let path = format!("{P4C_OUT}/{program}.p4info.txtpb");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let message = p4info_from_text(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    (text, message)
}

/// p4c's P4Info and bmv2 JSON for `program`: the pipeline a controller pushes.
pub fn p4c_pipeline(program: &str) -> (P4Info, Vec<u8>) {
    let (_, p4info) = p4c_p4info(program);
    let path = format!("{P4C_OUT}/{program}.json");
    let json = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (p4info, json)
}

/// An election id (P4Runtime's 128-bit integer) below 2^64.
pub fn uint128(low: u64) -> Uint128 {
    Uint128 { high: 0, low }
}

/// The stream message that asks for `election_id` on `device_id` (default role).
pub fn arbitration(device_id: u64, election_id: u64) -> StreamMessageRequest {
    StreamMessageRequest {
        update: Some(stream_message_request::Update::Arbitration(
            MasterArbitrationUpdate {
                device_id,
                election_id: Some(uint128(election_id)),
                ..Default::default()
            },
        )),
    }
}

/// A SetForwardingPipelineConfig request from `election_id` on `device_id`.
pub fn set_pipeline_request(
    device_id: u64,
    election_id: u64,
    action: set_forwarding_pipeline_config_request::Action,
    config: Option<ForwardingPipelineConfig>,
) -> SetForwardingPipelineConfigRequest {
    SetForwardingPipelineConfigRequest {
        device_id,
        election_id: Some(uint128(election_id)),
        action: action as i32,
        config,
        ..Default::default()
    }
}

/// A controller's stream: send arbitration and packets, receive responses. The switch counts
/// the controller as connected while this lives.
pub struct Controller {
    pub tx: mpsc::Sender<StreamMessageRequest>,
    pub rx: Streaming<StreamMessageResponse>,
}

impl Controller {
    pub async fn open(client: &mut P4RuntimeClient<Channel>) -> Controller {
        let (tx, rx) = mpsc::channel(16);
        let rx = client
            .stream_channel(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Controller { tx, rx }
    }

    pub async fn next(&mut self) -> Result<StreamMessageResponse, tonic::Status> {
        match tokio::time::timeout(STREAM_WAIT, self.rx.message()).await {
            Ok(Ok(Some(m))) => Ok(m),
            Ok(Ok(None)) => panic!("stream ended"),
            Ok(Err(status)) => Err(status),
            Err(_) => panic!("no stream message within {STREAM_WAIT:?}"),
        }
    }

    /// The next arbitration update's status code.
    pub async fn arbitration_code(&mut self) -> i32 {
        match self.next().await.unwrap().update {
            Some(stream_message_response::Update::Arbitration(a)) => a.status.unwrap().code,
            other => panic!("expected an arbitration update, got {other:?}"),
        }
    }

    /// Joins `device_id` with `election_id` and returns the status code of the answer.
    pub async fn join(
        client: &mut P4RuntimeClient<Channel>,
        device_id: u64,
        election_id: u64,
    ) -> (Controller, i32) {
        let mut c = Controller::open(client).await;
        c.tx.send(arbitration(device_id, election_id))
            .await
            .unwrap();
        let code = c.arbitration_code().await;
        (c, code)
    }
}
