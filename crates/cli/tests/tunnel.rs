//! `georep tunnel` end to end: two real georep processes, real sockets, faults injected by the
//! testkit proxy. Interop with C spiped is in `spiped_interop.rs`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use testkit::proxy::{Fault, Proxy, Way};
use testkit::servers::Server;
use testkit::{eventually, payload, Proc, Signal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread")]
async fn carries_data_both_ways_and_half_closes() {
    let (_dir, key) = key_dir();
    let echo = Server::echo().await;
    let p = pair(Impl::Georep, Impl::Georep, echo.addr, &key, &[], &[]).await;
    for size in [1, 1023, 1024, 1025, 8 << 20] {
        let data = payload(size, size as u64);
        let got = round_trip(p.e.addr, &data).await.unwrap();
        assert!(got == data, "{size} bytes did not come back intact");
    }
    let m = p.e.metrics.unwrap();
    let sent = metric_eventually(
        m,
        "georep_tunnel_plaintext_bytes_total{direction=\"outbound\"}",
        |v| v > 0.0,
    )
    .await;
    assert_eq!(sent as usize, 1 + 1023 + 1024 + 1025 + (8 << 20));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_closed_side_still_receives_everything() {
    // The server answers only after the client's EOF: that answer must still arrive.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        let reply = payload(300_000, got.len() as u64);
        s.write_all(&reply).await.unwrap();
        s.shutdown().await.unwrap();
        (got, reply)
    });
    let (_dir, key) = key_dir();
    let p = pair(Impl::Georep, Impl::Georep, target, &key, &[], &[]).await;
    let sent = payload(50_000, 7);
    let got = round_trip(p.e.addr, &sent).await.unwrap();
    let (server_got, reply) = server.await.unwrap();
    assert!(server_got == sent);
    assert!(got == reply);
}

