//! The three-tier application: which VM calls which, on which port, with which protocol and how
//! often (the flows), when each flow starts its sessions (the flow clocks), and what one session
//! sends (the scripts). Protocol bytes come from the protocol modules, TCP segments from
//! [`super::tcp`].

use std::cmp::Ordering;

use rand::{Rng, RngExt};
use rand_chacha::ChaCha8Rng;

use super::tcp::{Side, TcpConn};
use super::{
    dns, http, mysql, ntp, postgres, redis, tls, AppProtocol, Body, Nanos, Note, Pending,
    Transport, VmEndpoint, VmIndex, VM_ROLES,
};
use crate::wire::UdpRepr;

const NS_PER_SEC: f64 = 1e9;
const US: Nanos = 1_000;
const MS: Nanos = 1_000_000;
/// No session starts, and no session begins a new exchange, later than this before the end of
/// the run; the longest exchange, its delayed ACK and the closing handshake fit in it.
const END_MARGIN: Nanos = 300 * MS;
/// Connections wait for the first DNS answers.
const WARMUP: Nanos = 100 * MS;
/// How long a DNS answer may be cached; callers ask again after it.
const DNS_TTL_SECONDS: u32 = 5;
/// Time between the chunks of the backup stream.
const BACKUP_CHUNK_INTERVAL: Nanos = 100 * MS;
pub(super) const BACKUP_CHUNK: usize = 16 * 1024;
const BACKUP_PORT: u16 = 9102;

/// A kind of session, with what its script needs.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    /// A browser-like client fetching pages over HTTP/1.1.
    Http,
    /// The same over TLS 1.3.
    Tls,
    /// A web server calling an application server's JSON API over HTTP/1.1.
    Api,
    Postgres,
    Redis,
    Mysql,
    /// Looks up the A records of these VMs.
    Dns {
        targets: Vec<VmIndex>,
    },
    /// The server streams opaque chunks to the client at a low rate.
    Backup,
    Ntp,
}

/// When a flow starts sessions.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Schedule {
    /// A Poisson process with this many sessions a second at scale 1, after the warm-up.
    Poisson(f64),
    /// One session every `period` seconds at scale 1 (±10 %), the first within `first` seconds.
    Periodic { period: f64, first: (f64, f64) },
}

/// One application dependency: a client VM calling a server VM's port.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Flow {
    pub client: VmIndex,
    pub server: VmIndex,
    pub port: u16,
    pub kind: Kind,
    schedule: Schedule,
    /// Multiplies this flow's service times, so that pairs of one kind differ.
    slowness: f64,
}

impl Flow {
    pub fn transport(&self) -> Transport {
        match self.kind {
            Kind::Dns { .. } | Kind::Ntp => Transport::Udp,
            _ => Transport::Tcp,
        }
    }

    pub fn protocol(&self) -> AppProtocol {
        match self.kind {
            Kind::Http | Kind::Api => AppProtocol::Http,
            Kind::Tls => AppProtocol::Tls,
            Kind::Postgres => AppProtocol::Postgresql,
            Kind::Redis => AppProtocol::Redis,
            Kind::Mysql => AppProtocol::Mysql,
            Kind::Dns { .. } => AppProtocol::Dns,
            Kind::Backup => AppProtocol::Opaque,
            Kind::Ntp => AppProtocol::Ntp,
        }
    }

