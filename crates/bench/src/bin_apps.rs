//! `georep-apps-bench`: what the primary endpoint costs an application, side by side with the
//! direct path in one run, on a `georep up` cluster of two regions across the emulated WAN.
//!
//! ```text
//!  local   redis-benchmark ─► us-east-1's Redis                          (direct)
//!          redis-benchmark ─► us-east-1's primary endpoint ─► its Redis's Unix socket (endpoint)
//!          redis-benchmark ─► an endpoint in this process, busy-polling ─► the same socket (ep. poll)
//!  remote  redis-benchmark ══ WAN ══► us-east-1's Redis                  (direct over the WAN)
//!          redis-benchmark ─► eu-central-1's tunnel client ══ WAN ══► us-east-1's Redis (tunnel)
//!          redis-benchmark ─► eu-central-1's primary endpoint ─► the same tunnel ══►   (endpoint)
//! ```
//!
//! The in-process endpoint runs the same code as the agent's, on a thread of its own as there,
//! with busy-polling on (`--busy-poll`, the agent's `--endpoint-busy-poll`): the agent's
//! default and the polling endpoint side by side against the direct path in one run.
//!
//! The remote figures are compared with the round trip of the same emulated WAN measured in the
//! same run, not with the nominal 2 × latency: "direct over the WAN" is a link of the same
//! emulator (same latency) spawned by the bench straight to us-east-1's Redis, so the endpoint's
//! row minus that row is what the endpoint and the tunnel add. A one-byte echo over another such
//! link shows how close the emulator itself is to its nominal round trip.
//!
//! Throughput is `redis-benchmark -P 16` (SET and GET, 50 clients); latency is one client, one
//! request at a time (`-c 1 -P 1`), p50 from redis-benchmark's CSV. Each repetition alternates
//! which path goes first, so drift on a shared machine hits both alike; the table shows each
//! path's median and, as the result, the median over repetitions of the paired ratio (or
//! difference) of the runs of one repetition.
//! redis-benchmark authenticates as a `bench` user without a password, created for the run in
//! us-east-1's Redis, so no secret appears on its command line.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use resp::{Conn, Credentials, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use wan::{Link, LinkHandle, LinkParams};

#[derive(Debug, Parser)]
#[command(name = "georep-apps-bench")]
struct Args {
    /// The georep binary [default: `georep` next to this program].
    #[arg(long, value_name = "PATH")]
    georep: Option<PathBuf>,
    /// One-way WAN delay between the regions, in milliseconds.
    #[arg(long, default_value_t = 45)]
    latency_ms: u64,
    /// Requests per pipelined throughput run (per command).
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Requests per local latency run (per command).
    #[arg(long, default_value_t = 100_000)]
    latency_requests: u64,
    /// Requests per remote latency run (per command; each takes one WAN round trip).
    #[arg(long, default_value_t = 100)]
    remote_requests: u64,
    /// Repetitions of each remote measurement per path.
    #[arg(long, default_value_t = 1)]
    remote_reps: usize,
    /// Repetitions of each local measurement per path; the table shows medians.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// How long the in-process endpoint busy-polls after traffic (its `Limits::busy_poll`).
    #[arg(long, value_name = "DURATION", value_parser = topology::parse_duration, default_value = "100us")]
    busy_poll: Duration,
    /// Pin us-east-1's redis-server's main thread to the last CPU for every path, instead of
    /// leaving its placement to the scheduler.
    #[arg(long)]
    pin_redis: bool,
}

const REGIONS: [&str; 2] = ["us-east-1", "eu-central-1"];

/// One redis-benchmark result for one command.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rps: f64,
    p50_ms: f64,
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

/// A block of 100 ports per region, all free now.
fn free_base(regions: usize) -> anyhow::Result<u16> {
    let span = 100 * regions as u16;
    let start = (std::process::id() % 400) as u16;
    for i in 0..400 {
        let base = 20_000 + (start + i) % 400 * 100;
        if (0..span).all(|p| std::net::TcpListener::bind(("127.0.0.1", base + p)).is_ok()) {
            return Ok(base);
        }
    }
    bail!("no free block of {span} ports between 20000 and 60000")
}

