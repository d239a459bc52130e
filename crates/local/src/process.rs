//! Child processes that `georep up` keeps running, as a kubelet would: restarted when they die,
//! stopped by PID (SIGTERM, then SIGKILL) when `up` stops, killed if `up` itself goes away.
//!
//! However `up` ends, its children end with it:
//!
//! - each child runs in a process group of its own, so the terminal's Ctrl-C (SIGINT) and hang-up
//!   (SIGHUP) reach only `up`, which then stops them in order (agents, replicas, the primary);
//! - each child carries Linux's parent-death signal ([`die_with_parent`]): if `up` is killed
//!   (`kill -9`, an abort after a panic) the kernel sends the child SIGKILL. The kernel tracks the
//!   *thread* that spawned a child, so children are spawned only from threads that live as long
//!   as `up`: the thread running `block_on` and the runtime's worker threads, never the blocking
//!   pool;
//! - each child's pid and command line are recorded in the data directory
//!   ([`Spec::record`]), so a later `up` finds leftovers even where the parent-death signal does
//!   not exist ([`crate::leftovers`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use die_with_parent::DieWithParent as _;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

/// How to start a process.
#[derive(Debug, Clone)]
pub struct Spec {
    /// For logs: `redis-server us-east-1`.
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Where its stdout and stderr go (appended).
    pub log: PathBuf,
    /// Where its pid and command line are recorded while it runs (a [`Record`]).
    pub record: PathBuf,
}

impl Spec {
    /// The command line it runs with, as `/proc/PID/cmdline` shows it.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

/// A running child as recorded in the data directory: enough for a later `up` to recognise it
/// (the same pid *and* the same command line, so a recycled pid is never taken for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Its pid.
    pub pid: i32,
    /// Its command line.
    pub argv: Vec<String>,
}

impl Record {
    /// Reads a record file; `None` if it is missing or not a record.
    pub fn load(path: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Whether the process still runs with the recorded command line.
    pub fn is_running(&self) -> bool {
        crate::procfs::is_running(self.pid)
            && crate::procfs::cmdline(self.pid).as_ref() == Some(&self.argv)
    }
}

/// A supervised process.
#[derive(Debug)]
pub struct Supervised {
    spec: Spec,
    child: Option<Child>,
    started: Instant,
    /// How many times it was restarted after exiting on its own.
    pub restarts: u32,
}

impl Supervised {
    /// Starts the process.
    pub fn start(spec: Spec) -> std::io::Result<Self> {
        let child = spawn(&spec)?;
        Ok(Self {
            spec,
            child: Some(child),
            started: Instant::now(),
            restarts: 0,
        })
    }

    /// Its PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The spec it runs.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Replaces the spec used at the next (re)start.
    pub fn set_spec(&mut self, spec: Spec) {
        self.spec = spec;
    }

    /// If the process exited, reports how; the caller decides whether to [`Supervised::restart`].
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                forget(&self.spec);
                Some(status.to_string())
            }
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// Starts it again, no sooner than a second after the previous start (no tight crash loop).
    pub async fn restart(&mut self) -> std::io::Result<()> {
        let since = self.started.elapsed();
        if since < Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_secs(1) - since).await;
        }
        self.child = Some(spawn(&self.spec)?);
        self.started = Instant::now();
        self.restarts += 1;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`; waits for the exit.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            tracing::warn!(process = %self.spec.name, "did not stop within {grace:?}; killing it");
            // Its whole group: anything it started goes too. Not yet reaped, its pid (the
            // group's id) cannot have been reused.
            if let Some(pid) = child.id() {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            let _ = child.kill().await;
        }
        forget(&self.spec);
    }

    /// Waits up to `timeout` for the process to exit by itself (after `SHUTDOWN`, say).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let status = tokio::time::timeout(timeout, child.wait())
            .await
            .ok()?
            .ok()?;
        self.child = None;
        forget(&self.spec);
        Some(status)
    }
}

fn spawn(spec: &Spec) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)?;
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // A group of its own: the terminal's SIGINT and SIGHUP go to `up` alone.
        .process_group(0)
        // Should `up` drop a child it still holds (an error path), tokio kills it.
        .kill_on_drop(true);
    // Should `up` itself die, the kernel kills the child.
    command.as_std_mut().die_with_parent();
    let child = command.spawn().map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot start {}: {e}", spec.program.display()),
        )
    })?;
    if let Some(pid) = child.id() {
        let record = Record {
            pid: pid as i32,
            argv: spec.argv(),
        };
        let json = serde_json::to_vec(&record).expect("a record serialises");
        if let Err(e) = agent::secrets::write_private(&spec.record, &json) {
            tracing::warn!(process = %spec.name, error = %e, "cannot record the process's pid");
        }
    }
    Ok(child)
}

/// Removes the record of a process that is known to have exited.
fn forget(spec: &Spec) {
    let _ = std::fs::remove_file(&spec.record);
}

/// Finds `program` on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(program))
        .find(|p| p.is_file())
}
