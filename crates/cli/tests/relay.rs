//! `georep relay` end to end with real redis-server: primary → relay A → cuttable link → relay B
//! → replica. The cut outlasts the primary's backlog many times over; the replica still catches
//! up with partial resyncs only. Then relay B is killed with -9, and a segment is corrupted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use resp::{Conn, Credentials};
use testkit::{eventually, free_addr, wait_listening, Proc, Signal};
use tokio::net::{TcpListener, TcpStream};

const GEOREP: &str = env!("CARGO_BIN_EXE_georep");
const PASSWORD: &str = "relay-test-password";

fn creds() -> Credentials {
    Credentials {
        user: "default".into(),
        password: PASSWORD.into(),
    }
}

fn redis(addr: SocketAddr, dir: &Path, extra: &[&str]) -> Proc {
    let port = addr.port().to_string();
    let dir = dir.display().to_string();
    let mut args = vec![
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir,
        "--save",
        "",
        "--appendonly",
        "no",
        "--requirepass",
        PASSWORD,
        "--enable-debug-command",
        "yes",
        "--repl-backlog-size",
        "1mb",
    ];
    args.extend_from_slice(extra);
    Proc::spawn("redis-server", &args)
}

struct RelayProc {
    proc: Proc,
    metrics: SocketAddr,
}

fn relay(
    upstream: SocketAddr,
    listen: SocketAddr,
    dir: &Path,
    secrets: &Path,
    extra: &[&str],
) -> RelayProc {
    let metrics = free_addr();
    let pw = secrets.join("password");
    let (upstream, listen, metrics_s) = (
        upstream.to_string(),
        listen.to_string(),
        metrics.to_string(),
    );
    let (pw, dir) = (pw.display().to_string(), dir.display().to_string());
    let mut args = vec![
        "relay",
        "--upstream",
        &upstream,
        "--upstream-user",
        "default",
        "--upstream-password-file",
        &pw,
        "--listen",
        &listen,
        "--password-file",
        &pw,
        "--dir",
        &dir,
        "--metrics",
        &metrics_s,
        "--segment-size",
        "1MiB",
    ];
    args.extend_from_slice(extra);
    RelayProc {
        proc: Proc::spawn(GEOREP, &args),
        metrics,
    }
}

async fn conn(addr: SocketAddr) -> Conn {
    eventually(&format!("redis at {addr}"), || async move {
        Conn::connect(addr, Some(&creds()), Duration::from_secs(5))
            .await
            .ok()
    })
    .await
}

async fn info(addr: SocketAddr, field: &str) -> Option<String> {
    let mut c = Conn::connect(addr, Some(&creds()), Duration::from_secs(5))
        .await
        .ok()?;
    let info = c.info(&["replication", "stats"]).await.ok()?;
    info.get(field).map(str::to_owned)
}

async fn digest(addr: SocketAddr) -> String {
    conn(addr)
        .await
        .cmd(&["DEBUG", "DIGEST"])
        .await
        .unwrap()
        .text()
        .unwrap()
}

