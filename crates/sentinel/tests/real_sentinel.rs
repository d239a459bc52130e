//! Differential test: the same commands to a real Redis Sentinel (`redis-server --sentinel`,
//! monitoring a real redis-server, with an ACL user and the default user off) and to ours, with
//! the same view. Replies must match exactly, except the values that are measurements (ping
//! times, run ids, the Redis version).
//!
//! Known, deliberate differences are not sent: `QUIT` (Redis 7's Sentinel has no QUIT and answers
//! "unknown command"; we answer `+OK` and close, as a plain Redis does), `CLIENT SETINFO` (Redis
//! 7.2's, which Debian's 7.0 Sentinel lacks), and our `SENTINEL HELP` text.

use std::net::SocketAddr;
use std::time::Duration;

use prometheus_client::registry::Registry;
use resp::Value;
use sentinel::{Addr, Credentials, Limits, SentinelId, SentinelMetrics, View};
use testkit::redis::Redis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Fields whose values are measurements or identities of the monitored Redis.
const VOLATILE: &[&str] = &[
    "runid",
    "link-pending-commands",
    "last-ping-sent",
    "last-ok-ping-reply",
    "last-ping-reply",
    "info-refresh",
    "role-reported-time",
    "version",
    "id",
];

struct Peer {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Peer {
    async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, args: &[&str]) {
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let mut out = Vec::new();
        resp::encode(&refs, &mut out);
        self.stream.write_all(&out).await.unwrap();
    }

