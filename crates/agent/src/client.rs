//! The other side of the agent's HTTP API, for `georep status`, `failover`, `promote` and `up`:
//! a minimal HTTP/1.0 client for loopback (or port-forwarded) calls, one request per connection
//! and bounded by a timeout, and the typed calls built on it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use topology::Topology;

use crate::status::{Link, PrimaryChange, RegionStatus, Role};

pub use httpd::auth::Token;

/// A response: status code and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

/// Why a call to an agent failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No connection or no complete answer in time.
    #[error("agent at {addr} unreachable: {why}")]
    Unreachable {
        /// The agent.
        addr: SocketAddr,
        /// Why.
        why: String,
    },
    /// The agent refused the operator token (or its absence).
    #[error("agent at {addr} refused the request (HTTP {status}): {why}")]
    Unauthorized {
        /// The agent.
        addr: SocketAddr,
        /// 401 or 403.
        status: u16,
        /// The agent's reason.
        why: String,
    },
    /// The agent answered with an unexpected HTTP status.
    #[error("agent at {addr} answered HTTP {status}")]
    Status {
        /// The agent.
        addr: SocketAddr,
        /// The status code.
        status: u16,
    },
    /// The body is not what the agent serves.
    #[error("bad status from agent at {addr}: {why}")]
    Malformed {
        /// The agent.
        addr: SocketAddr,
        /// Why.
        why: String,
    },
    /// The agent refused or failed a change of primary; its message.
    #[error("{0}")]
    Refused(String),
    /// The answer to a change of primary is not JSON.
    #[error("agent at {addr} answered HTTP {status}: {body}")]
    NotJson {
        /// The agent.
        addr: SocketAddr,
        /// The status code.
        status: u16,
        /// The body, trimmed.
        body: String,
    },
}

/// Sends `method path` to `addr` without a credential and reads the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> std::io::Result<Response> {
    request_as(addr, method, path, None, timeout).await
}

/// Sends `method path` to `addr`, with `Authorization: Bearer` when given a token, and reads
/// the whole response.
pub async fn request_as(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&Token>,
    timeout: Duration,
) -> std::io::Result<Response> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        let mut req = zeroize_string(format!(
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n"
        ));
        if let Some(t) = token {
            req.push_str("Authorization: Bearer ");
            req.push_str(t.expose());
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response")
            })?;
        Ok(Response {
            status,
            body: body.to_owned(),
        })
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from {addr} within {timeout:?}"),
        )
    })?
}

/// A request text that holds a token: wiped from memory when dropped.
fn zeroize_string(s: String) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(s)
}

/// The agent's reason in a 401/403 answer (`{"error": …}`), or the body.
fn refusal(r: &Response) -> String {
    serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| r.body.trim().to_owned())
}

/// Sends a change of primary (`/failover?…`, `/promote?force=1`) to the agent's control API and
/// returns the agent's report.
pub async fn change(
    addr: SocketAddr,
    path: &str,
    token: &Token,
    timeout: Duration,
) -> Result<PrimaryChange, ClientError> {
    let r = request_as(addr, "POST", path, Some(token), timeout)
        .await
        .map_err(|e| ClientError::Refused(format!("agent at {addr}: {e}")))?;
    if r.status == 401 || r.status == 403 {
        return Err(ClientError::Unauthorized {
            addr,
            status: r.status,
            why: refusal(&r),
        });
    }
    let not_json = || ClientError::NotJson {
        addr,
        status: r.status,
        body: r.body.trim().to_owned(),
    };
    if r.status != 200 {
        let body: serde_json::Value = serde_json::from_str(&r.body).map_err(|_| not_json())?;
        let why = body["error"].as_str().unwrap_or_else(|| r.body.trim());
        return Err(ClientError::Refused(why.to_owned()));
    }
    serde_json::from_str(&r.body).map_err(|_| not_json())
}

/// One region as seen by `georep status`: its agent's report, or why it could not be had.
#[derive(Debug, Clone)]
pub struct Row {
    /// Region name.
    pub name: String,
    /// The agent's report.
    pub status: Result<RegionStatus, ClientError>,
}

impl Row {
    /// Whether this row should make `georep status` exit non-zero.
    pub fn is_unhealthy(&self) -> bool {
        match &self.status {
            Err(_) => true,
            Ok(s) => {
                !s.redis_up
                    || (s.role == Role::Replica && s.link != Link::Up)
                    || s.role == Role::Unknown
                    || s.fenced.is_some()
                    || s.error.is_some()
            }
        }
    }
}

/// Where each region's agent serves its control API when run by `georep up`.
pub fn local_agents(topology: &Topology) -> Vec<(String, SocketAddr)> {
    topology
        .regions
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                SocketAddr::from((
                    [127, 0, 0, 1],
                    topology.local.ports(r.index.index()).control,
                )),
            )
        })
        .collect()
}

/// Fetches `/status` from every agent's control API at once (a dead agent costs its timeout
/// once, not once per region behind it).
pub async fn fetch(agents: &[(String, SocketAddr)], token: &Token) -> Vec<Row> {
    let mut calls = tokio::task::JoinSet::new();
    for (i, (name, addr)) in agents.iter().cloned().enumerate() {
        let token = token.clone();
        calls.spawn(async move {
            let reply =
                request_as(addr, "GET", "/status", Some(&token), Duration::from_secs(2)).await;
            let status = match reply {
                Ok(r) if r.status == 401 || r.status == 403 => Err(ClientError::Unauthorized {
                    addr,
                    status: r.status,
                    why: refusal(&r),
                }),
                Ok(r) if r.status == 200 => {
                    serde_json::from_str(&r.body).map_err(|e| ClientError::Malformed {
                        addr,
                        why: e.to_string(),
                    })
                }
                Ok(r) => Err(ClientError::Status {
                    addr,
                    status: r.status,
                }),
                Err(e) => Err(ClientError::Unreachable {
                    addr,
                    why: e.to_string(),
                }),
            };
            (i, Row { name, status })
        });
    }
    let mut rows: Vec<(usize, Row)> = calls.join_all().await;
    rows.sort_by_key(|(i, _)| *i);
    rows.into_iter().map(|(_, r)| r).collect()
}

/// The primary: the region whose agent reports itself primary at the highest epoch.
pub fn primary(rows: &[Row]) -> Option<&RegionStatus> {
    rows.iter()
        .filter_map(|r| r.status.as_ref().ok())
        .filter(|s| s.role == Role::Primary && s.primary == s.name)
        .max_by_key(|s| s.epoch.unwrap_or(0))
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
                s.role.to_string(),
                s.link.to_string(),
                opt(s.lag_ms),
                opt(s.lag_bytes),
                s.keys,
                s.ops_per_sec,
                opt(s.epoch),
                s.last_sync
                    .map_or_else(|| "-".to_string(), |k| k.to_string()),
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
    out.push_str(&crate::relay_placement::table(rows));
    out
}

/// The JSON form of `georep status --json`.
pub fn json(rows: &[Row], credentials: Option<&std::path::Path>) -> serde_json::Value {
    let regions: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| match &row.status {
            Ok(s) => {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["reachable"] = true.into();
                v
            }
            Err(e) => {
                serde_json::json!({ "name": row.name, "reachable": false, "error": e.to_string() })
            }
        })
        .collect();
    let mut out = serde_json::json!({ "regions": regions });
    if let Some(dir) = credentials {
        out["credentials"] = serde_json::json!({
            "user": region_spec::credentials::APP_USER,
            "password_file": dir.join(region_spec::credentials::APP_FILE),
        });
    }
    out
}
