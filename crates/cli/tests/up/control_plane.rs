//! The control plane end to end: only a request carrying the operator token changes anything;
//! the token appears nowhere; idle connections do not lock operators or probes out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::*;

const REGIONS: [&str; 2] = ["us-east-1", "eu-central-1"];

/// Sends a raw request (`head` without the final blank line) and returns the status code.
async fn raw(addr: SocketAddr, head: &str) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"))
}

/// `(role, primary, epoch, writes paused?)` of every region, as their agents and Redis report them.
async fn state(env: &Env) -> Vec<(String, String, u64, bool)> {
    let mut out = Vec::new();
    for i in 0..REGIONS.len() {
        let s = env.status(i).await;
        // Paused (or fenced) writes: the primary's app user cannot write at once.
        let paused = if s["role"] == "primary" {
            let mut app = env.app(i).await;
            let write = app.cmd(&["SET", "control-plane:probe", "1"]);
            !matches!(
                tokio::time::timeout(Duration::from_millis(500), write).await,
                Ok(Ok(_))
            )
        } else {
            false
        };
        out.push((
            s["role"].as_str().unwrap_or("?").to_owned(),
            s["primary"].as_str().unwrap_or("?").to_owned(),
            s["epoch"].as_u64().unwrap_or(0),
            paused,
        ));
    }
    out
}

