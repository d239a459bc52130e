//! `georep relay` end to end with real redis-server: primary → relay A → cuttable link → relay B
//! → replica. The cut outlasts the primary's backlog many times over; the replica still catches
//! up with partial resyncs only. Then relay B is killed with -9, and a segment is corrupted.
//! Also: the link between the relays zstd-compressed (and a damaged frame), a relay whose disk
//! fills up, and RDB refreshes from the local Redis when retention passes the first RDB.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use resp::{Conn, Credentials};
use testkit::proxy::{Fault, Proxy, Way};
use testkit::tmpfs::Tmpfs;
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

/// JSON-like documents (what application values look like; neither random nor all zeros).
fn document(i: u64) -> Vec<u8> {
    format!(
        r#"{{"id":{i},"type":"order","customer":{{"id":"c-{}","name":"Customer {}","tier":"{}"}},"items":[{{"sku":"sku-{}","qty":{},"price":{}.{:02}}},{{"sku":"sku-{}","qty":1,"price":9.99}}],"status":"{}","created":"2026-12-02T03:{:02}:{:02}Z"}}"#,
        i % 1000,
        i % 1000,
        ["gold", "silver", "bronze"][(i % 3) as usize],
        i * 7 % 5000,
        1 + i % 4,
        i % 200,
        i % 100,
        i * 13 % 5000,
        ["new", "paid", "shipped", "delivered"][(i % 4) as usize],
        i / 60 % 60,
        i % 60
    )
    .into_bytes()
}