fn topology_text(dir: &Path, base: u16, latency_ms: u64) -> String {
    let mut t = format!("name = \"bench\"\nprimary = \"{}\"\n", REGIONS[0]);
    for r in REGIONS {
        t.push_str(&format!(
            "[[region]]\nname = \"{r}\"\nendpoint = \"{r}.example:56379\"\n"
        ));
    }
    t.push_str(&format!(
        "[local]\nbase_port = {base}\ndata_dir = \"{}\"\n[[local.link]]\nbetween = [\"{}\", \"{}\"]\n\
         latency = \"{latency_ms}ms\"\n",
        dir.join("data").display(),
        REGIONS[0],
        REGIONS[1]
    ));
    t
}

/// Retries `f` every 100 ms for up to `limit`.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e.context(what.to_owned())),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn set_through(addr: SocketAddr, login: &Credentials) -> anyhow::Result<()> {
    let mut c = Conn::connect(addr, Some(login), Duration::from_secs(2)).await?;
    match c.cmd(&["SET", "bench:ready", "1"]).await? {
        Value::Simple(s) if s == "OK" => Ok(()),
        other => bail!("SET through {addr} answered {other:?}"),
    }
}

/// `redis-benchmark … --csv` against `port`, as the `bench` user: one [`Sample`] per command.
fn redis_benchmark(
    program: &Path,
    port: u16,
    requests: u64,
    clients: u32,
    pipeline: u32,
) -> anyhow::Result<(Sample, Sample)> {
    let out = Command::new(program)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        // A user without a password: redis-benchmark wants `-a` with `--user`, any word will do.
        .args(["--user", "bench", "-a", "nopass"])
        .args(["-t", "set,get", "-r", "100000", "-d", "100"])
        .args(["-n", &requests.to_string()])
        .args(["-c", &clients.to_string(), "-P", &pipeline.to_string()])
        .arg("--csv")
        .output()
        .context("cannot run redis-benchmark")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "redis-benchmark on port {port} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut lines = text.lines().map(|l| {
        l.split(',')
            .map(|f| f.trim_matches('"').to_owned())
            .collect::<Vec<_>>()
    });
    let header = lines.next().context("redis-benchmark printed nothing")?;
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("no {name} column in redis-benchmark's CSV: {header:?}"))
    };
    let (rps, p50) = (col("rps")?, col("p50_latency_ms")?);
    let mut set = None;
    let mut get = None;
    for row in lines {
        let sample = Sample {
            rps: row.get(rps).and_then(|v| v.parse().ok()).unwrap_or(0.0),
            p50_ms: row.get(p50).and_then(|v| v.parse().ok()).unwrap_or(0.0),
        };
        match row.first().map(String::as_str) {
            Some("SET") => set = Some(sample),
            Some("GET") => get = Some(sample),
            _ => {}
        }
    }
    match (set, get) {
        (Some(s), Some(g)) if s.rps > 0.0 && g.rps > 0.0 => Ok((s, g)),
        _ => bail!("redis-benchmark on port {port}: no SET/GET results in {text}"),
    }
}

/// `/proc/PID/task/*/schedstat` of process `pid`, summed over its threads (only those named
/// `thread` if given): `[time run, time runnable but waiting for a CPU]`, in ns.
fn sched_ns(pid: u32, thread: Option<&str>) -> anyhow::Result<[u64; 2]> {
    let tasks = format!("/proc/{pid}/task");
    let mut total = [0, 0];
    for task in std::fs::read_dir(&tasks).with_context(|| format!("cannot list {tasks}"))? {
        let dir = task?.path();
        if let Some(name) = thread {
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if comm.trim_end() != name {
                continue;
            }
        }
        // A thread may have ended since the listing: it no longer counts.
        if let Ok(stat) = std::fs::read_to_string(dir.join("schedstat")) {
            let mut fields = stat
                .split_whitespace()
                .map(|ns| ns.parse::<u64>().unwrap_or(0));
            for t in &mut total {
                *t += fields.next().unwrap_or(0);
            }
        }
    }
    Ok(total)
}

/// The processes whose CPU time per request the local runs record: the forwarding thread of
/// each endpoint and us-east-1's redis-server.
struct CpuProbe {
    agent: u32,
    redis: u32,
}

/// The endpoint's forwarding thread ([`endpoint::serve`] names it).
const ENDPOINT_THREAD: &str = "georep-endpoint";
/// redis-server's main thread, which runs its event loop (the others are background jobs).
const REDIS_MAIN_THREAD: &str = "redis-server";

