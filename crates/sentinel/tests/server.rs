//! The tokio driver over real sockets: many clients, +switch-master pushed on a view change,
//! garbage answered then closed, connection cap, idle timeout, metrics.

use std::net::SocketAddr;
use std::time::Duration;

use prometheus_client::registry::Registry;
use resp::{Conn, Value};
use sentinel::{Addr, Credentials, Limits, SentinelId, SentinelMetrics, View};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

fn view(port: u16) -> View {
    View {
        master_name: "georep".into(),
        epoch: 1,
        primary_known: true,
        primary: Addr::new("127.0.0.1", port),
        replicas: vec![],
        myid: SentinelId::derive("georep/test"),
        sentinels: vec![],
    }
}

struct Running {
    addr: SocketAddr,
    view: watch::Sender<View>,
    metrics: SentinelMetrics,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(auth: Option<Credentials>, limits: Limits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (view_tx, view_rx) = watch::channel(view(6379));
        let (stop, stop_rx) = watch::channel(false);
        let mut registry = Registry::default();
        let metrics = SentinelMetrics::register(&mut registry);
        let task = tokio::spawn(sentinel::serve(
            listener,
            view_rx,
            auth,
            limits,
            metrics.clone(),
            stop_rx,
        ));
        Self {
            addr,
            view: view_tx,
            metrics,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("stops promptly")
            .unwrap()
            .unwrap();
    }
}

async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(testkit::patience(), stream.read_to_end(&mut out))
        .await
        .expect("closed in time")
        .expect("read");
    out
}

fn text(v: &Value) -> String {
    v.text().unwrap_or_default()
}

#[tokio::test]
async fn many_clients_discover_and_subscribers_get_switch_master() {
    let s = Running::start(None, Limits::default()).await;
    let mut subscribers = Vec::new();
    for _ in 0..20 {
        let mut sub = TcpStream::connect(s.addr).await.unwrap();
        sub.write_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\n+switch-master\r\n")
            .await
            .unwrap();
        let mut confirm =
            vec![0u8; b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n".len()];
        sub.read_exact(&mut confirm).await.unwrap();
        subscribers.push(sub);
    }
    let mut conn = Conn::connect(s.addr, None, Duration::from_secs(5))
        .await
        .unwrap();
    let reply = conn
        .cmd(&["SENTINEL", "get-master-addr-by-name", "georep"])
        .await
        .unwrap();
    assert_eq!(
        reply,
        Value::Array(Some(vec![
            Value::Bulk(Some(b"127.0.0.1".to_vec())),
            Value::Bulk(Some(b"6379".to_vec()))
        ]))
    );

    s.view.send_modify(|v| {
        v.epoch = 2;
        v.primary = Addr::new("127.0.0.1", 7001);
    });
    let expected = "georep 127.0.0.1 6379 127.0.0.1 7001";
    for sub in &mut subscribers {
        let mut buf = Vec::new();
        let message = tokio::time::timeout(testkit::patience(), async {
            loop {
                let mut chunk = [0u8; 256];
                let n = sub.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                if let Some((v, _)) = resp::decode(&buf).unwrap() {
                    return v;
                }
            }
        })
        .await
        .unwrap();
        let Value::Array(Some(parts)) = message else {
            panic!()
        };
        assert_eq!(
            parts.iter().map(text).collect::<Vec<_>>(),
            ["message", "+switch-master", expected]
        );
    }
    assert_eq!(s.metrics.switch_master_messages(), 20);
    let reply = conn
        .cmd(&["SENTINEL", "get-master-addr-by-name", "georep"])
        .await
        .unwrap();
    let Value::Array(Some(addr)) = reply else {
        panic!()
    };
    assert_eq!(text(&addr[1]), "7001");
    drop(subscribers);
    drop(conn);
    s.stop().await;
}

#[tokio::test]
async fn garbage_is_answered_with_an_error_then_closed() {
    let s = Running::start(None, Limits::default()).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"PING\r\n*1\r\n:12\r\n").await.unwrap();
    let reply = read_until_closed(&mut c).await;
    assert_eq!(
        String::from_utf8(reply).unwrap(),
        "+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n"
    );
    // An endless request hits the size limit instead of filling memory.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let _ = c.write_all(&vec![b'x'; 64 * 1024]).await;
    let reply = read_until_closed(&mut c).await;
    assert_eq!(reply, b"-ERR Protocol error: too big request\r\n");
    testkit::eventually("closes counted", || async {
        (s.metrics.closed("protocol_error") == 2).then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn auth_is_enforced_and_failures_counted() {
    let creds = Credentials {
        user: "apps".into(),
        password: "pw".into(),
    };
    let s = Running::start(Some(creds.clone()), Limits::default()).await;
    let mut c = Conn::connect(s.addr, None, Duration::from_secs(5))
        .await
        .unwrap();
    let e = c
        .cmd(&["SENTINEL", "MASTERS"])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("NOAUTH Authentication required."), "{e}");
    let e = c
        .cmd(&["AUTH", "apps", "nope"])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("WRONGPASS"), "{e}");
    // resp::Conn authenticates with AUTH user password, as Sentinel clients do.
    let resp_creds = resp::Credentials {
        user: creds.user.clone(),
        password: creds.password.clone(),
    };
    let mut ok = Conn::connect(s.addr, Some(&resp_creds), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        ok.cmd(&["PING"]).await.unwrap(),
        Value::Simple("PONG".into())
    );
    assert_eq!(s.metrics.rejected("noauth"), 1);
    assert_eq!(s.metrics.rejected("auth_failed"), 1);
    drop((c, ok));
    s.stop().await;
}

#[tokio::test]
async fn connection_cap_and_idle_timeout() {
    let limits = Limits {
        max_connections: 2,
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let s = Running::start(None, limits).await;
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    let mut subscribed = TcpStream::connect(s.addr).await.unwrap();
    subscribed
        .write_all(b"SUBSCRIBE +switch-master\r\n")
        .await
        .unwrap();
    let mut confirm = [0u8; 8];
    subscribed.read_exact(&mut confirm).await.unwrap();
    testkit::eventually("two connections", || async {
        (s.metrics.active() == 2).then_some(())
    })
    .await;
    let mut third = TcpStream::connect(s.addr).await.unwrap();
    assert_eq!(
        read_until_closed(&mut third).await,
        b"-ERR max number of clients reached\r\n"
    );
    assert_eq!(s.metrics.refused("max_clients"), 1);
    // The silent client is closed after the idle timeout; the subscriber stays.
    assert!(read_until_closed(&mut idle).await.is_empty());
    assert_eq!(s.metrics.closed("idle"), 1);
    subscribed.write_all(b"PING\r\n").await.unwrap();
    let mut pong = Vec::new();
    while !pong.ends_with(b"pong\r\n$0\r\n\r\n") {
        let mut chunk = [0u8; 64];
        let n = subscribed.read(&mut chunk).await.unwrap();
        assert!(n > 0, "subscriber was closed");
        pong.extend_from_slice(&chunk[..n]);
    }
    drop(subscribed);
    s.stop().await;
}
