//! The `georep up`, `status` and `link` commands as an operator runs them.

use std::process::Command;
use std::time::Duration;

use testkit::{eventually, Proc, Signal};

const GEOREP: &str = env!("CARGO_BIN_EXE_georep");

fn topology(dir: &std::path::Path, base: u16) -> std::path::PathBuf {
    let path = dir.join("t.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"cli\"\nprimary = \"us-east-1\"\n\
             [[region]]\nname = \"us-east-1\"\nendpoint = \"a.example:56379\"\n\
             [[region]]\nname = \"eu-central-1\"\nendpoint = \"b.example:56379\"\n\
             [local]\nbase_port = {base}\ndata_dir = \"{}\"\n\
             [[local.link]]\nbetween = [\"us-east-1\", \"eu-central-1\"]\nlatency = \"10ms\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

fn free_base() -> u16 {
    (0..)
        .map(|i| 30_000 + ((std::process::id() as u16 % 100) + i * 7) % 300 * 100)
        .find(|b| (0..200).all(|p| std::net::TcpListener::bind(("127.0.0.1", b + p)).is_ok()))
        .unwrap()
}

fn status(t: &std::path::Path) -> (bool, serde_json::Value) {
    let out = Command::new(GEOREP)
        .args(["status", "--json", t.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn up_status_link_and_a_clean_stop_leaving_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let t = topology(dir.path(), free_base());
    let ts = t.to_str().unwrap();
    let mut up = Proc::spawn(GEOREP, &["up", ts]);

    let json = eventually("both regions replicating", || async {
        let (ok, json) = status(&t);
        ok.then_some(json)
    })
    .await;
    let regions = json["regions"].as_array().unwrap();
    assert_eq!(regions[0]["role"], "primary");
    assert_eq!(regions[1]["role"], "replica");
    assert_eq!(regions[1]["link"], "up");
    for field in [
        "name",
        "role",
        "redis_addr",
        "link",
        "lag_bytes",
        "lag_ms",
        "epoch",
    ] {
        assert!(
            regions[1].get(field).is_some(),
            "status --json lacks {field}"
        );
    }
    let password_file = json["credentials"]["password_file"].as_str().unwrap();
    assert!(std::path::Path::new(password_file).exists());

    // The pids, to check nothing outlives `up`.
    let control = format!(
        "127.0.0.1:{}",
        topology::Topology::load(&t).unwrap().local.control_port()
    )
    .parse()
    .unwrap();
    let token = local::http::Token::read(&dir.path().join("data/secrets/operator-token")).unwrap();
    let body = local::http::request_as(
        control,
        "GET",
        "/processes",
        Some(&token),
        Duration::from_secs(2),
    )
    .await
    .unwrap()
    .body;
    let pids: Vec<local::Pids> = serde_json::from_str(&body).unwrap();
    let all: Vec<u32> = pids
        .iter()
        .flat_map(|p| [p.redis.unwrap(), p.agent.unwrap()])
        .collect();

    // The banner's own command, pasted into a shell elsewhere whose PATH lacks georep.
    let banner = up.stdout();
    let pasted = banner
        .lines()
        .find_map(|l| l.strip_prefix("Cut the WAN between two regions: "))
        .unwrap_or_else(|| panic!("no link cut line in the banner:\n{banner}"));
    assert!(
        pasted.ends_with(&format!("link cut us-east-1 eu-central-1 {ts}")),
        "{pasted}"
    );
    let cut = Command::new("sh")
        .args(["-c", pasted])
        .current_dir("/")
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(
        cut.status.success(),
        "{}",
        String::from_utf8_lossy(&cut.stderr)
    );
    let json = eventually("status reports the cut", || async {
        let (ok, json) = status(&t);
        (!ok && json["regions"][1]["link"] == "down").then_some(json)
    })
    .await;
    assert!(json["regions"][1]["link_error"].as_str().is_some());
    let heal = Command::new(GEOREP)
        .args(["link", "heal", "us-east-1", "eu-central-1", ts])
        .output()
        .unwrap();
    assert!(heal.status.success());
    eventually("healed", || async { status(&t).0.then_some(()) }).await;

    up.signal(Signal::SIGTERM);
    assert_eq!(
        up.exited_within(Duration::from_secs(60)).await,
        Some(0),
        "{}",
        up.stderr()
    );
    for pid in all {
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        assert!(!alive, "process {pid} outlived georep up");
    }
    let (ok, _) = status(&t);
    assert!(!ok, "status must fail when nothing runs");
}

#[test]
fn malformed_topologies_exit_64_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("unknown-field.toml", "name = \"x\"\nprimary = \"a\"\ncolour = 1\n", "3:1"),
        ("no-such-primary.toml", "name = \"x\"\nprimary = \"zz\"\n[[region]]\nname = \"a\"\nendpoint = \"a.example:1\"\n[[region]]\nname = \"b\"\nendpoint = \"b.example:1\"\n", "primary"),
        ("syntax.toml", "name = \"x\nprimary = 3\n", "syntax.toml:1"),
        ("bad-latency.toml", "name = \"x\"\nprimary = \"a\"\n[[region]]\nname = \"a\"\nendpoint = \"a.example:1\"\n[[region]]\nname = \"b\"\nendpoint = \"b.example:1\"\n[[local.link]]\nbetween = [\"a\", \"b\"]\nlatency = \"fast\"\n", "latency"),
        ("huge-port.toml", "name = \"x\"\nprimary = \"a\"\n[[region]]\nname = \"a\"\nendpoint = \"a.example:1\"\n[[region]]\nname = \"b\"\nendpoint = \"b.example:1\"\n[local]\nbase_port = 99999999999999999999\n", "10:13: local.base_port: 99999999999999999999 is out of range: base_port must be between 1024 and 65336 for 2 regions"),
    ];
    for (name, text, expect) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        for cmd in [&["up"][..], &["status"][..]] {
            let out = Command::new(GEOREP).args(cmd).arg(&path).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(64), "{cmd:?} {name}: {err}");
            assert!(
                err.contains(name) && err.contains(expect),
                "{cmd:?} {name}: {err}"
            );
        }
    }
}

#[test]
fn without_redis_server_up_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let t = topology(dir.path(), 40_000);
    let out = Command::new(GEOREP)
        .args(["up", t.to_str().unwrap()])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("apt-get install -y redis-server"), "{err}");
}
