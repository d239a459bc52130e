//! Changing the primary end to end: planned switchovers under load, aborts, emergency promotion
//! with fencing of the old primary, concurrent commands, and an agent killed mid-switchover.
//! Every scenario runs a write-history checker: every acknowledged write must be on the final
//! primary.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use resp::{Conn, Credentials, Value};

use crate::harness::*;

/// Writes unique keys at [`WRITE_RATE`] to whichever region accepts them, logging each
/// acknowledged write (key = value = a sequence number).
pub(crate) struct History {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
    started: Instant,
}

impl History {
    pub(crate) fn start(addrs: Vec<SocketAddr>, login: Credentials) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut conn: Option<Conn> = None;
            let mut at = 0;
            let mut i = 0u64;
            let start = tokio::time::Instant::now();
            while !s.load(Ordering::SeqCst) {
                // Paced, not flat out: the dataset (and every AOF rewrite after a promotion)
                // stays small enough not to starve the disk of tests running alongside.
                let due = start + Duration::from_secs_f64(i as f64 / WRITE_RATE);
                if tokio::time::Instant::now() < due {
                    tokio::time::sleep_until(due).await;
                }
                if conn.is_none() {
                    conn = Conn::connect(addrs[at], Some(&login), Duration::from_secs(1))
                        .await
                        .ok();
                    if conn.is_none() {
                        at = (at + 1) % addrs.len();
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                }
                let key = format!("h:{i}");
                i += 1;
                match conn
                    .as_mut()
                    .unwrap()
                    .cmd(&["SET", key.as_str(), key.as_str()])
                    .await
                {
                    Ok(_) => acked.push(key),
                    Err(_) => {
                        // READONLY, NOREPLICAS, a closed connection: try the next region.
                        conn = None;
                        at = (at + 1) % addrs.len();
                    }
                }
            }
            acked
        });
        Self {
            stop,
            task,
            started: Instant::now(),
        }
    }

    pub(crate) async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        let acked = self.task.await.unwrap();
        let secs = self.started.elapsed().as_secs_f64();
        eprintln!(
            "history: {} acknowledged writes in {secs:.1}s ({:.0}/s)",
            acked.len(),
            acked.len() as f64 / secs
        );
        acked
    }
}

