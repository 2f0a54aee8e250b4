//! TCP connections: each direction's bytes put back in sequence order (retransmissions trimmed,
//! out-of-order segments held within a bounded window), then handed to the recognizer and to the
//! connection's protocol parser.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::app::{
    recognize_tcp, recognize_tcp_mid_stream, Dir, Protocol, Recognition, Step, Tally, TcpParser,
};
use super::{DpiStats, LabelKey, LabelTable};

/// One direction's byte stream.
#[derive(Debug, Default)]
struct Stream {
    /// The sequence number of the next byte in order, once known (from the SYN, or from the
    /// first segment seen when the SYN was missed).
    next_seq: Option<u32>,
    /// Bytes delivered in order so far (the offset of `next_seq`), skipped ones included.
    delivered: u64,
    /// Segments ahead of `next_seq`, by stream offset.
    ahead: BTreeMap<u64, Vec<u8>>,
    ahead_bytes: usize,
    /// Delivered bytes not yet read by a parser.
    buf: Vec<u8>,
    /// Delivered bytes to drop unread (a body the parser skips).
    skip: u64,
    /// Nothing more of this stream is read: it had a gap, outgrew its bounds, or its parser
    /// stopped.
    abandoned: bool,
}

/// What a segment did to its stream.
enum Accepted {
    /// New bytes were delivered in order.
    Delivered,
    /// Nothing new in order (a retransmission, or a segment held for later).
    Held,
    /// The segment lies beyond the window: a gap that will not fill within the bounds.
    Gap,
}

impl Stream {
    fn start_at(&mut self, seq: u32) {
        self.next_seq.get_or_insert(seq);
    }

    fn accept(&mut self, seq: u32, mut payload: &[u8], limit: usize) -> Accepted {
        let next = *self.next_seq.get_or_insert(seq);
        // Sequence arithmetic modulo 2^32: within 2^31 either way of the next byte.
        let mut rel = i64::from(seq.wrapping_sub(next) as i32);
        if rel < 0 {
            let behind = rel.unsigned_abs();
            if behind >= payload.len() as u64 {
                return Accepted::Held;
            }
            payload = &payload[behind as usize..];
            rel = 0;
        }
        if rel == 0 {
            self.deliver(payload);
            self.drain_ahead();
            return Accepted::Delivered;
        }
        let rel = rel as u64;
        if rel + payload.len() as u64 > limit as u64 {
            return Accepted::Gap;
        }
        let at = self.delivered + rel;
        let held = self.ahead.entry(at).or_default();
        if payload.len() > held.len() {
            self.ahead_bytes += payload.len() - held.len();
            *held = payload.to_vec();
        }
        if self.ahead_bytes + self.buf.len() > limit {
            return Accepted::Gap;
        }
        Accepted::Held
    }

    fn deliver(&mut self, bytes: &[u8]) {
        let skipped = self.skip.min(bytes.len() as u64) as usize;
        self.skip -= skipped as u64;
        self.buf.extend_from_slice(&bytes[skipped..]);
        self.delivered += bytes.len() as u64;
        self.next_seq = self.next_seq.map(|s| s.wrapping_add(bytes.len() as u32));
    }

    /// Delivers the held segments that have become contiguous.
    fn drain_ahead(&mut self) {
        while let Some(entry) = self.ahead.first_entry() {
            let at = *entry.key();
            if at > self.delivered {
                break;
            }
            let data = entry.remove();
            self.ahead_bytes -= data.len();
            let overlap = (self.delivered - at) as usize;
            if overlap < data.len() {
                self.deliver(&data[overlap..]);
            }
        }
    }

    fn abandon(&mut self) {
        self.abandoned = true;
        self.buf = Vec::new();
        self.ahead = BTreeMap::new();
        self.ahead_bytes = 0;
    }
}

/// Fresh starts of recognition for a connection joined past its opening: enough for the tail
/// of a message a few segments long; an unknown protocol is labeled by its port after them.
const JOINED_RESYNCS: u8 = 8;

