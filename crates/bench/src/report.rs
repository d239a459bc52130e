//! Turns the repetitions into the markdown report: the comparison table with targets, the CPU
//! each process spent per unit of work, and every repetition's raw numbers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use crate::procs::Binary;
use crate::scenarios::percentile;
use crate::Scenario;

/// One measurement of one implementation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Run {
    pub(crate) values: BTreeMap<&'static str, f64>,
    /// Units of work done (bytes, round trips, handshakes or messages).
    pub(crate) work: f64,
    /// CPU seconds spent during the run by `-e`, `-d` and the harness itself.
    pub(crate) cpu: [f64; 3],
    /// Length of the timed phase.
    pub(crate) secs: f64,
    /// Cores kept busy by other processes on the machine meanwhile (steal included).
    pub(crate) others: f64,
}

/// Where the run happened.
#[derive(Debug, Clone, Default)]
pub(crate) struct Machine {
    nproc: usize,
    cpu_model: String,
    kernel: String,
    /// Per implementation: path and `-v` output.
    binaries: Vec<(String, String)>,
}

impl Machine {
    pub(crate) fn probe(bins: &[Binary]) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let binaries = bins
            .iter()
            .map(|b| {
                let version = Command::new(&b.path)
                    .args(&b.prefix)
                    .arg("-v")
                    .output()
                    .map(|o| {
                        // spiped prints its version on standard error.
                        let text = [o.stdout, o.stderr].concat();
                        String::from_utf8_lossy(&text).trim().to_owned()
                    })
                    .unwrap_or_default();
                (b.path.display().to_string(), version)
            })
            .collect();
        Self {
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model,
            kernel: kernel.trim().to_owned(),
            binaries,
        }
    }
}

/// Everything measured, per scenario: `[georep runs, spiped runs]`.
#[derive(Debug, Default)]
pub(crate) struct Results {
    pub(crate) machine: Machine,
    pub(crate) runs: BTreeMap<Scenario, [Vec<Run>; 2]>,
    /// The bulk client straight into the sink, MB/s per repetition.
    pub(crate) ceiling: Vec<f64>,
    pub(crate) reps: usize,
    pub(crate) bulk_bytes: u64,
    pub(crate) conns: usize,
    pub(crate) georep_flags: Vec<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

fn median_of(runs: &[Run], key: &str) -> f64 {
    median(
        runs.iter()
            .map(|r| r.values.get(key).copied().unwrap_or(f64::NAN))
            .collect(),
    )
}

fn range_of(runs: &[Run], key: &str) -> (f64, f64) {
    let vs = runs.iter().filter_map(|r| r.values.get(key).copied());
    vs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// Whether a target was met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Met {
    Yes,
    No,
    /// Missed on the medians, but the two implementations' repetitions overlap: the
    /// difference is within run-to-run noise.
    Noise,
    /// No target, only a number to report.
    Report,
}

/// "georep no worse than spiped": strict on the medians, but a miss whose per-repetition
/// ranges overlap is reported as noise rather than as a regression.
fn no_worse(g: &[Run], s: &[Run], key: &str, higher_is_better: bool) -> Met {
    let (gm, sm) = (median_of(g, key), median_of(s, key));
    let ((glo, ghi), (slo, shi)) = (range_of(g, key), range_of(s, key));
    let (ok, overlap) = if higher_is_better {
        (gm >= sm, ghi >= slo)
    } else {
        (gm <= sm, glo <= shi)
    };
    match (ok, overlap) {
        (true, _) => Met::Yes,
        (false, true) => Met::Noise,
        (false, false) => Met::No,
    }
}

struct Row {
    scenario: String,
    georep: String,
    spiped: String,
    ratio: String,
    target: String,
    met: Met,
}

fn verdict(met: Met) -> &'static str {
    match met {
        Met::Yes => "yes",
        Met::No => "**no**",
        Met::Noise => "≈ (within run-to-run spread)",
        Met::Report => "—",
    }
}

fn met_if(ok: bool) -> Met {
    if ok {
        Met::Yes
    } else {
        Met::No
    }
}

