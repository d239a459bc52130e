//! A real redis-server for tests: a free port, data in a temporary directory, killed on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A redis-server on a free port with its data in a temporary directory; killed on drop.
pub struct Redis {
    /// Where it listens (loopback).
    pub addr: SocketAddr,
    /// Its Unix socket, when started with one.
    pub socket: Option<PathBuf>,
    _proc: crate::Proc,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one and waits until it answers `PING`.
    pub async fn start() -> Self {
        Self::spawn(false).await
    }

    /// Starts one that also listens on a Unix socket in its directory (`unixsocketperm 700`,
    /// as `georep up` configures it): [`Redis::socket`].
    pub async fn start_with_socket() -> Self {
        Self::spawn(true).await
    }

    async fn spawn(unix_socket: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr = crate::free_addr();
        let port = addr.port().to_string();
        let socket = unix_socket.then(|| dir.path().join("redis.sock"));
        let mut args = vec![
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
        ];
        if let Some(path) = &socket {
            args.extend([
                "--unixsocket",
                path.to_str().unwrap(),
                "--unixsocketperm",
                "700",
            ]);
        }
        let proc = crate::Proc::spawn("redis-server", &args);
        // Redis opens every listener before it serves any, so a TCP PING covers the socket.
        crate::eventually(&format!("redis-server on {addr}"), || async move {
            let mut c = resp::Conn::connect(addr, None, Duration::from_secs(1))
                .await
                .ok()?;
            c.cmd(&["PING"]).await.ok().map(drop)
        })
        .await;
        Self {
            addr,
            socket,
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
