//! The `vmdep` command line: one binary, one subcommand per part of the system.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
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
enum Command {
    /// Compile a P4_16 v1model program to bmv2 JSON and a P4Info
    /// (DIR/NAME.json, DIR/NAME.p4info.txtpb, DIR/NAME.p4info.bin).
    Compile {
        /// The P4 source file.
        file: PathBuf,
        /// Output directory (created if missing).
        #[arg(short = 'o', long = "out-dir", default_value = ".")]
        out_dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Compile { file, out_dir } => compile(&file, &out_dir),
    }
}

fn compile(file: &Path, out_dir: &Path) -> anyhow::Result<()> {
    let source =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file.display().to_string();
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.clone());
    let out = match vmdep::compiler::compile(&source, &file_name) {
        Ok(out) => out,
        Err(diags) => {
            eprint!("{}", diags.render(&name, &source));
            eprintln!("{}: {}", name, diags);
            std::process::exit(1);
        }
    };
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "program".into());
    let json_path = out_dir.join(format!("{stem}.json"));
    std::fs::write(&json_path, &out.bmv2_json)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let text_path = out_dir.join(format!("{stem}.p4info.txtpb"));
    std::fs::write(&text_path, out.p4info_text())
        .with_context(|| format!("cannot write {}", text_path.display()))?;
    let bin_path = out_dir.join(format!("{stem}.p4info.bin"));
    std::fs::write(&bin_path, out.p4info_binary())
        .with_context(|| format!("cannot write {}", bin_path.display()))?;
    tracing::info!(
        json = %json_path.display(),
        p4info = %text_path.display(),
        "compiled {}",
        file.display()
    );
    Ok(())
}
