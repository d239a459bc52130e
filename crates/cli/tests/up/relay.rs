//! `georep up` with `[relay]`: a replication relay in every region, in the agent. A WAN cut that
//! overruns Redis's own backlog heals without a full resync, and planned switchovers through the
//! relays lose no acknowledged write and cause no full resync.

use std::time::{Duration, Instant};

use resp::Value;

use crate::failover::{assert_acked_everywhere, full_syncs, georep, text, wait_primary, History};
use crate::harness::*;

const REGIONS: [&str; 2] = ["us-east-1", "eu-central-1"];

/// The smallest backlog georep configures (16 MiB: the write rate × budget rule's floor), and a
/// relay in every region.
const RELAY_TOPOLOGY: &str = "[redis]\nwrite_rate = \"1KB/s\"\noutage_budget = \"1s\"\n\
                              [relay]\nretention = \"1GiB\"\n";

const SERVED_FULL: &str = "georep_relay_syncs_served_total{kind=\"full\"}";

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
    wait_primary(&env, 0, &REGIONS).await;
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
    assert!(relays[2].ends_with("1.0GiB"), "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn planned_switchovers_through_the_relays_lose_nothing_and_never_full_sync() {
    let env = start().await;
    let topology = env.topology.display().to_string();
    let history = History::start(
        (0..2).map(|i| env.redis_addr(i)).collect(),
        env.cluster.app_login(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fulls = full_syncs(&env, 2).await;
    let relay_fulls = metric(&env, 1, "georep_relay_upstream_full_syncs_total").await
        + metric(&env, 0, "georep_relay_upstream_full_syncs_total").await;
    let mut primary = 0;
    for to in [1, 0] {
        let out = georep(&[
            "failover",
            "--to",
            REGIONS[to],
            "--timeout",
            "5s",
            &topology,
        ])
        .await;
        assert!(
            out.status.success(),
            "switchover to {}: {}",
            REGIONS[to],
            text(&out)
        );
        primary = to;
        wait_primary(&env, primary, &REGIONS).await;
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = history.stop().await;
    assert!(
        acked.len() > 1000,
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
        metric(&env, 1, "georep_relay_upstream_full_syncs_total").await
            + metric(&env, 0, "georep_relay_upstream_full_syncs_total").await,
        relay_fulls,
        "a relay took a full resync"
    );
    let mut replids = Vec::new();
    for i in 0..2 {
        let info = env.admin(i).await.info(&["replication"]).await.unwrap();
        replids.push(info.get("master_replid").unwrap().to_owned());
    }
    assert_eq!(replids[0], replids[1]);
}
