//! Carries the bridges' sFlow datagrams out of the Open vSwitch namespace to the collector.
//!
//! ovs-vswitchd runs in its own network namespace (the userspace datapath makes a tap device
//! named `ovs-netdev`, the same for every instance, so two labs in one namespace collide), where
//! 127.0.0.1 is not the controller's. The bridges export to a socket of this relay on the OVS
//! namespace's loopback; the relay sends each datagram unchanged (agent address and all) from the
//! root namespace's loopback to the current target. It owns that thread and its two sockets.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::setns::in_namespace;
use super::LabError;

/// How often the relay thread looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct SflowRelay {
    /// Where the bridges send, in the OVS namespace.
    listen: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    target: Mutex<Option<SocketAddr>>,
    stop: AtomicBool,
    relayed: AtomicU64,
}

impl SflowRelay {
    /// Opens the relay's socket on loopback inside `namespace` (whose `lo` must be up).
    pub fn start(namespace: &str) -> Result<SflowRelay, LabError> {
        let io = |what: &str, source| LabError::Io {
            what: format!("sFlow relay: {what}"),
            source,
        };
        let inside = in_namespace(namespace, || UdpSocket::bind("127.0.0.1:0"))?
            .map_err(|e| io("binding in the OVS namespace", e))?;
        inside
            .set_read_timeout(Some(POLL))
            .map_err(|e| io("setting a timeout", e))?;
        let listen = inside
            .local_addr()
            .map_err(|e| io("reading its address", e))?;
        let outside = UdpSocket::bind("127.0.0.1:0").map_err(|e| io("binding on loopback", e))?;
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("sflow relay".into())
                .spawn(move || relay(&inside, &outside, &shared))
                .map_err(|e| io("starting its thread", e))?
        };
        Ok(SflowRelay {
            listen,
            shared,
            thread: Some(thread),
        })
    }

    /// The address the bridges export to (in the OVS namespace).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Sends from now on to `target` (`None`: drops what arrives).
    pub fn set_target(&self, target: Option<SocketAddr>) {
        *self
            .shared
            .target
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = target;
    }

    /// Datagrams passed on so far.
    pub fn relayed(&self) -> u64 {
        self.shared.relayed.load(Ordering::Relaxed)
    }
}

impl Drop for SflowRelay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // The thread wakes within POLL to see the flag.
            let _ = thread.join();
        }
    }
}

/// The relay loop: one datagram at a time until stopped (checked at least every POLL).
fn relay(inside: &UdpSocket, outside: &UdpSocket, shared: &Shared) {
    let mut buf = vec![0u8; 65_536];
    while !shared.stop.load(Ordering::Relaxed) {
        let n = match inside.recv(&mut buf) {
            Ok(n) => n,
            // Timeouts (WouldBlock/TimedOut) and transient errors: look at the flag again.
            Err(_) => continue,
        };
        let target = *shared
            .target
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(target) = target {
            // UDP: a collector that is not listening loses the datagram, as it would from OVS.
            if outside.send_to(&buf[..n], target).is_ok() {
                shared.relayed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
