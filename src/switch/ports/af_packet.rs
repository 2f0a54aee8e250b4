//! A switch port on a Linux interface (`-i 1@veth0`): a raw AF_PACKET socket bound to it.
//!
//! The socket sees every frame the interface receives (promiscuous mode, so frames for other
//! MAC addresses too) and sends whole Ethernet frames out of it. Frames the host itself sends
//! on the interface, this switch's own included, are ignored: a switch that read back what it
//! sent would loop them. Needs CAP_NET_RAW (root).
//!
//! Offloads are the interface's business: on a veth with GRO a frame may arrive larger than
//! the MTU, and the switch handles it as it comes.
//!
//! Frames move in batches of up to [`BATCH`] per syscall (`recvmmsg`/`sendmmsg`), as on the UDP
//! wires. The `unsafe` blocks are the libc calls and the zero-initialisation of their C structs;
//! each one is commented with what makes it sound.
//!
//! Frames that arrive while the switch is not reading wait in the socket's receive buffer; when
//! it is full the kernel drops them. The buffer is made large ([`SOCKET_BUFFER_BYTES`]) and
//! the kernel's drop count is readable ([`PacketSocket::take_drops`]) so that a drop is counted,
//! never silent.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Frames per syscall.
pub const BATCH: usize = 64;

/// Room per received frame: larger than any frame, jumbo and GRO-merged ones included (a longer
/// one is cut to this).
pub const SLOT: usize = 64 * 1024;

/// Kernel buffer asked for each way. The receive side must hold every frame that arrives while
/// the switch is not reading: a burst from a fast sender while the switch's thread waits for a
/// CPU (tens of milliseconds on a busy host). The kernel charges each queued frame its whole
/// allocation, about 830 bytes for a minimum-size one, so the default 212,992 bytes held 256
/// and dropped the rest of longer bursts; this holds thousands.
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// `ETH_P_ALL` in network byte order, as AF_PACKET's protocol fields want it.
fn eth_p_all() -> u16 {
    (libc::ETH_P_ALL as u16).to_be()
}

/// A non-blocking AF_PACKET raw socket bound to one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

/// The outcome of one receive.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A frame the interface received, `len` bytes at the front of the buffer.
    Frame(usize),
    /// A frame the host sent on the interface: not input.
    Outgoing,
}

