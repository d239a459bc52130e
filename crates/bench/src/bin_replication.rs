//! `georep-replication-bench`: Redis replication through georep's tunnel, directly, and through C
//! spiped, side by side in one run, across the same emulated WAN.
//!
//! One primary feeds three replicas at once — one per path — so all three see the same write load
//! at the same moments:
//!
//! ```text
//!                      ┌─ WAN ─────────────────────────────────► replica "direct"
//! redis-benchmark ─► primary ◄─ georep -d ◄─ WAN ◄─ georep -e ◄─ replica "georep"
//!                            ◄─ spiped -d ◄─ WAN ◄─ spiped -e ◄─ replica "spiped"
//! ```
//!
//! It reports the largest replication lag in bytes (primary offset − replica offset, sampled
//! every 10 ms), the heartbeat lag at arrival (p50/p99: a timestamp appended to a stream on the
//! primary every 100 ms, read with `XREAD BLOCK` on each replica), and the time of a full sync of
//! a ~1 GB dataset through each path (over loopback, without WAN delay, so the path itself is what
//! is measured), `--sync-runs` times per path with the order rotated, with the CPU every process
//! on the path spent (`sync.rs`). `--sync-only` measures the full syncs alone.
#![forbid(unsafe_code)]

mod children;
mod sync;
mod xread;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use children::{free_addr, Procs};
use clap::Parser;
use resp::Conn;
use tokio::sync::watch;
use wan::{Link, LinkHandle, LinkParams};
use xread::entries;

