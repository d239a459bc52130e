//! `georep status`: one row per region, from each region's agent.

use std::path::PathBuf;
use std::time::Duration;

use agent::client as view;
use anyhow::{anyhow, Context as _};
use clap::Args;
use topology::Topology;

use crate::exit::Failure;

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Refresh every second until Ctrl-C.
    #[arg(long)]
    watch: bool,
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

pub(crate) fn main(args: StatusArgs) -> Result<(), Failure> {
    let topology = Topology::load(&args.topology).map_err(Failure::usage)?;
    let agents = crate::failover_cmd::agents(&topology, &args.agents)?;
    let local_mode = args.agents.is_empty();
    let token = args.token.find(&topology)?;
    let credentials = local_mode.then(|| {
        let data = &topology.local.data_dir;
        let data = std::env::current_dir().map_or_else(|_| data.clone(), |d| d.join(data));
        data.join(region_spec::credentials::LOCAL_DIR)
    });
    let unhealthy = crate::runtime()?
        .block_on(async {
            let mut shutdown: agent::Shutdown = crate::signal::shutdown_on_signals()
                .context("signals")?
                .into();
            loop {
                let rows = view::fetch(&agents, &token).await;
                if args.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&view::json(&rows, credentials.as_deref()))?
                    );
                } else {
                    if args.watch {
                        print!("\x1b[H\x1b[J");
                    }
                    print!("{}", view::table(&rows));
                }
                let bad: Vec<String> = rows
                    .iter()
                    .filter(|r| r.is_unhealthy())
                    .map(|r| r.name.clone())
                    .collect();
                if !args.watch {
                    return Ok::<_, anyhow::Error>(bad);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.wait() => return Ok(bad),
                }
            }
        })
        .map_err(Failure::runtime)?;
    if unhealthy.is_empty() {
        Ok(())
    } else {
        Err(Failure::runtime(anyhow!(
            "unhealthy: {}",
            unhealthy.join(", ")
        )))
    }
}
