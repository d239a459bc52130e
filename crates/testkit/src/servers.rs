//! Loopback servers for tests: echo, and a recorder that keeps every byte it received.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running server; aborted when dropped.
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    finished: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Echoes each connection's bytes back; closes its write side after the peer's EOF.
    pub async fn echo() -> Self {
        Self::start(true).await
    }

    /// Reads each connection to EOF and keeps the bytes; sends nothing.
    pub async fn recorder() -> Self {
        Self::start(false).await
    }

    /// The bytes each finished or ongoing connection delivered, in accept order.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().expect("lock").clone()
    }

    /// How many connections reached EOF or an error and were closed.
    pub fn finished(&self) -> usize {
        self.finished.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many connections were accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn start(echo: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (r, a, f) = (received.clone(), accepted.clone(), finished.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let slot = {
                    let mut all = r.lock().expect("lock");
                    all.push(Vec::new());
                    all.len() - 1
                };
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (r, f) = (r.clone(), f.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if echo {
                            if sock.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        } else {
                            r.lock().expect("lock")[slot].extend_from_slice(&buf[..n]);
                        }
                    }
                    let _ = sock.shutdown().await;
                    f.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            task,
            received,
            accepted,
            finished,
        }
    }
}
