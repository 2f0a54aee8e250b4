//! The host link: what a server reports to the controller besides sFlow, and what the
//! controller asks of it.
//!
//! A server (`vmdep host`, or any agent that speaks this) keeps one TCP connection to the
//! controller (default `127.0.0.1:6344`) and sends newline-delimited JSON objects:
//!
//! - `hello`: which server it is, once, first;
//! - `local_counts`: exact, cumulative packet and byte counts of the VM pairs that never leave
//!   the server (no P4 switch sees them; ARCHITECTURE.md);
//! - `labels`: what its deep-packet-inspection module learned about the mirrored pairs.
//!
//! The controller answers on the same connection with `mirror`: the whole set of directed VM
//! pairs the server should mirror to its DPI module (a full set, so a lost or repeated message
//! cannot leave a stale mirror behind).
//!
//! JSON lines keep the link readable with `nc` and `jq`; a line longer than [`MAX_LINE`] is an
//! error rather than an unbounded buffer. A leaf module: it imports nothing else of vmdep.

use std::net::Ipv4Addr;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The controller's default host-link address.
pub const DEFAULT_PORT: u16 = 6344;
/// Longest accepted line, newline included.
pub const MAX_LINE: usize = 4 << 20;
/// The version a `hello` carries; a controller refuses versions it does not know.
pub const VERSION: u32 = 1;

/// Server → controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HostMessage {
    Hello {
        /// The server's name in the topology.
        server: String,
        version: u32,
    },
    LocalCounts {
        /// When the counts were read, Unix milliseconds.
        at_ms: u64,
        /// Cumulative since the host started.
        pairs: Vec<LocalPairCount>,
    },
    Labels {
        at_ms: u64,
        labels: Vec<AppLabel>,
    },
}

/// Controller → server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControllerMessage {
    /// Mirror exactly these directed pairs (both of a pair's directions are worth mirroring
    /// for DPI: the controller lists each one it wants).
    Mirror { pairs: Vec<PairAddrs> },
}

/// A directed VM pair by its IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairAddrs {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

/// Exact counts of a pair that stays on one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalPairCount {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub packets: u64,
    /// Ethernet frame bytes without FCS, as a P4 switch's direct counter counts them.
    pub bytes: u64,
}

/// The application behind one client → server conversation, as DPI saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppLabel {
    /// `http`, `tls`, `dns`, `postgresql`, `mysql`, `redis`, `ntp`, or `tcp/PORT` / `udp/PORT` when
    /// only the port is known.
    pub protocol: String,
    /// Who opened the connection (or sent the first datagram).
    pub client: Ipv4Addr,
    pub server: Ipv4Addr,
    pub server_port: u16,
    /// What the protocol names, deduplicated and bounded: `GET web1.dc.internal`,
    /// `query db1.dc.internal`, `sni shop.example`, ...
    pub details: Vec<String>,
    pub requests: u64,
    pub responses: u64,
    /// Mean time from a request to its response, where the protocol pairs them.
    pub mean_response_ms: Option<f64>,
}