async fn wait_steady(env: &Env) {
    env.wait_replicas_up().await;
    testkit::eventually("region 0 primary at epoch 1", || async {
        let s = env.try_status(0).await?;
        (s["role"] == "primary" && s["fenced"].is_null()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_a_wrong_token_or_a_cross_origin_call_changes_nothing() {
    let env = Env::start(&REGIONS, 5).await;
    wait_steady(&env).await;
    let before = state(&env).await;
    let token = env.token();
    let wrong = "0".repeat(64);
    let endpoints = [
        "POST /failover?to=eu-central-1",
        "POST /failover?to=us-east-1",
        "POST /promote?force=1",
        "GET /status",
    ];
    let up_control =
        SocketAddr::from(([127, 0, 0, 1], env.cluster.topology().local.control_port()));
    let mut targets: Vec<(SocketAddr, String)> = Vec::new();
    for i in 0..REGIONS.len() {
        for e in endpoints {
            targets.push((env.control(i), e.to_owned()));
        }
    }
    for e in [
        "POST /links/us-east-1/eu-central-1/cut",
        "GET /processes",
        "GET /links",
    ] {
        targets.push((up_control, e.to_owned()));
    }
    for (addr, e) in &targets {
        let head = format!("{e} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0");
        assert_eq!(raw(*addr, &head).await, 401, "{addr} {e} without a token");
        let wrong_head = format!("{head}\r\nAuthorization: Bearer {wrong}");
        assert_eq!(raw(*addr, &wrong_head).await, 401, "{addr} {e} wrong token");
        let basic = format!("{head}\r\nAuthorization: Basic {}", token.expose());
        assert_eq!(raw(*addr, &basic).await, 401, "{addr} {e} not a bearer");
        // What a web page on the operator's laptop can send to a port-forward: refused even
        // with a valid token (a browser would have attached cookies, not this, but the
        // refusal must not depend on the credential).
        let good = format!("{head}\r\nAuthorization: Bearer {}", token.expose());
        let origin = format!("{good}\r\nOrigin: http://evil.example");
        assert_eq!(raw(*addr, &origin).await, 403, "{addr} {e} cross-origin");
        let fetch = format!("{good}\r\nSec-Fetch-Site: cross-site");
        assert_eq!(raw(*addr, &fetch).await, 403, "{addr} {e} cross-site");
    }
    // The metrics port serves none of the control API, whatever the credential.
    for i in 0..REGIONS.len() {
        for e in endpoints {
            let head = format!(
                "{e} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nAuthorization: Bearer {}",
                token.expose()
            );
            let code = raw(env.http(i), &head).await;
            assert!(code == 404 || code == 405, "metrics port {i}: {e} → {code}");
        }
        assert_eq!(
            raw(env.http(i), "GET /healthz HTTP/1.1\r\nHost: x").await,
            200
        );
    }
    // Nothing moved: same roles, primary, epoch, no pause, the link not cut.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(state(&env).await, before);
    env.wait_link(1, "up").await;
    for (a, b) in [(0, 1), (1, 0)] {
        assert!(!env.cluster.link(a, b).unwrap().is_cut(), "a link was cut");
    }
    let m = env.metrics(0).await;
    assert!(
        m.contains("georep_control_auth_failures_total{reason=\"missing_token\"}"),
        "{m}"
    );
    assert!(m.contains("georep_control_auth_failures_total{reason=\"wrong_token\"}"));
    assert!(m.contains("georep_control_auth_failures_total{reason=\"cross_origin\"}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_moves_the_primary_and_appears_nowhere() {
    let env = Env::start(&REGIONS, 5).await;
    wait_steady(&env).await;
    let token = env.token();
    let topology = env.topology.display().to_string();
    let token_file = env.cluster.layout().operator_token();
    // Through $GEOREP_TOKEN_FILE.
    let out = tokio::process::Command::new(GEOREP)
        .args(["failover", "--to", "eu-central-1", &topology])
        .env("GEOREP_TOKEN_FILE", &token_file)
        .output()
        .await
        .unwrap();
    let failover_text = text(&out);
    assert!(out.status.success(), "{failover_text}");
    testkit::eventually("eu-central-1 primary", || async {
        let s = env.try_status(1).await?;
        (s["role"] == "primary" && s["epoch"] == 2).then_some(())
    })
    .await;
    // A wrong token file: a clear refusal, no token in it.
    let wrong = env.dir.path().join("wrong-token");
    std::fs::write(&wrong, "1".repeat(64)).unwrap();
    let out = tokio::process::Command::new(GEOREP)
        .args(["failover", "--to", "us-east-1", "--token-file"])
        .arg(&wrong)
        .arg(&topology)
        .output()
        .await
        .unwrap();
    let refused = text(&out);
    assert!(!out.status.success(), "{refused}");
    assert!(refused.contains("401"), "{refused}");
    // No token anywhere: the error names every place looked at.
    let out = tokio::process::Command::new(GEOREP)
        .args(["status", "--json"])
        .arg(write_topology_without_data(&env))
        .env_remove("GEOREP_TOKEN_FILE")
        .output()
        .await
        .unwrap();
    let missing = text(&out);
    assert_eq!(out.status.code(), Some(64), "{missing}");
    assert!(
        missing.contains("--token-file")
            && missing.contains("GEOREP_TOKEN_FILE")
            && missing.contains("operator-token"),
        "{missing}"
    );
    // With the flag: promote --force (the old primary is up: refused, 409, nothing changes).
    let out = tokio::process::Command::new(GEOREP)
        .args(["promote", "us-east-1", "--force", "--token-file"])
        .arg(&token_file)
        .arg(&topology)
        .output()
        .await
        .unwrap();
    let promote_text = text(&out);
    assert!(!out.status.success(), "{promote_text}");
    assert!(promote_text.contains("serv"), "{promote_text}");

    // The audit ring of us-east-1's agent, which received both: the accepted failover and the
    // refused promotion (the wrong token's 401 never reached the change code), naming the
    // token by its fingerprint; kept in the state file, so a restarted agent still shows them.
    let expected: Vec<(String, String, String, u64)> = [
        ("failover", "eu-central-1", "done", 2),
        ("promote", "us-east-1", "refused", 2),
    ]
    .iter()
    .map(|(a, t, r, e)| (a.to_string(), t.to_string(), r.to_string(), *e))
    .collect();
    assert_eq!(audit_ring(&env, 0, &token.fingerprint()).await, expected);
    let agent = env.cluster.pids().await[0].agent.unwrap();
    kill(Pid::from_raw(agent as i32), Signal::SIGKILL).unwrap();
    testkit::eventually("us-east-1's agent restarted", || async {
        let restarted = env.cluster.pids().await[0]
            .agent
            .is_some_and(|p| p != agent);
        (restarted && env.try_status(0).await.is_some()).then_some(())
    })
    .await;
    assert_eq!(audit_ring(&env, 0, &token.fingerprint()).await, expected);

    // Where the token must never be.
    let secret = token.expose().to_owned();
    let mut places: Vec<(String, String)> = vec![
        ("failover output".into(), failover_text),
        ("refusal".into(), refused),
        ("missing-token error".into(), missing),
        ("promote output".into(), promote_text),
    ];
    for i in 0..REGIONS.len() {
        places.push((format!("/status {i}"), env.status(i).await.to_string()));
        places.push((format!("/metrics {i}"), env.metrics(i).await));
    }
    for pid in env.cluster.pids().await {
        for p in [pid.redis, pid.agent].into_iter().flatten() {
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            places.push((
                format!("command line of {p}"),
                String::from_utf8_lossy(&cmdline).into_owned(),
            ));
            let environ = std::fs::read(format!("/proc/{p}/environ")).unwrap_or_default();
            places.push((
                format!("environment of {p}"),
                String::from_utf8_lossy(&environ).into_owned(),
            ));
        }
    }
    for r in REGIONS {
        let dir = env.cluster.layout().region(r);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".log") || name.ends_with(".stdout") || name.ends_with(".json") {
                let body = std::fs::read(&path).unwrap_or_default();
                places.push((
                    path.display().to_string(),
                    String::from_utf8_lossy(&body).into_owned(),
                ));
            }
        }
    }
    for (what, body) in &places {
        assert!(
            !body.contains(&secret),
            "the operator token appears in {what}"
        );
    }
    let audit = std::fs::read_to_string(env.cluster.layout().region("us-east-1").join("agent.log"))
        .unwrap();
    assert!(
        audit.contains("change of primary attempted") && audit.contains(&token.fingerprint()),
        "no audit line naming the token's fingerprint in us-east-1's agent.log"
    );
}

/// `(action, target, result, epoch)` of each entry of region `i`'s audit ring, as `georep
/// status --json` shows it, checking that each names the operator's token by `fingerprint`.
async fn audit_ring(env: &Env, i: usize, fingerprint: &str) -> Vec<(String, String, String, u64)> {
    let out = tokio::process::Command::new(GEOREP)
        .args(["status", "--json"])
        .arg(&env.topology)
        .output()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json: {e}: {}", text(&out)));
    let changes = json["regions"][i]["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes in {json}"));
    changes
        .iter()
        .map(|c| {
            assert_eq!(c["token"], fingerprint, "{c}");
            assert!(c["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{c}");
            assert!(c["at_ms"].as_u64().unwrap() > 0, "{c}");
            assert_eq!(c["error"].is_null(), c["result"] == "done", "{c}");
            let s = |k: &str| c[k].as_str().unwrap_or("?").to_owned();
            (
                s("action"),
                s("target"),
                s("result"),
                c["epoch"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// A copy of the topology whose data directory does not exist (no `up` ran there).
fn write_topology_without_data(env: &Env) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&env.topology).unwrap();
    let data = env.dir.path().join("data").display().to_string();
    let elsewhere = env.dir.path().join("nowhere").display().to_string();
    let path = env.dir.path().join("other.toml");
    std::fs::write(&path, text.replace(&data, &elsewhere)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_idle_connections_do_not_lock_out_probes_or_operators() {
    let env = Env::start(&REGIONS, 5).await;
    wait_steady(&env).await;
    let mut idle = Vec::new();
    for addr in [env.http(0), env.control(0)] {
        for _ in 0..2000 {
            if let Ok(s) = TcpStream::connect(addr).await {
                idle.push(s);
            }
        }
    }
    // The probe answers at once: 2,000 are below the metrics listener's cap.
    let started = Instant::now();
    assert_eq!(
        raw(env.http(0), "GET /healthz HTTP/1.1\r\nHost: x").await,
        200
    );
    let healthz = started.elapsed();
    // The operator gets in once the idle connections' head timeout frees the control slots.
    let started = Instant::now();
    testkit::eventually("an authenticated /status", || async {
        let r = env.control_request(0, "GET", "/status").await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    let control = started.elapsed();
    eprintln!(
        "with 2x2000 idle connections: /healthz in {healthz:?}, authenticated /status in {control:?}"
    );
    assert!(healthz < Duration::from_secs(2), "{healthz:?}");
    assert!(control < Duration::from_secs(10), "{control:?}");
    // The agent is still fine and its descriptors are back once the clients go.
    drop(idle);
    assert_eq!(
        raw(env.http(0), "GET /readyz HTTP/1.1\r\nHost: x").await,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_app_user_cannot_forge_metadata_or_heartbeats() {
    let env = Env::start(&REGIONS, 5).await;
    wait_steady(&env).await;
    let before = state(&env).await;
    for i in 0..REGIONS.len() {
        let mut app = env.app(i).await;
        for cmd in [
            &[
                "HSET",
                "georep:meta",
                "epoch",
                "1000",
                "primary",
                "eu-central-1",
            ][..],
            &["SET", "georep:meta", "x"],
            &["DEL", "georep:meta"],
            &["HGETALL", "georep:meta"],
            &["SET", "georep:heartbeat", "1"],
            &["DEL", "georep:heartbeat"],
        ] {
            let err = app.cmd(cmd).await.expect_err(&format!("{cmd:?} as app"));
            let err = err.to_string();
            assert!(
                err.contains("NOPERM") || err.contains("READONLY"),
                "{cmd:?} on region {i}: {err}"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(state(&env).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_control_loop_makes_readyz_fail_and_shows_in_status() {
    let env = Env::start(&REGIONS, 5).await;
    wait_steady(&env).await;
    // A setting the agent keeps drifts, and an edit of the ACL file takes `CONFIG SET` from the
    // agent's user: a cause the agent cannot repair (it reloads that very file).
    let acl = env.cluster.layout().region("us-east-1").join("users.acl");
    let original = std::fs::read_to_string(&acl).unwrap();
    let admin_line = format!("user {} ", region_spec::credentials::ADMIN_USER);
    let edited: String = original
        .lines()
        .map(|l| match l.starts_with(&admin_line) {
            true => format!("{l} -config|set\n"),
            false => format!("{l}\n"),
        })
        .collect();
    assert_ne!(edited, original);
    let mut admin = env.admin(0).await;
    admin
        .cmd(&["CONFIG", "SET", "repl-diskless-sync-delay", "7"])
        .await
        .unwrap();
    std::fs::write(&acl, edited).unwrap();
    // Reloading ends the connections of the users it changed, this one too.
    let _ = admin.cmd(&["ACL", "LOAD"]).await;
    let why = testkit::eventually("readyz fails with the reason", || async {
        let r = local::http::request(env.http(0), "GET", "/readyz", Duration::from_secs(2))
            .await
            .ok()?;
        let failing = r.body.contains("control loop failing") && r.body.contains("NOPERM");
        (r.status == 503 && failing).then_some(r.body)
    })
    .await;
    assert!(why.contains("config|set"), "{why}");
    let out = tokio::process::Command::new(GEOREP)
        .args(["status", env.topology.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("NOPERM"), "{shown}");
    // The ACL file repaired: the agent corrects the setting and is ready again.
    std::fs::write(&acl, original).unwrap();
    let _ = env.admin(0).await.cmd(&["ACL", "LOAD"]).await;
    testkit::eventually("ready again", || async {
        let r = local::http::request(env.http(0), "GET", "/readyz", Duration::from_secs(2))
            .await
            .ok()?;
        (r.status == 200).then_some(())
    })
    .await;
}

/// The value of the counter `series` (name and labels) in a Prometheus text page, 0 if absent.
fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_in_cluster_metadata_is_repaired_and_an_absurd_epoch_changes_nothing() {
    let env = Env::start(&REGIONS, 5).await;
    wait_steady(&env).await;
    let before = state(&env).await;
    let mut admin = env.admin(0).await;
    let text_of = |v: resp::Value| v.text().unwrap_or_default();
    // Keys of the wrong type where the metadata and the heartbeats live (only an admin can).
    for (key, value) in [("georep:meta", "x"), ("georep:heartbeat", "1")] {
        admin.cmd(&["DEL", key]).await.unwrap();
        admin.cmd(&["SET", key, value]).await.unwrap();
    }
    testkit::eventually("the primary's agent rewrote both", || async {
        let mut admin = env.admin(0).await;
        let meta = text_of(admin.cmd(&["TYPE", "georep:meta"]).await.ok()?);
        let beat = text_of(admin.cmd(&["TYPE", "georep:heartbeat"]).await.ok()?);
        let epoch = text_of(admin.cmd(&["HGET", "georep:meta", "epoch"]).await.ok()?);
        (meta == "hash" && beat == "stream" && epoch == "1").then_some(())
    })
    .await;
    let m = env.metrics(0).await;
    for key in ["georep:meta", "georep:heartbeat"] {
        let series = format!("georep_meta_repaired_total{{key=\"{key}\"}}");
        assert!(counter(&m, &series) >= 1, "{series} in {m}");
    }
    // The epoch at u64::MAX (it used to wrap a later failover to epoch 0): ignored as absent,
    // counted, and rewritten by the primary's agent.
    let max = u64::MAX.to_string();
    admin
        .cmd(&["HSET", "georep:meta", "epoch", &max])
        .await
        .unwrap();
    let refused = "georep_epoch_refused_total{region=\"us-east-1\"}";
    testkit::eventually("the absurd epoch refused and rewritten", || async {
        let mut admin = env.admin(0).await;
        let epoch = text_of(admin.cmd(&["HGET", "georep:meta", "epoch"]).await.ok()?);
        let counted = counter(&env.metrics(0).await, refused) >= 1;
        (epoch == "1" && counted).then_some(())
    })
    .await;
    // Nothing changed and the cluster is healthy.
    assert_eq!(state(&env).await, before);
    for i in 0..REGIONS.len() {
        let s = env.status(i).await;
        assert!(s["error"].is_null(), "region {i}: {s}");
        assert_eq!(
            raw(env.http(i), "GET /readyz HTTP/1.1\r\nHost: x").await,
            200,
            "region {i}"
        );
    }
}
