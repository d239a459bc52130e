//! The `georep` command. This file only wires subcommands to the libraries that do the work.
#![forbid(unsafe_code)]

mod exit;
mod signal;
mod telemetry;
mod tunnel_cmd;

use clap::{Parser, Subcommand};

use crate::exit::Failure;

/// One Redis dataset across regions, replicated through an encrypted, spiped-compatible tunnel.
#[derive(Debug, Parser)]
#[command(name = "georep", version, propagate_version = true)]
struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = telemetry::LogFormat::Text)]
    log_format: telemetry::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a spiped-compatible encrypted tunnel endpoint (a drop-in for `spiped`).
    Tunnel(Box<tunnel_cmd::TunnelArgs>),
    /// Write a new random 32-byte tunnel key to PATH (mode 0400; never overwrites).
    Keygen {
        /// Where to write the key.
        path: std::path::PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Tunnel(args) => tunnel_cmd::main(*args),
        Command::Keygen { path } => keygen(&path),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn keygen(path: &std::path::Path) -> Result<(), Failure> {
    tunnel::keyfile::generate(path).map_err(|e| Failure::runtime(anyhow::Error::new(e)))?;
    println!(
        "wrote a {}-byte random key to {} (mode 0400)",
        tunnel::keyfile::GENERATED_KEY_LEN,
        path.display()
    );
    Ok(())
}