    /// One RESP2 reply.
    async fn reply(&mut self) -> Value {
        loop {
            if let Some((v, used)) = resp::decode(&self.buf).unwrap() {
                self.buf.drain(..used);
                return v;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(testkit::patience(), self.stream.read(&mut chunk))
                .await
                .expect("a reply in time")
                .unwrap();
            assert!(n > 0, "closed while waiting for a reply");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Exactly `len` raw bytes (for RESP3 replies, which `resp` does not decode).
    async fn raw(&mut self, len: usize) -> Vec<u8> {
        while self.buf.len() < len {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(testkit::patience(), self.stream.read(&mut chunk))
                .await
                .expect("bytes in time")
                .unwrap();
            assert!(n > 0, "closed while waiting for bytes");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        self.buf.drain(..len).collect()
    }

    /// One RESP3 reply, as bytes.
    async fn resp3(&mut self) -> Vec<u8> {
        let mut reply = Vec::new();
        while !complete_resp3(&reply) {
            reply.extend(self.raw(1).await);
        }
        reply
    }

    async fn until_closed(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.buf);
        tokio::time::timeout(testkit::patience(), self.stream.read_to_end(&mut rest))
            .await
            .expect("closed in time")
            .unwrap();
        rest
    }
}

/// Blanks the values of volatile fields in flat key-value arrays, recursively.
fn normalize(v: Value) -> Value {
    match v {
        Value::Array(Some(items)) => {
            let mut out: Vec<Value> = items.into_iter().map(normalize).collect();
            for i in (0..out.len().saturating_sub(1)).step_by(2) {
                if out[i]
                    .text()
                    .is_some_and(|k| VOLATILE.contains(&k.as_str()))
                {
                    out[i + 1] = Value::Simple("*".into());
                }
                // HELLO's `server`: ours says "redis" like Redis's Sentinel; Valkey's says
                // "valkey". Clients read the other fields.
                if out[i].text().as_deref() == Some("server")
                    && out[i + 1].text().as_deref() == Some("valkey")
                {
                    out[i + 1] = Value::Bulk(Some(b"redis".to_vec()));
                }
            }
            Value::Array(Some(out))
        }
        // Where Valkey 8's Sentinel differs from Redis 7.0's (which ours answers like): HELLO's
        // error names the protocol argument (same code, NOAUTH), and see NOSUB below.
        Value::Error(e) => match e.strip_prefix("NOSUB '") {
            // Valkey 8 refuses (P)UNSUBSCRIBE outside subscribed mode; Redis 7.0 (and ours, and
            // what every client library expects) answers with zero subscriptions.
            Some(rest) => Value::Array(Some(vec![
                Value::Bulk(Some(
                    rest.split('\'').next().unwrap_or("").as_bytes().to_vec(),
                )),
                Value::Bulk(None),
                Value::Int(0),
            ])),
            None => Value::Error(e.replace("HELLO <proto> AUTH", "HELLO AUTH")),
        },
        other => other,
    }
}

struct RealSentinel {
    addr: SocketAddr,
    _proc: testkit::Proc,
    _dir: tempfile::TempDir,
}

async fn real_sentinel(master: SocketAddr) -> RealSentinel {
    let dir = tempfile::tempdir().unwrap();
    let addr = testkit::free_addr();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {}\nbind 127.0.0.1\ndir {}\nsentinel monitor georep 127.0.0.1 {} 1\n\
             user default off resetpass\nuser app on >pw &* +@all\n",
            addr.port(),
            dir.path().display(),
            master.port()
        ),
    )
    .unwrap();
    let proc = testkit::Proc::spawn("redis-server", &[conf.to_str().unwrap(), "--sentinel"]);
    // Ready once it has looked at the master at least once (role-reported set from INFO).
    testkit::eventually("real sentinel monitoring", || async move {
        let mut p = Peer {
            stream: TcpStream::connect(addr).await.ok()?,
            buf: Vec::new(),
        };
        p.send(&["AUTH", "app", "pw"]).await;
        p.reply().await;
        p.send(&["SENTINEL", "MASTER", "georep"]).await;
        let reply = p.reply().await;
        let Value::Array(Some(items)) = reply else {
            return None;
        };
        let flags = items
            .iter()
            .position(|v| v.text().as_deref() == Some("flags"))?;
        (items[flags + 1].text().as_deref() == Some("master")).then_some(())
    })
    .await;
    RealSentinel {
        addr,
        _proc: proc,
        _dir: dir,
    }
}

#[tokio::test]
async fn replies_match_a_real_sentinel() {
    let master = Redis::start().await;
    let real = real_sentinel(master.addr).await;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ours_addr = listener.local_addr().unwrap();
    let (_view_tx, view_rx) = watch::channel(View {
        master_name: "georep".into(),
        epoch: 0,
        primary_known: true,
        primary: Addr::from(master.addr),
        replicas: vec![],
        myid: SentinelId::derive("georep/test"),
        sentinels: vec![],
    });
    let (stop, stop_rx) = watch::channel(false);
    let server = tokio::spawn(sentinel::serve(
        listener,
        view_rx,
        Some(Credentials {
            user: "app".into(),
            password: "pw".into(),
        }),
        Limits::default(),
        SentinelMetrics::register(&mut Registry::default()),
        stop_rx,
    ));

    let script: &[(&[&str], usize)] = &[
        (&["PING"], 1),
        (&["SENTINEL", "MASTERS"], 1),
        (&["GET", "k"], 1),
        (&["SENTINEL", "FROB"], 1),
        (&["client", "frob"], 1),
        (&["AUTH", "pw"], 1),
        (&["AUTH", "app", "wrong"], 1),
        (&["AUTH", "a", "b", "c"], 1),
        (&["HELLO", "3"], 1),
        (&["HELLO", "4"], 1),
        (&["HELLO", "x"], 1),
        (&["HELLO", "3", "AUTH", "app"], 1),
        (&["HELLO", "2", "AUTH", "app", "wrong"], 1),
        (&["SUBSCRIBE", "x"], 1),
        (&["AUTH", "app", "pw"], 1),
        (&["PING"], 1),
        (&["PING", "hello"], 1),
        (&["PING", "a", "b"], 1),
        (&["ROLE"], 1),
        (&["ROLE", "x"], 1),
        (&["SENTINEL", "MASTERS"], 1),
        (&["sentinel", "master", "georep"], 1),
        (&["SENTINEL", "MASTER", "nope"], 1),
        (&["SENTINEL", "MASTER"], 1),
        (&["SENTINEL", "REPLICAS", "georep"], 1),
        (&["SENTINEL", "SLAVES", "nope"], 1),
        (&["SENTINEL", "SENTINELS", "georep"], 1),
        (&["SENTINEL", "SENTINELS", "nope"], 1),
        (&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "georep"], 1),
        (&["SENTINEL", "get-master-addr-by-name", "nope"], 1),
        (&["SENTINEL", "get-master-addr-by-name"], 1),
        (&["SENTINEL"], 1),
        (&["SENTINEL", "MASTERS", "x"], 1),
        (&["SENTINEL", "FROB", "x"], 1),
        (&["CLIENT"], 1),
        (&["CLIENT", "SETNAME", "a b"], 1),
        (&["CLIENT", "SETNAME"], 1),
        (&["CLIENT", "GETNAME"], 1),
        (&["CLIENT", "SETNAME", "me"], 1),
        (&["CLIENT", "GETNAME"], 1),
        (&["CLIENT", "ID", "x"], 1),
        (&["HELLO"], 1),
        (&["HELLO", "2", "SETNAME", "again"], 1),
        (&["HELLO", "2", "SETNAME", "a b"], 1),
        (&["CLIENT", "GETNAME"], 1),
        (&["UNSUBSCRIBE"], 1),
        (&["PUNSUBSCRIBE"], 1),
        (&["SUBSCRIBE", "+switch-master", "+odown"], 2),
        (&["PSUBSCRIBE", "+switch-*"], 1),
        (&["SUBSCRIBE", "+odown"], 1),
        (&["SENTINEL", "MASTERS"], 1),
        (&["ROLE"], 1),
        (&["PING"], 1),
        (&["PING", "hi"], 1),
        (&["UNSUBSCRIBE", "nope"], 1),
        (&["UNSUBSCRIBE"], 2),
        (&["PUNSUBSCRIBE"], 1),
        (&["PING"], 1),
    ];
    let mut theirs = Peer::connect(real.addr).await;
    let mut ours = Peer::connect(ours_addr).await;
    for (args, replies) in script {
        theirs.send(args).await;
        ours.send(args).await;
        let (mut expected, mut got) = (Vec::new(), Vec::new());
        for _ in 0..*replies {
            expected.push(normalize(theirs.reply().await));
            got.push(normalize(ours.reply().await));
        }
        if *replies > 1 {
            // Unsubscribing from all goes in hash-table order in Redis: compare the channels as
            // a set, and the running counts in order.
            let split = |all: &mut Vec<Value>| {
                let counts: Vec<Value> = all
                    .iter_mut()
                    .map(|v| match v {
                        Value::Array(Some(parts)) => parts.pop().unwrap(),
                        other => panic!("not a pub/sub reply: {other:?}"),
                    })
                    .collect();
                all.sort_by_key(|v| format!("{v:?}"));
                counts
            };
            assert_eq!(split(&mut got), split(&mut expected), "counts in {args:?}");
        }
        assert_eq!(got, expected, "reply to {args:?}");
    }