/// A TCP connection between a client and a server.
pub(super) struct TcpFlow {
    pub(super) client: (Ipv4Addr, u16),
    pub(super) server: (Ipv4Addr, u16),
    /// The client's initial sequence number, when its SYN was seen.
    pub(super) client_isn: Option<u32>,
    /// Whether the connection was first seen past its opening (no SYN): its client's first
    /// bytes may be a message in the middle of a conversation.
    joined: bool,
    /// How many more times a joined connection whose bytes frame as nothing known starts
    /// recognition again from its next bytes (it may have been joined inside a message).
    resyncs_left: u8,
    handshake: [bool; 2],
    /// Whether the client sent any payload.
    client_spoke: bool,
    /// The first acknowledgment number the client sent.
    client_first_ack: Option<u32>,
    /// The client acknowledged more than with its first ACK seen: it is receiving new bytes,
    /// so this is a live connection even if the client says nothing (a download or a backup
    /// stream joined mid-way). An old segment retransmitted after the close is acknowledged
    /// with the same number again.
    client_acked_more: bool,
    fin: [bool; 2],
    reset: bool,
    pub(super) last_seen: Duration,
    streams: [Stream; 2],
    app: App,
}

enum App {
    Undecided,
    Decided {
        label: LabelKey,
        /// None for a connection labeled by its port only.
        parser: Option<TcpParser>,
    },
}

/// What a segment carries, as the flow needs it.
pub(super) struct Segment<'a> {
    pub(super) dir: Dir,
    pub(super) seq: u32,
    pub(super) syn: bool,
    pub(super) fin: bool,
    pub(super) rst: bool,
    /// The acknowledgment number, when the ACK flag is set.
    pub(super) ack: Option<u32>,
    pub(super) payload: &'a [u8],
}

/// The engine state a flow reports into.
pub(super) struct Context<'a> {
    pub(super) labels: &'a mut LabelTable,
    pub(super) stats: &'a mut DpiStats,
    pub(super) max_stream_bytes: usize,
    /// Bytes all connections hold, and their bound.
    pub(super) buffered: &'a mut usize,
    pub(super) max_buffered_bytes: usize,
}

impl TcpFlow {
    /// A connection first seen at `at`; `joined` when that first segment was no SYN.
    pub(super) fn new(
        client: (Ipv4Addr, u16),
        server: (Ipv4Addr, u16),
        at: Duration,
        joined: bool,
    ) -> Self {
        TcpFlow {
            client,
            server,
            client_isn: None,
            joined,
            resyncs_left: if joined { JOINED_RESYNCS } else { 0 },
            handshake: [false; 2],
            client_spoke: false,
            client_first_ack: None,
            client_acked_more: false,
            fin: [false; 2],
            reset: false,
            last_seen: at,
            streams: Default::default(),
            app: App::Undecided,
        }
    }

    /// Takes one segment; true when the connection is over (both FINs with nothing left
    /// out of order, or a RST).
    pub(super) fn segment(
        &mut self,
        at: Duration,
        seg: &Segment<'_>,
        cx: &mut Context<'_>,
    ) -> bool {
        let before = self.buffered();
        self.take(at, seg, cx);
        let after = self.buffered();
        *cx.buffered = *cx.buffered + after - before;
        if after > before && *cx.buffered > cx.max_buffered_bytes {
            // Over the engine's budget: the stream that grew gives up.
            self.abandon(seg.dir, cx);
            *cx.buffered -= after - self.buffered();
        }
        self.reset || (self.fin == [true; 2] && self.streams.iter().all(|s| s.ahead.is_empty()))
    }

    /// Bytes this connection holds.
    fn buffered(&self) -> usize {
        self.streams
            .iter()
            .map(|s| s.buf.len() + s.ahead_bytes)
            .sum()
    }

