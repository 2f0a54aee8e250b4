//! One TCP connection between two workload VMs, played out as timed segments: the three-way
//! handshake, data cut into MSS-sized segments whose sequence numbers advance by their payload,
//! delayed ACKs as Linux sends them, and the FIN exchange. It owns sequence and acknowledgement
//! bookkeeping only; what the payload means is the sessions' business ([`super::apps`]).

use super::{Body, Nanos, Note, Pending, VmIndex, MSS};
use crate::wire::{TcpFlags, TcpRepr};

/// Linux's delayed-ACK timeout for a lone unacknowledged segment.
const DELAYED_ACK: Nanos = 40_000_000;
/// How long a VM takes to answer a segment with a bare ACK or its half of the handshake.
const TURNAROUND: Nanos = 5_000;
/// The receive window every VM advertises (Linux's initial 64240, without scaling). No burst is
/// longer, so no sender ever waits for the window.
pub(super) const WINDOW: u16 = 64240;
/// Nanoseconds a byte takes on a 1 Gb/s link; segments of a burst follow each other at this pace.
const NS_PER_BYTE: Nanos = 8;
/// Ethernet, IPv4 and TCP headers in front of a segment's payload.
const HEADERS: usize = 14 + 20 + 20;

/// The two ends of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Client,
    Server,
}

impl Side {
    fn index(self) -> usize {
        self as usize
    }

    fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

#[derive(Debug, Clone)]
struct End {
    vm: VmIndex,
    port: u16,
    /// The next sequence number this end sends.
    snd_nxt: u32,
    /// Segments received and not yet acknowledged.
    unacked: u32,
    /// A delayed ACK this end owes: when it fires and what it acknowledges.
    owed: Option<(Nanos, u32)>,
}

/// Where a burst of segments went.
#[derive(Debug, Clone, Copy)]
pub(super) struct Burst {
    /// Indices of its first and last segment in the connection's frames.
    pub first: usize,
    pub last: usize,
    pub first_at: Nanos,
    pub last_at: Nanos,
    /// When the last segment has reached the peer and the peer's immediate ACK has left: the
    /// peer may send from then on.
    pub arrives: Nanos,
}

/// A connection and the frames it has produced so far.
#[derive(Debug)]
pub(super) struct TcpConn {
    ends: [End; 2],
    one_way: Nanos,
    flow: usize,
    frames: Vec<Pending>,
}

impl TcpConn {
    /// Opens a connection with a handshake starting at `t`; returns it and the time from which
    /// the client may send.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        flow: usize,
        (client, client_port, client_isn): (VmIndex, u16, u32),
        (server, server_port, server_isn): (VmIndex, u16, u32),
        one_way: Nanos,
        t: Nanos,
    ) -> (TcpConn, Nanos) {
        let end = |vm, port, isn| End {
            vm,
            port,
            snd_nxt: isn,
            unacked: 0,
            owed: None,
        };
        let mut conn = TcpConn {
            ends: [
                end(client, client_port, client_isn),
                end(server, server_port, server_isn),
            ],
            one_way,
            flow,
            frames: Vec::new(),
        };
        let syn = conn.segment(t, Side::Client, TcpFlags::SYN, 0, true, Vec::new());
        conn.frames[syn].note = Note::Open;
        let synack_at = t + one_way + TURNAROUND;
        let ack = conn.ends[0].snd_nxt;
        conn.segment(
            synack_at,
            Side::Server,
            TcpFlags::SYN | TcpFlags::ACK,
            ack,
            true,
            Vec::new(),
        );
        let ack_at = synack_at + one_way + TURNAROUND;
        let ack = conn.ends[1].snd_nxt;
        conn.segment(ack_at, Side::Client, TcpFlags::ACK, ack, false, Vec::new());
        (conn, ack_at + TURNAROUND)
    }

    /// The one-way delay between the two VMs.
    pub fn one_way(&self) -> Nanos {
        self.one_way
    }

