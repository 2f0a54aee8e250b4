//! The controller's HTTP API over real HTTP, against a real controller driving the reference
//! topology's five in-process switches (as in controller_service.rs, this test plays the servers):
//! every endpoint's answer is checked against the OpenAPI description and its shape snapshotted,
//! /metrics is parsed as Prometheus text, `vmdep graph` is run against the API, and the history
//! is written, the controller restarted, and the history read back.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use vmdep::controller::api::{self, RunningApi, OPENAPI_JSON};
use vmdep::controller::history::{HistoryRecorder, HistoryStore};
use vmdep::controller::service::{self, RunningController};
use vmdep::controller::topology::Topology;
use vmdep::demo::emulated::REFERENCE_TOPOLOGY;
use vmdep::sflow::{
    Address, CounterRecordRepr, CountersSampleRepr, DataSource, DatagramRepr, IfCounters,
    SampleRepr,
};

mod support;

use support::fabric::{
    flow_samples as samples, packets_policy, send_frames, send_sflow, start_reference_fabric,
    test_controller_options, wait_until_switches_ready,
};
use support::process::{assert_stops_on_sigterm, vmdep_command};
use support::programs::{compiled_pipeline, VMDEP_P4};

/// One sFlow datagram from `server`'s agent with the generic counters of its interface 1.
fn counters(topology: &Topology, server: &str) -> Vec<u8> {
    let IpAddr::V4(agent) = topology
        .server(topology.server_id(server).unwrap())
        .sflow_agent
    else {
        panic!("IPv4 agents only")
    };
    DatagramRepr {
        agent: Address::Ipv4(agent),
        sub_agent_id: 0,
        sequence_number: 1,
        uptime_ms: 1000,
        samples: vec![SampleRepr::Counters(CountersSampleRepr {
            expanded: false,
            sequence_number: 1,
            source: DataSource { kind: 0, index: 1 },
            records: vec![CounterRecordRepr::Interface(IfCounters {
                if_index: 1,
                if_type: 6,
                if_speed: 10_000_000_000,
                if_direction: 1,
                if_status: 3,
                if_in_octets: 123_456,
                if_in_ucast_pkts: 789,
                if_out_octets: 654_321,
                if_out_ucast_pkts: 987,
                ..IfCounters::default()
            })],
        })],
    }
    .to_bytes()
    .unwrap()
}

/// A controller with its history and API.
struct Served {
    controller: RunningController,
    recorder: HistoryRecorder,
    api: RunningApi,
}

async fn serve(topology: Arc<Topology>, history: &Path) -> Served {
    let options = test_controller_options(
        topology,
        compiled_pipeline(VMDEP_P4),
        packets_policy(100, 10),
    );
    let controller = service::start(options).await.expect("controller starts");
    let store = Arc::new(HistoryStore::open(history, None).expect("history opens"));
    let recorder = HistoryRecorder::start(store.clone(), &controller);
    let api = api::serve(
        "127.0.0.1:0".parse().unwrap(),
        controller.view(),
        Some(store),
    )
    .await
    .expect("API starts");
    Served {
        controller,
        recorder,
        api,
    }
}

impl Served {
    async fn stop(self) {
        self.api.shutdown().await;
        self.controller.shutdown().await.unwrap();
        self.recorder.shutdown().await;
    }
}