    fn take(&mut self, at: Duration, seg: &Segment<'_>, cx: &mut Context<'_>) {
        self.last_seen = at;
        let d = seg.dir as usize;
        let mut seq = seg.seq;
        if seg.syn {
            self.handshake[d] = true;
            if seg.dir == Dir::ToServer {
                self.client_isn.get_or_insert(seg.seq);
            }
            // The SYN takes one sequence number; data (if any) follows it.
            seq = seq.wrapping_add(1);
            self.streams[d].start_at(seq);
        }
        if let (Dir::ToServer, Some(ack)) = (seg.dir, seg.ack) {
            let first = *self.client_first_ack.get_or_insert(ack);
            // Sequence arithmetic: ahead by less than 2^31.
            self.client_acked_more |= (ack.wrapping_sub(first) as i32) > 0;
        }
        if !seg.payload.is_empty() {
            self.client_spoke |= seg.dir == Dir::ToServer;
            if !self.streams[d].abandoned {
                match self.streams[d].accept(seq, seg.payload, cx.max_stream_bytes) {
                    Accepted::Delivered => self.advance(seg.dir, at, cx),
                    Accepted::Held => {}
                    Accepted::Gap => self.abandon(seg.dir, cx),
                }
            }
        }
        self.fin[d] |= seg.fin;
        self.reset |= seg.rst;
    }

    /// The connection ends (closed or idle): one still undecided is labeled by its port, if it
    /// was a connection at all: a completed handshake, a client that said something, or a
    /// client that acknowledged new bytes. (Bytes from the server alone are often a late
    /// retransmission after the close.)
    pub(super) fn finish(&mut self, cx: &mut Context<'_>) {
        *cx.buffered -= self.buffered();
        let live = self.handshake == [true; 2] || self.client_spoke || self.client_acked_more;
        if matches!(self.app, App::Undecided) && live {
            self.decide(Protocol::OtherTcp, false, cx);
        }
    }

    fn abandon(&mut self, dir: Dir, cx: &mut Context<'_>) {
        cx.stats.streams_abandoned += 1;
        self.streams[dir as usize].abandon();
        if matches!(self.app, App::Undecided) && dir == Dir::ToServer {
            // Without the client's bytes nothing can be recognized.
            self.decide(Protocol::OtherTcp, false, cx);
        }
    }

    fn label_key(&self, protocol: Protocol) -> LabelKey {
        LabelKey {
            client: self.client.0,
            server: self.server.0,
            server_port: self.server.1,
            protocol,
        }
    }

    /// Labels the connection; `mid_stream` starts its parser past the protocol's handshake.
    fn decide(&mut self, protocol: Protocol, mid_stream: bool, cx: &mut Context<'_>) {
        let label = self.label_key(protocol);
        cx.labels.register(label, cx.stats);
        let parser = if mid_stream {
            TcpParser::mid_stream(protocol)
        } else {
            TcpParser::new(protocol)
        };
        if parser.is_none() {
            for s in &mut self.streams {
                s.abandon();
            }
        }
        self.app = App::Decided { label, parser };
    }

    /// Runs recognition or the parser after new bytes arrived in `dir`.
    fn advance(&mut self, dir: Dir, at: Duration, cx: &mut Context<'_>) {
        let other = match dir {
            Dir::ToServer => Dir::ToClient,
            Dir::ToClient => Dir::ToServer,
        };
        let order = match self.app {
            App::Undecided => {
                let [to_server, to_client] = &self.streams;
                let recognition = if self.joined {
                    recognize_tcp_mid_stream(&to_server.buf, &to_client.buf)
                } else {
                    recognize_tcp(&to_server.buf, &to_client.buf)
                };
                let (protocol, mid_stream) = match recognition {
                    Recognition::Known(protocol) => (protocol, false),
                    Recognition::MidStream(protocol) => (protocol, true),
                    Recognition::Unknown if self.resyncs_left > 0 => {
                        // Joined inside a message, whose tail frames as nothing: try again
                        // from the next bytes, where a new message usually begins a segment.
                        self.resyncs_left -= 1;
                        for s in &mut self.streams {
                            s.buf.clear();
                        }
                        return;
                    }
                    Recognition::Unknown => (Protocol::OtherTcp, false),
                    Recognition::NeedMore => {
                        if self.streams[dir as usize].buf.len() > cx.max_stream_bytes {
                            self.abandon(dir, cx);
                        }
                        return;
                    }
                };
                self.decide(protocol, mid_stream, cx);
                // What the other direction holds came before the bytes that decided.
                [other, dir]
            }
            App::Decided { .. } => [dir, other],
        };
        for d in order {
            self.parse(d, at, cx);
        }
    }

