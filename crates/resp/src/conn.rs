//! One authenticated connection to Redis.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::codec::{decode, encode, DecodeError, Value};
use crate::info::Info;

/// An ACL user name and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// ACL user name.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, password: MASKED }}",
            self.user
        )
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting, reading or writing failed.
    #[error("redis at {addr}: {source}")]
    Io {
        /// The server.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No complete reply within the timeout.
    #[error("redis at {addr}: no reply within {timeout:?}")]
    Timeout {
        /// The server.
        addr: SocketAddr,
        /// The timeout.
        timeout: Duration,
    },
    /// The server replied with something that is not RESP.
    #[error("redis at {addr}: {source}")]
    Protocol {
        /// The server.
        addr: SocketAddr,
        /// Why.
        source: DecodeError,
    },
    /// The server closed the connection.
    #[error("redis at {addr} closed the connection")]
    Closed {
        /// The server.
        addr: SocketAddr,
    },
    /// The server answered with an error reply.
    #[error("redis at {addr}: {message}")]
    Command {
        /// The server.
        addr: SocketAddr,
        /// Redis's error text, e.g. `WRONGPASS …`.
        message: String,
    },
}

/// A connection that sends one command at a time and waits for its reply.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    addr: SocketAddr,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Conn {
    /// Connects and, with credentials, authenticates (`AUTH user password`).
    pub async fn connect(
        addr: SocketAddr,
        credentials: Option<&Credentials>,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout { addr, timeout })?
            .map_err(|source| Error::Io { addr, source })?;
        let _ = stream.set_nodelay(true);
        let mut conn = Self {
            stream,
            addr,
            buf: Vec::with_capacity(4096),
            timeout,
        };
        if let Some(c) = credentials {
            conn.cmd(&["AUTH", &c.user, &c.password]).await?;
        }
        Ok(conn)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends a command and returns its reply; an error reply becomes [`Error::Command`].
    pub async fn cmd<S: AsRef<[u8]>>(&mut self, args: &[S]) -> Result<Value, Error> {
        let timeout = self.timeout;
        self.cmd_with_timeout(args, timeout).await
    }

    /// Like [`Conn::cmd`] with another timeout (for blocking commands).
    pub async fn cmd_with_timeout<S: AsRef<[u8]>>(
        &mut self,
        args: &[S],
        timeout: Duration,
    ) -> Result<Value, Error> {
        let addr = self.addr;
        let args: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
        let mut out = Vec::new();
        encode(&args, &mut out);
        let exchange = async {
            self.stream
                .write_all(&out)
                .await
                .map_err(|source| Error::Io { addr, source })?;
            self.read_reply().await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(Error::Timeout { addr, timeout }),
            Ok(Ok(Value::Error(message))) => Err(Error::Command { addr, message }),
            Ok(other) => other,
        }
    }

    /// `INFO` for the given sections (e.g. `["replication", "stats"]`).
    pub async fn info(&mut self, sections: &[&str]) -> Result<Info, Error> {
        let mut args = vec!["INFO"];
        args.extend_from_slice(sections);
        let reply = self.cmd(&args).await?;
        let text = reply.text().ok_or(Error::Protocol {
            addr: self.addr,
            source: DecodeError("INFO reply is not a string"),
        })?;
        Ok(Info::parse(&text))
    }

    async fn read_reply(&mut self) -> Result<Value, Error> {
        let addr = self.addr;
        loop {
            match decode(&self.buf).map_err(|source| Error::Protocol { addr, source })? {
                Some((value, used)) => {
                    self.buf.drain(..used);
                    return Ok(value);
                }
                None => {
                    let mut chunk = [0u8; 16 * 1024];
                    let n = self
                        .stream
                        .read(&mut chunk)
                        .await
                        .map_err(|source| Error::Io { addr, source })?;
                    if n == 0 {
                        return Err(Error::Closed { addr });
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
}