impl PacketSocket {
    /// Opens a socket on interface `name`, in promiscuous mode.
    pub fn open(name: &str) -> io::Result<PacketSocket> {
        let c_name = CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
        // SAFETY: `c_name` is a valid NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        let ifindex = i32::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "interface index too large"))?;
        // Protocol 0: the socket receives nothing until it is bound below, so no frame of
        // another interface slips in between.
        // SAFETY: plain syscall with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a socket this function just opened and nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let socket = PacketSocket { fd, ifindex };

        // Best effort: kernels from 4.20 drop outgoing frames before they reach this socket;
        // `receive` checks the packet type anyway, for older ones.
        let _ = socket.set_option(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1i32);
        socket.set_buffer_size(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)?;
        socket.set_buffer_size(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)?;
        let membership = libc::packet_mreq {
            mr_ifindex: ifindex,
            mr_type: libc::PACKET_MR_PROMISC as u16,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        socket.set_option(libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &membership)?;

        let mut addr = empty_sockaddr_ll();
        addr.sll_protocol = eth_p_all();
        addr.sll_ifindex = ifindex;
        // SAFETY: `addr` is a valid sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                socket.fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                sockaddr_ll_len(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(socket)
    }

    /// The interface's index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Asks for [`SOCKET_BUFFER_BYTES`] with `force` (past `net.core.[rw]mem_max`, which needs
    /// CAP_NET_ADMIN), else with `plain`, which the kernel caps at that limit.
    fn set_buffer_size(&self, force: libc::c_int, plain: libc::c_int) -> io::Result<()> {
        let bytes = libc::c_int::try_from(SOCKET_BUFFER_BYTES)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer size too large"))?;
        match self.set_option(libc::SOL_SOCKET, force, &bytes) {
            Err(err) if err.raw_os_error() == Some(libc::EPERM) => {
                self.set_option(libc::SOL_SOCKET, plain, &bytes)
            }
            other => other,
        }
    }

    /// The receive buffer the kernel granted, in bytes of its accounting (it doubles what was
    /// asked, for its bookkeeping).
    pub fn receive_buffer_bytes(&self) -> io::Result<usize> {
        let mut value: libc::c_int = 0;
        self.get_option(libc::SOL_SOCKET, libc::SO_RCVBUF, &mut value)?;
        Ok(usize::try_from(value).unwrap_or(0))
    }

    /// Frames the kernel dropped for this socket since the last call (the kernel resets its
    /// count on each read): its receive buffer was full, or memory ran out.
    pub fn take_drops(&self) -> io::Result<u64> {
        let mut stats = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        self.get_option(libc::SOL_PACKET, libc::PACKET_STATISTICS, &mut stats)?;
        Ok(u64::from(stats.tp_drops))
    }

    fn get_option<T>(
        &self,
        level: libc::c_int,
        option: libc::c_int,
        value: &mut T,
    ) -> io::Result<()> {
        let mut len = libc::socklen_t::try_from(std::mem::size_of::<T>())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "option too large"))?;
        // SAFETY: `value` is a live, writable `T` of `len` bytes for the duration of the call;
        // the kernel writes at most `len` bytes and the types read here are plain integers.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                level,
                option,
                (value as *mut T).cast::<libc::c_void>(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn set_option<T>(&self, level: libc::c_int, option: libc::c_int, value: &T) -> io::Result<()> {
        let len = libc::socklen_t::try_from(std::mem::size_of::<T>())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "option too large"))?;
        // SAFETY: `value` points to a live `T` of `len` bytes for the duration of the call.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                option,
                (value as *const T).cast::<libc::c_void>(),
                len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one frame into `buf` without blocking (`WouldBlock` when none is queued).
    /// A frame longer than `buf` is truncated to it.
    pub fn receive(&self, buf: &mut [u8]) -> io::Result<Received> {
        let mut from = empty_sockaddr_ll();
        let mut from_len = sockaddr_ll_len();
        // SAFETY: `buf` is writable for `buf.len()` bytes, `from` for `from_len` bytes, and
        // both outlive the call.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast::<libc::c_void>(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&raw mut from).cast::<libc::sockaddr>(),
                &mut from_len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            return Ok(Received::Outgoing);
        }
        // recvfrom returns at most buf.len() without MSG_TRUNC.
        Ok(Received::Frame(n.unsigned_abs()))
    }

    /// Receives up to [`BATCH`] queued frames into `batch` without blocking; how many messages
    /// came (`WouldBlock` when none was queued). [`ReceiveBatch::frames`] leaves out the ones
    /// the host sent.
    pub fn receive_batch(&self, batch: &mut ReceiveBatch) -> io::Result<usize> {
        batch.count = 0;
        let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|i| libc::iovec {
            iov_base: batch.storage[i * SLOT..].as_mut_ptr().cast(),
            iov_len: SLOT,
        });
        let mut from = [empty_sockaddr_ll(); BATCH];
        // SAFETY: mmsghdr is a C struct of integers and pointers, for which all-zero bytes are
        // a valid value (null pointers, zero lengths).
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for ((header, iovec), from) in headers.iter_mut().zip(&mut iovecs).zip(&mut from) {
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_name = (from as *mut libc::sockaddr_ll).cast();
            header.msg_hdr.msg_namelen = sockaddr_ll_len();
        }
        // SAFETY: each header points to one iovec describing SLOT writable bytes of the batch's
        // storage and to its own sockaddr_ll of the length given; headers, iovecs, addresses and
        // storage all outlive the call, and BATCH is their length.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
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
        for ((message, header), from) in batch.messages.iter_mut().zip(&headers).zip(&from).take(n)
        {
            // Without MSG_TRUNC the length is what was stored, at most SLOT.
            let len = (header.msg_len as usize).min(SLOT);
            *message = (len, from.sll_pkttype == libc::PACKET_OUTGOING);
        }
        batch.count = n;
        Ok(n)
    }

    /// Sends whole Ethernet frames out of the interface, in order, without blocking; how many
    /// the kernel took (it stops at the first error, which is returned when nothing was sent).
    pub fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        let mut sent = 0;
        while sent < frames.len() {
            let chunk = &frames[sent..frames.len().min(sent + BATCH)];
            let mut iovecs: [libc::iovec; BATCH] = super::mmsg::send_iovecs(chunk);
            // SAFETY: as in receive_batch, all-zero is a valid mmsghdr.
            let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for (header, iovec) in headers.iter_mut().zip(&mut iovecs) {
                header.msg_hdr.msg_iov = iovec;
                header.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the first chunk.len() headers each point to one iovec describing a frame
            // borrowed for the whole call; the kernel only reads them (iovec is *mut for
            // readv's sake). No address: the socket is bound, so the kernel sends on its
            // interface.
            let n = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
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
                // The kernel stopped early (a full queue): the rest would fail the same way now.
                break;
            }
        }
        Ok(sent)
    }
}

/// Buffers for one [`PacketSocket::receive_batch`], reused from call to call.
pub struct ReceiveBatch {
    /// BATCH slots of SLOT bytes (allocated zeroed, so pages are only touched when used).
    storage: Vec<u8>,
    /// Each message's length and whether the host sent it, from the last call.
    messages: [(usize, bool); BATCH],
    count: usize,
}

impl Default for ReceiveBatch {
    fn default() -> Self {
        ReceiveBatch::new()
    }
}

impl ReceiveBatch {
    pub fn new() -> ReceiveBatch {
        ReceiveBatch {
            storage: vec![0; BATCH * SLOT],
            messages: [(0, false); BATCH],
            count: 0,
        }
    }

    /// The frames the interface received in the last call, in order (the host's own left out).
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.messages[..self.count]
            .iter()
            .enumerate()
            .filter(|(_, (_, outgoing))| !outgoing)
            .map(|(i, &(len, _))| &self.storage[i * SLOT..i * SLOT + len])
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn empty_sockaddr_ll() -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: 0,
        sll_ifindex: 0,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    }
}

fn sockaddr_ll_len() -> libc::socklen_t {
    // A 20-byte struct: it fits.
    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interface_is_an_error_not_a_panic() {
        let err = PacketSocket::open("vmdep-absent0").unwrap_err();
        // ENODEV from if_nametoindex; an unprivileged run may not get that far.
        assert!(
            err.raw_os_error() == Some(libc::ENODEV) || err.kind() == io::ErrorKind::NotFound,
            "{err}"
        );
        assert!(PacketSocket::open("a\0b").is_err());
    }
}
