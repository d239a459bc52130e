//! The clients: each scenario drives one tunnel entry point and returns what it measured.
//! Blocking sockets and plain threads, like the servers.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _};

use crate::clock;
use crate::servers::{CountingProxy, StampReport, STAMP_LEN};

/// Generous I/O timeout: a broken tunnel fails the run instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Time for the handshake to finish before a timed phase starts, so it is not timed.
const SETTLE: Duration = Duration::from_millis(50);

fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("cannot connect to {addr}"))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

fn join<T>(handle: thread::JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    handle
        .join()
        .map_err(|_| anyhow!("a client thread panicked"))?
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// What one scenario run measured: named values, and the amount of work done (for CPU cost
/// per unit of work).
#[derive(Debug, Default)]
pub(crate) struct Measured {
    pub(crate) values: Vec<(&'static str, f64)>,
    pub(crate) work: f64,
    /// Length of the timed phase.
    pub(crate) secs: f64,
}

/// Scenarios 1 and 2: `conns` connections each send `total / conns` bytes to the sink, which
/// answers with the count it received once it sees EOF. Timed from the first byte to the last
/// count, after the handshakes have settled.
pub(crate) fn bulk(entry: SocketAddr, total: u64, conns: usize) -> anyhow::Result<Measured> {
    let per = total / conns as u64;
    let start = Arc::new(Barrier::new(conns + 1));
    let mut clients = Vec::new();
    for _ in 0..conns {
        let mut s = connect(entry)?;
        let start = Arc::clone(&start);
        clients.push(thread::spawn(move || -> anyhow::Result<()> {
            // Not zeros, in case anything on the path ever compresses.
            let chunk: Vec<u8> = (0..256 * 1024u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect();
            start.wait();
            let mut left = per;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                s.write_all(&chunk[..n]).context("sending bulk data")?;
                left -= n as u64;
            }
            s.shutdown(Shutdown::Write)?;
            let mut count = [0u8; 8];
            s.read_exact(&mut count)
                .context("waiting for the sink's count")?;
            let got = u64::from_le_bytes(count);
            ensure!(got == per, "the sink received {got} bytes, {per} were sent");
            Ok(())
        }));
    }
    thread::sleep(SETTLE);
    start.wait();
    let t0 = Instant::now();
    for c in clients {
        join(c)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let bytes = per * conns as u64;
    Ok(Measured {
        values: vec![("mbps", bytes as f64 / 1e6 / secs)],
        work: bytes as f64,
        secs,
    })
}

/// Scenario 3: 1 KiB request, 1 KiB echo, one connection; `warmup` untimed round trips, then
/// `count` timed ones.
pub(crate) fn round_trips(
    entry: SocketAddr,
    warmup: usize,
    count: usize,
) -> anyhow::Result<Measured> {
    let mut s = connect(entry)?;
    let request: Vec<u8> = (0..1024u32).map(|i| i as u8).collect();
    let mut reply = vec![0u8; request.len()];
    let mut rtt_us = Vec::with_capacity(count);
    for i in 0..warmup + count {
        let t0 = Instant::now();
        s.write_all(&request)?;
        s.read_exact(&mut reply).context("waiting for the echo")?;
        if i >= warmup {
            rtt_us.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    ensure!(reply == request, "the echo came back different");
    let mean = rtt_us.iter().sum::<f64>() / rtt_us.len() as f64;
    let rtt_us = sorted(rtt_us);
    Ok(Measured {
        values: vec![
            ("p50_us", percentile(&rtt_us, 0.50)),
            ("p99_us", percentile(&rtt_us, 0.99)),
            ("mean_us", mean),
        ],
        work: count as f64,
        secs: rtt_us.iter().sum::<f64>() / 1e6,
    })
}

/// Scenario 4: `clients` threads loop connect → 1 byte → 1 byte echoed → close for `secs`.
/// Every connection is a full handshake (with Diffie-Hellman unless the pair runs `-f`).
pub(crate) fn handshakes(entry: SocketAddr, clients: usize, secs: f64) -> anyhow::Result<Measured> {
    let start = Arc::new(Barrier::new(clients + 1));
    let run_for = Duration::from_secs_f64(secs);
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let start = Arc::clone(&start);
            thread::spawn(move || -> anyhow::Result<(Vec<f64>, u64)> {
                let (mut ms, mut errors) = (Vec::new(), 0u64);
                start.wait();
                let deadline = Instant::now() + run_for;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let once = || -> anyhow::Result<()> {
                        let mut s = connect(entry)?;
                        s.write_all(b"x")?;
                        let mut b = [0u8; 1];
                        s.read_exact(&mut b)?;
                        ensure!(&b == b"x", "wrong echo");
                        Ok(())
                    };
                    match once() {
                        Ok(()) => ms.push(t0.elapsed().as_secs_f64() * 1e3),
                        Err(_) => {
                            errors += 1;
                            if errors > 100 {
                                bail!("more than 100 failed connections");
                            }
                            thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
                Ok((ms, errors))
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let (mut all, mut errors) = (Vec::new(), 0);
    for w in workers {
        let (ms, e) = join(w)?;
        all.extend(ms);
        errors += e;
    }
    let secs = t0.elapsed().as_secs_f64();
    let done = all.len() as f64;
    let all = sorted(all);
    Ok(Measured {
        values: vec![
            ("per_s", done / secs),
            ("p50_ms", percentile(&all, 0.50)),
            ("p99_ms", percentile(&all, 0.99)),
            ("errors", errors as f64),
        ],
        work: done,
        secs,
    })
}

/// Scenario 5: one connection carrying `STAMP_LEN`-byte writes at `rate` per second for `secs`,
/// through `-e` → counting proxy → `-d` → timestamping sink. Measures wire bytes per payload
/// byte in the `-e` → `-d` direction and the one-way latency of each message.
pub(crate) fn wire(
    entry: SocketAddr,
    rate: u32,
    secs: f64,
    stamps: &std::sync::mpsc::Receiver<StampReport>,
    proxy: &CountingProxy,
) -> anyhow::Result<Measured> {
    let mut s = connect(entry)?;
    thread::sleep(SETTLE);
    let count = (f64::from(rate) * secs).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut msg = [0x5au8; STAMP_LEN];
    let t0 = Instant::now();
    for seq in 0..count {
        // An absolute schedule: a late write is sent at once, so the average rate holds.
        let due = t0 + interval * seq as u32;
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        msg[8..16].copy_from_slice(&clock::now_ns().to_le_bytes());
        s.write_all(&msg)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let achieved = count as f64 / secs;
    s.shutdown(Shutdown::Write)?;
    let report = stamps
        .recv_timeout(IO_TIMEOUT)
        .context("no report from the stamp sink")?;
    // The proxy reports once both directions have closed: wait for the tunnel to close ours.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)?;
    let counted = proxy
        .reports
        .recv_timeout(IO_TIMEOUT)
        .context("no report from the proxy")?;
    let payload = count * STAMP_LEN as u64;
    ensure!(
        report.intact && report.latencies_ns.len() as u64 == count,
        "the sink got {} of {count} messages intact={}",
        report.latencies_ns.len(),
        report.intact
    );
    let lat_us = sorted(
        report
            .latencies_ns
            .iter()
            .map(|&ns| ns as f64 / 1e3)
            .collect(),
    );
    Ok(Measured {
        values: vec![
            ("wire_per_payload", counted.up as f64 / payload as f64),
            ("wire_up_bytes", counted.up as f64),
            ("wire_down_bytes", counted.down as f64),
            ("payload_bytes", payload as f64),
            ("p50_us", percentile(&lat_us, 0.50)),
            ("p99_us", percentile(&lat_us, 0.99)),
            ("writes_per_s", achieved),
        ],
        work: count as f64,
        secs,
    })
}

/// The bulk client straight into the sink, no tunnel: the harness's own ceiling.
pub(crate) fn loopback_ceiling(sink: SocketAddr, total: u64) -> anyhow::Result<f64> {
    let m = bulk(sink, total, 1)?;
    Ok(m.values[0].1)
}
