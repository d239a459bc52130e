//! `georep up` owns its processes: however it ends, nothing of its data directory keeps running;
//! it stops what an earlier `up` left behind, refuses a taken port at once, and only one `up` runs
//! per data directory. Each test prints how long the measured step took (`timing:` lines, shown
//! with `--nocapture`).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use testkit::eventually;

const GEOREP: &str = env!("CARGO_BIN_EXE_georep");

/// Every process must be gone this soon after `up` was told to stop (or was killed).
const GONE_WITHIN: Duration = Duration::from_secs(10);

struct Cluster {
    dir: tempfile::TempDir,
    topology: PathBuf,
    base: u16,
}

impl Cluster {
    /// A two-region topology on free ports, its data in a temporary directory.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = free_base();
        let topology = dir.path().join("t.toml");
        std::fs::write(
            &topology,
            format!(
                "name = \"life\"\nprimary = \"us-east-1\"\n\
                 [[region]]\nname = \"us-east-1\"\nendpoint = \"a.example:56379\"\n\
                 [[region]]\nname = \"eu-central-1\"\nendpoint = \"b.example:56379\"\n\
                 [local]\nbase_port = {base}\ndata_dir = \"{}\"\n\
                 [[local.link]]\nbetween = [\"us-east-1\", \"eu-central-1\"]\nlatency = \"5ms\"\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        Self {
            dir,
            topology,
            base,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Processes whose command line names the data directory (its Redis servers keep their
    /// command line, `set-proc-title no`; agents name it in `--state-dir`).
    fn processes(&self) -> Vec<(i32, String)> {
        processes_naming(&self.data())
    }

    async fn wait_replicating(&self) {
        eventually("both regions up and replicating", || async {
            let out = Command::new(GEOREP)
                .args(["status", "--json"])
                .arg(&self.topology)
                .output()
                .ok()?;
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (out.status.success() && json["regions"][1]["link"] == "up").then_some(())
        })
        .await;
    }

    /// Waits until no process of the data directory runs; returns how long that took.
    async fn wait_no_process(&self, since: Instant) -> Duration {
        loop {
            let left = self.processes();
            if left.is_empty() {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < GONE_WITHIN,
                "still running {GONE_WITHIN:?} later: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A block of ports (the whole two-region map) nobody listens on.
fn free_base() -> u16 {
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
    // Tests of this binary run at once: a block handed out here is never handed out again, even
    // before its cluster listens (probing alone let two tests pick the same block).
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let base = (0..)
        .map(|i: u32| 21_000 + ((seed.wrapping_add(i * 7919)) % 400) as u16 * 100)
        .find(|b| {
            handed_out.iter().all(|t| t.abs_diff(*b) >= 200)
                && (0..200).all(|p| std::net::TcpListener::bind(("127.0.0.1", b + p)).is_ok())
        })
        .unwrap();
    handed_out.push(base);
    base
}

fn processes_naming(dir: &Path) -> Vec<(i32, String)> {
    let needle = format!("{}/", dir.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // Zombies have an empty command line: exited, only not yet reaped.
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if line.contains(&needle) {
            found.push((pid, line.trim().to_owned()));
        }
    }
    found
}

/// A running `georep up`, killed by its PID if the test ends first.
struct Up {
    child: Child,
    stderr: tempfile::NamedTempFile,
    stdout: std::thread::JoinHandle<String>,
}

impl Up {
    /// Starts `georep up`. Its stdout is read until `is up` appears; with `hang_up`, the reading
    /// end is then closed, as when the terminal goes away, and every later write of `up` fails.
    fn start(topology: &Path, hang_up: bool) -> Self {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(GEOREP)
            .arg("up")
            .arg(topology)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if hang_up && String::from_utf8_lossy(&seen).contains(" is up.") {
                    break;
                }
            }
            String::from_utf8_lossy(&seen).into_owned()
        });
        Self {
            child,
            stderr,
            stdout,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).unwrap();
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// Exit code (or `-signal`) once it exited, waiting up to `within`.
    async fn exited_within(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                use std::os::unix::process::ExitStatusExt as _;
                return Some(
                    status
                        .code()
                        .unwrap_or_else(|| -status.signal().unwrap_or(0)),
                );
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.pid()), Signal::SIGKILL);
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- stderr of georep up ---\n{}", self.stderr());
        }
    }
}

/// Starts a cluster, lets it replicate, sends `signal` to `up` alone, and checks that every
/// process of the data directory is gone within [`GONE_WITHIN`]. A stop signal must stop cleanly
/// (exit 0, each Redis shut down with a save); `kill -9` leaves that to the kernel.
async fn stop_with(signal: Signal) {
    let c = Cluster::new();
    // With SIGHUP the terminal is gone too: up's stdout is closed before the signal.
    let mut up = Up::start(&c.topology, signal == Signal::SIGHUP);
    c.wait_replicating().await;
    let children = c.processes();
    assert_eq!(
        children.len(),
        4,
        "2 redis-servers and 2 agents: {children:?}"
    );

    let sent = Instant::now();
    up.signal(signal);
    let took = c.wait_no_process(sent).await;
    let code = up.exited_within(GONE_WITHIN).await;
    eprintln!("timing: {signal:?} to georep up -> 0 processes of its data directory in {took:?}");
    if signal == Signal::SIGKILL {
        assert_eq!(code, Some(-9));
    } else {
        assert_eq!(code, Some(0), "{}", up.stderr());
        for region in ["us-east-1", "eu-central-1"] {
            assert!(
                c.data().join(region).join("clean-shutdown").exists(),
                "{region} was not stopped cleanly: {}",
                up.stderr()
            );
        }
        assert!(
            !up.stderr().contains("panicked"),
            "up panicked: {}",
            up.stderr()
        );
        let said = std::mem::replace(&mut up.stdout, std::thread::spawn(String::new));
        let said = said.join().unwrap();
        assert!(said.contains(" is up."), "{said}");
    }
    // Nothing is recorded as running any more, and a new `up` starts on the same data at once.
    let mut again = Up::start(&c.topology, false);
    c.wait_replicating().await;
    again.signal(Signal::SIGTERM);
    assert_eq!(again.exited_within(Duration::from_secs(60)).await, Some(0));
    c.wait_no_process(Instant::now()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_stops_everything_cleanly() {
    stop_with(Signal::SIGHUP).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_everything_cleanly() {
    stop_with(Signal::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_everything_cleanly() {
    stop_with(Signal::SIGINT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_up_takes_every_child_with_it() {
    stop_with(Signal::SIGKILL).await;
}

/// Redis servers left running on the data directory with nobody supervising them (PPID 1, as
/// the issue found them after closing a terminal), holding the cluster's ports: `up` stops them
/// and starts.
#[tokio::test(flavor = "multi_thread")]
async fn up_stops_orphans_of_its_data_directory_before_starting() {
    let c = Cluster::new();
    // A first run writes each region's redis.conf.
    let mut up = Up::start(&c.topology, false);
    c.wait_replicating().await;
    up.signal(Signal::SIGTERM);
    assert_eq!(up.exited_within(Duration::from_secs(60)).await, Some(0));

    // Orphans: started through a shell that exits at once, so init adopts them.
    let mut orphans = Vec::new();
    for region in ["us-east-1", "eu-central-1"] {
        let conf = c.data().join(region).join("redis.conf");
        let out = Command::new("sh")
            .arg("-c")
            .arg("redis-server \"$1\" >/dev/null 2>&1 </dev/null & echo $!")
            .arg("sh")
            .arg(&conf)
            .output()
            .unwrap();
        let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        orphans.push(pid);
    }
    let _cleanup = KillOnDrop(orphans.clone());
    eventually("the orphans hold the Redis ports", || async {
        let listening = [0, 100]
            .iter()
            .all(|o| std::net::TcpListener::bind(("127.0.0.1", c.base + o)).is_err());
        listening.then_some(())
    })
    .await;

    let started = Instant::now();
    let mut up = Up::start(&c.topology, false);
    c.wait_replicating().await;
    let took = started.elapsed();
    eprintln!("timing: up over 2 orphaned redis-servers -> replicating in {took:?}");
    for pid in &orphans {
        assert!(
            !Path::new(&format!("/proc/{pid}/cmdline")).exists()
                || std::fs::read(format!("/proc/{pid}/cmdline"))
                    .unwrap()
                    .is_empty(),
            "orphan {pid} still runs"
        );
        assert!(
            up.stderr().contains(&format!("pid={pid}")),
            "up did not say it stopped {pid}: {}",
            up.stderr()
        );
    }
    up.signal(Signal::SIGTERM);
    assert_eq!(up.exited_within(Duration::from_secs(60)).await, Some(0));
    c.wait_no_process(Instant::now()).await;
}

struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            // Only if it is still the redis-server we started.
            let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("redis.conf"))
                .unwrap_or(false);
            if ours {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
    }
}

/// A port of the map held by an unrelated program: `up` fails within 2 s, naming the port, what
/// it is for and who holds it, and leaves nothing running.
#[tokio::test(flavor = "multi_thread")]
async fn a_taken_port_fails_at_once_naming_it_and_its_owner() {
    let c = Cluster::new();
    let port = c.base + 101;
    let mut holder = testkit::Proc::spawn(
        "python3",
        &[
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ],
    );
    testkit::wait_listening(([127, 0, 0, 1], port).into()).await;

    let started = Instant::now();
    let mut up = Up::start(&c.topology, false);
    let code = up.exited_within(Duration::from_secs(10)).await;
    let took = started.elapsed();
    eprintln!("timing: up with port {port} taken -> failed in {took:?}");
    assert_eq!(code, Some(1), "{}", up.stderr());
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let err = up.stderr();
    let expected = format!(
        "port {port} (tunnel server of eu-central-1) is already in use by pid {} (",
        holder.pid()
    );
    assert!(err.contains(&expected), "{err}");
    assert!(err.contains(&format!("-m http.server {port}")), "{err}");
    assert!(c.processes().is_empty(), "{:?}", c.processes());
    assert!(!c.data().join("us-east-1").join("redis.log").exists());
    holder.signal(Signal::SIGTERM);
    let _ = holder.exited_within(Duration::from_secs(5)).await;
}

/// Two `up`s on one data directory started at the same instant: exactly one runs; the other
/// says "already running" with the first one's pid. Three rounds, to give the race its chances.
#[tokio::test(flavor = "multi_thread")]
async fn of_two_ups_started_together_exactly_one_runs() {
    let c = Cluster::new();
    for round in 0..3 {
        let started = Instant::now();
        let mut a = Up::start(&c.topology, false);
        let mut b = Up::start(&c.topology, false);
        // Whichever exits first lost; it must do so long before the other is up.
        let deadline = Instant::now() + Duration::from_secs(10);
        let a_lost = loop {
            if let Some(code) = a.exited_within(Duration::ZERO).await {
                assert_eq!(code, 1, "the loser's exit code: {}", a.stderr());
                break true;
            }
            if let Some(code) = b.exited_within(Duration::ZERO).await {
                assert_eq!(code, 1, "the loser's exit code: {}", b.stderr());
                break false;
            }
            assert!(Instant::now() < deadline, "neither up refused to run");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let (loser, winner) = if a_lost {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let took = started.elapsed();
        let expected = format!(
            "georep up is already running on {} (pid {}); stop it first",
            c.data().display(),
            winner.pid()
        );
        assert!(
            loser.stderr().contains(&expected),
            "round {round}: {}",
            loser.stderr()
        );
        eprintln!("timing: round {round}: the second up refused in {took:?}");
        c.wait_replicating().await;
        assert_eq!(
            winner.exited_within(Duration::ZERO).await,
            None,
            "the winner runs"
        );
        winner.signal(Signal::SIGTERM);
        assert_eq!(
            winner.exited_within(Duration::from_secs(60)).await,
            Some(0),
            "{}",
            winner.stderr()
        );
        c.wait_no_process(Instant::now()).await;
    }
}