    /// Sends `data` from `side` as one burst starting at `t`. The sender must have received
    /// everything the peer sent (request/response protocols wait for the answer), so each
    /// segment acknowledges all of it.
    pub fn send(&mut self, side: Side, t: Nanos, data: &[u8]) -> Burst {
        assert!(!data.is_empty(), "a burst carries data");
        self.fire_delayed_acks(t);
        let (s, p) = (side.index(), side.peer().index());
        // This burst carries the ACK the sender owed.
        self.ends[s].owed = None;
        self.ends[s].unacked = 0;
        let ack = self.ends[p].snd_nxt;
        let chunks = data.len().div_ceil(MSS);
        let mut at = t;
        let mut first = None;
        let mut last = (0, 0);
        for (i, chunk) in data.chunks(MSS).enumerate() {
            let flags = if i + 1 == chunks {
                TcpFlags::ACK | TcpFlags::PSH
            } else {
                TcpFlags::ACK
            };
            let index = self.segment(at, side, flags, ack, false, chunk.to_vec());
            first.get_or_insert((index, at));
            last = (index, at);
            let arrival = at + self.one_way;
            self.receive(side.peer(), arrival);
            at += (HEADERS + chunk.len()) as Nanos * NS_PER_BYTE;
        }
        let (first, first_at) = first.expect("data is not empty");
        Burst {
            first,
            last: last.0,
            first_at,
            last_at: last.1,
            arrives: last.1 + self.one_way + 2 * TURNAROUND,
        }
    }

    /// Marks what a frame means to the application truth.
    pub fn note(&mut self, index: usize, note: Note) {
        self.frames[index].note = note;
    }

    /// The client closes at `t` (having received everything), the server answers with its own
    /// FIN, the client acknowledges it. Returns the planned frames.
    pub fn close(mut self, t: Nanos) -> Vec<Pending> {
        self.fire_delayed_acks(t);
        let fin = TcpFlags::FIN | TcpFlags::ACK;
        let ack = self.ends[1].snd_nxt;
        self.ends[0].owed = None;
        self.segment(t, Side::Client, fin, ack, false, Vec::new());
        let server_at = t + self.one_way + TURNAROUND;
        self.fire_delayed_acks(server_at);
        self.ends[1].owed = None;
        let ack = self.ends[0].snd_nxt;
        self.segment(server_at, Side::Server, fin, ack, false, Vec::new());
        let ack = self.ends[1].snd_nxt;
        let client_at = server_at + self.one_way + TURNAROUND;
        self.segment(
            client_at,
            Side::Client,
            TcpFlags::ACK,
            ack,
            false,
            Vec::new(),
        );
        self.frames
    }

    /// A segment arrives at `receiver`: every second one is acknowledged at once, a lone one
    /// after the delayed-ACK timeout (unless the receiver sends data first).
    fn receive(&mut self, receiver: Side, arrival: Nanos) {
        self.fire_delayed_acks(arrival);
        let r = receiver.index();
        let acked = self.ends[receiver.peer().index()].snd_nxt;
        self.ends[r].unacked += 1;
        if self.ends[r].unacked >= 2 {
            self.ends[r].unacked = 0;
            self.ends[r].owed = None;
            self.segment(
                arrival + TURNAROUND,
                receiver,
                TcpFlags::ACK,
                acked,
                false,
                Vec::new(),
            );
        } else {
            let deadline = self.ends[r].owed.map_or(arrival + DELAYED_ACK, |(d, _)| d);
            self.ends[r].owed = Some((deadline, acked));
        }
    }

    /// Sends the delayed ACKs whose timer fires before `t`.
    fn fire_delayed_acks(&mut self, t: Nanos) {
        for side in [Side::Client, Side::Server] {
            let end = &mut self.ends[side.index()];
            if let Some((deadline, ack)) = end.owed {
                if deadline < t {
                    end.owed = None;
                    end.unacked = 0;
                    self.segment(deadline, side, TcpFlags::ACK, ack, false, Vec::new());
                }
            }
        }
    }

    /// Appends one segment from `side` and advances its sequence number; returns its index.
    fn segment(
        &mut self,
        at: Nanos,
        side: Side,
        flags: TcpFlags,
        ack: u32,
        mss_option: bool,
        payload: Vec<u8>,
    ) -> usize {
        let (from, to) = (&self.ends[side.index()], &self.ends[side.peer().index()]);
        let repr = TcpRepr {
            src_port: from.port,
            dst_port: to.port,
            seq_number: from.snd_nxt,
            ack_number: ack,
            flags,
            window_len: WINDOW,
            urgent_at: 0,
        };
        let (src, dst) = (from.vm, to.vm);
        // SYN and FIN each take one sequence number.
        let control =
            u32::from(flags.contains(TcpFlags::SYN)) + u32::from(flags.contains(TcpFlags::FIN));
        self.ends[side.index()].snd_nxt = repr
            .seq_number
            .wrapping_add(payload.len() as u32)
            .wrapping_add(control);
        self.frames.push(Pending {
            at,
            src,
            dst,
            flow: self.flow,
            note: Note::Plain,
            body: Body::Tcp {
                repr,
                mss_option,
                payload,
            },
        });
        self.frames.len() - 1
    }
}
