//! The `georep` command. This file only wires subcommands to the libraries that do the work.
#![forbid(unsafe_code)]

mod acl_cmd;
mod agent_cmd;
mod exit;
mod failover_cmd;
mod link_cmd;
mod promote_cmd;
mod redis_conf_cmd;
mod relay_cmd;
mod render_cmd;
mod secrets_cmd;
mod signal;
mod status_cmd;
mod telemetry;
mod token;
mod tunnel_cmd;
mod up_cmd;

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
    /// Bring up every region of a topology on this machine, with emulated WAN links.
    Up(up_cmd::UpArgs),
    /// Show each region's role, link, lag and epoch.
    Status(status_cmd::StatusArgs),
    /// List, cut or heal the emulated WAN links (Redis and relay) of a running `georep up`.
    Link(link_cmd::LinkArgs),
    /// Run the per-region agent (the sidecar next to each region's Redis).
    Agent(Box<agent_cmd::AgentArgs>),
    /// Write a new random 32-byte tunnel key to PATH (mode 0400; never overwrites).
    Keygen {
        /// Where to write the key.
        path: std::path::PathBuf,
    },
    /// Planned switchover: move the primary to another region with no acknowledged write lost.
    Failover(failover_cmd::FailoverArgs),
    /// Emergency: make a region the primary while the primary's region is unreachable.
    Promote(promote_cmd::PromoteArgs),
    /// Render the production form of a topology: `georep render k8s TOPOLOGY --out DIR`.
    Render(render_cmd::RenderArgs),
    /// Write Redis's ACL file (SHA-256 hashes only) from a credentials directory.
    AclFile(acl_cmd::AclFileArgs),
    /// Write a pod's redis.conf in the region's current role (from the agent's state file).
    RedisConf(redis_conf_cmd::RedisConfArgs),
    /// Create the secret files of a Kubernetes tree: `georep secrets init DIR/secrets`.
    Secrets(secrets_cmd::SecretsArgs),
    /// Run a disk-backed replication relay: replica of its upstream, master to its replicas.
    Relay(Box<relay_cmd::RelayArgs>),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Tunnel(args) => tunnel_cmd::main(*args),
        Command::Keygen { path } => keygen(&path),
        Command::Up(args) => up_cmd::main(args),
        Command::Status(args) => status_cmd::main(args),
        Command::Link(args) => link_cmd::main(args),
        Command::Agent(args) => agent_cmd::main(*args),
        Command::Failover(args) => failover_cmd::main(args),
        Command::Promote(args) => promote_cmd::main(args),
        Command::Render(args) => render_cmd::main(args),
        Command::AclFile(args) => acl_cmd::main(args),
        Command::RedisConf(args) => redis_conf_cmd::main(args),
        Command::Secrets(args) => secrets_cmd::main(args),
        Command::Relay(args) => relay_cmd::main(*args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

/// The multi-threaded runtime every long-running subcommand uses.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Failure::runtime)
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
