//! `georep promote REGION --force`: the emergency promotion, for when the primary's region is
//! unreachable. Writes the old primary acknowledged but had not replicated are lost; the command
//! reports how much the promoted region had not received, when its agent knows.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use topology::Topology;

use crate::exit::Failure;

#[derive(Debug, Args)]
pub(crate) struct PromoteArgs {
    /// The region to make primary.
    region: String,
    /// Required: acknowledges that writes the old primary had not replicated are lost.
    #[arg(long)]
    force: bool,
    /// Reach REGION's agent's control API at HOST:PORT instead of the local port map. Repeatable.
    #[arg(long = "agent", value_name = "REGION=ADDR")]
    agents: Vec<String>,
    #[command(flatten)]
    token: crate::token::TokenArgs,
    /// The topology file.
    #[arg(default_value = crate::up_cmd::DEFAULT_TOPOLOGY)]
    topology: PathBuf,
}

pub(crate) fn main(args: PromoteArgs) -> Result<(), Failure> {
    let topology = Topology::load(&args.topology).map_err(Failure::usage)?;
    if topology.region(&args.region).is_none() {
        return Err(Failure::usage(anyhow!(
            "no region {:?} in {}",
            args.region,
            args.topology.display()
        )));
    }
    if !args.force {
        return Err(Failure::usage(anyhow!(
            "an emergency promotion loses the writes the old primary had not replicated; if the \
             primary's region is really unreachable, run again with --force (for a planned \
             change without loss: georep failover --to {})",
            args.region
        )));
    }
    let agents = crate::failover_cmd::agents(&topology, &args.agents)?;
    let addr = agents
        .iter()
        .find(|(n, _)| *n == args.region)
        .map(|(_, a)| *a)
        .expect("region checked");
    let token = args.token.find(&topology)?;
    let change = crate::runtime()?
        .block_on(agent::client::change(
            addr,
            "/promote?force=1",
            &token,
            Duration::from_secs(15),
        ))
        .map_err(Failure::runtime)?;
    let gap = match change.offset_gap {
        Some(0) => "it had received everything its agent last saw from the old primary".into(),
        Some(n) => format!(
            "it had not received at least {n} bytes of the old primary's replication stream \
             (those writes are lost)"
        ),
        None => {
            "what it had not received is unknown (its agent never saw the old primary's offset)"
                .into()
        }
    };
    println!(
        "{} is the primary at epoch {}; {gap}",
        args.region, change.epoch
    );
    Ok(())
}
