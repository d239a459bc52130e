//! The endpoint over real sockets: byte-for-byte forwarding with half-close, hold-then-refuse,
//! closing on a route change, the connection limit, and metrics; to a TCP primary and to one on
//! a Unix socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use endpoint::metrics::{Direction, Refusal};
use endpoint::{EndpointMetrics, Limits, Route, Target};
use prometheus_client::registry::Registry;
use testkit::servers::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::watch;

struct Endpoint {
    addr: SocketAddr,
    route: watch::Sender<Route>,
    metrics: EndpointMetrics,
    registry: Registry,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Endpoint {
    async fn start(route: Route, limits: Limits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (route_tx, route_rx) = watch::channel(route);
        let (stop, stop_rx) = watch::channel(false);
        let mut registry = Registry::default();
        let metrics = EndpointMetrics::register(registry.sub_registry_with_prefix("endpoint"));
        let task = tokio::spawn(endpoint::serve(
            listener,
            route_rx,
            limits,
            metrics.clone(),
            stop_rx,
        ));
        Self {
            addr,
            route: route_tx,
            metrics,
            registry,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("endpoint stops promptly")
            .unwrap()
            .unwrap();
    }
}

fn primary(addr: SocketAddr, epoch: u64) -> Route {
    Route::Primary {
        target: Target::Tcp(addr),
        epoch,
    }
}

fn unix_primary(path: &Path, epoch: u64) -> Route {
    Route::Primary {
        target: Target::Unix(path.to_owned()),
        epoch,
    }
}

/// An echo server on a Unix socket in a temporary directory, as Redis's `unixsocket` is: each
/// connection gets its bytes back, and its write side is shut down at the client's EOF.
struct UnixEcho {
    path: PathBuf,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl UnixEcho {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redis.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                        let _ = w.shutdown().await;
                    }
                });
            }
        });
        Self {
            path,
            accepted,
            _dir: dir,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for UnixEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn unavailable(reason: &str) -> Route {
    Route::Unavailable {
        reason: reason.into(),
    }
}

fn short_hold() -> Limits {
    Limits {
        hold: Duration::from_millis(500),
        ..Limits::default()
    }
}

async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(testkit::patience(), stream.read_to_end(&mut out))
        .await
        .expect("EOF in time")
        .expect("read");
    out
}

#[tokio::test]
async fn forwards_bytes_unchanged_and_carries_half_close() {
    let echo = Server::echo().await;
    let ep = Endpoint::start(primary(echo.addr, 1), Limits::default()).await;
    let mut client = TcpStream::connect(ep.addr).await.unwrap();
    let payload = testkit::payload(300_000, 7);
    let (mut r, mut w) = client.split();
    let write = async {
        w.write_all(&payload).await.unwrap();
        // Half-close: the echo server still sends everything back, then closes.
        w.shutdown().await.unwrap();
    };
    let mut back = Vec::new();
    let read = r.read_to_end(&mut back);
    let (_, n) = tokio::join!(write, read);
    n.unwrap();
    assert_eq!(back, payload);
    assert_eq!(ep.metrics.bytes(Direction::ToPrimary), payload.len() as u64);
    testkit::eventually("bytes to client counted", || async {
        (ep.metrics.bytes(Direction::ToClient) == payload.len() as u64).then_some(())
    })
    .await;
    assert_eq!(ep.metrics.forwarded(), 1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &ep.registry).unwrap();
    assert!(
        text.contains("endpoint_bytes_total{direction=\"to_primary\"} 300000"),
        "{text}"
    );
    ep.stop().await;
}