    /// The host names the flow's traffic carries (Host headers, SNI, DNS query names).
    pub fn names(&self, vms: &[VmEndpoint]) -> Vec<String> {
        let server = dns::vm_name(&vms[self.server].name);
        match &self.kind {
            Kind::Http | Kind::Tls => vec![server],
            Kind::Api => vec![format!("{server}:{}", self.port)],
            Kind::Dns { targets } => targets
                .iter()
                .map(|t| dns::vm_name(&vms[*t].name))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A VM's index in the workload's table, which follows [`VM_ROLES`].
fn vm(name: &str) -> VmIndex {
    VM_ROLES
        .iter()
        .position(|(n, _)| *n == name)
        .expect("the application names only VMs of VM_ROLES")
}

/// The application's flows, plus a few random NTP pairs as background noise.
pub(super) fn three_tier_flows(vms: &[VmEndpoint], rng: &mut ChaCha8Rng) -> Vec<Flow> {
    let mut flows = Vec::new();
    let mut add = |rng: &mut ChaCha8Rng, client, server, port, kind, schedule| {
        flows.push(Flow {
            client: vm(client),
            server: vm(server),
            port,
            kind,
            schedule,
            slowness: rng.random_range(0.7..1.4),
        })
    };
    for client in ["client1", "client2"] {
        for web in ["web1", "web2"] {
            add(rng, client, web, 80, Kind::Http, Schedule::Poisson(4.0));
            add(rng, client, web, 443, Kind::Tls, Schedule::Poisson(2.5));
        }
    }
    for web in ["web1", "web2"] {
        for app in ["app1", "app2"] {
            add(rng, web, app, 8080, Kind::Api, Schedule::Poisson(1.0));
        }
    }
    for app in ["app1", "app2"] {
        add(
            rng,
            app,
            "db1",
            5432,
            Kind::Postgres,
            Schedule::Poisson(0.8),
        );
        add(
            rng,
            app,
            "cache1",
            6379,
            Kind::Redis,
            Schedule::Poisson(0.6),
        );
    }
    add(
        rng,
        "batch1",
        "db2",
        3306,
        Kind::Mysql,
        Schedule::Poisson(0.6),
    );
    let backup = Schedule::Periodic {
        period: 7.0,
        first: (0.5, 1.5),
    };
    add(rng, "backup1", "db2", BACKUP_PORT, Kind::Backup, backup);
    let lookups = Schedule::Periodic {
        period: f64::from(DNS_TTL_SECONDS),
        first: (0.0, 0.09),
    };
    for (caller, targets) in [
        ("client1", &["web1", "web2"][..]),
        ("client2", &["web1", "web2"]),
        ("web1", &["app1", "app2"]),
        ("web2", &["app1", "app2"]),
        ("app1", &["db1", "cache1"]),
        ("app2", &["db1", "cache1"]),
        ("batch1", &["db2"]),
        ("backup1", &["db2"]),
    ] {
        let targets = targets.iter().map(|t| vm(t)).collect();
        add(rng, caller, "dns1", 53, Kind::Dns { targets }, lookups);
    }
    // Noise: NTP between random VMs, a few exchanges a run, below any sensible threshold.
    let mut noise: Vec<(VmIndex, VmIndex)> = Vec::new();
    while noise.len() < 4 {
        let pair = (
            rng.random_range(0..vms.len()),
            rng.random_range(0..vms.len()),
        );
        if pair.0 != pair.1 && !noise.contains(&pair) {
            noise.push(pair);
        }
    }
    for (client, server) in noise {
        let (client, server) = (VM_ROLES[client].0, VM_ROLES[server].0);
        add(rng, client, server, 123, Kind::Ntp, Schedule::Poisson(0.25));
    }
    flows
}

/// When a flow starts its next session, and the random stream its sessions draw seeds from.
#[derive(Debug)]
pub(super) struct FlowClock {
    pub next_start: Nanos,
    pub flow: usize,
    pub rng: ChaCha8Rng,
}

impl PartialEq for FlowClock {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for FlowClock {}
impl PartialOrd for FlowClock {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for FlowClock {
    /// By start time; the flow index breaks ties, so the order is total and deterministic.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.next_start, self.flow).cmp(&(other.next_start, other.flow))
    }
}

/// The last moment a session may start or begin an exchange.
fn last_start(duration: Nanos) -> Nanos {
    duration - END_MARGIN
}

/// An exponential gap for a Poisson process of `rate` events a second.
fn exponential_gap<R: Rng>(rng: &mut R, rate: f64) -> Nanos {
    let u: f64 = rng.random();
    (-(1.0 - u).ln() / rate * NS_PER_SEC) as Nanos
}

fn seconds(s: f64) -> Nanos {
    (s * NS_PER_SEC) as Nanos
}

impl FlowClock {
    /// The clock of a flow, or None if its first session would start too late.
    pub fn start(
        flow_index: usize,
        flow: &Flow,
        scale: f64,
        duration: Nanos,
        mut rng: ChaCha8Rng,
    ) -> Option<FlowClock> {
        let next_start = match flow.schedule {
            Schedule::Poisson(rate) => WARMUP + exponential_gap(&mut rng, rate * scale),
            Schedule::Periodic { first, .. } => seconds(rng.random_range(first.0..first.1)),
        };
        (next_start < last_start(duration)).then_some(FlowClock {
            next_start,
            flow: flow_index,
            rng,
        })
    }

    /// Moves to the flow's next session; false when it would start too late.
    pub fn advance(&mut self, flow: &Flow, scale: f64, duration: Nanos) -> bool {
        self.next_start += match flow.schedule {
            Schedule::Poisson(rate) => exponential_gap(&mut self.rng, rate * scale),
            Schedule::Periodic { period, .. } => {
                seconds(period / scale * self.rng.random_range(0.9..1.1))
            }
        };
        self.next_start < last_start(duration)
    }
}

/// What a session's script needs besides its random stream.
struct Session<'a> {
    flow: &'a Flow,
    flow_index: usize,
    vms: &'a [VmEndpoint],
    /// No new exchange starts after this.
    deadline: Nanos,
    client_port: u16,
    one_way: Nanos,
}

/// Plans the frames of one session of `flow` starting at `start`.
pub(super) fn expand_session(
    flow: &Flow,
    flow_index: usize,
    vms: &[VmEndpoint],
    start: Nanos,
    duration: Nanos,
    client_port: u16,
    rng: &mut ChaCha8Rng,
) -> Vec<Pending> {
    let same_server = vms[flow.client].server == vms[flow.server].server;
    let s = Session {
        flow,
        flow_index,
        vms,
        deadline: last_start(duration),
        client_port,
        one_way: if same_server { 20 * US } else { 60 * US },
    };
    match &flow.kind {
        Kind::Http => s.http(rng, start, false),
        Kind::Tls => s.http(rng, start, true),
        Kind::Api => s.api(rng, start),
        Kind::Postgres => s.postgres(rng, start),
        Kind::Redis => s.redis(rng, start),
        Kind::Mysql => s.mysql(rng, start),
        Kind::Backup => s.backup(rng, start),
        Kind::Dns { targets } => s.dns(rng, start, targets),
        Kind::Ntp => s.ntp(rng, start),
    }
}

/// A request and its response over TCP: the response leaves `service` after the request's last
/// segment arrives. Counted in the truth when `counted`. Returns when the response has arrived.
fn exchange(
    conn: &mut TcpConn,
    t: Nanos,
    request: &[u8],
    service: Nanos,
    response: &[u8],
    counted: bool,
) -> Nanos {
    let req = conn.send(Side::Client, t, request);
    let resp = conn.send(Side::Server, req.arrives + service, response);
    if counted {
        conn.note(req.last, Note::Request);
        conn.note(resp.first, Note::Response(resp.first_at - req.last_at));
    }
    resp.arrives
}

/// A client's pause between two requests, exponential with mean `mean` seconds, at least 1 ms.
fn think<R: Rng>(rng: &mut R, mean: f64) -> Nanos {
    exponential_gap(rng, 1.0 / mean).max(MS)
}

impl Session<'_> {
    fn open(&self, rng: &mut ChaCha8Rng, t: Nanos) -> (TcpConn, Nanos) {
        let flow = self.flow;
        TcpConn::open(
            self.flow_index,
            (flow.client, self.client_port, rng.random()),
            (flow.server, flow.port, rng.random()),
            self.one_way,
            t,
        )
    }

    /// A service time drawn from `lo..hi` microseconds, scaled by the flow's slowness.
    fn service<R: Rng>(&self, rng: &mut R, lo_us: u64, hi_us: u64) -> Nanos {
        (rng.random_range(lo_us..hi_us) as f64 * self.flow.slowness * US as f64) as Nanos
    }

    /// Runs up to `max` exchanges with think times of mean `mean_think` seconds between them,
    /// none starting after the deadline. `one` plays one exchange from a start time and returns
    /// when it is over. Returns when the last is over.
    fn exchanges(
        &self,
        rng: &mut ChaCha8Rng,
        mut t: Nanos,
        max: usize,
        mean_think: f64,
        mut one: impl FnMut(&mut ChaCha8Rng, usize, Nanos) -> Nanos,
    ) -> Nanos {
        for i in 0..max {
            if i > 0 {
                let next = t + think(rng, mean_think);
                if next > self.deadline {
                    break;
                }
                t = next;
            }
            t = one(rng, i, t);
        }
        t
    }

    fn http(&self, rng: &mut ChaCha8Rng, start: Nanos, over_tls: bool) -> Vec<Pending> {
        let host = dns::vm_name(&self.vms[self.flow.server].name);
        let (mut conn, mut t) = self.open(rng, start);
        if over_tls {
            let hello = tls::client_hello(rng, &host);
            let flight_len = tls::server_flight_len(rng);
            let flight = tls::server_flight(rng, flight_len);
            let service = self.service(rng, 800, 2500);
            t = exchange(&mut conn, t, &hello, service, &flight, false);
        }
        let requests = rng.random_range(1..=4);
        let end = self.exchanges(rng, t, requests, 0.15, |rng, i, t| {
            let (request, response) = page_request(rng, &host);
            let service = self.service(rng, 2000, 15_000);
            if !over_tls {
                return exchange(&mut conn, t, &request, service, &response, true);
            }
            let mut sealed = if i == 0 {
                tls::client_finished(rng)
            } else {
                Vec::new()
            };
            sealed.extend(tls::application_data(rng, request.len()));
            let reply = tls::application_data(rng, response.len());
            exchange(&mut conn, t, &sealed, service, &reply, true)
        });
        conn.close(end + 100 * US)
    }

    fn api(&self, rng: &mut ChaCha8Rng, start: Nanos) -> Vec<Pending> {
        let host = format!(
            "{}:{}",
            dns::vm_name(&self.vms[self.flow.server].name),
            self.flow.port
        );
        let (mut conn, t) = self.open(rng, start);
        let calls = rng.random_range(10..=40);
        let end = self.exchanges(rng, t, calls, 0.06, |rng, _, t| {
            let (request, response) = if rng.random_bool(0.75) {
                let path = format!("/api/orders/{}", rng.random_range(1..100_000));
                let records = rng.random_range(1..=25);
                let body = http::json_records(rng, records);
                (
                    http::request("GET", &path, &host, None),
                    http::response(200, "application/json", &body),
                )
            } else {
                let body = http::json_records(rng, 1);
                let created = http::json_records(rng, 1);
                (
                    http::request(
                        "POST",
                        "/api/orders",
                        &host,
                        Some(("application/json", &body)),
                    ),
                    http::response(201, "application/json", &created),
                )
            };
            let service = self.service(rng, 3000, 25_000);
            exchange(&mut conn, t, &request, service, &response, true)
        });
        conn.close(end + 100 * US)
    }

    fn postgres(&self, rng: &mut ChaCha8Rng, start: Nanos) -> Vec<Pending> {
        let app = &self.vms[self.flow.client].name;
        let (mut conn, t) = self.open(rng, start);
        let reply = postgres::startup_reply(rng);
        let service = self.service(rng, 300, 900);
        let startup = postgres::startup("shop", "orders", app);
        let t = exchange(&mut conn, t, &startup, service, &reply, false);
        let queries = rng.random_range(10..=40);
        let end = self.exchanges(rng, t, queries, 0.05, |rng, _, t| {
            let id = rng.random_range(1..100_000);
            let (sql, reply) = match rng.random_range(0..10) {
                0..7 => {
                    let rows = rng.random_range(1..=30);
                    (
                        format!("SELECT id, name, price FROM products WHERE category = {} LIMIT {rows};", id % 40),
                        postgres::select_reply(rng, rows),
                    )
                }
                7..9 => (
                    format!("INSERT INTO orders (product_id, qty) VALUES ({id}, {});", rng.random_range(1..10)),
                    postgres::command_reply("INSERT 0 1"),
                ),
                _ => {
                    let n = rng.random_range(1..5);
                    (
                        format!("UPDATE stock SET qty = qty - 1 WHERE product_id = {id};"),
                        postgres::command_reply(&format!("UPDATE {n}")),
                    )
                }
            };
            let service = self.service(rng, 500, 8000);
            exchange(&mut conn, t, &postgres::query(&sql), service, &reply, true)
        });
        let bye = conn.send(Side::Client, end + 50 * US, &postgres::terminate());
        conn.close(bye.last_at + 20 * US)
    }

    fn redis(&self, rng: &mut ChaCha8Rng, start: Nanos) -> Vec<Pending> {
        let (mut conn, t) = self.open(rng, start);
        let commands = rng.random_range(30..=120);
        let end = self.exchanges(rng, t, commands, 0.02, |rng, _, t| {
            let key = format!("session:{}", rng.random_range(1..5000));
            let value = |rng: &mut ChaCha8Rng, max: usize| {
                let n = rng.random_range(32..max);
                (0..n)
                    .map(|_| b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)])
                    .collect::<Vec<u8>>()
            };
            let (command, reply) = match rng.random_range(0..10) {
                0..6 => {
                    let reply = if rng.random_bool(0.8) {
                        redis::bulk(Some(&value(rng, 512)))
                    } else {
                        redis::bulk(None)
                    };
                    (redis::command(&[b"GET", key.as_bytes()]), reply)
                }
                6..9 => {
                    let v = value(rng, 1024);
                    (
                        redis::command(&[b"SET", key.as_bytes(), &v]),
                        redis::simple("OK"),
                    )
                }
                _ => (
                    redis::command(&[b"INCR", b"page_views"]),
                    redis::integer(rng.random_range(1..10_000_000)),
                ),
            };
            let service = self.service(rng, 80, 400);
            exchange(&mut conn, t, &command, service, &reply, true)
        });
        conn.close(end + 50 * US)
    }