/// Reads one series from a relay's /metrics (0 when absent).
async fn metric(addr: SocketAddr, series: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return -1.0;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await;
    let mut body = String::new();
    let _ = s.read_to_string(&mut body).await;
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until the replica at `replica` has the primary's offset and dataset.
async fn caught_up(primary: SocketAddr, replica: SocketAddr) {
    eventually("replica caught up with the primary", || async move {
        let p = info(primary, "master_repl_offset").await?;
        let r = info(replica, "master_repl_offset").await?;
        (p == r && info(replica, "master_link_status").await? == "up").then_some(())
    })
    .await;
    assert_eq!(
        digest(primary).await,
        digest(replica).await,
        "datasets equal"
    );
    assert_eq!(
        info(primary, "master_replid").await,
        info(replica, "master_replid").await
    );
}

async fn write_bytes(primary: SocketAddr, total: usize, seed: u64) {
    let mut c = conn(primary).await;
    let value = 8 * 1024;
    for i in 0..total / value {
        let v = testkit::payload(value, seed + i as u64);
        c.cmd(&[b"SET".as_slice(), format!("k{seed}:{i}").as_bytes(), &v])
            .await
            .unwrap();
    }
}

/// A TCP link that can be cut (every connection dropped, new ones refused) and healed.
struct Link {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let c = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let c = c.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let pump = tokio::io::copy_bidirectional(&mut client, &mut server);
                    let watch = async {
                        while !c.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    };
                    tokio::select! { _ = pump => {}, _ = watch => {} }
                });
            }
        });
        Self { addr, cut, task }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut s: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    s.sort();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_carry_a_replica_through_a_long_cut_a_kill_and_a_corrupt_segment() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("password"), format!("{PASSWORD}\n")).unwrap();
    let dirs: Vec<PathBuf> = ["p", "a", "b", "r"]
        .iter()
        .map(|d| tmp.path().join(d))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let (p_addr, a_addr, b_addr, r_addr) = (free_addr(), free_addr(), free_addr(), free_addr());
    let _primary = redis(p_addr, &dirs[0], &[]);
    write_bytes(p_addr, 256 * 1024, 1).await;

    let relay_a = relay(p_addr, a_addr, &dirs[1], tmp.path(), &[]);
    wait_listening(a_addr).await;
    let link = Link::start(a_addr).await;
    let mut relay_b = relay(link.addr, b_addr, &dirs[2], tmp.path(), &[]);
    wait_listening(b_addr).await;
    let b_port = b_addr.port().to_string();
    let _replica = redis(
        r_addr,
        &dirs[3],
        &[
            "--replicaof",
            "127.0.0.1",
            &b_port,
            "--masterauth",
            PASSWORD,
            "--masteruser",
            "default",
        ],
    );

    // 1. Through two relays the replica is a byte-exact copy: same replid, offset, digest.
    let t = Instant::now();
    caught_up(p_addr, r_addr).await;
    eprintln!("initial sync through two relays: {:?}", t.elapsed());
    let full_on_primary = info(p_addr, "sync_full").await.unwrap();
    assert_eq!(
        full_on_primary, "1",
        "only relay A ever full-syncs from the primary"
    );
    assert_eq!(
        metric(
            relay_b.metrics,
            "georep_relay_syncs_served_total{kind=\"full\"}"
        )
        .await,
        1.0
    );

    // 2. The replica reconnecting to its relay gets +CONTINUE.
    conn(r_addr)
        .await
        .cmd(&["CLIENT", "KILL", "TYPE", "master"])
        .await
        .unwrap();
    eventually("partial resync served by relay B", || async {
        (metric(
            relay_b.metrics,
            "georep_relay_syncs_served_total{kind=\"partial\"}",
        )
        .await
            >= 1.0)
            .then_some(())
    })
    .await;

    // 3. Cut the link between the relays and write 8 MiB, 8× the primary's 1 MiB backlog.
    link.set_cut(true);
    let t = Instant::now();
    write_bytes(p_addr, 8 << 20, 2).await;
    eprintln!("wrote 8 MiB during the cut in {:?}", t.elapsed());
    link.set_cut(false);
    let t = Instant::now();
    caught_up(p_addr, r_addr).await;
    eprintln!("caught up after the cut in {:?}", t.elapsed());
    assert_eq!(
        info(p_addr, "sync_full").await.unwrap(),
        full_on_primary,
        "no new full sync on the primary"
    );
    assert_eq!(
        metric(
            relay_a.metrics,
            "georep_relay_syncs_served_total{kind=\"full\"}"
        )
        .await,
        1.0,
        "relay A served B one full sync, at the start"
    );
    assert_eq!(
        metric(relay_b.metrics, "georep_relay_upstream_full_syncs_total").await,
        1.0
    );
    assert_eq!(
        metric(
            relay_b.metrics,
            "georep_relay_syncs_served_total{kind=\"full\"}"
        )
        .await,
        1.0
    );

    // 4. kill -9 relay B while the primary is writing, restart it on the same directory.
    let writer = tokio::spawn(write_bytes(p_addr, 2 << 20, 3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay_b.proc.signal(Signal::SIGKILL);
    let _ = relay_b.proc.exited_within(Duration::from_secs(10)).await;
    writer.await.unwrap();
    relay_b = relay(link.addr, b_addr, &dirs[2], tmp.path(), &[]);
    let t = Instant::now();
    caught_up(p_addr, r_addr).await;
    eprintln!("caught up after kill -9 of relay B in {:?}", t.elapsed());
    assert_eq!(
        metric(relay_b.metrics, "georep_relay_upstream_full_syncs_total").await,
        0.0,
        "resumed from disk"
    );
    assert_eq!(info(p_addr, "sync_full").await.unwrap(), full_on_primary);

    // 5. Corrupt one byte in a middle segment of relay B: detected, cut, refetched from A.
    relay_b.proc.signal(Signal::SIGKILL);
    let _ = relay_b.proc.exited_within(Duration::from_secs(10)).await;
    let segs = segments(&dirs[2]);
    assert!(segs.len() >= 3, "several segments: {segs:?}");
    let victim = &segs[segs.len() / 2];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(victim, bytes).unwrap();
    write_bytes(p_addr, 256 * 1024, 4).await;
    relay_b = relay(link.addr, b_addr, &dirs[2], tmp.path(), &[]);
    caught_up(p_addr, r_addr).await;
    assert!(metric(relay_b.metrics, "georep_relay_corrupt_total").await >= 1.0);
    assert!(
        relay_b.proc.stderr().contains("corrupt segment"),
        "logged: {}",
        relay_b.proc.stderr()
    );
    assert_eq!(
        metric(relay_b.metrics, "georep_relay_upstream_full_syncs_total").await,
        0.0,
        "healed by a partial resync from relay A"
    );
    assert_eq!(info(p_addr, "sync_full").await.unwrap(), full_on_primary);
    assert!(
        !relay_b.proc.stderr().contains(PASSWORD),
        "no password in logs"
    );
    drop(relay_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_segments_and_moves_the_horizon() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("password"), PASSWORD).unwrap();
    let (p_dir, a_dir) = (tmp.path().join("p"), tmp.path().join("a"));
    std::fs::create_dir_all(&p_dir).unwrap();
    let (p_addr, a_addr) = (free_addr(), free_addr());
    let _primary = redis(p_addr, &p_dir, &[]);
    let relay_a = relay(p_addr, a_addr, &a_dir, tmp.path(), &["--retention", "3MiB"]);
    wait_listening(a_addr).await;
    eventually("relay A streaming", || async {
        (metric(relay_a.metrics, "georep_relay_upstream_connected").await == 1.0).then_some(())
    })
    .await;
    let first = metric(relay_a.metrics, "georep_relay_oldest_offset").await;
    write_bytes(p_addr, 8 << 20, 5).await;
    let horizon = eventually("the horizon moved", || async {
        let h = metric(relay_a.metrics, "georep_relay_oldest_offset").await;
        (h > first).then_some(h)
    })
    .await;
    let on_disk: u64 = segments(&a_dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        on_disk <= 4 << 20,
        "at most the retention plus the segment being written: {on_disk}"
    );
    let offset = metric(relay_a.metrics, "georep_relay_upstream_offset").await;
    assert!(
        horizon > offset - (4 << 20) as f64,
        "horizon {horizon} within ~4 MiB of {offset}"
    );
}
