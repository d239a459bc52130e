//! The real redis-py `Sentinel` client against our Sentinel port and two real redis-servers:
//! discovery with sentinel auth (RESP2 and RESP3), writes through `master_for`, a change of
//! primary followed by the client (old primary demoted → READONLY → re-discovery), and
//! `+switch-master` received by a redis-py pub/sub subscriber.

use std::time::Duration;

use prometheus_client::registry::Registry;
use sentinel::{Addr, Credentials, Limits, PeerSentinel, SentinelId, SentinelMetrics, View};
use testkit::python::Script;
use testkit::redis::Redis;
use tokio::net::TcpListener;
use tokio::sync::watch;

const SCRIPT: &str = r#"
import json, sys, time
import redis
from redis.sentinel import Sentinel, MasterNotFoundError

host, port, user, password, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]

def say(step, **kw):
    print(json.dumps(dict(step=step, **kw)), flush=True)

def wait(word):
    line = sys.stdin.readline().strip()
    assert line == word, line

auth = dict(username=user, password=password, socket_timeout=5)
sentinel = Sentinel([(host, port)], sentinel_kwargs=auth, socket_timeout=5)
master = sentinel.discover_master(name)
replicas = sentinel.discover_slaves(name)
state = sentinel.sentinels[0].sentinel_masters()[name]
peers = sentinel.sentinels[0].sentinel_sentinels(name)
say("discover", master=list(master), replicas=[list(r) for r in replicas],
    is_master=state["is_master"], is_sdown=state["is_sdown"], is_odown=state["is_odown"],
    epoch=state["config-epoch"], others=state["num-other-sentinels"],
    peers=[p["ip"] + ":" + str(p["port"]) for p in peers])

resp3 = Sentinel([(host, port)], sentinel_kwargs=dict(auth, protocol=3), socket_timeout=5)
say("resp3", master=list(resp3.discover_master(name)),
    flags=sorted(resp3.sentinels[0].sentinel_master(name)["flags"]))

try:
    Sentinel([(host, port)], sentinel_kwargs=dict(auth, password="wrong")).discover_master(name)
    say("wrongpass", error=None)
except MasterNotFoundError as e:
    say("wrongpass", error=str(e))

try:
    sentinel.discover_master("not-" + name)
    say("unknown", error=None)
except MasterNotFoundError as e:
    say("unknown", error=str(e))

client = sentinel.master_for(name, socket_timeout=5)
client.set("k1", "first")
say("wrote", addr=list(client.connection_pool.master_address))

pubsub = redis.Redis(host=host, port=port, **auth).pubsub()
pubsub.subscribe("+switch-master")
confirm = pubsub.get_message(timeout=5)
say("subscribed", confirm=confirm["type"])
wait("switched")

message = None
deadline = time.time() + 60
while message is None and time.time() < deadline:
    m = pubsub.get_message(timeout=1)
    if m and m["type"] == "message":
        message = m["data"].decode()
say("switch-master", message=message)

errors = []
deadline = time.time() + 60
while True:
    try:
        client.set("k2", "second")
        break
    except (redis.ConnectionError, redis.ReadOnlyError) as e:
        errors.append(type(e).__name__ + ": " + str(e))
        assert time.time() < deadline, errors
        time.sleep(0.05)
say("followed", addr=list(client.connection_pool.master_address), errors=errors[:3])

wait("fenced")
try:
    sentinel.discover_master(name)
    say("fenced", error=None)
except MasterNotFoundError as e:
    say("fenced", error=str(e))
"#;

#[tokio::test]
async fn redis_py_sentinel_client_discovers_writes_and_follows_a_change_of_primary() {
    let first = Redis::start().await;
    let second = Redis::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = Addr::new("127.0.0.1", testkit::free_addr().port());
    let (view_tx, view_rx) = watch::channel(View {
        master_name: "georep".into(),
        epoch: 5,
        primary_known: true,
        primary: first.addr.into(),
        replicas: vec![second.addr.into()],
        myid: SentinelId::derive("georep/us-east-1"),
        sentinels: vec![PeerSentinel {
            id: SentinelId::derive("georep/eu-central-1"),
            addr: peer.clone(),
        }],
    });
    let (stop, stop_rx) = watch::channel(false);
    let metrics = SentinelMetrics::register(&mut Registry::default());
    let creds = Credentials {
        user: "sentinel-app".into(),
        password: "correct horse".into(),
    };
    let server = tokio::spawn(sentinel::serve(
        listener,
        view_rx,
        Some(creds.clone()),
        Limits::default(),
        metrics.clone(),
        stop_rx,
    ));

    let port = addr.port().to_string();
    let mut py = Script::start(
        SCRIPT,
        &["127.0.0.1", &port, &creds.user, &creds.password, "georep"],
    );
    let d = py.step("discover").await;
    assert_eq!(
        d["master"],
        serde_json::json!(["127.0.0.1", first.addr.port()])
    );
    assert_eq!(
        d["replicas"],
        serde_json::json!([["127.0.0.1", second.addr.port()]])
    );
    assert_eq!(d["is_master"], true);
    assert_eq!(d["is_sdown"], false);
    assert_eq!(d["is_odown"], false);
    assert_eq!(d["epoch"], 5);
    assert_eq!(d["others"], 1);
    assert_eq!(d["peers"], serde_json::json!([peer.to_string()]));

    let r3 = py.step("resp3").await;
    assert_eq!(
        r3["master"],
        serde_json::json!(["127.0.0.1", first.addr.port()])
    );
    assert_eq!(r3["flags"], serde_json::json!(["master"]));

    let wrong = py.step("wrongpass").await;
    let wrong = wrong["error"].as_str().unwrap();
    // redis-py reports the WRONGPASS reply as an AuthenticationError.
    assert!(wrong.contains("AuthenticationError"), "{wrong}");
    assert!(!wrong.contains("correct horse"), "the password never shows");
    let unknown = py.step("unknown").await;
    assert!(unknown["error"]
        .as_str()
        .unwrap()
        .contains("No master found"));

    let wrote = py.step("wrote").await;
    assert_eq!(
        wrote["addr"],
        serde_json::json!(["127.0.0.1", first.addr.port()])
    );
    assert_eq!(first.get("k1").await.as_deref(), Some("first"));
    py.step("subscribed").await;

    // The change of primary, as georep carries it out: the new primary is promoted, the old one
    // demoted (so its clients get READONLY), then the view moves.
    let mut old = first.conn().await;
    old.cmd(&["REPLICAOF", "127.0.0.1", &second.addr.port().to_string()])
        .await
        .unwrap();
    view_tx.send_modify(|v| {
        v.epoch = 6;
        v.primary = second.addr.into();
        v.replicas = vec![first.addr.into()];
    });
    py.send("switched").await;

    let sm = py.step("switch-master").await;
    assert_eq!(
        sm["message"],
        format!(
            "georep 127.0.0.1 {} 127.0.0.1 {}",
            first.addr.port(),
            second.addr.port()
        )
    );
    let followed = py.step("followed").await;
    assert_eq!(
        followed["addr"],
        serde_json::json!(["127.0.0.1", second.addr.port()])
    );
    assert_eq!(second.get("k2").await.as_deref(), Some("second"));

    // No primary known: redis-py sees s_down/o_down and refuses to hand out an address.
    view_tx.send_modify(|v| v.primary_known = false);
    py.send("fenced").await;
    let fenced = py.step("fenced").await;
    assert!(
        fenced["error"]
            .as_str()
            .unwrap()
            .contains("No master found"),
        "{fenced}"
    );
    py.finish().await;

    assert!(metrics.rejected("auth_failed") >= 1);
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
