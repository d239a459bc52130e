//! The tunnel processes under test: started with identical flags, watched, and killed by PID
//! however the harness ends (normal return, error, panic, SIGINT/SIGTERM/SIGHUP).

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

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
        Self { table: Table::default(), logs: logs.to_owned() }
    }

    /// On SIGINT, SIGTERM or SIGHUP: kill every child, remove `scratch`, exit 130. Drop guards
    /// do not run when a signal ends the process, hence this thread.
    pub(crate) fn kill_on_signal(&self, scratch: PathBuf) -> anyhow::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
        let (mut int, mut term, mut hup) = runtime.block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            ))
        })?;
        let table = Arc::clone(&self.table);
        std::thread::Builder::new().name("signals".into()).spawn(move || {
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
        let log = self.logs.join(format!("{}.log", label.replace([' ', '/'], "_")));
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
            bail!("{} (pid {pid}) exited with {status}; its log ends:\n{}", r.label, tail(&r.log));
        }
        Ok(())
    }

    fn kill(&self, pid: u32) {
        let mut table = lock(&self.table);
        if let Some(i) = table.iter().position(|r| r.child.id() == pid) {
            let mut r = table.swap_remove(i);
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
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
    let start = (start..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(0);
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
                [mode, "-s", &spiped_addr(source), "-t", &spiped_addr(target), "-k"]
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
        let mut pair = Self { procs, label: bin.label, entry: d_addr, e: d, d };
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

    /// CPU seconds used so far by `-e` and `-d`.
    pub(crate) fn cpu(&self) -> anyhow::Result<[f64; 2]> {
        Ok([cpu_seconds(&self.e.to_string())?, cpu_seconds(&self.d.to_string())?])
    }
}

impl Drop for Pair<'_> {
    fn drop(&mut self) {
        self.procs.kill(self.e);
        self.procs.kill(self.d);
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

/// User + system CPU seconds of a whole process (all threads, living and exited), from
/// /proc/<pid>/stat; `pid` may be `self`.
pub(crate) fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    // USER_HZ is 100 on every Linux architecture we run on; it is part of the kernel ABI.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name start at field 3 (state); utime and stime
    // are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        let f = fields.get(i).ok_or_else(|| anyhow!("short /proc/{pid}/stat"))?;
        Ok(f.parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
}
