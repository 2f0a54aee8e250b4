//! Batched datagram I/O (Linux `recvmmsg`/`sendmmsg`) for the UDP wires: one syscall moves up
//! to [`BATCH`] messages, and with UDP GSO/GRO one message carries a run of frames, which is
//! what lets a wire carry hundreds of thousands of frames a second.
//!
//! The sockets are used connected (to the wire's peer), so no addresses travel with the
//! messages. The `unsafe` blocks are the libc calls, the zero-initialisation of the C message
//! headers and the control messages; each one says what makes it sound.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Messages per syscall.
pub const BATCH: usize = 64;

/// Room per received message: the largest UDP datagram, or a GRO run of datagrams.
pub const SLOT: usize = 64 * 1024;

/// Control-message room per message: a `UDP_SEGMENT` or `UDP_GRO` value and an `SO_RXQ_OVFL`
/// count, 8-byte aligned.
type Control = [u64; 8];

/// Buffers for one `recvmmsg` call, reused from call to call.
pub struct RecvBatch {
    /// BATCH slots of SLOT bytes (allocated zeroed, so pages are only touched when used).
    storage: Vec<u8>,
    /// Each message's length and the size of the datagrams it holds (GRO), from the last call.
    messages: [(usize, usize); BATCH],
    count: usize,
    /// The socket's drop counter as the last message carrying it reported it (`SO_RXQ_OVFL`).
    drop_counter: Option<u32>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new()
    }
}

impl RecvBatch {
    pub fn new() -> RecvBatch {
        RecvBatch {
            storage: vec![0; BATCH * SLOT],
            messages: [(0, 0); BATCH],
            count: 0,
            drop_counter: None,
        }
    }

    /// Receives up to [`BATCH`] queued messages without blocking; the count received
    /// (`WouldBlock` when none was queued).
    pub fn receive(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.count = 0;
        let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|i| libc::iovec {
            iov_base: self.storage[i * SLOT..].as_mut_ptr().cast(),
            iov_len: SLOT,
        });
        let mut controls: [Control; BATCH] = [[0; 8]; BATCH];
        // SAFETY: mmsghdr is a C struct of integers and pointers, for which all-zero bytes are
        // a valid value (null pointers, zero lengths).
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for ((header, iovec), control) in headers
            .iter_mut()
            .zip(iovecs.iter_mut())
            .zip(controls.iter_mut())
        {
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = control.as_mut_ptr().cast();
            header.msg_hdr.msg_controllen = std::mem::size_of::<Control>() as _;
        }
        // SAFETY: each header points to one iovec describing SLOT writable bytes of `storage`
        // and to its own control buffer; headers, iovecs, controls and storage all outlive the
        // call, and BATCH is their length.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n.unsigned_abs() as usize;
        for (message, header) in self.messages.iter_mut().zip(headers.iter().take(n)) {
            let len = (header.msg_len as usize).min(SLOT);
            let received = control_values(&header.msg_hdr);
            *message = (len, received.gro_segment.unwrap_or(len));
            if let Some(counter) = received.drop_counter {
                self.drop_counter = Some(counter);
            }
        }
        self.count = n;
        Ok(n)
    }

    /// The socket's count of datagrams the kernel dropped (its receive buffer full), as of the
    /// latest message that reported one: a wrapping 32-bit counter, `None` until the first drop
    /// (the kernel reports it only when non-zero, and only with [`enable_drop_counts`]).
    pub fn drop_counter(&self) -> Option<u32> {
        self.drop_counter
    }

    /// The datagrams of the last receive, in order (GRO runs split back into datagrams).
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.messages[..self.count]
            .iter()
            .enumerate()
            .flat_map(move |(i, &(len, segment))| {
                let message = &self.storage[i * SLOT..i * SLOT + len];
                // An empty datagram is still one (empty) frame.
                let parts = if len == 0 { 1 } else { len.div_ceil(segment) };
                (0..parts)
                    .map(move |k| &message[(k * segment).min(len)..((k + 1) * segment).min(len)])
            })
    }
}

/// What a received message's control messages said.
#[derive(Default)]
struct ControlValues {
    /// The datagram size of a GRO run (`UDP_GRO`).
    gro_segment: Option<usize>,
    /// The socket's drop counter (`SO_RXQ_OVFL`).
    drop_counter: Option<u32>,
}

fn control_values(header: &libc::msghdr) -> ControlValues {
    let mut values = ControlValues::default();
    // SAFETY: the kernel filled msg_control/msg_controllen (within the buffer we gave it);
    // CMSG_FIRSTHDR/CMSG_NXTHDR return null past the last header that fits, and CMSG_DATA of a
    // UDP_GRO or SO_RXQ_OVFL header points at its 4-byte value, read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::SOL_UDP, libc::UDP_GRO) => {
                    let size = data.cast::<libc::c_int>().read_unaligned();
                    values.gro_segment = usize::try_from(size).ok().filter(|s| *s > 0);
                }
                (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                    values.drop_counter = Some(data.cast::<u32>().read_unaligned());
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    values
}