async fn write_documents(primary: SocketAddr, total: usize, seed: u64) {
    let mut c = conn(primary).await;
    let (mut written, mut i) = (0, 0u64);
    while written < total {
        let doc = document(seed * 1_000_000 + i);
        written += doc.len();
        c.cmd(&[
            b"SET".as_slice(),
            format!("doc:{seed}:{i}").as_bytes(),
            &doc,
        ])
        .await
        .unwrap();
        i += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_relay_link_carries_the_same_data_in_fewer_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("password"), PASSWORD).unwrap();
    let dirs: Vec<PathBuf> = ["p", "a", "b", "r"]
        .iter()
        .map(|d| tmp.path().join(d))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let (p_addr, a_addr, b_addr, r_addr) = (free_addr(), free_addr(), free_addr(), free_addr());
    let zstd = ["--compression", "zstd"];
    let _primary = redis(p_addr, &dirs[0], &[]);
    write_documents(p_addr, 1 << 20, 1).await;
    // Relay A's upstream is Redis: it asks for zstd, Redis refuses the REPLCONF, plain bytes.
    let relay_a = relay(p_addr, a_addr, &dirs[1], tmp.path(), &zstd);
    wait_listening(a_addr).await;
    let wan = Proxy::start(a_addr).await;
    let mut relay_b = relay(wan.addr, b_addr, &dirs[2], tmp.path(), &zstd);
    wait_listening(b_addr).await;
    let b_port = b_addr.port().to_string();
    // The replica is Redis: relay B never compresses for it.
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
    caught_up(p_addr, r_addr).await;
    write_documents(p_addr, 2 << 20, 2).await;
    caught_up(p_addr, r_addr).await;

    let received = "{direction=\"received\"}";
    let raw = metric(
        relay_b.metrics,
        &format!("georep_relay_compression_raw_bytes_total{received}"),
    )
    .await;
    let wire = metric(
        relay_b.metrics,
        &format!("georep_relay_compression_wire_bytes_total{received}"),
    )
    .await;
    let sent_raw = metric(
        relay_a.metrics,
        "georep_relay_compression_raw_bytes_total{direction=\"sent\"}",
    )
    .await;
    let on_the_wan = wan.bytes(Way::Down) as f64;
    eprintln!(
        "compressed link: {raw} bytes of RDB and stream as {wire} ({:.1}x); {on_the_wan} bytes crossed the link",
        raw / wire
    );
    assert!(
        raw >= (3 << 20) as f64,
        "RDB and stream went compressed: {raw}"
    );
    assert_eq!(raw, sent_raw, "both ends count the same bytes");
    assert!(
        wire * 3.0 < raw,
        "documents compress at least 3x: {wire} of {raw}"
    );
    assert!(
        on_the_wan < wire + 4096.0,
        "the link carried the frames only"
    );
    assert_eq!(
        metric(
            relay_a.metrics,
            "georep_relay_compression_raw_bytes_total{direction=\"received\"}"
        )
        .await,
        0.0,
        "Redis never compresses"
    );
    assert_eq!(
        metric(
            relay_b.metrics,
            "georep_relay_compression_raw_bytes_total{direction=\"sent\"}"
        )
        .await,
        0.0,
        "a Redis replica never gets compressed bytes"
    );

    // A damaged frame: refused (error, metric, log), nothing of it stored; healed from relay A.
    relay_b.proc.signal(Signal::SIGKILL);
    let _ = relay_b.proc.exited_within(Duration::from_secs(10)).await;
    wan.set_fault(Fault::Flip {
        way: Way::Down,
        offset: 400,
        mask: 0x10,
    });
    write_documents(p_addr, 256 << 10, 3).await;
    relay_b = relay(wan.addr, b_addr, &dirs[2], tmp.path(), &zstd);
    eventually("relay B refuses the damaged frame", || async {
        (metric(relay_b.metrics, "georep_relay_compression_errors_total").await >= 1.0)
            .then_some(())
    })
    .await;
    wan.set_fault(Fault::None);
    caught_up(p_addr, r_addr).await;
    assert!(
        relay_b.proc.stderr().contains("bad compressed frame"),
        "logged: {}",
        relay_b.proc.stderr()
    );
    assert_eq!(
        metric(relay_b.metrics, "georep_relay_corrupt_total").await,
        0.0
    );
    assert_eq!(
        metric(relay_b.metrics, "georep_relay_upstream_full_syncs_total").await,
        0.0,
        "resumed with a partial resync"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_the_relay_and_it_resumes_once_space_is_freed() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    let _tmpfs = match Tmpfs::mount(&mnt, "8m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount an 8 MiB tmpfs (needs root): {why}");
            return;
        }
    };
    std::fs::write(tmp.path().join("password"), PASSWORD).unwrap();
    let (p_dir, r_dir, a_dir) = (
        tmp.path().join("p"),
        tmp.path().join("r"),
        mnt.join("relay"),
    );
    for d in [&p_dir, &r_dir, &a_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    // Leaves the relay ~3 MiB; deleting it is "freeing space".
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, testkit::payload(5 << 20, 9)).unwrap();
    let (p_addr, a_addr, r_addr) = (free_addr(), free_addr(), free_addr());
    // A backlog that holds the whole test: the relay resumes with a partial resync.
    let _primary = redis(p_addr, &p_dir, &["--repl-backlog-size", "64mb"]);
    write_bytes(p_addr, 256 << 10, 1).await;
    let relay_a = relay(p_addr, a_addr, &a_dir, tmp.path(), &["--retention", "1GiB"]);
    wait_listening(a_addr).await;
    let a_port = a_addr.port().to_string();
    let _replica = redis(
        r_addr,
        &r_dir,
        &[
            "--replicaof",
            "127.0.0.1",
            &a_port,
            "--masterauth",
            PASSWORD,
            "--masteruser",
            "default",
        ],
    );
    caught_up(p_addr, r_addr).await;

    // 6 MiB into ~3 MiB of disk.
    write_bytes(p_addr, 6 << 20, 2).await;
    eventually("the relay reports the full disk", || async {
        (metric(relay_a.metrics, "georep_relay_disk_errors_total").await >= 1.0).then_some(())
    })
    .await;
    assert!(
        relay_a.proc.stderr().contains("disk full"),
        "logged: {}",
        relay_a.proc.stderr()
    );
    let held = metric(relay_a.metrics, "georep_relay_upstream_offset").await;
    let primary_at: f64 = info(p_addr, "master_repl_offset")
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        held < primary_at,
        "the relay holds less than the primary wrote"
    );
    // What the replica has is a prefix of the stream, served intact: it is still attached, at
    // most at the relay's offset.
    let replica_at: f64 = info(r_addr, "master_repl_offset")
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        replica_at <= held,
        "replica {replica_at} within what is held {held}"
    );
    assert_eq!(
        info(r_addr, "master_link_status").await.as_deref(),
        Some("up")
    );
    assert_eq!(
        metric(relay_a.metrics, "georep_relay_corrupt_total").await,
        0.0
    );

    std::fs::remove_file(&ballast).unwrap();
    caught_up(p_addr, r_addr).await;
    assert_eq!(
        info(p_addr, "sync_full").await.as_deref(),
        Some("1"),
        "no new full sync"
    );
    assert_eq!(
        metric(relay_a.metrics, "georep_relay_upstream_full_syncs_total").await,
        1.0,
        "resumed from the last byte held"
    );
    assert_eq!(
        metric(relay_a.metrics, "georep_relay_corrupt_total").await,
        0.0
    );
}

