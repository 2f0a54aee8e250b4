//! `vmdep graph`: asks a running controller's HTTP API for the dependency graph and prints it as
//! a table, JSON or Graphviz DOT. Plain HTTP/1.1 over hyper (already in the tree through axum and
//! tonic): the API is meant for loopback or a trusted management network.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use vmdep::controller::graph::GraphSnapshot;

#[derive(Args)]
pub struct GraphArgs {
    /// The controller's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub controller: String,
    /// Only edges seen from this time on (Unix ms); older ranges come from the history.
    #[arg(long)]
    pub from: Option<u64>,
    /// Only edges seen up to this time (Unix ms).
    #[arg(long)]
    pub to: Option<u64>,
    /// Only the edges of the last window (seen since the one before it ended).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub last_window: bool,
    /// Print the API's JSON.
    #[arg(long, conflicts_with = "dot")]
    pub json: bool,
    /// Print Graphviz DOT.
    #[arg(long)]
    pub dot: bool,
    /// How long to wait for the controller.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    pub timeout: Duration,
}

/// The answer of `/api/graph`: the graph and where it came from.
#[derive(Deserialize)]
struct GraphAnswer {
    source: String,
    #[serde(flatten)]
    graph: GraphSnapshot,
}

/// Largest answer read (a graph of tens of thousands of edges fits).
const MAX_BODY: usize = 256 * 1024 * 1024;

pub async fn run(args: GraphArgs) -> anyhow::Result<()> {
    let base = args.controller.trim_end_matches('/');
    let mut query = Vec::new();
    if let Some(from) = args.from {
        query.push(format!("from={from}"));
    }
    if let Some(to) = args.to {
        query.push(format!("to={to}"));
    }
    if args.last_window {
        query.push("window=last".into());
    }
    let url = if query.is_empty() {
        format!("{base}/api/graph")
    } else {
        format!("{base}/api/graph?{}", query.join("&"))
    };
    let body = tokio::time::timeout(args.timeout, get(&url))
        .await
        .map_err(|_| {
            anyhow!(
                "the controller at {} did not answer within {:?}",
                args.controller,
                args.timeout
            )
        })??;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let answer: GraphAnswer = serde_json::from_str(&body)
        .with_context(|| format!("{url} did not answer with a vmdep graph"))?;
    if args.dot {
        print!("{}", answer.graph.to_dot());
    } else {
        print!("{}", table(&answer));
    }
    Ok(())
}

/// GET `url`; the body of a 200 answer, an error naming the status and the API's message else.
async fn get(url: &str) -> anyhow::Result<String> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("{url} is not a URL (e.g. http://127.0.0.1:8080)"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => bail!("{url}: only http:// is supported, not {other}://"),
        None => bail!("{url}: give the scheme, e.g. http://127.0.0.1:8080"),
    }
    let host = uri
        .host()
        .ok_or_else(|| anyhow!("{url} names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .with_context(|| {
            format!("cannot reach the controller at {host}:{port} (is `vmdep controller` running with --http-listen there?)")
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP handshake with {host}:{port} failed"))?;
    let driver = tokio::spawn(connection);
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_else(|| format!("{host}:{port}"));
    let request = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .context("cannot build the request")?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("GET {url} failed"))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|err| anyhow!("reading the answer of {url} failed: {err}"))?
        .to_bytes();
    driver.abort();
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| anyhow!("{url} answered with a body that is not UTF-8"))?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or(text);
        bail!("{url} answered {status}: {message}");
    }
    Ok(text)
}

/// One line per edge: pair, protocols, traffic (exact, or ~estimate ± bound), who counts it.
fn table(answer: &GraphAnswer) -> String {
    let g = &answer.graph;
    let mut out = format!(
        "{} VMs, {} dependencies (from {})\n",
        g.nodes.len(),
        g.edges.len(),
        answer.source
    );
    out.push_str(&format!(
        "{:<24} {:<16} {:>12} {:>14}  {}\n",
        "pair", "protocols", "packets", "bytes", "measured by"
    ));
    for e in &g.edges {
        let pair = format!("{} -> {}", e.src_vm, e.dst_vm);
        let protocols = if e.labels.is_empty() {
            "-".to_string()
        } else {
            let mut p: Vec<&str> = e.labels.iter().map(|l| l.protocol.as_str()).collect();
            p.dedup();
            p.join(",")
        };
        let (packets, bytes, by) = match (&e.exact, &e.estimate) {
            (Some(x), _) => (
                x.packets.to_string(),
                x.bytes.to_string(),
                x.measured_by.clone(),
            ),
            (None, Some(s)) => (
                format!("~{}", s.packets),
                format!("~{}", s.bytes),
                match s.error_percent {
                    Some(bound) => format!("sampled (±{bound:.0}%)"),
                    None => "sampled".to_string(),
                },
            ),
            (None, None) => ("-".into(), "-".into(), "-".into()),
        };
        out.push_str(&format!(
            "{pair:<24} {protocols:<16} {packets:>12} {bytes:>14}  {by}\n"
        ));
    }
    out
}
