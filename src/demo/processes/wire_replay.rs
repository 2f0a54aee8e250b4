//! The demo's side of the VMs' wires in `vmdep demo --processes`: it sends the workload's
//! frames into the wires of their source VMs, bounded in flight, and counts the frames that
//! come out at each VM (and any that reach the wrong one) until every frame sent has arrived.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
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
        let receivers = vms
            .iter()
            .map(|vm| {
                let (socket, ipv4) = (Arc::clone(&vm.socket), vm.ipv4);
                let (delivered, misdelivered) = (Arc::clone(&delivered), Arc::clone(&misdelivered));
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
                            }
                            // ICMP errors of earlier sends (a host not listening yet).
                            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                        }
                    }
                })
            })
            .collect();
        WireReplay {
            vms,
            sent: 0,
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

    pub async fn send(&mut self, vm: usize, frame: &[u8]) -> Result<(), ProcessesError> {
        // Bounded in flight: the hosts' and switches' socket buffers hold a few thousand.
        let deadline = Instant::now() + SETTLE_LIMIT;
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
