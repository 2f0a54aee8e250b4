//! The server's uplink: a UDP "wire" on loopback to its P4 switch port, one Ethernet frame per
//! datagram, written `udp:LOCAL_ADDR:PORT=PEER_ADDR:PORT` as `vmdep switch -i` writes its
//! ports (the parser is the host's own: the host does not depend on the switch).

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::str::FromStr;

use thiserror::Error;

/// Where the uplink's datagrams come in (`local`) and go (`peer`, the switch port's address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpWire {
    pub local: SocketAddr,
    pub peer: SocketAddr,
}

/// A text that is not a UDP wire.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UdpWireError {
    #[error("`{0}`: expected udp:LOCAL_ADDR:PORT=PEER_ADDR:PORT")]
    Syntax(String),
    #[error("`{spec}`: `{addr}` is not an IP address with a port")]
    Address { spec: String, addr: String },
    #[error("`{spec}`: {addr} is not a loopback address; UDP wires stay on 127.0.0.0/8 or ::1")]
    NotLoopback { spec: String, addr: SocketAddr },
    #[error("`{spec}`: the peer needs a port (0 is no port)")]
    PeerPortZero { spec: String },
}

impl FromStr for UdpWire {
    type Err = UdpWireError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (local, peer) = spec
            .strip_prefix("udp:")
            .and_then(|wire| wire.split_once('='))
            .ok_or_else(|| UdpWireError::Syntax(spec.to_string()))?;
        let parse = |addr: &str| -> Result<SocketAddr, UdpWireError> {
            let parsed: SocketAddr = addr.parse().map_err(|_| UdpWireError::Address {
                spec: spec.to_string(),
                addr: addr.to_string(),
            })?;
            if !parsed.ip().is_loopback() {
                return Err(UdpWireError::NotLoopback {
                    spec: spec.to_string(),
                    addr: parsed,
                });
            }
            Ok(parsed)
        };
        let wire = UdpWire {
            local: parse(local)?,
            peer: parse(peer)?,
        };
        if wire.peer.port() == 0 {
            return Err(UdpWireError::PeerPortZero {
                spec: spec.to_string(),
            });
        }
        Ok(wire)
    }
}

impl UdpWire {
    /// Binds the wire's local end, connected to its peer, with large kernel buffers (a burst
    /// of frames then waits in the kernel for its reader instead of being dropped).
    pub fn open(&self) -> io::Result<tokio::net::UdpSocket> {
        let socket = UdpSocket::bind(self.local)?;
        socket.connect(self.peer)?;
        socket.set_nonblocking(true)?;
        set_buffer_sizes(&socket, BUFFER_BYTES)?;
        tokio::net::UdpSocket::from_std(socket)
    }
}

impl fmt::Display for UdpWire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "udp:{}={}", self.local, self.peer)
    }
}

/// Kernel buffer asked for the uplink socket, each way: a burst of thousands of frames from the
/// switch then waits for the vswitch instead of being dropped by the kernel.
pub(crate) const BUFFER_BYTES: usize = 4 << 20;

/// Asks for `bytes` of receive and send buffer (the kernel grants at most its
/// `net.core.{r,w}mem_max`).
pub(crate) fn set_buffer_sizes(socket: &UdpSocket, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer size too large"))?;
    for option in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live local c_int; the fd
        // is open for as long as `socket` is borrowed.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_ipv4_and_ipv6_wires() {
        let w: UdpWire = "udp:127.0.0.120:0=127.0.0.1:20003".parse().unwrap();
        assert_eq!(w.local, "127.0.0.120:0".parse().unwrap());
        assert_eq!(w.peer, "127.0.0.1:20003".parse().unwrap());
        assert_eq!(w.to_string(), "udp:127.0.0.120:0=127.0.0.1:20003");
        let w: UdpWire = "udp:[::1]:5=[::1]:6".parse().unwrap();
        assert_eq!(w.peer, "[::1]:6".parse().unwrap());
    }

    #[test]
    fn refuses_bad_wires() {
        for (spec, want) in [
            ("127.0.0.1:1=127.0.0.1:2", "expected udp:"),
            ("udp:127.0.0.1:1", "expected udp:"),
            (
                "udp:127.0.0.1=127.0.0.1:2",
                "is not an IP address with a port",
            ),
            ("udp:10.0.0.1:1=127.0.0.1:2", "is not a loopback address"),
            ("udp:127.0.0.1:1=127.0.0.1:0", "the peer needs a port"),
        ] {
            let err = spec.parse::<UdpWire>().unwrap_err().to_string();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn buffer_sizes_are_raised() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = socket_buffer(&socket);
        set_buffer_sizes(&socket, 1 << 20).unwrap();
        // Linux doubles the value it grants (bookkeeping overhead), capped by rmem_max.
        assert!(socket_buffer(&socket) > before.min(1 << 20));
        assert!(set_buffer_sizes(&socket, usize::MAX).is_err());
    }

    fn socket_buffer(socket: &UdpSocket) -> i32 {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into the live local `value`.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        value
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,64}") {
            let _ = s.parse::<UdpWire>();
        }

        #[test]
        fn display_round_trips(a in 1u8..255, p in any::<u16>(), q in 1u16..) {
            let w = UdpWire {
                local: SocketAddr::from(([127, 0, 0, a], p)),
                peer: SocketAddr::from(([127, 0, 0, 1], q)),
            };
            prop_assert_eq!(w.to_string().parse::<UdpWire>().unwrap(), w);
        }
    }
}