    fn mysql(&self, rng: &mut ChaCha8Rng, start: Nanos) -> Vec<Pending> {
        let (mut conn, ready) = self.open(rng, start);
        let one_way = conn.one_way();
        let hello_at = ready + one_way + self.service(rng, 200, 600);
        let connection_id = rng.random();
        let greeting = mysql::greeting(rng, connection_id);
        let greeting = conn.send(Side::Server, hello_at, &greeting);
        let login = mysql::login(rng, "batch", "inventory");
        let service = self.service(rng, 300, 1200);
        let t = exchange(
            &mut conn,
            greeting.arrives + 100 * US,
            &login,
            service,
            &mysql::ok(2, 0, 0),
            false,
        );
        let queries = rng.random_range(5..=30);
        let end = self.exchanges(rng, t, queries, 0.08, |rng, _, t| {
            let (sql, reply) = if rng.random_bool(0.8) {
                let rows = rng.random_range(5..=200);
                (
                    format!(
                        "SELECT id, sku, qty FROM stock WHERE warehouse = {} LIMIT {rows}",
                        rng.random_range(1..20)
                    ),
                    mysql::result_set(rng, "stock", rows),
                )
            } else {
                let n = rng.random_range(1..50);
                (
                    format!("UPDATE stock SET qty = qty + 10 WHERE warehouse = {n}"),
                    mysql::ok(1, n, 0),
                )
            };
            let service = self.service(rng, 1000, 20_000);
            exchange(&mut conn, t, &mysql::query(&sql), service, &reply, true)
        });
        let bye = conn.send(Side::Client, end + 50 * US, &mysql::quit());
        conn.close(bye.last_at + 20 * US)
    }