impl CpuProbe {
    fn new(region_dir: &Path) -> anyhow::Result<Self> {
        let pid = |file: &str| -> anyhow::Result<u32> {
            let path = region_dir.join(file);
            let record = local::process::Record::load(&path)
                .with_context(|| format!("no pid record in {}", path.display()))?;
            Ok(u32::try_from(record.pid)?)
        };
        Ok(Self {
            agent: pid("agent.pid.json")?,
            redis: pid("redis.pid.json")?,
        })
    }

    /// CPU time run by `[agent's forwarder, this process's forwarder, redis-server]`, and the
    /// time redis-server's main thread waited for a CPU while runnable, in ns.
    fn now(&self) -> anyhow::Result<[u64; 4]> {
        let [redis, _] = sched_ns(self.redis, None)?;
        let [_, redis_waited] = sched_ns(self.redis, Some(REDIS_MAIN_THREAD))?;
        Ok([
            sched_ns(self.agent, Some(ENDPOINT_THREAD))?[0],
            sched_ns(std::process::id(), Some(ENDPOINT_THREAD))?[0],
            redis,
            redis_waited,
        ])
    }

    /// Pins redis-server's main thread (its event loop) to the last CPU, as `taskset -p` would,
    /// for every path alike, direct included.
    ///
    /// For studying placement: on two vCPUs, left to the scheduler, the kernel's wake-affine
    /// placement often stacks Redis on the forwarder's CPU (each side's socket write wakes the
    /// other "synchronously"), and Redis then waits for a CPU while the other one idles.
    /// Pinned, GET through the endpoint keeps up with direct, but SET (whose replication
    /// stream wakes the agents and the WAN emulator on the same two CPUs) falls behind.
    fn pin_redis(&self) -> anyhow::Result<usize> {
        let last = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
        let mut set = nix::sched::CpuSet::new();
        set.set(last)?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.redis)?);
        nix::sched::sched_setaffinity(pid, &set)
            .with_context(|| format!("cannot pin redis-server {} to CPU {last}", self.redis))?;
        Ok(last)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `(SET, GET)` samples per path, each path run `reps` times, rotating which goes first.
fn side_by_side(
    reps: usize,
    paths: &[(&str, u16)],
    mut run: impl FnMut(u16) -> anyhow::Result<(Sample, Sample)>,
) -> anyhow::Result<Vec<[Vec<Sample>; 2]>> {
    let mut out: Vec<[Vec<Sample>; 2]> = vec![Default::default(); paths.len()];
    for rep in 0..reps {
        for k in 0..paths.len() {
            let i = (k + rep) % paths.len();
            let (name, port) = paths[i];
            let (set, get) = run(port)?;
            eprintln!(
                "  {name:<10} SET {:>9.0}/s p50 {:.3} ms   GET {:>9.0}/s p50 {:.3} ms",
                set.rps, set.p50_ms, get.rps, get.p50_ms
            );
            out[i][0].push(set);
            out[i][1].push(get);
        }
    }
    Ok(out)
}

/// A link of the WAN emulator from a fresh loopback port to `upstream`, as `georep up` builds
/// them; it stops when `stop` is dropped or turns true.
async fn emulated_link(
    name: &str,
    upstream: SocketAddr,
    latency: Duration,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<(u16, LinkHandle)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    let params = LinkParams::new(latency);
    Ok((
        port,
        Link::spawn(name.into(), listener, upstream, params, stop.clone()),
    ))
}

/// An endpoint in this process, forwarding to the Redis on the Unix socket `redis` at a fixed
/// epoch and busy-polling for up to `busy_poll`: its port, the route (kept alive) and its stop.
async fn polling_endpoint(
    redis: PathBuf,
    busy_poll: Duration,
) -> anyhow::Result<(u16, watch::Sender<endpoint::Route>, watch::Sender<bool>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    let (route, routes) = watch::channel(endpoint::Route::Primary {
        target: endpoint::Target::Unix(redis),
        epoch: 1,
    });
    let (stop, stopped) = watch::channel(false);
    let limits = endpoint::Limits {
        busy_poll,
        ..endpoint::Limits::default()
    };
    tokio::spawn(async move {
        let metrics = endpoint::EndpointMetrics::default();
        if let Err(e) = endpoint::serve(listener, routes, limits, metrics, stopped).await {
            eprintln!("the in-process endpoint failed: {e}");
        }
    });
    Ok((port, route, stop))
}

