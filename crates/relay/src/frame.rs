//! Finds command boundaries in a replication stream without buffering whole commands.
//!
//! A master's stream is a sequence of RESP arrays of bulk strings. The relay stores and forwards
//! the bytes unchanged; it only needs to know where each command ends, and whether a (small)
//! command is `REPLCONF GETACK`, which a replica must answer.

/// Commands up to this size are kept whole so they can be inspected; `REPLCONF GETACK *` is 37.
const SMALL: usize = 128;
/// Longest header line accepted (`*N` or `$LEN`).
const MAX_LINE: usize = 32;
/// Redis's own limit on a bulk string, and on the number of arguments we accept.
const MAX_LEN: u64 = 512 * 1024 * 1024;

/// The stream is not a sequence of RESP commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed replication stream: {0}")]
pub struct FrameError(&'static str);

/// A complete command found by [`Scanner::feed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Position just after the command, in the slice given to `feed`.
    pub end: usize,
    /// The command's bytes when it is small, for inspection.
    pub small: Option<Vec<u8>>,
}

impl Command {
    /// Whether this is `REPLCONF GETACK …`.
    pub fn is_getack(&self) -> bool {
        let Some(bytes) = &self.small else {
            return false;
        };
        match resp::decode(bytes) {
            Ok(Some((resp::Value::Array(Some(args)), _))) => {
                let arg = |i: usize| match args.get(i) {
                    Some(resp::Value::Bulk(Some(b))) => b.to_ascii_uppercase(),
                    _ => Vec::new(),
                };
                arg(0) == b"REPLCONF" && arg(1) == b"GETACK"
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting `*N\r\n`.
    Array,
    /// Expecting `$LEN\r\n` with `args` arguments still to come.
    BulkHeader { args: u64 },
    /// Inside a bulk string: `left` bytes (including its CRLF) remain.
    BulkBody { args: u64, left: u64 },
}

/// Incremental scanner; feed it every stream byte in order.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    line: Vec<u8>,
    current: Vec<u8>,
    current_len: usize,
}

impl Default for Scanner {
    fn default() -> Self {
        Self {
            state: State::Array,
            line: Vec::with_capacity(MAX_LINE),
            current: Vec::with_capacity(SMALL),
            current_len: 0,
        }
    }
}

impl Scanner {
    /// Whether the scanner stands between two commands.
    pub fn at_boundary(&self) -> bool {
        self.state == State::Array && self.line.is_empty()
    }

    /// Scans `input`, returning every command that ends inside it.
    pub fn feed(&mut self, input: &[u8]) -> Result<Vec<Command>, FrameError> {
        let mut done = Vec::new();
        let mut at = 0;
        while at < input.len() {
            let start = at;
            match self.state {
                State::Array | State::BulkHeader { .. } => {
                    let byte = input[at];
                    at += 1;
                    self.line.push(byte);
                    if self.line.len() > MAX_LINE {
                        return Err(FrameError("header line too long"));
                    }
                    if byte == b'\n' {
                        self.header_line()?;
                    }
                }
                State::BulkBody { args, left } => {
                    let take = left.min((input.len() - at) as u64);
                    at += take as usize;
                    let left = left - take;
                    self.state = match (left, args) {
                        (0, 0) => State::Array,
                        (0, args) => State::BulkHeader { args },
                        (left, args) => State::BulkBody { args, left },
                    };
                }
            }
            self.keep(&input[start..at]);
            if self.at_boundary() && self.current_len > 0 {
                done.push(Command {
                    end: at,
                    small: (self.current_len <= SMALL).then(|| std::mem::take(&mut self.current)),
                });
                self.current.clear();
                self.current_len = 0;
            }
        }
        Ok(done)
    }

    fn keep(&mut self, bytes: &[u8]) {
        self.current_len += bytes.len();
        if self.current_len <= SMALL {
            self.current.extend_from_slice(bytes);
        }
    }

    fn header_line(&mut self) -> Result<(), FrameError> {
        let line = std::mem::take(&mut self.line);
        let body = line
            .strip_suffix(b"\r\n")
            .ok_or(FrameError("header line not ended by CRLF"))?;
        let number = |kind: u8| -> Result<u64, FrameError> {
            let (&first, digits) = body.split_first().ok_or(FrameError("empty line"))?;
            if first != kind {
                return Err(FrameError("expected an array of bulk strings"));
            }
            let n: u64 = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(FrameError("bad length"))?;
            if n > MAX_LEN {
                return Err(FrameError("length out of range"));
            }
            Ok(n)
        };
        self.state = match self.state {
            State::Array => match number(b'*')? {
                0 => return Err(FrameError("empty command")),
                args => State::BulkHeader { args },
            },
            State::BulkHeader { args } => State::BulkBody {
                args: args - 1,
                left: number(b'$')? + 2,
            },
            State::BulkBody { .. } => unreachable!("header lines are read outside bulk bodies"),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cmd(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        resp::encode(args, &mut out);
        out
    }

    #[test]
    fn finds_boundaries_and_getack_across_any_split() {
        let big = vec![b'x'; 1000];
        let mut stream = cmd(&[b"SELECT", b"0"]);
        stream.extend(cmd(&[b"SET", b"k", &big]));
        stream.extend(cmd(&[b"REPLCONF", b"GETACK", b"*"]));
        stream.extend(cmd(&[b"PING"]));
        let ends = [
            cmd(&[b"SELECT", b"0"]).len(),
            cmd(&[b"SELECT", b"0"]).len() + cmd(&[b"SET", b"k", &big]).len(),
        ];
        for split in 0..stream.len() {
            let mut s = Scanner::default();
            let mut found = Vec::new();
            for (base, part) in [(0, &stream[..split]), (split, &stream[split..])] {
                for c in s.feed(part).unwrap() {
                    found.push((base + c.end, c.is_getack()));
                }
            }
            assert_eq!(found.len(), 4, "split at {split}");
            assert_eq!(found[0], (ends[0], false));
            assert_eq!(found[1], (ends[1], false));
            assert!(found[2].1, "GETACK found with split at {split}");
            assert_eq!(found[3].0, stream.len());
            assert!(s.at_boundary());
        }
    }

    #[test]
    fn rejects_what_is_not_a_command() {
        assert!(Scanner::default().feed(b"+OK\r\n").is_err());
        assert!(Scanner::default().feed(b"*1\r\n:5\r\n").is_err());
        assert!(Scanner::default().feed(b"*1\r\n$3\nabc").is_err());
        assert!(Scanner::default().feed(&[b'*'; 40]).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Scanner::default().feed(&bytes);
        }
    }
}
