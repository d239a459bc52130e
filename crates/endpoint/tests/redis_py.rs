//! A plain redis-py client through the endpoint to real redis-servers: MULTI/EXEC, pub/sub,
//! BLPOP, HELLO 3 and EVAL pass untouched to a primary on its Unix socket (the local Redis); a
//! route change closes the old connection and the client lands on the new primary (over TCP, as
//! through a tunnel); with no route, a new client is held then refused with an error redis-py
//! treats as a transient connection error (and retries).

use std::time::Duration;

use endpoint::metrics::Refusal;
use endpoint::{EndpointMetrics, Limits, Route, Target};
use prometheus_client::registry::Registry;
use testkit::python::Script;
use testkit::redis::Redis;
use tokio::net::TcpListener;
use tokio::sync::watch;

const SCRIPT: &str = r#"
import json, sys, threading, time
import redis

host, port = sys.argv[1], int(sys.argv[2])

def say(step, **kw):
    print(json.dumps(dict(step=step, **kw)), flush=True)

def wait(word):
    line = sys.stdin.readline().strip()
    assert line == word, line

r = redis.Redis(host=host, port=port, protocol=3, socket_timeout=10)
hello = r.execute_command("HELLO")
proto = hello[b"proto"] if b"proto" in hello else hello["proto"]

pipe = r.pipeline(transaction=True)
pipe.set("n", 1).incr("n").incr("n")
multi = pipe.execute()

script = r.eval("return redis.call('incrby', KEYS[1], ARGV[1])", 1, "n", 10)

publisher = redis.Redis(host=host, port=port, socket_timeout=10)
sub = r.pubsub()
sub.subscribe("news")
assert sub.get_message(timeout=5)["type"] == "subscribe"
publisher.publish("news", "hello")
message = sub.get_message(timeout=5)
sub.close()

popped = {}
def pop():
    popped["v"] = redis.Redis(host=host, port=port, socket_timeout=10).blpop("queue", timeout=10)
t = threading.Thread(target=pop)
t.start()
time.sleep(0.2)
publisher.rpush("queue", "job")
t.join()

# Redis flags a client on its Unix socket with U.
unix = "U" in r.client_info()["flags"]

say("ok", proto=proto, unix=unix, multi=[bool(x) if i == 0 else x for i, x in enumerate(multi)],
    script=script, message=message["data"].decode(), popped=[x.decode() for x in popped["v"]],
    server_port=r.info("server")["tcp_port"])

wait("switched")
errors = []
deadline = time.time() + 60
while True:
    try:
        r.set("after", "switch")
        break
    except redis.ConnectionError as e:
        errors.append(str(e))
        assert time.time() < deadline, errors
        time.sleep(0.05)
say("followed", server_port=r.info("server")["tcp_port"], errors=len(errors),
    unix="U" in r.client_info()["flags"])

wait("fenced")
started = time.time()
try:
    redis.Redis(host=host, port=port, socket_timeout=10).ping()
    say("refused", error=None)
except redis.exceptions.BusyLoadingError as e:
    say("refused", error=str(e), kind="BusyLoadingError",
        is_connection_error=isinstance(e, redis.ConnectionError), seconds=time.time() - started)
"#;

#[tokio::test]
async fn redis_py_through_the_endpoint() {
    let first = Redis::start_with_socket().await;
    let second = Redis::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (route, route_rx) = watch::channel(Route::Primary {
        target: Target::Unix(first.socket.clone().unwrap()),
        epoch: 1,
    });
    let (stop, stop_rx) = watch::channel(false);
    let metrics = EndpointMetrics::register(&mut Registry::default());
    let limits = Limits {
        hold: Duration::from_millis(800),
        ..Limits::default()
    };
    let server = tokio::spawn(endpoint::serve(
        listener,
        route_rx,
        limits,
        metrics.clone(),
        stop_rx,
    ));

    let mut py = Script::start(SCRIPT, &["127.0.0.1", &addr.port().to_string()]);
    let ok = py.step("ok").await;
    assert_eq!(ok["proto"], 3, "HELLO 3 passed through");
    assert_eq!(ok["multi"], serde_json::json!([true, 2, 3]));
    assert_eq!(ok["script"], 13);
    assert_eq!(ok["message"], "hello");
    assert_eq!(ok["popped"], serde_json::json!(["queue", "job"]));
    assert_eq!(ok["server_port"], first.addr.port());
    assert_eq!(ok["unix"], true, "reached the primary on its Unix socket");

    route.send_replace(Route::Primary {
        target: Target::Tcp(second.addr),
        epoch: 2,
    });
    py.send("switched").await;
    let followed = py.step("followed").await;
    assert_eq!(followed["server_port"], second.addr.port());
    assert_eq!(followed["unix"], false, "the new primary over TCP");
    assert_eq!(second.get("after").await.as_deref(), Some("switch"));
    assert_eq!(first.get("after").await, None);
    assert!(metrics.route_closes() >= 1);

    route.send_replace(Route::Unavailable {
        reason: "switchover in progress".into(),
    });
    py.send("fenced").await;
    let refused = py.step("refused").await;
    assert_eq!(
        refused["error"],
        "georep: no primary known (switchover in progress)"
    );
    assert_eq!(refused["is_connection_error"], true);
    assert!(refused["seconds"].as_f64().unwrap() >= 0.7, "{refused}");
    // redis-py's default retry policy retried the refusal: LOADING is a transient error to it.
    assert!(metrics.refused(Refusal::NoPrimary) >= 2);
    py.finish().await;

    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
