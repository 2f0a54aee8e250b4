//! The OVS agent of one server, in place of `vmdep host`: the server's end of the host link
//! (`crate::hostlink`) for a real Open vSwitch bridge. It says `hello`, reports the bridge's
//! per-pair rule counters as `local_counts` (pairs that sent nothing left out, so no silent
//! pair reaches the graph), applies each `mirror` set to the bridge with an OVS mirror, and runs
//! the server's DPI module on the frames the mirror delivers, keeping only the frames of the
//! mirrored pairs (an OVS mirror selects whole VM ports), and on every same-server frame from the
//! first (the bridge's counting rules copy those; see the lab's "Mirrors"), sending the labels
//! as they change.
//! It changes the bridge only through the lab's mirror setting and knows the controller only
//! through the host link.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::BufReader;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::controller::VmPair;
use crate::demo::netns::NetnsLab;
use crate::dpi::{DpiConfig, DpiEngine};
use crate::hostlink::{
    self, AppLabel, ControllerMessage, HostMessage, LocalPairCount, PairAddrs, VERSION,
};

use super::capture::{DpiInterface, MirroredFrame};
use super::NetnsDemoError;

/// How often the rule counters are read and sent.
const REPORT_INTERVAL: Duration = Duration::from_millis(500);
/// How long the agent tries to reach the controller, and waits for one write.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running agent.
pub struct OvsAgent {
    server: String,
    report_now: mpsc::Sender<oneshot::Sender<()>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), NetnsDemoError>>,
}

impl OvsAgent {
    /// Connects to the controller and starts serving `server` of `lab`.
    pub async fn start(
        lab: Arc<NetnsLab>,
        server: String,
        controller: SocketAddr,
        frames: mpsc::Receiver<MirroredFrame>,
    ) -> Result<OvsAgent, NetnsDemoError> {
        let stream = connect(controller)
            .await
            .map_err(|e| agent_error(&server, format!("cannot reach the controller: {e}")))?;
        let (read, mut write) = stream.into_split();
        send(
            &mut write,
            &HostMessage::Hello {
                server: server.clone(),
                version: VERSION,
            },
        )
        .await
        .map_err(|e| agent_error(&server, e))?;
        let (mirror_tx, mirror_rx) = mpsc::channel(16);
        let reader = tokio::spawn(read_mirror_sets(BufReader::new(read), mirror_tx));
        let (report_now, report_rx) = mpsc::channel(4);
        let (stop, stop_rx) = watch::channel(false);
        let local: BTreeSet<Ipv4Addr> = {
            let topology = lab.topology();
            let id = topology
                .server_id(&server)
                .ok_or_else(|| agent_error(&server, "no such server".into()))?;
            topology
                .vms_of_server(id)
                .iter()
                .map(|&vm| topology.vm(vm).ipv4)
                .collect()
        };
        let state = AgentState {
            lab,
            server: server.clone(),
            local,
            write,
            engine: DpiEngine::new(DpiConfig::default()),
            mirrored: BTreeSet::new(),
            published: Vec::new(),
        };
        let task = tokio::spawn(state.run(frames, mirror_rx, report_rx, stop_rx, reader));
        Ok(OvsAgent {
            server,
            report_now,
            stop,
            task,
        })
    }

    /// Sends the current counts and labels now; returns once they are written.
    pub async fn report_now(&self) -> Result<(), NetnsDemoError> {
        let (done, wait) = oneshot::channel();
        let gone = || agent_error(&self.server, "the agent stopped".into());
        self.report_now.send(done).await.map_err(|_| gone())?;
        wait.await.map_err(|_| gone())
    }

    /// Stops the agent; its error, if it failed on its own.
    pub async fn stop(self) -> Result<(), NetnsDemoError> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(agent_error(
                &self.server,
                format!("the agent task failed: {e}"),
            )),
        }
    }
}

fn agent_error(server: &str, problem: String) -> NetnsDemoError {
    NetnsDemoError::Agent {
        server: server.to_string(),
        problem,
    }
}

