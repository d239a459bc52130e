//! What each Redis user georep creates may run, checked against a real `redis-server` started
//! with the ACL file `georep acl-file` writes. A rule change that gives a user a command it does
//! not need fails here: update the table, docs/operations.md and the reason together.
//!
//! `ACL DRYRUN` (Redis ≥ 7.0, Valkey ≥ 7.2) answers "could this user run this command line" for
//! every command at once without running it; the key-pattern cases are also run for real.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::GEOREP;
use resp::{Conn, Credentials, Value};
use testkit::{free_addr, wait_listening, Proc};

const USERS: [&str; 3] = ["app", "georep-replication", "georep-admin"];
const PASSWORDS: [(&str, &str); 3] = [
    ("admin.password", "admin-password-for-the-acl-test"),
    ("replication.password", "replication-password-for-the-test"),
    ("app.password", "app-password-for-the-acl-test"),
];

const Y: bool = true;
const N: bool = false;

/// Command line → may [app, georep-replication, georep-admin] run it. Arguments have no spaces.
const TABLE: &[(&str, [bool; 3])] = &[
    // Applications: their data, scripts, pub/sub, WAIT.
    ("GET user:1", [Y, N, Y]),
    ("SET user:1 v", [Y, N, Y]),
    ("SET geo:1 v", [Y, N, Y]),
    ("SET georep v", [Y, N, Y]),
    ("SCAN 0", [Y, N, Y]),
    ("SELECT 1", [Y, N, Y]),
    ("EVAL return(1) 0", [Y, N, Y]),
    ("SCRIPT FLUSH", [Y, N, Y]),
    ("FUNCTION FLUSH", [Y, N, Y]),
    ("PUBLISH ch m", [Y, N, Y]),
    ("WAIT 0 0", [Y, N, Y]),
    ("CLIENT SETNAME x", [Y, N, Y]),
    ("ACL WHOAMI", [Y, N, Y]),
    // georep's own keys: the cluster epoch, the primary, the heartbeat. Only the agent.
    ("HSET georep:meta epoch 1000 primary x", [N, N, Y]),
    ("GET georep:meta", [N, N, Y]),
    ("DEL georep:meta", [N, N, Y]),
    ("XADD georep:heartbeat * ms 1", [N, N, Y]),
    ("RENAME user:1 georep:meta", [N, N, Y]),
    ("COPY user:1 georep:meta", [N, N, Y]),
    // What the agent sends (and `georep up`, which stops Redis with SHUTDOWN SAVE).
    ("INFO replication", [N, N, Y]),
    ("ROLE", [N, N, Y]),
    ("CONFIG GET min-replicas-to-write", [N, N, Y]),
    ("CONFIG SET min-replicas-to-write 0", [N, N, Y]),
    ("REPLICAOF NO ONE", [N, N, Y]),
    ("SLAVEOF NO ONE", [N, N, Y]),
    ("CLIENT PAUSE 10 WRITE", [N, N, Y]),
    ("CLIENT UNPAUSE", [N, N, Y]),
    ("ACL GETUSER default", [N, N, Y]),
    ("ACL USERS", [N, N, Y]),
    ("ACL LOAD", [N, N, Y]),
    ("SHUTDOWN SAVE", [N, N, Y]),
    ("KEYS *", [N, N, Y]),
    // What replication needs.
    ("PSYNC ? -1", [N, Y, N]),
    ("REPLCONF listening-port 1", [N, Y, Y]),
    ("PING", [Y, Y, Y]),
    // Nobody: code execution, dataset destruction or copies, rights, primary changes behind the
    // epoch's back, killing other clients.
    ("DEBUG SLEEP 0", [N, N, N]),
    ("MODULE LIST", [N, N, N]),
    ("MODULE LOAD /tmp/x.so", [N, N, N]),
    ("MONITOR", [N, N, N]),
    ("SYNC", [N, N, N]),
    ("FAILOVER", [N, N, N]),
    ("FLUSHALL", [N, N, N]),
    ("FLUSHDB", [N, N, N]),
    ("SWAPDB 0 1", [N, N, N]),
    ("MIGRATE 127.0.0.1 1 user:1 0 1", [N, N, N]),
    ("RESTORE user:1 0 x", [N, N, N]),
    ("CLIENT KILL ID 1", [N, N, N]),
    ("ACL SETUSER app +@all", [N, N, N]),
    ("ACL DELUSER app", [N, N, N]),
    ("ACL SAVE", [N, N, N]),
    // Administrative, not needed by applications.
    ("ACL LIST", [N, N, Y]),
    ("CLIENT LIST", [N, N, Y]),
    ("CLIENT NO-EVICT on", [N, N, Y]),
    ("SAVE", [N, N, Y]),
    ("BGSAVE", [N, N, Y]),
    ("BGREWRITEAOF", [N, N, Y]),
    ("SORT user:1", [N, N, Y]),
    ("LATENCY RESET", [N, N, Y]),
    ("SLOWLOG RESET", [N, N, Y]),
    ("CLUSTER RESET", [N, N, Y]),
];

