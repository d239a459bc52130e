//! `georep-relay-bench`: replication through the relays against direct replication, side by side
//! in one run, across the same emulated WAN (the `wan` crate), with real redis-server.
//!
//! ```text
//!                      ┌─ WAN "direct" ─────────────────────────────────────► replica "direct"
//! loader ─► primary ◄─ relay A ◄─ WAN "relay" ◄────── relay B (plain) ◄────── replica "relay"
//!                              ◄─ WAN "relay+zstd" ◄─ relay C (zstd) ◄─────── replica "relay+zstd"
//! ```
//!
//! Relay A runs `--compression zstd`: it compresses for relay C, which asks, and not for relay B,
//! which does not (the negotiation). The relays' tunnels are left out: they cost the same on
//! both relay paths and the direct path has none.
//!
//! 1. **Steady state**: a paced load of JSON-like documents; the heartbeat lag at arrival (a
//!    microsecond stamp `XADD`ed on the primary every 100 ms, read with `XREAD BLOCK` on each
//!    replica), and the WAN bytes per payload byte per path.
//! 2. **A cut**: every WAN link is cut, `--cut-mb` of documents (≥ 5× the primary's
//!    `repl-backlog-size`) are written, the links heal; per path the time until the replica has
//!    the primary's offset and the WAN bytes it took. The direct replica full-resyncs (the
//!    backlog no longer reaches the cut); the relay replicas resume from relay A's disk.
//!
//! Then every replica's `DEBUG DIGEST` is compared with the primary's.
#![forbid(unsafe_code)]

mod children;
mod xread;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use children::{free_addr, Procs};
use clap::Parser;
use resp::{Conn, Credentials};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use wan::{Link, LinkHandle, LinkParams};
use xread::entries;