/// A stream of small writes (a primary's replication stream under single-key writes) is held
/// back to fill packets, and while a packet is held the sealing side is woken only once it can
/// be completed (`SO_RCVLOWAT`), or when the hold ends: not once per write. Every byte still
/// arrives, the last ones on the hold's timer alone, with the connection left open.
#[tokio::test(flavor = "multi_thread")]
async fn small_writes_do_not_wake_the_tunnel_one_by_one_and_all_arrive() {
    const WRITES: usize = 2_000;
    const SIZE: usize = 40;
    let (_dir, key) = key_dir();
    let target = Server::recorder().await;
    let p = pair(Impl::Georep, Impl::Georep, target.addr, &key, &[], &[]).await;
    let data = payload(WRITES * SIZE, 11);
    let mut app = std::net::TcpStream::connect(p.e.addr).unwrap();
    app.set_nodelay(true).unwrap();
    // Let the handshake finish before counting.
    std::io::Write::write_all(&mut app, &data[..SIZE]).unwrap();
    eventually("the first write to arrive", || async {
        target
            .received()
            .first()
            .is_some_and(|r| r.len() == SIZE)
            .then_some(())
    })
    .await;
    let before = p.e.proc.wakeups();
    let started = Instant::now();
    let writer = std::thread::spawn(move || {
        for chunk in data[SIZE..].chunks(SIZE) {
            std::io::Write::write_all(&mut app, chunk).unwrap();
            // 50 µs apart, spun rather than slept so that the writes stay this dense.
            let next = Instant::now() + Duration::from_micros(50);
            while Instant::now() < next {
                std::hint::spin_loop();
            }
        }
        (app, data)
    });
    let (_app, data) = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    let wakeups = p.e.proc.wakeups() - before;
    let elapsed = started.elapsed();
    eventually(
        "every byte to arrive with the connection still open",
        || async {
            target
                .received()
                .first()
                .is_some_and(|r| r.len() == data.len())
                .then_some(())
        },
    )
    .await;
    assert!(target.received()[0] == data, "the bytes arrived altered");
    println!(
        "{WRITES} writes of {SIZE} bytes in {elapsed:?} woke the encrypting tunnel {wakeups} times"
    );
    assert!(
        wakeups < WRITES as u64 / 6,
        "{WRITES} small writes woke the tunnel {wakeups} times: once per write, the low-water mark is not working"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_key_is_refused_and_nothing_reaches_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let good = testkit::key_file(dir.path(), "good", 1, 32);
    let other = testkit::key_file(dir.path(), "other", 2, 32);
    let target = Server::recorder().await;
    let d = endpoint(Impl::Georep, "-d", target.addr, &[&good], &["-o", "2"]).await;
    let e = endpoint(Impl::Georep, "-e", d.addr, &[&other], &["-o", "2"]).await;
    let started = Instant::now();
    let mut c = TcpStream::connect(e.addr).await.unwrap();
    let _ = c.write_all(b"SET secret value\r\n").await;
    assert!(
        closed_within(&mut c, Duration::from_secs(3)).await,
        "connection not closed"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let m = d.metrics.unwrap();
    metric_eventually(
        m,
        "georep_tunnel_handshake_failures_total{reason=\"bad_mac\"}",
        |v| v == 1.0,
    )
    .await;
    assert_eq!(
        target.accepted(),
        0,
        "the decrypting side must not even dial the target"
    );
    let log = d.proc.stderr();
    assert!(
        log.contains("handshake failed") && log.contains("bad_mac") && log.contains("127.0.0.1:"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_drops_the_connection_and_only_a_prefix_arrives() {
    let (_dir, key) = key_dir();
    let target = Server::recorder().await;
    let d = endpoint(Impl::Georep, "-d", target.addr, &[&key], &["-o", "2"]).await;
    let proxy = Proxy::start(d.addr).await;
    let e = endpoint(Impl::Georep, "-e", proxy.addr, &[&key], &["-o", "2"]).await;
    let data = payload(40 * 1024, 99);
    // Client → server: nonce 0..32, DH message 32..320, then 1,060-byte packets.
    // Server → client: nonce 0..32, DH message 32..320.
    let handshake_up = [0, 31, 32, 200, 319];
    let handshake_down = [0, 17, 32, 250, 319];
    let data_up = [
        320,
        320 + 1059,
        320 + 1060 * 3 + 500,
        320 + 1060 * 10 + 1030,
    ];
    let cases = handshake_up
        .iter()
        .map(|&o| (Way::Up, o, true))
        .chain(handshake_down.iter().map(|&o| (Way::Down, o, true)))
        .chain(data_up.iter().map(|&o| (Way::Up, o, false)));
    for (way, offset, in_handshake) in cases {
        proxy.set_fault(Fault::Flip {
            way,
            offset,
            mask: 0x40,
        });
        let accepted_before = target.accepted();
        let result = round_trip(e.addr, &data).await;
        assert!(
            !matches!(&result, Ok(got) if *got == data),
            "flip at {way:?}:{offset} went unnoticed"
        );
        // The trial is over once neither endpoint holds a connection and the target has read
        // everything it was sent.
        for m in [e.metrics.unwrap(), d.metrics.unwrap()] {
            metric_eventually(m, "georep_tunnel_connections_active", |v| v == 0.0).await;
        }
        eventually("target drained", || async {
            (target.finished() == target.accepted()).then_some(())
        })
        .await;
        let delivered = if target.accepted() > accepted_before {
            target.received().last().cloned().unwrap_or_default()
        } else {
            Vec::new()
        };
        assert!(
            delivered.len() < data.len(),
            "flip at {way:?}:{offset}: everything arrived"
        );
        assert!(
            data.starts_with(&delivered),
            "flip at {way:?}:{offset}: not a prefix"
        );
        if in_handshake {
            assert!(delivered.is_empty(), "flip in the handshake delivered data");
        }
    }
    let m = d.metrics.unwrap();
    let text = scrape(m).await;
    assert!(
        metric(
            &text,
            "georep_tunnel_stream_errors_total{reason=\"bad_mac\"}"
        )
        .unwrap_or(0.0)
            >= 4.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_stalling_mid_handshake_is_cut_at_the_timeout() {
    let (_dir, key) = key_dir();
    let target = Server::recorder().await;
    let d = endpoint(Impl::Georep, "-d", target.addr, &[&key], &["-o", "1"]).await;
    let mut c = TcpStream::connect(d.addr).await.unwrap();
    c.write_all(&[0u8; 40]).await.unwrap(); // a nonce and a few bytes, then silence
    let started = Instant::now();
    assert!(closed_within(&mut c, Duration::from_secs(4)).await);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    metric_eventually(
        d.metrics.unwrap(),
        "georep_tunnel_handshake_failures_total{reason=\"timeout\"}",
        |v| v == 1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_limit_holds_under_a_flood_and_the_tunnel_recovers() {
    let (_dir, key) = key_dir();
    let echo = Server::echo().await;
    let d = endpoint(Impl::Georep, "-d", echo.addr, &[&key], &["-n", "4", "-f"]).await;
    let e = endpoint(
        Impl::Georep,
        "-e",
        d.addr,
        &[&key],
        &["-n", "0", "-o", "1", "-f"],
    )
    .await;
    let mut held = Vec::new();
    for i in 0..4u8 {
        let mut c = TcpStream::connect(e.addr).await.unwrap();
        c.write_all(&[i]).await.unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        held.push(c);
    }
    // Flood: 60 more clients. None may get through while the 4 are open.
    let flood: Vec<_> = (0..60)
        .map(|_| {
            let addr = e.addr;
            tokio::spawn(async move {
                let mut c = TcpStream::connect(addr).await.ok()?;
                c.write_all(b"x").await.ok()?;
                let mut b = [0u8; 1];
                match tokio::time::timeout(Duration::from_secs(5), c.read(&mut b)).await {
                    Ok(Ok(1)) => Some(true),
                    _ => Some(false),
                }
            })
        })
        .collect();
    let mut served = 0;
    for f in flood {
        if f.await.unwrap() == Some(true) {
            served += 1;
        }
    }
    assert_eq!(served, 0, "a connection beyond -n 4 was served");
    let m = d.metrics.unwrap();
    let text = scrape(m).await;
    assert_eq!(
        metric(&text, "georep_tunnel_connections_active"),
        Some(4.0),
        "{text}"
    );
    assert!(metric(&text, "georep_tunnel_connection_limit_waits_total").unwrap() >= 1.0);
    drop(held);
    // Recovered: new clients are served again.
    let got = eventually("tunnel serves again", || async {
        round_trip(e.addr, b"again")
            .await
            .ok()
            .filter(|g| g == b"again")
    })
    .await;
    assert_eq!(got, b"again");
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_connections_leak_no_file_descriptors() {
    let (_dir, key) = key_dir();
    let echo = Server::echo().await;
    let p = pair(
        Impl::Georep,
        Impl::Georep,
        echo.addr,
        &key,
        &["-f", "-n", "0"],
        &["-f", "-n", "0"],
    )
    .await;
    round_trip(p.e.addr, b"warm").await.unwrap();
    let (e0, d0) = (p.e.proc.open_fds(), p.d.proc.open_fds());
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let addr = p.e.addr;
            tokio::spawn(async move {
                for i in 0..1250u32 {
                    let mut c = TcpStream::connect(addr).await.unwrap();
                    if i % 2 == 0 {
                        // Half the cycles carry a byte end to end; the rest connect and close.
                        c.write_all(&[w]).await.unwrap();
                        let mut b = [0u8; 1];
                        c.read_exact(&mut b).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    eventually("descriptors back to baseline", || async {
        let (e1, d1) = (p.e.proc.open_fds(), p.d.proc.open_fds());
        (e1 <= e0 + 2 && d1 <= d0 + 2).then_some(())
    })
    .await;
    let m = p.e.metrics.unwrap();
    metric_eventually(m, "georep_tunnel_connections_active", |v| v == 0.0).await;
    let text = scrape(m).await;
    assert!(metric(&text, "georep_tunnel_connections_total").unwrap() >= 10_000.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_accepting_and_lets_open_connections_finish() {
    let (_dir, key) = key_dir();
    let echo = Server::echo().await;
    let mut p = pair(
        Impl::Georep,
        Impl::Georep,
        echo.addr,
        &key,
        &["--shutdown-grace", "30s"],
        &[],
    )
    .await;
    let mut open = TcpStream::connect(p.e.addr).await.unwrap();
    open.write_all(b"before").await.unwrap();
    let mut b = [0u8; 6];
    open.read_exact(&mut b).await.unwrap();

    p.e.proc.signal(Signal::SIGTERM);
    let addr = p.e.addr;
    eventually("listener closed", || async move {
        TcpStream::connect(addr).await.err().map(drop)
    })
    .await;
    // The open connection still works, both ways.
    open.write_all(b"after").await.unwrap();
    let mut b = [0u8; 5];
    open.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"after");
    assert_eq!(
        p.e.proc.exited_within(Duration::from_millis(300)).await,
        None,
        "exited with a connection open"
    );
    drop(open);
    assert_eq!(
        p.e.proc.exited_within(Duration::from_secs(5)).await,
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drain_is_bounded_by_the_grace_period() {
    let (_dir, key) = key_dir();
    let echo = Server::echo().await;
    let mut p = pair(
        Impl::Georep,
        Impl::Georep,
        echo.addr,
        &key,
        &["--shutdown-grace", "1s"],
        &[],
    )
    .await;
    let mut open = TcpStream::connect(p.e.addr).await.unwrap();
    open.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    open.read_exact(&mut b).await.unwrap();
    let started = Instant::now();
    p.e.proc.signal(Signal::SIGTERM);
    assert_eq!(
        p.e.proc.exited_within(Duration::from_secs(5)).await,
        Some(0)
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(closed_within(&mut open, Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_accepts_every_key_of_a_rotation_and_logs_which() {
    let dir = tempfile::tempdir().unwrap();
    let current = testkit::key_file(dir.path(), "current", 1, 32);
    let next = testkit::key_file(dir.path(), "next", 2, 32);
    let stranger = testkit::key_file(dir.path(), "stranger", 3, 32);
    let echo = Server::echo().await;
    let d = endpoint(Impl::Georep, "-d", echo.addr, &[&current, &next], &[]).await;
    for (key, index) in [(&current, 0), (&next, 1)] {
        let e = endpoint(Impl::Georep, "-e", d.addr, &[key], &[]).await;
        assert_eq!(round_trip(e.addr, b"hello").await.unwrap(), b"hello");
        let series = format!("georep_tunnel_handshakes_total{{key_index=\"{index}\"}}");
        metric_eventually(d.metrics.unwrap(), &series, |v| v == 1.0).await;
    }
    let e = endpoint(Impl::Georep, "-e", d.addr, &[&stranger], &[]).await;
    assert!(round_trip(e.addr, b"hello")
        .await
        .map(|g| g.is_empty())
        .unwrap_or(true));
    let log = d.proc.stderr();
    assert!(
        log.contains("key_index=1") && log.contains("key_index=0"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_secrecy_required_refuses_a_peer_without_it() {
    let (_dir, key) = key_dir();
    let echo = Server::echo().await;
    let p = pair(
        Impl::Georep,
        Impl::Georep,
        echo.addr,
        &key,
        &["-f"],
        &["-g"],
    )
    .await;
    assert!(round_trip(p.e.addr, b"x")
        .await
        .map(|g| g.is_empty())
        .unwrap_or(true));
    let series = "georep_tunnel_handshake_failures_total{reason=\"forward_secrecy_required\"}";
    metric_eventually(p.d.metrics.unwrap(), series, |v| v == 1.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_addresses_work_on_both_sides() {
    let (dir, key) = key_dir();
    let echo = Server::echo().await;
    let d = endpoint(Impl::Georep, "-d", echo.addr, &[&key], &[]).await;
    let sock = dir.path().join("plain.sock");
    let s = sock.to_str().unwrap();
    let _e = Proc::spawn(
        GEOREP,
        &[
            "tunnel",
            "-e",
            "-s",
            s,
            "-t",
            &testkit::spiped_addr(d.addr),
            "-k",
            key.to_str().unwrap(),
        ],
    );
    let mut c = eventually("unix listener", || async {
        tokio::net::UnixStream::connect(&sock).await.ok()
    })
    .await;
    c.write_all(b"over unix").await.unwrap();
    c.shutdown().await.unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"over unix");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_sidecars_environment_configures_the_tunnel() {
    let (_dir, key) = key_dir();
    let echo = Server::echo().await;
    let d_addr = testkit::free_addr();
    // The seed's deployment.yaml, verbatim except for the ports.
    let _d = Proc::spawn_with(
        std::process::Command::new(GEOREP)
            .arg("tunnel")
            .env("SPIPED_KEY", &key)
            .env("SPIPED_TARGET_SOCKET", testkit::spiped_addr(echo.addr))
            .env("SPIPED_SOURCE_SOCKET", testkit::spiped_addr(d_addr))
            .env("SPIPED_MODE", "d")
            .env("SPIPED_TIMEOUT", "30"),
    );
    testkit::wait_listening(d_addr).await;
    let e = endpoint(Impl::Georep, "-e", d_addr, &[&key], &[]).await;
    assert_eq!(round_trip(e.addr, b"seed").await.unwrap(), b"seed");
}

#[tokio::test(flavor = "multi_thread")]
async fn keygen_writes_a_0400_key_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tunnel.key");
    let out = std::process::Command::new(GEOREP)
        .args(["keygen", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o400);
    assert_eq!(meta.len(), 32);
    let before = std::fs::read(&path).unwrap();
    let again = std::process::Command::new(GEOREP)
        .args(["keygen", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_key_is_refused_with_exit_64_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let short = testkit::key_file(dir.path(), "short.key", 1, 16);
    let out = std::process::Command::new(GEOREP)
        .args([
            "tunnel",
            "-d",
            "-s",
            "[127.0.0.1]:1",
            "-t",
            "[127.0.0.1]:2",
            "-k",
            short.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("short.key") && err.contains("16 bytes"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_the_logs() {
    let (_dir, key) = key_dir();
    let echo = Server::echo().await;
    let mut d = std::process::Command::new(GEOREP);
    d.env("RUST_LOG", "trace");
    let d_addr = testkit::free_addr();
    let d = Proc::spawn_with(d.args([
        "tunnel",
        "--log-format",
        "json",
        "-d",
        "-s",
        &testkit::spiped_addr(d_addr),
        "-t",
        &testkit::spiped_addr(echo.addr),
        "-k",
        key.to_str().unwrap(),
    ]));
    testkit::wait_listening(d_addr).await;
    let e = endpoint(Impl::Georep, "-e", d_addr, &[&key], &[]).await;
    assert_eq!(round_trip(e.addr, b"x").await.unwrap(), b"x");
    let raw = std::fs::read(&key).unwrap();
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    for log in [d.stderr(), e.proc.stderr()] {
        assert!(!log.contains(&hex[..16]), "key material in the log");
    }
    let json = d.stderr();
    assert!(
        json.lines().any(|l| l.contains("handshake complete")),
        "{json}"
    );
    assert!(json.lines().all(|l| l.starts_with('{')), "{json}");
}

#[tokio::test(flavor = "multi_thread")]
async fn half_open_handshakes_cannot_lock_out_an_authenticated_client() {
    let (_dir, key) = key_dir();
    let echo = Server::echo().await;
    // -n 40 gives a handshake limit of 10. With -o 30, a connection that says nothing would hold
    // its slot for 30 s: without the limit, 300 of them lock the tunnel for minutes.
    let d = endpoint(
        Impl::Georep,
        "-d",
        echo.addr,
        &[&key],
        &["-n", "40", "-o", "30"],
    )
    .await;
    let e = endpoint(Impl::Georep, "-e", d.addr, &[&key], &["-o", "30"]).await;
    let mut established = TcpStream::connect(e.addr).await.unwrap();
    established.write_all(b"1").await.unwrap();
    let mut b = [0u8; 1];
    established.read_exact(&mut b).await.unwrap();

    // The flood: connections that send a nonce and then nothing, held open; then a trickle of
    // more for as long as the legitimate client is being served.
    let d_addr = d.addr;
    let half_open = move || async move {
        let mut c = TcpStream::connect(d_addr).await.ok()?;
        c.write_all(&[0u8; 32]).await.ok()?;
        Some(c)
    };
    let mut flood = Vec::new();
    for _ in 0..300 {
        flood.extend(half_open().await);
    }
    assert!(flood.len() >= 290, "only {} flood connections", flood.len());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut held = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                held.extend(half_open().await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            held.len()
        }
    });
    for i in 0..5u8 {
        let data = [b'a' + i; 100];
        let served = tokio::time::timeout(Duration::from_secs(5), round_trip(e.addr, &data)).await;
        assert!(
            matches!(&served, Ok(Ok(got)) if got == &data),
            "round trip {i} during the flood: {served:?}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(trickle.await.unwrap() > 0);
    // The connection established before the flood was never touched.
    established.write_all(b"2").await.unwrap();
    established.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"2");

    let m = d.metrics.unwrap();
    let text = scrape(m).await;
    let drops = metric(&text, "georep_tunnel_handshake_limit_drops_total").unwrap_or(0.0);
    assert!(drops >= 280.0, "{text}");
    assert!(
        metric(&text, "georep_tunnel_connections_active").unwrap() <= 40.0,
        "{text}"
    );
    let log = d.proc.stderr();
    let lines = log.matches("handshake limit reached").count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} log lines for {drops} drops: {log}"
    );
    drop(flood);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_key_file_fails_fast_with_a_clear_error() {
    for endless in ["/dev/zero", "/dev/urandom"] {
        let started = Instant::now();
        let out = std::process::Command::new(GEOREP)
            .args([
                "tunnel",
                "-d",
                "-s",
                "[127.0.0.1]:1",
                "-t",
                "[127.0.0.1]:2",
                "-k",
                endless,
            ])
            .output()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(out.status.code(), Some(64));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(endless) && err.contains("1 MiB"), "{err}");
    }
    // The bound is on what is read, not on a regular file's reported size: 1 MiB is still a key.
    let dir = tempfile::tempdir().unwrap();
    let big = testkit::key_file(dir.path(), "big.key", 1, 1 << 20);
    let bigger = testkit::key_file(dir.path(), "bigger.key", 1, (1 << 20) + 1);
    let echo = Server::echo().await;
    let d = endpoint(Impl::Georep, "-d", echo.addr, &[&big], &[]).await;
    let e = endpoint(Impl::Georep, "-e", d.addr, &[&big], &[]).await;
    assert_eq!(round_trip(e.addr, b"big").await.unwrap(), b"big");
    let out = std::process::Command::new(GEOREP)
        .args([
            "tunnel",
            "-e",
            "-s",
            "[127.0.0.1]:1",
            "-t",
            "[127.0.0.1]:2",
            "-k",
        ])
        .arg(&bigger)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bigger.key"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_file_others_can_read_is_warned_about_by_path_and_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let echo = Server::echo().await;
    for (mode, warning) in [
        (0o644, Some("readable by every user")),
        (0o604, Some("readable by every user")),
        (0o640, Some("readable by its group")),
        (0o600, None),
        (0o400, None),
    ] {
        let key = testkit::key_file(dir.path(), &format!("k{mode:o}"), 1, 32);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let d = endpoint(Impl::Georep, "-d", echo.addr, &[&key], &[]).await;
        let log = d.proc.stderr();
        let hex: String = std::fs::read(&key).unwrap()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!log.contains(&hex), "key material in the log");
        match warning {
            Some(w) => assert!(
                log.contains(w)
                    && log.contains(key.to_str().unwrap())
                    && log.contains(&format!("mode={mode:04o}")),
                "mode {mode:o}: {log}"
            ),
            None => assert!(!log.contains("readable by"), "mode {mode:o}: {log}"),
        }
    }
}