/// Asks the kernel to tell, with each datagram received after a drop, how many datagrams the
/// socket has dropped so far (`SO_RXQ_OVFL`; see [`RecvBatch::drop_counter`]).
pub fn enable_drop_counts(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
}

/// Asks the kernel to hand over runs of same-sized datagrams from one sender as one message
/// (`UDP_GRO`), which [`RecvBatch`] splits back.
pub fn enable_gro(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int_option(fd, libc::SOL_UDP, libc::UDP_GRO, 1)
}

fn set_int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            option,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Most datagrams one UDP GSO send may be cut into (the kernel's UDP_MAX_SEGMENTS, 64 on
/// older kernels).
const GSO_MAX_SEGMENTS: usize = 64;

/// Most payload bytes of one UDP GSO send (a UDP datagram's limit, with room for headers).
const GSO_MAX_BYTES: usize = 65_000;

/// Sends `frames` as datagrams on the connected socket `fd` without blocking; returns how many
/// the kernel took (it stops at the first error, which is returned when nothing at all was
/// sent). Runs of equal-sized frames go out as one UDP GSO message each (`UDP_SEGMENT`): the
/// kernel cuts it into the same datagrams, for a fraction of the per-datagram cost, and the
/// receiver sees ordinary datagrams (or, with UDP_GRO, coalesced ones it splits back).
pub fn send_batch(fd: BorrowedFd<'_>, frames: &[&[u8]]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < frames.len() {
        let chunk = &frames[sent..frames.len().min(sent + BATCH)];
        let mut iovecs: [libc::iovec; BATCH] = send_iovecs(chunk);
        // SAFETY: as in RecvBatch::receive, all-zero is a valid mmsghdr.
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let mut controls: [Control; BATCH] = [[0; 8]; BATCH];
        let mut frames_in = [0usize; BATCH];
        let mut messages = 0;
        let mut first = 0;
        while first < chunk.len() {
            // A run: frames of the first one's size, the last possibly shorter (GSO's rule).
            let size = chunk[first].len();
            let (mut run, mut bytes) = (1, size);
            while size > 0 && first + run < chunk.len() && run < GSO_MAX_SEGMENTS {
                let next = chunk[first + run].len();
                if next > size || bytes + next > GSO_MAX_BYTES {
                    break;
                }
                bytes += next;
                run += 1;
                if next < size {
                    break;
                }
            }
            let header = &mut headers[messages].msg_hdr;
            header.msg_iov = &mut iovecs[first];
            header.msg_iovlen = run;
            if run > 1 {
                set_segment_size(header, &mut controls[messages], size);
            }
            frames_in[messages] = run;
            messages += 1;
            first += run;
        }
        // SAFETY: the first `messages` headers each point to their run of iovecs, each
        // describing a frame borrowed for the whole call, and to their control buffer; all
        // outlive the call. The kernel only reads them (iovec is *mut for readv's sake).
        let n = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                headers.as_mut_ptr(),
                messages as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if sent == 0 { Err(err) } else { Ok(sent) };
        }
        let n = n.unsigned_abs() as usize;
        sent += frames_in[..n].iter().sum::<usize>();
        if n < messages {
            // The kernel stopped early (a full buffer): the rest would fail the same way now.
            break;
        }
    }
    Ok(sent)
}

/// One iovec per frame of `chunk` (at most N), empty ones after: what a sendmmsg call's
/// messages point to. The kernel only reads them (iovec is *mut for readv's sake).
pub(super) fn send_iovecs<const N: usize>(chunk: &[&[u8]]) -> [libc::iovec; N] {
    std::array::from_fn(|i| libc::iovec {
        iov_base: chunk
            .get(i)
            .map_or(std::ptr::null_mut(), |f| f.as_ptr().cast_mut().cast()),
        iov_len: chunk.get(i).map_or(0, |f| f.len()),
    })
}

/// Attaches a `UDP_SEGMENT` control message (segment size `size`) to `header`, in `control`.
fn set_segment_size(header: &mut libc::msghdr, control: &mut Control, size: usize) {
    // Frames in a run are at most GSO_MAX_BYTES long, so the size fits in a u16.
    let size = u16::try_from(size).unwrap_or(u16::MAX);
    header.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is arithmetic; the result (24 on 64-bit Linux) fits `control`
    // (32 bytes), which is what makes the writes below stay in bounds.
    header.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
    // SAFETY: msg_control/msg_controllen describe `control`, zeroed and large enough for one
    // header and a u16, so CMSG_FIRSTHDR returns a valid, aligned pointer into it and
    // CMSG_DATA points at the u16's room.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(header);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
        libc::CMSG_DATA(cmsg).cast::<u16>().write_unaligned(size);
    }
}

