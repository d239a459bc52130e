//! Helpers shared by the end-to-end test files: start tunnel endpoints, move data, scrape metrics.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::{free_addr, spiped_addr, wait_listening, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const GEOREP: &str = env!("CARGO_BIN_EXE_georep");

/// Which implementation runs an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    Georep,
    Spiped,
}

/// One running tunnel endpoint.
pub struct Endpoint {
    pub proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its metrics endpoint, for georep endpoints.
    pub metrics: Option<SocketAddr>,
}

/// Starts `-e` or `-d` listening on a free port, forwarding to `target`.
pub async fn endpoint(
    which: Impl,
    mode: &str,
    target: SocketAddr,
    keys: &[&Path],
    extra: &[&str],
) -> Endpoint {
    let addr = free_addr();
    let source = spiped_addr(addr);
    let target = spiped_addr(target);
    let mut args: Vec<String> = vec![mode.into(), "-s".into(), source, "-t".into(), target];
    for k in keys {
        args.push("-k".into());
        args.push(k.display().to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let (proc, metrics) = match which {
        Impl::Georep => {
            let metrics = free_addr();
            let mut full = vec![
                "tunnel".to_string(),
                "--metrics".into(),
                metrics.to_string(),
            ];
            full.extend(args);
            let full: Vec<&str> = full.iter().map(String::as_str).collect();
            (Proc::spawn(GEOREP, &full), Some(metrics))
        }
        Impl::Spiped => {
            args.push("-F".into());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            (Proc::spawn("spiped", &args), None)
        }
    };
    match metrics {
        // georep binds its tunnel listener before the metrics one, so this proves both are up
        // without a probe connection that would travel through the tunnel.
        Some(m) => wait_listening(m).await,
        None => wait_listening(addr).await,
    }
    Endpoint {
        proc,
        addr,
        metrics,
    }
}

/// An encrypting endpoint in front of a decrypting one in front of `target`.
pub struct Pair {
    pub e: Endpoint,
    pub d: Endpoint,
}

pub async fn pair(
    e_impl: Impl,
    d_impl: Impl,
    target: SocketAddr,
    key: &Path,
    e_extra: &[&str],
    d_extra: &[&str],
) -> Pair {
    let d = endpoint(d_impl, "-d", target, &[key], d_extra).await;
    let e = endpoint(e_impl, "-e", d.addr, &[key], e_extra).await;
    Pair { e, d }
}

/// A temporary directory holding one 32-byte key file named `key`.
pub fn key_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = testkit::key_file(dir.path(), "key", 1, 32);
    (dir, key)
}

/// Sends `data`, half-closes, and returns everything received until the peer's EOF.
pub async fn round_trip(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut r, mut w) = stream.into_split();
    let data = data.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await?;
        w.shutdown().await?;
        Ok::<_, std::io::Error>(w)
    });
    let mut got = Vec::new();
    r.read_to_end(&mut got).await?;
    writer.await.expect("writer task")?;
    Ok(got)
}

/// Fetches `/metrics` from a georep endpoint.
pub async fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect to metrics");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n")
        .await
        .expect("request");
    let mut body = String::new();
    s.read_to_string(&mut body).await.expect("response");
    body
}

/// The value of one sample in Prometheus text, e.g. `metric(&text, "x_total{reason=\"a\"}")`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

/// Polls a metric until `ok` holds for its value (absent counts as 0).
pub async fn metric_eventually(addr: SocketAddr, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let series = series.to_string();
    let ok = &ok;
    testkit::eventually(&format!("metric {series}"), || {
        let series = series.clone();
        async move {
            let v = metric(&scrape(addr).await, &series).unwrap_or(0.0);
            ok(v).then_some(v)
        }
    })
    .await
}

/// Whether `addr`'s peer closed the connection (EOF or reset) within `within`.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}
