//! `georep-bench`: georep's tunnel and C spiped side by side, in the same run, on loopback.
//!
//! For each scenario it starts an `-e` → `-d` pair of each implementation (identical flags, the
//! same key), drives both with the same in-process clients and servers, alternates which goes
//! first in each repetition so that drift on a shared machine hits both alike, and prints one
//! markdown table of medians, ratios and targets. It measures whole processes as an operator
//! runs them, not the crypto alone; `spiped-proto` has its own microbenchmarks for that.
#![forbid(unsafe_code)]

mod procs;
mod report;
mod scenarios;
mod servers;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};

use crate::procs::{
    cpu_between, machine_busy_cores, machine_jiffies, own_cpu_seconds, Binary, Pair, Procs,
};
use crate::report::{Machine, Results, Run};
use crate::scenarios::Measured;
use crate::servers::{CountingProxy, Servers};

/// One monotonic clock for the whole process: the client stamps messages with it and the sink
/// reads it, so one-way latency needs no clock synchronisation.
pub(crate) mod clock {
    use std::sync::OnceLock;
    use std::time::Instant;

    static BASE: OnceLock<Instant> = OnceLock::new();

    /// Nanoseconds since the first call.
    pub(crate) fn now_ns() -> u64 {
        BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Benchmark georep's tunnel against C spiped, side by side on loopback.
#[derive(Debug, Parser)]
#[command(name = "georep-bench", version)]
struct Args {
    /// The georep binary [default: `georep` next to this program].
    #[arg(long, value_name = "PATH")]
    georep: Option<PathBuf>,
    /// The C spiped binary [default: `spiped` on PATH].
    #[arg(long, value_name = "PATH")]
    spiped: Option<PathBuf>,
    /// MiB sent per bulk run (split evenly across the connections in the parallel run).
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    bulk_mib: u64,
    /// Connections in the parallel bulk run, and concurrent clients in the handshake run.
    #[arg(long, value_name = "N", default_value_t = 8)]
    conns: usize,
    /// Repetitions of each scenario per implementation; the table shows medians.
    #[arg(long, value_name = "N", default_value_t = 3)]
    reps: usize,
    /// Timed 1 KiB round trips per latency run.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    round_trips: usize,
    /// Untimed round trips before them.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    warmup: usize,
    /// Seconds per handshake run.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    handshake_secs: f64,
    /// 100-byte writes per second in the wire-efficiency run.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    wire_rate: u32,
    /// Seconds per wire-efficiency run.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    wire_secs: f64,
    /// Scenarios to run, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Before each measurement, wait up to SECS for the rest of the machine to go quiet (other
    /// processes below --quiet-below cores); 0 skips the wait. The load that remains is reported.
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    quiet_wait: f64,
    /// Machine-wide busy cores, outside this benchmark, that count as quiet.
    #[arg(long, value_name = "CORES", default_value_t = 0.25)]
    quiet_below: f64,
    /// How often to repeat a measurement that other processes disturbed (the last one counts).
    #[arg(long, value_name = "N", default_value_t = 3)]
    noisy_retries: usize,
    /// An extra flag for the georep endpoints only, e.g. `--georep-flag=--coalesce=0`
    /// (repeatable). Without it both implementations get identical flags.
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    georep_flag: Vec<String>,
}

/// The scenarios, in the order they run and are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub(crate) enum Scenario {
    /// Bulk throughput, one connection.
    Bulk,
    /// Bulk throughput, `--conns` connections at once.
    Parallel,
    /// 1 KiB request/response latency.
    Rtt,
    /// Handshakes per second with forward secrecy.
    Handshake,
    /// Wire bytes per payload byte and one-way latency for a stream of 100-byte writes.
    Wire,
}

impl Scenario {
    const ALL: [Self; 5] = [
        Self::Bulk,
        Self::Parallel,
        Self::Rtt,
        Self::Handshake,
        Self::Wire,
    ];
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    clock::now_ns();
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let results = run(&args)?;
    print!("{}", report::markdown(&results, &command_line));
    std::io::stdout().flush()?;
    Ok(())
}

fn run(args: &Args) -> anyhow::Result<Results> {
    if args.reps == 0 || args.conns == 0 || args.bulk_mib == 0 {
        bail!("--reps, --conns and --bulk-mib must be at least 1");
    }
    let georep = Binary {
        label: "georep",
        path: match &args.georep {
            Some(p) => p.clone(),
            None => beside_me("georep")?,
        },
        prefix: vec!["tunnel".to_owned()],
        extra: args.georep_flag.clone(),
    };
    let spiped = Binary {
        label: "spiped",
        path: match &args.spiped {
            Some(p) => p.clone(),
            None => on_path("spiped")?,
        },
        prefix: Vec::new(),
        extra: Vec::new(),
    };
    let bins = [georep, spiped];

    let scratch = tempfile::Builder::new().prefix("georep-bench-").tempdir()?;
    let key = scratch.path().join("key");
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    std::fs::write(&key, bytes)?;
    let procs = Procs::new(scratch.path());
    procs.kill_on_signal(scratch.path().to_owned())?;
    let servers = Servers::start()?;

    let mut results = Results {
        machine: Machine::probe(&bins),
        reps: args.reps,
        bulk_bytes: args.bulk_mib << 20,
        conns: args.conns,
        georep_flags: args.georep_flag.clone(),
        ..Results::default()
    };
    let selected: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.contains(s))
        .collect();
    for scenario in selected {
        run_scenario(scenario, args, &bins, &key, &procs, &servers, &mut results)
            .with_context(|| format!("scenario {scenario:?}"))?;
    }
    // Kill the tunnels before the scratch directory (and the key) goes away.
    drop(procs);
    Ok(results)
}

