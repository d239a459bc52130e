//! Repeated full syncs through each path, the order rotated between runs, with what every
//! process on the path spent: so the process that bounds a full sync is named from measurement,
//! not guessed (issue #14).
//!
//! Per sync it records the wall time, the phases from the replica's own log (receiving the RDB,
//! loading it), the primary's fork time (`latest_fork_usec`) and the CPU seconds of each process
//! from `/proc/PID/stat`: the primary's main thread, its fork child (the RDB producer, counted in
//! the primary's `cutime`/`cstime` once reaped), both tunnel ends, the WAN emulator (this
//! harness's own process: it does nothing else while a sync runs) and the replica.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use resp::Conn;

/// Linux reports `/proc/PID/stat` times in USER_HZ, which the kernel ABI fixes at 100.
const TICKS_PER_SEC: f64 = 100.0;

/// One path as the sync phase drives it.
pub(crate) struct SyncPath {
    pub(crate) name: &'static str,
    /// A connection to the path's replica.
    pub(crate) replica: Conn,
    /// Where the replica follows the primary through this path.
    pub(crate) follow: std::net::SocketAddr,
    pub(crate) replica_pid: u32,
    pub(crate) replica_log: PathBuf,
    /// The tunnel's server end (next to the primary) and client end (next to the replica).
    pub(crate) tunnel_pids: Option<(u32, u32)>,
}

/// CPU seconds per process over one sync.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Cpu {
    primary_main: f64,
    primary_child: f64,
    tunnel_server: f64,
    tunnel_client: f64,
    wan: f64,
    replica: f64,
}

/// One full sync through one path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    wall: f64,
    /// From "Full resync from master" to "Flushing old data" in the replica's log.
    transfer: f64,
    /// From "Loading DB in memory" to "Finished with success".
    load: f64,
    fork_ms: f64,
    cpu: Cpu,
}

/// User + system time of `pid` (and, with `children`, of its reaped children instead).
fn cpu_secs(pid: u32, children: bool) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // The command name may hold spaces: the fields start after its closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3, so utime (14) is index 11, stime 12, cutime 13, cstime 14.
    let at = if children { 13 } else { 11 };
    let tick = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .context("short /proc stat")?
            .parse::<f64>()
            .context("malformed /proc stat")
    };
    Ok((tick(at)? + tick(at + 1)?) / TICKS_PER_SEC)
}

struct CpuProbe {
    primary: u32,
    tunnel: Option<(u32, u32)>,
    replica: u32,
}

impl CpuProbe {
    fn read(&self) -> anyhow::Result<Cpu> {
        let (server, client) = match self.tunnel {
            Some((s, c)) => (cpu_secs(s, false)?, cpu_secs(c, false)?),
            None => (0.0, 0.0),
        };
        Ok(Cpu {
            primary_main: cpu_secs(self.primary, false)?,
            primary_child: cpu_secs(self.primary, true)?,
            tunnel_server: server,
            tunnel_client: client,
            wan: cpu_secs(std::process::id(), false)?,
            replica: cpu_secs(self.replica, false)?,
        })
    }
}

impl std::ops::Sub for Cpu {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self {
            primary_main: self.primary_main - o.primary_main,
            primary_child: self.primary_child - o.primary_child,
            tunnel_server: self.tunnel_server - o.tunnel_server,
            tunnel_client: self.tunnel_client - o.tunnel_client,
            wan: self.wan - o.wan,
            replica: self.replica - o.replica,
        }
    }
}