    fn backup(&self, rng: &mut ChaCha8Rng, start: Nanos) -> Vec<Pending> {
        let (mut conn, t) = self.open(rng, start);
        let mut request = vec![0; rng.random_range(64..256)];
        rng.fill(&mut request[..]);
        let req = conn.send(Side::Client, t, &request);
        conn.note(req.last, Note::Request);
        let mut at = req.arrives + self.service(rng, 5000, 20_000);
        let chunks = rng.random_range(20..=60);
        let mut chunk = vec![0; BACKUP_CHUNK];
        let mut arrives = at;
        for i in 0..chunks {
            if i > 0 {
                at += BACKUP_CHUNK_INTERVAL;
                if at > self.deadline {
                    break;
                }
            }
            rng.fill(&mut chunk[..]);
            let burst = conn.send(Side::Server, at, &chunk);
            if i == 0 {
                conn.note(burst.first, Note::Response(burst.first_at - req.last_at));
            }
            arrives = burst.arrives;
        }
        conn.close(arrives + MS)
    }

    /// A UDP datagram of this session.
    fn datagram(&self, at: Nanos, from_client: bool, payload: Vec<u8>, note: Note) -> Pending {
        let (c, s) = (self.flow.client, self.flow.server);
        let (cp, sp) = (self.client_port, self.flow.port);
        let (src, dst, repr) = if from_client {
            (
                c,
                s,
                UdpRepr {
                    src_port: cp,
                    dst_port: sp,
                },
            )
        } else {
            (
                s,
                c,
                UdpRepr {
                    src_port: sp,
                    dst_port: cp,
                },
            )
        };
        Pending {
            at,
            src,
            dst,
            flow: self.flow_index,
            note,
            body: Body::Udp { repr, payload },
        }
    }