fn rows(r: &Results) -> Vec<Row> {
    let mut rows = Vec::new();
    let mib = r.bulk_bytes >> 20;
    for (scenario, [g, s]) in &r.runs {
        let (g, s) = (g.as_slice(), s.as_slice());
        match scenario {
            Scenario::Bulk | Scenario::Parallel => {
                let name = if *scenario == Scenario::Bulk {
                    format!("1. Bulk, 1 connection, {mib} MiB (MB/s)")
                } else {
                    format!(
                        "2. Bulk, {} connections, {mib} MiB total (aggregate MB/s)",
                        r.conns
                    )
                };
                let (gv, sv) = (median_of(g, "mbps"), median_of(s, "mbps"));
                rows.push(Row {
                    scenario: name,
                    georep: format!("{gv:.0}"),
                    spiped: format!("{sv:.0}"),
                    ratio: format!("{:.2}× (g/s)", gv / sv),
                    target: "≥ 2.5×".into(),
                    met: met_if(gv / sv >= 2.5),
                });
            }
            Scenario::Rtt => {
                for (key, label) in [("p50_us", "p50"), ("p99_us", "p99")] {
                    let (gv, sv) = (median_of(g, key), median_of(s, key));
                    rows.push(Row {
                        scenario: format!("3. 1 KiB request/response, round trip {label} (µs)"),
                        georep: format!("{gv:.0}"),
                        spiped: format!("{sv:.0}"),
                        ratio: format!("{:.2}× (s/g)", sv / gv),
                        target: "≤ spiped (s/g ≥ 1)".into(),
                        met: no_worse(g, s, key, false),
                    });
                }
            }
            Scenario::Handshake => {
                let (gv, sv) = (median_of(g, "per_s"), median_of(s, "per_s"));
                rows.push(Row {
                    scenario: format!("4. Handshakes/s, forward secrecy, {} clients", r.conns),
                    georep: format!("{gv:.0}"),
                    spiped: format!("{sv:.0}"),
                    ratio: format!("{:.2}× (g/s)", gv / sv),
                    target: "≥ spiped (≥ 1×)".into(),
                    met: no_worse(g, s, "per_s", true),
                });
            }
            Scenario::Wire => {
                let (gv, sv) = (
                    median_of(g, "wire_per_payload"),
                    median_of(s, "wire_per_payload"),
                );
                let rate = median_of(g, "writes_per_s");
                rows.push(Row {
                    scenario: format!(
                        "5. Wire bytes per payload byte, 100 B writes at {rate:.0}/s (-e → -d)"
                    ),
                    georep: format!("{gv:.3}"),
                    spiped: format!("{sv:.3}"),
                    ratio: format!("{:.1}× fewer (s/g)", sv / gv),
                    target: "georep ≤ 1.2".into(),
                    met: met_if(gv <= 1.2),
                });
                for (key, label) in [("p50_us", "p50"), ("p99_us", "p99")] {
                    let (gv, sv) = (median_of(g, key), median_of(s, key));
                    rows.push(Row {
                        scenario: format!("5. One-way latency {label}, same stream (µs)"),
                        georep: format!("{gv:.0}"),
                        spiped: format!("{sv:.0}"),
                        ratio: format!("Δ {:+.0} µs (g−s)", gv - sv),
                        target: "report (no target)".into(),
                        met: Met::Report,
                    });
                }
            }
        }
    }
    rows
}

/// CPU cost per unit of work: (unit name, multiplier applied to CPU seconds / work).
fn cpu_unit(s: Scenario) -> (&'static str, f64) {
    match s {
        Scenario::Bulk | Scenario::Parallel => ("CPU s per GB", 1e9),
        Scenario::Rtt => ("CPU µs per round trip", 1e6),
        Scenario::Handshake => ("CPU ms per handshake", 1e3),
        Scenario::Wire => ("CPU µs per 100 B message", 1e6),
    }
}

