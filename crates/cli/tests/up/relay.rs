//! `georep up` with `[relay]`: a replication relay in every region, in the agent. A WAN cut that
//! overruns Redis's own backlog heals without a full resync; 20 planned switchovers through the
//! relays lose no acknowledged write and cause no full resync; a forced promotion after the
//! primary region is killed keeps every write that reached the survivor (redis-py writing); a
//! stopped and restarted `georep up` resumes from the relays' disks with partial resyncs; a
//! replica region's Redis that lost its disk full-syncs from its local relay, not over the WAN.

use std::time::{Duration, Instant};

use resp::Value;

use crate::failover::{assert_acked_everywhere, full_syncs, missing, History};
use crate::harness::*;

const REGIONS: [&str; 2] = ["us-east-1", "eu-central-1"];

/// The smallest backlog georep configures (16 MiB: the write rate × budget rule's floor), and a
/// relay in every region.
const RELAY_TOPOLOGY: &str = "[redis]\nwrite_rate = \"1KB/s\"\noutage_budget = \"1s\"\n\
                              [relay]\nretention = \"1GiB\"\n";

const SERVED_FULL: &str = "georep_relay_syncs_served_total{kind=\"full\"}";
const SERVED_PARTIAL: &str = "georep_relay_syncs_served_total{kind=\"partial\"}";
const UPSTREAM_FULL: &str = "georep_relay_upstream_full_syncs_total";

/// Planned switchovers in a row (each one a direction: ten round trips).
const SWITCHOVERS: usize = 20;

/// Relay full syncs, taken and served, over both regions.
async fn relay_fulls(env: &Env) -> i64 {
    let mut n = 0;
    for i in 0..2 {
        n += metric(env, i, UPSTREAM_FULL).await + metric(env, i, SERVED_FULL).await;
    }
    n
}

async fn int(env: &Env, i: usize, section: &str, field: &str) -> i64 {
    let info = env.admin(i).await.info(&[section]).await.unwrap();
    info.int(field)
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
}

