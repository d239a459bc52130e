//! The harness every end-to-end test uses.
//!
//! - [`free_addr`]: a loopback address nobody listens on (tests never use fixed ports);
//! - [`Proc`]: a child process killed (by PID) when the guard drops, with signal helpers;
//! - [`eventually`]: poll a condition instead of sleeping a fixed time;
//! - [`servers`]: echo and recording servers on port 0;
//! - [`proxy`]: a TCP proxy that counts, taps, flips bytes or stalls;
//! - [`redis`]: a real redis-server on a free port;
//! - [`python`]: a virtualenv with redis-py, and scripts run in it.
#![forbid(unsafe_code)]

pub mod proxy;
pub mod python;
pub mod redis;
pub mod servers;
pub mod tmpfs;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// How long [`eventually`] keeps trying, from `GEOREP_TEST_PATIENCE_MS` (default 60 s).
pub fn patience() -> Duration {
    let ms = std::env::var("GEOREP_TEST_PATIENCE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    Duration::from_millis(ms)
}

/// Polls `check` until it returns `Some`, or panics with `what` once patience runs out.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + patience();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback address with a port the kernel just handed out and released.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
}

/// spiped's spelling of a socket address: `[127.0.0.1]:PORT`.
pub fn spiped_addr(addr: SocketAddr) -> String {
    format!("[{}]:{}", addr.ip(), addr.port())
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_listening(addr: SocketAddr) {
    eventually(&format!("something listening on {addr}"), || async move {
        tokio::net::TcpStream::connect(addr).await.ok().map(drop)
    })
    .await;
}

/// A child process that is killed, by its PID, when this guard drops.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    name: String,
    stdout: tempfile::NamedTempFile,
    stderr: tempfile::NamedTempFile,
}

impl Proc {
    /// Starts `program args…` with stdout and stderr captured to temporary files.
    pub fn spawn(program: impl AsRef<Path>, args: &[&str]) -> Self {
        Self::spawn_with(Command::new(program.as_ref()).args(args))
    }

    /// Starts a prepared command (for extra environment variables and the like).
    pub fn spawn_with(cmd: &mut Command) -> Self {
        let stdout = tempfile::NamedTempFile::new().expect("temp file");
        let stderr = tempfile::NamedTempFile::new().expect("temp file");
        let name = format!("{cmd:?}");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout.reopen().expect("reopen temp file"))
            .stderr(stderr.reopen().expect("reopen temp file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            child,
            name,
            stdout,
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.stdout.path()).unwrap_or_default()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// Waits for the process to exit on its own, up to `timeout`; returns its exit code.
    pub async fn exited_within(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many times the process's threads went to sleep and were woken since they started
    /// (the sum of their `voluntary_ctxt_switches`, Linux `/proc`).
    pub fn wakeups(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
            .filter_map(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
            .sum()
    }

    /// Number of open file descriptors of the process (Linux `/proc`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(Signal::SIGKILL);
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- stderr of {} ---\n{}", self.name, self.stderr());
        }
    }
}

/// Writes a key file of `len` random-looking bytes derived from `seed` into `dir`.
pub fn key_file(dir: &Path, name: &str, seed: u8, len: usize) -> std::path::PathBuf {
    let path = dir.join(name);
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    std::fs::write(&path, bytes).expect("write key file");
    path
}

/// Deterministic pseudo-random bytes (xorshift), for payloads that compress badly.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