/// A replica of `master` with an empty data directory.
fn replica_of(addr: SocketAddr, dir: &Path, master: SocketAddr) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let port = master.port().to_string();
    redis(
        addr,
        dir,
        &[
            "--replicaof",
            "127.0.0.1",
            &port,
            "--masterauth",
            PASSWORD,
            "--masteruser",
            "default",
            "--repl-diskless-sync-delay",
            "0",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_past_the_first_rdb_keeps_a_fresh_rdb_from_the_local_redis_for_full_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("password"), PASSWORD).unwrap();
    let dir = |d: &str| tmp.path().join(d);
    std::fs::create_dir_all(dir("p")).unwrap();
    let (p_addr, a_addr, b_addr, r_addr) = (free_addr(), free_addr(), free_addr(), free_addr());
    let _primary = redis(p_addr, &dir("p"), &["--repl-diskless-sync-delay", "0"]);
    write_bytes(p_addr, 512 << 10, 1).await;
    // Relay A: the primary region's, its local Redis is its upstream. Relay B: a replica
    // region's, its local Redis is its own replica R.
    let retention: u64 = 4 << 20;
    let (p_s, r_s) = (p_addr.to_string(), r_addr.to_string());
    let common = ["--retention", "4MiB"];
    let relay_a = relay(
        p_addr,
        a_addr,
        &dir("a"),
        tmp.path(),
        &[&common[..], &["--local-redis", &p_s]].concat(),
    );
    wait_listening(a_addr).await;
    let relay_b = relay(
        a_addr,
        b_addr,
        &dir("b"),
        tmp.path(),
        &[&common[..], &["--local-redis", &r_s]].concat(),
    );
    wait_listening(b_addr).await;
    let _r = replica_of(r_addr, &dir("r"), b_addr);
    caught_up(p_addr, r_addr).await;
    let first_rdb = metric(relay_a.metrics, "georep_relay_rdb_offset").await;
    // Relay B asked relay A before A had its first RDB: -NOMASTERLINK then; never after.
    let not_ready = "georep_relay_syncs_served_total{kind=\"not_ready\"}";
    let not_ready_before = [
        metric(relay_a.metrics, not_ready).await,
        metric(relay_b.metrics, not_ready).await,
    ];
    assert_eq!(
        first_rdb,
        metric(relay_b.metrics, "georep_relay_rdb_offset").await
    );

    // 12 MiB in 1 MiB steps, three times the retention: the first RDB's stream goes. After each
    // step both relays hold an RDB less than 3 MiB behind their tip (refreshed at 2 MiB).
    let t = Instant::now();
    for step in 0..12 {
        write_bytes(p_addr, 1 << 20, 10 + step).await;
        for (name, m) in [("A", relay_a.metrics), ("B", relay_b.metrics)] {
            eventually(&format!("relay {name} keeps a recent RDB"), || async move {
                let tip = metric(m, "georep_relay_upstream_offset").await;
                let rdb = metric(m, "georep_relay_rdb_offset").await;
                (rdb >= 0.0 && tip - rdb < (3 << 20) as f64).then_some(())
            })
            .await;
        }
    }
    caught_up(p_addr, r_addr).await;
    eprintln!(
        "12 MiB written with RDB refreshes on both relays in {:?}",
        t.elapsed()
    );
    for (name, m, d) in [
        ("A", relay_a.metrics, dir("a")),
        ("B", relay_b.metrics, dir("b")),
    ] {
        // Retention runs once a second.
        eventually(&format!("relay {name} within its retention"), || async {
            let on_disk: u64 = segments(&d)
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum();
            (on_disk <= retention + (1 << 20)).then_some(())
        })
        .await;
        let oldest = metric(m, "georep_relay_oldest_offset").await;
        assert!(
            oldest > first_rdb + 1.0,
            "relay {name}: retention passed the first RDB ({oldest} <= {first_rdb})"
        );
    }

    // A fresh replica (no data) of each relay full-syncs from the refreshed RDB.
    let (x_addr, y_addr) = (free_addr(), free_addr());
    let t = Instant::now();
    let _x = replica_of(x_addr, &dir("x"), a_addr);
    let _y = replica_of(y_addr, &dir("y"), b_addr);
    caught_up(p_addr, x_addr).await;
    caught_up(p_addr, y_addr).await;
    eprintln!(
        "two fresh replicas full-synced from refreshed RDBs in {:?}",
        t.elapsed()
    );

    let refreshes = |m: SocketAddr| async move {
        let mut n = 0.0;
        for result in ["installed", "held", "refused"] {
            let series = format!("georep_relay_rdb_refreshes_total{{result=\"{result}\"}}");
            n += metric(m, &series).await;
        }
        n
    };
    // The primary forked for relay A's first sync and for relay A's refreshes, nothing else:
    // relay B's refreshes came from R, and every full sync was served from a relay's disk. (A
    // refresh may be under way: its fork counts before its RDB has arrived.)
    let full_syncs =
        |addr: SocketAddr| async move { info(addr, "sync_full").await?.parse::<f64>().ok() };
    let (forks_a, forks_b) = eventually("every refresh fork accounted for", || async {
        let (a, b) = (
            refreshes(relay_a.metrics).await,
            refreshes(relay_b.metrics).await,
        );
        (full_syncs(p_addr).await? == 1.0 + a && full_syncs(r_addr).await? == b).then_some((a, b))
    })
    .await;
    let installed = "georep_relay_rdb_refreshes_total{result=\"installed\"}";
    eprintln!(
        "refreshes: relay A {forks_a} ({} installed), relay B {forks_b} ({} installed)",
        metric(relay_a.metrics, installed).await,
        metric(relay_b.metrics, installed).await
    );
    // About one refresh per half retention of stream: 12 MiB / 2 MiB, plus slack.
    for (name, forks) in [("A", forks_a), ("B", forks_b)] {
        assert!(
            (3.0..=8.0).contains(&forks),
            "relay {name}: {forks} refreshes"
        );
    }
    for (i, (name, m)) in [("A", relay_a.metrics), ("B", relay_b.metrics)]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            metric(m, "georep_relay_syncs_served_total{kind=\"full\"}").await,
            2.0,
            "relay {name}'s full syncs served: its first downstream's and the fresh replica's"
        );
        assert_eq!(
            metric(m, not_ready).await,
            not_ready_before[i],
            "relay {name} answered -NOMASTERLINK"
        );
        assert_eq!(
            metric(m, "georep_relay_upstream_full_syncs_total").await,
            1.0,
            "relay {name} took a full sync from its upstream again"
        );
        assert_eq!(metric(m, "georep_relay_corrupt_total").await, 0.0);
    }
    assert!(
        relay_a.proc.stderr().contains("fresh RDB installed"),
        "logged: {}",
        relay_a.proc.stderr()
    );
    assert!(
        !relay_b.proc.stderr().contains(PASSWORD),
        "no password in logs"
    );
}
