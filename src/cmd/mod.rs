//! The binary's subcommands that need more than a few lines: each turns its command-line
//! arguments into the library's options and runs it until Ctrl-C or the end of its job.

pub mod controller;
pub mod demo;
pub mod graph;

use std::time::Duration;

/// Parses `500ms`, `2s`, `1m30s`, ... (humantime's syntax) for clap.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("{err} (e.g. 500ms, 2s, 1m)"))
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled, so a signal sent right after a service announces itself
/// is not lost (it would kill the process before its handlers exist).
pub fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            (Ok(mut one), Err(err)) | (Err(err), Ok(mut one)) => {
                tracing::error!(%err, "cannot wait for one of SIGINT and SIGTERM; the other still stops");
                one.recv().await;
            }
            (Err(err), Err(_)) => {
                tracing::error!(%err, "cannot wait for SIGINT or SIGTERM; stopping");
            }
        }
    }
}