async fn connect(controller: SocketAddr) -> std::io::Result<TcpStream> {
    let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    loop {
        match TcpStream::connect(controller).await {
            Ok(stream) => return Ok(stream),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn send(write: &mut OwnedWriteHalf, message: &HostMessage) -> Result<(), String> {
    match tokio::time::timeout(WRITE_TIMEOUT, hostlink::write_message(write, message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("host link: {e}")),
        Err(_) => Err(format!(
            "the controller took no message for {WRITE_TIMEOUT:?}"
        )),
    }
}

/// Passes the controller's mirror sets on until the link ends; a bad line ends it too (the
/// agent then reports the failure).
async fn read_mirror_sets(
    mut read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    sets: mpsc::Sender<Result<Vec<PairAddrs>, String>>,
) {
    loop {
        let next = match hostlink::read_message::<_, ControllerMessage>(&mut read).await {
            Ok(Some(ControllerMessage::Mirror { pairs })) => Ok(pairs),
            Ok(None) => return,
            Err(e) => Err(format!("host link: {e}")),
        };
        let failed = next.is_err();
        if sets.send(next).await.is_err() || failed {
            return;
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct AgentState {
    lab: Arc<NetnsLab>,
    server: String,
    /// The addresses of this server's VMs.
    local: BTreeSet<Ipv4Addr>,
    write: OwnedWriteHalf,
    engine: DpiEngine,
    /// The cross-server pairs the bridge mirrors now, in both directions.
    mirrored: BTreeSet<(Ipv4Addr, Ipv4Addr)>,
    published: Vec<AppLabel>,
}

impl AgentState {
    async fn run(
        mut self,
        mut frames: mpsc::Receiver<MirroredFrame>,
        mut mirror_sets: mpsc::Receiver<Result<Vec<PairAddrs>, String>>,
        mut report_now: mpsc::Receiver<oneshot::Sender<()>>,
        mut stop: watch::Receiver<bool>,
        reader: JoinHandle<()>,
    ) -> Result<(), NetnsDemoError> {
        let result = self
            .serve(&mut frames, &mut mirror_sets, &mut report_now, &mut stop)
            .await
            .map_err(|problem| agent_error(&self.server, problem));
        reader.abort();
        result
    }

    async fn serve(
        &mut self,
        frames: &mut mpsc::Receiver<MirroredFrame>,
        mirror_sets: &mut mpsc::Receiver<Result<Vec<PairAddrs>, String>>,
        report_now: &mut mpsc::Receiver<oneshot::Sender<()>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let mut tick = tokio::time::interval(REPORT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                frame = frames.recv() => match frame {
                    Some(frame) => self.inspect(frame),
                    None => return Err("the DPI interface's receive loop ended".into()),
                },
                set = mirror_sets.recv() => match set {
                    Some(Ok(pairs)) => self.apply_mirror(pairs).await?,
                    Some(Err(problem)) => return Err(problem),
                    None => return Err("the controller closed the host link".into()),
                },
                _ = tick.tick() => {
                    self.send_counts().await?;
                    self.send_labels(false).await?;
                }
                done = report_now.recv() => {
                    while let Ok(frame) = frames.try_recv() {
                        self.inspect(frame);
                    }
                    self.send_counts().await?;
                    self.send_labels(true).await?;
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }
                _ = stop.changed() => return Ok(()),
            }
        }
    }

    /// DPI on a frame of a same-server pair (from the bridge's copies, always) or of a
    /// selected cross-server pair (from the mirror); the other traffic of the mirrored VMs is
    /// not this module's business. The mirror's copies of same-server frames are left out:
    /// the same frames arrive from the local copies too.
    fn inspect(&mut self, frame: MirroredFrame) {
        let Some((src, dst)) = frame.pair else {
            return;
        };
        let same_server = self.local.contains(&src) && self.local.contains(&dst);
        let wanted = match frame.via {
            DpiInterface::LocalCopy => same_server,
            DpiInterface::Mirror => !same_server && self.mirrored.contains(&(src, dst)),
        };
        if wanted {
            // Malformed frames are counted in the engine's statistics.
            let _ = self.engine.observe(frame.at, &frame.frame);
        }
    }

    async fn apply_mirror(&mut self, pairs: Vec<PairAddrs>) -> Result<(), String> {
        // The controller sends each server only pairs with an end on it; anything else would
        // be refused by the lab, so it is left out rather than failing the whole set. Pairs
        // with both ends here need no mirror: the bridge copies their frames anyway.
        let pairs: Vec<VmPair> = pairs
            .into_iter()
            .filter(|p| self.local.contains(&p.src) != self.local.contains(&p.dst))
            .map(|p| VmPair::new(p.src, p.dst))
            .collect();
        let lab = Arc::clone(&self.lab);
        let server = self.server.clone();
        let set = pairs.clone();
        tokio::task::spawn_blocking(move || lab.set_mirror(&server, &set))
            .await
            .map_err(|e| format!("setting the mirror: {e}"))?
            .map_err(|e| format!("setting the mirror: {e}"))?;
        self.mirrored = pairs
            .iter()
            .flat_map(|p| [(p.src, p.dst), (p.dst, p.src)])
            .collect();
        Ok(())
    }

    async fn send_counts(&mut self) -> Result<(), String> {
        let lab = Arc::clone(&self.lab);
        let server = self.server.clone();
        let counts = tokio::task::spawn_blocking(move || lab.local_pair_counts(&server))
            .await
            .map_err(|e| format!("reading the bridge's counters: {e}"))?
            .map_err(|e| format!("reading the bridge's counters: {e}"))?;
        let pairs = counts
            .into_iter()
            .filter(|c| c.packets > 0)
            .map(|c| LocalPairCount {
                src: c.src,
                dst: c.dst,
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect();
        let message = HostMessage::LocalCounts {
            at_ms: unix_ms(),
            pairs,
        };
        send(&mut self.write, &message).await
    }

    /// Sends the labels when they changed, or always when `force`d.
    async fn send_labels(&mut self, force: bool) -> Result<(), String> {
        let labels = self.engine.labels();
        if labels.is_empty() || (!force && labels == self.published) {
            return Ok(());
        }
        let message = HostMessage::Labels {
            at_ms: unix_ms(),
            labels: labels.clone(),
        };
        send(&mut self.write, &message).await?;
        self.published = labels;
        Ok(())
    }
}
