//! The `vmdep` command line: one binary, one subcommand per part of the system.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "vmdep",
    version,
    about = "VM communication dependencies, measured with sFlow and P4 counters"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `vmdep=debug`; RUST_LOG also works.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {}
}