/// Median round trip of one byte through an emulated link to an echo server: the emulator's
/// own round trip, to set beside its nominal `2 × latency`.
async fn echo_rtt(
    latency: Duration,
    samples: usize,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Duration> {
    let echo = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let echo_addr = echo.local_addr()?;
    let server = tokio::spawn(async move {
        let (mut s, _) = echo.accept().await?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read(&mut b).await? == 1 {
            s.write_all(&b).await?;
        }
        anyhow::Ok(())
    });
    let (port, _link) = emulated_link("bench echo", echo_addr, latency, stop).await?;
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    c.set_nodelay(true)?;
    let mut rtts = Vec::with_capacity(samples);
    for i in 0..samples {
        let t = Instant::now();
        c.write_all(&[i as u8]).await?;
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await?;
        rtts.push(t.elapsed());
    }
    drop(c);
    server.abort();
    rtts.sort();
    Ok(rtts[rtts.len() / 2])
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} × {cpu}")
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let georep = match args.georep.clone() {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("georep"),
    };
    if !georep.is_file() {
        bail!(
            "{} not found: cargo build --release -p georep",
            georep.display()
        );
    }
    let (redis_server, benchmark) = (which("redis-server")?, which("redis-benchmark")?);
    let tmp = tempfile::tempdir()?;
    let base = free_base(REGIONS.len())?;
    let path = tmp.path().join("topology.toml");
    std::fs::write(&path, topology_text(tmp.path(), base, args.latency_ms))?;
    let topology = topology::Topology::load(&path)?;
    let ports: Vec<_> = (0..REGIONS.len())
        .map(|i| topology.local.ports(i))
        .collect();
    let load_before = load();
    eprintln!("starting a two-region cluster on ports {base}…");
    let cluster = local::Cluster::start(local::Options {
        topology,
        georep,
        redis_server,
    })
    .await?;
    let result = measure(
        &args,
        &tmp.path().join("data"),
        &cluster,
        &ports,
        &benchmark,
    )
    .await;
    cluster.stop().await;
    let table = result?;
    println!(
        "machine: {} (shared: load average {load_before} before, {} after)\n",
        machine(),
        load()
    );
    println!("{table}");
    Ok(())
}