/// A Prometheus sample of region `i`'s agent, 0 when absent.
async fn metric(env: &Env, i: usize, series: &str) -> i64 {
    let body = env.metrics(i).await;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Region 1 holds what region 0 holds: the same key count, every small key, every big value's
/// length and first and last bytes, and every 20th big value in full. (Comparing every 256 KiB
/// value in full through the test's client takes longer than the rest of the test.)
async fn same_data(env: &Env, big: usize) {
    let (mut p, mut r) = (env.admin(0).await, env.admin(1).await);
    assert_eq!(
        p.cmd(&["DBSIZE"]).await.unwrap(),
        r.cmd(&["DBSIZE"]).await.unwrap()
    );
    let small: Vec<String> = (0..200).map(|i| format!("pre:{i}")).collect();
    let mut mget = vec!["MGET"];
    mget.extend(small.iter().map(String::as_str));
    assert_eq!(p.cmd(&mget).await.unwrap(), r.cmd(&mget).await.unwrap());
    for i in 0..big {
        let key = format!("big:{i}");
        let mut probes = vec![
            vec!["STRLEN", key.as_str()],
            vec!["GETRANGE", key.as_str(), "0", "63"],
            vec!["GETRANGE", key.as_str(), "-64", "-1"],
        ];
        if i % 20 == 0 {
            probes.push(vec!["GET", key.as_str()]);
        }
        for probe in probes {
            let want = p.cmd(&probe).await.unwrap();
            assert!(
                !matches!(want, Value::Bulk(None)),
                "{key} missing on the primary"
            );
            assert_eq!(want, r.cmd(&probe).await.unwrap(), "{probe:?} differs");
        }
    }
}

async fn start() -> Env {
    let env = Env::start_with(&REGIONS, 5, RELAY_TOPOLOGY).await;
    env.wait_primary(0).await;
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_that_overruns_the_redis_backlog_heals_through_the_relays_without_a_full_sync() {
    let env = start().await;
    let mut admin = env.admin(0).await;
    let Value::Array(Some(kv)) = admin
        .cmd(&["CONFIG", "GET", "repl-backlog-size"])
        .await
        .unwrap()
    else {
        panic!("CONFIG GET failed")
    };
    let backlog: i64 = kv[1].text().unwrap().parse().unwrap();
    assert_eq!(backlog, 16 << 20, "the test topology's backlog");
    // The replica region's Redis follows its local relay; the primary's only replica is its relay.
    let ports = env.cluster.topology().local.ports(1);
    assert_eq!(
        int(&env, 1, "replication", "master_port").await,
        i64::from(ports.relay)
    );
    let mut app = env.app(0).await;
    for i in 0..200 {
        app.cmd(&["SET", &format!("pre:{i}"), "x"]).await.unwrap();
    }
    env.wait_converged_with_primary().await;
    let (full_before, _) = env.primary_syncs().await;
    let relay_full_before = metric(&env, 1, "georep_relay_upstream_full_syncs_total").await;
    let relay_served_full_before = metric(&env, 1, SERVED_FULL).await;

    env.cluster.set_cut(0, 1, true);
    env.wait_link(1, "down").await;
    let offset_before = int(&env, 0, "replication", "master_repl_offset").await;
    // Six times the backlog, in 256 KiB values that differ from each other.
    let value_len = 256 << 10;
    let count = (6 * backlog as usize).div_ceil(value_len);
    for i in 0..count {
        let value = format!("{i:08}-").repeat(value_len / 9);
        app.cmd(&["SET", &format!("big:{i}"), &value])
            .await
            .unwrap();
    }
    let written = int(&env, 0, "replication", "master_repl_offset").await - offset_before;
    assert!(
        written >= 5 * backlog,
        "wrote only {written} bytes of stream over a {backlog}-byte backlog"
    );
    // Redis alone could not resume this replica: its backlog no longer reaches back that far.
    let backlog_first = int(&env, 0, "replication", "repl_backlog_first_byte_offset").await;
    assert!(
        backlog_first > offset_before + 1,
        "the backlog still holds the cut's start"
    );

    let healed = Instant::now();
    env.cluster.set_cut(0, 1, false);
    testkit::eventually("the replica region caught up", || async {
        let p = int(&env, 0, "replication", "master_repl_offset").await;
        (int(&env, 1, "replication", "slave_repl_offset").await >= p).then_some(())
    })
    .await;
    let caught_up = healed.elapsed();
    same_data(&env, count).await;
    eprintln!(
        "relay: {written} bytes of stream during the cut over a {backlog}-byte backlog \
         ({:.1}×), caught up {caught_up:?} after the heal",
        written as f64 / backlog as f64
    );
    let (full_after, _) = env.primary_syncs().await;
    assert_eq!(
        full_after, full_before,
        "the primary served a full resync (sync_full {full_before} → {full_after})"
    );
    assert_eq!(
        metric(&env, 1, "georep_relay_upstream_full_syncs_total").await,
        relay_full_before,
        "the replica region's relay took a full resync from the primary region's relay"
    );
    assert_eq!(
        metric(&env, 1, SERVED_FULL).await,
        relay_served_full_before,
        "the replica region's relay served its Redis a full resync"
    );
    // `/status`: the outage the replica region's relay can still absorb, once a round has seen
    // it caught up.
    let s = testkit::eventually("the relay's status caught up", || async {
        let s = env.try_status(1).await?;
        let relay = &s["relay"];
        (s["link"] == "up"
            && relay["upstream_connected"] == true
            && relay["disk_bytes"].as_u64()? >= written as u64)
            .then_some(s)
    })
    .await;
    let relay = &s["relay"];
    assert_eq!(relay["upstream"], "us-east-1", "{s}");
    assert!(relay["horizon_seconds"].is_u64(), "{s}");
    assert!(
        relay["oldest_offset"].as_u64().unwrap() <= offset_before as u64,
        "{s}"
    );
    assert_eq!(relay["retention"], "1073741824B", "{s}");
    assert_eq!(env.status(0).await["relay"]["upstream"], "redis");
    // `georep status` shows the relays and their horizon under the regions.
    let out = georep(&["status", &env.topology.display().to_string()]).await;
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let relays: Vec<&str> = shown
        .lines()
        .skip_while(|l| !l.starts_with("RELAY"))
        .collect();
    assert_eq!(relays.len(), 3, "{shown}");
    assert!(
        relays[1].starts_with("us-east-1") && relays[1].contains("redis"),
        "{shown}"
    );
    assert!(
        relays[2].contains("us-east-1") && relays[2].contains("yes"),
        "{shown}"
    );
    // Retention, then how the stream crosses the WAN (no `compression` in this topology).
    assert!(
        relays[2].contains("1.0GiB") && relays[2].ends_with("plain"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn planned_switchovers_through_the_relays_lose_nothing_and_never_full_sync() {
    let env = start().await;
    let history = History::start(
        (0..2).map(|i| env.redis_addr(i)).collect(),
        env.cluster.app_login(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fulls = full_syncs(&env, 2).await;
    let relay_fulls_before = relay_fulls(&env).await;
    let started = Instant::now();
    let mut primary = 0;
    for n in 0..SWITCHOVERS {
        let to = 1 - primary;
        let out = env.failover(to, "5s").await;
        assert!(
            out.status.success(),
            "switchover {n} to {}: {}",
            REGIONS[to],
            text(&out)
        );
        primary = to;
        env.wait_primary(primary).await;
        // The relays follow: the new primary region's from its Redis, the other from it.
        testkit::eventually("relays re-pointed", || async {
            let p = env.try_status(primary).await?;
            let r = env.try_status(1 - primary).await?;
            (p["relay"]["upstream"] == "redis"
                && r["relay"]["upstream"] == REGIONS[primary]
                && r["relay"]["upstream_connected"] == true)
                .then_some(())
        })
        .await;
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = history.stop().await;
    eprintln!(
        "relay: {SWITCHOVERS} switchovers through the relays in {took:?} ({:?} each, relays \
         re-pointed included)",
        took / SWITCHOVERS as u32
    );
    assert!(
        acked.len() > 10_000,
        "only {} writes acknowledged",
        acked.len()
    );
    assert_acked_everywhere(&env, primary, 1 - primary, &acked).await;
    // PSYNC2 through the relays: every Redis continued under the new IDs.
    assert_eq!(
        full_syncs(&env, 2).await,
        fulls,
        "a switchover caused a full resync"
    );
    assert_eq!(
        relay_fulls(&env).await,
        relay_fulls_before,
        "a relay took or served a full resync"
    );
    let mut replids = Vec::new();
    for i in 0..2 {
        let info = env.admin(i).await.info(&["replication"]).await.unwrap();
        replids.push(info.get("master_replid").unwrap().to_owned());
    }
    assert_eq!(replids[0], replids[1]);
}

/// redis-py writing sequenced keys one by one (`py:N` = `py:N`) to the first region that takes
/// them, moving to the next on any error (READONLY, NOREPLICAS, a dead server). stdin: `count`
/// → how many were acknowledged and by which region the last; `stop` → every acknowledged key
/// with the region (index into the ports) that acknowledged it.
const PY_WRITER: &str = r#"
import json, sys, threading, time
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

ports = [int(p) for p in sys.argv[1].split(",")]
pw = open(sys.argv[2]).read().strip()
acked = []
errors = {"n": 0, "last": ""}
run = {"on": True}

def writer():
    at, seq, r = 0, 0, None
    while run["on"]:
        if r is None:
            # No retries inside redis-py: on any error the writer moves to the next region.
            r = redis.Redis(host="127.0.0.1", port=ports[at], username="app", password=pw,
                            socket_timeout=2, socket_connect_timeout=1,
                            retry=Retry(NoBackoff(), 0))
        k = f"py:{seq}"
        seq += 1
        try:
            ok = r.set(k, k) is True
        except Exception as e:
            ok = False
            errors["n"] += 1
            errors["last"] = f"{ports[at]}: {e!r}"
        if ok:
            acked.append([k, at])
        else:
            r.close()
            r = None
            at = (at + 1) % len(ports)
            time.sleep(0.005)

t = threading.Thread(target=writer)
t.start()
print(json.dumps({"step": "started"}))
for line in sys.stdin:
    word = line.strip()
    if word == "count":
        last = acked[-1] if acked else None
        print(json.dumps({"step": "count", "acked": len(acked), "last": last, "errors": errors}))
    elif word == "stop":
        run["on"] = False
        t.join()
        print(json.dumps({"step": "stopped", "acked": acked}))
        break
"#;

/// Asks the writer how far it got: (acknowledged writes, the last key and its region).
async fn count(py: &mut testkit::python::Script) -> (u64, Option<(String, u64)>) {
    py.send("count").await;
    let v = py.step("count").await;
    let last = v["last"]
        .as_array()
        .map(|l| (l[0].as_str().unwrap().to_owned(), l[1].as_u64().unwrap()));
    (v["acked"].as_u64().unwrap(), last)
}

/// Which of `keys` region `i` holds (each key's value is the key).
async fn present(env: &Env, i: usize, keys: &[String]) -> Vec<bool> {
    let lost = missing(env, i, keys).await;
    let lost: std::collections::HashSet<&String> = lost.iter().collect();
    keys.iter().map(|k| !lost.contains(k)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forced_promotion_through_the_relays_keeps_every_write_that_reached_the_survivor() {
    let env = start().await;
    let topology = env.topology.display().to_string();
    let password = env.cluster.layout().secrets().join("app.password");
    let ports = format!("{},{}", env.redis_addr(0).port(), env.redis_addr(1).port());
    let mut py = testkit::python::Script::start(PY_WRITER, &[&ports, password.to_str().unwrap()]);
    py.step("started").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // A write known to have crossed both relays before the primary region dies.
    let (_, last) = count(&mut py).await;
    let (mark, at) = last.expect("no write acknowledged");
    assert_eq!(at, 0, "the first writes go to the primary");
    testkit::eventually("the mark reached the replica region", || async {
        let v = env.admin(1).await.cmd(&["GET", &mark]).await.ok()?;
        (v.text().as_deref() == Some(mark.as_str())).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // kill -9 of us-east-1's Redis and agent (its relay with it), under the writes.
    env.cluster.kill_region(0).await;
    let t = Instant::now();
    let out = georep(&["promote", REGIONS[1], "--force", &topology]).await;
    assert!(out.status.success(), "{}", text(&out));
    let promoted = t.elapsed();
    // Writes resume: the writer finds eu-central-1 writable.
    loop {
        if count(&mut py).await.1.is_some_and(|(_, at)| at == 1) {
            break;
        }
        assert!(
            t.elapsed() < testkit::patience(),
            "writes did not resume on the promoted region"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    py.send("stop").await;
    let v = py.step("stopped").await;
    py.finish().await;
    let acked: Vec<(String, u64)> = v["acked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a[0].as_str().unwrap().to_owned(), a[1].as_u64().unwrap()))
        .collect();
    let by = |region: u64| -> Vec<String> {
        acked
            .iter()
            .filter(|(_, r)| *r == region)
            .map(|(k, _)| k.clone())
            .collect()
    };
    let (before, after) = (by(0), by(1));
    assert!(
        after.len() > 100,
        "only {} writes after the promotion",
        after.len()
    );
    // One writer, one connection: the stream carried the primary's writes in order, so the
    // survivor holds a prefix of them, with no hole, reaching at least the mark.
    let held = present(&env, 1, &before).await;
    let reached = held.iter().rposition(|h| *h).map_or(0, |i| i + 1);
    let holes: Vec<&String> = before[..reached]
        .iter()
        .zip(&held)
        .filter(|(_, h)| !**h)
        .map(|(k, _)| k)
        .collect();
    assert!(
        holes.is_empty(),
        "{} writes acknowledged before the kill are missing below the last one that reached \
         eu-central-1, e.g. {:?}",
        holes.len(),
        &holes[..holes.len().min(5)]
    );
    let mark_at = before.iter().position(|k| *k == mark).unwrap();
    assert!(reached > mark_at, "the mark {mark} is gone");
    let lost = missing(&env, 1, &after).await;
    assert!(
        lost.is_empty(),
        "{} writes after the promotion lost",
        lost.len()
    );
    eprintln!(
        "relay: forced promotion: `promote --force` took {promoted:?}, redis-py's writes resumed \
         {resumed:?} after it started; {} of {} writes acknowledged by the killed primary \
         reached the survivor (any others were in flight), {} after",
        reached,
        before.len(),
        after.len()
    );

    // The old primary region comes back as a replica through the relays and converges.
    env.cluster.start_region(0).await.unwrap();
    env.wait_primary(1).await;
    let survivor: Vec<String> = before[..reached].iter().chain(&after).cloned().collect();
    testkit::eventually(
        "the returned region holds the survivor's writes",
        || async { missing(&env, 0, &survivor).await.is_empty().then_some(()) },
    )
    .await;
    let unreached: Vec<String> = before[reached..].to_vec();
    let resurrected = present(&env, 0, &unreached).await;
    assert!(
        !resurrected.contains(&true),
        "the returned region kept writes the survivor never had"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_up_resumes_from_the_relays_disks_with_partial_resyncs() {
    let env = start().await;
    let topology = env.topology.display().to_string();
    // `georep link list`: each region pair's two streams, told apart.
    let out = georep(&["link", "list", &topology]).await;
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let lines: Vec<&str> = shown.lines().collect();
    assert!(lines[0].contains("STREAM"), "{shown}");
    for (from, to) in [(REGIONS[0], REGIONS[1]), (REGIONS[1], REGIONS[0])] {
        for stream in ["redis", "relay"] {
            let n = lines
                .iter()
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() == 6 && f[..4] == [from, to, stream, "up"]
                })
                .count();
            assert_eq!(n, 1, "{from} → {to} {stream}: {shown}");
        }
    }
    let mut app = env.app(0).await;
    for i in 0..2000 {
        app.cmd(&["SET", &format!("before:{i}"), "x"])
            .await
            .unwrap();
    }
    env.wait_converged_with_primary().await;
    // Cut: both streams of the pair are cut, and the JSON says which is which.
    let cut = georep(&["link", "cut", REGIONS[0], REGIONS[1], &topology]).await;
    assert!(cut.status.success(), "{}", text(&cut));
    let out = georep(&["link", "list", "--json", &topology]).await;
    assert!(out.status.success(), "{}", text(&out));
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let links = links.as_array().unwrap();
    assert_eq!(links.len(), 4, "{links:?}");
    for stream in ["redis", "relay"] {
        let of: Vec<_> = links.iter().filter(|l| l["stream"] == stream).collect();
        assert_eq!(of.len(), 2, "{links:?}");
        assert!(of.iter().all(|l| l["cut"] == true), "{links:?}");
    }
    assert!(links
        .iter()
        .any(|l| l["stream"] == "relay" && l["bytes_up"].as_u64() > Some(0)));
    let heal = georep(&["link", "heal", REGIONS[0], REGIONS[1], &topology]).await;
    assert!(heal.status.success(), "{}", text(&heal));
    env.wait_link(1, "up").await;

    let env = env.restart().await;
    env.wait_primary(0).await;
    let mut app = env.app(0).await;
    for i in 0..500 {
        app.cmd(&["SET", &format!("after:{i}"), "x"]).await.unwrap();
    }
    env.wait_converged_with_primary().await;
    // Counters start again with the processes: any full sync since the restart would show.
    for i in 0..2 {
        let info = env.admin(i).await.info(&["stats"]).await.unwrap();
        assert_eq!(
            info.int("sync_full"),
            Some(0),
            "region {i} served a full resync"
        );
        assert_eq!(
            metric(&env, i, UPSTREAM_FULL).await,
            0,
            "region {i}'s relay"
        );
        assert_eq!(metric(&env, i, SERVED_FULL).await, 0, "region {i}'s relay");
    }
    // The primary's relay resumed from its disk (a partial resync from the primary's Redis),
    // the replica region's relay served its Redis a partial one.
    let info = env.admin(0).await.info(&["stats"]).await.unwrap();
    assert!(info.int("sync_partial_ok").unwrap() >= 1, "{info:?}");
    assert!(metric(&env, 1, SERVED_PARTIAL).await >= 1);
    assert!(metric(&env, 0, SERVED_PARTIAL).await >= 1);
}

/// Waits until region 1's Redis has every byte of region 0's stream (offsets only: comparing
/// megabytes of values through the test's client is slow, see [`same_data`]).
async fn replica_caught_up(env: &Env) {
    testkit::eventually("the replica region caught up", || async {
        let p = env.admin(0).await.info(&["replication"]).await.ok()?;
        let r = env.admin(1).await.info(&["replication"]).await.ok()?;
        (r.int("slave_repl_offset")? >= p.int("master_repl_offset")?).then_some(())
    })
    .await;
}

/// Like [`metric`], `None` while the agent does not answer (restarting).
async fn try_metric(env: &Env, i: usize, series: &str) -> Option<i64> {
    let body = local::http::request(env.http(i), "GET", "/metrics", Duration::from_secs(2))
        .await
        .ok()?
        .body;
    Some(
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0),
    )
}

/// Bytes that crossed the emulated WAN between the two regions so far, both streams, both ways.
fn wan_bytes(env: &Env) -> u64 {
    let mut n = 0;
    for (from, to) in [(0, 1), (1, 0)] {
        for link in [env.cluster.link(from, to), env.cluster.relay_link(from, to)]
            .into_iter()
            .flatten()
        {
            let s = link.stats();
            n += s.bytes_up + s.bytes_down;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_region_redis_that_lost_its_disk_full_syncs_from_its_local_relay() {
    let env = start().await;
    let mut app = env.app(0).await;
    for i in 0..200 {
        app.cmd(&["SET", &format!("pre:{i}"), "x"]).await.unwrap();
    }
    // 8 MiB of dataset: a full sync across the WAN would show.
    let (value_len, count) = (256 << 10, 32);
    for i in 0..count {
        let value = format!("{i:08}-").repeat(value_len / 9);
        app.cmd(&["SET", &format!("big:{i}"), &value])
            .await
            .unwrap();
    }
    replica_caught_up(&env).await;
    let (full_before, _) = env.primary_syncs().await;
    let served_a = metric(&env, 0, SERVED_FULL).await;

    // eu-central-1's Redis loses its disk: no snapshot may recreate the file, the data files
    // go, the process is killed (nothing written at exit), and the supervisor starts it again.
    // Its agent (and relay) are killed with it, as when a pod is rescheduled: the relay resumes
    // from its disk, which is the point here.
    let mut eu = env.admin(1).await;
    eu.cmd(&["CONFIG", "SET", "save", ""]).await.unwrap();
    testkit::eventually("no snapshot in progress", || async {
        let info = env.admin(1).await.info(&["persistence"]).await.ok()?;
        (info.int("rdb_bgsave_in_progress")? == 0).then_some(())
    })
    .await;
    let data = env.cluster.layout().region(REGIONS[1]);
    for f in ["dump.rdb", "appendonly.aof"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let _ = std::fs::remove_dir_all(data.join("appendonlydir"));
    let wan_before = wan_bytes(&env);
    let offset_before = int(&env, 0, "replication", "master_repl_offset").await;
    let t = Instant::now();
    let pids = env.cluster.pids().await;
    let redis_pid = pids[1].redis.unwrap();
    for pid in [redis_pid, pids[1].agent.unwrap()] {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    // Writes go on meanwhile: the stream is all the WAN should carry.
    for i in 0..200 {
        app.cmd(&["SET", &format!("during:{i}"), "y"])
            .await
            .unwrap();
    }
    testkit::eventually("eu-central-1's Redis restarted", || async {
        let p = env.cluster.pids().await;
        p[1].redis.is_some_and(|r| r != redis_pid).then_some(())
    })
    .await;
    // The restarted agent's counters start at 0.
    let deadline = Instant::now() + testkit::patience();
    while try_metric(&env, 1, SERVED_FULL).await.unwrap_or(0) < 1 {
        if Instant::now() > deadline {
            let tail = |f: &str, n: usize| {
                let log = std::fs::read_to_string(data.join(f)).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(n)..].join("\n")
            };
            panic!(
                "eu-central-1 did not full-sync from its relay; not ready {:?}\nredis.log:\n{}\n\
                 agent.log:\n{}",
                try_metric(
                    &env,
                    1,
                    "georep_relay_syncs_served_total{kind=\"not_ready\"}"
                )
                .await,
                tail("redis.log", 15),
                tail("agent.log", 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    replica_caught_up(&env).await;
    let resynced = t.elapsed();
    let stream = (int(&env, 0, "replication", "master_repl_offset").await - offset_before) as u64;
    let wan = wan_bytes(&env) - wan_before;
    same_data(&env, count).await;
    eprintln!(
        "relay: a replica Redis without its disk resynced from its local relay in {resynced:?}; \
         the WAN carried {wan} bytes meanwhile for {stream} bytes of stream (dataset ≥ {} bytes)",
        count * value_len
    );
    let (full_after, _) = env.primary_syncs().await;
    assert_eq!(full_after, full_before, "the primary served a full sync");
    assert_eq!(
        metric(&env, 0, SERVED_FULL).await,
        served_a,
        "the primary region's relay served a full sync"
    );
    assert_eq!(
        metric(&env, 1, UPSTREAM_FULL).await,
        0,
        "the replica region's relay took a full sync (it resumes from its disk)"
    );
    assert_eq!(metric(&env, 1, SERVED_FULL).await, 1);
    // Tunnel frames, handshakes, ACKs and the agents' own traffic on top of the stream: far
    // less than the dataset.
    let slack = 256 << 10;
    assert!(
        wan <= stream + stream / 4 + slack,
        "{wan} bytes crossed the WAN for {stream} bytes of stream"
    );
}
