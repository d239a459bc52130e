//! Starting a local cluster on free ports in a temporary directory, and looking at it.
#![allow(unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use local::{Cluster, Options};
use resp::{Conn, Credentials, Value};
use topology::Topology;

pub const GEOREP: &str = env!("CARGO_BIN_EXE_georep");

/// Runs `georep args…` to the end.
pub async fn georep(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(GEOREP)
        .args(args)
        .output()
        .await
        .unwrap()
}

/// What a command printed, stdout then stderr.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub topology: PathBuf,
    pub cluster: Cluster,
}

/// A block of `100 × regions` ports nobody listens on.
fn free_base(regions: usize) -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    // Tests of this binary run at once: a block handed out here is never handed out again, even
    // before its cluster listens (probing alone can give two tests overlapping blocks).
    static HANDED_OUT: std::sync::Mutex<Vec<(u16, u16)>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let span = 100 * regions as u16;
    let mut x = seed | 1;
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let base = 20_000 + (x % 400) as u16 * 100;
        let overlaps = handed_out
            .iter()
            .any(|&(b, n)| base < b + n && b < base + span);
        let all_free = !overlaps
            && (0..span).all(|p| std::net::TcpListener::bind(("127.0.0.1", base + p)).is_ok());
        if all_free {
            handed_out.push((base, span));
            return base;
        }
    }
}

impl Env {
    pub async fn start(regions: &[&str], latency_ms: u64) -> Self {
        Self::start_with(regions, latency_ms, "").await
    }

