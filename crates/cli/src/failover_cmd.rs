//! `georep failover --to REGION`: the planned switchover, carried out by the current primary's
//! agent (`POST /failover`), with no acknowledged write lost.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agent::client;
use anyhow::anyhow;
use clap::Args;
use topology::Topology;

use crate::exit::Failure;

#[derive(Debug, Args)]
pub(crate) struct FailoverArgs {
    /// The region to make primary.
    #[arg(long, value_name = "REGION")]
    to: String,
    /// Abort (the primary unchanged, nothing lost) if the target has not caught up by then.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = topology::parse_duration)]
    timeout: Duration,
    /// Reach REGION's agent's control API at HOST:PORT (e.g. through `kubectl port-forward`)
    /// instead of the local port map of `georep up`. Repeatable.
    #[arg(long = "agent", value_name = "REGION=ADDR")]
    agents: Vec<String>,
    #[command(flatten)]
    token: crate::token::TokenArgs,
    /// The topology file.
    #[arg(default_value = crate::up_cmd::DEFAULT_TOPOLOGY)]
    topology: PathBuf,
}

/// Every region's agent address: the local port map, overridden by `--agent REGION=ADDR`.
pub(crate) fn agents(
    topology: &Topology,
    overrides: &[String],
) -> Result<Vec<(String, SocketAddr)>, Failure> {
    let mut agents = client::local_agents(topology);
    for a in overrides {
        let parsed = a
            .split_once('=')
            .and_then(|(n, addr)| Some((n, addr.parse::<SocketAddr>().ok()?)));
        let (name, addr) = parsed
            .ok_or_else(|| Failure::usage(anyhow!("--agent {a:?}: expected REGION=HOST:PORT")))?;
        let slot = agents
            .iter_mut()
            .find(|(n, _)| n == name)
            .ok_or_else(|| Failure::usage(anyhow!("--agent: no region {name:?}")))?;
        slot.1 = addr;
    }
    Ok(agents)
}

pub(crate) fn main(args: FailoverArgs) -> Result<(), Failure> {
    let topology = Topology::load(&args.topology).map_err(Failure::usage)?;
    if topology.region(&args.to).is_none() {
        return Err(Failure::usage(anyhow!(
            "no region {:?} in {}",
            args.to,
            args.topology.display()
        )));
    }
    let agents = agents(&topology, &args.agents)?;
    let token = args.token.find(&topology)?;
    let change = crate::runtime()?
        .block_on(async {
            // The primary is the region whose agent reports itself primary at the highest epoch.
            let rows = client::fetch(&agents, &token).await;
            // A refused token is the reason, not "no primary".
            if let Some(e) = rows.iter().find_map(|r| match &r.status {
                Err(e @ client::ClientError::Unauthorized { .. }) => Some(e.clone()),
                _ => None,
            }) {
                return Err(e.into());
            }
            let primary = client::primary(&rows)
                .map(|s| s.name.clone())
                .ok_or_else(|| {
                    anyhow!("no agent reports a writable primary; see `georep status` (for an unreachable primary region: `georep promote REGION --force`)")
                })?;
            let addr = agents
                .iter()
                .find(|(n, _)| *n == primary)
                .map(|(_, a)| *a)
                .expect("rows come from agents");
            println!("primary is {primary}; switching over to {}…", args.to);
            let path = format!(
                "/failover?to={}&timeout_ms={}",
                args.to,
                args.timeout.as_millis()
            );
            let change = client::change(addr, &path, &token, args.timeout + Duration::from_secs(20)).await?;
            Ok::<_, anyhow::Error>(change)
        })
        .map_err(Failure::runtime)?;
    let pause = change
        .write_pause_ms
        .map_or_else(|| "null".to_owned(), |p| p.to_string());
    println!(
        "done: {} is the primary at epoch {}; writes were paused for {pause} ms (switchover took {} ms)",
        change.to, change.epoch, change.duration_ms
    );
    Ok(())
}
