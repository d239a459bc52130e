//! Child processes that `georep up` keeps running, as a kubelet would: restarted when they die,
//! stopped by PID (SIGTERM, then SIGKILL) when `up` stops, killed if `up` itself goes away.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
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
            let _ = child.kill().await;
        }
    }

    /// Waits up to `timeout` for the process to exit by itself (after `SHUTDOWN`, say).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let status = tokio::time::timeout(timeout, child.wait())
            .await
            .ok()?
            .ok()?;
        self.child = None;
        Some(status)
    }
}

fn spawn(spec: &Spec) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)?;
    Command::new(&spec.program)
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Should `georep up` itself die, tokio kills the children it still holds.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot start {}: {e}", spec.program.display()),
            )
        })
}

/// Finds `program` on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(program))
        .find(|p| p.is_file())
}
