//! `georep link list|cut|heal`: look at, cut or heal the emulated WAN of a running `georep up`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use local::control::LinkView;
use topology::Topology;

use crate::exit::Failure;

#[derive(Debug, Args)]
pub(crate) struct LinkArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Show every link: which regions, which stream (`redis` or `relay`), cut or not, bytes.
    List {
        /// Print the links as JSON (the control API's `GET /links`).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        up: Up,
    },
    /// Reset every connection between the two regions (every stream) and refuse new ones.
    Cut(Pair),
    /// Let connections through again.
    Heal(Pair),
}

/// Two regions of the running `georep up`.
#[derive(Debug, Args)]
struct Pair {
    /// One region.
    a: String,
    /// The other region.
    b: String,
    #[command(flatten)]
    up: Up,
}

/// Which `georep up`, and the token for its control API.
#[derive(Debug, Args)]
struct Up {
    #[command(flatten)]
    token: crate::token::TokenArgs,
    /// The topology file of the running `georep up`.
    #[arg(default_value = crate::up_cmd::DEFAULT_TOPOLOGY)]
    topology: PathBuf,
}

pub(crate) fn main(args: LinkArgs) -> Result<(), Failure> {
    let (up, method, path) = match &args.action {
        Action::List { up, .. } => (up, "GET", "/links".to_owned()),
        Action::Cut(p) | Action::Heal(p) => {
            let action = if matches!(args.action, Action::Cut(_)) {
                "cut"
            } else {
                "heal"
            };
            (&p.up, "POST", format!("/links/{}/{}/{action}", p.a, p.b))
        }
    };
    let topology = Topology::load(&up.topology).map_err(Failure::usage)?;
    if let Action::Cut(p) | Action::Heal(p) = &args.action {
        for r in [&p.a, &p.b] {
            if topology.region(r).is_none() {
                return Err(Failure::usage(anyhow!(
                    "no region {r:?} in {}",
                    up.topology.display()
                )));
            }
        }
    }
    let control = SocketAddr::from(([127, 0, 0, 1], topology.local.control_port()));
    let token = up.token.find(&topology)?;
    let response = crate::runtime()?
        .block_on(agent::client::request_as(
            control,
            method,
            &path,
            Some(&token),
            Duration::from_secs(3),
        ))
        .map_err(|e| {
            Failure::runtime(anyhow!(
                "is `georep up` running? control API {control}: {e}"
            ))
        })?;
    if response.status != 200 {
        return Err(Failure::runtime(anyhow!("{}", response.body.trim())));
    }
    let Action::List { json, .. } = args.action else {
        print!("{}", response.body);
        return Ok(());
    };
    let links: Vec<LinkView> = serde_json::from_str(&response.body)
        .map_err(|e| Failure::runtime(anyhow!("GET /links: unexpected answer: {e}")))?;
    if json {
        let text =
            serde_json::to_string_pretty(&links).map_err(|e| Failure::runtime(anyhow!("{e}")))?;
        println!("{text}");
    } else {
        print!("{}", table(&links));
    }
    Ok(())
}

/// One line per link, grouped by region pair: the Redis stream, then the relay's.
fn table(links: &[LinkView]) -> String {
    let width = |f: fn(&LinkView) -> &str, title: &str| {
        links
            .iter()
            .map(|l| f(l).len())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let (wf, wt) = (width(|l| &l.from, "FROM"), width(|l| &l.to, "TO"));
    let mut out = format!(
        "{:<wf$}  {:<wt$}  {:<6}  {:<5}  {:>12}  {:>12}\n",
        "FROM", "TO", "STREAM", "STATE", "BYTES_UP", "BYTES_DOWN"
    );
    let mut sorted: Vec<&LinkView> = links.iter().collect();
    // Stable: within a pair, the order `georep up` reports (Redis first).
    sorted.sort_by(|x, y| (&x.from, &x.to).cmp(&(&y.from, &y.to)));
    for l in sorted {
        out.push_str(&format!(
            "{:<wf$}  {:<wt$}  {:<6}  {:<5}  {:>12}  {:>12}\n",
            l.from,
            l.to,
            l.stream,
            if l.cut { "cut" } else { "up" },
            l.bytes_up,
            l.bytes_down
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(from: &str, to: &str, stream: &str, cut: bool) -> LinkView {
        LinkView {
            from: from.into(),
            to: to.into(),
            stream: stream.into(),
            cut,
            bytes_up: 10,
            bytes_down: 2048,
        }
    }

    #[test]
    fn the_table_names_the_stream_of_each_link_under_its_pair() {
        let t = table(&[
            link("us-east-1", "eu-central-1", "redis", false),
            link("eu-central-1", "us-east-1", "redis", false),
            link("us-east-1", "eu-central-1", "relay", true),
            link("eu-central-1", "us-east-1", "relay", true),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines,
            [
                "FROM          TO            STREAM  STATE      BYTES_UP    BYTES_DOWN",
                "eu-central-1  us-east-1     redis   up               10          2048",
                "eu-central-1  us-east-1     relay   cut              10          2048",
                "us-east-1     eu-central-1  redis   up               10          2048",
                "us-east-1     eu-central-1  relay   cut              10          2048",
            ]
        );
    }

    #[test]
    fn json_without_a_stream_reads_as_the_redis_stream() {
        let old = r#"[{"from":"a","to":"b","cut":false,"bytes_up":1,"bytes_down":2}]"#;
        let links: Vec<LinkView> = serde_json::from_str(old).unwrap();
        assert_eq!(links[0].stream, "redis");
    }
}
