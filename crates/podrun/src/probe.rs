//! One probe, sent as the kubelet sends it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::{ProbeAction, ProbePlan, Which};

/// Why a probe failed, in the words the kubelet's event would use.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The pod has no such container.
    #[error("no container {0}")]
    NoContainer(String),
    /// The container declares no such probe.
    #[error("{container} has no {which:?} probe")]
    NoProbe {
        /// The container.
        container: String,
        /// The probe asked for.
        which: Which,
    },
    /// Nothing accepted the connection.
    #[error("connect {addr}: {source}")]
    Connect {
        /// Where the probe's port is published.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The socket could not be set up.
    #[error("{0}")]
    Socket(std::io::Error),
    /// The HTTP exchange failed.
    #[error("GET {path}: {source}")]
    Http {
        /// The probe's path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The answer was not HTTP.
    #[error("GET {path}: not an HTTP response: {text:?}")]
    NotHttp {
        /// The probe's path.
        path: String,
        /// What came back.
        text: String,
    },
    /// An HTTP status outside 200-399.
    #[error("GET {path}: {status} {body}")]
    Status {
        /// The probe's path.
        path: String,
        /// The status code.
        status: u16,
        /// The response body.
        body: String,
    },
}

/// Runs `probe` once against `addr` (where its port is published): `Ok` with what answered,
/// or why it failed.
pub(crate) fn once(probe: &ProbePlan, addr: SocketAddr) -> Result<String, ProbeError> {
    let timeout = Duration::from_secs(u64::try_from(probe.timeout_secs.max(1)).unwrap_or(1));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| ProbeError::Connect { addr, source })?;
    let path = match &probe.action {
        ProbeAction::Tcp(_) => return Ok(format!("TCP {addr} accepted")),
        ProbeAction::Http(_, path) => path,
    };
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(ProbeError::Socket)?;
    let http = |source| ProbeError::Http {
        path: path.clone(),
        source,
    };
    // The kubelet's request: HTTP/1.1, its user agent, no keep-alive.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(http)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(http)?;
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProbeError::NotHttp {
            path: path.clone(),
            text: text.clone().into_owned(),
        })?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    if (200..400).contains(&status) {
        Ok(format!("GET {path}: {status} {body}"))
    } else {
        Err(ProbeError::Status {
            path: path.clone(),
            status,
            body: body.to_owned(),
        })
    }
}