#[derive(Debug, Parser)]
#[command(name = "georep-relay-bench")]
struct Args {
    /// The georep binary [default: `georep` next to this program].
    #[arg(long, value_name = "PATH")]
    georep: Option<PathBuf>,
    /// One-way WAN delay, milliseconds.
    #[arg(long, default_value_t = 45)]
    latency_ms: u64,
    /// WAN bandwidth per direction and link, Mbit/s.
    #[arg(long, default_value_t = 400)]
    bandwidth_mbit: u64,
    /// Dataset written before anything is measured, MB of documents.
    #[arg(long, default_value_t = 128)]
    dataset_mb: u64,
    /// The primary's `repl-backlog-size`, MB.
    #[arg(long, default_value_t = 16)]
    backlog_mb: u64,
    /// Documents written during the cut, MB (at least 5× the backlog).
    #[arg(long, default_value_t = 96)]
    cut_mb: u64,
    /// Steady-state load: documents per second.
    #[arg(long, default_value_t = 4000)]
    rate: u64,
    /// Steady-state load: seconds.
    #[arg(long, default_value_t = 20)]
    load_secs: u64,
    /// Where the Redis servers and the relays keep their data [default: the system's temporary
    /// directory].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

const PATHS: [&str; 3] = ["direct", "relay", "relay+zstd"];
const PASSWORD_FILE: &str = "replication.password";

async fn conn(addr: SocketAddr) -> anyhow::Result<Conn> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Conn::connect(addr, None::<&Credentials>, Duration::from_secs(2)).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn info_int(c: &mut Conn, section: &str, field: &str) -> anyhow::Result<i64> {
    c.info(&[section])
        .await?
        .int(field)
        .with_context(|| format!("INFO has no {field}"))
}

/// A redis.conf: secrets (masterauth) stay off command lines.
fn redis_conf(
    dir: &Path,
    port: u16,
    backlog_mb: u64,
    follow: Option<(SocketAddr, &str)>,
) -> String {
    let mut c = format!(
        "port {port}\nbind 127.0.0.1\ndir {}\nsave \"\"\nappendonly no\nprotected-mode no\n\
         enable-debug-command yes\nrepl-backlog-size {backlog_mb}mb\n\
         client-output-buffer-limit replica 0 0 0\nrepl-diskless-sync yes\n\
         repl-diskless-sync-delay 0\n",
        dir.display()
    );
    if let Some((addr, password)) = follow {
        c.push_str(&format!(
            "replicaof {} {}\nmasteruser default\nmasterauth {password}\n",
            addr.ip(),
            addr.port()
        ));
    }
    c
}

/// A JSON-like document of ~330 bytes: an order with a customer and items (repetitive field
/// names, varied numbers and ids), what application values look like; neither random bytes nor
/// runs of one byte.
fn document(i: u64) -> Vec<u8> {
    let tiers = ["gold", "silver", "bronze"];
    let states = ["new", "paid", "shipped", "delivered"];
    let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!(
        r#"{{"id":{i},"type":"order","customer":{{"id":"c-{:06}","name":"Customer {}","tier":"{}","country":"{}"}},"items":[{{"sku":"sku-{:05}","qty":{},"price":{}.{:02}}},{{"sku":"sku-{:05}","qty":1,"price":{}.99}}],"total":{}.{:02},"status":"{}","created":"2026-12-02T{:02}:{:02}:{:02}.{:03}Z"}}"#,
        h % 100_000,
        h % 100_000,
        tiers[(h >> 20) as usize % 3],
        ["US", "DE", "FR", "JP", "BR"][(h >> 24) as usize % 5],
        (h >> 8) % 50_000,
        1 + (h >> 30) % 4,
        (h >> 12) % 500,
        (h >> 36) % 100,
        (h >> 40) % 50_000,
        (h >> 44) % 90,
        (h >> 16) % 2000,
        (h >> 48) % 100,
        states[(h >> 52) as usize % 4],
        (i / 3_600_000) % 24,
        (i / 60_000) % 60,
        (i / 1000) % 60,
        i % 1000
    )
    .into_bytes()
}

/// Writes documents `first..first + n` pipelined on a raw connection; returns payload bytes.
async fn write_documents(
    sock: &mut tokio::net::TcpStream,
    first: u64,
    n: u64,
) -> anyhow::Result<u64> {
    let mut out = Vec::new();
    let mut payload = 0u64;
    for i in first..first + n {
        let doc = document(i);
        payload += doc.len() as u64;
        resp::encode(
            &[b"SET".as_slice(), format!("doc:{i}").as_bytes(), &doc],
            &mut out,
        );
    }
    sock.write_all(&out).await?;
    // Every reply is `+OK\r\n`.
    let mut left = 5 * n as usize;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let got = sock.read(&mut buf).await?;
        if got == 0 {
            bail!("primary closed the connection");
        }
        if buf[..got].contains(&b'-') {
            bail!(
                "primary refused a write: {}",
                String::from_utf8_lossy(&buf[..got])
            );
        }
        left = left.saturating_sub(got);
    }
    Ok(payload)
}

/// Writes at least `mb` MB of documents as fast as the primary takes them; returns
/// (documents, payload bytes).
async fn fill(primary: SocketAddr, first: u64, mb: u64) -> anyhow::Result<(u64, u64)> {
    let mut sock = tokio::net::TcpStream::connect(primary).await?;
    let (mut n, mut payload) = (0u64, 0u64);
    while payload < mb * 1_000_000 {
        payload += write_documents(&mut sock, first + n, 1000).await?;
        n += 1000;
    }
    Ok((n, payload))
}

