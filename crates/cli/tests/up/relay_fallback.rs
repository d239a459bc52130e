//! `georep up` with `[relay]`, one region's relay store on a small tmpfs filled with ballast
//! (issue #12): while that relay cannot store, replication goes past it (a replica region's Redis
//! follows the primary region's relay; the other regions' relays follow the primary's Redis), and
//! comes back to it once the ballast is deleted and it has caught up. No full sync anywhere, no
//! corrupt byte, equal data.
//!
//! The tmpfs needs root: without it each test prints `SKIPPED` and passes.

use std::time::Instant;

use crate::failover::full_syncs;
use crate::harness::*;
use testkit::tmpfs::Tmpfs;

const REGIONS: [&str; 2] = ["us-east-1", "eu-central-1"];

/// Redis's backlog at georep's floor (16 MiB), a relay in every region.
const RELAY_TOPOLOGY: &str = "[redis]\nwrite_rate = \"1KB/s\"\noutage_budget = \"1s\"\n\
                              [relay]\nretention = \"1GiB\"\n";

const UPSTREAM_FULL: &str = "georep_relay_upstream_full_syncs_total";
const SERVED_FULL: &str = "georep_relay_syncs_served_total{kind=\"full\"}";
const SERVED_PARTIAL: &str = "georep_relay_syncs_served_total{kind=\"partial\"}";
const CORRUPT: &str = "georep_relay_corrupt_total";

/// A cluster whose region `full`'s relay store is on a 4 MiB tmpfs; `None` (after `SKIPPED`)
/// when it cannot be mounted.
async fn start_with_small_relay_disk(full: usize) -> Option<(Env, Tmpfs)> {
    let dir = tempfile::tempdir().unwrap();
    let store = Env::relay_dir(dir.path(), REGIONS[full]);
    let tmpfs = match Tmpfs::mount(&store, "4m") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a 4 MiB tmpfs (needs root): {why}");
            return None;
        }
    };
    let env = Env::start_in(dir, &REGIONS, 5, RELAY_TOPOLOGY).await;
    env.wait_primary(0).await;
    Some((env, tmpfs))
}

async fn int(env: &Env, i: usize, section: &str, field: &str) -> i64 {
    let info = env.admin(i).await.info(&[section]).await.unwrap();
    info.int(field)
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
}

/// Full syncs anywhere: served by either Redis, taken or served by either relay.
async fn all_full_syncs(env: &Env) -> i64 {
    let mut n = full_syncs(env, 2).await;
    for i in 0..2 {
        n += env.metric(i, UPSTREAM_FULL).await + env.metric(i, SERVED_FULL).await;
    }
    n
}

/// `count` values of 1 KiB, each different, under `prefix`.
async fn write(env: &Env, prefix: &str, count: usize) {
    let mut app = env.app(0).await;
    for i in 0..count {
        let value = format!("{prefix}{i:06}-").repeat(1024 / (prefix.len() + 7) + 1);
        app.cmd(&["SET", &format!("{prefix}{i}"), &value])
            .await
            .unwrap();
    }
}

/// Region 1's Redis holds every byte the primary wrote.
async fn caught_up(env: &Env) {
    testkit::eventually("region 1 caught up with the primary", || async {
        let p = int(env, 0, "replication", "master_repl_offset").await;
        (int(env, 1, "replication", "slave_repl_offset").await >= p).then_some(())
    })
    .await;
    env.assert_same_data().await;
}

/// `georep status`'s RELAY line of `region`.
async fn relay_line(env: &Env, region: &str) -> String {
    let out = georep(&["status", &env.topology.display().to_string()]).await;
    let shown = text(&out);
    shown
        .lines()
        .skip_while(|l| !l.starts_with("RELAY"))
        .find(|l| l.starts_with(region))
        .unwrap_or_else(|| panic!("no relay line for {region}: {shown}"))
        .to_owned()
}