    fn dns(&self, rng: &mut ChaCha8Rng, start: Nanos, targets: &[VmIndex]) -> Vec<Pending> {
        let mut frames = Vec::new();
        let mut t = start;
        for &target in targets {
            let name = dns::vm_name(&self.vms[target].name);
            let id = rng.random();
            frames.push(self.datagram(t, true, dns::query(id, &name), Note::Request));
            let reply_at = t + self.one_way + self.service(rng, 100, 600);
            let answer = dns::answer(id, &name, self.vms[target].ipv4, DNS_TTL_SECONDS);
            frames.push(self.datagram(reply_at, false, answer, Note::Response(reply_at - t)));
            t = reply_at + self.one_way + 20 * US;
        }
        frames
    }

    fn ntp(&self, rng: &mut ChaCha8Rng, start: Nanos) -> Vec<Pending> {
        let request = ntp::request(start);
        let received = start + self.one_way;
        let sent = received + self.service(rng, 30, 150);
        let upstream = [10, 0, 0, rng.random_range(1..=4)];
        let reference = start.saturating_sub(seconds(rng.random_range(1.0..64.0)));
        let reply = ntp::reply(&request, received, sent, upstream, reference);
        vec![
            self.datagram(start, true, request.to_vec(), Note::Request),
            self.datagram(sent, false, reply.to_vec(), Note::Response(sent - start)),
        ]
    }
}

