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

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
pub async fn stop_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(err) => {
                tracing::error!(%err, "cannot wait for SIGTERM; Ctrl-C still stops");
                if let Err(err) = tokio::signal::ctrl_c().await {
                    tracing::error!(%err, "cannot wait for Ctrl-C either; stopping");
                }
                return;
            }
        };
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            if let Err(err) = result {
                tracing::error!(%err, "cannot wait for Ctrl-C; stopping");
            }
        }
        _ = terminate.recv() => {}
    }
}
