//! Real processes for the end-to-end tests: redis-server, and Python scripts that speak a JSON
//! line per step.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// A redis-server on a free port with its data in a temporary directory; killed on drop.
pub struct Redis {
    pub addr: SocketAddr,
    _proc: testkit::Proc,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr = testkit::free_addr();
        let port = addr.port().to_string();
        let proc = testkit::Proc::spawn(
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
        testkit::eventually(&format!("redis-server on {addr}"), || async move {
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

    pub async fn conn(&self) -> resp::Conn {
        resp::Conn::connect(self.addr, None, Duration::from_secs(5))
            .await
            .unwrap()
    }

    pub async fn get(&self, key: &str) -> Option<String> {
        self.conn().await.cmd(&["GET", key]).await.unwrap().text()
    }
}

/// A Python script run in the test venv, talking one JSON object per line on stdout and reading
/// one word per line on stdin. Killed on drop.
pub struct Script {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Script {
    pub fn start(source: &str, args: &[&str]) -> Self {
        let venv = testkit::python::Venv::get();
        let mut cmd = tokio::process::Command::from(venv.script(source, args));
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start python");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// The next step the script reports; its `step` must be `expected`.
    pub async fn step(&mut self, expected: &str) -> serde_json::Value {
        let line = tokio::time::timeout(testkit::patience(), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("script silent while waiting for step {expected}"))
            .unwrap()
            .unwrap_or_else(|| panic!("script ended before step {expected}"));
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
        assert_eq!(v["step"], expected, "{v}");
        v
    }

    /// Tells the script to go on.
    pub async fn send(&mut self, word: &str) {
        self.stdin
            .write_all(format!("{word}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Waits for a clean exit.
    pub async fn finish(mut self) {
        let status = tokio::time::timeout(testkit::patience(), self.child.wait())
            .await
            .expect("script exits")
            .unwrap();
        assert!(status.success(), "script failed: {status}");
    }
}
