//! Sockets: listening, connecting, and socket options, for TCP and UNIX sockets alike.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{tcp, unix, TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};

use crate::addr::Address;

/// The read half of a connection: TCP or UNIX, so that the pump can reach the socket's options.
#[derive(Debug)]
pub(crate) enum ReadHalf {
    Tcp(tcp::OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
}

impl ReadHalf {
    /// The TCP socket, whose readiness honours a low-water mark (a UNIX one's does not).
    pub(crate) fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Self::Tcp(r) => Some(r.as_ref()),
            Self::Unix(_) => None,
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            Self::Unix(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// The write half of a connection; `shutdown` sends FIN on TCP.
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Both halves of one connection, used independently by the pump's two directions.
pub(crate) struct Halves {
    pub(crate) read: ReadHalf,
    pub(crate) write: BoxWrite,
}

/// An accepted or dialed connection.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A UNIX-domain connection.
    Unix(UnixStream),
}

impl Stream {
    /// TCP_NODELAY always (we batch ourselves); SO_KEEPALIVE unless disabled (spiped's `-j`).
    fn configure(&self, keepalive: bool) -> io::Result<()> {
        if let Self::Tcp(s) = self {
            s.set_nodelay(true)?;
            SockRef::from(s).set_keepalive(keepalive)?;
        }
        Ok(())
    }

    pub(crate) fn into_halves(self) -> Halves {
        match self {
            Self::Tcp(s) => {
                let (r, w) = s.into_split();
                Halves {
                    read: ReadHalf::Tcp(r),
                    write: Box::new(w),
                }
            }
            Self::Unix(s) => {
                let (r, w) = s.into_split();
                Halves {
                    read: ReadHalf::Unix(r),
                    write: Box::new(w),
                }
            }
        }
    }
}

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    /// Listening on TCP.
    Tcp(TcpListener),
    /// Listening on a UNIX socket; the path is removed again on drop.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `addr`, resolving a host name once (spiped never re-resolves its source either).
    pub async fn bind(addr: &Address) -> io::Result<Self> {
        match addr {
            Address::Unix(path) => Ok(Self::Unix(bind_unix(path).await?, path.clone())),
            _ => {
                let addrs = addr.resolve().await.expect("not a UNIX path")?;
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to bind");
                for a in addrs {
                    match TcpListener::bind(a).await {
                        Ok(l) => return Ok(Self::Tcp(l)),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
        }
    }

    /// Where we listen, for logs and for tests that bound port 0.
    pub fn local_addr(&self) -> io::Result<String> {
        match self {
            Self::Tcp(l) => l.local_addr().map(|a| a.to_string()),
            Self::Unix(_, p) => Ok(p.display().to_string()),
        }
    }

    /// Accepts one connection, returning it with a printable peer address.
    pub(crate) async fn accept(&self, keepalive: bool) -> io::Result<(Stream, String)> {
        let (stream, peer) = match self {
            Self::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                (Stream::Tcp(s), peer.to_string())
            }
            Self::Unix(l, path) => {
                let (s, _) = l.accept().await?;
                (Stream::Unix(s), format!("unix:{}", path.display()))
            }
        };
        stream.configure(keepalive)?;
        Ok((stream, peer))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds a UNIX socket, replacing a stale socket file that nothing listens on any more.
async fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(e);
            }
            std::fs::remove_file(path)?;
            UnixListener::bind(path)
        }
        other => other,
    }
}

/// Where connections go: a UNIX path, or TCP addresses kept fresh by the resolver.
#[derive(Debug, Clone)]
pub(crate) enum Dial {
    Unix(PathBuf),
    Tcp(tokio::sync::watch::Receiver<std::sync::Arc<Vec<SocketAddr>>>),
}

/// Connects to the target, trying each resolved address in order (as spiped does).
pub(crate) async fn connect(
    dial: &Dial,
    bind: Option<SocketAddr>,
    keepalive: bool,
) -> io::Result<Stream> {
    let stream = match dial {
        Dial::Unix(path) => Stream::Unix(UnixStream::connect(path).await?),
        Dial::Tcp(addrs) => {
            let addrs = addrs.borrow().clone();
            let mut last = io::Error::new(io::ErrorKind::NotFound, "target resolved to nothing");
            let mut connected = None;
            for &a in addrs.iter() {
                match connect_tcp(a, bind).await {
                    Ok(s) => {
                        connected = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            Stream::Tcp(connected.ok_or(last)?)
        }
    };
    stream.configure(keepalive)?;
    Ok(stream)
}

async fn connect_tcp(addr: SocketAddr, bind: Option<SocketAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(b) = bind {
        socket.bind(b)?;
    }
    socket.connect(addr).await
}
