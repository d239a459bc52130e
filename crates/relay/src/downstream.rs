//! The master side of Redis replication, sans IO: what a replica (Redis or a relay) sends
//! before and after `PSYNC`.
//!
//! [`Master::handle`] answers `AUTH`, `PING` and `REPLCONF` itself and returns a
//! [`Request::Psync`] for the driver, which looks the offset up in the store and writes the
//! `+CONTINUE` / `+FULLRESYNC` reply and the data. After that only `REPLCONF ACK` is expected.
//!
//! `REPLCONF georep-compress zstd` (sent only by relays) is answered `+OK zstd` when this relay
//! is configured to compress; the driver then sends everything after the PSYNC reply in frames
//! ([`crate::compress`]). Otherwise `+OK`, and the bytes stay plain.

use subtle::ConstantTimeEq;

use crate::compress::Compression;
use crate::replid::ReplId;

/// Most bytes a replica may send without completing a command.
const MAX_PENDING: usize = 64 * 1024;

/// The credential downstream connections must present (`masteruser` / `masterauth`).
#[derive(Clone)]
pub struct Credential {
    /// The user name; `AUTH <password>` alone means `default`.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credential {{ user: {:?}, password: MASKED }}",
            self.user
        )
    }
}

/// What the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `PSYNC <replid> <offset>`; `replid` is `None` for `?`.
    Psync {
        /// The replica's replication ID.
        replid: Option<ReplId>,
        /// The next byte it wants.
        offset: u64,
        /// Whether it understands `+CONTINUE <replid>` (`capa psync2`).
        psync2: bool,
    },
    /// `REPLCONF ACK <offset>`: the replica has processed everything up to `offset`.
    Ack(u64),
    /// A failed `AUTH` (already answered; logged and counted by the driver).
    AuthFailed,
    /// `QUIT`, or a protocol error (already answered): close the connection.
    Close,
}

/// One downstream connection.
#[derive(Debug)]
pub struct Master {
    credential: Option<Credential>,
    authenticated: bool,
    psync2: bool,
    listening_port: Option<u16>,
    pending: Vec<u8>,
    outgoing: Vec<u8>,
    synced: bool,
    offer: Compression,
    compress: bool,
}

impl Master {
    /// A connection that must authenticate with `credential` (if any) first; `offer`: what this
    /// relay agrees to compress with, if the replica asks.
    pub fn new(credential: Option<Credential>, offer: Compression) -> Self {
        Self {
            authenticated: credential.is_none(),
            credential,
            psync2: false,
            listening_port: None,
            pending: Vec::new(),
            outgoing: Vec::new(),
            synced: false,
            offer,
            compress: false,
        }
    }

    /// Whether the replica asked for compression and this relay agreed: everything after the
    /// PSYNC reply line goes in frames.
    pub fn compress(&self) -> bool {
        self.compress
    }

    /// The port the replica announced (`REPLCONF listening-port`).
    pub fn listening_port(&self) -> Option<u16> {
        self.listening_port
    }

    /// Marks the sync as started: from now on only ACKs are expected and nothing is answered.
    pub fn set_synced(&mut self) {
        self.synced = true;
    }

