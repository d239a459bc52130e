//! The rendered manifests, run: each region of an example topology rendered by
//! `georep render k8s` (endpoints at the stand-in load balancers, local images), put through
//! `kubectl kustomize`, and started as a podman pod exactly as rendered (crates/podrun).
//!
//! Needs root, podman and runc (`. scripts/lib/podman.sh && podman_setup`), kubectl, and
//! redis-server / redis-cli. `GEOREP_POD_TESTS=skip` skips them, saying so; otherwise a machine
//! where containers cannot start fails them with the reason.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use resp::{Conn, Credentials, Value};

/// Writes unique keys (key = value = a sequence number) to whichever region accepts them,
/// logging each acknowledged write.
struct History {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl History {
    fn start(addrs: Vec<SocketAddr>, login: Credentials) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut conn: Option<Conn> = None;
            let mut at = 0;
            let mut i = 0u64;
            while !s.load(Ordering::SeqCst) {
                // About 500 writes a second: enough to catch a lost one, little for the disk.
                tokio::time::sleep(Duration::from_millis(2)).await;
                if conn.is_none() {
                    conn = Conn::connect(addrs[at], Some(&login), Duration::from_secs(1))
                        .await
                        .ok();
                    if conn.is_none() {
                        at = (at + 1) % addrs.len();
                        continue;
                    }
                }
                let key = format!("h:{i}");
                i += 1;
                let set = ["SET", key.as_str(), key.as_str()];
                match conn.as_mut().unwrap().cmd(&set).await {
                    Ok(_) => acked.push(key),
                    Err(_) => {
                        // READONLY, a paused write, a closed connection: try the next region.
                        conn = None;
                        at = (at + 1) % addrs.len();
                    }
                }
            }
            acked
        });
        Self { stop, task }
    }

    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// The acknowledged writes region `i` does not hold.
async fn missing(cluster: &Cluster, i: usize, acked: &[String]) -> Vec<String> {
    let mut c = cluster.admin(i).await;
    let mut lost = Vec::new();
    for chunk in acked.chunks(1000) {
        let mut args = vec!["MGET"];
        args.extend(chunk.iter().map(String::as_str));
        let Value::Array(Some(values)) = c.cmd(&args).await.unwrap() else {
            panic!("MGET did not return an array");
        };
        for (k, v) in chunk.iter().zip(values) {
            if v.text().as_deref() != Some(k.as_str()) {
                lost.push(k.clone());
            }
        }
    }
    lost
}

async fn info(cluster: &Cluster, i: usize, section: &str) -> resp::Info {
    cluster.admin(i).await.info(&[section]).await.unwrap()
}

/// Region `i`'s primary endpoint accepts a write as the `app` user, and reaches the primary on
/// Redis's Unix socket (the `redis-socket` volume, Redis's `U` client flag) when `i` is the
/// primary region, over TCP through the tunnel otherwise.
async fn endpoint_writes(cluster: &Cluster, i: usize, primary: usize) {
    let addr = cluster.pods[i].addr(k8s::pod::PRIMARY_ENDPOINT_PORT);
    let mut c = Conn::connect(addr, Some(&cluster.app_login()), Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{}'s endpoint: {e}", cluster.names[i]));
    let key = format!("through-endpoint-{i}");
    assert_eq!(
        c.cmd(&["SET", key.as_str(), "1"]).await.unwrap(),
        Value::Simple("OK".into())
    );
    let info = c.cmd(&["CLIENT", "INFO"]).await.unwrap().text().unwrap();
    let flags = info
        .split_whitespace()
        .find_map(|f| f.strip_prefix("flags="))
        .unwrap();
    assert_eq!(
        flags.contains('U'),
        i == primary,
        "{}'s endpoint: {info}",
        cluster.names[i]
    );
}

/// A write as the `app` user on `primary` reaches every other region through the tunnels.
async fn writes_replicate(cluster: &Cluster, primary: usize, key: &str) {
    let app = cluster.app_login();
    let value = format!("{key}-{}", std::process::id());
    assert_eq!(
        redis_cli(cluster.redis_addr(primary), &app, &["SET", key, &value]),
        "OK"
    );
    for i in (0..cluster.pods.len()).filter(|i| *i != primary) {
        testkit::eventually(&format!("{key} on {}", cluster.names[i]), || async {
            (redis_cli(cluster.redis_addr(i), &app, &["GET", key]) == value).then_some(())
        })
        .await;
        // The replica refuses writes, as the application sees it.
        let refused = std::process::Command::new("redis-cli")
            .env("REDISCLI_AUTH", &app.password)
            .args(["-p", &cluster.redis_addr(i).port().to_string()])
            .args(["--user", &app.user, "--no-auth-warning", "SET", key, "x"])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&refused.stdout);
        assert!(said.contains("READONLY"), "{}: {said}", cluster.names[i]);
    }
}

