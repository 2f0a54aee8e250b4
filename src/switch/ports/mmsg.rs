//! Batched datagram I/O (Linux `recvmmsg`/`sendmmsg`) for the UDP wires: one syscall moves up
//! to [`BATCH`] frames, which is what lets a wire carry hundreds of thousands of frames a second.
//!
//! The sockets are used connected (to the wire's peer), so no addresses travel with the
//! messages. The `unsafe` blocks are the libc calls and the zero-initialisation of the C message
//! headers; each one says what makes it sound.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Datagrams per syscall.
pub const BATCH: usize = 64;

/// Room per received datagram: any Ethernet frame, jumbo ones included. A longer datagram is
/// cut to this length by the kernel (and then handled as it is, like a frame cut on a wire).
pub const SLOT: usize = 16 * 1024;

/// Buffers for one `recvmmsg` call, reused from call to call.
pub struct RecvBatch {
    storage: Vec<u8>,
    lens: [usize; BATCH],
    count: usize,
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
            lens: [0; BATCH],
            count: 0,
        }
    }

    /// Receives up to [`BATCH`] queued datagrams without blocking; the count received
    /// (`WouldBlock` when none was queued).
    pub fn receive(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.count = 0;
        let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|i| libc::iovec {
            iov_base: self.storage[i * SLOT..].as_mut_ptr().cast(),
            iov_len: SLOT,
        });
        // SAFETY: mmsghdr is a C struct of integers and pointers, for which all-zero bytes are
        // a valid value (null pointers, zero lengths).
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (header, iovec) in headers.iter_mut().zip(iovecs.iter_mut()) {
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: each header points to one iovec describing SLOT writable bytes of `storage`;
        // headers, iovecs and storage all outlive the call, and BATCH is their length.
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
        for (len, header) in self.lens.iter_mut().zip(headers.iter().take(n)) {
            *len = (header.msg_len as usize).min(SLOT);
        }
        self.count = n;
        Ok(n)
    }

    /// The datagrams of the last receive, in order.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.lens[..self.count]
            .iter()
            .enumerate()
            .map(|(i, len)| &self.storage[i * SLOT..i * SLOT + len])
    }
}

/// Sends `frames` as datagrams on the connected socket `fd` without blocking, [`BATCH`] per
/// syscall; returns how many the kernel took (it stops at the first error, which is returned
/// when nothing at all was sent).
pub fn send_batch(fd: BorrowedFd<'_>, frames: &[&[u8]]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < frames.len() {
        let chunk = &frames[sent..frames.len().min(sent + BATCH)];
        let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|i| libc::iovec {
            iov_base: chunk
                .get(i)
                .map_or(std::ptr::null_mut(), |f| f.as_ptr().cast_mut().cast()),
            iov_len: chunk.get(i).map_or(0, |f| f.len()),
        });
        // SAFETY: as in RecvBatch::receive, all-zero is a valid mmsghdr.
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (header, iovec) in headers.iter_mut().zip(iovecs.iter_mut()) {
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the first chunk.len() headers each point to one iovec describing a frame that
        // is borrowed for the whole call; the kernel only reads them (the iovec type is *mut
        // for readv's sake).
        let n = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                headers.as_mut_ptr(),
                chunk.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if sent == 0 { Err(err) } else { Ok(sent) };
        }
        let n = n.unsigned_abs() as usize;
        sent += n;
        if n < chunk.len() {
            // The kernel stopped early (a full buffer): the rest would fail the same way now.
            break;
        }
    }
    Ok(sent)
}

/// Asks for `bytes` of kernel buffer in each direction (the kernel may grant less, up to its
/// `net.core.{r,w}mem_max`): bursts then queue instead of being dropped.
pub fn set_buffer_sizes(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer size too large"))?;
    for option in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: `value` is a live c_int and the length passed is its size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn batches_round_trip_in_order_and_cut_oversized_datagrams() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        set_buffer_sizes(b.as_fd(), 4 << 20).unwrap();
        let frames: Vec<Vec<u8>> = (0..150u32)
            .map(|i| vec![i as u8; 14 + i as usize])
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        assert_eq!(send_batch(a.as_fd(), &refs).unwrap(), 150);
        a.send(&vec![7u8; SLOT + 1]).unwrap();

        let mut batch = RecvBatch::new();
        let mut got = Vec::new();
        // Loopback delivers during the send; bounded in case it did not.
        for _ in 0..100 {
            match batch.receive(b.as_fd()) {
                Ok(_) => got.extend(batch.frames().map(<[u8]>::to_vec)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got.len(), 151);
        assert_eq!(got[..150], frames[..]);
        assert_eq!(got[150], vec![7u8; SLOT]);
        assert_eq!(
            batch.receive(b.as_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn sending_to_an_unconnected_socket_is_an_error() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(send_batch(a.as_fd(), &[b"frame"]).is_err());
        assert_eq!(send_batch(a.as_fd(), &[]).unwrap(), 0);
    }
}