/// Server h120 over the host link: an exact count of a pair on it (web1 → client1) and a DPI
/// label of web1 → app1. The link stays open while the answer lives.
async fn play_host_h120(served: &Served, t: &Topology) -> tokio::net::TcpStream {
    use vmdep::hostlink::{self, AppLabel, HostMessage, LocalPairCount};
    let ip = |vm: &str| t.vm(t.vm_id(vm).unwrap()).ipv4;
    let mut link = tokio::net::TcpStream::connect(served.controller.hostlink_addr)
        .await
        .unwrap();
    let messages = [
        HostMessage::Hello {
            server: "h120".into(),
            version: hostlink::VERSION,
        },
        HostMessage::LocalCounts {
            at_ms: 1,
            pairs: vec![LocalPairCount {
                src: ip("web1"),
                dst: ip("client1"),
                packets: 7,
                bytes: 700,
            }],
        },
        HostMessage::Labels {
            at_ms: 1,
            labels: vec![AppLabel {
                protocol: "http".into(),
                client: ip("web1"),
                server: ip("app1"),
                server_port: 8080,
                details: vec!["GET app1.dc.internal".into()],
                requests: 3,
                responses: 3,
                mean_response_ms: Some(2.5),
            }],
        },
    ];
    for message in &messages {
        hostlink::write_message(&mut link, message).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while served
        .controller
        .hosts()
        .get("h120")
        .is_none_or(|h| h.messages < 2)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "host messages not taken"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    link
}

/// GET over real HTTP/1.1: status, content type, body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    driver.abort();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, content_type, body) = get(addr, path).await;
    assert_eq!(content_type, "application/json", "{path}");
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, value)
}

/// Checks answers against the OpenAPI description's response schemas.
struct OpenApi {
    doc: Value,
    checked: BTreeSet<(String, String)>,
}

impl OpenApi {
    fn new() -> OpenApi {
        OpenApi {
            doc: serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON"),
            checked: BTreeSet::new(),
        }
    }

    /// How `value`, the answer of `path` with `status`, departs from the described schema.
    fn errors(&self, path: &str, status: u16, value: &Value) -> Vec<String> {
        let route = path.split('?').next().unwrap();
        let escaped = route.replace('~', "~0").replace('/', "~1");
        let pointer =
            format!("#/paths/{escaped}/get/responses/{status}/content/application~1json/schema");
        if self.doc.pointer(&pointer[1..]).is_none() {
            return vec![format!("{path} answered {status}, which is not described")];
        }
        // The whole document is the root, so the schema's $refs resolve inside it.
        let schema = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": pointer,
            "paths": self.doc["paths"],
            "components": self.doc["components"],
        });
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
        validator
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    /// `value`, the answer of `path` with `status`, matches the described schema.
    fn check(&mut self, path: &str, status: u16, value: &Value) {
        let errors = self.errors(path, status, value);
        assert!(
            errors.is_empty(),
            "{path} ({status}) does not match its OpenAPI schema:\n{}\n{value:#}",
            errors.join("\n")
        );
        let route = path.split('?').next().unwrap();
        self.checked.insert((route.to_string(), status.to_string()));
    }

    /// Every described path was answered and checked with at least one status.
    fn assert_all_paths_checked(&self, except: &[&str]) {
        let documented: BTreeSet<String> = self.doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let checked: BTreeSet<String> = self.checked.iter().map(|(p, _)| p.clone()).collect();
        let missing: Vec<&String> = documented
            .iter()
            .filter(|p| !checked.contains(*p) && !except.contains(&p.as_str()))
            .collect();
        assert!(missing.is_empty(), "not checked: {missing:?}");
    }
}

