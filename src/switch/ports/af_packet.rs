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
//! The `unsafe` blocks are the libc calls; each one is commented with what makes it sound.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

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
        let _ = socket.set_option(libc::PACKET_IGNORE_OUTGOING, &1i32);
        let membership = libc::packet_mreq {
            mr_ifindex: ifindex,
            mr_type: libc::PACKET_MR_PROMISC as u16,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        socket.set_option(libc::PACKET_ADD_MEMBERSHIP, &membership)?;

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

    fn set_option<T>(&self, option: libc::c_int, value: &T) -> io::Result<()> {
        let len = libc::socklen_t::try_from(std::mem::size_of::<T>())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "option too large"))?;
        // SAFETY: `value` points to a live `T` of `len` bytes for the duration of the call.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
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

    /// Sends one whole Ethernet frame out of the interface without blocking.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is readable for `frame.len()` bytes during the call. The socket is
        // bound, so the kernel sends on its interface.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast::<libc::c_void>(),
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
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
