//! One probe, sent as the kubelet sends it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::{ProbeAction, ProbePlan};

/// Runs `probe` once against `addr` (where its port is published): `Ok` with what answered,
/// or why it failed.
pub(crate) fn once(probe: &ProbePlan, addr: SocketAddr) -> Result<String, String> {
    let timeout = Duration::from_secs(u64::try_from(probe.timeout_secs.max(1)).unwrap_or(1));
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    let path = match &probe.action {
        ProbeAction::Tcp(_) => return Ok(format!("TCP {addr} accepted")),
        ProbeAction::Http(_, path) => path,
    };
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    // The kubelet's request: HTTP/1.1, its user agent, no keep-alive.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: not an HTTP response: {text:?}"))?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    if (200..400).contains(&status) {
        Ok(format!("GET {path}: {status} {body}"))
    } else {
        Err(format!("GET {path}: {status} {body}"))
    }
}
