//! The demo's side of the VMs' wires in `vmdep demo --processes`: it sends the workload's
//! frames into the wires of their source VMs, bounded in flight, and counts the frames that
//! come out at each VM (and any that reach the wrong one) until every frame sent has arrived.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{ProcessesError, SETTLE_LIMIT};

/// The demo's end of one VM's wire.
pub(super) struct VmEnd {
    pub name: String,
    pub ipv4: Ipv4Addr,
    pub socket: Arc<UdpSocket>,
}

/// The VMs: sends frames into their wires and counts what comes out of them.
pub(super) struct WireReplay {
    /// By VM id.
    vms: Vec<VmEnd>,
    pub sent: u64,
    /// Per VM, frames sent to it and frames it received.
    sent_to: Vec<u64>,
    arrived_at: Vec<Arc<AtomicU64>>,
    /// Told whenever a frame arrives at a VM.
    arrival: Arc<Notify>,
    delivered: Arc<AtomicU64>,
    misdelivered: Arc<AtomicU64>,
    receivers: Vec<JoinHandle<()>>,
    max_in_flight: u64,
    log_dir: PathBuf,
}

impl WireReplay {
    /// One receiver per VM, counting the frames that arrive (and those for another VM).
    pub fn start(vms: Vec<VmEnd>, max_in_flight: u64, log_dir: PathBuf) -> Self {
        let delivered = Arc::new(AtomicU64::new(0));
        let misdelivered = Arc::new(AtomicU64::new(0));
        let arrived_at: Vec<Arc<AtomicU64>> =
            vms.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
        let arrival = Arc::new(Notify::new());
        let receivers = vms
            .iter()
            .zip(&arrived_at)
            .map(|(vm, arrived_here)| {
                let (socket, ipv4) = (Arc::clone(&vm.socket), vm.ipv4);
                let (delivered, misdelivered) = (Arc::clone(&delivered), Arc::clone(&misdelivered));
                let (arrived_here, arrival) = (Arc::clone(arrived_here), Arc::clone(&arrival));
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match socket.recv(&mut buf).await {
                            Ok(len) => {
                                // The IPv4 destination address sits at bytes 30..34 of an
                                // untagged Ethernet frame.
                                let for_me = buf[..len].get(30..34) == Some(&ipv4.octets()[..]);
                                let counter = if for_me { &delivered } else { &misdelivered };
                                counter.fetch_add(1, Ordering::Relaxed);
                                if for_me {
                                    arrived_here.fetch_add(1, Ordering::Relaxed);
                                    arrival.notify_waiters();
                                }
                            }
                            // ICMP errors of earlier sends (a host not listening yet).
                            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                        }
                    }
                })
            })
            .collect();
        WireReplay {
            sent_to: vec![0; vms.len()],
            vms,
            sent: 0,
            arrived_at,
            arrival,
            delivered,
            misdelivered,
            receivers,
            max_in_flight,
            log_dir,
        }
    }

    fn arrived(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed) + self.misdelivered.load(Ordering::Relaxed)
    }

    fn lost(&self, waited: Duration) -> ProcessesError {
        ProcessesError::FramesLost {
            lost: self.sent.saturating_sub(self.arrived()),
            misdelivered: self.misdelivered.load(Ordering::Relaxed),
            waited,
            logs: self.log_dir.clone(),
        }
    }

    /// Sends a frame of VM `vm` to VM `to`, once `vm` has received what was sent to it: the
    /// workload's times assume a 60 µs network and the switches take longer, so without this
    /// a VM could answer what has not reached it yet (a TLS client its Finished before the
    /// server's handshake flight), which no tap on a real network sees.
    pub async fn send(&mut self, vm: usize, to: usize, frame: &[u8]) -> Result<(), ProcessesError> {
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            // Created before the check, so an arrival in between still wakes it.
            let arrived = self.arrival.notified();
            if self.arrived_at[vm].load(Ordering::Relaxed) >= self.sent_to[vm] {
                break;
            }
            if Instant::now() > deadline {
                return Err(self.lost(SETTLE_LIMIT));
            }
            let _ = tokio::time::timeout(Duration::from_millis(5), arrived).await;
        }
        // Bounded in flight: the hosts' and switches' socket buffers hold a few thousand.
        while self.sent - self.arrived().min(self.sent) >= self.max_in_flight {
            if Instant::now() > deadline {
                return Err(self.lost(SETTLE_LIMIT));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let end = &self.vms[vm];
        if let Err(source) = end.socket.send(frame).await {
            return Err(ProcessesError::VmWire {
                vm: end.name.clone(),
                source,
            });
        }
        self.sent += 1;
        if let Some(sent_to) = self.sent_to.get_mut(to) {
            *sent_to += 1;
        }
        Ok(())
    }

    /// Waits until every frame sent has arrived at a VM.
    pub async fn settle(&mut self, limit: Duration) -> Result<(), ProcessesError> {
        let deadline = Instant::now() + limit;
        loop {
            if self.arrived() >= self.sent {
                if self.misdelivered.load(Ordering::Relaxed) > 0 {
                    return Err(self.lost(limit));
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.lost(limit));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub async fn stop(&mut self) {
        for task in self.receivers.drain(..) {
            task.abort();
            let _ = task.await;
        }
    }
}