    // RESP3: the same bytes, including maps, nulls and pushes.
    ours.send(&["HELLO", "3"]).await;
    theirs.send(&["HELLO", "3"]).await;
    let (a, b) = (ours.resp3().await, theirs.resp3().await);
    assert!(a.starts_with(b"%6\r\n") && b.starts_with(b"%6\r\n"));
    for args in [
        &["SENTINEL", "get-master-addr-by-name", "nope"][..],
        &["SENTINEL", "get-master-addr-by-name", "georep"],
        &["CLIENT", "GETNAME"],
        &["SUBSCRIBE", "+switch-master"],
        &["PING"],
        &["ROLE"],
        &["UNSUBSCRIBE", "+switch-master"],
        &["SENTINEL", "MASTER", "nope"],
        &["SENTINEL", "SENTINELS", "georep"],
    ] {
        theirs.send(args).await;
        ours.send(args).await;
        assert_eq!(
            String::from_utf8(ours.resp3().await).unwrap(),
            String::from_utf8(theirs.resp3().await).unwrap(),
            "RESP3 reply to {args:?}"
        );
    }
    ours.send(&["SENTINEL", "MASTER", "georep"]).await;
    theirs.send(&["SENTINEL", "MASTER", "georep"]).await;
    let (a, b) = (ours.resp3().await, theirs.resp3().await);
    assert_eq!(&a[..5], &b[..5], "a map of as many fields");
    assert!(a.starts_with(b"%20\r\n"));

    // Malformed requests: the same error, then both close.
    for garbage in [
        &b"*1\r\n:5\r\n"[..],
        b"*abc\r\n",
        b"*1\r\n$-7\r\n",
        b"PING \"open\r\n",
    ] {
        let mut theirs = Peer::connect(real.addr).await;
        let mut ours = Peer::connect(ours_addr).await;
        theirs.stream.write_all(garbage).await.unwrap();
        ours.stream.write_all(garbage).await.unwrap();
        assert_eq!(
            String::from_utf8(ours.until_closed().await).unwrap(),
            String::from_utf8(theirs.until_closed().await).unwrap(),
            "reply to {:?}",
            String::from_utf8_lossy(garbage)
        );
    }

    stop.send_replace(true);
    drop((ours, theirs));
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Whether `bytes` hold exactly one complete RESP3 reply of the kinds compared above.
fn complete_resp3(bytes: &[u8]) -> bool {
    fn one(b: &[u8], at: usize) -> Option<usize> {
        if at >= b.len() {
            return None;
        }
        let end = b[at..].windows(2).position(|w| w == b"\r\n")? + at;
        let line = std::str::from_utf8(&b[at + 1..end]).ok()?;
        let next = end + 2;
        match b[at] {
            b'+' | b'-' | b':' | b'_' => Some(next),
            b'$' => {
                let n: usize = line.parse().ok()?;
                (b.len() >= next + n + 2).then_some(next + n + 2)
            }
            b'*' | b'>' | b'%' => {
                let n: usize = line.parse().ok()?;
                let n = if b[at] == b'%' { 2 * n } else { n };
                let mut pos = next;
                for _ in 0..n {
                    pos = one(b, pos)?;
                }
                Some(pos)
            }
            _ => None,
        }
    }
    one(bytes, 0) == Some(bytes.len())
}
