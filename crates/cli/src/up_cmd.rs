//! `georep up`: the whole topology on this machine, with a live status view.

use std::io::{IsTerminal, Write as _};
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
    // A panic anywhere in `up`, in any task, ends it; its children carry the parent-death signal
    // and end with it, instead of running on unsupervised behind a half-dead `up`.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
    crate::runtime()?
        .block_on(run(Options {
            topology,
            georep,
            redis_server,
        }))
        .map_err(Failure::runtime)
}

/// Prints to stdout, ignoring errors: once the terminal is gone (SIGHUP) writes fail, and `up`
/// must still stop its processes cleanly rather than panic on a lost terminal.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        let _ = write!(out, $($arg)*);
        let _ = out.flush();
    }};
}

async fn run(options: Options) -> anyhow::Result<()> {
    let mut shutdown: agent::Shutdown = stop_signals()
        .context("cannot install signal handlers")?
        .into();
    let name = options.topology.name.clone();
    say!(
        "starting {name}: {} regions…\n",
        options.topology.regions.len()
    );
    let cluster = Cluster::start(options).await?;
    intro(&cluster);
    let agents = view::local_agents(cluster.topology());
    let token = view::Token::read(&cluster.layout().operator_token())?;
    let tty = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_shape = String::new();
    let mut printed_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => break,
        }
        let rows = view::fetch(&agents, &token).await;
        let table = view::table(&rows);
        if tty {
            // Redraw in place: cursor home, clear below.
            say!("\x1b[H\x1b[J{name} — live status (Ctrl-C stops everything)\n\n{table}");
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
                say!("{table}\n");
                last_shape = shape;
                printed_at = tokio::time::Instant::now();
            }
        }
    }
    say!("\nstopping {name}…\n");
    let data = cluster.layout().root.clone();
    cluster.stop().await;
    say!(
        "stopped; data kept in {} (run `georep up` again to resume)\n",
        data.display()
    );
    Ok(())
}

/// Turns true on SIGTERM, SIGINT (Ctrl-C) or SIGHUP (the terminal closed): each is a clean stop.
fn stop_signals() -> std::io::Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => "SIGHUP",
        };
        tracing::info!(signal = name, "stopping every process of this cluster");
        tx.send_replace(true);
    });
    Ok(rx)
}

fn intro(cluster: &Cluster) {
    let t = cluster.topology();
    let secrets = cluster.layout().secrets();
    let password = secrets.join(region_spec::credentials::APP_FILE);
    say!(
        "\n{} is up. Applications connect per region as user `app`:\n\n",
        t.name
    );
    say!(
        "  {:<16} {:<17} {:<16} {:<17} {}\n",
        "region",
        "role",
        "Redis (reads)",
        "primary endpoint",
        "Sentinel"
    );
    for r in &t.regions {
        let ports = t.local.ports(r.index.index());
        let role = if r.index == t.primary {
            "primary"
        } else {
            "replica"
        };
        say!(
            "  {:<16} {:<17} 127.0.0.1:{:<6} 127.0.0.1:{:<7} 127.0.0.1:{}\n",
            r.name,
            role,
            ports.redis,
            ports.primary_endpoint,
            ports.sentinel
        );
    }
    let replica = t
        .regions
        .iter()
        .find(|r| r.index != t.primary)
        .unwrap_or(&t.regions[t.primary]);
    let ports = t.local.ports(replica.index.index());
    say!(
        "\nWrite from {} through its primary endpoint (it follows every change of primary):\n\n  \
         REDISCLI_AUTH=\"$(cat {})\" redis-cli -p {} --user app\n",
        replica.name,
        password.display(),
        ports.primary_endpoint
    );
    say!(
        "\nOr with redis-py's Sentinel support (master name {:?}; Sentinel auth is the app user too):\n\n  \
         from redis.sentinel import Sentinel\n  \
         pw = open({:?}).read().strip()\n  \
         s = Sentinel([(\"127.0.0.1\", {})], sentinel_kwargs={{\"username\": \"app\", \"password\": pw}})\n  \
         r = s.master_for({:?}, username=\"app\", password=pw)\n\n",
        t.name,
        password.display().to_string(),
        ports.sentinel,
        t.name
    );
    // Commands to paste into another terminal, which may be in another directory and may not
    // have this binary on its PATH (the quick start runs it from `target/release`).
    let georep = self_command();
    let file = std::fs::canonicalize(&t.source).unwrap_or_else(|_| t.source.clone());
    if let [a, b, ..] = &t.regions[..] {
        say!(
            "Cut the WAN between two regions: {georep} link cut {} {} {}\n",
            a.name,
            b.name,
            file.display()
        );
    }
    say!(
        "Status from another terminal:    {georep} status {}\n\n",
        file.display()
    );
}

/// How another shell reaches this binary: `georep` when that is what its PATH finds, else the
/// full path.
fn self_command() -> String {
    let here = std::env::current_exe().and_then(std::fs::canonicalize);
    let found = local::process::which("georep").map(std::fs::canonicalize);
    match (here, found) {
        (Ok(here), Some(Ok(found))) if here == found => "georep".to_owned(),
        (Ok(here), _) => here.display().to_string(),
        (Err(_), _) => "georep".to_owned(),
    }
}