/// Asks for `bytes` of kernel buffer in each direction: bursts then queue instead of being
/// dropped. With CAP_NET_ADMIN the kernel grants them whatever its `net.core.{r,w}mem_max`;
/// without, at most those limits (212,992 bytes on a stock kernel).
pub fn set_buffer_sizes(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer size too large"))?;
    for (forced, capped) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if set_int_option(fd, libc::SOL_SOCKET, forced, value).is_err() {
            set_int_option(fd, libc::SOL_SOCKET, capped, value)?;
        }
    }
    Ok(())
}

/// `SO_MEMINFO` (include/uapi/asm-generic/socket.h; the libc crate lacks it).
const SO_MEMINFO: libc::c_int = 55;

/// The socket's drop counter now (the same wrapping count [`RecvBatch::drop_counter`] reports
/// with datagrams): for the drops no later datagram has reported yet.
pub fn drop_counter_now(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut info = [0u32; libc::SK_MEMINFO_DROPS as usize + 1];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is a live array of `len` bytes; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < std::mem::size_of_val(&info) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_MEMINFO without a drop count",
        ));
    }
    Ok(info[libc::SK_MEMINFO_DROPS as usize])
}

/// The receive buffer the kernel granted, in bytes it charges (twice what was asked).
pub fn receive_buffer_bytes(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a live c_int and `len` its size, both outliving the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(value).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    /// Sends frames of many sizes (runs of equal ones: GSO) and receives them, with the
    /// receiver coalescing runs (GRO) or not: the same frames must come out, in order.
    fn round_trip(gro: bool) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        set_buffer_sizes(b.as_fd(), 4 << 20).unwrap();
        if gro {
            enable_gro(b.as_fd()).unwrap();
        }
        // 100 of 64 bytes (more than one GSO message), shorter and longer neighbours, empty
        // ones, sizes that change at every frame, and the largest UDP datagram.
        let sizes = (0..100)
            .map(|_| 64)
            .chain([
                60, 60, 80, 80, 80, 20, 0, 0, 1, 1500, 1500, 1499, 9000, 9000,
            ])
            .chain((0..35).map(|i| 14 + i))
            .chain([65_507]);
        let frames: Vec<Vec<u8>> = sizes
            .enumerate()
            .map(|(i, len)| (0..len).map(|j| (i + j) as u8).collect())
            .collect();
        assert_eq!(frames.len(), 150);
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        assert_eq!(send_batch(a.as_fd(), &refs).unwrap(), 150);

        let mut batch = RecvBatch::new();
        let mut got = Vec::new();
        let mut messages = 0;
        // Loopback delivers during the send; bounded in case it did not.
        for _ in 0..200 {
            match batch.receive(b.as_fd()) {
                Ok(n) => {
                    messages += n;
                    got.extend(batch.frames().map(<[u8]>::to_vec));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got.len(), frames.len());
        assert!(got == frames, "frames differ (gro: {gro})");
        // With GRO the runs arrive coalesced: fewer messages than frames.
        assert_eq!(messages < frames.len(), gro, "{messages} messages");
    }

    #[test]
    fn batches_round_trip_in_order() {
        round_trip(false);
    }

    #[test]
    fn gro_runs_are_split_back_into_the_frames_sent() {
        round_trip(true);
    }

    #[test]
    fn kernel_drops_are_reported_with_the_next_datagram_and_on_demand() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        b.set_nonblocking(true).unwrap();
        enable_drop_counts(b.as_fd()).unwrap();
        // The smallest buffer the kernel allows holds a few datagrams; 200 overflow it.
        set_int_option(b.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 1).unwrap();
        let frame = [7u8; 100];
        for _ in 0..200 {
            a.send(&frame).unwrap();
        }
        let dropped = drop_counter_now(b.as_fd()).unwrap();
        let mut batch = RecvBatch::new();
        let mut received = 0;
        while let Ok(n) = batch.receive(b.as_fd()) {
            assert!(n > 0);
            received += batch.frames().count() as u32;
        }
        assert!(dropped > 0, "nothing was dropped");
        assert_eq!(received + dropped, 200);
        // The datagrams queued before the drops carry no count; the next one does.
        a.send(&frame).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(batch.receive(b.as_fd()).unwrap(), 1);
        assert_eq!(batch.drop_counter(), Some(dropped));
    }

    #[test]
    fn sending_to_an_unconnected_socket_is_an_error() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(send_batch(a.as_fd(), &[b"frame"]).is_err());
        assert_eq!(send_batch(a.as_fd(), &[]).unwrap(), 0);
    }
}
