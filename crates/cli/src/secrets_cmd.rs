//! `georep secrets init DIR`: the secret files a Kubernetes tree's `secrets/` base needs (the
//! tunnel key, the ACL passwords, the operator token), made where missing, never overwritten.

use std::path::PathBuf;

use anyhow::{anyhow, Context as _};
use clap::{Args, Subcommand};

use crate::exit::Failure;

#[derive(Debug, Args)]
pub(crate) struct SecretsArgs {
    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Create every missing secret file in DIR (usually `<render --out>/secrets`): tunnel.key
    /// (mode 0400), admin/replication/app.password and operator-token (mode 0600). Existing
    /// files are kept as they are; no secret is ever printed.
    Init {
        /// The secrets directory (created, mode 0700, if missing).
        dir: PathBuf,
    },
}

pub(crate) fn main(args: SecretsArgs) -> Result<(), Failure> {
    let SecretsCommand::Init { dir } = args.command;
    // The rendered tree's root is a likely slip: kustomize would not find the files there.
    let base = dir.join(k8s::names::SECRETS_DIR);
    if base.join("kustomization.yaml").is_file() {
        return Err(Failure::usage(anyhow!(
            "{} is a rendered tree; its secrets go in its {}/ directory: georep secrets init {}",
            dir.display(),
            k8s::names::SECRETS_DIR,
            base.display()
        )));
    }
    let files = agent::secrets::init(&dir)
        .with_context(|| format!("cannot create the secret files in {}", dir.display()))
        .map_err(Failure::runtime)?;
    for f in &files {
        if f.created {
            println!(
                "created {}: {}, mode {:04o}",
                f.path.display(),
                f.what,
                f.mode
            );
        } else {
            println!(
                "kept    {}: it exists (never overwritten)",
                f.path.display()
            );
        }
    }
    let made = files.iter().filter(|f| f.created).count();
    println!(
        "{made} created, {} kept. Keep a copy in your secret store; every region needs the same files.",
        files.len() - made
    );
    Ok(())
}
