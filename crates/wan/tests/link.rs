//! End-to-end tests over real loopback sockets and the real clock.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use wan::{Direction, Link, LinkHandle, LinkParams};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    (listener, addr)
}

/// A running link; dropping it shuts the link down.
struct Running {
    link: LinkHandle,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn start(name: &str, upstream: SocketAddr, params: LinkParams) -> Running {
    let (listener, addr) = bind().await;
    let (stop, stopped) = watch::channel(false);
    let link = Link::spawn(name.into(), listener, upstream, params, stopped);
    Running { link, addr, stop }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Echoes every connection; on end of stream, half-closes back.
async fn echo_server() -> SocketAddr {
    let (listener, addr) = bind().await;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Hands every accepted connection to the test.
async fn manual_server() -> (SocketAddr, mpsc::UnboundedReceiver<TcpStream>) {
    let (listener, addr) = bind().await;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            if tx.send(s).is_err() {
                break;
            }
        }
    });
    (addr, rx)
}

async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not within {limit:?}"),
    }
}

/// Polls `cond` until it holds, failing after `limit`.
async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(ms(2)).await;
    }
}

/// Round-trip time of one byte through an echo.
async fn ping(s: &mut TcpStream, b: u8) -> Duration {
    let t = Instant::now();
    s.write_all(&[b]).await.expect("write");
    let mut got = [0];
    s.read_exact(&mut got).await.expect("read");
    assert_eq!(got[0], b);
    t.elapsed()
}

