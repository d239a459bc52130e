//! `georep agent`'s relay flags, through the binary: each wrong combination exits with a clear
//! error naming the flag (no panic, no half-started agent), and a region of a `[relay]`
//! topology started with the flags the renderer and `georep up` give runs without the
//! "no relay runs here" warning, while one started without them says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const GEOREP: &str = env!("CARGO_BIN_EXE_georep");

/// A topology of two regions (`a`, `b`), with or without `[relay]`, a tunnel key and the
/// password files, in a temporary directory.
struct Setup {
    dir: tempfile::TempDir,
    topology: PathBuf,
}

impl Setup {
    fn new(relay: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut text = "name = \"t\"\nprimary = \"a\"\n\
                        [[region]]\nname = \"a\"\nendpoint = \"a.example:56379\"\n\
                        [[region]]\nname = \"b\"\nendpoint = \"b.example:56379\"\n"
            .to_owned();
        if relay {
            text.push_str("[relay]\nretention = \"1GiB\"\n");
        }
        let topology = dir.path().join("topology.toml");
        std::fs::write(&topology, text).unwrap();
        let private = |p: &Path| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o400)).unwrap();
        };
        private(&testkit::key_file(dir.path(), "tunnel.key", 7, 32));
        let creds = dir.path().join("credentials");
        std::fs::create_dir(&creds).unwrap();
        for f in ["admin", "replication", "app"] {
            let path = creds.join(format!("{f}.password"));
            std::fs::write(&path, format!("{f}-password-0123456789\n")).unwrap();
            private(&path);
        }
        Self { dir, topology }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `georep agent` for region `a` with free loopback ports, then `extra`.
    fn command(&self, extra: &[&str]) -> Command {
        let port = || testkit::free_addr().to_string();
        let mut cmd = Command::new(GEOREP);
        cmd.args(["agent", "--topology"])
            .arg(&self.topology)
            .args(["--region", "a", "--key", &self.path("tunnel.key")])
            .args(["--credentials", &self.path("credentials")])
            .args(["--state-dir", &self.path("state")])
            .args(["--redis", &port(), "--http", &port()])
            .args(["--tunnel-listen", &bracketed(testkit::free_addr())])
            // Region a's tunnel client to region b listens on base + 1: a free port, so that
            // agents of tests running at once do not collide on the default 16001.
            .arg("--peer-port-base")
            .arg((testkit::free_addr().port() - 1).to_string())
            .args(extra);
        cmd
    }

    /// Runs the agent with `extra`, expecting it to refuse: `(exit code, stderr)`.
    fn refused(&self, extra: &[&str]) -> (i32, String) {
        let out = self.command(extra).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let code = out.status.code().unwrap_or(-1);
        assert_ne!(code, 0, "accepted {extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
        (code, stderr)
    }
}

/// `[host]:port` as the tunnel's address syntax writes a loopback address.
fn bracketed(addr: std::net::SocketAddr) -> String {
    format!("[{}]:{}", addr.ip(), addr.port())
}

