//! `serve` and the gate against real sockets: idle floods, slow heads, tokens, cross-origin
//! requests and bodies.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Extension;
use httpd::auth::{Gate, Operator, Token};
use httpd::Limits;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    registry: std::sync::Arc<std::sync::Mutex<Registry>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(limits: Limits, token: Option<&Token>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut registry = Registry::with_prefix("georep");
    let open = axum::Router::new().route("/healthz", get(|| async { "ok\n" }));
    let router = match token {
        None => open,
        Some(t) => {
            let gate = Gate::new(vec![t.clone()], &mut registry);
            let control = axum::Router::new().route(
                "/failover",
                post(|Extension(op): Extension<Operator>| async move {
                    format!("moved by {}\n", op.fingerprint)
                }),
            );
            open.merge(gate.guard(control))
        }
    };
    let (tx, rx) = oneshot::channel();
    tokio::spawn(httpd::serve(listener, router, limits, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        registry: std::sync::Arc::new(std::sync::Mutex::new(registry)),
    }
}

/// Sends raw bytes and reads the whole answer (the server closes: no keep-alive).
async fn exchange(addr: SocketAddr, raw: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answered within 10 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn status(reply: &str) -> u16 {
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn two_thousand_idle_connections_do_not_stop_healthz() {
    let server = start(Limits::open(), None).await;
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let started = Instant::now();
    let reply = exchange(server.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(&reply), 200, "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
}

#[tokio::test]
async fn a_slow_head_is_cut_and_its_slot_freed() {
    let limits = Limits {
        max_connections: 1,
        header_timeout: Duration::from_millis(300),
        ..Limits::open()
    };
    let refused = limits.refused.clone();
    let server = start(limits, None).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    // The slow client holds the only slot: a second client is closed at accept…
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = Vec::new();
    let _ = second.read_to_end(&mut buf).await;
    assert!(buf.is_empty());
    assert_eq!(refused.get(), 1);
    // …until the head timeout ends the slow one.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest))
        .await
        .expect("the slow client is cut")
        .ok();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = exchange(server.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        if status(&reply) == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_oversized_head_is_refused() {
    let server = start(Limits::open(), None).await;
    let big = "a".repeat(64 * 1024);
    let reply = exchange(
        server.addr,
        &format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"),
    )
    .await;
    assert_eq!(status(&reply), 431, "{reply}");
}

#[tokio::test]
async fn the_gate_wants_the_token_and_nothing_cross_origin() {
    let token = Token::generate();
    let server = start(Limits::control(), Some(&token)).await;
    let t = token.expose();
    let post = |headers: String| format!("POST /failover HTTP/1.1\r\nHost: x\r\n{headers}\r\n");

    let none = exchange(server.addr, &post(String::new())).await;
    assert_eq!(status(&none), 401, "{none}");
    assert!(none.contains("WWW-Authenticate: Bearer") || none.contains("www-authenticate"));

    let wrong = exchange(
        server.addr,
        &post(format!("Authorization: Bearer {}\r\n", "f".repeat(64))),
    )
    .await;
    assert_eq!(status(&wrong), 401, "{wrong}");

    // Another scheme is no bearer token at all.
    let basic = exchange(server.addr, &post(format!("Authorization: Basic {t}\r\n"))).await;
    assert_eq!(status(&basic), 401, "{basic}");

    let cross = exchange(
        server.addr,
        &post(format!(
            "Authorization: Bearer {t}\r\nOrigin: http://evil.example\r\n"
        )),
    )
    .await;
    assert_eq!(status(&cross), 403, "{cross}");

    let fetch = exchange(
        server.addr,
        &post(format!(
            "Authorization: Bearer {t}\r\nSec-Fetch-Site: cross-site\r\n"
        )),
    )
    .await;
    assert_eq!(status(&fetch), 403, "{fetch}");

    let body = exchange(
        server.addr,
        &format!(
            "POST /failover HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=b"
        ),
    )
    .await;
    assert_eq!(status(&body), 400, "{body}");

    let ok = exchange(server.addr, &post(format!("Authorization: Bearer {t}\r\n"))).await;
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(ok.contains(&format!("moved by {}", token.fingerprint())));

    let get = exchange(
        server.addr,
        &format!("GET /failover HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\n\r\n"),
    )
    .await;
    assert_eq!(status(&get), 405, "{get}");

    // The open route stays open.
    let health = exchange(server.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(&health), 200);

    for reply in [&none, &wrong, &basic, &cross, &fetch, &body] {
        assert!(!reply.contains(t), "a refusal echoed the token");
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &server.registry.lock().unwrap()).unwrap();
    assert!(
        text.contains("georep_control_auth_failures_total{reason=\"missing_token\"} 2"),
        "{text}"
    );
    assert!(text.contains("georep_control_auth_failures_total{reason=\"wrong_token\"} 1"));
    assert!(text.contains("georep_control_auth_failures_total{reason=\"cross_origin\"} 2"));
    assert!(text.contains("georep_control_auth_failures_total{reason=\"unexpected_body\"} 1"));
    assert!(!text.contains(t));
}

#[tokio::test]
async fn a_silent_connection_is_cut_too() {
    let limits = Limits {
        max_connections: 1,
        header_timeout: Duration::from_millis(300),
        ..Limits::open()
    };
    let server = start(limits, None).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest))
        .await
        .expect("a client that never sends a byte is cut by the head timeout")
        .ok();
    assert!(started.elapsed() >= Duration::from_millis(250));
}
