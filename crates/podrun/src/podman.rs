//! The podman command line: each call's arguments, its failure with podman's own words.

use std::ffi::OsStr;
use std::process::{Command, Output};

use crate::Error;

/// Runs podman.
#[derive(Debug, Clone, Default)]
pub struct Podman;

impl Podman {
    /// `podman ARGS…`, its stdout on success.
    pub fn run<I, S>(&self, args: I) -> Result<String, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.output(args)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `podman ARGS…`, its whole output, failing on a non-zero exit.
    pub fn output<I, S>(&self, args: I) -> Result<Output, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.status(args)?;
        if out.1.status.success() {
            Ok(out.1)
        } else {
            Err(Error::Podman {
                command: out.0,
                status: out.1.status.to_string(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.1.stdout),
                    String::from_utf8_lossy(&out.1.stderr)
                )
                .trim()
                .to_owned(),
            })
        }
    }

    /// `podman ARGS…` whatever its exit status: (the command line, its output).
    pub fn status<I, S>(&self, args: I) -> Result<(String, Output), Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let line = std::iter::once("podman".to_owned())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ");
        let out = Command::new("podman")
            .args(&args)
            .output()
            .map_err(|e| Error::Podman {
                command: line.clone(),
                status: "not started".to_owned(),
                output: e.to_string(),
            })?;
        Ok((line, out))
    }
}

/// Why podman cannot run pods here, in podman's words.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// `podman version` failed.
    #[error("podman is not usable: {0}")]
    NotUsable(Error),
    /// `podman info` failed.
    #[error("podman {version} cannot describe this host: {source}")]
    NoHostInfo {
        /// podman's version.
        version: String,
        /// Why.
        source: Error,
    },
}

/// Whether podman runs here: its version, runtime and cgroup manager, or the reason it does
/// not, in podman's words.
pub fn podman_available() -> Result<String, Unavailable> {
    let p = Podman;
    let version = p
        .run(["version", "--format", "{{.Client.Version}}"])
        .map_err(Unavailable::NotUsable)?;
    let info = p
        .run([
            "info",
            "--format",
            "{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}",
        ])
        .map_err(|source| Unavailable::NoHostInfo {
            version: version.trim().to_owned(),
            source,
        })?;
    Ok(format!("podman {} ({})", version.trim(), info.trim()))
}
