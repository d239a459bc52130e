//! The endpoint with busy-polling on (`Limits::busy_poll`): bytes pass unchanged, and the
//! forwarding thread goes back to sleep once traffic stops. A binary of its own, so that the
//! CPU time of its forwarding thread is this test's alone.

use std::time::Duration;

use endpoint::{EndpointMetrics, Limits, Route, Target};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::watch;

/// CPU time run so far by this process's forwarding threads (named by `endpoint::serve`).
fn forwarder_cpu() -> Duration {
    let mut ns = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() == "georep-endpoint" {
            let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
            ns += stat
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_pass_unchanged_and_polling_stops_once_traffic_stops() {
    // An echo server on a Unix socket, as the local Redis's `unixsocket` is.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("redis.sock");
    let echo = UnixListener::bind(&path).unwrap();
    let echo = tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_route, route) = watch::channel(Route::Primary {
        target: Target::Unix(path),
        epoch: 1,
    });
    let (stop, stopped) = watch::channel(false);
    let mut registry = Registry::default();
    let metrics = EndpointMetrics::register(registry.sub_registry_with_prefix("endpoint"));
    let limits = Limits {
        busy_poll: Duration::from_micros(200),
        ..Limits::default()
    };
    let server = tokio::spawn(endpoint::serve(listener, route, limits, metrics, stopped));

    // One request at a time, each waiting for its reply: the traffic polling is for.
    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut reply = [0u8; 32];
    for i in 0..2_000u32 {
        let request = format!("*1\r\n$8\r\nPING{i:04}\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let mut got = 0;
        while got < request.len() {
            let n = client.read(&mut reply[got..]).await.unwrap();
            assert!(n > 0, "closed after {got} bytes of reply {i}");
            got += n;
        }
        assert_eq!(&reply[..got], request.as_bytes());
    }

    // No traffic now (the connection stays open): after at most one window the thread sleeps.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = forwarder_cpu();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ran = forwarder_cpu() - before;
    assert!(
        ran < Duration::from_millis(50),
        "the forwarding thread ran {ran:?} of 500 ms without traffic"
    );

    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the endpoint stops promptly")
        .unwrap()
        .unwrap();
    echo.abort();
}