/// A georep relay's /metrics series (0 when absent).
async fn metric(addr: SocketAddr, series: &str) -> f64 {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return f64::NAN;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await;
    let mut body = String::new();
    let _ = s.read_to_string(&mut body).await;
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

struct Replica {
    addr: SocketAddr,
    link: LinkHandle,
    /// The relay next to the replica (none on the direct path): its metrics address.
    relay_metrics: Option<SocketAddr>,
}

struct Setup {
    primary: SocketAddr,
    relay_a_metrics: SocketAddr,
    replicas: Vec<Replica>,
}

#[allow(clippy::too_many_arguments)]
fn relay_args(
    upstream: SocketAddr,
    listen: SocketAddr,
    metrics: SocketAddr,
    dir: &Path,
    password: &Path,
    upstream_auth: bool,
    compression: &str,
) -> Vec<String> {
    let mut a: Vec<String> = [
        "relay",
        "--upstream",
        &upstream.to_string(),
        "--listen",
        &listen.to_string(),
        "--password-file",
        &password.display().to_string(),
        "--dir",
        &dir.display().to_string(),
        "--metrics",
        &metrics.to_string(),
        "--retention",
        "8GiB",
        "--compression",
        compression,
    ]
    .map(String::from)
    .to_vec();
    if upstream_auth {
        a.extend([
            "--upstream-password-file".into(),
            password.display().to_string(),
        ]);
    }
    a
}

async fn start(
    args: &Args,
    georep: &Path,
    redis_server: &Path,
    dir: &Path,
    procs: &mut Procs,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Setup> {
    let password = {
        let mut k = [0u8; 16];
        getrandom::getrandom(&mut k)?;
        k.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let password_file = dir.join(PASSWORD_FILE);
    std::fs::write(&password_file, &password)?;
    let redis = |procs: &mut Procs, name: &str, follow: Option<SocketAddr>| {
        let addr = free_addr();
        let d = dir.join(name);
        std::fs::create_dir_all(&d)?;
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(
            &conf,
            redis_conf(
                &d,
                addr.port(),
                args.backlog_mb,
                follow.map(|f| (f, password.as_str())),
            ),
        )?;
        procs.spawn(
            redis_server,
            &[conf.display().to_string()],
            &dir.join(format!("{name}.log")),
        )?;
        anyhow::Ok(addr)
    };
    let primary = redis(procs, "primary", None)?;
    conn(primary).await?;
    let mut wan = LinkParams::new(Duration::from_millis(args.latency_ms));
    if args.bandwidth_mbit > 0 {
        wan = wan.with_bandwidth(args.bandwidth_mbit * 1_000_000 / 8);
    }
    let link = |name: &'static str, to: SocketAddr| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        anyhow::Ok((
            Link::spawn(name.into(), listener, to, wan, stop.clone()),
            addr,
        ))
    };

    let (a_listen, a_metrics) = (free_addr(), free_addr());
    procs.spawn(
        georep,
        &relay_args(
            primary,
            a_listen,
            a_metrics,
            &dir.join("relay-a"),
            &password_file,
            false,
            "zstd",
        ),
        &dir.join("relay-a.log"),
    )?;
    let mut replicas = Vec::new();
    for path in PATHS {
        let (follow, relay_metrics, link) = match path {
            "direct" => {
                let (l, addr) = link(path, primary).await?;
                (addr, None, l)
            }
            _ => {
                let (l, wan_addr) = link(path, a_listen).await?;
                let (listen, metrics) = (free_addr(), free_addr());
                let (name, compression) = match path {
                    "relay" => ("relay-b", "none"),
                    _ => ("relay-c", "zstd"),
                };
                procs.spawn(
                    georep,
                    &relay_args(
                        wan_addr,
                        listen,
                        metrics,
                        &dir.join(name),
                        &password_file,
                        true,
                        compression,
                    ),
                    &dir.join(format!("{name}.log")),
                )?;
                (listen, Some(metrics), l)
            }
        };
        let addr = redis(
            procs,
            &format!("replica-{path}").replace('+', "-"),
            Some(follow),
        )?;
        replicas.push(Replica {
            addr,
            link,
            relay_metrics,
        });
    }
    Ok(Setup {
        primary,
        relay_a_metrics: a_metrics,
        replicas,
    })
}

