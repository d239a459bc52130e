//! spiped's address syntax: `/unix/socket/path`, `[v4]:port`, `[v6]:port`, `host:port`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

/// Where to listen or connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A UNIX-domain socket path (anything starting with `/`).
    Unix(PathBuf),
    /// A literal IP address and port: `[127.0.0.1]:6379`, `[::1]:6379`, `127.0.0.1:6379`.
    Ip(SocketAddr),
    /// A host name resolved through the system resolver: `redis.example.com:6379`.
    Name {
        /// The host name.
        host: String,
        /// The TCP port.
        port: u16,
    },
}

/// A string that is not an address spiped would accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid address {input:?}: {why} (expected /unix/path, [v4]:port, [v6]:port or host:port)"
)]
pub struct AddressError {
    input: String,
    why: &'static str,
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| AddressError {
            input: s.to_owned(),
            why,
        };
        if s.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(s)));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, port) = rest
                .split_once("]:")
                .ok_or_else(|| err("missing \"]:port\""))?;
            let ip = IpAddr::from_str(host).map_err(|_| err("not an IP address inside [ ]"))?;
            let port = port.parse().map_err(|_| err("bad port"))?;
            return Ok(Self::Ip(SocketAddr::new(ip, port)));
        } else {
            s.rsplit_once(':').ok_or_else(|| err("missing \":port\""))?
        };
        let port = port.parse().map_err(|_| err("bad port"))?;
        if host.is_empty() {
            return Err(err("empty host"));
        }
        if host.contains(':') {
            return Err(err("IPv6 addresses must be written [v6]:port"));
        }
        match IpAddr::from_str(host) {
            Ok(ip) => Ok(Self::Ip(SocketAddr::new(ip, port))),
            Err(_) => Ok(Self::Name {
                host: host.to_owned(),
                port,
            }),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "{}", p.display()),
            Self::Ip(SocketAddr::V4(a)) => write!(f, "[{}]:{}", a.ip(), a.port()),
            Self::Ip(SocketAddr::V6(a)) => write!(f, "[{}]:{}", a.ip(), a.port()),
            Self::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl Address {
    /// Resolves a network address to socket addresses, in the resolver's order.
    ///
    /// Returns `None` for a UNIX socket path, which needs no resolution.
    pub async fn resolve(&self) -> Option<std::io::Result<Vec<SocketAddr>>> {
        match self {
            Self::Unix(_) => None,
            Self::Ip(a) => Some(Ok(vec![*a])),
            Self::Name { host, port } => Some(
                tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map(Iterator::collect),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spiped_form() {
        let ok = |s: &str| s.parse::<Address>().unwrap();
        assert_eq!(
            ok("/tmp/redis.sock"),
            Address::Unix("/tmp/redis.sock".into())
        );
        assert_eq!(
            ok("[127.0.0.1]:6379"),
            Address::Ip("127.0.0.1:6379".parse().unwrap())
        );
        assert_eq!(
            ok("[0.0.0.0]:56379"),
            Address::Ip("0.0.0.0:56379".parse().unwrap())
        );
        assert_eq!(ok("[::1]:8025"), Address::Ip("[::1]:8025".parse().unwrap()));
        assert_eq!(ok("10.0.0.1:1"), Address::Ip("10.0.0.1:1".parse().unwrap()));
        assert_eq!(
            ok("redis.eu-central-1.example:56379"),
            Address::Name {
                host: "redis.eu-central-1.example".into(),
                port: 56379
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "/run/x.sock",
            "[127.0.0.1]:6379",
            "[::1]:1",
            "example.com:80",
        ] {
            assert_eq!(s.parse::<Address>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_malformed_input_with_a_reason() {
        for bad in [
            "",
            "6379",
            "host:",
            "host:99999",
            "[::1]6379",
            "[nope]:1",
            "::1:6379",
            ":80",
        ] {
            let e = bad.parse::<Address>().unwrap_err().to_string();
            assert!(e.contains("invalid address"), "{bad}: {e}");
        }
    }
}