async fn measure(
    args: &Args,
    data_dir: &Path,
    cluster: &local::Cluster,
    ports: &[topology::ports::LocalPorts],
    benchmark: &Path,
) -> anyhow::Result<String> {
    let (us, eu) = (&ports[0], &ports[1]);
    let app = cluster.app_login();
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    for (what, port) in [
        ("us-east-1's endpoint", us.primary_endpoint),
        ("eu-central-1's endpoint", eu.primary_endpoint),
    ] {
        until(
            &format!("a write through {what}"),
            Duration::from_secs(60),
            || set_through(addr(port), &app),
        )
        .await?;
    }
    let mut admin = Conn::connect(
        addr(us.redis),
        Some(&cluster.admin_login()),
        Duration::from_secs(2),
    )
    .await?;
    // redis-benchmark takes a password only on its command line, where no secret may appear:
    // it logs in as a password-less user that can touch nothing but its own keys. `ACL
    // SETUSER` is denied to the admin, so the user goes into the region's ACL file (which `up`
    // regenerates at every start) and the admin reloads it.
    let acl = data_dir.join(REGIONS[0]).join("users.acl");
    let mut text =
        std::fs::read_to_string(&acl).with_context(|| format!("cannot read {}", acl.display()))?;
    text.push_str("user bench on nopass resetchannels ~key:* -@all +set +get +ping +config|get\n");
    std::fs::write(&acl, text).with_context(|| format!("cannot write {}", acl.display()))?;
    admin.cmd(&["ACL", "LOAD"]).await?;

    // Both endpoints must be on the socket route: Redis flags a client on its Unix socket `U`.
    let socket = data_dir.join(REGIONS[0]).join("redis.sock");
    let (polling_endpoint, _polling_route, stop_polling_endpoint) =
        polling_endpoint(socket, args.busy_poll).await?;
    for (what, port, unix) in [
        ("us-east-1's endpoint", us.primary_endpoint, true),
        ("the in-process endpoint", polling_endpoint, true),
    ] {
        let mut c = Conn::connect(addr(port), Some(&app), Duration::from_secs(2)).await?;
        let info = c.cmd(&["CLIENT", "INFO"]).await?.text().unwrap_or_default();
        let flags = info
            .split_whitespace()
            .find_map(|f| f.strip_prefix("flags="))
            .unwrap_or_default();
        if flags.contains('U') != unix {
            bail!(
                "{what} reaches Redis {} its Unix socket: {info}",
                if unix { "without" } else { "on" }
            );
        }
    }
    let local = [
        ("direct", us.redis),
        ("endpoint", us.primary_endpoint),
        ("ep. poll", polling_endpoint),
    ];
    eprintln!("throughput, -P 16, 50 clients, {} requests:", args.requests);
    // CPU time per request of each path's forwarder and of Redis, per run: what the shared
    // machine's load does not change, unlike the rates.
    let probe = CpuProbe::new(&data_dir.join(REGIONS[0]))?;
    let pinned = if args.pin_redis {
        Some(probe.pin_redis()?)
    } else {
        None
    };
    // Per path: forwarder ns per request, redis-server ns per request, share of the run's wall
    // time redis-server's event loop spent runnable but waiting for a CPU.
    let mut cpu: Vec<[Vec<f64>; 3]> = vec![Default::default(); local.len()];
    // redis-benchmark runs block this thread; the runtime's other threads carry the links.
    let tput = tokio::task::block_in_place(|| {
        side_by_side(args.reps, &local, |p| {
            let (before, started) = (probe.now()?, Instant::now());
            let samples = redis_benchmark(benchmark, p, args.requests, 50, 16)?;
            let (after, wall) = (probe.now()?, started.elapsed());
            let path = local.iter().position(|(_, port)| *port == p).unwrap_or(0);
            let per_request =
                |i: usize| after[i].saturating_sub(before[i]) as f64 / (2 * args.requests) as f64;
            let forwarder = match path {
                1 => per_request(0),
                2 => per_request(1),
                _ => 0.0,
            };
            let waited = after[3].saturating_sub(before[3]) as f64 / wall.as_nanos() as f64;
            eprintln!(
                "  {:<10} CPU per request: forwarder {forwarder:.0} ns, redis-server {:.0} ns; \
                 redis-server waited for a CPU {:.0} % of the run",
                local[path].0,
                per_request(2),
                waited * 100.0
            );
            cpu[path][0].push(forwarder);
            cpu[path][1].push(per_request(2));
            cpu[path][2].push(waited);
            Ok(samples)
        })
    })?;
    eprintln!(
        "latency, one client, -P 1, {} requests:",
        args.latency_requests
    );
    let lat = tokio::task::block_in_place(|| {
        side_by_side(args.reps, &local, |p| {
            redis_benchmark(benchmark, p, args.latency_requests, 1, 1)
        })
    })?;
    // The bench's own links run on this process's runtime, as the cluster's do.
    let (stop_links, links_stop) = watch::channel(false);
    let latency = Duration::from_millis(args.latency_ms);
    let echo = echo_rtt(latency, 200, &links_stop).await?;
    eprintln!("emulated WAN alone (one-byte echo, p50 of 200): {echo:?}");
    let (direct_wan, _direct_link) =
        emulated_link("bench direct", addr(us.redis), latency, &links_stop).await?;
    let remote = [
        ("over WAN", direct_wan),
        ("tunnel", eu.peer(0)),
        ("endpoint", eu.primary_endpoint),
    ];
    eprintln!(
        "remote latency, one client, -P 1, {} requests:",
        args.remote_requests
    );
    let wan = tokio::task::block_in_place(|| {
        side_by_side(args.remote_reps, &remote, |p| {
            redis_benchmark(benchmark, p, args.remote_requests, 1, 1)
        })
    });
    let _ = stop_links.send(true);
    let _ = stop_polling_endpoint.send(true);
    let wan = wan?;

    let med = |v: &Vec<Sample>, f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
    // The result pairs the runs of one repetition (they ran back to back), so drift of the
    // shared machine between repetitions cancels out: the median of the paired ratios or
    // differences, not the ratio of the medians.
    let paired = |a: &Vec<Sample>, b: &Vec<Sample>, f: fn(&Sample, &Sample) -> f64| {
        median(a.iter().zip(b).map(|(a, b)| f(a, b)).collect())
    };
    let rps = |s: &Sample| s.rps;
    let p50 = |s: &Sample| s.p50_ms;
    let rtt = 2.0 * args.latency_ms as f64;
    let mut t = String::from(
        "| measurement | command | direct (median) | endpoint (median) | result (median of pairs) | endpoint, busy-polling (median) | result (median of pairs) | target |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for (c, name) in ["SET", "GET"].iter().enumerate() {
        let [d, plain, poll] = [0, 1, 2].map(|p| med(&tput[p][c], rps));
        let [r_plain, r_poll] =
            [1, 2].map(|p| paired(&tput[0][c], &tput[p][c], |d, e| e.rps / d.rps));
        let spread = |p: usize| {
            let r: Vec<f64> = tput[0][c]
                .iter()
                .zip(&tput[p][c])
                .map(|(d, e)| e.rps / d.rps)
                .collect();
            let (lo, hi) = r
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            format!("{lo:.2}–{hi:.2}")
        };
        t.push_str(&format!(
            "| local primary, throughput `-P 16` | {name} | {d:.0}/s | {plain:.0}/s | {r_plain:.2}× (pairs {}) | {poll:.0}/s | {r_poll:.2}× (pairs {}) | ≥ 0.8× |\n",
            spread(1),
            spread(2),
        ));
    }
    for (c, name) in ["SET", "GET"].iter().enumerate() {
        let [d, plain, poll] = [0, 1, 2].map(|p| med(&lat[p][c], p50) * 1000.0);
        let [a_plain, a_poll] =
            [1, 2].map(|p| paired(&lat[0][c], &lat[p][c], |d, e| e.p50_ms - d.p50_ms) * 1000.0);
        t.push_str(&format!(
            "| local primary, p50 latency `-c 1 -P 1` | {name} | {d:.0} µs | {plain:.0} µs | {a_plain:+.0} µs | {poll:.0} µs | {a_poll:+.0} µs | ≤ +50 µs |\n",
        ));
    }
    let ns = |v: &Vec<f64>| median(v.clone());
    t.push_str(&format!(
        "| CPU per request `-P 16` (SET and GET): forwarding thread / redis-server | — | — / {:.0} ns | {:.0} / {:.0} ns | — | {:.0} / {:.0} ns | — | — |\n",
        ns(&cpu[0][1]),
        ns(&cpu[1][0]),
        ns(&cpu[1][1]),
        ns(&cpu[2][0]),
        ns(&cpu[2][1]),
    ));
    let pct = |v: &Vec<f64>| median(v.clone()) * 100.0;
    t.push_str(&format!(
        "| redis-server runnable but waiting for a CPU, share of a `-P 16` run ({}) | — | {:.0} % | {:.0} % | — | {:.0} % | — | — |\n",
        match pinned {
            Some(cpu) => format!("pinned to CPU {cpu} for every path"),
            None => "not pinned".to_owned(),
        },
        pct(&cpu[0][2]),
        pct(&cpu[1][2]),
        pct(&cpu[2][2]),
    ));
    t.push_str(
        "\n| measurement | command | direct (median) | through the endpoint (median) | result (median of pairs) | target |\n\
         | --- | --- | ---: | ---: | ---: | --- |\n",
    );
    t.push_str(&format!(
        "| emulated WAN alone ({rtt:.0} ms nominal RTT), one-byte echo p50 | — | {rtt:.0} ms | {:.2} ms | +{:.2} ms | — |\n",
        echo.as_secs_f64() * 1000.0,
        echo.as_secs_f64() * 1000.0 - rtt
    ));
    for (c, name) in ["SET", "GET"].iter().enumerate() {
        let (d, tun, e) = (
            med(&wan[0][c], p50),
            med(&wan[1][c], p50),
            med(&wan[2][c], p50),
        );
        let added = paired(&wan[0][c], &wan[2][c], |d, e| e.p50_ms - d.p50_ms);
        t.push_str(&format!(
            "| remote primary, p50 latency `-c 1 -P 1` | {name} | {d:.2} ms (direct over the WAN) | {e:.2} ms (tunnel alone {tun:.2} ms) | RTT + {added:.2} ms | ≤ RTT + 1 ms |\n",
        ));
    }
    Ok(t)
}