/// Waits until every replica has (at least: the primary PINGs its replicas) the primary's offset
/// of now; returns, per replica, how long it took.
async fn caught_up(setup: &Setup, since: Instant) -> anyhow::Result<Vec<Duration>> {
    let mut p = conn(setup.primary).await?;
    let target = info_int(&mut p, "replication", "master_repl_offset").await?;
    let mut done = vec![None; setup.replicas.len()];
    let mut conns = Vec::new();
    for r in &setup.replicas {
        conns.push(conn(r.addr).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    while done.iter().any(Option::is_none) {
        for (i, c) in conns.iter_mut().enumerate() {
            if done[i].is_some() {
                continue;
            }
            let info = c.info(&["replication"]).await?;
            if info.int("master_repl_offset").is_some_and(|o| o >= target)
                && info.get("master_link_status") == Some("up")
            {
                done[i] = Some(since.elapsed());
            }
        }
        if Instant::now() > deadline {
            bail!("replicas not caught up after 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(done.into_iter().map(|d| d.unwrap_or_default()).collect())
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

struct Steady {
    payload: u64,
    stream: i64,
    secs: f64,
    /// Heartbeat lags at arrival per path, ms, sorted.
    lags: Vec<Vec<f64>>,
    wan: Vec<u64>,
}

async fn steady(args: &Args, setup: &Setup, first: u64) -> anyhow::Result<(Steady, u64)> {
    let (stop_tx, stop) = watch::channel(false);
    let lags: Arc<Mutex<Vec<Vec<f64>>>> = Arc::new(Mutex::new(vec![Vec::new(); PATHS.len()]));
    let mut tasks = Vec::new();
    {
        let mut hb = conn(setup.primary).await?;
        let mut stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tick.tick() => {},
                    _ = stop.wait_for(|s| *s) => return,
                }
                let now = now_us().to_string();
                let _ = hb
                    .cmd(&["XADD", "hb", "MAXLEN", "~", "1000", "*", "us", &now])
                    .await;
            }
        }));
    }
    for (i, r) in setup.replicas.iter().enumerate() {
        let mut c = conn(r.addr).await?;
        let (lags, mut stop) = (lags.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut last = "$".to_string();
            loop {
                let read = ["XREAD", "BLOCK", "1000", "STREAMS", "hb", last.as_str()];
                let reply = tokio::select! {
                    r = c.cmd_with_timeout(&read, Duration::from_secs(5)) => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                let now = now_us();
                if let Ok(v) = reply {
                    for (id, us) in entries(&v) {
                        last = id;
                        lags.lock().unwrap()[i].push(now.saturating_sub(us) as f64 / 1000.0);
                    }
                }
            }
        }));
    }
    // Let the readers block first, then drop what arrived before the load.
    tokio::time::sleep(Duration::from_millis(500)).await;
    lags.lock().unwrap().iter_mut().for_each(Vec::clear);
    let mut p = conn(setup.primary).await?;
    let offset0 = info_int(&mut p, "replication", "master_repl_offset").await?;
    let wan0: Vec<u64> = setup
        .replicas
        .iter()
        .map(|r| r.link.stats().bytes_down)
        .collect();
    let mut sock = tokio::net::TcpStream::connect(setup.primary).await?;
    let started = Instant::now();
    let per_tick = (args.rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let (mut next, mut payload) = (first, 0u64);
    while started.elapsed() < Duration::from_secs(args.load_secs) {
        tick.tick().await;
        payload += write_documents(&mut sock, next, per_tick).await?;
        next += per_tick;
    }
    let secs = started.elapsed().as_secs_f64();
    caught_up(setup, Instant::now()).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send_replace(true);
    for t in tasks {
        let _ = t.await;
    }
    let stream = info_int(&mut p, "replication", "master_repl_offset").await? - offset0;
    let wan = setup
        .replicas
        .iter()
        .zip(wan0)
        .map(|(r, w)| r.link.stats().bytes_down - w)
        .collect();
    let mut lags = lags.lock().unwrap().clone();
    lags.iter_mut().for_each(|v| v.sort_by(f64::total_cmp));
    Ok((
        Steady {
            payload,
            stream,
            secs,
            lags,
            wan,
        },
        next,
    ))
}

struct Cut {
    payload: u64,
    stream: i64,
    write_secs: f64,
    catch_up: Vec<Duration>,
    wan: Vec<u64>,
    primary_full_syncs: i64,
    relay_full_syncs: Vec<f64>,
}

async fn cut(args: &Args, setup: &Setup, first: u64) -> anyhow::Result<Cut> {
    let mut p = conn(setup.primary).await?;
    let full0 = info_int(&mut p, "stats", "sync_full").await?;
    let mut relay_full0 = Vec::new();
    for r in &setup.replicas {
        relay_full0.push(match r.relay_metrics {
            Some(m) => metric(m, "georep_relay_upstream_full_syncs_total").await,
            None => f64::NAN,
        });
    }
    let offset0 = info_int(&mut p, "replication", "master_repl_offset").await?;
    for r in &setup.replicas {
        r.link.cut();
    }
    let started = Instant::now();
    let (_, payload) = fill(setup.primary, first, args.cut_mb).await?;
    let write_secs = started.elapsed().as_secs_f64();
    let stream = info_int(&mut p, "replication", "master_repl_offset").await? - offset0;
    // Relay A, on the primary's side of the cut, must hold it all before the heal.
    loop {
        let held = metric(setup.relay_a_metrics, "georep_relay_upstream_offset").await;
        if held >= (offset0 + stream) as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wan0: Vec<u64> = setup
        .replicas
        .iter()
        .map(|r| r.link.stats().bytes_down)
        .collect();
    let healed = Instant::now();
    for r in &setup.replicas {
        r.link.heal();
    }
    let catch_up = caught_up(setup, healed).await?;
    let wan = setup
        .replicas
        .iter()
        .zip(wan0)
        .map(|(r, w)| r.link.stats().bytes_down - w)
        .collect();
    let mut relay_full_syncs = Vec::new();
    for (r, before) in setup.replicas.iter().zip(relay_full0) {
        relay_full_syncs.push(match r.relay_metrics {
            Some(m) => metric(m, "georep_relay_upstream_full_syncs_total").await - before,
            None => f64::NAN,
        });
    }
    Ok(Cut {
        payload,
        stream,
        write_secs,
        catch_up,
        wan,
        primary_full_syncs: info_int(&mut p, "stats", "sync_full").await? - full0,
        relay_full_syncs,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn mb(bytes: f64) -> String {
    format!("{:.1} MB", bytes / 1e6)
}

fn which(program: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(program))
                .find(|c| c.is_file())
        })
        .with_context(|| format!("{program} not found on PATH"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.cut_mb < 5 * args.backlog_mb {
        bail!("--cut-mb must be at least 5x --backlog-mb: the cut must overrun the backlog");
    }
    let georep = match &args.georep {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("georep"),
    };
    if !georep.is_file() {
        bail!(
            "{} not found: cargo build --release -p georep",
            georep.display()
        );
    }
    let redis_server = which("redis-server")?;
    let tmp = match &args.data_dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let mut procs = Procs::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let setup = start(
        &args,
        &georep,
        &redis_server,
        tmp.path(),
        &mut procs,
        &stop_rx,
    )
    .await?;

    eprintln!("writing the {} MB dataset…", args.dataset_mb);
    let (mut next, _) = fill(setup.primary, 0, args.dataset_mb).await?;
    caught_up(&setup, Instant::now()).await?;
    eprintln!(
        "steady load: {} documents/s for {} s…",
        args.rate, args.load_secs
    );
    let (st, n) = steady(&args, &setup, next).await?;
    next = n;
    eprintln!(
        "cut: {} MB of documents while every WAN link is down…",
        args.cut_mb
    );
    let cut = cut(&args, &setup, next).await?;

    let p = conn(setup.primary).await?;
    // A digest of ~1M keys takes seconds.
    let digest_of = |mut c: Conn| async move {
        anyhow::Ok(
            c.cmd_with_timeout(&["DEBUG", "DIGEST"], Duration::from_secs(120))
                .await?
                .text(),
        )
    };
    let digest = digest_of(p).await?;
    let mut equal = Vec::new();
    for r in &setup.replicas {
        equal.push(digest_of(conn(r.addr).await?).await? == digest);
    }
    let mut ratios = Vec::new();
    for r in &setup.replicas {
        let ratio = match r.relay_metrics {
            Some(m) => {
                let raw = metric(
                    m,
                    "georep_relay_compression_raw_bytes_total{direction=\"received\"}",
                )
                .await;
                let wire = metric(
                    m,
                    "georep_relay_compression_wire_bytes_total{direction=\"received\"}",
                )
                .await;
                if wire > 0.0 {
                    format!("{:.2}x", raw / wire)
                } else {
                    "-".into()
                }
            }
            None => "-".into(),
        };
        ratios.push(ratio);
    }
    stop_tx.send_replace(true);
    drop(procs);

    let command: Vec<String> = std::env::args().collect();
    println!("`{}`\n", command.join(" "));
    println!(
        "WAN: {} ms one way, {} Mbit/s per link and direction; primary repl-backlog-size {} MB; dataset {} MB of JSON-like documents (~330 B each).\n",
        args.latency_ms, args.bandwidth_mbit, args.backlog_mb, args.dataset_mb
    );
    println!(
        "Steady state: {:.0} documents/s for {:.1} s, {} of payload, {} of replication stream.\n",
        args.rate as f64 * st.secs / st.secs.max(1e-9),
        st.secs,
        mb(st.payload as f64),
        mb(st.stream as f64)
    );
    println!("| path | heartbeat lag p50 | p99 | max | vs direct (p50) | WAN bytes | per payload byte | per stream byte |");
    println!("|---|---|---|---|---|---|---|---|");
    let direct_p50 = percentile(&st.lags[0], 0.5);
    for (i, path) in PATHS.iter().enumerate() {
        let l = &st.lags[i];
        println!(
            "| {path} | {:.1} ms | {:.1} ms | {:.1} ms | {:.3}x | {} | {:.3} | {:.3} |",
            percentile(l, 0.5),
            percentile(l, 0.99),
            l.last().copied().unwrap_or(f64::NAN),
            percentile(l, 0.5) / direct_p50,
            mb(st.wan[i] as f64),
            st.wan[i] as f64 / st.payload as f64,
            st.wan[i] as f64 / st.stream as f64,
        );
    }
    println!(
        "\nCut: {} of payload ({} of stream, {:.1}x the backlog) written in {:.1} s while every WAN link was down; then healed.\n",
        mb(cut.payload as f64),
        mb(cut.stream as f64),
        cut.stream as f64 / (args.backlog_mb as f64 * 1024.0 * 1024.0),
        cut.write_secs
    );
    println!("| path | caught up after | WAN bytes to catch up | per stream byte of the cut | full syncs during the cut | data equal |");
    println!("|---|---|---|---|---|---|");
    for (i, path) in PATHS.iter().enumerate() {
        let full = if cut.relay_full_syncs[i].is_nan() {
            format!("{} (of the primary)", cut.primary_full_syncs)
        } else {
            format!("{} (of its relay)", cut.relay_full_syncs[i])
        };
        println!(
            "| {path} | {:.2} s | {} | {:.3} | {full} | {} |",
            cut.catch_up[i].as_secs_f64(),
            mb(cut.wan[i] as f64),
            cut.wan[i] as f64 / cut.stream as f64,
            if equal[i] { "yes" } else { "NO" },
        );
    }
    println!(
        "\nzstd ratio on the relay+zstd link over the whole run (relay C's metrics): {}",
        ratios[2]
    );
    if equal.iter().any(|e| !e) {
        bail!("a replica's data differs from the primary's");
    }
    Ok(())
}
