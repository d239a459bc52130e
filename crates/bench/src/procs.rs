//! The tunnel processes under test: started with identical flags, watched, and killed by PID
//! however the harness ends (normal return, error, panic, SIGINT/SIGTERM/SIGHUP).

use std::collections::HashMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// How long a stopped tunnel may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How to run one implementation as `<path> <prefix…> -e|-d -s … -t … -k KEY -F <extra…>`.
#[derive(Debug, Clone)]
pub(crate) struct Binary {
    pub(crate) label: &'static str,
    pub(crate) path: PathBuf,
    /// Arguments before the spiped flags (`tunnel` for georep).
    pub(crate) prefix: Vec<String>,
    /// Arguments after them (`--georep-flag`); empty by default so both get identical flags.
    pub(crate) extra: Vec<String>,
}

struct Running {
    label: String,
    child: Child,
    log: PathBuf,
}

type Table = Arc<Mutex<Vec<Running>>>;

fn lock(table: &Table) -> MutexGuard<'_, Vec<Running>> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

fn kill_all(table: &Table) {
    for mut r in lock(table).drain(..) {
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
}

/// Every child this harness started. Dropping it kills whatever is still running.
pub(crate) struct Procs {
    table: Table,
    logs: PathBuf,
}

impl Procs {
    /// `logs` receives one file per child (its stdout and stderr).
    pub(crate) fn new(logs: &Path) -> Self {
        Self {
            table: Table::default(),
            logs: logs.to_owned(),
        }
    }

    /// On SIGINT, SIGTERM or SIGHUP: kill every child, remove `scratch`, exit 130. Drop guards
    /// do not run when a signal ends the process, hence this thread.
    pub(crate) fn kill_on_signal(&self, scratch: PathBuf) -> anyhow::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let (mut int, mut term, mut hup) = runtime.block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            ))
        })?;
        let table = Arc::clone(&self.table);
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                runtime.block_on(async {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                        _ = hup.recv() => {}
                    }
                });
                kill_all(&table);
                let _ = std::fs::remove_dir_all(&scratch);
                eprintln!("georep-bench: interrupted; killed the tunnel processes");
                std::process::exit(130);
            })?;
        Ok(())
    }

    fn spawn(&self, label: String, program: &Path, args: &[String]) -> anyhow::Result<u32> {
        let log = self
            .logs
            .join(format!("{}.log", label.replace([' ', '/'], "_")));
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = child.id();
        lock(&self.table).push(Running { label, child, log });
        Ok(pid)
    }

    /// Fails, with the end of the child's log, if `pid` has exited.
    pub(crate) fn check(&self, pid: u32) -> anyhow::Result<()> {
        let mut table = lock(&self.table);
        let r = table
            .iter_mut()
            .find(|r| r.child.id() == pid)
            .ok_or_else(|| anyhow!("process {pid} is not ours"))?;
        if let Some(status) = r.child.try_wait()? {
            bail!(
                "{} (pid {pid}) exited with {status}; its log ends:\n{}",
                r.label,
                tail(&r.log)
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if `pid` is still there after [`STOP_GRACE`]. Both tunnels exit
    /// at once on SIGTERM when idle; the grace is for a profiler writing its output.
    fn stop(&self, pid: u32) {
        let Some(mut r) = ({
            let mut table = lock(&self.table);
            table
                .iter()
                .position(|r| r.child.id() == pid)
                .map(|i| table.swap_remove(i))
        }) else {
            return;
        };
        if let Ok(raw) = i32::try_from(pid) {
            let _ = signal::kill(Pid::from_raw(raw), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !matches!(r.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        kill_all(&self.table);
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let start = text.len().saturating_sub(2000);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text[start..].to_owned()
}

/// One `-e` → `-d` pair. Dropping it kills both.
pub(crate) struct Pair<'p> {
    procs: &'p Procs,
    pub(crate) label: &'static str,
    /// Where plaintext clients connect: the `-e` endpoint's `-s`.
    pub(crate) entry: SocketAddr,
    e: u32,
    d: u32,
}

impl<'p> Pair<'p> {
    /// Starts `-d` (forwarding to `target`), then `-e` forwarding to whatever `hop` returns for
    /// the `-d` address: the address itself, or a counting proxy in front of it.
    pub(crate) fn start(
        procs: &'p Procs,
        bin: &Binary,
        key: &Path,
        target: SocketAddr,
        hop: impl FnOnce(SocketAddr) -> anyhow::Result<SocketAddr>,
    ) -> anyhow::Result<Self> {
        let start_one = |mode: &str, source: SocketAddr, target: SocketAddr| {
            let mut args = bin.prefix.clone();
            args.extend(
                [
                    mode,
                    "-s",
                    &spiped_addr(source),
                    "-t",
                    &spiped_addr(target),
                    "-k",
                ]
                .map(str::to_owned),
            );
            args.push(key.display().to_string());
            args.push("-F".to_owned());
            args.extend(bin.extra.iter().cloned());
            let label = format!("{} {mode} {}", bin.label, source.port());
            let pid = procs.spawn(label, &bin.path, &args)?;
            wait_listening(procs, pid, source)?;
            anyhow::Ok(pid)
        };
        let d_addr = free_port()?;
        let d = start_one("-d", d_addr, target)?;
        // Kill -d if anything below fails.
        let mut pair = Self {
            procs,
            label: bin.label,
            entry: d_addr,
            e: d,
            d,
        };
        let e_addr = free_port()?;
        pair.e = start_one("-e", e_addr, hop(d_addr)?)?;
        pair.entry = e_addr;
        Ok(pair)
    }

    /// Both endpoints are still running.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        self.procs.check(self.e)?;
        self.procs.check(self.d)
    }

    /// Per-thread CPU counters of `-e` and `-d`, for [`cpu_between`].
    pub(crate) fn cpu(&self) -> anyhow::Result<[ThreadTimes; 2]> {
        Ok([thread_times(self.e)?, thread_times(self.d)?])
    }
}

impl Drop for Pair<'_> {
    fn drop(&mut self) {
        self.procs.stop(self.e);
        self.procs.stop(self.d);
    }
}

fn spiped_addr(a: SocketAddr) -> String {
    format!("[{}]:{}", a.ip(), a.port())
}

/// A loopback port nobody listens on right now (the usual small race is accepted).
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Waits until `addr` is in LISTEN state, reading /proc/net/tcp so that no probe connection
/// reaches the tunnel (a probe would make `-e` dial and handshake).
fn wait_listening(procs: &Procs, pid: u32, addr: SocketAddr) -> anyhow::Result<()> {
    let local = format!("0100007F:{:04X}", addr.port());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        procs.check(pid)?;
        let table = std::fs::read_to_string("/proc/net/tcp").context("reading /proc/net/tcp")?;
        let listening = table.lines().skip(1).any(|line| {
            let mut fields = line.split_whitespace();
            fields.nth(1) == Some(local.as_str()) && fields.nth(1) == Some("0A")
        });
        if listening {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("pid {pid} did not listen on {addr} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Nanoseconds on CPU so far, per thread id of one process.
pub(crate) type ThreadTimes = HashMap<u32, u64>;

/// Reads `/proc/<pid>/task/*/schedstat`, whose first field is the thread's time on CPU in
/// nanoseconds (exact, unlike the 10 ms ticks of `/proc/<pid>/stat`).
fn thread_times(pid: u32) -> anyhow::Result<ThreadTimes> {
    let mut times = ThreadTimes::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("cannot list the threads of pid {pid}"))?;
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread may exit between listing and reading.
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = stat.split_whitespace().next().and_then(|f| f.parse().ok()) {
            times.insert(tid, ns);
        }
    }
    Ok(times)
}

/// CPU seconds spent between two snapshots. Threads that started in between count from zero;
/// threads that ended in between are lost, which is harmless here: tokio's worker threads live
/// as long as the process and its blocking threads only end after 10 s idle.
pub(crate) fn cpu_between(before: &ThreadTimes, after: &ThreadTimes) -> f64 {
    let ns: u64 = after
        .iter()
        .map(|(tid, &t)| t.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    ns as f64 / 1e9
}

/// User + system CPU seconds of this whole process, including threads that have ended (client
/// and server threads come and go within one measurement), from `/proc/self/stat`.
pub(crate) fn own_cpu_seconds() -> anyhow::Result<f64> {
    // USER_HZ is 100 on every Linux architecture; it is part of the kernel ABI.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name start at field 3 (state); utime and stime
    // are fields 14 and 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        let f = fields
            .get(i)
            .ok_or_else(|| anyhow!("short /proc/self/stat"))?;
        Ok(f.parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
}

/// Machine-wide CPU jiffies from the first line of `/proc/stat`: (busy, interrupts). Busy
/// includes steal, since time the hypervisor gave to someone else was not ours either;
/// interrupts (irq + softirq) are part of busy, and come partly from our own traffic.
pub(crate) fn machine_jiffies() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().unwrap_or_default();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    if f.len() < 8 {
        bail!("unexpected /proc/stat: {line:?}");
    }
    let idle = f[3] + f[4];
    let all: u64 = f.iter().sum();
    Ok((all - idle, f[5] + f[6]))
}

/// Cores kept busy, machine-wide, over `window`.
pub(crate) fn machine_busy_cores(window: Duration) -> anyhow::Result<f64> {
    let (b0, _) = machine_jiffies()?;
    let t0 = Instant::now();
    std::thread::sleep(window);
    let (b1, _) = machine_jiffies()?;
    Ok((b1 - b0) as f64 / 100.0 / t0.elapsed().as_secs_f64())
}
