//! Replies, encoded for the connection's protocol: RESP2, or RESP3 after `HELLO 3`.
//!
//! The same reply tree encodes both ways, as in Redis: a map is a flat array in RESP2, a push is
//! an array, and the null types collapse to RESP2's null bulk string or null array.

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, every connection's start.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

impl Protocol {
    /// The number `HELLO` reports.
    pub fn version(self) -> i64 {
        match self {
            Self::Resp2 => 2,
            Self::Resp3 => 3,
        }
    }
}

/// A reply to one command, or a pushed pub/sub message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(&'static str),
    /// `-ERR …`: the text includes its code (`ERR`, `NOAUTH`, …).
    Error(String),
    /// `:1`
    Int(i64),
    /// `$3\r\nabc`
    Bulk(Vec<u8>),
    /// A null bulk string (`$-1`, RESP3 `_`).
    NullBulk,
    /// A null array (`*-1`, RESP3 `_`).
    NullArray,
    /// `*N …`
    Array(Vec<Self>),
    /// RESP3 `%N …`, a flat key-value array in RESP2.
    Map(Vec<(Self, Self)>),
    /// RESP3 `>N …` (pub/sub), an array in RESP2.
    Push(Vec<Self>),
}

impl Reply {
    /// `-ERR <text>`.
    pub fn err(text: impl std::fmt::Display) -> Self {
        Self::Error(format!("ERR {text}"))
    }

    /// A bulk string from text.
    pub fn text(s: impl AsRef<[u8]>) -> Self {
        Self::Bulk(s.as_ref().to_vec())
    }

    /// Appends the encoding of this reply to `out`.
    pub fn encode(&self, protocol: Protocol, out: &mut Vec<u8>) {
        let resp3 = protocol == Protocol::Resp3;
        match self {
            Self::Simple(s) => line(out, b'+', s.as_bytes()),
            // Error text comes partly from clients (unknown command names): never let it break
            // the framing.
            Self::Error(e) => {
                let clean: Vec<u8> = e
                    .bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b })
                    .collect();
                line(out, b'-', &clean);
            }
            Self::Int(n) => line(out, b':', n.to_string().as_bytes()),
            Self::Bulk(b) => {
                line(out, b'$', b.len().to_string().as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Self::NullBulk if resp3 => out.extend_from_slice(b"_\r\n"),
            Self::NullBulk => out.extend_from_slice(b"$-1\r\n"),
            Self::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Self::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Self::Array(items) => {
                line(out, b'*', items.len().to_string().as_bytes());
                items.iter().for_each(|i| i.encode(protocol, out));
            }
            Self::Push(items) => {
                let kind = if resp3 { b'>' } else { b'*' };
                line(out, kind, items.len().to_string().as_bytes());
                items.iter().for_each(|i| i.encode(protocol, out));
            }
            Self::Map(pairs) => {
                if resp3 {
                    line(out, b'%', pairs.len().to_string().as_bytes());
                } else {
                    line(out, b'*', (2 * pairs.len()).to_string().as_bytes());
                }
                for (k, v) in pairs {
                    k.encode(protocol, out);
                    v.encode(protocol, out);
                }
            }
        }
    }
}

fn line(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, p: Protocol) -> String {
        let mut out = Vec::new();
        r.encode(p, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn maps_pushes_and_nulls_follow_the_protocol() {
        let map = Reply::Map(vec![(Reply::text("proto"), Reply::Int(3))]);
        assert_eq!(enc(&map, Protocol::Resp2), "*2\r\n$5\r\nproto\r\n:3\r\n");
        assert_eq!(enc(&map, Protocol::Resp3), "%1\r\n$5\r\nproto\r\n:3\r\n");
        let push = Reply::Push(vec![Reply::text("message")]);
        assert_eq!(enc(&push, Protocol::Resp2), "*1\r\n$7\r\nmessage\r\n");
        assert_eq!(enc(&push, Protocol::Resp3), ">1\r\n$7\r\nmessage\r\n");
        assert_eq!(enc(&Reply::NullArray, Protocol::Resp2), "*-1\r\n");
        assert_eq!(enc(&Reply::NullBulk, Protocol::Resp2), "$-1\r\n");
        assert_eq!(enc(&Reply::NullBulk, Protocol::Resp3), "_\r\n");
    }

    #[test]
    fn error_text_cannot_break_framing() {
        let e = Reply::err("unknown command 'a\r\nb'");
        assert_eq!(enc(&e, Protocol::Resp2), "-ERR unknown command 'a  b'\r\n");
    }
}
