//! The control plane end to end: only a request carrying the operator token changes anything;
//! the token appears nowhere; idle connections do not lock operators or probes out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

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

/// A copy of the topology whose data directory does not exist (no `up` ran there).
fn write_topology_without_data(env: &Env) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&env.topology).unwrap();
    let data = env.dir.path().join("data").display().to_string();
    let elsewhere = env.dir.path().join("nowhere").display().to_string();
    let path = env.dir.path().join("other.toml");
    std::fs::write(&path, text.replace(&data, &elsewhere)).unwrap();
    path
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
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
    let mut admin = env.admin(0).await;
    let meta = admin.cmd(&["HGETALL", "georep:meta"]).await.unwrap();
    let resp::Value::Array(Some(fields)) = meta else {
        panic!("georep:meta is not a hash: {meta:?}")
    };
    // Garbage of the wrong type where the metadata lives (only an admin can do this).
    admin.cmd(&["DEL", "georep:meta"]).await.unwrap();
    admin.cmd(&["SET", "georep:meta", "x"]).await.unwrap();
    let why = testkit::eventually("readyz fails with the reason", || async {
        let r = local::http::request(env.http(0), "GET", "/readyz", Duration::from_secs(2))
            .await
            .ok()?;
        (r.status == 503 && r.body.contains("control loop failing")).then_some(r.body)
    })
    .await;
    assert!(why.contains("WRONGTYPE"), "{why}");
    let out = tokio::process::Command::new(GEOREP)
        .args(["status", env.topology.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("WRONGTYPE"), "{shown}");
    // Put the metadata back: ready again.
    let mut restore = vec!["HSET".to_owned(), "georep:meta".to_owned()];
    for f in fields {
        if let resp::Value::Bulk(Some(b)) = f {
            restore.push(String::from_utf8(b).unwrap());
        }
    }
    admin.cmd(&["DEL", "georep:meta"]).await.unwrap();
    let args: Vec<&str> = restore.iter().map(String::as_str).collect();
    admin.cmd(&args).await.unwrap();
    testkit::eventually("ready again", || async {
        let r = local::http::request(env.http(0), "GET", "/readyz", Duration::from_secs(2))
            .await
            .ok()?;
        (r.status == 200).then_some(())
    })
    .await;
}
