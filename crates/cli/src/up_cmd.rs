//! `georep up`: the whole topology on this machine, with a live status view.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use agent::client as view;
use anyhow::{anyhow, Context as _};
use clap::Args;
use local::{Cluster, Options};
use topology::Topology;

use crate::exit::Failure;

/// The seed's deployment: us-east-1 primary, eu-central-1 replica, 45 ms apart.
pub(crate) const DEFAULT_TOPOLOGY: &str = "examples/aws-two-regions.toml";

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// The topology file.
    #[arg(default_value = DEFAULT_TOPOLOGY)]
    topology: PathBuf,
}

pub(crate) fn main(args: UpArgs) -> Result<(), Failure> {
    let topology = Topology::load(&args.topology).map_err(Failure::usage)?;
    let redis_server = local::process::which("redis-server").ok_or_else(|| {
        Failure::runtime(anyhow!(
            "redis-server not found on PATH: install it with `sudo apt-get install -y redis-server redis-tools`"
        ))
    })?;
    let georep = std::env::current_exe()
        .context("cannot locate the georep binary")
        .map_err(Failure::runtime)?;
    crate::runtime()?
        .block_on(run(Options {
            topology,
            georep,
            redis_server,
        }))
        .map_err(Failure::runtime)
}

async fn run(options: Options) -> anyhow::Result<()> {
    let mut shutdown: agent::Shutdown = crate::signal::shutdown_on_signals()
        .context("cannot install signal handlers")?
        .into();
    let name = options.topology.name.clone();
    println!(
        "starting {name}: {} regions…",
        options.topology.regions.len()
    );
    let cluster = Cluster::start(options).await?;
    intro(&cluster);
    let agents = view::local_agents(cluster.topology());
    let tty = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_shape = String::new();
    let mut printed_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => break,
        }
        let rows = view::fetch(&agents).await;
        let table = view::table(&rows);
        if tty {
            // Redraw in place: cursor home, clear below.
            print!("\x1b[H\x1b[J{name} — live status (Ctrl-C stops everything)\n\n{table}");
        } else {
            // Without a terminal, print when roles or links change, and every 30 s.
            let shape: String = rows
                .iter()
                .map(|r| match &r.status {
                    Ok(s) => format!("{}:{}:{};", r.name, s.role, s.link),
                    Err(_) => format!("{}:down;", r.name),
                })
                .collect();
            if shape != last_shape || printed_at.elapsed() > Duration::from_secs(30) {
                println!("{table}");
                last_shape = shape;
                printed_at = tokio::time::Instant::now();
            }
        }
    }
    println!("\nstopping {name}…");
    let data = cluster.layout().root.clone();
    cluster.stop().await;
    println!(
        "stopped; data kept in {} (run `georep up` again to resume)",
        data.display()
    );
    Ok(())
}

fn intro(cluster: &Cluster) {
    let t = cluster.topology();
    let secrets = cluster.layout().secrets();
    println!(
        "\n{} is up. Applications connect per region as user `app`:",
        t.name
    );
    for r in &t.regions {
        let port = t.local.ports(r.index).redis;
        let role = if r.index == t.primary {
            "primary (writes)"
        } else {
            "replica (reads)"
        };
        println!("  {:<16} {:<17} 127.0.0.1:{port}", r.name, role);
    }
    let first = t.local.ports(t.primary).redis;
    println!(
        "\n  REDISCLI_AUTH=\"$(cat {})\" redis-cli -p {first} --user app\n",
        secrets.join(region_spec::credentials::APP_FILE).display()
    );
    println!(
        "Cut the WAN between two regions: georep link cut {} {}",
        t.regions[0].name, t.regions[1].name
    );
    println!(
        "Status from another terminal:    georep status {}\n",
        t.source.display()
    );
}
