//! A small client of the controller's HTTP API (`GET /api/...`, JSON), for the demo that runs
//! the controller as another process: plain HTTP/1.1 over hyper, one connection per request,
//! every request bounded in time.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// Largest answer read (the graph of the reference topology is a few tens of kB).
const MAX_BODY: usize = 64 << 20;
/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
#[error("GET http://{addr}{path}: {problem}")]
pub struct ApiClientError {
    pub addr: SocketAddr,
    pub path: String,
    pub problem: String,
    /// The HTTP status, when the controller answered.
    pub status: Option<u16>,
}

/// The controller's API at one address.
#[derive(Debug, Clone, Copy)]
pub struct ApiClient {
    pub addr: SocketAddr,
}

impl ApiClient {
    /// `GET path`, its JSON answer decoded as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiClientError> {
        let error = |problem: String, status: Option<u16>| ApiClientError {
            addr: self.addr,
            path: path.to_string(),
            problem,
            status,
        };
        let (status, body) = tokio::time::timeout(TIMEOUT, self.fetch(path))
            .await
            .map_err(|_| error(format!("no answer within {TIMEOUT:?}"), None))?
            .map_err(|problem| error(problem, None))?;
        if status != 200 {
            let text = String::from_utf8_lossy(&body).into_owned();
            return Err(error(format!("answered {status}: {text}"), Some(status)));
        }
        serde_json::from_slice(&body)
            .map_err(|err| error(format!("unexpected answer: {err}"), Some(status)))
    }

    async fn fetch(&self, path: &str) -> Result<(u16, Bytes), String> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|err| format!("cannot connect: {err}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| format!("HTTP handshake failed: {err}"))?;
        let driver = tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|err| format!("cannot build the request: {err}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| format!("request failed: {err}"))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|err| format!("reading the answer failed: {err}"))?
            .to_bytes();
        driver.abort();
        Ok((status, body))
    }
}