    /// Like [`Env::start`], with `extra` appended to the topology (`[redis]`, `[relay]`).
    pub async fn start_with(regions: &[&str], latency_ms: u64, extra: &str) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), regions, latency_ms, extra).await
    }

    /// Like [`Env::start_with`], in `dir`, where the test may have prepared the data directory
    /// ([`Env::data_dir`]) before `georep up` starts (e.g. a region's relay store on a tmpfs).
    pub async fn start_in(
        dir: tempfile::TempDir,
        regions: &[&str],
        latency_ms: u64,
        extra: &str,
    ) -> Self {
        let base = free_base(regions.len());
        let mut toml = format!("name = \"test\"\nprimary = \"{}\"\n", regions[0]);
        for r in regions {
            toml.push_str(&format!(
                "[[region]]\nname = \"{r}\"\nendpoint = \"{r}.example:56379\"\n"
            ));
        }
        toml.push_str(&format!(
            "[local]\nbase_port = {base}\ndata_dir = \"{}\"\n",
            Self::data_dir(dir.path()).display()
        ));
        for (i, a) in regions.iter().enumerate() {
            for b in &regions[i + 1..] {
                toml.push_str(&format!(
                    "[[local.link]]\nbetween = [\"{a}\", \"{b}\"]\nlatency = \"{latency_ms}ms\"\n"
                ));
            }
        }
        toml.push_str(extra);
        let topology = dir.path().join("topology.toml");
        std::fs::write(&topology, toml).unwrap();
        let cluster = start_cluster(&topology).await;
        Self {
            dir,
            topology,
            cluster,
        }
    }

    /// Stops the cluster cleanly and starts it again on the same data.
    pub async fn restart(self) -> Self {
        let Self {
            dir,
            topology,
            cluster,
        } = self;
        cluster.stop().await;
        let cluster = start_cluster(&topology).await;
        Self {
            dir,
            topology,
            cluster,
        }
    }

    /// The data directory of `georep up` in the test's directory `dir`.
    pub fn data_dir(dir: &std::path::Path) -> PathBuf {
        dir.join("data")
    }

    /// Region `name`'s relay store (the agent's default: `<state dir>/relay`).
    pub fn relay_dir(dir: &std::path::Path, name: &str) -> PathBuf {
        Self::data_dir(dir).join(name).join("relay")
    }

    /// A Prometheus sample of region `i`'s agent, 0 when absent.
    pub async fn metric(&self, i: usize, series: &str) -> i64 {
        let body = self.metrics(i).await;
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    fn t(&self) -> &Topology {
        self.cluster.topology()
    }

    /// Region `i`'s name.
    pub fn name(&self, i: usize) -> &str {
        &self.t().regions[i].name
    }

    /// `georep failover --to <region to> --timeout <timeout>`, run to the end.
    pub async fn failover(&self, to: usize, timeout: &str) -> std::process::Output {
        let topology = self.topology.display().to_string();
        georep(&[
            "failover",
            "--to",
            self.name(to),
            "--timeout",
            timeout,
            &topology,
        ])
        .await
    }

    /// Waits until region `p` is the unfenced primary and every other region replicates from it.
    pub async fn wait_primary(&self, p: usize) {
        let primary = self.name(p);
        for i in 0..self.t().regions.len() {
            let what = format!("{} settled under {primary}", self.name(i));
            testkit::eventually(&what, || async {
                let s = self.try_status(i).await?;
                let ok = s["primary"] == primary
                    && if i == p {
                        s["role"] == "primary" && s["fenced"].is_null()
                    } else {
                        s["role"] == "replica" && s["link"] == "up"
                    };
                ok.then_some(())
            })
            .await;
        }
    }

    pub fn redis_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.t().local.ports(i).redis))
    }

    pub fn primary_addr(&self) -> SocketAddr {
        self.redis_addr(self.t().primary.index())
    }

    pub async fn app(&self, i: usize) -> Conn {
        Conn::connect(
            self.redis_addr(i),
            Some(&self.cluster.app_login()),
            Duration::from_secs(5),
        )
        .await
        .unwrap()
    }

    pub async fn admin(&self, i: usize) -> Conn {
        Conn::connect(
            self.redis_addr(i),
            Some(&self.cluster.admin_login()),
            Duration::from_secs(5),
        )
        .await
        .unwrap()
    }

    /// Region `i`'s agent metrics listener (open).
    pub fn http(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.t().local.ports(i).http))
    }

    /// Region `i`'s agent control API (operator token).
    pub fn control(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.t().local.ports(i).control))
    }

    /// The operator token `georep up` made: the one place tests get it.
    pub fn token(&self) -> local::http::Token {
        local::http::Token::read(&self.cluster.layout().operator_token()).unwrap()
    }

    /// An authenticated control request to region `i`'s agent.
    pub async fn control_request(
        &self,
        i: usize,
        method: &str,
        path: &str,
    ) -> std::io::Result<local::http::Response> {
        let token = self.token();
        local::http::request_as(
            self.control(i),
            method,
            path,
            Some(&token),
            Duration::from_secs(2),
        )
        .await
    }

    pub async fn status(&self, i: usize) -> serde_json::Value {
        let r = self.control_request(i, "GET", "/status").await.unwrap();
        serde_json::from_str(&r.body).unwrap()
    }

    /// `/status`, or `None` while the agent does not answer (starting, restarting).
    pub async fn try_status(&self, i: usize) -> Option<serde_json::Value> {
        let r = self.control_request(i, "GET", "/status").await.ok()?;
        serde_json::from_str(&r.body).ok()
    }

    pub async fn metrics(&self, i: usize) -> String {
        local::http::request(self.http(i), "GET", "/metrics", Duration::from_secs(2))
            .await
            .unwrap()
            .body
    }

    pub async fn wait_link(&self, i: usize, state: &str) {
        testkit::eventually(&format!("region {i} link {state}"), || async {
            let v = self.try_status(i).await?;
            (v["link"] == state).then_some(())
        })
        .await;
    }

    pub async fn wait_replicas_up(&self) {
        for i in 0..self.t().regions.len() {
            if i != self.t().primary.index() {
                self.wait_link(i, "up").await;
            }
        }
    }

    pub async fn wait_primary_ready(&self) {
        let addr = self.primary_addr();
        let login = self.cluster.admin_login();
        testkit::eventually("primary reachable", || {
            let login = login.clone();
            async move {
                let mut c = Conn::connect(addr, Some(&login), Duration::from_secs(1))
                    .await
                    .ok()?;
                c.cmd(&["PING"]).await.ok().map(drop)
            }
        })
        .await;
    }

    /// `(sync_full, sync_partial_ok)` of the primary.
    pub async fn primary_syncs(&self) -> (i64, i64) {
        let info = self
            .admin(self.t().primary.index())
            .await
            .info(&["stats"])
            .await
            .unwrap();
        (
            info.int("sync_full").unwrap(),
            info.int("sync_partial_ok").unwrap(),
        )
    }

    /// Waits until every replica holds `n` keys besides georep's own, all equal to the primary's.
    pub async fn wait_converged(&self, n: usize) {
        for i in 0..self.t().regions.len() {
            testkit::eventually(&format!("region {i} has {n} keys"), || async {
                (self.user_keys(i).await.len() == n).then_some(())
            })
            .await;
        }
        self.assert_same_data().await;
    }

    /// Waits until every replica's offset equals the primary's, then compares the data.
    pub async fn wait_converged_with_primary(&self) {
        let p = self.t().primary.index();
        for i in 0..self.t().regions.len() {
            if i == p {
                continue;
            }
            testkit::eventually(&format!("region {i} caught up"), || async {
                let po = self
                    .admin(p)
                    .await
                    .info(&["replication"])
                    .await
                    .ok()?
                    .int("master_repl_offset")?;
                let ro = self
                    .admin(i)
                    .await
                    .info(&["replication"])
                    .await
                    .ok()?
                    .int("slave_repl_offset")?;
                (ro >= po).then_some(())
            })
            .await;
        }
        self.assert_same_data().await;
    }

    async fn user_keys(&self, i: usize) -> Vec<String> {
        let mut c = self.admin(i).await;
        let Ok(Value::Array(Some(keys))) = c.cmd(&["KEYS", "*"]).await else {
            return Vec::new();
        };
        let mut keys: Vec<String> = keys
            .iter()
            .filter_map(Value::text)
            .filter(|k| !k.starts_with("georep:"))
            .collect();
        keys.sort();
        keys
    }

    /// Every region holds the primary's keys (besides georep's own) with the same values.
    pub async fn assert_same_data(&self) {
        let p = self.t().primary.index();
        let keys = self.user_keys(p).await;
        let mut primary = self.admin(p).await;
        for i in 0..self.t().regions.len() {
            if i == p {
                continue;
            }
            let mut replica = self.admin(i).await;
            assert_eq!(
                self.user_keys(i).await.len(),
                keys.len(),
                "region {i}: key count differs"
            );
            for chunk in keys.chunks(500) {
                let mut args = vec!["MGET"];
                args.extend(chunk.iter().map(String::as_str));
                assert_eq!(
                    primary.cmd(&args).await.unwrap(),
                    replica.cmd(&args).await.unwrap(),
                    "region {i}: values differ"
                );
            }
        }
    }
}

