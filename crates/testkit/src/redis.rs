//! A real redis-server for tests: a free port, data in a temporary directory, killed on drop.

use std::net::SocketAddr;
use std::time::Duration;

/// A redis-server on a free port with its data in a temporary directory; killed on drop.
pub struct Redis {
    /// Where it listens (loopback).
    pub addr: SocketAddr,
    _proc: crate::Proc,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one and waits until it answers `PING`.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr = crate::free_addr();
        let port = addr.port().to_string();
        let proc = crate::Proc::spawn(
            "redis-server",
            &[
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--dir",
                dir.path().to_str().unwrap(),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        );
        crate::eventually(&format!("redis-server on {addr}"), || async move {
            let mut c = resp::Conn::connect(addr, None, Duration::from_secs(1))
                .await
                .ok()?;
            c.cmd(&["PING"]).await.ok().map(drop)
        })
        .await;
        Self {
            addr,
            _proc: proc,
            _dir: dir,
        }
    }

    /// A new connection (no credentials: the server has none).
    pub async fn conn(&self) -> resp::Conn {
        resp::Conn::connect(self.addr, None, Duration::from_secs(5))
            .await
            .unwrap()
    }

    /// `GET key`.
    pub async fn get(&self, key: &str) -> Option<String> {
        self.conn().await.cmd(&["GET", key]).await.unwrap().text()
    }
}