/// Times and rates vary from run to run: replaced, so the snapshots show the shapes and the
/// counts.
fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let timed = (key.ends_with("_ms") && key != "mean_response_ms")
                    || key == "pps"
                    || key == "bps";
                // Zero (never) and null stay: they tell something.
                if timed && !v.is_null() && *v != 0 {
                    *v = Value::String("[redacted]".into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[test]
fn the_openapi_check_catches_undocumented_and_missing_fields() {
    let openapi = OpenApi::new();
    let health = serde_json::json!({
        "status": "ok",
        "started_ms": 1,
        "sessions": [{
            "switch": "s110", "ready": true, "connected": true, "primary": true,
            "pipeline_pushed": true, "connections": 1, "reconnections": 0, "last_error": null
        }]
    });
    assert_eq!(
        openapi.errors("/api/health", 200, &health),
        Vec::<String>::new()
    );
    let mut extra = health.clone();
    extra["sessions"][0]["uptime"] = 5.into();
    assert!(!openapi.errors("/api/health", 200, &extra).is_empty());
    let mut missing = health.clone();
    missing.as_object_mut().unwrap().remove("started_ms");
    assert!(!openapi.errors("/api/health", 200, &missing).is_empty());
    let mut wrong = health.clone();
    wrong["status"] = "fine".into();
    assert!(!openapi.errors("/api/health", 200, &wrong).is_empty());
    assert!(!openapi.errors("/api/health", 418, &health).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_as_described() {
    let (fabric, t) = start_reference_fabric().await;
    let dir = tempfile::tempdir().unwrap();
    let served = serve(t.clone(), &dir.path().join("history.sqlite")).await;
    let addr = served.api.addr;
    let mut openapi = OpenApi::new();

    // Before any window.
    let (status, last) = get_json(addr, "/api/windows/last").await;
    assert_eq!(status, 404);
    openapi.check("/api/windows/last", status, &last);

    wait_until_switches_ready(&served.controller).await;
    send_sflow(
        &served.controller,
        &[
            samples(&t, "h120", "web1", "app1", 10),
            samples(&t, "h121", "client2", "web1", 5),
            samples(&t, "h121", "batch1", "db2", 1),
            counters(&t, "h122"),
        ],
    )
    .await;
    served.controller.step_window().await;
    send_frames(&fabric, &t, "web1", "app1", &[10, 200, 1000]).await;
    send_frames(&fabric, &t, "client2", "web1", &[300]).await;
    let _host_link = play_host_h120(&served, &t).await;
    let window = served.controller.step_window().await;
    assert!(window.errors.is_empty(), "{:?}", window.errors);

    let endpoints = [
        "/api/health",
        "/api/graph",
        "/api/pairs",
        "/api/switches",
        "/api/placements",
        "/api/labels",
        "/api/hosts",
        "/api/collector",
        "/api/windows",
        "/api/windows/last",
        "/api/topology",
        "/api/status",
    ];
    for path in endpoints {
        let (status, mut value) = get_json(addr, path).await;
        assert_eq!(status, 200, "{path}: {value}");
        openapi.check(path, status, &value);
        redact(&mut value);
        let name = path.trim_start_matches("/api/").replace('/', "_");
        insta::assert_json_snapshot!(name, value);
    }

    // Exact counts over HTTP are the frames sent after the entries went in.
    let (_, graph) = get_json(addr, "/api/graph").await;
    let web = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["src_vm"] == "web1" && e["dst_vm"] == "app1")
        .expect("web1 → app1");
    assert_eq!(web["exact"]["packets"], 3);
    assert_eq!(web["exact"]["measured_by"], "s112");

    // A range inside this controller's life comes from memory; edges last seen before it
    // are left out.
    let now = vmdep::controller::service::unix_ms();
    let started = served.controller.started_ms();
    let (status, ranged) = get_json(addr, &format!("/api/graph?from={started}&to={now}")).await;
    assert_eq!(status, 200);
    openapi.check("/api/graph", status, &ranged);
    assert_eq!(ranged["source"], "memory");
    assert_eq!(ranged["edges"].as_array().unwrap().len(), 4);
    // The last window: what it sampled and read, and what the server reported since the first;
    // batch1 → db2 was sampled in the first window only.
    let (status, last) = get_json(addr, "/api/graph?window=last").await;
    assert_eq!(status, 200);
    openapi.check("/api/graph", status, &last);
    let pairs: Vec<(&str, &str)> = last["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["src_vm"].as_str().unwrap(), e["dst_vm"].as_str().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [("client2", "web1"), ("web1", "app1"), ("web1", "client1")]
    );
    let later = format!("/api/graph?from={}&to={}", now + 60_000, now + 120_000);
    let (_, ranged) = get_json(addr, &later).await;
    assert_eq!(ranged["edges"].as_array().unwrap().len(), 0);

    // Bad queries are refused in the described error shape.
    for bad in [
        "/api/graph?from=10&to=5",
        "/api/graph?from=yesterday",
        "/api/graph?since=5",
        "/api/graph?window=first",
        "/api/graph?window=last&from=5",
        "/api/history/pairs?from=-1",
    ] {
        let (status, value) = get_json(addr, bad).await;
        assert_eq!(status, 400, "{bad}: {value}");
        openapi.check(bad, status, &value);
    }
    let (status, value) = get_json(addr, "/api/nothing").await;
    assert_eq!(status, 404);
    assert!(value["error"].is_string());

    // The history holds both windows (the recorder writes each shortly after it ends).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (status, history) = loop {
        let (status, history) = get_json(addr, "/api/history/pairs?from=0").await;
        let rows = history["pairs"].as_array().unwrap();
        if rows.iter().any(|r| r["window_index"] == 2) {
            break (status, history);
        }
        assert!(tokio::time::Instant::now() < deadline, "{history}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 200);
    openapi.check("/api/history/pairs", status, &history);
    let rows = history["pairs"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["window_index"] == 2
        && r["src_vm"] == "web1"
        && r["exact"]["packets"] == 3
        && r["placed_on"] == "s112"));
    let (_, limited) = get_json(addr, "/api/history/pairs?from=0&limit=1").await;
    assert_eq!(limited["pairs"].as_array().unwrap().len(), 1);
    assert_eq!(limited["truncated"], true);

    check_window_graphs(&served, &mut openapi, rows).await;
    check_page(addr, &mut openapi).await;

    let (status, content_type, body) = get(addr, "/api/openapi.json").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), openapi.doc);
    openapi
        .checked
        .insert(("/api/openapi.json".into(), "200".into()));

    check_metrics(addr, &served).await;
    openapi.assert_all_paths_checked(&["/metrics"]);
    check_topology_and_status(addr, &served).await;

    check_graph_command(addr).await;

    served.stop().await;
    fabric.shutdown().await;
}

/// `/api/graph?window=N`: from the history, the pairs it recorded for window N; without a
/// history, the edges the live graph saw in that window's time; unknown windows are 404.
async fn check_window_graphs(served: &Served, openapi: &mut OpenApi, history_rows: &[Value]) {
    let addr = served.api.addr;
    let pairs_of = |graph: &Value| -> Vec<(String, String)> {
        graph["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["src_vm"].as_str().unwrap().into(),
                    e["dst_vm"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    for index in [1, 2] {
        let path = format!("/api/graph?window={index}");
        let (status, graph) = get_json(addr, &path).await;
        assert_eq!(status, 200, "{path}: {graph}");
        openapi.check(&path, status, &graph);
        assert_eq!(graph["source"], "history");
        let mut recorded: Vec<(String, String)> = history_rows
            .iter()
            .filter(|r| r["window_index"] == index)
            .map(|r| {
                (
                    r["src_vm"].as_str().unwrap().into(),
                    r["dst_vm"].as_str().unwrap().into(),
                )
            })
            .collect();
        recorded.sort();
        assert!(!recorded.is_empty());
        assert_eq!(pairs_of(&graph), recorded, "{path}");
    }
    // Window 2's exact reading of web1 → app1 is the one taken in it.
    let (_, second) = get_json(addr, "/api/graph?window=2").await;
    let web = second["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["src_vm"] == "web1" && e["dst_vm"] == "app1")
        .expect("web1 → app1 in window 2");
    assert_eq!(web["exact"]["packets"], 3);
    assert_eq!(web["exact"]["measured_by"], "s112");

    for (bad, want) in [
        ("/api/graph?window=3", 404),
        ("/api/graph?window=0", 404),
        ("/api/graph?window=-1", 400),
        ("/api/graph?window=2&to=5", 400),
    ] {
        let (status, value) = get_json(addr, bad).await;
        assert_eq!(status, want, "{bad}: {value}");
        openapi.check(bad, status, &value);
    }

    // The same controller without a history: the window's time range of the live graph.
    let memory = api::serve(
        "127.0.0.1:0".parse().unwrap(),
        served.controller.view(),
        None,
    )
    .await
    .expect("API starts");
    let windows = served.controller.view().recent_windows();
    let (status, graph) = get_json(memory.addr, "/api/graph?window=2").await;
    assert_eq!(status, 200, "{graph}");
    openapi.check("/api/graph", status, &graph);
    assert_eq!(graph["source"], "memory");
    assert_eq!(graph["from_ms"], windows[0].at_ms + 1);
    assert_eq!(graph["to_ms"], windows[1].at_ms);
    let range = format!(
        "/api/graph?from={}&to={}",
        windows[0].at_ms + 1,
        windows[1].at_ms
    );
    let (_, ranged) = get_json(memory.addr, &range).await;
    assert_eq!(graph["edges"], ranged["edges"]);
    assert!(!pairs_of(&graph).is_empty());
    memory.shutdown().await;
}

/// The web page and its assets, with their content types; the page names its assets relatively,
/// so that it works under a path prefix too.
async fn check_page(addr: SocketAddr, openapi: &mut OpenApi) {
    let (status, content_type, html) = get(addr, "/").await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/html; charset=utf-8")
    );
    assert!(html.contains(r#"<script src="assets/main.js">"#), "{html}");
    assert!(html.contains(r#"href="assets/main.css""#), "{html}");
    for (path, want) in [
        ("/assets/main.js", "text/javascript; charset=utf-8"),
        ("/assets/main.css", "text/css; charset=utf-8"),
    ] {
        let (status, content_type, body) = get(addr, path).await;
        assert_eq!((status, content_type.as_str()), (200, want), "{path}");
        assert!(
            body.len() > 1000,
            "{path} is the built file: {} bytes",
            body.len()
        );
    }
    let (_, _, script) = get(addr, "/assets/main.js").await;
    assert!(
        script.contains("graph?window=") && script.contains("cytoscape"),
        "the bundle is the page's, with cytoscape"
    );
    for path in ["/", "/assets/main.js", "/assets/main.css"] {
        let documented = openapi.doc["paths"][path]["get"]["responses"]["200"].is_object();
        assert!(documented, "{path} is described");
        openapi.checked.insert((path.into(), "200".into()));
    }
}

/// /api/topology agrees with the topology and /api/switches; /api/status with the controller.
async fn check_topology_and_status(addr: SocketAddr, served: &Served) {
    let (_, topology) = get_json(addr, "/api/topology").await;
    let t = served.controller.view().topology().clone();
    let names = |key: &str| -> Vec<String> {
        topology[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    };
    let switches: Vec<String> = t.switches().iter().map(|s| s.name.clone()).collect();
    assert_eq!(names("switches"), switches);
    assert_eq!(topology["links"].as_array().unwrap().len(), t.links().len());
    let servers: Vec<String> = t.servers().iter().map(|s| s.name.clone()).collect();
    assert_eq!(names("servers"), servers);
    let vms: usize = topology["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["vms"].as_array().unwrap().len())
        .sum();
    assert_eq!(vms, t.vms().len());
    let (_, switch_answer) = get_json(addr, "/api/switches").await;
    assert_eq!(topology["switches"], switch_answer);

    let (_, status) = get_json(addr, "/api/status").await;
    assert_eq!(status["started_ms"], served.controller.started_ms());
    assert_eq!(status["last_window"]["index"], 2);
    assert_eq!(status["switches_ready"], 5);
    assert_eq!(status["servers_connected"], 1);
    assert_eq!(status["history"], true);
}

/// /metrics parses as Prometheus text, declares every family it uses, and agrees with the JSON.
async fn check_metrics(addr: SocketAddr, served: &Served) {
    let (status, content_type, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");

    // Every sample belongs to a family declared with # TYPE before it.
    let mut declared: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            declared.push((name.to_string(), kind.to_string()));
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = declared.iter().rev().find(|(f, kind)| {
                let suffixes: &[&str] = match kind.as_str() {
                    "summary" => &["_sum", "_count"],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    _ => &[],
                };
                name == f || suffixes.iter().any(|s| name == format!("{f}{s}"))
            });
            assert!(family.is_some(), "{name} has no # TYPE before it");
        }
    }

    let value = |metric: &str, labels: &[(&str, &str)]| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {metric} {labels:?}"));
        match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{metric}: {other:?}"),
        }
    };
    let stats = served.controller.collector_stats();
    assert_eq!(
        value("vmdep_sflow_datagrams_total", &[]),
        stats.datagrams as f64
    );
    assert_eq!(
        value("vmdep_sflow_pair_samples_total", &[]),
        stats.pair_samples as f64
    );
    assert_eq!(
        value("vmdep_sflow_samples_dropped_total", &[("reason", "not_vm")]),
        0.0
    );
    assert_eq!(value("vmdep_windows_total", &[]), 2.0);
    assert_eq!(value("vmdep_window_samples_total", &[]), 16.0);
    assert_eq!(value("vmdep_pairs_selected_total", &[]), 2.0);
    assert_eq!(value("vmdep_pairs_measured", &[]), 2.0);
    assert_eq!(value("vmdep_pairs_sampled", &[]), 0.0);
    for s in served.controller.switches().await {
        let labels = [("switch", s.name.as_str())];
        assert_eq!(value("vmdep_switch_entries", &labels), f64::from(s.entries));
        assert_eq!(
            value("vmdep_switch_capacity", &labels),
            f64::from(s.capacity)
        );
        assert_eq!(value("vmdep_p4runtime_session_ready", &labels), 1.0);
        let writes = value(
            "vmdep_p4runtime_rpc_duration_seconds_count",
            &[("switch", s.name.as_str()), ("rpc", "write")],
        );
        assert!(writes >= 1.0, "{}: routes were written", s.name);
        // The latency histogram's buckets are cumulative and end with every call.
        let histogram = scrape
            .samples
            .iter()
            .find(|x| {
                x.metric == "vmdep_p4runtime_rpc_duration_seconds"
                    && x.labels.get("switch") == Some(s.name.as_str())
                    && x.labels.get("rpc") == Some("write")
            })
            .expect("a write latency histogram");
        let prometheus_parse::Value::Histogram(buckets) = &histogram.value else {
            panic!("{histogram:?}");
        };
        assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
        let last = buckets.last().unwrap();
        assert_eq!((last.less_than, last.count), (f64::INFINITY, writes));
        assert_eq!(
            value(
                "vmdep_p4runtime_rpc_errors_total",
                &[("switch", s.name.as_str()), ("rpc", "write")]
            ),
            0.0
        );
    }
    assert_eq!(
        value("vmdep_hostlink_messages_total", &[("server", "h120")]),
        2.0
    );
    assert_eq!(
        value("vmdep_hostlink_connected", &[("server", "h120")]),
        1.0
    );
    assert_eq!(
        value("vmdep_hostlink_connected", &[("server", "h121")]),
        0.0
    );
    assert_eq!(value("vmdep_history_windows_recorded_total", &[]), 2.0);
}

/// `vmdep graph` against the API: a table, JSON, DOT, and clear failures.
async fn check_graph_command(addr: SocketAddr) {
    let url = format!("http://{addr}");
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || vmdep_command().args(args).output().unwrap())
    };
    let table = run(vec!["graph".into(), "--controller".into(), url.clone()])
        .await
        .unwrap();
    assert!(table.status.success(), "{table:?}");
    insta::assert_snapshot!("graph_table", String::from_utf8(table.stdout).unwrap());

    let json = run(vec![
        "graph".into(),
        "--controller".into(),
        url.clone(),
        "--json".into(),
    ])
    .await
    .unwrap();
    assert!(json.status.success());
    let printed: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(printed["edges"].as_array().unwrap().len(), 4);

    let dot = run(vec![
        "graph".into(),
        "--controller".into(),
        url.clone(),
        "--dot".into(),
    ])
    .await
    .unwrap();
    assert!(dot.status.success());
    let dot = String::from_utf8(dot.stdout).unwrap();
    assert!(dot.starts_with("digraph vmdep {"), "{dot}");
    assert!(dot.contains("\"web1\" -> \"app1\""), "{dot}");

    let last = run(vec![
        "graph".into(),
        "--controller".into(),
        url.clone(),
        "--last-window".into(),
    ])
    .await
    .unwrap();
    assert!(last.status.success());
    let last = String::from_utf8(last.stdout).unwrap();
    assert!(last.starts_with("12 VMs, 3 dependencies"), "{last}");

    // Nobody listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let unreachable = run(vec![
        "graph".into(),
        "--controller".into(),
        format!("http://{closed_addr}"),
    ])
    .await
    .unwrap();
    assert!(!unreachable.status.success());
    let stderr = String::from_utf8(unreachable.stderr).unwrap();
    assert!(stderr.contains("cannot reach the controller"), "{stderr}");

    let refused = run(vec![
        "graph".into(),
        "--controller".into(),
        url,
        "--from".into(),
        "10".into(),
        "--to".into(),
        "5".into(),
    ])
    .await
    .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(
        stderr.contains("400 Bad Request") && stderr.contains("from (10) is after to (5)"),
        "{stderr}"
    );

    let https = run(vec![
        "graph".into(),
        "--controller".into(),
        "https://127.0.0.1:1".into(),
    ])
    .await
    .unwrap();
    assert!(!https.status.success());
    assert!(String::from_utf8(https.stderr)
        .unwrap()
        .contains("only http:// is supported"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_survives_a_restart() {
    let (fabric, t) = start_reference_fabric().await;
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.sqlite");

    let first = serve(t.clone(), &history).await;
    wait_until_switches_ready(&first.controller).await;
    send_sflow(
        &first.controller,
        &[samples(&t, "h120", "web1", "app1", 10)],
    )
    .await;
    first.controller.step_window().await;
    send_frames(&fabric, &t, "web1", "app1", &[100, 100]).await;
    first.controller.step_window().await;
    let first_started = first.controller.started_ms();
    first.stop().await;
    // The second controller finds no switch: its health says so, its history still answers.
    fabric.shutdown().await;
    tokio::time::sleep(Duration::from_millis(5)).await;

    let second = serve(t.clone(), &history).await;
    let addr = second.api.addr;
    let mut openapi = OpenApi::new();
    let (status, health) = get_json(addr, "/api/health").await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "degraded");
    openapi.check("/api/health", status, &health);

    let (status, graph) = get_json(addr, "/api/graph?from=0").await;
    assert_eq!(status, 200);
    openapi.check("/api/graph", status, &graph);
    assert_eq!(graph["source"], "history");
    let edges = graph["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{graph:#}");
    assert_eq!(edges[0]["exact"]["packets"], 2);
    assert_eq!(edges[0]["exact"]["measured_by"], "s112");
    assert_eq!(edges[0]["estimate"]["samples"], 10);

    let (_, rows) = get_json(addr, "/api/history/pairs").await;
    let rows = rows["pairs"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(rows.iter().all(|r| r["run_started_ms"] == first_started));

    // The live graph of the new controller is empty.
    let (_, live) = get_json(addr, "/api/graph").await;
    assert_eq!(live["source"], "memory");
    assert!(live["edges"].as_array().unwrap().is_empty());
    second.stop().await;
}

/// The reference topology with its switches' addresses where nothing listens (never at a switch
/// another test runs).
fn topology_without_switches() -> String {
    let closed: Vec<SocketAddr> = (0..5)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap())
        .collect();
    let mut text = REFERENCE_TOPOLOGY.to_string();
    for (i, addr) in closed.iter().enumerate() {
        text = text.replace(&format!("127.0.0.1:5011{i}"), &addr.to_string());
    }
    assert!(
        !text.contains("127.0.0.1:5011"),
        "every switch address replaced"
    );
    text
}

/// Whatever the query string, the API answers 200 or refuses with 400 in the described error
/// shape: never a server error, never a panic.
#[test]
fn arbitrary_queries_are_answered_or_refused() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let topology = Arc::new(Topology::from_toml(&topology_without_switches()).unwrap());
    let served = runtime.block_on(serve(topology, &dir.path().join("h.sqlite")));
    let addr = served.api.addr;
    let openapi = OpenApi::new();
    let mut runner = TestRunner::new(Config::with_cases(64));
    let queries = (
        prop::sample::select(vec!["/api/graph", "/api/history/pairs"]),
        "(window=(last|[0-9]{1,3}|[a-z0-9-]{0,5})&)?[a-z0-9=&+._-]{0,40}",
    );
    runner
        .run(&queries, |(endpoint, query)| {
            let path = format!("{endpoint}?{query}");
            let (status, value) = runtime.block_on(get_json(addr, &path));
            // window=N names no window: none ran on this controller.
            let no_window = status == 404 && endpoint == "/api/graph" && query.contains("window=");
            prop_assert!(
                status == 200 || status == 400 || no_window,
                "{path}: {status} {value}"
            );
            let errors = openapi.errors(&path, status, &value);
            prop_assert!(errors.is_empty(), "{path}: {errors:?}");
            Ok(())
        })
        .unwrap();
    runtime.block_on(served.stop());
}

/// `vmdep controller` binds the API where asked and stops cleanly on SIGTERM, having created
/// its history file.
#[test]
fn the_controller_command_serves_the_api_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let text = topology_without_switches();
    let topology = dir.path().join("topology.toml");
    std::fs::write(&topology, text).unwrap();
    let mut child = vmdep_command()
        .args(["controller", "--topology"])
        .arg(&topology)
        .args([
            "--sflow-listen",
            "127.0.0.1:0",
            "--hostlink-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "-o",
        ])
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("the controller prints its addresses")
            .unwrap();
        if let Some(rest) = line.split("HTTP on http://").nth(1) {
            break rest.split(',').next().unwrap().parse().unwrap();
        }
    };
    // Keep reading its log so that it never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.count());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (status, health) = runtime.block_on(get_json(addr, "/api/health"));
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["sessions"].as_array().unwrap().len(), 5);
    assert_stops_on_sigterm(&mut child, "vmdep controller", Duration::from_secs(20));
    drain.join().unwrap();
    assert!(dir.path().join("vmdep-history.sqlite").exists());
    assert!(dir.path().join("graph.json").exists());
}

/// `vmdep demo`'s API: served during the run with an in-memory history, and for `linger` after
/// the last window, when the graph holds the whole run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_the_api_while_it_runs() {
    use vmdep::demo::emulated::{self, DemoOptions};
    use vmdep::demo::workload::WorkloadSpec;

    let options = DemoOptions {
        workload: WorkloadSpec {
            duration: Duration::from_secs(3),
            seed: 7,
            scale: 1.0,
        },
        sampling_rate: 16,
        real_time: false,
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        linger: Duration::from_secs(5),
        ..DemoOptions::default()
    };
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let mut addr_tx = Some(addr_tx);
    let client = tokio::spawn(async move {
        let addr: SocketAddr = addr_rx.await.expect("the demo announces its API");
        // The demo's last window is its fourth (three workload windows and a final one).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, last) = get_json(addr, "/api/windows/last").await;
            if status == 200 && last["index"] == 4 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{last}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, graph) = get_json(addr, "/api/graph").await;
        // The history recorder writes each window shortly after it ends.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let history = loop {
            let (_, history) = get_json(addr, "/api/history/pairs?from=0").await;
            let rows = history["pairs"].as_array().unwrap();
            if rows.iter().any(|r| r["window_index"] == 4) {
                break history;
            }
            assert!(tokio::time::Instant::now() < deadline, "{history}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (status, health) = get_json(addr, "/api/health").await;
        (graph, history, status, health)
    });
    let report = emulated::run(options, |p| {
        if let (Some(tx), Some(addr)) = (addr_tx.take(), p.http_addr) {
            let _ = tx.send(addr);
        }
    })
    .await
    .expect("the demo runs");
    let (graph, history, status, health) = client.await.expect("the API answered");
    assert_eq!(status, 200, "{health}");

    // The API's graph is the one the report was made from.
    let measured: BTreeSet<(String, String, u64)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let packets = e["exact"]["packets"].as_u64()?;
            Some((
                e["src_vm"].as_str()?.to_string(),
                e["dst_vm"].as_str()?.to_string(),
                packets,
            ))
        })
        .collect();
    let reported: BTreeSet<(String, String, u64)> = report
        .pairs
        .iter()
        .filter_map(|p| Some((p.src.clone(), p.dst.clone(), p.exact_packets?)))
        .collect();
    assert!(!reported.is_empty());
    assert_eq!(measured, reported);
    assert!(!history["pairs"].as_array().unwrap().is_empty());
}
