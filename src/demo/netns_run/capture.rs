//! The ground truth of `vmdep demo --netns`: every frame each VM's `eth0` receives, counted per
//! directed IPv4 pair and per controller window (bytes are the frame's length, as a P4 switch's
//! direct counter and OVS's rule counters count it). A frame counted here has passed every
//! switch of its path, so it is what the exact counts must equal.
//!
//! Also the frame sink of the servers' DPI interfaces (the mirror's and the same-server
//! copies'), which hands their frames to the OVS agents with the time they arrived. Both only
//! count and pass frames on; the sockets are the switch module's interface ports, opened by the
//! run.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::controller::VmPair;
use crate::demo::emulated::{note_ports, PortWindows};
use crate::switch::ports::FrameSink;
use crate::wire::HeaderSummary;

/// Frames and bytes.
pub type Counts = (u64, u64);

/// Per pair and window, frames and bytes; per pair and port, the windows frames carried it.
#[derive(Debug, Default)]
struct Tally {
    counts: BTreeMap<VmPair, BTreeMap<usize, Counts>>,
    port_windows: PortWindows,
}

/// The capture of every VM's interface, shared by their receive loops.
#[derive(Debug)]
pub struct VmCapture {
    /// The window frames are counted in now (0-based); the run moves it after each window.
    window: AtomicUsize,
    /// What the frames counted so far add up to, under one lock taken once per frame.
    tally: Mutex<Tally>,
    frames: AtomicU64,
    /// Frames that were no IPv4 (nothing of the workload; counted to be seen).
    other: AtomicU64,
    /// Frames a VM's interface received that its socket had no room for: missing from the
    /// truth, so an exact count can exceed it.
    kernel_drops: AtomicU64,
    /// Nanoseconds after `epoch` of the last frame, for "the network is quiet".
    last_frame_ns: AtomicU64,
    epoch: Instant,
}

impl VmCapture {
    pub fn new() -> Arc<VmCapture> {
        Arc::new(VmCapture {
            window: AtomicUsize::new(0),
            tally: Mutex::new(Tally::default()),
            frames: AtomicU64::new(0),
            other: AtomicU64::new(0),
            kernel_drops: AtomicU64::new(0),
            last_frame_ns: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    pub fn set_window(&self, window: usize) {
        self.window.store(window, Ordering::SeqCst);
    }

    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    pub fn non_ipv4_frames(&self) -> u64 {
        self.other.load(Ordering::Relaxed)
    }

    /// Frames the kernel dropped before the capture could read them.
    pub fn kernel_drops(&self) -> u64 {
        self.kernel_drops.load(Ordering::Relaxed)
    }

    /// How long no VM has received a frame.
    pub fn quiet_for(&self) -> Duration {
        let last = Duration::from_nanos(self.last_frame_ns.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Per pair, per window, what the VMs received.
    pub fn per_window(&self) -> BTreeMap<VmPair, BTreeMap<usize, Counts>> {
        self.tally().counts.clone()
    }

    /// Per pair and port, the windows the VMs received frames from or to that port in.
    pub fn port_windows(&self) -> PortWindows {
        self.tally().port_windows.clone()
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, frame: &[u8]) {
        let at = self.epoch.elapsed().as_nanos() as u64;
        self.last_frame_ns.fetch_max(at, Ordering::Relaxed);
        self.frames.fetch_add(1, Ordering::Relaxed);
        let headers = HeaderSummary::parse(frame).ok();
        let Some((ipv4, transport)) = headers.and_then(|h| Some((h.ipv4?, h.transport))) else {
            self.other.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let pair = VmPair::new(ipv4.src_addr, ipv4.dst_addr);
        let window = self.window.load(Ordering::SeqCst);
        let mut tally = self.tally();
        let entry = tally
            .counts
            .entry(pair)
            .or_default()
            .entry(window)
            .or_default();
        entry.0 += 1;
        entry.1 += frame.len() as u64;
        if let Some(ports) = transport {
            note_ports(&mut tally.port_windows, pair, window, &ports);
        }
    }
}

impl FrameSink for VmCapture {
    fn receive(&self, _vm: u32, frame: &[u8]) {
        self.count(frame);
    }

    fn dropped_before_receive(&self, _vm: u32, count: u64) {
        self.kernel_drops.fetch_add(count, Ordering::Relaxed);
    }
}

/// Which of a server's two DPI interfaces a frame arrived on (the port number its receive loop
/// passes to [`MirrorSink`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpiInterface {
    /// The OVS mirror's output: every frame of the mirrored VMs' ports.
    Mirror = 0,
    /// The same-server counting rules' copies: every frame between two VMs of the server.
    LocalCopy = 1,
}

impl DpiInterface {
    pub fn port(self) -> u32 {
        self as u32
    }
}

/// A frame a server's bridge delivered to one of its DPI interfaces.
#[derive(Debug)]
pub struct MirroredFrame {
    /// Since the run's DPI epoch (one monotonic clock for all frames).
    pub at: Duration,
    pub via: DpiInterface,
    pub pair: Option<(Ipv4Addr, Ipv4Addr)>,
    pub frame: Vec<u8>,
}

/// Hands a server's DPI interfaces' frames to its agent; frames it has no room for are counted,
/// and so are those the interfaces' socket buffers had no room for.
#[derive(Debug)]
pub struct MirrorSink {
    pub frames: mpsc::Sender<MirroredFrame>,
    pub epoch: Instant,
    pub dropped: AtomicU64,
}

impl FrameSink for MirrorSink {
    fn receive(&self, port: u32, frame: &[u8]) {
        let pair = HeaderSummary::parse(frame)
            .ok()
            .and_then(|s| s.ipv4)
            .map(|ip| (ip.src_addr, ip.dst_addr));
        let via = if port == DpiInterface::LocalCopy.port() {
            DpiInterface::LocalCopy
        } else {
            DpiInterface::Mirror
        };
        let mirrored = MirroredFrame {
            at: self.epoch.elapsed(),
            via,
            pair,
            frame: frame.to_vec(),
        };
        if self.frames.try_send(mirrored).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn dropped_before_receive(&self, _port: u32, count: u64) {
        self.dropped.fetch_add(count, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EthernetAddress, FrameRepr, TransportRepr, UdpRepr};

    fn udp(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let udp = UdpRepr {
            src_port: 40_000,
            dst_port: 53,
        };
        let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
        FrameRepr::new(mac, mac, None, src, dst, TransportRepr::Udp(udp), payload)
            .unwrap()
            .to_vec()
            .unwrap()
    }

    #[test]
    fn frames_count_per_pair_and_window_and_kernel_drops_are_kept() {
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let capture = VmCapture::new();
        let first = udp(a, b, b"one");
        capture.receive(0, &first);
        capture.set_window(1);
        capture.receive(1, &udp(b, a, b"two"));
        capture.receive(1, &udp(b, a, b"three"));
        capture.receive(1, b"not a frame");
        capture.dropped_before_receive(0, 3);
        capture.dropped_before_receive(1, 2);

        let counts = capture.per_window();
        assert_eq!(counts[&VmPair::new(a, b)][&0], (1, first.len() as u64));
        assert_eq!(counts[&VmPair::new(b, a)][&1].0, 2);
        assert_eq!(
            (
                capture.frames(),
                capture.non_ipv4_frames(),
                capture.kernel_drops()
            ),
            (4, 1, 5)
        );
    }
}