/// Every acknowledged write that region `i` does not hold.
pub(crate) async fn missing(env: &Env, i: usize, acked: &[String]) -> Vec<String> {
    let mut c = env.admin(i).await;
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

/// Samples `ROLE` on every region every 10 ms and counts the samples with two masters.
struct Roles {
    stop: Arc<AtomicBool>,
    samples: Arc<AtomicU64>,
    double: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Roles {
    fn start(addrs: Vec<SocketAddr>, login: Credentials) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicU64::new(0));
        let double = Arc::new(AtomicU64::new(0));
        let (s, n, d) = (stop.clone(), samples.clone(), double.clone());
        let task = tokio::spawn(async move {
            let mut conns: Vec<Option<Conn>> = addrs.iter().map(|_| None).collect();
            while !s.load(Ordering::SeqCst) {
                let mut masters = 0;
                for (i, addr) in addrs.iter().enumerate() {
                    if conns[i].is_none() {
                        conns[i] = Conn::connect(*addr, Some(&login), Duration::from_millis(500))
                            .await
                            .ok();
                    }
                    let Some(c) = conns[i].as_mut() else { continue };
                    match c.cmd(&["ROLE"]).await {
                        Ok(Value::Array(Some(r))) => {
                            if r.first().and_then(Value::text).as_deref() == Some("master") {
                                masters += 1;
                            }
                        }
                        _ => conns[i] = None,
                    }
                }
                n.fetch_add(1, Ordering::SeqCst);
                if masters > 1 {
                    d.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Self {
            stop,
            samples,
            double,
            task,
        }
    }

    /// `(samples, samples with two masters)`.
    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        (
            self.samples.load(Ordering::SeqCst),
            self.double.load(Ordering::SeqCst),
        )
    }
}

/// Every acknowledged write is on region `primary`, and on region `replica` once it has caught up.
pub(crate) async fn assert_acked_everywhere(
    env: &Env,
    primary: usize,
    replica: usize,
    acked: &[String],
) {
    let lost = missing(env, primary, acked).await;
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    testkit::eventually("the replica holds every acknowledged write", || async {
        missing(env, replica, acked).await.is_empty().then_some(())
    })
    .await;
}

/// Sum of `sync_full` over every region's Redis.
pub(crate) async fn full_syncs(env: &Env, regions: usize) -> i64 {
    let mut total = 0;
    for i in 0..regions {
        let info = env.admin(i).await.info(&["stats"]).await.unwrap();
        total += info.int("sync_full").unwrap_or(0);
    }
    total
}

pub(crate) fn addrs(env: &Env, n: usize) -> Vec<SocketAddr> {
    (0..n).map(|i| env.redis_addr(i)).collect()
}

const REGIONS: [&str; 2] = ["us-east-1", "eu-central-1"];

/// The history writer's target rate, writes per second (the issue asks for at least 2,000).
const WRITE_RATE: f64 = 4_000.0;

/// How many planned switchovers the test runs (each one a direction; 20 = ten round trips).
const SWITCHOVERS: usize = 20;

#[tokio::test(flavor = "multi_thread")]
async fn planned_switchovers_under_load_lose_no_acknowledged_write() {
    let env = Env::start(&REGIONS, 45).await;
    env.wait_primary(0).await;
    let fulls = full_syncs(&env, 2).await;
    let roles = Roles::start(addrs(&env, 2), env.cluster.admin_login());
    let history = History::start(addrs(&env, 2), env.cluster.app_login());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut pauses = Vec::new();
    let mut primary = 0;
    for n in 0..SWITCHOVERS {
        let to = 1 - primary;
        let out = env.failover(to, "5s").await;
        assert!(out.status.success(), "switchover {n}: {}", text(&out));
        let said = text(&out);
        let pause: u64 = said
            .split("paused for ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no pause in {said:?}"));
        pauses.push(pause);
        primary = to;
        env.wait_primary(primary).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = history.stop().await;
    let (samples, double) = roles.stop().await;
    assert!(
        acked.len() > 10_000,
        "only {} writes acknowledged",
        acked.len()
    );
    assert_acked_everywhere(&env, primary, 1 - primary, &acked).await;
    assert_eq!(
        full_syncs(&env, 2).await,
        fulls,
        "a switchover caused a full resync"
    );
    assert!(samples > 100, "only {samples} ROLE samples");
    assert_eq!(
        double, 0,
        "{double} of {samples} ROLE samples saw two primaries"
    );
    pauses.sort_unstable();
    eprintln!(
        "write pause over {} switchovers at 45 ms one way: p50 {} ms, max {} ms",
        pauses.len(),
        pauses[pauses.len() / 2],
        pauses[pauses.len() - 1]
    );
    // The agent that ran the last switchover reports it.
    testkit::eventually("the last switchover in /status", || async {
        let s = env.try_status(1 - primary).await?;
        (s["last_change"]["kind"] == "planned" && s["epoch"] == (SWITCHOVERS + 1) as u64)
            .then_some(())
    })
    .await;
    assert!(env
        .metrics(1 - primary)
        .await
        .contains("georep_failovers_total{kind=\"planned\"}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_cannot_catch_up_aborts_within_the_timeout_and_loses_nothing() {
    let env = Env::start(&REGIONS, 45).await;
    env.wait_primary(0).await;
    let history = History::start(addrs(&env, 2), env.cluster.app_login());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The replication stream towards eu-central-1 stalls (its link delays everything by 3 s),
    // while the primary's agent still reaches it: the switchover pauses, then gives up.
    let link = env.cluster.link(1, 0).unwrap();
    let normal = link.params();
    let mut slow = normal;
    slow.latency = Duration::from_secs(3);
    link.set_params(slow);
    let t = Instant::now();
    let out = env.failover(1, "1s").await;
    let took = t.elapsed();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("did not catch up"), "{}", text(&out));
    assert!(took < Duration::from_secs(2), "aborted after {took:?}");
    link.set_params(normal);

    // A target stopped outright (SIGSTOP): refused within the timeout too.
    let pid = env.cluster.pids().await[1].redis.unwrap() as i32;
    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    let t = Instant::now();
    let out = env.failover(1, "2s").await;
    let took = t.elapsed();
    kill(Pid::from_raw(pid), Signal::SIGCONT).unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        took < Duration::from_secs(3),
        "aborted after {took:?}: {}",
        text(&out)
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = history.stop().await;
    env.wait_primary(0).await;
    let lost = missing(&env, 0, &acked).await;
    assert!(lost.is_empty(), "{} acknowledged writes lost", lost.len());
    assert_eq!(env.status(0).await["epoch"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_failovers_at_once_one_wins_and_the_other_says_why() {
    let env = Env::start(&REGIONS, 45).await;
    env.wait_primary(0).await;
    let topology = env.topology.display().to_string();
    let args = ["failover", "--to", "eu-central-1", topology.as_str()];
    let (a, b) = tokio::join!(georep(&args), georep(&args));
    let wins = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert_eq!(wins, 1, "{}\n---\n{}", text(&a), text(&b));
    let loser = if a.status.success() { &b } else { &a };
    let why = text(loser);
    assert!(
        why.contains("in progress") || why.contains("not the primary"),
        "{why}"
    );
    env.wait_primary(1).await;
    assert_eq!(env.status(1).await["epoch"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emergency_promotion_fences_the_old_primary_when_it_returns() {
    let env = Env::start(&REGIONS, 45).await;
    env.wait_primary(0).await;
    let topology = env.topology.display().to_string();
    let history = History::start(vec![env.redis_addr(0)], env.cluster.app_login());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let acked = history.stop().await;
    env.wait_converged_with_primary().await;

    // While the primary serves and is reachable, a forced promotion is refused.
    let out = georep(&["promote", "eu-central-1", "--force", &topology]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("failover --to"), "{}", text(&out));

    // Writes acknowledged by the primary but never replicated (the WAN is cut), then fsynced to
    // its AOF, then the whole region dies.
    env.cluster.set_cut(0, 1, true);
    let mut p = env.app(0).await;
    for i in 0..100 {
        p.cmd(&["SET", &format!("unreplicated:{i}"), "x"])
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    env.cluster.kill_region(0).await;
    env.cluster.set_cut(0, 1, false);

    let t = Instant::now();
    let refused = georep(&["promote", "eu-central-1", &topology]).await;
    assert!(!refused.status.success() && text(&refused).contains("--force"));
    let out = georep(&["promote", "eu-central-1", "--force", &topology]).await;
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("{}", text(&out).trim());
    let mut c = env.app(1).await;
    loop {
        if c.cmd(&["SET", "after-promotion", "1"]).await.is_ok() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "not writable within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let writable = t.elapsed();
    eprintln!(
        "emergency promote to first accepted write: {} ms",
        writable.as_millis()
    );
    assert!(writable < Duration::from_secs(2));
    testkit::eventually("the promotion in /status", || async {
        let s = env.try_status(1).await?;
        (s["last_change"]["kind"] == "emergency").then_some(())
    })
    .await;

    // The old region comes back: it must never take a write at its stale epoch.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let prober = {
        let (stop, accepted) = (stop.clone(), accepted.clone());
        let (addr, login) = (env.redis_addr(0), env.cluster.app_login());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if let Ok(mut c) =
                    Conn::connect(addr, Some(&login), Duration::from_millis(200)).await
                {
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        match c.cmd(&["SET", &format!("stale:{n}"), "x"]).await {
                            Ok(_) => {
                                accepted.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(resp::Error::Command { .. }) => {}
                            Err(_) => break,
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    env.cluster.start_region(0).await.unwrap();
    env.wait_primary(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    prober.await.unwrap();
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the returning old primary accepted writes at its stale epoch"
    );
    for i in 0..2 {
        let mut c = env.admin(i).await;
        let keys = c.cmd(&["KEYS", "unreplicated:*"]).await.unwrap();
        assert_eq!(
            keys,
            Value::Array(Some(vec![])),
            "region {i} resurrected lost writes"
        );
    }
    let lost = missing(&env, 1, &acked).await;
    assert!(lost.is_empty(), "{} replicated writes lost", lost.len());
    assert_eq!(env.status(0).await["epoch"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_killed_mid_switchover_leaves_exactly_one_primary() {
    let env = Env::start(&REGIONS, 45).await;
    env.wait_primary(0).await;
    let topology = env.topology.display().to_string();
    let history = History::start(addrs(&env, 2), env.cluster.app_login());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let agent = env.cluster.pids().await[0].agent.unwrap() as i32;
    let cli = {
        let topology = topology.clone();
        tokio::spawn(async move { georep(&["failover", "--to", "eu-central-1", &topology]).await })
    };
    tokio::time::sleep(Duration::from_millis(250)).await;
    kill(Pid::from_raw(agent), Signal::SIGKILL).unwrap();
    let out = cli.await.unwrap();
    eprintln!("failover with its agent killed: {}", text(&out).trim());
    // Whatever step it died in, the cluster settles on one primary that every region follows.
    let primary = testkit::eventually("one primary", || async {
        let a = env.try_status(0).await?;
        let b = env.try_status(1).await?;
        let p = a["primary"].as_str()?.to_owned();
        (p == b["primary"].as_str()? && a["epoch"] == b["epoch"]).then_some(())?;
        REGIONS.iter().position(|r| *r == p)
    })
    .await;
    env.wait_primary(primary).await;
    let roles = Roles::start(addrs(&env, 2), env.cluster.admin_login());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = history.stop().await;
    let (_, double) = roles.stop().await;
    assert_eq!(double, 0);
    let lost = missing(&env, primary, &acked).await;
    assert!(lost.is_empty(), "{} acknowledged writes lost", lost.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_third_region_follows_the_new_primary_with_a_partial_resync() {
    let names = ["us-east-1", "eu-central-1", "ap-southeast-1"];
    let env = Env::start(&names, 45).await;
    env.wait_primary(0).await;
    let topology = env.topology.display().to_string();
    let fulls = full_syncs(&env, 3).await;
    let history = History::start(addrs(&env, 3), env.cluster.app_login());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = georep(&["failover", "--to", "ap-southeast-1", &topology]).await;
    assert!(out.status.success(), "{}", text(&out));
    // Both other regions, the old primary included, re-point to the new one.
    env.wait_primary(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = history.stop().await;
    let lost = missing(&env, 2, &acked).await;
    assert!(lost.is_empty(), "{} acknowledged writes lost", lost.len());
    for i in [0, 1] {
        testkit::eventually("replica holds every acknowledged write", || async {
            missing(&env, i, &acked).await.is_empty().then_some(())
        })
        .await;
    }
    assert_eq!(
        full_syncs(&env, 3).await,
        fulls,
        "a region needed a full resync"
    );
    // Both resyncs with the new primary were partial.
    let info = env.admin(2).await.info(&["stats"]).await.unwrap();
    assert!(info.int("sync_partial_ok").unwrap() >= 2, "{info:?}");
}