/// Seconds since midnight of a Redis log line (`PID:R DD Mon YYYY HH:MM:SS.mmm * text`).
fn log_time(line: &str) -> Option<f64> {
    let clock = line.split_whitespace().nth(4)?;
    let mut parts = clock.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// The transfer and load phases of the last full sync in `log` (the text the replica logged
/// during this sync).
fn phases(log: &str) -> anyhow::Result<(f64, f64)> {
    let at = |needle: &str| {
        log.lines()
            .rev()
            .find(|l| l.contains(needle))
            .and_then(log_time)
            .with_context(|| format!("the replica's log has no {needle:?} for this sync"))
    };
    let span = |from: f64, to: f64| {
        // A sync that crosses midnight.
        if to < from {
            to + 86_400.0 - from
        } else {
            to - from
        }
    };
    let start = at("Full resync from master")?;
    let flushing = at("Flushing old data")?;
    let loading = at("Loading DB in memory")?;
    let done = at("MASTER <-> REPLICA sync: Finished with success")?;
    Ok((span(start, flushing), span(loading, done)))
}

async fn wait_synced(c: &mut Conn) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let info = c.info(&["replication"]).await?;
        if info.get("master_link_status") == Some("up")
            && info.get("master_sync_in_progress") == Some("0")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the replica did not finish its full sync in 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One full sync of `path`'s replica from an empty dataset.
async fn sync_once(
    primary: &mut Conn,
    primary_pid: u32,
    path: &mut SyncPath,
) -> anyhow::Result<Sample> {
    let probe = CpuProbe {
        primary: primary_pid,
        tunnel: path.tunnel_pids,
        replica: path.replica_pid,
    };
    let log_from = std::fs::metadata(&path.replica_log)?.len() as usize;
    let before = probe.read()?;
    let started = Instant::now();
    let c = &mut path.replica;
    c.cmd(&["REPLICAOF", "127.0.0.1", &path.follow.port().to_string()])
        .await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.cmd_with_timeout(&["PING"], Duration::from_secs(600))
        .await?;
    wait_synced(c).await?;
    let wall = started.elapsed().as_secs_f64();
    // The primary reaps its fork child in its cron (10 Hz): give it a moment, so the child's
    // CPU is in `cutime` before it is read.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = probe.read()? - before;
    let fork_ms = primary
        .info(&["stats"])
        .await?
        .int("latest_fork_usec")
        .unwrap_or(0) as f64
        / 1e3;
    let log = std::fs::read(&path.replica_log)?;
    let (transfer, load) = phases(&String::from_utf8_lossy(&log[log_from.min(log.len())..]))?;
    c.cmd(&["REPLICAOF", "NO", "ONE"]).await?;
    c.cmd_with_timeout(&["FLUSHALL"], Duration::from_secs(120))
        .await?;
    Ok(Sample {
        wall,
        transfer,
        load,
        fork_ms,
        cpu,
    })
}

/// `runs` full syncs through every path; run `r` starts with path `r mod n`, so each path takes
/// each position in the order once every n runs (a warm page cache or a tired CPU favours no
/// path). Returns the samples per path, in `paths` order.
pub(crate) async fn run(
    primary: &mut Conn,
    primary_pid: u32,
    paths: &mut [SyncPath],
    runs: usize,
) -> anyhow::Result<Vec<Vec<Sample>>> {
    let n = paths.len();
    let mut samples = vec![Vec::new(); n];
    for r in 0..runs {
        for k in 0..n {
            let i = (r + k) % n;
            let s = sync_once(primary, primary_pid, &mut paths[i]).await?;
            eprintln!(
                "run {}/{runs}: full sync through {}: {:.2} s (transfer {:.2} s, load {:.2} s)",
                r + 1,
                paths[i].name,
                s.wall,
                s.transfer,
                s.load
            );
            samples[i].push(s);
        }
    }
    Ok(samples)
}

/// The median wall time of a path's full syncs.
pub(crate) fn median_wall(samples: &[Sample]) -> f64 {
    median(samples.iter().map(|s| s.wall).collect())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn spread(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.2} ({lo:.2}–{hi:.2})", median(v.to_vec()))
}

/// The Markdown tables: wall time and phases per path (median and range), then the CPU each
/// process spent and how busy it was during the transfer, which names the bound.
pub(crate) fn report(names: &[&str], samples: &[Vec<Sample>]) -> String {
    let mut out = String::new();
    let runs = samples.first().map_or(0, Vec::len);
    let _ = writeln!(
        out,
        "full syncs: {runs} per path, order rotated; median (min–max) in seconds\n"
    );
    let _ = writeln!(
        out,
        "| path | full sync | ÷ direct (median) | transfer | load | primary fork (ms) |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |");
    let direct = median(samples[0].iter().map(|s| s.wall).collect());
    for (name, s) in names.iter().zip(samples) {
        let col = |f: fn(&Sample) -> f64| s.iter().map(f).collect::<Vec<_>>();
        let _ = writeln!(
            out,
            "| {name} | {} | {:.2}× | {} | {} | {:.0} |",
            spread(&col(|s| s.wall)),
            median(col(|s| s.wall)) / direct,
            spread(&col(|s| s.transfer)),
            spread(&col(|s| s.load)),
            median(col(|s| s.fork_ms)),
        );
    }
    let _ = writeln!(
        out,
        "\nCPU seconds per process over one sync (median), and in brackets its share of the \
         transfer phase's wall time (the replica's load phase subtracted from its CPU):\n"
    );
    let _ = writeln!(
        out,
        "| path | primary main | primary fork child | tunnel server | WAN emulator | tunnel client | replica | all ÷ (2 cores × sync) |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    for (name, s) in names.iter().zip(samples) {
        let transfer = median(s.iter().map(|s| s.transfer).collect());
        let cell = |f: fn(&Cpu) -> f64, during_load: f64| {
            let secs = median(s.iter().map(|s| f(&s.cpu)).collect());
            format!(
                "{secs:.2} ({:.0} %)",
                100.0 * (secs - during_load).max(0.0) / transfer
            )
        };
        let load = median(s.iter().map(|s| s.load).collect());
        let total = median(
            s.iter()
                .map(|s| {
                    let c = s.cpu;
                    (c.primary_main
                        + c.primary_child
                        + c.tunnel_server
                        + c.tunnel_client
                        + c.wan
                        + c.replica)
                        / (cores * s.wall)
                })
                .collect(),
        );
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} | {:.0} % |",
            cell(|c| c.primary_main, 0.0),
            cell(|c| c.primary_child, 0.0),
            cell(|c| c.tunnel_server, 0.0),
            cell(|c| c.wan, 0.0),
            cell(|c| c.tunnel_client, 0.0),
            cell(|c| c.replica, load),
            100.0 * total,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_come_from_the_last_sync_in_the_replica_log() {
        let log = "\
1:S 02 Dec 2026 23:59:58.100 * Full resync from master: abc:0
1:S 02 Dec 2026 23:59:59.600 * MASTER <-> REPLICA sync: Flushing old data
1:S 02 Dec 2026 23:59:59.650 * MASTER <-> REPLICA sync: Loading DB in memory
1:S 03 Dec 2026 00:00:02.650 * MASTER <-> REPLICA sync: Finished with success
";
        let (transfer, load) = phases(log).unwrap();
        assert!((transfer - 1.5).abs() < 1e-6, "{transfer}");
        assert!((load - 3.0).abs() < 1e-6, "{load}");
        assert!(phases("1:S 02 Dec 2026 00:00:00.000 * nothing").is_err());
    }

    #[test]
    fn cpu_of_this_process_is_read() {
        let a = cpu_secs(std::process::id(), false).unwrap();
        // Spin a little so the counter has something to show.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(cpu_secs(std::process::id(), false).unwrap() >= a);
        assert!(cpu_secs(u32::MAX, false).is_err());
    }

    #[test]
    fn median_and_spread() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(spread(&[3.0, 1.0, 2.0]), "2.00 (1.00–3.00)");
    }
}
