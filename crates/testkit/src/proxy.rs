//! A TCP proxy for fault injection: counts and taps bytes, flips one byte, or goes silent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Which way bytes travel through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// From the connecting client to the upstream server.
    Up,
    /// From the upstream server back to the client.
    Down,
}

/// What to do to the next connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Pass bytes through unchanged.
    None,
    /// XOR the byte at `offset` (counted from the start of the connection, one way) with `mask`.
    Flip {
        /// Direction.
        way: Way,
        /// Byte offset in that direction.
        offset: u64,
        /// Non-zero XOR mask.
        mask: u8,
    },
}

#[derive(Debug, Default)]
struct Shared {
    fault: Mutex<Option<Fault>>,
    up: AtomicU64,
    down: AtomicU64,
    tap: Mutex<Vec<u8>>,
    tapping: std::sync::atomic::AtomicBool,
}

/// A running proxy; aborted when dropped.
#[derive(Debug)]
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Proxies connections to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let fault = s.fault.lock().expect("lock").unwrap_or(Fault::None);
                let s = s.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = relay(cr, sw, Way::Up, fault, s.clone());
                    let down = relay(sr, cw, Way::Down, fault, s);
                    let _ = tokio::join!(up, down);
                });
            }
        });
        Self { addr, shared, task }
    }

    /// Sets the fault applied to connections accepted from now on.
    pub fn set_fault(&self, fault: Fault) {
        *self.shared.fault.lock().expect("lock") = Some(fault);
    }

    /// Bytes relayed so far in each direction.
    pub fn bytes(&self, way: Way) -> u64 {
        match way {
            Way::Up => self.shared.up.load(Ordering::SeqCst),
            Way::Down => self.shared.down.load(Ordering::SeqCst),
        }
    }

    /// Starts keeping a copy of every relayed byte (both ways, interleaved).
    pub fn start_tap(&self) {
        self.shared.tapping.store(true, Ordering::SeqCst);
    }

    /// Everything tapped so far.
    pub fn tapped(&self) -> Vec<u8> {
        self.shared.tap.lock().expect("lock").clone()
    }
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    way: Way,
    fault: Fault,
    shared: Arc<Shared>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Fault::Flip {
            way: w,
            offset: at,
            mask,
        } = fault
        {
            if w == way && (offset..offset + n as u64).contains(&at) {
                buf[(at - offset) as usize] ^= mask;
            }
        }
        offset += n as u64;
        let counter = if way == Way::Up {
            &shared.up
        } else {
            &shared.down
        };
        counter.fetch_add(n as u64, Ordering::SeqCst);
        if shared.tapping.load(Ordering::SeqCst) {
            shared
                .tap
                .lock()
                .expect("lock")
                .extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