#[tokio::test]
async fn forwards_to_a_unix_socket_unchanged_with_half_close_and_metrics() {
    let echo = UnixEcho::start();
    let ep = Endpoint::start(unix_primary(&echo.path, 1), Limits::default()).await;
    let mut client = TcpStream::connect(ep.addr).await.unwrap();
    let payload = testkit::payload(300_000, 9);
    let (mut r, mut w) = client.split();
    let write = async {
        w.write_all(&payload).await.unwrap();
        // The client's EOF reaches the Unix socket as a half-close; the echo still answers.
        w.shutdown().await.unwrap();
    };
    let mut back = Vec::new();
    let read = r.read_to_end(&mut back);
    let (_, n) = tokio::join!(write, read);
    n.unwrap();
    assert_eq!(back, payload);
    assert_eq!(echo.accepted(), 1);
    assert_eq!(ep.metrics.bytes(Direction::ToPrimary), payload.len() as u64);
    testkit::eventually("bytes to client counted", || async {
        (ep.metrics.bytes(Direction::ToClient) == payload.len() as u64).then_some(())
    })
    .await;
    assert_eq!(ep.metrics.forwarded(), 1);
    ep.stop().await;
}

#[tokio::test]
async fn a_missing_or_dead_unix_socket_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let ep = Endpoint::start(unix_primary(&missing, 4), short_hold()).await;
    let mut client = TcpStream::connect(ep.addr).await.unwrap();
    let reply = String::from_utf8(read_to_end(&mut client).await).unwrap();
    assert!(
        reply.starts_with(&format!(
            "-LOADING georep: primary unix:{} (epoch 4) unreachable: No such file or directory",
            missing.display()
        )),
        "{reply}"
    );
    assert_eq!(ep.metrics.refused(Refusal::Unreachable), 1);

    // The socket file is there but nobody listens on it (Redis died without removing it).
    let dead = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    ep.route.send_replace(unix_primary(&dead, 5));
    let mut client = TcpStream::connect(ep.addr).await.unwrap();
    let reply = String::from_utf8(read_to_end(&mut client).await).unwrap();
    assert!(
        reply.starts_with(&format!(
            "-LOADING georep: primary unix:{} (epoch 5) unreachable: Connection refused",
            dead.display()
        )),
        "{reply}"
    );
    assert_eq!(ep.metrics.refused(Refusal::Unreachable), 2);
    assert_eq!(ep.metrics.forwarded(), 0);
    ep.stop().await;
}

#[tokio::test]
async fn a_route_change_closes_connections_to_a_unix_socket() {
    // A demotion: the local Redis (its socket) was the primary, now the tunnel (TCP) is.
    let local = UnixEcho::start();
    let remote = Server::echo().await;
    let ep = Endpoint::start(unix_primary(&local.path, 1), Limits::default()).await;
    let mut old = TcpStream::connect(ep.addr).await.unwrap();
    old.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    old.read_exact(&mut buf).await.unwrap();

    ep.route.send_replace(unix_primary(&local.path, 2));
    assert!(read_to_end(&mut old).await.is_empty(), "closed at epoch 2");
    let mut again = TcpStream::connect(ep.addr).await.unwrap();
    again.write_all(b"pong").await.unwrap();
    again.read_exact(&mut buf).await.unwrap();

    ep.route.send_replace(primary(remote.addr, 3));
    assert!(
        read_to_end(&mut again).await.is_empty(),
        "closed at epoch 3"
    );
    assert_eq!(ep.metrics.route_closes(), 2);
    let mut new = TcpStream::connect(ep.addr).await.unwrap();
    new.write_all(b"new!").await.unwrap();
    new.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"new!");
    assert_eq!((local.accepted(), remote.accepted()), (2, 1));
    ep.stop().await;
}

#[tokio::test]
async fn no_primary_holds_then_refuses_with_a_retryable_error() {
    let ep = Endpoint::start(unavailable("fenced at epoch 3"), short_hold()).await;
    let started = Instant::now();
    let mut client = TcpStream::connect(ep.addr).await.unwrap();
    client.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    let reply = read_to_end(&mut client).await;
    let waited = started.elapsed();
    assert_eq!(
        String::from_utf8(reply).unwrap(),
        "-LOADING georep: no primary known (fenced at epoch 3)\r\n"
    );
    assert!(waited >= Duration::from_millis(450), "held for {waited:?}");
    assert_eq!(ep.metrics.refused(Refusal::NoPrimary), 1);
    ep.stop().await;
}

