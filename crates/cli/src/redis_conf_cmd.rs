//! `georep redis-conf`: a pod's redis.conf in the region's current role (the pod's init
//! container). The same rendering the agent rewrites the file with on every change of primary.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::exit::Failure;

/// Flags of `georep redis-conf`.
#[derive(Debug, Args)]
pub(crate) struct RedisConfArgs {
    /// The topology file.
    #[arg(long, value_name = "FILE", default_value = "/etc/georep/topology.toml")]
    topology: PathBuf,
    /// This region's name.
    #[arg(long, value_name = "NAME")]
    region: String,
    /// The agent's state directory: the primary its state file names starts fenced, every
    /// other region as its replica; without a state file, the topology's primary.
    #[arg(long, value_name = "DIR", default_value = "/data/georep")]
    state_dir: PathBuf,
    /// Where to write redis.conf (mode 0644, replaced atomically).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub(crate) fn main(args: RedisConfArgs) -> Result<(), Failure> {
    let topology = topology::Topology::load(&args.topology)
        .with_context(|| format!("cannot load {}", args.topology.display()))
        .map_err(Failure::usage)?;
    let region = topology
        .region(&args.region)
        .ok_or_else(|| anyhow::anyhow!("--region: the topology has no region {:?}", args.region))
        .map_err(Failure::usage)?
        .index;
    let (primary, from) = match agent::pod_conf::believed_primary(&topology, &args.state_dir)
        .context("cannot read the agent's state file")
        .map_err(Failure::runtime)?
    {
        Some(p) => (p, "the agent's state file"),
        None => (topology.primary, "the topology (no state file yet)"),
    };
    agent::pod_conf::write(&args.out, &topology, region, primary)
        .with_context(|| format!("cannot write {}", args.out.display()))
        .map_err(Failure::runtime)?;
    println!(
        "wrote {}: region {} starts as {} (primary {}, from {from})",
        args.out.display(),
        args.region,
        if region == primary {
            "the primary, fenced, loading its AOF"
        } else {
            "a replica"
        },
        topology.regions[primary].name,
    );
    Ok(())
}