/// The agent container's process runs as 65532, with the pod's fsGroup, on a read-only root.
fn agent_is_unprivileged(cluster: &Cluster, i: usize) {
    let pod = &cluster.pods[i];
    let pid = pod.pid("georep-agent").unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> Vec<String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert!(field("Uid:").iter().all(|u| u == "65532"), "{status}");
    assert!(field("Gid:").iter().all(|g| g == "65532"), "{status}");
    assert!(field("Groups:").contains(&"999".to_owned()), "{status}");
    assert_eq!(field("CapEff:"), ["0000000000000000"], "{status}");
    assert_eq!(field("NoNewPrivs:"), ["1"], "{status}");
    // The root mount, as the process sees it: read-only.
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .expect("a root mount");
    let options = root.split_whitespace().nth(5).unwrap();
    assert!(options.split(',').any(|o| o == "ro"), "root mount: {root}");
    // Nothing writable but the volumes: no tmpfs podman would add on /tmp or /run. The agent
    // writes its state on /data and keeps redis.conf (in memory, 1 MiB) in the region's role.
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f[5].split(',').any(|o| o == "rw") {
            let at = f[4];
            assert!(
                at == "/data"
                    || at == "/usr/local/etc/redis"
                    || at.starts_with("/dev")
                    || at.starts_with("/proc")
                    || at.starts_with("/sys")
                    || [
                        "/etc/hosts",
                        "/etc/hostname",
                        "/etc/resolv.conf",
                        "/run/.containerenv"
                    ]
                    .contains(&at),
                "writable mount {at} in the agent: {l}"
            );
        }
    }
    let inspect = pod.inspect("georep-agent").unwrap();
    assert_eq!(inspect["HostConfig"]["ReadonlyRootfs"], true);
}

