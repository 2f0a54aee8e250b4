//! The host's end of the host link (`crate::hostlink`): it connects to the controller, retrying
//! with exponential backoff (hosts may start before the controller), says `hello`, reports the
//! exact same-server counts every report interval and the DPI labels whenever they change, and
//! applies the `mirror` sets it receives. At shutdown it sends the final counts. When the link
//! drops, the mirror set stays as it was until the controller sends the next one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use super::Shared;
use crate::hostlink::{
    self, AppLabel, ControllerMessage, HostLinkError, HostMessage, PairAddrs, VERSION,
};

/// First wait after a failed connection; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A write the controller does not take within this time ends the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the final counts and labels may take to go out at shutdown.
const FINAL_REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// The host link's history, for [`super::RunningHost::stats`].
#[derive(Debug, Default)]
pub(crate) struct LinkCounters {
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Connections that ended in an error (I/O, an overlong line) or that the controller closed.
    pub disconnects: AtomicU64,
    /// Lines that were not a controller message; the line is skipped, the link stays up.
    pub bad_lines: AtomicU64,
    pub mirror_updates: AtomicU64,
    pub local_count_reports: AtomicU64,
    pub label_reports: AtomicU64,
}

pub(crate) struct LinkClient {
    pub controller: SocketAddr,
    pub server: String,
    pub report_interval: Duration,
    pub labels: watch::Receiver<Vec<AppLabel>>,
    pub shared: Arc<Shared>,
}

/// How a connection ended.
enum SessionEnd {
    Stopped,
    Lost,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl LinkClient {
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let counters = Arc::clone(&self.shared);
        let counters = &counters.link_counters;
        let mut backoff = MIN_BACKOFF;
        while !*stop.borrow() {
            let connected = tokio::select! {
                c = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.controller)) => c,
                _ = stop.changed() => return,
            };
            match connected {
                Ok(Ok(stream)) => {
                    counters.connects.fetch_add(1, Ordering::Relaxed);
                    backoff = MIN_BACKOFF;
                    match self.session(stream, &mut stop).await {
                        SessionEnd::Stopped => return,
                        SessionEnd::Lost => {
                            counters.disconnects.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(Err(err)) => {
                    tracing::debug!(controller = %self.controller, %err, "host link: cannot connect");
                    counters.connect_failures.fetch_add(1, Ordering::Relaxed);
                }
                Err(_elapsed) => {
                    counters.connect_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn session(&mut self, stream: TcpStream, stop: &mut watch::Receiver<bool>) -> SessionEnd {
        let (read, mut write) = stream.into_split();
        // Reading in its own task keeps a half-read line safe from the select below.
        let (messages_tx, mut messages) = mpsc::channel(16);
        let reader = tokio::spawn(read_messages(
            BufReader::new(read),
            messages_tx,
            Arc::clone(&self.shared),
        ));
        let end = self.converse(&mut write, &mut messages, stop).await;
        reader.abort();
        if matches!(end, SessionEnd::Stopped) {
            // Best effort: the controller may already be gone.
            let _ = write.shutdown().await;
        }
        end
    }

    async fn converse(
        &mut self,
        write: &mut OwnedWriteHalf,
        messages: &mut mpsc::Receiver<ControllerMessage>,
        stop: &mut watch::Receiver<bool>,
    ) -> SessionEnd {
        let hello = HostMessage::Hello {
            server: self.server.clone(),
            version: VERSION,
        };
        if !send(write, &hello).await {
            return SessionEnd::Lost;
        }
        // A new connection gets the current labels even if they did not change.
        self.labels.mark_changed();
        let mut report = tokio::time::interval(self.report_interval);
        report.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = messages.recv() => match message {
                    Some(ControllerMessage::Mirror { pairs }) => self.apply_mirror(pairs),
                    None => return SessionEnd::Lost,
                },
                _ = report.tick() => {
                    if !self.send_counts(write).await {
                        return SessionEnd::Lost;
                    }
                }
                // The publisher lives in `Shared`, as long as this task: `changed` cannot fail.
                Ok(()) = self.labels.changed() => {
                    if !self.send_labels(write).await {
                        return SessionEnd::Lost;
                    }
                }
                _ = stop.changed() => {
                    let _ = tokio::time::timeout(FINAL_REPORT_TIMEOUT, async {
                        self.send_counts(write).await && self.send_labels(write).await
                    })
                    .await;
                    return SessionEnd::Stopped;
                }
            }
        }
    }

    fn apply_mirror(&self, pairs: Vec<PairAddrs>) {
        self.shared.vswitch().set_mirror(pairs);
        self.shared
            .link_counters
            .mirror_updates
            .fetch_add(1, Ordering::Relaxed);
    }

    async fn send_counts(&self, write: &mut OwnedWriteHalf) -> bool {
        let pairs = self.shared.vswitch().local_counts();
        let message = HostMessage::LocalCounts {
            at_ms: unix_ms(),
            pairs,
        };
        let sent = send(write, &message).await;
        if sent {
            self.shared
                .link_counters
                .local_count_reports
                .fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    async fn send_labels(&mut self, write: &mut OwnedWriteHalf) -> bool {
        let labels = self.labels.borrow_and_update().clone();
        if labels.is_empty() {
            return true;
        }
        let message = HostMessage::Labels {
            at_ms: unix_ms(),
            labels,
        };
        let sent = send(write, &message).await;
        if sent {
            self.shared
                .link_counters
                .label_reports
                .fetch_add(1, Ordering::Relaxed);
        }
        sent
    }
}

/// Writes one message; false when the connection is lost (or too slow to take it).
async fn send(write: &mut OwnedWriteHalf, message: &HostMessage) -> bool {
    match tokio::time::timeout(WRITE_TIMEOUT, hostlink::write_message(write, message)).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::debug!(%err, "host link: write failed");
            false
        }
        Err(_elapsed) => {
            tracing::warn!("host link: the controller took no message for {WRITE_TIMEOUT:?}");
            false
        }
    }
}

/// Reads controller messages until the stream ends or breaks; a bad line is counted and
/// skipped.
async fn read_messages(
    mut read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    messages: mpsc::Sender<ControllerMessage>,
    shared: Arc<Shared>,
) {
    loop {
        match hostlink::read_message::<_, ControllerMessage>(&mut read).await {
            Ok(Some(message)) => {
                if messages.send(message).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(HostLinkError::Json(err)) => {
                tracing::warn!(%err, "host link: skipping a bad line from the controller");
                shared
                    .link_counters
                    .bad_lines
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => {
                // An overlong line leaves the stream mid-line: reconnect rather than guess.
                tracing::warn!(%err, "host link: dropping the connection");
                if matches!(err, HostLinkError::LineTooLong) {
                    shared
                        .link_counters
                        .bad_lines
                        .fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        }
    }
}