    /// Moves the replies queued for the replica into `out`.
    pub fn take_outgoing(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.outgoing);
    }

    /// Handles bytes from the replica.
    pub fn handle(&mut self, input: &[u8]) -> Vec<Request> {
        self.pending.extend_from_slice(input);
        let mut requests = Vec::new();
        loop {
            match resp::decode(&self.pending) {
                Ok(Some((value, used))) => {
                    self.pending.drain(..used);
                    if let Some(r) = self.command(value) {
                        let close = r == Request::Close;
                        requests.push(r);
                        if close {
                            return requests;
                        }
                    }
                }
                Ok(None) if self.pending.len() <= MAX_PENDING => return requests,
                Ok(None) | Err(_) => {
                    self.error("ERR Protocol error: expected a command (array of bulk strings)");
                    requests.push(Request::Close);
                    return requests;
                }
            }
        }
    }

    fn command(&mut self, value: resp::Value) -> Option<Request> {
        let resp::Value::Array(Some(items)) = value else {
            self.error("ERR Protocol error: expected an array");
            return Some(Request::Close);
        };
        let mut args = Vec::with_capacity(items.len());
        for item in items {
            match item {
                resp::Value::Bulk(Some(b)) => args.push(b),
                _ => {
                    self.error("ERR Protocol error: expected bulk strings");
                    return Some(Request::Close);
                }
            }
        }
        let name = args
            .first()
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        if self.synced {
            // A replica streaming from us only sends REPLCONF ACK; nothing is ever answered.
            if name == b"REPLCONF" && args.get(1).is_some_and(|a| a.eq_ignore_ascii_case(b"ACK")) {
                return number(args.get(2)).map(Request::Ack);
            }
            return None;
        }
        match name.as_slice() {
            b"AUTH" => return self.auth(&args[1..]),
            b"QUIT" => {
                self.reply("+OK");
                return Some(Request::Close);
            }
            _ if !self.authenticated => {
                self.error("NOAUTH Authentication required.");
                return None;
            }
            b"PING" => self.reply("+PONG"),
            b"REPLCONF" => return self.replconf(&args[1..]),
            b"PSYNC" => {
                let (Some(id), Some(offset)) = (args.get(1), args.get(2)) else {
                    self.error("ERR wrong number of arguments for 'psync' command");
                    return None;
                };
                let replid = ReplId::parse(id).ok();
                // `PSYNC ? -1` and any unparseable offset ask for a full resync.
                let offset = std::str::from_utf8(offset)
                    .ok()
                    .and_then(|o| o.parse::<u64>().ok())
                    .unwrap_or(0);
                return Some(Request::Psync {
                    replid,
                    offset,
                    psync2: self.psync2,
                });
            }
            b"SYNC" => self.error("ERR this relay only serves PSYNC (Redis 2.8 and later)"),
            _ => self.error("ERR unknown command: a replication relay only serves replicas"),
        }
        None
    }

    fn auth(&mut self, args: &[Vec<u8>]) -> Option<Request> {
        let (user, password) = match args {
            [password] => (b"default".as_slice(), password.as_slice()),
            [user, password] => (user.as_slice(), password.as_slice()),
            _ => {
                self.error("ERR wrong number of arguments for 'auth' command");
                return None;
            }
        };
        let Some(expected) = &self.credential else {
            self.error("ERR AUTH <password> called without any password configured");
            return None;
        };
        let user_ok = user.ct_eq(expected.user.as_bytes());
        let password_ok = password.ct_eq(expected.password.as_bytes());
        if bool::from(user_ok & password_ok) {
            self.authenticated = true;
            self.reply("+OK");
            None
        } else {
            self.error("WRONGPASS invalid username-password pair or user is disabled.");
            Some(Request::AuthFailed)
        }
    }

    fn replconf(&mut self, args: &[Vec<u8>]) -> Option<Request> {
        let mut pairs = args.chunks(2);
        let mut ack = None;
        let mut agreed = None;
        while let Some(pair) = pairs.next() {
            let [key, value] = pair else {
                self.error("ERR syntax error");
                return None;
            };
            match key.to_ascii_lowercase().as_slice() {
                b"listening-port" => {
                    self.listening_port = number(Some(value)).and_then(|p| u16::try_from(p).ok())
                }
                b"capa" if value.eq_ignore_ascii_case(b"psync2") => self.psync2 = true,
                b"georep-compress" => {
                    let asked: Option<Compression> =
                        std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                    self.compress =
                        asked == Some(Compression::Zstd) && self.offer == Compression::Zstd;
                    agreed = Some(self.compress);
                }
                // An ACK before the sync (a replica that thinks it is still attached).
                b"ack" => {
                    ack = number(Some(value));
                    let _ = pairs.next();
                }
                _ => {}
            }
        }
        match ack {
            Some(offset) => Some(Request::Ack(offset)),
            None => {
                self.reply(if agreed == Some(true) {
                    "+OK zstd"
                } else {
                    "+OK"
                });
                None
            }
        }
    }

    fn reply(&mut self, line: &str) {
        self.outgoing.extend_from_slice(line.as_bytes());
        self.outgoing.extend_from_slice(b"\r\n");
    }

    fn error(&mut self, message: &str) {
        self.outgoing.push(b'-');
        self.reply(message);
    }
}