    /// Lets the parser read what `dir` has buffered.
    fn parse(&mut self, dir: Dir, at: Duration, cx: &mut Context<'_>) {
        let App::Decided {
            label,
            parser: Some(parser),
        } = &mut self.app
        else {
            return;
        };
        let stream = &mut self.streams[dir as usize];
        if stream.abandoned || stream.buf.is_empty() {
            return;
        }
        let max_details = cx.labels.max_details;
        let mut tally = Tally::new(
            at,
            cx.labels.get_mut(label),
            max_details,
            &mut cx.stats.details_dropped,
        );
        let mut read = 0;
        let mut stop = None;
        while read < stream.buf.len() {
            match parser.step(dir, &stream.buf[read..], &mut tally) {
                Step::More => break,
                Step::Advance { consumed, skip } => {
                    debug_assert!(consumed > 0, "a parser advances by at least one byte");
                    read += consumed;
                    let now = skip.min((stream.buf.len() - read) as u64);
                    read += now as usize;
                    stream.skip = skip - now;
                }
                s @ (Step::Fail | Step::Opaque) => {
                    stop = Some(s);
                    break;
                }
            }
        }
        stream.buf.drain(..read);
        match stop {
            Some(Step::Fail) => {
                cx.stats.parse_failures += 1;
                stream.abandon();
            }
            Some(_) => {
                for s in &mut self.streams {
                    s.abandon();
                }
            }
            None if stream.buf.len() + stream.ahead_bytes > cx.max_stream_bytes => {
                self.abandon(dir, cx);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(segments: &[(u32, &[u8])], limit: usize) -> (Vec<u8>, bool) {
        let mut s = Stream::default();
        s.start_at(1000);
        for &(seq, data) in segments {
            if let Accepted::Gap = s.accept(seq, data, limit) {
                return (s.buf, true);
            }
        }
        (s.buf, false)
    }

    #[test]
    fn retransmissions_and_overlaps_are_trimmed() {
        let (bytes, gap) = collect(
            &[
                (1000, b"abc"),
                (1000, b"abc"),
                (1002, b"cdef"),
                (1008, b"ij"),
                (1005, b"fgh"),
            ],
            100,
        );
        assert_eq!((bytes.as_slice(), gap), (&b"abcdefghij"[..], false));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut s = Stream::default();
        s.start_at(u32::MAX - 1);
        assert!(matches!(s.accept(0, b"cd", 100), Accepted::Held));
        assert!(matches!(
            s.accept(u32::MAX - 1, b"ab", 100),
            Accepted::Delivered
        ));
        assert!(matches!(s.accept(u32::MAX, b"bc", 100), Accepted::Held));
        assert_eq!(s.buf, b"abcd");
        assert_eq!(s.next_seq, Some(2));
    }

    #[test]
    fn a_gap_beyond_the_window_is_reported() {
        let (bytes, gap) = collect(&[(1000, b"ab"), (1200, b"zz")], 100);
        assert_eq!((bytes.as_slice(), gap), (&b"ab"[..], true));
        // Held bytes count against the bound too.
        let (_, gap) = collect(&[(1010, &[0; 50]), (1060, &[0; 40]), (1100, &[0; 20])], 100);
        assert!(gap);
    }

    #[test]
    fn skipped_bytes_are_dropped_as_they_arrive() {
        let mut s = Stream::default();
        s.start_at(0);
        s.skip = 5;
        assert!(matches!(s.accept(0, b"abc", 100), Accepted::Delivered));
        assert!(s.buf.is_empty());
        assert!(matches!(s.accept(3, b"defgh", 100), Accepted::Delivered));
        assert_eq!(s.buf, b"fgh");
        assert_eq!(s.delivered, 8);
    }
}
