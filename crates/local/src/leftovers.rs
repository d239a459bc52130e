//! Processes of this data directory that outlived the `georep up` that started them.
//!
//! A child of `up` dies with it (see [`crate::process`]), so leftovers are rare: a `redis-server`
//! or agent started by hand on the data directory, one from a georep without parent-death
//! signals, or a system without them. Once `up` holds the data directory's lock, nothing else may
//! use the directory, so whatever still runs on it is stopped (SIGTERM, then SIGKILL); a process
//! that cannot be stopped (another user's) makes `up` refuse to start, naming it.
//!
//! A process is one of ours only if its command line says so, read from `/proc/PID/cmdline`:
//!
//! - a recorded child (`<region>/*.pid.json`, [`crate::process::Record`]) whose pid runs with
//!   the recorded command line, so a recycled pid is never taken for it;
//! - a `redis-server` (or `valkey-server`) whose first argument is a `redis.conf` inside the data
//!   directory; `up` turns off Redis's process-title rewriting so the path stays visible;
//! - a `georep agent` whose `--state-dir` is inside the data directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::process::Record;
use crate::procfs;

/// How long a leftover gets to exit after SIGTERM (Redis saves its data first).
const TERM_GRACE: Duration = Duration::from_secs(10);
/// How long after SIGKILL before giving up on it.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// A process found running on the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Its pid.
    pub pid: i32,
    /// `redis-server` or `agent`, for messages.
    pub kind: &'static str,
    /// Its command line when it was found: checked again before every signal, in case it exited
    /// and its pid was reused meanwhile.
    pub argv: Vec<String>,
}

impl Leftover {
    fn still_ours(&self) -> bool {
        procfs::is_running(self.pid) && procfs::cmdline(self.pid).as_ref() == Some(&self.argv)
    }
}

/// Leftovers that could not be stopped.
#[derive(Debug, thiserror::Error)]
#[error(
    "processes of an earlier georep up still run on {dir} and could not be stopped: {pids}; \
     stop them (kill PID) and start again"
)]
pub struct StuckLeftovers {
    /// The data directory.
    pub dir: PathBuf,
    /// `redis-server pid 123 (…): why`, comma-separated.
    pub pids: String,
}

/// Every process running on data directory `root` (absolute), except this one.
pub fn find(root: &Path) -> Vec<Leftover> {
    let me = std::process::id() as i32;
    let mut found: Vec<Leftover> = recorded(root)
        .into_iter()
        .filter(|(_, r)| r.pid != me && r.is_running())
        .map(|(kind, r)| Leftover {
            pid: r.pid,
            kind,
            argv: r.argv,
        })
        .collect();
    for pid in procfs::all_pids() {
        if pid == me || found.iter().any(|l| l.pid == pid) {
            continue;
        }
        let Some(argv) = procfs::cmdline(pid) else {
            continue;
        };
        if let Some(kind) = kind_of(&argv, root) {
            if procfs::is_running(pid) {
                found.push(Leftover { pid, kind, argv });
            }
        }
    }
    // Agents first: a running agent would reconfigure the Redis being stopped.
    found.sort_by_key(|l| (l.kind != "agent", l.pid));
    found
}

