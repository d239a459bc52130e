//! `georep up` end to end: real redis-server and agent processes per region, real tunnels, the
//! user-space WAN emulator in between (45 ms one way, like the seed's regions).

mod apps;
mod control_plane;
mod failover;
mod harness;
mod relay;
mod relay_fallback;

use std::time::{Duration, Instant};

use harness::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_writes_reach_every_replica() {
    let env = Env::start(&["us-east-1", "eu-central-1"], 45).await;
    env.wait_replicas_up().await;
    let mut primary = env.app(0).await;
    for i in 0..10_000 {
        primary
            .cmd(&["SET", &format!("key:{i}"), &format!("value-{i}")])
            .await
            .unwrap();
    }
    env.wait_converged(10_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tap_on_the_wan_never_sees_a_written_value_in_clear() {
    let env = Env::start(&["us-east-1", "eu-central-1"], 45).await;
    env.wait_replicas_up().await;
    // Everything eu-central-1's agent sends to us-east-1 and receives back (the replication
    // stream) crosses this emulated link.
    let tap = env.cluster.link(1, 0).unwrap().tap();
    let mut primary = env.app(0).await;
    for i in 0..500 {
        primary
            .cmd(&["SET", &format!("tap:{i}"), &format!("plaintext-canary-{i}")])
            .await
            .unwrap();
    }
    env.wait_converged(500).await;
    let seen = tap.bytes();
    assert!(
        seen.len() > 500 * 20,
        "the tap saw only {} bytes",
        seen.len()
    );
    let haystack = String::from_utf8_lossy(&seen);
    assert!(
        !haystack.contains("plaintext-canary"),
        "a written value crossed the WAN in clear"
    );
    assert!(
        !haystack.contains("tap:"),
        "a key name crossed the WAN in clear"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_five_second_cut_under_load_ends_in_a_partial_resync() {
    let env = Env::start(&["us-east-1", "eu-central-1"], 45).await;
    env.wait_replicas_up().await;
    let before = env.primary_syncs().await;
    let load = Load::start(env.primary_addr(), env.cluster.app_login());
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.cluster.set_cut(0, 1, true);
    env.wait_link(1, "down").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    env.cluster.set_cut(0, 1, false);
    env.wait_link(1, "up").await;
    let written = load.stop().await;
    assert!(written > 100, "the load wrote only {written} keys");
    env.wait_converged_with_primary().await;
    let after = env.primary_syncs().await;
    assert_eq!(
        after.0, before.0,
        "a full resync happened (sync_full {} → {})",
        before.0, after.0
    );
    assert!(after.1 > before.1, "no partial resync was counted");
    let status = env.status(1).await;
    assert_eq!(status["last_sync"], "partial", "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_replica_region_comes_back_with_a_partial_resync() {
    let env = Env::start(&["us-east-1", "eu-central-1"], 45).await;
    env.wait_replicas_up().await;
    let mut primary = env.app(0).await;
    for i in 0..1000 {
        primary
            .cmd(&["SET", &format!("pre:{i}"), "x"])
            .await
            .unwrap();
    }
    env.wait_converged(1000).await;
    // The replica's RDB (written by its initial sync or a later snapshot) carries its offset.
    let before = env.primary_syncs().await;
    let pids = env.cluster.pids().await;
    for pid in [pids[1].redis.unwrap(), pids[1].agent.unwrap()] {
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    }
    for i in 0..1000 {
        primary
            .cmd(&["SET", &format!("during:{i}"), "y"])
            .await
            .unwrap();
    }
    // The supervisor restarts both; the replica reconnects through the restarted agent.
    testkit::eventually("replica region restarted", || async {
        let p = env.cluster.pids().await;
        (p[1].redis.is_some_and(|r| r != pids[1].redis.unwrap())).then_some(())
    })
    .await;
    env.wait_link(1, "up").await;
    env.wait_converged_with_primary().await;
    let after = env.primary_syncs().await;
    assert_eq!(
        after.0, before.0,
        "the restarted replica needed a full resync"
    );
    assert!(after.1 > before.1, "no partial resync was counted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_primary_redis_loses_no_acknowledged_write_beyond_the_aof_bound() {
    let env = Env::start(&["us-east-1", "eu-central-1"], 45).await;
    env.wait_replicas_up().await;
    let load = Load::start(env.primary_addr(), env.cluster.app_login());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = env.cluster.pids().await[0].redis.unwrap();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let killed_at = Instant::now();
    let acked = load.stop_with_history().await;
    assert!(
        acked.len() > 100,
        "only {} writes were acknowledged",
        acked.len()
    );
    env.wait_primary_ready().await;
    let mut primary = env.admin(0).await;
    // `appendfsync everysec` writes the AOF before answering, so a killed process normally loses
    // nothing; but while a background fsync is slow (a busy disk), Redis postpones that write for
    // up to 2 s and keeps answering — its documented worst case. Writes younger than 1 s may go;
    // the bound checked is Redis's own 2 s, and losses between 1 and 2 s are reported.
    let mut lost_old = Vec::new();
    let mut lost_recent = 0;
    for (key, at) in &acked {
        let age = killed_at.duration_since(*at);
        if age > Duration::from_secs(1)
            && primary.cmd(&["EXISTS", key]).await.unwrap() != resp::Value::Int(1)
        {
            if age > Duration::from_secs(2) {
                lost_old.push(key.clone());
            } else {
                lost_recent += 1;
            }
        }
    }
    eprintln!("acknowledged writes 1-2 s old lost to a postponed AOF write: {lost_recent}");
    assert!(
        lost_old.is_empty(),
        "{} acknowledged writes older than 2 s were lost: {:?}",
        lost_old.len(),
        &lost_old[..lost_old.len().min(5)]
    );
    env.wait_link(1, "up").await;
}

/// Issue 11 item 3: after `kill -9` of the primary's redis-server, the replica full-resyncs
/// from the restarted primary (new replication ID: it starts from its AOF), and LAST_SYNC must
/// say so; it used to compare the restarted primary's reset counters and keep `partial`.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_primary_redis_shows_the_replicas_full_resync() {
    let env = Env::start(&["us-east-1", "eu-central-1"], 45).await;
    env.wait_replicas_up().await;
    // First a partial resync (a short cut), so that `full` below is news.
    env.cluster.set_cut(0, 1, true);
    env.wait_link(1, "down").await;
    env.cluster.set_cut(0, 1, false);
    env.wait_link(1, "up").await;
    wait_last_sync(&env, "partial").await;
    let pid = env.cluster.pids().await[0].redis.unwrap();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    testkit::eventually("primary redis restarted", || async {
        let p = env.cluster.pids().await;
        (p[0].redis.is_some_and(|r| r != pid)).then_some(())
    })
    .await;
    env.wait_primary_ready().await;
    env.wait_link(1, "up").await;
    wait_last_sync(&env, "full").await;
    let (full, _) = env.primary_syncs().await;
    assert!(full >= 1, "the restarted primary served no full resync");
}

async fn wait_last_sync(env: &Env, kind: &str) {
    testkit::eventually(&format!("region 1 last_sync {kind}"), || async {
        (env.status(1).await["last_sync"] == kind).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_tunnel_key_shows_the_link_down_with_the_reason_and_the_primary_serves() {
    let env = Env::start(&["us-east-1", "eu-central-1"], 5).await;
    env.wait_replicas_up().await;
    let wrong = env.dir.path().join("wrong.key");
    tunnel::keyfile::generate(&wrong).unwrap();
    env.cluster
        .restart_agent_with_keys(1, &[wrong])
        .await
        .unwrap();
    env.wait_link(1, "down").await;
    let status = testkit::eventually("the reason is reported", || async {
        let s = env.status(1).await;
        s["link_error"]
            .as_str()
            .is_some_and(|e| e.contains("tunnel"))
            .then_some(s)
    })
    .await;
    assert!(
        status["link_error"].as_str().unwrap().contains("handshake"),
        "{status}"
    );
    let metrics = env.metrics(1).await;
    assert!(metrics.contains("georep_link_up 0"), "{metrics}");
    let primary_metrics = testkit::eventually("the primary counts the bad MAC", || async {
        let m = env.metrics(0).await;
        m.contains("georep_tunnel_handshake_failures_total{link=\"inbound\",reason=\"bad_mac\"}")
            .then_some(m)
    })
    .await;
    assert!(primary_metrics.contains("georep_is_primary 1"));
    let mut primary = env.app(0).await;
    assert_eq!(
        primary.cmd(&["SET", "still", "serving"]).await.unwrap(),
        resp::Value::Simple("OK".into())
    );
    // `georep status` exits non-zero and names the region.
    let out = std::process::Command::new(GEOREP)
        .args(["status", env.topology.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("eu-central-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_three_region_topology_converges() {
    let env = Env::start(&["us-east-1", "eu-central-1", "ap-southeast-1"], 20).await;
    env.wait_replicas_up().await;
    let mut primary = env.app(0).await;
    for i in 0..2000 {
        primary
            .cmd(&["SET", &format!("k3:{i}"), &i.to_string()])
            .await
            .unwrap();
    }
    env.wait_converged(2000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_and_starting_again_resumes_without_a_full_resync() {
    let env = Env::start(&["us-east-1", "eu-central-1"], 5).await;
    env.wait_replicas_up().await;
    let mut primary = env.app(0).await;
    for i in 0..500 {
        primary.cmd(&["SET", &format!("r:{i}"), "v"]).await.unwrap();
    }
    env.wait_converged(500).await;
    let env = env.restart().await;
    env.wait_replicas_up().await;
    env.wait_converged_with_primary().await;
    let (full, partial) = env.primary_syncs().await;
    assert_eq!(full, 0, "the restart needed a full resync");
    assert!(partial >= 1);
    let mut replica = env.app(1).await;
    assert_eq!(
        replica.cmd(&["GET", "r:499"]).await.unwrap(),
        resp::Value::Bulk(Some(b"v".to_vec()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_cannot_save_at_the_stop_is_stopped_without_waiting_it_out() {
    let env = Env::start(&["us-east-1", "eu-central-1"], 5).await;
    env.wait_replicas_up().await;
    // The replica region's directory disappears (as when a disk is lost): its Redis refuses
    // `SHUTDOWN SAVE`, since the snapshot cannot be written.
    let gone = Env::data_dir(env.dir.path()).join("eu-central-1");
    std::fs::remove_dir_all(&gone).unwrap();
    let pids = env.cluster.pids().await;
    let started = Instant::now();
    env.cluster.stop().await;
    let took = started.elapsed();
    // Waiting out the refusal took 20 s, then 10 s more for SIGTERM (which fails the same way).
    assert!(took < Duration::from_secs(10), "the stop took {took:?}");
    for pid in pids.iter().flat_map(|p| [p.redis, p.agent]).flatten() {
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        assert!(!alive, "process {pid} outlived the stop");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_refuse_writes_and_acl_users_are_locked_down() {
    let env = Env::start(&["us-east-1", "eu-central-1"], 5).await;
    env.wait_replicas_up().await;
    let mut replica = env.app(1).await;
    let err = replica
        .cmd(&["SET", "x", "y"])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("READONLY"), "{err}");
    let mut app = env.app(0).await;
    let err = app
        .cmd(&["CONFIG", "GET", "masterauth"])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("NOPERM"), "the app user ran CONFIG: {err}");
    let err = app.cmd(&["FLUSHALL"]).await.unwrap_err().to_string();
    assert!(err.contains("NOPERM"), "the app user ran FLUSHALL: {err}");
    // No password, no access: the default user is off.
    let mut anon = resp::Conn::connect(env.primary_addr(), None, Duration::from_secs(2))
        .await
        .unwrap();
    let err = anon.cmd(&["GET", "x"]).await.unwrap_err().to_string();
    assert!(err.contains("NOAUTH"), "{err}");
    // The replication user can do nothing but replicate.
    let dir = env.cluster.layout().secrets();
    let pass = std::fs::read_to_string(dir.join("replication.password")).unwrap();
    let login = resp::Credentials {
        user: "georep-replication".into(),
        password: pass.trim().into(),
    };
    let mut repl = resp::Conn::connect(env.primary_addr(), Some(&login), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(repl.cmd(&["GET", "x"]).await.is_err());
    // Secrets files are private.
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "admin.password",
        "app.password",
        "replication.password",
        "tunnel.key",
    ] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o077;
        assert_eq!(mode, 0, "{f} is readable by others");
    }
}