async fn start_cluster(topology: &std::path::Path) -> Cluster {
    let topology = Topology::load(topology).unwrap();
    let redis_server = local::process::which("redis-server")
        .expect("redis-server on PATH (apt-get install redis-server)");
    Cluster::start(Options {
        topology,
        georep: GEOREP.into(),
        redis_server,
    })
    .await
    .unwrap()
}

/// A writer that keeps setting fresh keys on the primary and remembers what was acknowledged.
pub struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(String, Instant)>>,
}

impl Load {
    pub fn start(addr: SocketAddr, login: Credentials) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut conn: Option<Conn> = None;
            let mut i = 0u64;
            while !s.load(Ordering::SeqCst) {
                if conn.is_none() {
                    conn = Conn::connect(addr, Some(&login), Duration::from_secs(1))
                        .await
                        .ok();
                    if conn.is_none() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
                let key = format!("load:{i}");
                match conn
                    .as_mut()
                    .unwrap()
                    .cmd(&["SET", &key, &i.to_string()])
                    .await
                {
                    Ok(_) => acked.push((key, Instant::now())),
                    Err(_) => conn = None,
                }
                i += 1;
            }
            acked
        });
        Self { stop, task }
    }

    pub async fn stop(self) -> usize {
        self.stop_with_history().await.len()
    }

    pub async fn stop_with_history(self) -> Vec<(String, Instant)> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}