/// Reads until the connection dies; returns how (`Ok(())` for EOF, the error otherwise).
async fn until_dead(s: &mut TcpStream) -> io::Result<()> {
    let mut buf = [0; 1024];
    loop {
        if s.read(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

#[tokio::test]
async fn latency_sets_the_round_trip_time() {
    let echo = echo_server().await;
    let run = start("latency", echo, LinkParams::new(ms(20))).await;
    let mut c = connect(run.addr).await;
    let mut rtts = Vec::new();
    for i in 0..21 {
        rtts.push(ping(&mut c, i).await);
    }
    eprintln!("RTTs at 20 ms each way: {rtts:?}");
    for rtt in &rtts {
        // Never early; the upper bound only catches a link that ignores its latency.
        assert!(*rtt >= ms(40) && *rtt <= ms(70), "{rtt:?}");
    }
    // Precise, not within a timer tick: on Tokio's millisecond timer the median was about 42 ms
    // (each hop 0-2 ms late); on the timer thread it is 40.3-40.6 ms on a loaded 2-core machine.
    rtts.sort();
    let median = rtts[rtts.len() / 2];
    assert!(median < ms(41), "median {median:?}");
}

#[tokio::test]
async fn jitter_keeps_rtt_in_bounds_and_bytes_in_order() {
    let echo = echo_server().await;
    let params = LinkParams::new(ms(20)).with_jitter(ms(5));
    let run = start("jitter", echo, params).await;
    let mut c = connect(run.addr).await;
    let mut rtts = Vec::new();
    for i in 0..20 {
        rtts.push(ping(&mut c, i).await);
    }
    eprintln!("RTTs at 20±5 ms each way: {rtts:?}");
    for rtt in &rtts {
        assert!(*rtt >= ms(29) && *rtt <= ms(70), "{rtt:?}");
    }
    assert!(rtts.iter().max() > rtts.iter().min(), "no jitter at all");

    // A long numbered sequence, written in many paced pieces so each gets its own delay.
    let (mut r, mut w) = c.into_split();
    let writer = tokio::spawn(async move {
        let mut n = 0u32;
        for _ in 0..300 {
            let piece: Vec<u8> = (n..n + 64).flat_map(u32::to_be_bytes).collect();
            n += 64;
            w.write_all(&piece).await.expect("write");
            tokio::time::sleep(ms(1)).await;
        }
        w.shutdown().await.expect("shutdown");
        n
    });
    let mut back = Vec::new();
    within(
        Duration::from_secs(10),
        "echo of the sequence",
        r.read_to_end(&mut back),
    )
    .await
    .expect("read");
    let n = writer.await.expect("writer");
    let want: Vec<u8> = (0..n).flat_map(u32::to_be_bytes).collect();
    assert_eq!(back.len(), want.len());
    assert!(back == want, "sequence corrupted or reordered");
}

#[tokio::test]
async fn bandwidth_cap_sets_the_transfer_time() {
    let (upstream, mut accepted) = manual_server().await;
    let run = start(
        "bandwidth",
        upstream,
        LinkParams::default().with_bandwidth(4_000_000),
    )
    .await;
    let t0 = Instant::now();
    let mut c = connect(run.addr).await;
    let client = tokio::spawn(async move {
        c.write_all(&vec![0x5a; 2_000_000]).await.expect("write");
        c.shutdown().await.expect("shutdown");
        c
    });
    let mut server = accepted.recv().await.expect("accepted");
    let mut all = Vec::new();
    within(Duration::from_secs(5), "2 MB", server.read_to_end(&mut all))
        .await
        .expect("read");
    let elapsed = t0.elapsed();
    eprintln!("2 MB through 4 MB/s: {elapsed:?}");
    assert_eq!(all.len(), 2_000_000);
    assert!(all.iter().all(|&b| b == 0x5a));
    assert!(elapsed >= ms(400) && elapsed <= ms(1000), "{elapsed:?}");
    drop(client.await.expect("client"));
}

#[tokio::test]
async fn half_close_still_carries_the_reply() {
    let (upstream, mut accepted) = manual_server().await;
    let run = start("half-close", upstream, LinkParams::new(ms(10))).await;
    let mut c = connect(run.addr).await;
    c.write_all(&[1; 1000]).await.expect("write");
    c.shutdown().await.expect("shutdown");

    let mut server = accepted.recv().await.expect("accepted");
    let mut request = Vec::new();
    within(
        Duration::from_secs(2),
        "request",
        server.read_to_end(&mut request),
    )
    .await
    .expect("read");
    assert_eq!(request.len(), 1000);
    let reply = format!("got {} bytes", request.len());
    server.write_all(reply.as_bytes()).await.expect("reply");
    drop(server);

    let mut got = Vec::new();
    within(Duration::from_secs(2), "reply", c.read_to_end(&mut got))
        .await
        .expect("read");
    assert_eq!(got, reply.as_bytes());
    eventually(Duration::from_secs(2), "connection closed", || {
        run.link.stats().open == 0
    })
    .await;
    assert_eq!(run.link.stats().resets, 0);
}

#[tokio::test]
async fn cut_resets_both_sides_refuses_new_connections_and_heals() {
    let (upstream, mut accepted) = manual_server().await;
    let run = start("cut", upstream, LinkParams::new(ms(5))).await;
    let mut c = connect(run.addr).await;
    c.write_all(b"hi").await.expect("write");
    let mut server = accepted.recv().await.expect("accepted");
    let mut hi = [0; 2];
    server.read_exact(&mut hi).await.expect("read");

    let t = Instant::now();
    run.link.cut();
    assert!(run.link.is_cut());
    let client_end = within(ms(200), "client sees the cut", until_dead(&mut c)).await;
    let server_end = within(ms(200), "server sees the cut", until_dead(&mut server)).await;
    eprintln!(
        "cut seen after {:?}: client {client_end:?}, server {server_end:?}",
        t.elapsed()
    );
    assert_eq!(
        client_end.expect_err("RST").kind(),
        io::ErrorKind::ConnectionReset
    );
    assert_eq!(
        server_end.expect_err("RST").kind(),
        io::ErrorKind::ConnectionReset
    );

    // New connections are accepted and reset at once, never relayed.
    let t = Instant::now();
    let mut refused = connect(run.addr).await;
    let end = within(
        ms(200),
        "refused connection closes",
        until_dead(&mut refused),
    )
    .await;
    eprintln!(
        "connection during cut closed after {:?}: {end:?}",
        t.elapsed()
    );
    assert_eq!(end.expect_err("RST").kind(), io::ErrorKind::ConnectionReset);
    let stats = run.link.stats();
    assert_eq!(
        (stats.accepted, stats.refused, stats.resets),
        (2, 1, 1),
        "{stats:?}"
    );
    assert!(
        accepted.try_recv().is_err(),
        "a connection reached upstream during the cut"
    );

    run.link.heal();
    assert!(!run.link.is_cut());
    let mut c = connect(run.addr).await;
    c.write_all(b"again").await.expect("write");
    let mut server = within(Duration::from_secs(1), "upstream", accepted.recv())
        .await
        .unwrap();
    let mut again = [0; 5];
    server.read_exact(&mut again).await.expect("read");
    assert_eq!(&again, b"again");
    server.write_all(b"ok").await.expect("write");
    let mut ok = [0; 2];
    c.read_exact(&mut ok).await.expect("read");
    assert_eq!(&ok, b"ok");
}

#[tokio::test]
async fn tap_and_stats_see_the_relayed_bytes() {
    let echo = echo_server().await;
    let run = start("tap", echo, LinkParams::new(ms(1))).await;
    let tap = run.link.tap();
    let mut c = connect(run.addr).await;
    c.write_all(b"ping").await.expect("write");
    let mut back = [0; 4];
    c.read_exact(&mut back).await.expect("read");
    assert_eq!(&back, b"ping");
    let link = &run.link;
    eventually(ms(500), "counters", || {
        let s = link.stats();
        s.bytes_up == 4 && s.bytes_down == 4
    })
    .await;
    assert_eq!(tap.bytes(), b"pingping");
    assert_eq!(tap.bytes_of(Direction::Up), b"ping");
    assert_eq!(tap.bytes_of(Direction::Down), b"ping");
    let s = link.stats();
    assert_eq!(
        (s.accepted, s.open, s.refused, s.queued),
        (1, 1, 0, 0),
        "{s:?}"
    );

    // A dropped tap stops recording; a new one starts from nothing.
    drop(tap);
    let tap = link.tap();
    assert!(tap.is_empty());
    c.write_all(b"pong").await.expect("write");
    c.read_exact(&mut back).await.expect("read");
    eventually(ms(500), "tap", || tap.len() == 8).await;
    assert_eq!(tap.bytes(), b"pongpong");

    drop(c);
    eventually(Duration::from_secs(2), "connection closed", || {
        link.stats().open == 0
    })
    .await;
    let s = link.stats();
    assert_eq!((s.bytes_up, s.bytes_down), (8, 8), "{s:?}");
}

#[tokio::test]
async fn slow_link_pushes_back_on_the_writer() {
    // The server reads everything the link delivers, at the link's 100 kB/s.
    let (upstream, mut accepted) = manual_server().await;
    let run = start(
        "backpressure",
        upstream,
        LinkParams::default().with_bandwidth(100_000),
    )
    .await;
    let c = connect(run.addr).await;
    let sent = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn({
        let sent = Arc::clone(&sent);
        async move {
            let mut c = c;
            let chunk = vec![0; 64 * 1024];
            for _ in 0..(50_000_000 / chunk.len()) {
                c.write_all(&chunk).await.expect("write");
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
    });
    let mut server = accepted.recv().await.expect("accepted");
    let sink = tokio::spawn(async move {
        let mut buf = vec![0; 64 * 1024];
        while server.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });

    // Measure over one second; the link's queue must never exceed its limit.
    let t0 = Instant::now();
    let mut max_queued = 0;
    while t0.elapsed() < Duration::from_secs(1) {
        max_queued = max_queued.max(run.link.stats().queued);
        tokio::time::sleep(ms(5)).await;
    }
    let sent = sent.load(Ordering::Relaxed);
    let s = run.link.stats();
    eprintln!("after 1 s at 100 kB/s: writer got {sent} bytes in, {s:?}, max queued {max_queued}");
    assert!(!writer.is_finished(), "the writer was never blocked");
    assert!(sent < 25_000_000, "{sent} bytes accepted: no backpressure");
    assert!(max_queued <= 64 * 1024, "{max_queued}");
    assert!(s.bytes_up >= 50_000 && s.bytes_up <= 160_000, "{s:?}");
    writer.abort();
    sink.abort();
}

#[tokio::test]
async fn shutdown_stops_accepting_and_closes_connections() {
    let echo = echo_server().await;
    let run = start("shutdown", echo, LinkParams::new(ms(1))).await;
    let mut c = connect(run.addr).await;
    ping(&mut c, 1).await;
    run.stop.send(true).expect("link listens");
    within(Duration::from_secs(1), "link stops", run.link.stopped()).await;
    let end = within(ms(500), "open connection closes", until_dead(&mut c)).await;
    assert!(end.is_ok(), "{end:?}");
    let e = TcpStream::connect(run.addr)
        .await
        .expect_err("still accepting");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(run.link.stats().open, 0);
}

#[tokio::test]
async fn new_params_apply_to_later_bytes() {
    let echo = echo_server().await;
    let run = start("params", echo, LinkParams::default()).await;
    let mut c = connect(run.addr).await;
    let fast = ping(&mut c, 1).await;
    assert!(fast < ms(15), "{fast:?}");
    let slow = LinkParams::new(ms(30)).with_bandwidth(1_000_000);
    run.link.set_params(slow);
    assert_eq!(run.link.params(), slow);
    let rtt = ping(&mut c, 2).await;
    eprintln!("RTT without delay {fast:?}, with 30 ms each way {rtt:?}");
    assert!(rtt >= ms(58) && rtt <= ms(100), "{rtt:?}");
}

#[tokio::test]
async fn reset_travels_to_the_other_side() {
    let (upstream, mut accepted) = manual_server().await;
    let run = start("reset", upstream, LinkParams::new(ms(20))).await;
    let c = connect(run.addr).await;
    let mut c = c;
    c.write_all(b"x").await.expect("write");
    let mut server = accepted.recv().await.expect("accepted");
    let mut x = [0];
    server.read_exact(&mut x).await.expect("read");

    c.set_zero_linger().expect("linger");
    let t = Instant::now();
    drop(c);
    let end = within(ms(500), "server sees the reset", until_dead(&mut server)).await;
    let after = t.elapsed();
    eprintln!("client reset seen upstream after {after:?}: {end:?}");
    assert_eq!(end.expect_err("RST").kind(), io::ErrorKind::ConnectionReset);
    assert!(
        after >= ms(19),
        "the reset did not travel with the link's latency: {after:?}"
    );
    eventually(Duration::from_secs(1), "counted", || {
        run.link.stats().resets == 1
    })
    .await;
}

#[tokio::test]
async fn unreachable_upstream_resets_the_client() {
    let (listener, upstream) = bind().await;
    drop(listener);
    let run = start("no-upstream", upstream, LinkParams::default()).await;
    let mut c = connect(run.addr).await;
    let end = within(
        Duration::from_secs(1),
        "client is closed",
        until_dead(&mut c),
    )
    .await;
    assert_eq!(end.expect_err("RST").kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(run.link.stats().upstream_failures, 1);
}