/// Runs one scenario `reps` times per implementation, alternating which goes first.
fn run_scenario(
    scenario: Scenario,
    args: &Args,
    bins: &[Binary; 2],
    key: &Path,
    procs: &Procs,
    servers: &Servers,
    results: &mut Results,
) -> anyhow::Result<()> {
    let target = match scenario {
        Scenario::Bulk | Scenario::Parallel => servers.sink,
        Scenario::Rtt | Scenario::Handshake => servers.echo,
        Scenario::Wire => servers.stamp,
    };
    // The wire scenario puts a counting proxy between -e and -d.
    let mut proxies: [Option<CountingProxy>; 2] = [None, None];
    let mut pairs = Vec::new();
    for (bin, proxy) in bins.iter().zip(proxies.iter_mut()) {
        pairs.push(Pair::start(procs, bin, key, target, |d| {
            if scenario != Scenario::Wire {
                return Ok(d);
            }
            let p = CountingProxy::start(d)?;
            let addr = p.addr;
            *proxy = Some(p);
            Ok(addr)
        })?);
    }
    let bulk = args.bulk_mib << 20;
    for rep in 0..args.reps {
        let order = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let pair = &pairs[i];
            let measure = || -> anyhow::Result<Measured> {
                match scenario {
                    Scenario::Bulk => scenarios::bulk(pair.entry, bulk, 1),
                    Scenario::Parallel => scenarios::bulk(pair.entry, bulk, args.conns),
                    Scenario::Rtt => {
                        scenarios::round_trips(pair.entry, args.warmup, args.round_trips)
                    }
                    Scenario::Handshake => {
                        scenarios::handshakes(pair.entry, args.conns, args.handshake_secs)
                    }
                    Scenario::Wire => {
                        let proxy = proxies[i].as_ref().expect("started with the pair");
                        scenarios::wire(
                            pair.entry,
                            args.wire_rate,
                            args.wire_secs,
                            &servers.stamps,
                            proxy,
                        )
                    }
                }
            };
            let mut attempt = 1;
            let run = loop {
                wait_quiet(args)?;
                let run = timed(pair, measure)
                    .with_context(|| format!("{} run {}", pair.label, rep + 1))?;
                if run.others < args.quiet_below || attempt > args.noisy_retries {
                    break run;
                }
                eprintln!(
                    "  {:.2} cores busy elsewhere during that {} run; measuring again",
                    run.others, pair.label
                );
                attempt += 1;
            };
            eprintln!(
                "[{scenario:?} {}/{}] {}: {}",
                rep + 1,
                args.reps,
                pair.label,
                run.values
                    .iter()
                    .map(|(k, v)| format!("{k}={v:.3}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            results.runs.entry(scenario).or_default()[i].push(run);
            std::thread::sleep(Duration::from_millis(200));
        }
        if scenario == Scenario::Bulk {
            let mbps = scenarios::loopback_ceiling(servers.sink, bulk)?;
            eprintln!("[Bulk {}/{}] no tunnel: mbps={mbps:.3}", rep + 1, args.reps);
            results.ceiling.push(mbps);
        }
    }
    Ok(())
}

/// Runs `measure`, charging the CPU that `-e`, `-d` and this harness used meanwhile.
fn timed(pair: &Pair<'_>, measure: impl Fn() -> anyhow::Result<Measured>) -> anyhow::Result<Run> {
    pair.check()?;
    let [e0, d0] = pair.cpu()?;
    let h0 = own_cpu_seconds()?;
    let (m0, i0) = machine_jiffies()?;
    let t0 = Instant::now();
    let measured = measure();
    let wall = t0.elapsed().as_secs_f64();
    let (m1, i1) = machine_jiffies()?;
    let [e1, d1] = pair.cpu()?;
    let h1 = own_cpu_seconds()?;
    pair.check()?;
    let measured = measured?;
    let cpu = [cpu_between(&e0, &e1), cpu_between(&d0, &d1), h1 - h0];
    // Interrupt time is left out: loopback traffic puts some of ours there.
    let machine = ((m1 - m0) - (i1 - i0)) as f64 / 100.0;
    Ok(Run {
        values: measured.values.into_iter().collect::<BTreeMap<_, _>>(),
        work: measured.work,
        cpu,
        secs: measured.secs,
        others: ((machine - cpu.iter().sum::<f64>()) / wall).max(0.0),
    })
}

/// Waits, up to `--quiet-wait`, until processes outside this benchmark leave the CPUs alone:
/// the machine is shared, and a build or fuzzer next door would otherwise decide the result.
fn wait_quiet(args: &Args) -> anyhow::Result<()> {
    if args.quiet_wait <= 0.0 {
        return Ok(());
    }
    let t0 = Instant::now();
    let mut said = false;
    loop {
        let busy = machine_busy_cores(Duration::from_millis(500))?;
        if busy < args.quiet_below {
            if said {
                eprintln!("  quiet after {:.0} s", t0.elapsed().as_secs_f64());
            }
            return Ok(());
        }
        if t0.elapsed().as_secs_f64() > args.quiet_wait {
            eprintln!(
                "  still {busy:.2} cores busy elsewhere after --quiet-wait; measuring anyway"
            );
            return Ok(());
        }
        if !said {
            eprintln!("  waiting for the machine to go quiet ({busy:.2} cores busy elsewhere)");
            said = true;
        }
    }
}

fn beside_me(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot locate this program")?;
    let path = me.parent().map(|dir| dir.join(name)).unwrap_or_default();
    if !path.is_file() {
        bail!(
            "no {name} binary at {}: build it (`cargo build --release -p georep`) or pass --georep",
            path.display()
        );
    }
    Ok(path)
}

fn on_path(name: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not on PATH; install it or pass --{name}"))
}