/// What the replication user may run besides PSYNC, REPLCONF and PING: commands every
/// connection may send, authenticated or not.
const ALWAYS_ALLOWED: &[&str] = &["auth", "hello", "reset", "quit"];

struct Redis {
    _proc: Proc,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

/// A redis-server with georep's ACL file, written by the real `georep acl-file`.
async fn redis() -> Redis {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    for (file, password) in PASSWORDS {
        write_private(&creds.join(file), password);
    }
    let acl = dir.path().join("users.acl");
    let out = std::process::Command::new(GEOREP)
        .args(["acl-file", "--credentials"])
        .arg(&creds)
        .arg("--out")
        .arg(&acl)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let addr = free_addr();
    let proc = Proc::spawn(
        "redis-server",
        &[
            "--port",
            &addr.port().to_string(),
            "--bind",
            "127.0.0.1",
            "--aclfile",
            acl.to_str().unwrap(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            dir.path().to_str().unwrap(),
        ],
    );
    wait_listening(addr).await;
    Redis {
        _proc: proc,
        addr,
        _dir: dir,
    }
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    writeln!(f, "{text}").unwrap();
}

async fn login(addr: std::net::SocketAddr, user: &str) -> Conn {
    let password = match user {
        "georep-admin" => PASSWORDS[0].1,
        "georep-replication" => PASSWORDS[1].1,
        _ => PASSWORDS[2].1,
    };
    let creds = Credentials {
        user: user.into(),
        password: password.into(),
    };
    Conn::connect(addr, Some(&creds), Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{user} cannot log in: {e}"))
}

/// Whether `user` may run `args`: `ACL DRYRUN` answers OK, or a sentence saying why not.
async fn may(admin: &mut Conn, user: &str, args: &[String]) -> Result<bool, String> {
    let mut cmd = vec!["ACL".to_string(), "DRYRUN".into(), user.into()];
    cmd.extend_from_slice(args);
    match admin.cmd(&cmd).await {
        Ok(Value::Simple(ok)) if ok == "OK" => Ok(true),
        Ok(v) => match v.text() {
            Some(why) if why.contains("no permissions") => Ok(false),
            other => Err(format!("{cmd:?}: unexpected answer {other:?}")),
        },
        Err(e) => Err(format!("{cmd:?}: {e}")),
    }
}

fn words(line: &str) -> Vec<String> {
    line.split(' ').map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_user_runs_exactly_what_the_table_says() {
    let redis = redis().await;
    let mut admin = login(redis.addr, "georep-admin").await;
    let mut wrong = Vec::new();
    for (line, expected) in TABLE {
        for (user, want) in USERS.iter().zip(expected) {
            match may(&mut admin, user, &words(line)).await {
                Ok(got) if got == *want => {}
                Ok(got) => wrong.push(format!(
                    "{user} {} run `{line}`",
                    if got { "CAN" } else { "cannot" }
                )),
                Err(e) => wrong.push(e),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the ACL file differs from the table:\n{}",
        wrong.join("\n")
    );
}

/// Every command and subcommand the server knows, with a minimal argument list of its arity.
async fn every_command(admin: &mut Conn) -> Vec<(String, Vec<String>, Vec<String>)> {
    let Value::Array(Some(infos)) = admin.cmd(&["COMMAND", "INFO"]).await.unwrap() else {
        panic!("COMMAND INFO is not an array");
    };
    let mut out = Vec::new();
    let mut stack: Vec<Value> = infos;
    while let Some(info) = stack.pop() {
        let Value::Array(Some(fields)) = info else {
            continue;
        };
        let name = fields[0].text().unwrap();
        let Value::Int(arity) = fields[1] else {
            panic!("{name}: arity");
        };
        let categories = match fields.get(6) {
            Some(Value::Array(Some(c))) => c.iter().filter_map(Value::text).collect(),
            _ => Vec::new(),
        };
        if let Some(Value::Array(Some(subs))) = fields.get(9) {
            if !subs.is_empty() {
                stack.extend(subs.iter().cloned());
                continue;
            }
        }
        let mut args: Vec<String> = name.split('|').map(str::to_owned).collect();
        while args.len() < arity.unsigned_abs() as usize {
            args.push("x".into());
        }
        out.push((name, categories, args));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn no_user_gains_a_command_it_does_not_need() {
    let redis = redis().await;
    let mut admin = login(redis.addr, "georep-admin").await;
    let commands = every_command(&mut admin).await;
    assert!(commands.len() > 200, "{} commands", commands.len());
    let mut replication = BTreeSet::new();
    let mut app_admin = BTreeSet::new();
    for (name, categories, args) in &commands {
        if may(&mut admin, "georep-replication", args).await.unwrap() {
            replication.insert(name.clone());
        }
        let privileged = categories
            .iter()
            .any(|c| c == "@admin" || c == "@dangerous");
        if privileged && may(&mut admin, "app", args).await.unwrap() {
            app_admin.insert(name.clone());
        }
    }
    replication.retain(|c| !ALWAYS_ALLOWED.contains(&c.as_str()));
    let needed: BTreeSet<String> = ["ping", "psync", "replconf"].map(String::from).into();
    assert_eq!(replication, needed, "what georep-replication can run");
    assert!(
        app_admin.is_empty(),
        "app can run administrative or dangerous commands: {app_admin:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_app_user_cannot_touch_georeps_keys_even_from_a_script() {
    let redis = redis().await;
    let mut admin = login(redis.addr, "georep-admin").await;
    admin
        .cmd(&["HSET", "georep:meta", "epoch", "2", "primary", "eu"])
        .await
        .unwrap();
    let mut app = login(redis.addr, "app").await;
    let denied = |r: Result<Value, resp::Error>| match r {
        Err(e) => e.to_string(),
        Ok(v) => panic!("the app user was allowed: {v:?}"),
    };
    let e = denied(
        app.cmd(&["HSET", "georep:meta", "epoch", "1000", "primary", "x"])
            .await,
    );
    assert!(e.contains("NOPERM"), "{e}");
    let e = denied(app.cmd(&["SET", "georep:meta", "x"]).await);
    assert!(e.contains("NOPERM"), "{e}");
    let script = "return redis.call('HSET', 'georep:meta', 'epoch', '18446744073709551615')";
    let e = denied(app.cmd(&["EVAL", script, "0"]).await);
    // Redis 7.0 says "can't access" or NOPERM; Valkey 8 "No permissions to access a key".
    assert!(
        ["can't access", "NOPERM", "No permissions"]
            .iter()
            .any(|m| e.contains(m)),
        "{e}"
    );
    // And in another database, which the agent never reads, it is refused all the same.
    app.cmd(&["SELECT", "1"]).await.unwrap();
    let e = denied(app.cmd(&["HSET", "georep:meta", "epoch", "1000"]).await);
    assert!(e.contains("NOPERM"), "{e}");
    app.cmd(&["SELECT", "0"]).await.unwrap();
    // Its own keys, including look-alikes, work.
    for key in ["user:1", "geo:points", "georep", "georepx", "GEOREP:meta"] {
        app.cmd(&["SET", key, "v"]).await.unwrap();
    }
    let meta = admin
        .cmd(&["HMGET", "georep:meta", "epoch", "primary"])
        .await
        .unwrap();
    assert_eq!(
        meta,
        Value::Array(Some(vec![
            Value::Bulk(Some(b"2".to_vec())),
            Value::Bulk(Some(b"eu".to_vec()))
        ]))
    );
    // No password, no access: the default user is off.
    let mut anonymous = Conn::connect(redis.addr, None, Duration::from_secs(5))
        .await
        .unwrap();
    let e = denied(anonymous.cmd(&["PING"]).await);
    assert!(e.contains("NOAUTH"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_files_are_read_bounded_and_warned_about_like_keys() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (file, password) in PASSWORDS {
        write_private(&dir.path().join(file), password);
    }
    let app = dir.path().join("app.password");
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o644)).unwrap();
    let acl_file = |out: &str| {
        std::process::Command::new(GEOREP)
            .args(["acl-file", "--credentials"])
            .arg(dir.path())
            .arg("--out")
            .arg(dir.path().join(out))
            .output()
            .unwrap()
    };
    let out = acl_file("a.acl");
    assert!(out.status.success(), "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("password file is readable by every user")
            && log.contains(app.to_str().unwrap())
            && log.contains("mode=0644")
            && !log.contains(PASSWORDS[2].1),
        "{log}"
    );
    std::fs::remove_file(&app).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &app).unwrap();
    let started = std::time::Instant::now();
    let out = acl_file("b.acl");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("app.password") && err.contains("1 MiB"),
        "{err}"
    );
}