// Restarting the replica's Redis container used to hang its link for `repl-timeout` (the agent's
// `CONFIG SET replica-announce-ip` landed inside Redis's pipelined handshake; now in the file).
#[tokio::test(flavor = "multi_thread")]
async fn two_regions_run_replicate_switch_over_and_resume() {
    if !podman_or_skip("two_regions_run_replicate_switch_over_and_resume") {
        return;
    }
    let _serial = serial().await;
    let started = Instant::now();
    let cluster = Cluster::start("aws-two-regions.toml");
    let (use1, euc1) = (cluster.index("us-east-1"), cluster.index("eu-central-1"));

    // Both pods Ready: every probe of the spec answers.
    cluster.wait_ready().await;
    cluster.wait_primary("us-east-1").await;
    eprintln!(
        "both pods ready after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    writes_replicate(&cluster, use1, "hello").await;
    for i in [use1, euc1] {
        agent_is_unprivileged(&cluster, i);
    }

    // Writes the restarts below must keep.
    let addrs = vec![cluster.redis_addr(use1), cluster.redis_addr(euc1)];
    let history = History::start(addrs.clone(), cluster.app_login());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before_restarts = history.stop().await;

    // The replica's Redis, killed (SIGKILL, like the OOM killer) and restarted with its volume:
    // it resumes from its RDB (which carries the replication ID and offset) with a partial
    // resync.
    let partial = "Successful partial resynchronization with master";
    let before = info(&cluster, use1, "stats").await;
    let logged = cluster.pods[euc1].logs("redis").matches(partial).count();
    cluster.pods[euc1].restart("redis").unwrap();
    cluster.wait_ready().await;
    cluster.wait_primary("us-east-1").await;
    let resyncs = |i: &resp::Info| i.int("sync_full").unwrap() + i.int("sync_partial_ok").unwrap();
    let stats = testkit::eventually("the restarted replica resyncs", || async {
        let stats = info(&cluster, use1, "stats").await;
        (resyncs(&stats) > resyncs(&before)).then_some(stats)
    })
    .await;
    assert_eq!(stats.int("sync_full"), before.int("sync_full"), "{stats:?}");
    assert!(
        stats.int("sync_partial_ok") > before.int("sync_partial_ok"),
        "{stats:?}"
    );
    assert!(
        cluster.pods[euc1].logs("redis").matches(partial).count() > logged,
        "the replica's log does not say it resumed with a partial resync"
    );
    testkit::eventually("the restarted replica holds every write", || async {
        missing(&cluster, euc1, &before_restarts)
            .await
            .is_empty()
            .then_some(())
    })
    .await;

    // The primary's Redis, killed and restarted with its volume: every acknowledged write is
    // in its AOF, and the replica follows it again. (Redis restarting from an AOF takes a new
    // replication ID, so this resync is a full one; the test prints which it was.)
    cluster.pods[use1].restart("redis").unwrap();
    cluster.wait_ready().await;
    cluster.wait_primary("us-east-1").await;
    let stats = testkit::eventually("the replica resyncs with the restarted primary", || async {
        let stats = info(&cluster, use1, "stats").await;
        (resyncs(&stats) >= 1).then_some(stats)
    })
    .await;
    eprintln!(
        "after the primary's restart: sync_full={:?} sync_partial_ok={:?}",
        stats.int("sync_full"),
        stats.int("sync_partial_ok")
    );
    let lost = missing(&cluster, use1, &before_restarts).await;
    assert!(
        lost.is_empty(),
        "{} writes lost across the primary's restart",
        lost.len()
    );
    testkit::eventually("the replica holds every write again", || async {
        missing(&cluster, euc1, &before_restarts)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    writes_replicate(&cluster, use1, "after-restarts").await;

    // A planned switchover under load: no acknowledged write lost.
    let history = History::start(addrs, cluster.app_login());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let change = switchover(&cluster, use1, "eu-central-1");
    assert_eq!(change["to"], "eu-central-1", "{change}");
    cluster.wait_primary("eu-central-1").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = history.stop().await;
    assert!(
        acked.len() > 100,
        "only {} writes acknowledged",
        acked.len()
    );
    let lost = missing(&cluster, euc1, &acked).await;
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost",
        lost.len(),
        acked.len()
    );
    testkit::eventually("the old primary holds every acknowledged write", || async {
        missing(&cluster, use1, &acked)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    writes_replicate(&cluster, euc1, "after-switchover").await;
    eprintln!(
        "switchover: {} writes, none lost; write pause {} ms",
        acked.len(),
        change["write_pause_ms"]
    );
    eprintln!("two regions: {:.1}s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread")]
async fn three_regions_run_and_replicate_everywhere() {
    if !podman_or_skip("three_regions_run_and_replicate_everywhere") {
        return;
    }
    let _serial = serial().await;
    let started = Instant::now();
    let cluster = Cluster::start("three-regions.toml");
    cluster.wait_ready().await;
    cluster.wait_primary("us-east-1").await;
    let primary = cluster.index("us-east-1");
    writes_replicate(&cluster, primary, "hello-three").await;
    for i in 0..cluster.pods.len() {
        agent_is_unprivileged(&cluster, i);
        endpoint_writes(&cluster, i, primary).await;
    }
    // The primary serves both replicas, each through its own tunnel.
    let replication = info(&cluster, primary, "replication").await;
    assert_eq!(
        replication.int("connected_slaves"),
        Some(2),
        "{replication:?}"
    );

    // A switchover to the third region: both others follow it, nothing acknowledged is lost.
    let addrs: Vec<SocketAddr> = (0..3).map(|i| cluster.redis_addr(i)).collect();
    let history = History::start(addrs, cluster.app_login());
    tokio::time::sleep(Duration::from_millis(500)).await;
    switchover(&cluster, primary, "ap-southeast-1");
    cluster.wait_primary("ap-southeast-1").await;
    let acked = history.stop().await;
    let apse1 = cluster.index("ap-southeast-1");
    assert!(missing(&cluster, apse1, &acked).await.is_empty());
    writes_replicate(&cluster, apse1, "after-switchover-three").await;
    eprintln!("three regions: {:.1}s", started.elapsed().as_secs_f64());
}

/// After a switchover, the new primary's Redis container is killed and restarted (as the kubelet
/// restarts a container: init containers do not run again). It used to restart from the
/// ConfigMap's redis.conf, the role at render time (`appendonly no`, `replicaof` the old
/// primary): it ignored the AOF it was writing and every acknowledged write since was lost, in
/// both regions (issue 13). Now the agent rewrites redis.conf on every change of primary in a
/// volume Redis reads, so Redis restarts as the primary, fenced, from its AOF.
#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_primary_restarted_keeps_every_acknowledged_write() {
    if !podman_or_skip("a_promoted_primary_restarted_keeps_every_acknowledged_write") {
        return;
    }
    let _serial = serial().await;
    let cluster = Cluster::start("aws-two-regions.toml");
    let (use1, euc1) = (cluster.index("us-east-1"), cluster.index("eu-central-1"));
    cluster.wait_ready().await;
    cluster.wait_primary("us-east-1").await;
    switchover(&cluster, use1, "eu-central-1");
    cluster.wait_primary("eu-central-1").await;
    let addrs = vec![cluster.redis_addr(use1), cluster.redis_addr(euc1)];
    let history = History::start(addrs, cluster.app_login());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let acked = history.stop().await;
    cluster.pods[euc1].restart("redis").unwrap();
    cluster.wait_ready().await;
    cluster.wait_primary("eu-central-1").await;
    let lost = missing(&cluster, euc1, &acked).await;
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost",
        lost.len(),
        acked.len()
    );
}

/// With `[relay]`: each pod runs its relay (store on its own volume), the replica region's Redis
/// replicates from its local relay, fed through the relay tunnels (the load balancers' second
/// port), and a planned switchover through the relays loses no acknowledged write and causes no
/// full resync.
#[tokio::test(flavor = "multi_thread")]
async fn two_regions_replicate_and_switch_over_through_the_relays() {
    if !podman_or_skip("two_regions_replicate_and_switch_over_through_the_relays") {
        return;
    }
    let _serial = serial().await;
    let started = Instant::now();
    let cluster = Cluster::start_with("aws-two-regions.toml", "\n[relay]\nretention = \"1GiB\"\n");
    let (use1, euc1) = (cluster.index("us-east-1"), cluster.index("eu-central-1"));
    cluster.wait_ready().await;
    cluster.wait_primary("us-east-1").await;
    writes_replicate(&cluster, use1, "hello-relay").await;
    // The replica's Redis follows the relay in its own pod; the primary's only replica is its
    // relay.
    let replication = info(&cluster, euc1, "replication").await;
    assert_eq!(
        replication.int("master_port"),
        Some(i64::from(k8s::pod::RELAY_PORT)),
        "{replication:?}"
    );
    let relays = |i: usize| -> Option<serde_json::Value> {
        let out = cluster.georep_in_pod(i, &["status", "--json"]).ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v["regions"]
            .as_array()?
            .iter()
            .find(|r| r["name"] == cluster.names[i].as_str())
            .map(|r| r["relay"].clone())
    };
    testkit::eventually(
        "the replica region's relay streams from us-east-1's",
        || async {
            let r = relays(euc1)?;
            (r["upstream"] == "us-east-1" && r["upstream_connected"] == true).then_some(())
        },
    )
    .await;
    let full = |s: &resp::Info| s.int("sync_full").unwrap();
    let fulls =
        full(&info(&cluster, use1, "stats").await) + full(&info(&cluster, euc1, "stats").await);

    let addrs = vec![cluster.redis_addr(use1), cluster.redis_addr(euc1)];
    let history = History::start(addrs, cluster.app_login());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let change = switchover(&cluster, use1, "eu-central-1");
    assert_eq!(change["to"], "eu-central-1", "{change}");
    cluster.wait_primary("eu-central-1").await;
    testkit::eventually("the relays re-pointed", || async {
        let p = relays(euc1)?;
        let r = relays(use1)?;
        (p["upstream"] == "redis"
            && r["upstream"] == "eu-central-1"
            && r["upstream_connected"] == true)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = history.stop().await;
    assert!(
        acked.len() > 100,
        "only {} writes acknowledged",
        acked.len()
    );
    let lost = missing(&cluster, euc1, &acked).await;
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost",
        lost.len(),
        acked.len()
    );
    testkit::eventually("the old primary holds every acknowledged write", || async {
        missing(&cluster, use1, &acked)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    let after =
        full(&info(&cluster, use1, "stats").await) + full(&info(&cluster, euc1, "stats").await);
    assert_eq!(after, fulls, "a full resync through the relays");
    writes_replicate(&cluster, euc1, "after-relay-switchover").await;
    eprintln!(
        "relays: {} writes through a switchover, none lost; {:.1}s",
        acked.len(),
        started.elapsed().as_secs_f64()
    );
}
