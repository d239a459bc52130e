//! `georep failover --to REGION`: the planned switchover, carried out by the current primary's
//! agent (`POST /failover`), with no acknowledged write lost.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use local::view;
use topology::Topology;

use crate::exit::Failure;

#[derive(Debug, Args)]
pub(crate) struct FailoverArgs {
    /// The region to make primary.
    #[arg(long, value_name = "REGION")]
    to: String,
    /// Abort (the primary unchanged, nothing lost) if the target has not caught up by then.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Reach REGION's agent at HOST:PORT (e.g. through `kubectl port-forward`) instead of the
    /// local port map of `georep up`. Repeatable.
    #[arg(long = "agent", value_name = "REGION=ADDR")]
    agents: Vec<String>,
    /// The topology file.
    #[arg(default_value = crate::up_cmd::DEFAULT_TOPOLOGY)]
    topology: PathBuf,
}

/// `500ms`, `5s`, `1m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit (500ms, 5s, 1m)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{text:?}: the unit must be ms, s or m")),
    }
}

/// Every region's agent address: the local port map, overridden by `--agent REGION=ADDR`.
pub(crate) fn agents(
    topology: &Topology,
    overrides: &[String],
) -> Result<Vec<(String, SocketAddr)>, Failure> {
    let mut agents = view::local_agents(topology);
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

/// Sends a change-of-primary request to an agent and prints its answer.
pub(crate) async fn send(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let r = local::http::request(addr, "POST", path, timeout)
        .await
        .map_err(|e| anyhow!("agent at {addr}: {e}"))?;
    let body: serde_json::Value = serde_json::from_str(&r.body).map_err(|_| {
        anyhow!(
            "agent at {addr} answered HTTP {}: {}",
            r.status,
            r.body.trim()
        )
    })?;
    if r.status != 200 {
        let why = body["error"]
            .as_str()
            .unwrap_or_else(|| r.body.trim())
            .to_owned();
        return Err(anyhow!("{why}"));
    }
    Ok(body)
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
    let change = crate::runtime()?
        .block_on(async {
            // The primary is the region whose agent reports itself primary at the highest epoch.
            let rows = view::fetch(&agents).await;
            let primary = rows
                .iter()
                .filter_map(|r| r.status.as_ref().ok())
                .filter(|s| s.role == "primary" && s.primary == s.name)
                .max_by_key(|s| s.epoch.unwrap_or(0))
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
            send(addr, &path, args.timeout + Duration::from_secs(20)).await
        })
        .map_err(Failure::runtime)?;
    println!(
        "done: {} is the primary at epoch {}; writes were paused for {} ms (switchover took {} ms)",
        change["to"].as_str().unwrap_or("?"),
        change["epoch"],
        change["write_pause_ms"],
        change["duration_ms"]
    );
    Ok(())
}