#[derive(Debug, Error)]
pub enum HostLinkError {
    #[error("host link I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("host link line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("host link line is not a valid message: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reads one message; `None` at a clean end of stream. Empty lines are skipped.
pub async fn read_message<R, T>(reader: &mut R) -> Result<Option<T>, HostLinkError>
where
    R: AsyncBufRead + Unpin,
    T: DeserializeOwned,
{
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut *reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        // Without a newline the line either hit the limit or ended the stream (then it is
        // still parsed).
        if line.last() != Some(&b'\n') && n == MAX_LINE {
            return Err(HostLinkError::LineTooLong);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        return Ok(Some(decode_line(&line)?));
    }
}

/// Parses one line (with or without its newline).
pub fn decode_line<T: DeserializeOwned>(line: &[u8]) -> Result<T, HostLinkError> {
    if line.len() > MAX_LINE {
        return Err(HostLinkError::LineTooLong);
    }
    Ok(serde_json::from_slice(line)?)
}

/// The line a message is sent as, newline included.
pub fn encode_line<T: Serialize>(message: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail: no maps with non-string keys, no I/O.
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Writes one message and flushes it.
pub async fn write_message<W, T>(writer: &mut W, message: &T) -> Result<(), HostLinkError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    writer.write_all(&encode_line(message)).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn label() -> AppLabel {
        AppLabel {
            protocol: "http".into(),
            client: Ipv4Addr::new(10, 0, 120, 2),
            server: Ipv4Addr::new(10, 0, 120, 1),
            server_port: 80,
            details: vec!["GET web1.dc.internal".into()],
            requests: 3,
            responses: 3,
            mean_response_ms: Some(2.5),
        }
    }

    #[test]
    fn the_wire_form_is_tagged_json_lines() {
        let hello = HostMessage::Hello {
            server: "h120".into(),
            version: VERSION,
        };
        assert_eq!(
            encode_line(&hello),
            b"{\"type\":\"hello\",\"server\":\"h120\",\"version\":1}\n"
        );
        let mirror = ControllerMessage::Mirror {
            pairs: vec![PairAddrs {
                src: Ipv4Addr::new(10, 0, 120, 2),
                dst: Ipv4Addr::new(10, 0, 122, 1),
            }],
        };
        assert_eq!(
            String::from_utf8(encode_line(&mirror)).unwrap(),
            "{\"type\":\"mirror\",\"pairs\":[{\"src\":\"10.0.120.2\",\"dst\":\"10.0.122.1\"}]}\n"
        );
    }

    #[tokio::test]
    async fn messages_round_trip_over_a_stream() {
        let messages = vec![
            HostMessage::Hello {
                server: "h121".into(),
                version: VERSION,
            },
            HostMessage::LocalCounts {
                at_ms: 1_700_000_000_000,
                pairs: vec![LocalPairCount {
                    src: Ipv4Addr::new(10, 0, 122, 2),
                    dst: Ipv4Addr::new(10, 0, 122, 3),
                    packets: 10,
                    bytes: 1234,
                }],
            },
            HostMessage::Labels {
                at_ms: 5,
                labels: vec![label()],
            },
        ];
        let (mut a, b) = tokio::io::duplex(64);
        let sent = messages.clone();
        let writer = tokio::spawn(async move {
            for m in &sent {
                write_message(&mut a, m).await.unwrap();
            }
        });
        let mut reader = tokio::io::BufReader::new(b);
        let mut got = Vec::new();
        while let Some(m) = read_message::<_, HostMessage>(&mut reader).await.unwrap() {
            got.push(m);
        }
        writer.await.unwrap();
        assert_eq!(got, messages);
    }

    #[tokio::test]
    async fn bad_lines_are_typed_errors() {
        let mut r = tokio::io::BufReader::new(&b"{\"type\":\"hello\",\"server\":1}\n"[..]);
        assert!(matches!(
            read_message::<_, HostMessage>(&mut r).await,
            Err(HostLinkError::Json(_))
        ));
        let mut r = tokio::io::BufReader::new(&b"{\"type\":\"bye\"}\n"[..]);
        assert!(matches!(
            read_message::<_, HostMessage>(&mut r).await,
            Err(HostLinkError::Json(_))
        ));
        let long = vec![b' '; MAX_LINE + 10];
        let mut r = tokio::io::BufReader::new(&long[..]);
        assert!(matches!(
            read_message::<_, HostMessage>(&mut r).await,
            Err(HostLinkError::LineTooLong)
        ));
        let mut r = tokio::io::BufReader::new(&b"\n  \n"[..]);
        assert!(read_message::<_, HostMessage>(&mut r)
            .await
            .unwrap()
            .is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_lines_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_line::<HostMessage>(&bytes);
            let _ = decode_line::<ControllerMessage>(&bytes);
        }

        #[test]
        fn local_counts_round_trip(src in any::<u32>(), dst in any::<u32>(),
                                   packets in any::<u64>(), bytes in any::<u64>()) {
            let m = HostMessage::LocalCounts {
                at_ms: 1,
                pairs: vec![LocalPairCount { src: src.into(), dst: dst.into(), packets, bytes }],
            };
            prop_assert_eq!(decode_line::<HostMessage>(&encode_line(&m)).unwrap(), m);
        }
    }
}