fn agent_log(env: &Env, region: &str) -> String {
    std::fs::read_to_string(env.cluster.layout().region(region).join("agent.log"))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_regions_full_relay_is_bypassed_and_its_redis_returns_once_it_stores() {
    let Some((env, tmpfs)) = start_with_small_relay_disk(1).await else {
        return;
    };
    let started = Instant::now();
    let relay_port = i64::from(env.cluster.topology().local.ports(1).relay);
    write(&env, "pre:", 200).await;
    caught_up(&env).await;
    assert_eq!(int(&env, 1, "replication", "master_port").await, relay_port);
    let fulls = all_full_syncs(&env).await;
    let served_partial = env.metric(0, SERVED_PARTIAL).await;

    let ballast = tmpfs.fill();
    write(&env, "during:", 1000).await;
    // The relay reports its full disk; the agent points the region's Redis past it.
    let s = testkit::eventually("region 1's relay is bypassed", || async {
        let s = env.try_status(1).await?;
        (s["relay"]["disk_full"] == true && s["relay"]["bypassed"] == true).then_some(s)
    })
    .await;
    assert_eq!(s["relay"]["upstream"], REGIONS[0], "{s}");
    // Every write reaches the region's Redis while the relay still cannot store.
    caught_up(&env).await;
    assert_ne!(int(&env, 1, "replication", "master_port").await, relay_port);
    let held = env.status(1).await["relay"]["offset"].as_i64().unwrap();
    let primary_at = int(&env, 0, "replication", "master_repl_offset").await;
    assert!(
        held < primary_at,
        "the relay stored everything ({held} of {primary_at}): the disk was not full"
    );
    assert_eq!(env.metric(1, "georep_relay_bypassed").await, 1);
    assert_eq!(env.metric(1, "georep_relay_disk_full").await, 1);
    assert!(env.metric(1, "georep_relay_disk_errors_total").await >= 1);
    // It continued from the primary region's relay (a partial resync there).
    assert!(env.metric(0, SERVED_PARTIAL).await > served_partial);
    let line = relay_line(&env, REGIONS[1]).await;
    assert!(line.contains("full, bypassed"), "{line}");
    assert!(
        agent_log(&env, REGIONS[1]).contains("relay cannot store (disk full)"),
        "no log line at the switch"
    );

    // Space freed: the relay resumes, catches up, and the Redis goes back to it.
    std::fs::remove_file(&ballast).unwrap();
    let freed = Instant::now();
    testkit::eventually("region 1's Redis follows its relay again", || async {
        let s = env.try_status(1).await?;
        let back = s["relay"]["bypassed"] == false
            && s["relay"]["disk_full"] == false
            && s["link"] == "up"
            && int(&env, 1, "replication", "master_port").await == relay_port;
        back.then_some(())
    })
    .await;
    let back_after = freed.elapsed();
    write(&env, "after:", 200).await;
    caught_up(&env).await;
    let info = env.admin(1).await.info(&["replication"]).await.unwrap();
    assert_eq!(info.get("master_link_status"), Some("up"));
    assert_eq!(env.metric(1, "georep_relay_bypassed").await, 0);
    assert!(agent_log(&env, REGIONS[1]).contains("the local Redis follows the relay again"));
    assert_eq!(all_full_syncs(&env).await, fulls, "a full sync happened");
    for i in 0..2 {
        assert_eq!(env.metric(i, CORRUPT).await, 0, "region {i}'s relay");
    }
    let line = relay_line(&env, REGIONS[1]).await;
    assert!(line.contains(" ok "), "{line}");
    eprintln!(
        "relay fallback (replica region): back on the relay {back_after:?} after the ballast \
         went, whole test {:?}",
        started.elapsed()
    );
    drop(env);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_regions_full_relay_is_bypassed_by_the_other_regions_relays_until_it_stores() {
    let Some((env, tmpfs)) = start_with_small_relay_disk(0).await else {
        return;
    };
    let started = Instant::now();
    write(&env, "pre:", 200).await;
    caught_up(&env).await;
    let fulls = all_full_syncs(&env).await;
    let partial = int(&env, 0, "stats", "sync_partial_ok").await;
    let served_partial = env.metric(0, SERVED_PARTIAL).await;

    let ballast = tmpfs.fill();
    write(&env, "during:", 1000).await;
    // The primary's agent leases the bypass; region 1's relay follows the primary's Redis.
    testkit::eventually("the primary region's relay is bypassed", || async {
        let p = env.try_status(0).await?;
        let r = env.try_status(1).await?;
        (p["relay"]["disk_full"] == true
            && p["relay"]["bypassed"] == true
            && r["relay"]["upstream"] == "us-east-1/redis"
            && r["relay"]["upstream_connected"] == true)
            .then_some(())
    })
    .await;
    caught_up(&env).await;
    let held = env.status(0).await["relay"]["offset"].as_i64().unwrap();
    let primary_at = int(&env, 0, "replication", "master_repl_offset").await;
    assert!(
        held < primary_at,
        "the relay stored everything ({held} of {primary_at}): the disk was not full"
    );
    // Region 1's relay continued from the primary's Redis (its backlog held the gap).
    assert!(int(&env, 0, "stats", "sync_partial_ok").await > partial);
    let lease = env
        .admin(0)
        .await
        .cmd(&["GET", "georep:relay-bypass"])
        .await;
    let lease = lease.unwrap().text().unwrap_or_default();
    assert!(lease.ends_with(" us-east-1"), "lease {lease:?}");
    assert_eq!(env.metric(0, "georep_relay_bypassed").await, 1);
    assert_eq!(env.metric(0, "georep_relay_disk_full").await, 1);
    assert_eq!(env.metric(1, "georep_relay_bypassed").await, 0);
    let line = relay_line(&env, REGIONS[0]).await;
    assert!(line.contains("full, bypassed"), "{line}");
    let line = relay_line(&env, REGIONS[1]).await;
    assert!(line.contains("us-east-1/redis"), "{line}");
    assert!(agent_log(&env, REGIONS[0])
        .contains("the other regions' relays follow this region's Redis directly"));
    assert!(agent_log(&env, REGIONS[1]).contains("our relay follows us-east-1's Redis directly"));

    std::fs::remove_file(&ballast).unwrap();
    let freed = Instant::now();
    testkit::eventually(
        "region 1's relay follows the primary region's relay again",
        || async {
            let p = env.try_status(0).await?;
            let r = env.try_status(1).await?;
            (p["relay"]["bypassed"] == false
                && p["relay"]["disk_full"] == false
                && r["relay"]["upstream"] == "us-east-1"
                && r["relay"]["upstream_connected"] == true
                && env.metric(0, SERVED_PARTIAL).await > served_partial)
                .then_some(())
        },
    )
    .await;
    let back_after = freed.elapsed();
    write(&env, "after:", 200).await;
    caught_up(&env).await;
    let lease = env
        .admin(0)
        .await
        .cmd(&["EXISTS", "georep:relay-bypass"])
        .await;
    assert_eq!(
        lease.unwrap(),
        resp::Value::Int(0),
        "the lease was not deleted"
    );
    assert_eq!(env.metric(0, "georep_relay_bypassed").await, 0);
    assert!(agent_log(&env, REGIONS[1]).contains("us-east-1's relay stores again"));
    assert_eq!(all_full_syncs(&env).await, fulls, "a full sync happened");
    for i in 0..2 {
        assert_eq!(env.metric(i, CORRUPT).await, 0, "region {i}'s relay");
    }
    eprintln!(
        "relay fallback (primary region): region 1's relay back on it {back_after:?} after the \
         ballast went, whole test {:?}",
        started.elapsed()
    );
    drop(env);
}