#[test]
fn wrong_relay_flags_exit_with_a_clear_error() {
    let relay = Setup::new(true);
    let listen = testkit::free_addr().to_string();
    let tunnel = bracketed(testkit::free_addr());
    let peer = format!("b={}", bracketed(testkit::free_addr()));
    // clap: one relay listener without the other.
    for (flags, names) in [
        (
            vec!["--relay-listen", listen.as_str()],
            "--relay-tunnel-listen",
        ),
        (
            vec!["--relay-tunnel-listen", tunnel.as_str()],
            "--relay-listen",
        ),
        (vec!["--relay-dir", "/tmp/x"], "--relay-listen"),
    ] {
        let (code, stderr) = relay.refused(&flags);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(names), "{flags:?}: {stderr}");
    }
    // The agent's own checks: exit 64 (bad configuration) with the flag and the reason.
    let both = [
        "--relay-listen",
        listen.as_str(),
        "--relay-tunnel-listen",
        &tunnel,
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            [
                &both[..],
                &["--relay-peer-endpoint", "nowhere=[127.0.0.1]:1"],
            ]
            .concat(),
            "--relay-peer-endpoint: no region \"nowhere\"",
        ),
        (
            [&both[..], &["--relay-peer-endpoint", "b"]].concat(),
            "expected REGION=ADDR",
        ),
        (
            [&both[..], &["--relay-peer-endpoint", "b=no-port"]].concat(),
            "--relay-peer-endpoint b=no-port",
        ),
        (
            both.to_vec(),
            "--relay-listen: no --relay-peer-endpoint for region b",
        ),
        (
            vec!["--relay-peer-endpoint", peer.as_str()],
            "--relay-peer-endpoint is only used with --relay-listen",
        ),
    ];
    for (flags, expect) in &cases {
        let (code, stderr) = relay.refused(flags);
        assert_eq!(code, 64, "{flags:?}: {stderr}");
        assert!(stderr.contains(expect), "{flags:?}: {stderr}");
        // One line, the error: nothing logged before it.
        assert!(stderr.starts_with("georep: error: "), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    // A relay asked for in a topology without [relay]: nothing would set its retention.
    let plain = Setup::new(false);
    let (code, stderr) = plain.refused(&[&both[..], &["--relay-peer-endpoint", &peer]].concat());
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("--relay-listen needs a [relay] section"),
        "{stderr}"
    );
}

/// Starts the agent, waits until it is ready (its relay, if any, bound), and stops it: its
/// stderr.
async fn started(setup: &Setup, extra: &[&str]) -> String {
    started_as(setup.command(extra)).await
}

/// Like [`started`], for a prepared command (environment variables and the like).
async fn started_as(mut cmd: Command) -> String {
    cmd.env("RUST_LOG", "info");
    let mut agent = testkit::Proc::spawn_with(&mut cmd);
    testkit::eventually("the agent ready", || async {
        agent.stderr().contains("agent ready").then_some(())
    })
    .await;
    // Still running: the flags were accepted.
    assert_eq!(
        agent.exited_within(Duration::from_millis(300)).await,
        None,
        "{}",
        agent.stderr()
    );
    agent.signal(nix::sys::signal::Signal::SIGTERM);
    let _ = agent.exited_within(Duration::from_secs(10)).await;
    agent.stderr()
}

#[tokio::test]
async fn an_agent_of_a_relay_topology_warns_only_without_the_relay_flags() {
    let relay = Setup::new(true);
    let warning = "no --relay-listen";
    let without = started(&relay, &[]).await;
    assert!(without.contains(warning), "{without}");

    let listen = testkit::free_addr().to_string();
    let tunnel = bracketed(testkit::free_addr());
    let peer = format!("b={}", bracketed(testkit::free_addr()));
    let dir = relay.path("relay-store");
    let with = started(
        &relay,
        &[
            "--relay-listen",
            &listen,
            "--relay-tunnel-listen",
            &tunnel,
            "--relay-peer-endpoint",
            &peer,
            "--relay-dir",
            &dir,
        ],
    )
    .await;
    assert!(!with.contains(warning), "{with}");
    // The store went where --relay-dir says, not under the state directory.
    assert!(Path::new(&dir).is_dir(), "{with}");
    assert!(!relay.dir.path().join("state/relay").exists(), "{with}");
}

#[tokio::test]
async fn endpoint_busy_polling_is_taken_from_the_flag_or_the_environment_and_checked() {
    let setup = Setup::new(false);
    let endpoint = testkit::free_addr().to_string();
    let (code, stderr) = setup.refused(&[
        "--primary-endpoint",
        &endpoint,
        "--endpoint-busy-poll",
        "soon",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--endpoint-busy-poll"), "{stderr}");
    // The flag, then the environment variable `georep up` passes on to its agents.
    let logged = started(
        &setup,
        &[
            "--primary-endpoint",
            &endpoint,
            "--endpoint-busy-poll",
            "250us",
        ],
    )
    .await;
    assert!(logged.contains("busy_poll=250µs"), "{logged}");
    let mut cmd = setup.command(&["--primary-endpoint", &testkit::free_addr().to_string()]);
    cmd.env("GEOREP_ENDPOINT_BUSY_POLL", "100us");
    let logged = started_as(cmd).await;
    assert!(logged.contains("busy_poll=100µs"), "{logged}");
}