fn number(arg: Option<&Vec<u8>>) -> Option<u64> {
    std::str::from_utf8(arg?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&[u8]]) -> Vec<u8> {
        let mut o = Vec::new();
        resp::encode(args, &mut o);
        o
    }

    fn out(m: &mut Master) -> String {
        let mut o = Vec::new();
        m.take_outgoing(&mut o);
        String::from_utf8(o).unwrap()
    }

    fn guarded() -> Master {
        Master::new(
            Some(Credential {
                user: "replica".into(),
                password: "pw".into(),
            }),
            Compression::None,
        )
    }

    #[test]
    fn a_redis_replica_handshake_reaches_psync() {
        let mut m = guarded();
        assert!(m.handle(&cmd(&[b"PING"])).is_empty());
        assert_eq!(out(&mut m), "-NOAUTH Authentication required.\r\n");
        assert!(m.handle(&cmd(&[b"AUTH", b"replica", b"pw"])).is_empty());
        let mut input = cmd(&[b"REPLCONF", b"listening-port", b"6380"]);
        input.extend(cmd(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"]));
        input.extend(cmd(&[
            b"PSYNC",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            b"101",
        ]));
        let requests = m.handle(&input);
        assert_eq!(out(&mut m), "+OK\r\n+OK\r\n+OK\r\n");
        assert_eq!(m.listening_port(), Some(6380));
        assert_eq!(
            requests,
            vec![Request::Psync {
                replid: Some(ReplId::parse(&[b'a'; 40]).unwrap()),
                offset: 101,
                psync2: true
            }]
        );
        m.set_synced();
        let ack = cmd(&[b"REPLCONF", b"ACK", b"250", b"FACK", b"250"]);
        assert_eq!(m.handle(&ack[..10]), vec![]);
        assert_eq!(m.handle(&ack[10..]), vec![Request::Ack(250)]);
        assert_eq!(out(&mut m), "");
    }

    #[test]
    fn nothing_but_auth_works_without_the_password() {
        let mut m = guarded();
        assert_eq!(
            m.handle(&cmd(&[b"AUTH", b"replica", b"wrong"])),
            vec![Request::AuthFailed]
        );
        assert!(out(&mut m).starts_with("-WRONGPASS"));
        assert_eq!(
            m.handle(&cmd(&[b"AUTH", b"pw"])),
            vec![Request::AuthFailed],
            "default user"
        );
        out(&mut m);
        assert!(m.handle(&cmd(&[b"PSYNC", b"?", b"-1"])).is_empty());
        assert!(out(&mut m).starts_with("-NOAUTH"));
        assert_eq!(m.handle(b"garbage\r\n"), vec![Request::Close]);
        let mut open = Master::new(None, Compression::None);
        assert_eq!(
            open.handle(&cmd(&[b"PSYNC", b"?", b"-1"])),
            vec![Request::Psync {
                replid: None,
                offset: 0,
                psync2: false
            }]
        );
    }

    #[test]
    fn compression_only_when_asked_and_offered() {
        let ask = cmd(&[b"REPLCONF", b"georep-compress", b"zstd"]);
        let mut both = Master::new(None, Compression::Zstd);
        both.handle(&ask);
        assert_eq!(out(&mut both), "+OK zstd\r\n");
        assert!(both.compress());
        let mut not_offered = Master::new(None, Compression::None);
        not_offered.handle(&ask);
        assert_eq!(out(&mut not_offered), "+OK\r\n");
        assert!(!not_offered.compress());
        // A Redis replica never asks: plain bytes even from a relay that offers zstd.
        let mut redis = Master::new(None, Compression::Zstd);
        redis.handle(&cmd(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"]));
        assert_eq!(out(&mut redis), "+OK\r\n");
        assert!(!redis.compress());
        let mut other = Master::new(None, Compression::Zstd);
        other.handle(&cmd(&[b"REPLCONF", b"georep-compress", b"lz4"]));
        assert_eq!(out(&mut other), "+OK\r\n");
        assert!(!other.compress());
    }
}
