//! `georep link cut|heal A B`: cut or heal the emulated WAN of a running `georep up`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use topology::Topology;

use crate::exit::Failure;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Action {
    /// Reset every connection between the two regions and refuse new ones.
    Cut,
    /// Let connections through again.
    Heal,
}

#[derive(Debug, Args)]
pub(crate) struct LinkArgs {
    /// What to do.
    #[arg(value_enum)]
    action: Action,
    /// One region.
    a: String,
    /// The other region.
    b: String,
    #[command(flatten)]
    token: crate::token::TokenArgs,
    /// The topology file of the running `georep up`.
    #[arg(default_value = crate::up_cmd::DEFAULT_TOPOLOGY)]
    topology: PathBuf,
}

pub(crate) fn main(args: LinkArgs) -> Result<(), Failure> {
    let topology = Topology::load(&args.topology).map_err(Failure::usage)?;
    for r in [&args.a, &args.b] {
        if topology.region(r).is_none() {
            return Err(Failure::usage(anyhow!(
                "no region {r:?} in {}",
                args.topology.display()
            )));
        }
    }
    let control = SocketAddr::from(([127, 0, 0, 1], topology.local.control_port()));
    let action = match args.action {
        Action::Cut => "cut",
        Action::Heal => "heal",
    };
    let path = format!("/links/{}/{}/{action}", args.a, args.b);
    let token = args.token.find(&topology)?;
    let response = crate::runtime()?
        .block_on(agent::client::request_as(
            control,
            "POST",
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
    print!("{}", response.body);
    Ok(())
}