pub(crate) fn markdown(r: &Results, command_line: &str) -> String {
    let m = &r.machine;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "## georep tunnel vs C spiped, side by side on loopback\n"
    );
    let _ = writeln!(w, "- Command: `{command_line}`");
    let _ = writeln!(
        w,
        "- Machine: nproc {}, {}, Linux {}",
        m.nproc, m.cpu_model, m.kernel
    );
    for (path, version) in &m.binaries {
        let _ = writeln!(w, "- Binary: `{path}` ({version})");
    }
    let extra = if r.georep_flags.is_empty() {
        "none, so coalescing is at its default (`--coalesce 1ms`)".to_owned()
    } else {
        format!("`{}`", r.georep_flags.join(" "))
    };
    let _ = writeln!(
        w,
        "- Both pairs: `-e|-d -s [127.0.0.1]:P -t [127.0.0.1]:Q -k KEY -F` (forward secrecy on, \
         same 32-byte random key); extra georep flags: {extra}"
    );
    let _ = writeln!(
        w,
        "- Median of {} repetitions per implementation, alternating which runs first",
        r.reps
    );
    let others = r
        .runs
        .values()
        .flatten()
        .flatten()
        .map(|x| x.others)
        .fold(0.0, f64::max);
    let _ = writeln!(
        w,
        "- Other processes on the machine during the runs: at most {others:.2} cores{}\n",
        if others > 0.3 {
            " (**noisy**: see the last CPU column)"
        } else {
            ""
        }
    );

    let _ = writeln!(w, "| scenario | georep | spiped | ratio | target | met |");
    let _ = writeln!(w, "|---|---:|---:|---:|---|:-:|");
    for row in rows(r) {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} |",
            row.scenario,
            row.georep,
            row.spiped,
            row.ratio,
            row.target,
            verdict(row.met)
        );
    }
    let _ = writeln!(
        w,
        "\nRatios: g/s = georep ÷ spiped (throughput, handshakes: higher favours georep); \
         s/g = spiped ÷ georep (latency, wire bytes: higher favours georep)."
    );
    if !r.ceiling.is_empty() {
        let _ = writeln!(
            w,
            "Loopback without a tunnel, same client and sink, 1 connection: {:.0} MB/s.",
            median(r.ceiling.clone())
        );
    }

    let _ = writeln!(
        w,
        "\n### CPU per unit of work (median; in brackets: cores busy during the run; others: the most any run saw)\n"
    );
    let _ = writeln!(w, "| scenario | unit | georep -e | georep -d | spiped -e | spiped -d | harness (g / s runs) | others, cores (g / s runs) |");
    let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|");
    let others = |runs: &[Run]| runs.iter().map(|x| x.others).fold(0.0, f64::max);
    for (scenario, runs) in &r.runs {
        let (unit, scale) = cpu_unit(*scenario);
        let cell = |runs: &[Run], p: usize| {
            let per = median(runs.iter().map(|x| x.cpu[p] / x.work * scale).collect());
            let cores = median(runs.iter().map(|x| x.cpu[p] / x.secs).collect());
            format!("{per:.2} ({cores:.2})")
        };
        let _ = writeln!(
            w,
            "| {scenario:?} | {unit} | {} | {} | {} | {} | {} / {} | {:.2} / {:.2} |",
            cell(&runs[0], 0),
            cell(&runs[0], 1),
            cell(&runs[1], 0),
            cell(&runs[1], 1),
            cell(&runs[0], 2),
            cell(&runs[1], 2),
            others(&runs[0]),
            others(&runs[1]),
        );
    }

    let _ = writeln!(w, "\n### Every repetition\n");
    for (scenario, runs) in &r.runs {
        for (label, runs) in ["georep", "spiped"].iter().zip(runs) {
            let keys: Vec<&str> = runs
                .first()
                .map(|x| x.values.keys().copied().collect())
                .unwrap_or_default();
            let values = keys
                .iter()
                .map(|k| {
                    let vs: Vec<String> =
                        runs.iter().map(|x| format!("{:.3}", x.values[k])).collect();
                    format!("{k} {}", vs.join(" · "))
                })
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(w, "- {scenario:?}, {label}: {values}");
        }
    }
    if !r.ceiling.is_empty() {
        let vs: Vec<String> = r.ceiling.iter().map(|v| format!("{v:.3}")).collect();
        let _ = writeln!(w, "- Bulk, no tunnel: mbps {}", vs.join(" · "));
    }
    out
}