/// A browser's request to a web server and the server's answer.
fn page_request<R: Rng>(rng: &mut R, host: &str) -> (Vec<u8>, Vec<u8>) {
    if rng.random_bool(0.2) {
        let form = format!(
            "item={}&qty={}",
            rng.random_range(1..100_000),
            rng.random_range(1..5)
        );
        let created = http::json_records(rng, 1);
        return (
            http::request(
                "POST",
                "/cart",
                host,
                Some(("application/x-www-form-urlencoded", form.as_bytes())),
            ),
            http::response(201, "application/json", &created),
        );
    }
    let path = match rng.random_range(0..5) {
        0 => "/".to_string(),
        1 => "/index.html".to_string(),
        2 => format!("/products?page={}", rng.random_range(1..50)),
        3 => "/static/app.js".to_string(),
        _ => "/cart".to_string(),
    };
    let request = http::request("GET", &path, host, None);
    let response = match rng.random_range(0..20) {
        0 => http::response(404, "text/html", &http::html_page(rng, 120)),
        _ => {
            // Log-uniform sizes from 300 B to 40 kB: mostly small pages, a few large ones.
            let len = (rng.random_range(300f64.ln()..40_000f64.ln())).exp() as usize;
            http::response(200, "text/html", &http::html_page(rng, len))
        }
    };
    (request, response)
}