#[tokio::test]
async fn a_held_client_is_forwarded_when_a_primary_appears() {
    let echo = Server::echo().await;
    let ep = Endpoint::start(
        unavailable("switchover in progress"),
        Limits {
            hold: Duration::from_secs(30),
            ..Limits::default()
        },
    )
    .await;
    let mut client = TcpStream::connect(ep.addr).await.unwrap();
    client.write_all(b"held bytes").await.unwrap();
    testkit::eventually("client accepted and held", || async {
        (ep.metrics.active() == 1).then_some(())
    })
    .await;
    ep.route.send_replace(primary(echo.addr, 2));
    let mut buf = [0u8; 10];
    tokio::time::timeout(testkit::patience(), client.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"held bytes", "bytes sent while held are forwarded");
    ep.stop().await;
}

#[tokio::test]
async fn an_unreachable_primary_is_retried_then_refused() {
    let nobody = testkit::free_addr();
    let ep = Endpoint::start(primary(nobody, 4), short_hold()).await;
    let mut client = TcpStream::connect(ep.addr).await.unwrap();
    let reply = String::from_utf8(read_to_end(&mut client).await).unwrap();
    assert!(
        reply.starts_with(&format!(
            "-LOADING georep: primary {nobody} (epoch 4) unreachable"
        )),
        "{reply}"
    );
    assert_eq!(ep.metrics.refused(Refusal::Unreachable), 1);
    ep.stop().await;
}

#[tokio::test]
async fn a_route_change_closes_connections_of_the_old_route() {
    let first = Server::echo().await;
    let second = Server::echo().await;
    let ep = Endpoint::start(primary(first.addr, 1), Limits::default()).await;
    let mut old = TcpStream::connect(ep.addr).await.unwrap();
    old.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    old.read_exact(&mut buf).await.unwrap();

    // Same address, new epoch: still a new route.
    ep.route.send_replace(primary(first.addr, 2));
    assert!(
        read_to_end(&mut old).await.is_empty(),
        "old connection closed"
    );
    assert_eq!(ep.metrics.route_closes(), 1);

    let mut again = TcpStream::connect(ep.addr).await.unwrap();
    again.write_all(b"pong").await.unwrap();
    again.read_exact(&mut buf).await.unwrap();
    ep.route.send_replace(primary(second.addr, 3));
    assert!(read_to_end(&mut again).await.is_empty());

    let mut new = TcpStream::connect(ep.addr).await.unwrap();
    new.write_all(b"new!").await.unwrap();
    new.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"new!");
    assert_eq!(
        second.accepted(),
        1,
        "the new connection reached the new primary"
    );

    // Losing the primary closes forwarded connections too.
    ep.route.send_replace(unavailable("fenced"));
    assert!(read_to_end(&mut new).await.is_empty());
    assert_eq!(ep.metrics.route_closes(), 3);
    ep.stop().await;
}

#[tokio::test]
async fn the_connection_limit_refuses_with_redis_wording() {
    let echo = Server::echo().await;
    let ep = Endpoint::start(
        primary(echo.addr, 1),
        Limits {
            max_connections: 1,
            ..Limits::default()
        },
    )
    .await;
    let mut first = TcpStream::connect(ep.addr).await.unwrap();
    first.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    first.read_exact(&mut one).await.unwrap();
    let mut second = TcpStream::connect(ep.addr).await.unwrap();
    assert_eq!(
        read_to_end(&mut second).await,
        b"-ERR max number of clients reached\r\n"
    );
    assert_eq!(ep.metrics.refused(Refusal::MaxClients), 1);
    drop(first);
    testkit::eventually("slot freed", || async {
        (ep.metrics.active() == 0).then_some(())
    })
    .await;
    let mut third = TcpStream::connect(ep.addr).await.unwrap();
    third.write_all(b"y").await.unwrap();
    third.read_exact(&mut one).await.unwrap();
    assert_eq!(&one, b"y");
    ep.stop().await;
}

#[tokio::test]
async fn shutdown_closes_open_connections() {
    let echo = Server::echo().await;
    let ep = Endpoint::start(primary(echo.addr, 1), Limits::default()).await;
    let mut client = TcpStream::connect(ep.addr).await.unwrap();
    client.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    client.read_exact(&mut one).await.unwrap();
    ep.stop().await;
    assert!(read_to_end(&mut client).await.is_empty());
}
