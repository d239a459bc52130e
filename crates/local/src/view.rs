//! Gathering every region's `/status` and showing it as a table (`georep up`, `georep status`).

use std::net::SocketAddr;
use std::time::Duration;

use agent::RegionStatus;
use topology::Topology;

/// One region as seen by `georep status`: its agent's report, or why it could not be had.
#[derive(Debug, Clone)]
pub struct Row {
    /// Region name.
    pub name: String,
    /// The agent's report.
    pub status: Result<RegionStatus, String>,
}

impl Row {
    /// Whether this row should make `georep status` exit non-zero.
    pub fn is_unhealthy(&self) -> bool {
        match &self.status {
            Err(_) => true,
            Ok(s) => {
                !s.redis_up
                    || (s.role == "replica" && s.link != "up")
                    || s.role == "unknown"
                    || s.fenced.is_some()
            }
        }
    }
}

/// Where each region's agent serves HTTP when run by `georep up`.
pub fn local_agents(topology: &Topology) -> Vec<(String, SocketAddr)> {
    topology
        .regions
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                SocketAddr::from(([127, 0, 0, 1], topology.local.ports(r.index).http)),
            )
        })
        .collect()
}

/// Fetches `/status` from every agent at once (a dead agent costs its timeout once, not once per
/// region behind it).
pub async fn fetch(agents: &[(String, SocketAddr)]) -> Vec<Row> {
    let mut calls = tokio::task::JoinSet::new();
    for (i, (name, addr)) in agents.iter().cloned().enumerate() {
        calls.spawn(async move {
            let reply = crate::http::request(addr, "GET", "/status", Duration::from_secs(2)).await;
            let status = match reply {
                Ok(r) if r.status == 200 => serde_json::from_str(&r.body)
                    .map_err(|e| format!("bad status from agent at {addr}: {e}")),
                Ok(r) => Err(format!("agent at {addr} answered HTTP {}", r.status)),
                Err(e) => Err(format!("agent at {addr} unreachable: {e}")),
            };
            (i, Row { name, status })
        });
    }
    let mut rows: Vec<(usize, Row)> = calls.join_all().await;
    rows.sort_by_key(|(i, _)| *i);
    rows.into_iter().map(|(_, r)| r).collect()
}

/// A fixed-width table, one row per region.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<16} {:<8} {:<6} {:>8} {:>10} {:>8} {:>7} {:>5} {:<9} {}\n",
        "REGION",
        "ROLE",
        "LINK",
        "LAG_MS",
        "LAG_BYTES",
        "KEYS",
        "OPS/S",
        "EPOCH",
        "LAST_SYNC",
        "NOTE"
    );
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    for row in rows {
        match &row.status {
            Ok(s) => out.push_str(&format!(
                "{:<16} {:<8} {:<6} {:>8} {:>10} {:>8} {:>7} {:>5} {:<9} {}\n",
                row.name,
                s.role,
                s.link,
                opt(s.lag_ms),
                opt(s.lag_bytes),
                s.keys,
                s.ops_per_sec,
                opt(s.epoch),
                s.last_sync.as_deref().unwrap_or("-"),
                s.link_error
                    .clone()
                    .or_else(|| s.error.clone())
                    .or_else(|| s.fenced.as_ref().map(|f| format!("fenced: {f}")))
                    .unwrap_or_default(),
            )),
            Err(e) => out.push_str(&format!(
                "{:<16} {:<8} {:<6} {:>8} {:>10} {:>8} {:>7} {:>5} {:<9} {}\n",
                row.name, "?", "?", "-", "-", "-", "-", "-", "-", e
            )),
        }
    }
    out
}

/// The JSON form of `georep status --json`.
pub fn json(rows: &[Row], credentials: Option<&std::path::Path>) -> serde_json::Value {
    let regions: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| match &row.status {
            Ok(s) => {
                let mut v = serde_json::to_value(s).expect("status serialises");
                v["reachable"] = true.into();
                v
            }
            Err(e) => serde_json::json!({ "name": row.name, "reachable": false, "error": e }),
        })
        .collect();
    let mut out = serde_json::json!({ "regions": regions });
    if let Some(dir) = credentials {
        out["credentials"] = serde_json::json!({
            "user": agent::credentials::APP_USER,
            "password_file": dir.join("app.password"),
        });
    }
    out
}
