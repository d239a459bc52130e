//! The harness's own endpoints behind the tunnels: a sink, an echo server, a timestamping sink
//! and a byte-counting proxy. Blocking sockets and a thread per connection: they should cost
//! little next to the tunnels under test, and they are the same for both implementations.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;

use crate::clock;

/// Size of one timestamped message in the wire-efficiency scenario: sequence number (u64 LE),
/// send time in `clock::now_ns` (u64 LE), then padding.
pub(crate) const STAMP_LEN: usize = 100;

/// What the timestamping sink saw on one connection.
#[derive(Debug)]
pub(crate) struct StampReport {
    /// One-way latency of each message, client write → sink read, in nanoseconds.
    pub(crate) latencies_ns: Vec<u64>,
    /// Every message arrived whole, once, in order.
    pub(crate) intact: bool,
}

/// The three servers, listening on loopback for the whole run.
pub(crate) struct Servers {
    /// Counts bytes until EOF, then answers with the count (u64 LE) and closes.
    pub(crate) sink: SocketAddr,
    /// Writes back whatever it reads; closes after EOF.
    pub(crate) echo: SocketAddr,
    /// Like `sink`, but parses [`STAMP_LEN`] messages and reports their latencies.
    pub(crate) stamp: SocketAddr,
    pub(crate) stamps: Receiver<StampReport>,
}

impl Servers {
    pub(crate) fn start() -> anyhow::Result<Self> {
        let (tx, stamps) = mpsc::channel();
        Ok(Self {
            sink: serve("sink", sink)?,
            echo: serve("echo", echo)?,
            stamp: serve("stamp", move |s| stamp_sink(s, &tx))?,
            stamps,
        })
    }
}

/// Accepts forever on a fresh loopback port, one thread per connection.
fn serve<F>(name: &str, handler: F) -> anyhow::Result<SocketAddr>
where
    F: Fn(TcpStream) + Clone + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let handler = handler.clone();
                let _ = stream.set_nodelay(true);
                thread::spawn(move || handler(stream));
            }
        })?;
    Ok(addr)
}

/// `read`, retrying EINTR; `None` on EOF or error.
fn read_some(s: &mut TcpStream, buf: &mut [u8]) -> Option<usize> {
    loop {
        match s.read(buf) {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

fn sink(mut s: TcpStream) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    while let Some(n) = read_some(&mut s, &mut buf) {
        total += n as u64;
    }
    let _ = s.write_all(&total.to_le_bytes());
}

fn echo(mut s: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Some(n) = read_some(&mut s, &mut buf) {
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn stamp_sink(mut s: TcpStream, report: &Sender<StampReport>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0;
    let mut latencies_ns = Vec::with_capacity(64 * 1024);
    let mut intact = true;
    let mut next_seq = 0u64;
    while let Some(n) = read_some(&mut s, &mut buf[have..]) {
        let now = clock::now_ns();
        have += n;
        let whole = have / STAMP_LEN * STAMP_LEN;
        for msg in buf[..whole].chunks_exact(STAMP_LEN) {
            let seq = u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"));
            let sent = u64::from_le_bytes(msg[8..16].try_into().expect("8 bytes"));
            intact &= seq == next_seq;
            next_seq += 1;
            latencies_ns.push(now.saturating_sub(sent));
        }
        buf.copy_within(whole..have, 0);
        have -= whole;
    }
    intact &= have == 0;
    let _ = report.send(StampReport {
        latencies_ns,
        intact,
    });
}

/// Byte counts of one proxied connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProxyReport {
    /// Client → upstream (here `-e` → `-d`: the direction carrying the payload).
    pub(crate) up: u64,
    /// Upstream → client.
    pub(crate) down: u64,
}

/// A TCP proxy that forwards to `upstream` and counts what passes, per connection. It keeps
/// half-close semantics, so the tunnels behave as if connected directly.
pub(crate) struct CountingProxy {
    pub(crate) addr: SocketAddr,
    pub(crate) reports: Receiver<ProxyReport>,
}

impl CountingProxy {
    pub(crate) fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let (tx, reports) = mpsc::channel();
        let addr = serve("proxy", move |client| {
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            let _ = server.set_nodelay(true);
            let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                return;
            };
            let up = thread::spawn(move || forward(client, server));
            let down = forward(server2, client2);
            let up = up.join().unwrap_or(0);
            let _ = tx.send(ProxyReport { up, down });
        })?;
        Ok(Self { addr, reports })
    }
}

/// Copies until EOF or error, then half-closes `to`; returns the bytes copied.
fn forward(mut from: TcpStream, mut to: TcpStream) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    while let Some(n) = read_some(&mut from, &mut buf) {
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        total += n as u64;
    }
    let _ = to.shutdown(Shutdown::Write);
    total
}