/// Stops every leftover: SIGTERM, up to [`TERM_GRACE`] to exit, then SIGKILL. Returns what was
/// stopped, or the ones that would not stop.
pub async fn stop_all(root: &Path) -> Result<Vec<Leftover>, StuckLeftovers> {
    let found = find(root);
    if found.is_empty() {
        return Ok(found);
    }
    for l in &found {
        tracing::warn!(
            pid = l.pid,
            process = l.kind,
            "stopping a process left running on {} by an earlier georep up",
            root.display()
        );
    }
    // pid → why it could not be stopped.
    let mut stuck: Vec<(i32, String)> = Vec::new();
    signal_all(&found, Signal::SIGTERM, &mut stuck);
    let mut running = wait_gone(&found, TERM_GRACE).await;
    if !running.is_empty() {
        signal_all(&running, Signal::SIGKILL, &mut stuck);
        running = wait_gone(&running, KILL_GRACE).await;
    }
    for l in running {
        if !stuck.iter().any(|(pid, _)| *pid == l.pid) {
            let why = format!(
                "{} {}: still running after SIGKILL",
                l.kind,
                procfs::describe(l.pid)
            );
            stuck.push((l.pid, why));
        }
    }
    if stuck.is_empty() {
        Ok(found)
    } else {
        Err(StuckLeftovers {
            dir: root.to_owned(),
            pids: stuck
                .into_iter()
                .map(|(_, why)| why)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// Sends `signal` to each leftover; one that refuses it (another user's) is noted in `stuck`.
fn signal_all(leftovers: &[Leftover], signal: Signal, stuck: &mut Vec<(i32, String)>) {
    for l in leftovers {
        if !l.still_ours() {
            continue;
        }
        let described = procfs::describe(l.pid);
        match kill(Pid::from_raw(l.pid), signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                if !stuck.iter().any(|(pid, _)| *pid == l.pid) {
                    stuck.push((l.pid, format!("{} {described}: {e}", l.kind)));
                }
            }
        }
    }
}

/// Waits until none of `leftovers` runs, up to `within`; returns those still running.
async fn wait_gone(leftovers: &[Leftover], within: Duration) -> Vec<Leftover> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let running: Vec<Leftover> = leftovers
            .iter()
            .filter(|l| l.still_ours())
            .cloned()
            .collect();
        if running.is_empty() || tokio::time::Instant::now() >= deadline {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The records of every region directory, with the kind of process each names.
fn recorded(root: &Path) -> Vec<(&'static str, Record)> {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for dir in dirs.filter_map(Result::ok) {
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for file in files.filter_map(Result::ok) {
            let name = file.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(".pid.json") else {
                continue;
            };
            let kind = if stem == "agent" {
                "agent"
            } else {
                "redis-server"
            };
            match Record::load(&file.path()) {
                Some(r) if r.is_running() => out.push((kind, r)),
                // Its process is gone: the record is stale.
                _ => {
                    let _ = std::fs::remove_file(file.path());
                }
            }
        }
    }
    out
}

/// Whether a command line is a Redis or an agent of data directory `root`, and which.
fn kind_of(argv: &[String], root: &Path) -> Option<&'static str> {
    let program = procfs::program_name(argv.first()?);
    let inside = |p: &str| {
        let p = Path::new(p);
        p.is_absolute() && p.starts_with(root) && p != root
    };
    if matches!(program, "redis-server" | "valkey-server") {
        let conf = argv.get(1)?;
        return (conf.ends_with("/redis.conf") && inside(conf)).then_some("redis-server");
    }
    if argv.get(1).map(String::as_str) == Some("agent") {
        let at = argv.iter().position(|a| a == "--state-dir")?;
        return inside(argv.get(at + 1)?).then_some("agent");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn recognises_only_this_data_directorys_redis_and_agents() {
        let root = Path::new("/tmp/x/georep-data");
        let yes = [
            (
                "/usr/bin/redis-server /tmp/x/georep-data/us-east-1/redis.conf",
                "redis-server",
            ),
            (
                "valkey-server /tmp/x/georep-data/eu/redis.conf",
                "redis-server",
            ),
            (
                "/work/target/debug/georep agent --topology t.toml --region a --state-dir /tmp/x/georep-data/a",
                "agent",
            ),
        ];
        for (line, kind) in yes {
            assert_eq!(kind_of(&argv(line), root), Some(kind), "{line}");
        }
        let no = [
            // Another data directory, even one whose name starts the same.
            "/usr/bin/redis-server /tmp/x/georep-data2/us-east-1/redis.conf",
            "/usr/bin/redis-server /tmp/y/georep-data/us-east-1/redis.conf",
            // Reading our files is not being ours.
            "tail -f /tmp/x/georep-data/us-east-1/redis.conf",
            "less /tmp/x/georep-data/us-east-1/agent.log",
            // A relative path, a Redis with a rewritten title, an agent elsewhere.
            "redis-server georep-data/us-east-1/redis.conf",
            "redis-server 127.0.0.1:17000",
            "georep agent --state-dir /data/georep",
            "georep up",
        ];
        for line in no {
            assert_eq!(kind_of(&argv(line), root), None, "{line}");
        }
    }

    #[tokio::test]
    async fn stops_a_recorded_process_and_forgets_stale_records() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let region = root.join("r");
        std::fs::create_dir(&region).unwrap();
        // A process of "ours" started the way up starts them, then abandoned.
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let record = Record {
            pid: child.id() as i32,
            argv: argv("sleep 600"),
        };
        // Until the child has exec'd, its command line is still this test binary's: a record
        // read then looks stale (seen once in CI on a busy machine).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while procfs::cmdline(record.pid).as_ref() != Some(&record.argv) {
            assert!(std::time::Instant::now() < deadline, "sleep never exec'd");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::fs::write(
            region.join("redis.pid.json"),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        // A record whose pid now runs something else: never touched.
        let stale = Record {
            pid: std::process::id() as i32,
            argv: argv("redis-server /nowhere/redis.conf"),
        };
        std::fs::write(
            region.join("agent.pid.json"),
            serde_json::to_vec(&stale).unwrap(),
        )
        .unwrap();

        let found = find(&root);
        let found: Vec<(i32, &str)> = found.iter().map(|l| (l.pid, l.kind)).collect();
        assert_eq!(found, vec![(record.pid, "redis-server")]);
        assert!(!region.join("agent.pid.json").exists());
        let stopped = stop_all(&root).await.unwrap();
        assert_eq!(stopped.len(), 1);
        // It was our child: it is a zombie now, reaped here.
        assert!(!child.wait().unwrap().success());
        assert!(find(&root).is_empty());
        assert!(!region.join("redis.pid.json").exists());
    }
}