#[derive(Debug, Parser)]
#[command(name = "georep-replication-bench")]
struct Args {
    /// The georep binary [default: `georep` next to this program].
    #[arg(long, value_name = "PATH")]
    georep: Option<PathBuf>,
    /// One-way WAN delay between the regions, in milliseconds.
    #[arg(long, default_value_t = 45)]
    latency_ms: u64,
    /// SET requests redis-benchmark sends (pipelined 16 deep, 100-byte values).
    #[arg(long, default_value_t = 3_000_000)]
    requests: u64,
    /// Seconds of heartbeat-only measurement before the load.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Size of the full-sync dataset in MB (1,000-byte values).
    #[arg(long, default_value_t = 1000)]
    sync_mb: u64,
    /// Full syncs per path; the order of the paths is rotated between runs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=50))]
    sync_runs: u64,
    /// Measure only the full syncs (no idle heartbeat, no write load).
    #[arg(long)]
    sync_only: bool,
    /// `rdbcompression no` on the primary: the RDB crosses each path at its full size, as a
    /// dataset of incompressible values would (`DEBUG POPULATE`'s values compress very well).
    #[arg(long)]
    no_rdb_compression: bool,
    /// Where the Redis servers keep their data [default: the system's temporary directory]. A
    /// replica writes the whole RDB there before loading it: on a disk other work is writing to,
    /// the disk is what a full sync measures; `/dev/shm` takes it out.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

const PATHS: [&str; 3] = ["direct", "georep", "spiped"];

fn bracket(a: SocketAddr) -> String {
    format!("[{}]:{}", a.ip(), a.port())
}

async fn conn(addr: SocketAddr) -> anyhow::Result<Conn> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Conn::connect(addr, None, Duration::from_secs(2)).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn info_int(c: &mut Conn, field: &str) -> anyhow::Result<i64> {
    c.info(&["replication"])
        .await?
        .int(field)
        .with_context(|| format!("INFO has no {field}"))
}

async fn wait_synced(c: &mut Conn) -> anyhow::Result<()> {
    loop {
        let info = c.info(&["replication"]).await?;
        if info.get("master_link_status") == Some("up")
            && info.get("master_sync_in_progress") == Some("0")
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn redis_args(port: u16, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
        "--repl-backlog-size",
        "512mb",
        "--client-output-buffer-limit",
        "replica 0 0 0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The primary and one replica per path, all running.
struct Setup {
    primary: SocketAddr,
    primary_pid: u32,
    replicas: Vec<Replica>,
    links: Vec<LinkHandle>,
}

struct Replica {
    path: &'static str,
    addr: SocketAddr,
    /// Where the replica follows the primary through its path.
    follow: SocketAddr,
    pid: u32,
    log: PathBuf,
    /// The tunnel's server and client ends (none for the direct path).
    tunnel_pids: Option<(u32, u32)>,
}

struct Tools {
    georep: PathBuf,
    redis_server: PathBuf,
    spiped: PathBuf,
    benchmark: PathBuf,
}

fn tools(georep: Option<PathBuf>) -> anyhow::Result<Tools> {
    let georep = match georep {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("georep"),
    };
    let which = |p: &str| {
        std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join(p))
                    .find(|c| c.is_file())
            })
            .with_context(|| format!("{p} not found on PATH"))
    };
    if !georep.is_file() {
        bail!(
            "{} not found: cargo build --release -p georep",
            georep.display()
        );
    }
    Ok(Tools {
        georep,
        redis_server: which("redis-server")?,
        spiped: which("spiped")?,
        benchmark: which("redis-benchmark")?,
    })
}

/// Starts the primary and, per path, `[replica] → (tunnel client) → WAN → (tunnel server) →
/// primary`, and waits for every replica's first sync.
async fn start(
    tools: &Tools,
    dir: &Path,
    procs: &mut Procs,
    wan: LinkParams,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Setup> {
    let key = dir.join("key");
    std::fs::write(&key, {
        let mut k = [0u8; 32];
        getrandom::getrandom(&mut k)?;
        k
    })?;
    let key = key.display().to_string();
    let primary = free_addr();
    std::fs::create_dir_all(dir.join("primary"))?;
    let primary_pid = procs.spawn(
        &tools.redis_server,
        &redis_args(
            primary.port(),
            &dir.join("primary"),
            &["--enable-debug-command", "yes"],
        ),
        &dir.join("primary.log"),
    )?;
    conn(primary).await?;

    let mut links = Vec::new();
    let mut replicas = Vec::new();
    for path in PATHS {
        // A tunnel endpoint of this path's implementation, listening on a fresh port.
        let mut tunnel = |mode: &str, target: SocketAddr| -> anyhow::Result<(SocketAddr, u32)> {
            let listen = free_addr();
            let (program, mut a) = match path {
                "georep" => (&tools.georep, vec!["tunnel".to_string()]),
                _ => (&tools.spiped, vec!["-F".to_string()]),
            };
            a.extend(
                [
                    mode,
                    "-s",
                    &bracket(listen),
                    "-t",
                    &bracket(target),
                    "-k",
                    &key,
                ]
                .map(String::from),
            );
            let pid = procs.spawn(program, &a, &dir.join(format!("{path}{mode}.log")))?;
            Ok((listen, pid))
        };
        let server = match path {
            "direct" => None,
            _ => Some(tunnel("-d", primary)?),
        };
        let wan_addr = free_addr();
        let listener = tokio::net::TcpListener::bind(wan_addr).await?;
        links.push(Link::spawn(
            path.into(),
            listener,
            server.map_or(primary, |(addr, _)| addr),
            wan,
            stop.clone(),
        ));
        let client = match path {
            "direct" => None,
            _ => Some(tunnel("-e", wan_addr)?),
        };
        let follow = client.map_or(wan_addr, |(addr, _)| addr);
        let addr = free_addr();
        let replica_dir = dir.join(path);
        std::fs::create_dir_all(&replica_dir)?;
        let log = dir.join(format!("{path}.log"));
        let follow_args = ["--replicaof", "127.0.0.1", &follow.port().to_string()];
        let pid = procs.spawn(
            &tools.redis_server,
            &redis_args(addr.port(), &replica_dir, &follow_args),
            &log,
        )?;
        let tunnel_pids = server.zip(client).map(|((_, s), (_, c))| (s, c));
        replicas.push(Replica {
            path,
            addr,
            follow,
            pid,
            log,
            tunnel_pids,
        });
    }
    for r in &replicas {
        wait_synced(&mut conn(r.addr).await?).await?;
    }
    Ok(Setup {
        primary,
        primary_pid,
        replicas,
        links,
    })
}

/// Heartbeat lags idle and under load, and replication lag under load, per path.
struct LoadReport {
    requests: u64,
    load_secs: f64,
    idle: Vec<Vec<f64>>,
    loaded: Vec<Vec<f64>>,
    max_lag: Vec<i64>,
    mean_lag: Vec<i64>,
    samples: i64,
}

/// The idle heartbeat, then the write load with lag sampled every 10 ms.
async fn measure_load(
    args: &Args,
    benchmark: &Path,
    setup: &Setup,
    stop_rx: &watch::Receiver<bool>,
) -> anyhow::Result<LoadReport> {
    let (stop_tx, stop_load) = watch::channel(false);
    // Heartbeat: stamp on the primary every 100 ms; each replica measures stamps on arrival.
    let lags: Arc<Mutex<Vec<Vec<f64>>>> = Arc::new(Mutex::new(vec![Vec::new(); PATHS.len()]));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    {
        let mut hb = conn(setup.primary).await?;
        let (mut stop, mut done) = (stop_rx.clone(), stop_load.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tick.tick() => {},
                    _ = stop.wait_for(|s| *s) => return,
                    _ = done.wait_for(|s| *s) => return,
                }
                let now = now_ms().to_string();
                let _ = hb
                    .cmd(&["XADD", "hb", "MAXLEN", "~", "1000", "*", "ms", &now])
                    .await;
            }
        }));
    }
    for (i, r) in setup.replicas.iter().enumerate() {
        let mut c = conn(r.addr).await?;
        let (lags, measuring) = (lags.clone(), measuring.clone());
        let (mut stop, mut done) = (stop_rx.clone(), stop_load.clone());
        tasks.push(tokio::spawn(async move {
            let mut last = "$".to_string();
            loop {
                let read = ["XREAD", "BLOCK", "1000", "STREAMS", "hb", last.as_str()];
                let reply = tokio::select! {
                    r = c.cmd_with_timeout(&read, Duration::from_secs(5)) => r,
                    _ = stop.wait_for(|s| *s) => return,
                    _ = done.wait_for(|s| *s) => return,
                };
                let now = now_ms();
                if let Ok(v) = reply {
                    for (id, ms) in entries(&v) {
                        last = id;
                        if measuring.load(std::sync::atomic::Ordering::SeqCst) {
                            lags.lock().unwrap()[i].push(now.saturating_sub(ms) as f64);
                        }
                    }
                }
            }
        }));
    }
    let sorted = |v: Vec<Vec<f64>>| -> Vec<Vec<f64>> {
        v.into_iter()
            .map(|mut v| {
                v.sort_by(f64::total_cmp);
                v
            })
            .collect()
    };

    // Idle: the heartbeat alone shows what each path adds to the WAN's one-way delay.
    eprintln!("idle for {} s…", args.idle_secs);
    measuring.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let idle = sorted(std::mem::replace(
        &mut *lags.lock().unwrap(),
        vec![Vec::new(); PATHS.len()],
    ));

    // Write load, with lag sampled every 10 ms.
    eprintln!("redis-benchmark: {} pipelined SETs…", args.requests);
    let load_started = Instant::now();
    let mut load = Command::new(benchmark)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &setup.primary.port().to_string(),
            "-t",
            "set",
            "-n",
            &args.requests.to_string(),
            "-P",
            "16",
            "-d",
            "100",
            "-r",
            "1000000",
            "-q",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut p = conn(setup.primary).await?;
    let mut rconns = Vec::new();
    for r in &setup.replicas {
        rconns.push(conn(r.addr).await?);
    }
    let mut max_lag = vec![0i64; PATHS.len()];
    let mut sum_lag = vec![0i64; PATHS.len()];
    let mut samples = 0i64;
    while load.try_wait()?.is_none() {
        // Replica offsets first, then the primary's: the primary can only be ahead, so the lag is
        // never under-reported by the order of the reads.
        let mut ro = Vec::new();
        for c in rconns.iter_mut() {
            ro.push(info_int(c, "slave_repl_offset").await?);
        }
        let po = info_int(&mut p, "master_repl_offset").await?;
        for (i, r) in ro.into_iter().enumerate() {
            max_lag[i] = max_lag[i].max(po - r);
            sum_lag[i] += po - r;
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let load_secs = load_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(false, std::sync::atomic::Ordering::SeqCst);
    let loaded = sorted(lags.lock().unwrap().clone());
    stop_tx.send_replace(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(LoadReport {
        requests: args.requests,
        load_secs,
        idle,
        loaded,
        mean_lag: sum_lag.iter().map(|s| s / samples.max(1)).collect(),
        max_lag,
        samples,
    })
}

/// Fills the primary with `sync_mb` MB of 1,000-byte values, then full-syncs every replica from
/// empty, `runs` times per path, over loopback (no WAN delay: the path itself is measured).
async fn measure_sync(
    args: &Args,
    setup: &mut Setup,
) -> anyhow::Result<(i64, Vec<Vec<sync::Sample>>)> {
    for l in &setup.links {
        l.set_params(LinkParams::default());
    }
    let mut p = conn(setup.primary).await?;
    if args.no_rdb_compression {
        p.cmd(&["CONFIG", "SET", "rdbcompression", "no"]).await?;
    }
    let keys = args.sync_mb * 1000;
    eprintln!("populating {keys} keys of 1,000 bytes…");
    p.cmd_with_timeout(
        &["DEBUG", "POPULATE", &keys.to_string(), "pop", "1000"],
        Duration::from_secs(600),
    )
    .await?;
    let used = p.info(&["memory"]).await?.int("used_memory").unwrap_or(0);
    let mut paths = Vec::new();
    for r in &setup.replicas {
        let mut c = conn(r.addr).await?;
        c.cmd(&["REPLICAOF", "NO", "ONE"]).await?;
        c.cmd_with_timeout(&["FLUSHALL"], Duration::from_secs(120))
            .await?;
        paths.push(sync::SyncPath {
            name: r.path,
            replica: c,
            follow: r.follow,
            replica_pid: r.pid,
            replica_log: r.log.clone(),
            tunnel_pids: r.tunnel_pids,
        });
    }
    let runs = usize::try_from(args.sync_runs)?;
    let samples = sync::run(&mut p, setup.primary_pid, &mut paths, runs).await?;
    Ok((used, samples))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tools = tools(args.georep.clone())?;
    let tmp = match &args.data_dir {
        Some(dir) => tempfile::tempdir_in(dir)
            .with_context(|| format!("cannot create a directory in {}", dir.display()))?,
        None => tempfile::tempdir()?,
    };
    let mut procs = Procs::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let wan = LinkParams::new(Duration::from_millis(args.latency_ms));
    let mut setup = start(&tools, tmp.path(), &mut procs, wan, &stop_rx).await?;
    eprintln!(
        "three replicas attached through {} ms of emulated WAN",
        args.latency_ms
    );
    let load = match args.sync_only {
        true => None,
        false => Some(measure_load(&args, &tools.benchmark, &setup, &stop_rx).await?),
    };
    let (used, syncs) = measure_sync(&args, &mut setup).await?;
    stop_tx.send_replace(true);

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "machine: {} cores, {cpu}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "command: {}",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    let compression = match args.no_rdb_compression {
        true => "rdbcompression no",
        false => "rdbcompression yes (Redis's default)",
    };
    println!(
        "full sync: {} keys of 1,000 bytes, {:.2} GB used_memory, {compression}, loopback, data in {}",
        args.sync_mb * 1000,
        used as f64 / 1e9,
        tmp.path().parent().map_or_else(String::new, |p| p.display().to_string()),
    );
    if let Some(load) = &load {
        print_load(&args, load, &syncs);
    }
    println!("\n{}", sync::report(&PATHS, &syncs));
    Ok(())
}

fn print_load(args: &Args, load: &LoadReport, syncs: &[Vec<sync::Sample>]) {
    println!(
        "WAN: {} ms one way (user-space emulator); load: redis-benchmark SET -P 16 -d 100, {} \
         requests in {:.1} s\n",
        args.latency_ms, load.requests, load.load_secs
    );
    println!("| metric | direct | georep | spiped | georep / direct | target |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    let row = |name: &str, v: [f64; 3], target: &str| {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.2}× | {target} |",
            v[0],
            v[1],
            v[2],
            v[1] / v[0]
        );
    };
    let per = |f: &dyn Fn(usize) -> f64| [f(0), f(1), f(2)];
    row(
        "heartbeat lag idle, p50 (ms)",
        per(&|i| percentile(&load.idle[i], 0.5)),
        "≤ 47 ms",
    );
    row(
        "heartbeat lag idle, p99 (ms)",
        per(&|i| percentile(&load.idle[i], 0.99)),
        "≤ 1.1× direct",
    );
    let kb = |v: i64| v as f64 / 1e3;
    let goal = "≤ 1.1× direct, < spiped";
    row(
        "replication lag under load, max (KB)",
        per(&|i| kb(load.max_lag[i])),
        goal,
    );
    row(
        "replication lag under load, mean (KB)",
        per(&|i| kb(load.mean_lag[i])),
        goal,
    );
    row(
        "heartbeat lag under load, p50 (ms)",
        per(&|i| percentile(&load.loaded[i], 0.5)),
        goal,
    );
    row(
        "heartbeat lag under load, p99 (ms)",
        per(&|i| percentile(&load.loaded[i], 0.99)),
        goal,
    );
    row(
        "full sync of the dataset, median (s)",
        per(&|i| sync::median_wall(&syncs[i])),
        "≤ 1.05× direct",
    );
    let counts = |v: &[Vec<f64>]| {
        v.iter()
            .map(|v| v.len().to_string())
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "\nsamples — heartbeat idle: {}; heartbeat under load: {}; offsets under load: {}",
        counts(&load.idle),
        counts(&load.loaded),
        load.samples
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
