//! The replica side of Redis replication, sans IO.
//!
//! [`Replica::new`] queues `PING`; each reply queues the next step: `AUTH user password`,
//! `REPLCONF listening-port`, `REPLCONF capa eof capa psync2`, `REPLCONF georep-compress zstd`
//! (only when configured for it, see [`crate::compress`]), then `PSYNC replid offset` (`PSYNC ?
//! -1` with nothing stored). The driver sends [`Replica::take_outgoing`], feeds every
//! byte received to [`Replica::handle`] and acts on the [`Event`]s in order: store the RDB, then
//! append the stream. `REPLCONF GETACK` in the stream queues `REPLCONF ACK <offset>` by itself;
//! [`Replica::ack`] queues the periodic one.
//!
//! Offsets are Redis's: the byte after a `+FULLRESYNC <id> <offset>` is byte `offset + 1`, and
//! [`Replica::offset`] is the last byte handled (`master_repl_offset`).

use crate::compress::{CompressError, Compression, Decompressor, MAX_RAW};
use crate::frame::{FrameError, Scanner};
use crate::replid::{ReplId, ReplIdError};

/// Replies to handshake commands are short lines; anything longer is not Redis.
const MAX_LINE: usize = 4096;
/// `$EOF:` marks are 40 bytes.
const EOF_MARK_LEN: usize = 40;
/// Most decompressed bytes one [`Replica::handle`] call turns into events; the rest waits in the
/// decompressor ([`Replica::has_pending`]), so a read of well-compressed bytes cannot balloon.
const DECODE_BUDGET: usize = MAX_RAW;

/// Where to resume from, if anything is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The replication ID of the last stored byte.
    pub replid: ReplId,
    /// The last stored byte's offset.
    pub offset: u64,
}

/// How the relay presents itself to its upstream.
#[derive(Clone)]
pub struct Settings {
    /// `AUTH user password`, if the upstream requires it.
    pub auth: Option<(String, String)>,
    /// Sent as `REPLCONF listening-port` (shown by the upstream in `INFO replication`).
    pub listening_port: u16,
    /// Ask the upstream to compress (used only if it agrees: a relay configured alike).
    pub compression: Compression,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("user", &self.auth.as_ref().map(|(u, _)| u))
            .field("listening_port", &self.listening_port)
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The upstream starts a full resync; the RDB of its dataset at `offset` follows.
    FullResync {
        /// The upstream's replication ID.
        replid: ReplId,
        /// The offset the RDB corresponds to.
        offset: u64,
    },
    /// The next bytes of the RDB.
    Rdb(Vec<u8>),
    /// The RDB is complete; the stream follows from `offset + 1` of the `FullResync`.
    RdbEnd,
    /// The upstream continues from where we asked.
    Continue {
        /// A new replication ID, if the upstream's changed (it was promoted): the bytes we hold
        /// so far stay valid under the old one up to the current offset.
        new_replid: Option<ReplId>,
    },
    /// Stream bytes; the first one is byte `offset`.
    Stream {
        /// Offset of `bytes[0]`.
        offset: u64,
        /// The bytes, exactly as received.
        bytes: Vec<u8>,
    },
}

/// Why the replication link must be dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// Authentication was refused (`-WRONGPASS`, `-NOAUTH`…).
    #[error("upstream refused authentication: {0}")]
    Auth(String),
    /// The upstream cannot serve a sync now (`-NOMASTERLINK`, `-LOADING`); retry later.
    #[error("upstream cannot sync now: {0}")]
    NotReady(String),
    /// The upstream refused `PSYNC` or replied with an error we did not expect.
    #[error("upstream replied {reply:?} to {step}")]
    Refused {
        /// Which command.
        step: &'static str,
        /// The reply line.
        reply: String,
    },
    /// The bytes are not Redis's replication protocol.
    #[error("upstream sent malformed data: {0}")]
    Malformed(&'static str),
    /// A bad replication ID in `+FULLRESYNC` / `+CONTINUE`.
    #[error(transparent)]
    ReplId(#[from] ReplIdError),
    /// The command stream is not RESP commands.
    #[error(transparent)]
    Stream(#[from] FrameError),
    /// A compressed frame that cannot be decoded, or exceeds the bounds.
    #[error("upstream sent a bad compressed frame: {0}")]
    Compression(#[from] CompressError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Ping,
    Auth,
    Port,
    Capa,
    Compress,
    Psync,
}

#[derive(Debug)]
enum State {
    /// Waiting for the reply line to `step`.
    Reply(Step),
    /// After `+FULLRESYNC`, waiting for `$<len>` or `$EOF:<mark>`.
    RdbHeader,
    /// Reading a `$<len>` RDB: `left` bytes remain.
    RdbSized {
        left: u64,
    },
    /// Reading a diskless RDB that ends with `mark`; `held` are bytes that may be its start.
    RdbEof {
        mark: [u8; EOF_MARK_LEN],
        held: Vec<u8>,
    },
    Streaming,
    Failed,
}

/// One replication link, from the first `PING` to the end of the stream.
#[derive(Debug)]
pub struct Replica {
    settings: Settings,
    resume: Option<Resume>,
    state: State,
    line: Vec<u8>,
    outgoing: Vec<u8>,
    offset: u64,
    scanner: Scanner,
    /// Stream bytes of a command not complete yet.
    partial: Vec<u8>,
    /// The upstream agreed to compress (`+OK zstd`).
    compress_agreed: bool,
    /// Everything after the PSYNC reply, when compressed.
    inflate: Option<Decompressor>,
    /// `inflate`'s totals already reported by [`Replica::take_compression_counts`].
    reported: (u64, u64),
}

impl Replica {
    /// Starts a link; `resume` is what the store holds (`None`: ask for a full resync).
    pub fn new(settings: Settings, resume: Option<Resume>) -> Self {
        let mut me = Self {
            settings,
            resume,
            state: State::Reply(Step::Ping),
            line: Vec::new(),
            outgoing: Vec::new(),
            offset: resume.map_or(0, |r| r.offset),
            scanner: Scanner::default(),
            partial: Vec::new(),
            compress_agreed: false,
            inflate: None,
            reported: (0, 0),
        };
        me.send(&[b"PING"]);
        me
    }

    /// The last stream byte handled (what `REPLCONF ACK` reports).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the command stream is flowing (the sync is over).
    pub fn is_streaming(&self) -> bool {
        matches!(self.state, State::Streaming)
    }

    /// Queues `REPLCONF ACK <offset>`; only once streaming (Redis ignores it before).
    pub fn ack(&mut self) {
        if self.is_streaming() {
            let offset = self.offset.to_string();
            self.send(&[b"REPLCONF", b"ACK", offset.as_bytes()]);
        }
    }

    /// Moves the bytes queued for the upstream into `out`.
    pub fn take_outgoing(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.outgoing);
    }

    /// Whether the link is compressed (agreed, and past the PSYNC reply).
    pub fn is_compressed(&self) -> bool {
        self.inflate.is_some()
    }

    /// Whether whole compressed frames wait to be handled: call [`Replica::handle`] with no new
    /// bytes until this is false, acting on the events of each call before the next.
    pub fn has_pending(&self) -> bool {
        self.inflate.as_ref().is_some_and(Decompressor::has_frame)
    }

    /// Compressed bytes received and what they decoded to since the last call.
    pub fn take_compression_counts(&mut self) -> (u64, u64) {
        let Some(d) = &self.inflate else {
            return (0, 0);
        };
        let (wire, raw) = d.totals();
        let delta = (wire - self.reported.0, raw - self.reported.1);
        self.reported = (wire, raw);
        delta
    }

    /// Handles bytes from the upstream. After an error the link is dead: reconnect.
    pub fn handle(&mut self, input: &[u8]) -> Result<Vec<Event>, UpstreamError> {
        let mut events = Vec::new();
        let result = self.handle_wire(input, &mut events);
        if result.is_err() {
            self.state = State::Failed;
        }
        result.map(|()| events)
    }

    /// Bytes as received: plain up to the PSYNC reply, then frames if compression was agreed.
    fn handle_wire(&mut self, input: &[u8], events: &mut Vec<Event>) -> Result<(), UpstreamError> {
        let compressed = match &mut self.inflate {
            Some(inflate) => {
                inflate.push(input)?;
                true
            }
            None => {
                let rest = self.handle_plain(input, events)?;
                match &mut self.inflate {
                    Some(inflate) => inflate.push(rest)?,
                    None => debug_assert!(rest.is_empty()),
                }
                self.inflate.is_some()
            }
        };
        if !compressed {
            return Ok(());
        }
        let mut budget = DECODE_BUDGET;
        while budget > 0 {
            let Some(frame) = self
                .inflate
                .as_mut()
                .and_then(|d| d.next_frame().transpose())
            else {
                break;
            };
            let frame = frame?;
            budget = budget.saturating_sub(frame.len());
            let rest = self.handle_plain(&frame, events)?;
            debug_assert!(rest.is_empty());
        }
        Ok(())
    }

    /// Handles uncompressed bytes; returns what follows a PSYNC reply that switched the link to
    /// compression (those bytes are frames).
    fn handle_plain<'a>(
        &mut self,
        mut input: &'a [u8],
        events: &mut Vec<Event>,
    ) -> Result<&'a [u8], UpstreamError> {
        let was_compressed = self.inflate.is_some();
        while !input.is_empty() {
            match &mut self.state {
                State::Failed => return Err(UpstreamError::Malformed("link already failed")),
                State::Reply(_) | State::RdbHeader => {
                    let Some(used) = self.take_line(input)? else {
                        return Ok(&[]);
                    };
                    input = &input[used..];
                    let line = std::mem::take(&mut self.line);
                    self.on_line(&line, events)?;
                    if !was_compressed && self.inflate.is_some() {
                        return Ok(input);
                    }
                }
                State::RdbSized { left } => {
                    let take = (*left).min(input.len() as u64) as usize;
                    *left -= take as u64;
                    events.push(Event::Rdb(input[..take].to_vec()));
                    input = &input[take..];
                    if *left == 0 {
                        events.push(Event::RdbEnd);
                        self.state = State::Streaming;
                        // Redis's replica acknowledges at once, and a diskless master waits for it.
                        self.ack();
                    }
                }
                State::RdbEof { mark, held } => {
                    held.extend_from_slice(input);
                    input = &[];
                    if let Some(at) = held.windows(EOF_MARK_LEN).position(|w| w == mark) {
                        let rest = held.split_off(at + EOF_MARK_LEN);
                        held.truncate(at);
                        if !held.is_empty() {
                            events.push(Event::Rdb(std::mem::take(held)));
                        }
                        events.push(Event::RdbEnd);
                        self.state = State::Streaming;
                        self.ack();
                        self.stream(&rest, events)?;
                    } else if held.len() >= EOF_MARK_LEN {
                        // Everything but the last 39 bytes cannot be part of the mark.
                        let keep = held.split_off(held.len() - (EOF_MARK_LEN - 1));
                        events.push(Event::Rdb(std::mem::replace(held, keep)));
                    }
                }
                State::Streaming => {
                    self.stream(input, events)?;
                    input = &[];
                }
            }
        }
        Ok(&[])
    }

    /// Passes on whole commands only, so that every stored record, and so every offset the
    /// relay may resume or cut at, is a command boundary; the partial rest waits for more.
    fn stream(&mut self, bytes: &[u8], events: &mut Vec<Event>) -> Result<(), UpstreamError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let first = self.offset + 1;
        let base = self.partial.len() as u64;
        let mut acks = Vec::new();
        let mut last_end = None;
        for command in self.scanner.feed(bytes)? {
            if command.is_getack() {
                // Redis answers with the offset before the GETACK itself.
                let len = command.small.as_ref().map_or(0, Vec::len) as u64;
                acks.push(first + base + command.end as u64 - len - 1);
            }
            last_end = Some(command.end);
        }
        let Some(end) = last_end else {
            self.partial.extend_from_slice(bytes);
            return Ok(());
        };
        let mut whole = std::mem::take(&mut self.partial);
        whole.extend_from_slice(&bytes[..end]);
        self.partial.extend_from_slice(&bytes[end..]);
        self.offset += whole.len() as u64;
        events.push(Event::Stream {
            offset: first,
            bytes: whole,
        });
        for offset in acks {
            let offset = offset.to_string();
            self.send(&[b"REPLCONF", b"ACK", offset.as_bytes()]);
        }
        Ok(())
    }

    /// Collects one `\n`-ended line into `self.line`; returns the bytes used once complete.
    fn take_line(&mut self, input: &[u8]) -> Result<Option<usize>, UpstreamError> {
        match input.iter().position(|&b| b == b'\n') {
            Some(end) => {
                self.line.extend_from_slice(&input[..end]);
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                Ok(Some(end + 1))
            }
            None => {
                self.line.extend_from_slice(input);
                if self.line.len() > MAX_LINE {
                    return Err(UpstreamError::Malformed("reply line too long"));
                }
                Ok(None)
            }
        }
    }

    fn on_line(&mut self, line: &[u8], events: &mut Vec<Event>) -> Result<(), UpstreamError> {
        let text = String::from_utf8_lossy(line).into_owned();
        // Masters send bare newlines to keep the link alive while they prepare the RDB.
        if line.is_empty() {
            return Ok(());
        }
        let refused = |step: &'static str| UpstreamError::Refused {
            step,
            reply: text.chars().take(200).collect(),
        };
        match self.state {
            State::Reply(Step::Ping) => {
                // Like Redis: -NOAUTH (and -NOPERM) to the PING is fine, AUTH comes next.
                let ok = line.starts_with(b"+")
                    || line.starts_with(b"-NOAUTH")
                    || line.starts_with(b"-NOPERM")
                    || line.starts_with(b"-ERR operation not permitted");
                if !ok {
                    return Err(refused("PING"));
                }
                match self.settings.auth.clone() {
                    Some((user, password)) => {
                        self.send(&[b"AUTH", user.as_bytes(), password.as_bytes()]);
                        self.state = State::Reply(Step::Auth);
                    }
                    None => self.send_port(),
                }
            }
            State::Reply(Step::Auth) => {
                if !line.starts_with(b"+") {
                    return Err(UpstreamError::Auth(text.chars().take(200).collect()));
                }
                self.send_port();
            }
            // Both REPLCONFs are advisory: Redis goes on when a master does not know them.
            State::Reply(Step::Port) => {
                self.send(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"]);
                self.state = State::Reply(Step::Capa);
            }
            State::Reply(Step::Capa) => {
                if self.settings.compression == Compression::Zstd {
                    self.send(&[b"REPLCONF", b"georep-compress", b"zstd"]);
                    self.state = State::Reply(Step::Compress);
                } else {
                    self.send_psync();
                }
            }
            // `+OK zstd` from a relay configured alike; `+OK` (a relay without compression) or
            // `-ERR Unrecognized REPLCONF option` (Redis): plain bytes.
            State::Reply(Step::Compress) => {
                self.compress_agreed = line == b"+OK zstd";
                self.send_psync();
            }
            State::Reply(Step::Psync) => {
                if line.starts_with(b"+FULLRESYNC ") || line.starts_with(b"+CONTINUE") {
                    self.on_psync_reply(line, events)?;
                    if self.compress_agreed {
                        self.inflate = Some(Decompressor::new()?);
                    }
                } else if line.starts_with(b"-NOMASTERLINK") || line.starts_with(b"-LOADING") {
                    return Err(UpstreamError::NotReady(text));
                } else {
                    return Err(refused("PSYNC"));
                }
            }
            State::RdbHeader => self.on_rdb_header(line, events, refused)?,
            _ => unreachable!("lines are only read in reply states"),
        }
        Ok(())
    }

    fn send_psync(&mut self) {
        match self.resume {
            Some(r) => {
                let next = (r.offset + 1).to_string();
                self.send(&[b"PSYNC", r.replid.as_bytes(), next.as_bytes()]);
            }
            None => self.send(&[b"PSYNC", b"?", b"-1"]),
        }
        self.state = State::Reply(Step::Psync);
    }

    /// `+FULLRESYNC <id> <offset>` or `+CONTINUE [<id>]`.
    fn on_psync_reply(
        &mut self,
        line: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<(), UpstreamError> {
        if let Some(rest) = line.strip_prefix(b"+FULLRESYNC ") {
            let mut parts = rest.split(|&b| b == b' ');
            let replid = ReplId::parse(parts.next().unwrap_or_default())?;
            let offset = parts
                .next()
                .and_then(|o| std::str::from_utf8(o).ok()?.parse::<u64>().ok())
                .ok_or(UpstreamError::Malformed("bad +FULLRESYNC offset"))?;
            self.offset = offset;
            self.scanner = Scanner::default();
            events.push(Event::FullResync { replid, offset });
            self.state = State::RdbHeader;
        } else if let Some(rest) = line.strip_prefix(b"+CONTINUE") {
            let id = rest.strip_prefix(b" ").unwrap_or(rest);
            let new_replid = if id.is_empty() {
                None
            } else {
                let id = ReplId::parse(id)?;
                (Some(id) != self.resume.map(|r| r.replid)).then_some(id)
            };
            events.push(Event::Continue { new_replid });
            self.state = State::Streaming;
        }
        Ok(())
    }

    /// `$<len>` or `$EOF:<mark>` before the RDB.
    fn on_rdb_header(
        &mut self,
        line: &[u8],
        events: &mut Vec<Event>,
        refused: impl Fn(&'static str) -> UpstreamError,
    ) -> Result<(), UpstreamError> {
        if let Some(mark) = line.strip_prefix(b"$EOF:") {
            let mark: [u8; EOF_MARK_LEN] = mark
                .try_into()
                .map_err(|_| UpstreamError::Malformed("bad $EOF mark"))?;
            self.state = State::RdbEof {
                mark,
                held: Vec::new(),
            };
        } else if let Some(len) = line.strip_prefix(b"$") {
            let left = std::str::from_utf8(len)
                .ok()
                .and_then(|l| l.parse::<u64>().ok())
                .ok_or(UpstreamError::Malformed("bad RDB length"))?;
            if left == 0 {
                events.push(Event::RdbEnd);
                self.state = State::Streaming;
                self.ack();
            } else {
                self.state = State::RdbSized { left };
            }
        } else if line.starts_with(b"-") {
            return Err(refused("the RDB transfer"));
        } else {
            return Err(UpstreamError::Malformed("expected the RDB's $ header"));
        }
        Ok(())
    }

    fn send_port(&mut self) {
        let port = self.settings.listening_port.to_string();
        self.send(&[b"REPLCONF", b"listening-port", port.as_bytes()]);
        self.state = State::Reply(Step::Port);
    }

    fn send(&mut self, args: &[&[u8]]) {
        resp::encode(args, &mut self.outgoing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &[u8; 40] = b"0123456789abcdef0123456789abcdef01234567";
    const ID2: &[u8; 40] = b"fedcba9876543210fedcba9876543210fedcba98";

    fn settings(auth: bool) -> Settings {
        Settings {
            auth: auth.then(|| ("relay".to_owned(), "s3cret".to_owned())),
            listening_port: 7000,
            compression: Compression::None,
        }
    }

    fn out(r: &mut Replica) -> String {
        let mut o = Vec::new();
        r.take_outgoing(&mut o);
        String::from_utf8(o).unwrap()
    }

    fn cmd(args: &[&[u8]]) -> Vec<u8> {
        let mut o = Vec::new();
        resp::encode(args, &mut o);
        o
    }

    /// Drives the handshake up to the PSYNC and checks every command sent on the way.
    fn handshake(r: &mut Replica, auth: bool) -> String {
        assert!(out(r).contains("PING"));
        r.handle(b"-NOAUTH Authentication required.\r\n").unwrap();
        if auth {
            let o = out(r);
            assert!(o.contains("AUTH") && o.contains("relay") && o.contains("s3cret"));
            r.handle(b"+OK\r\n").unwrap();
        }
        assert!(out(r).contains("listening-port\r\n$4\r\n7000"));
        r.handle(b"+OK\r\n").unwrap();
        assert!(out(r).contains("capa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2"));
        r.handle(b"+OK\r\n").unwrap();
        out(r)
    }

    #[test]
    fn full_resync_with_a_sized_rdb_then_the_stream() {
        let mut r = Replica::new(settings(true), None);
        assert!(handshake(&mut r, true).contains("PSYNC\r\n$1\r\n?\r\n$2\r\n-1"));
        let mut input = format!(
            "\n\n+FULLRESYNC {} 100\r\n\n$5\r\nREDIS",
            "0123456789abcdef0123456789abcdef01234567"
        )
        .into_bytes();
        let set = cmd(&[b"SET", b"a", b"1"]);
        input.extend_from_slice(&set);
        let mut events = Vec::new();
        for b in input.chunks(3) {
            events.extend(r.handle(b).unwrap());
        }
        let replid = ReplId::parse(ID).unwrap();
        assert_eq!(
            events[0],
            Event::FullResync {
                replid,
                offset: 100
            }
        );
        let rdb: Vec<u8> = events
            .iter()
            .filter_map(|e| match e {
                Event::Rdb(b) => Some(b.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(rdb, b"REDIS");
        let stream: Vec<u8> = events
            .iter()
            .filter_map(|e| match e {
                Event::Stream { bytes, .. } => Some(bytes.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(stream, set);
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::Stream { offset: 101, .. })));
        assert_eq!(r.offset(), 100 + set.len() as u64);
        assert!(
            out(&mut r).contains("REPLCONF\r\n$3\r\nACK\r\n$3\r\n100"),
            "first ACK right after the RDB"
        );
    }

    #[test]
    fn diskless_rdb_ends_at_its_mark_even_split_across_reads() {
        let mark = [b'm'; 40];
        let mut input = format!(
            "+FULLRESYNC {} 0\r\n$EOF:",
            std::str::from_utf8(ID).unwrap()
        )
        .into_bytes();
        input.extend_from_slice(&mark);
        input.extend_from_slice(b"\r\n");
        let rdb: Vec<u8> = (0..200u8).collect();
        input.extend_from_slice(&rdb);
        input.extend_from_slice(&mark);
        let ping = cmd(&[b"PING"]);
        input.extend_from_slice(&ping);
        for chunk in [1, 7, 39, 40, 41, 1000] {
            let mut r = Replica::new(settings(false), None);
            handshake(&mut r, false);
            let mut events = Vec::new();
            for b in input.chunks(chunk) {
                events.extend(r.handle(b).unwrap());
            }
            let got: Vec<u8> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Rdb(b) => Some(b.clone()),
                    _ => None,
                })
                .flatten()
                .collect();
            assert_eq!(got, rdb, "chunk {chunk}");
            assert_eq!(r.offset(), ping.len() as u64);
            assert!(r.is_streaming());
        }
    }

    #[test]
    fn continue_resumes_at_the_next_byte_and_reports_a_new_id() {
        let resume = Resume {
            replid: ReplId::parse(ID).unwrap(),
            offset: 500,
        };
        let mut r = Replica::new(settings(false), Some(resume));
        let psync = handshake(&mut r, false);
        assert!(psync.contains(std::str::from_utf8(ID).unwrap()) && psync.contains("$3\r\n501"));
        let mut line = b"+CONTINUE ".to_vec();
        line.extend_from_slice(ID2);
        line.extend_from_slice(b"\r\n");
        let events = r.handle(&line).unwrap();
        assert_eq!(
            events,
            vec![Event::Continue {
                new_replid: Some(ReplId::parse(ID2).unwrap())
            }]
        );
        let same = Replica::new(settings(false), Some(resume));
        let mut same = same;
        handshake(&mut same, false);
        assert_eq!(
            same.handle(b"+CONTINUE\r\n").unwrap(),
            vec![Event::Continue { new_replid: None }]
        );
    }

    #[test]
    fn getack_is_answered_with_the_offset_before_it() {
        let resume = Resume {
            replid: ReplId::parse(ID).unwrap(),
            offset: 10,
        };
        let mut r = Replica::new(settings(false), Some(resume));
        handshake(&mut r, false);
        r.handle(b"+CONTINUE\r\n").unwrap();
        let set = cmd(&[b"SET", b"a", b"1"]);
        let mut input = set.clone();
        input.extend(cmd(&[b"REPLCONF", b"GETACK", b"*"]));
        r.handle(&input).unwrap();
        let ack = out(&mut r);
        let expected = (10 + set.len()).to_string();
        assert!(
            ack.contains(&format!("ACK\r\n${}\r\n{expected}\r\n", expected.len())),
            "{ack:?}"
        );
        r.ack();
        assert!(out(&mut r).contains(&(10 + input.len()).to_string()));
    }

    #[test]
    fn refusals_are_typed_errors() {
        let mut r = Replica::new(settings(true), None);
        out(&mut r);
        r.handle(b"+PONG\r\n").unwrap();
        assert!(matches!(
            r.handle(b"-WRONGPASS invalid username-password pair\r\n"),
            Err(UpstreamError::Auth(_))
        ));
        let mut r = Replica::new(settings(false), None);
        handshake(&mut r, false);
        assert!(matches!(
            r.handle(b"-NOMASTERLINK Can't SYNC\r\n"),
            Err(UpstreamError::NotReady(_))
        ));
        let mut r = Replica::new(settings(false), None);
        handshake(&mut r, false);
        assert!(r.handle(b"+FULLRESYNC nothex 1\r\n").is_err());
        let mut r = Replica::new(settings(false), None);
        assert!(r.handle(b"-ERR unknown\r\n").is_err());
    }

    fn zstd_settings() -> Settings {
        Settings {
            compression: Compression::Zstd,
            ..settings(false)
        }
    }

    /// The handshake of a relay that asks for compression, answered `reply`.
    fn compress_handshake(r: &mut Replica, reply: &[u8]) {
        out(r);
        r.handle(b"+PONG\r\n").unwrap();
        out(r);
        r.handle(b"+OK\r\n").unwrap();
        out(r);
        r.handle(b"+OK\r\n").unwrap();
        assert!(out(r).contains("georep-compress\r\n$4\r\nzstd"));
        r.handle(reply).unwrap();
        assert!(out(r).contains("PSYNC"));
    }

    #[test]
    fn a_compressed_full_resync_decodes_split_at_every_byte() {
        let set = cmd(&[b"SET", b"a", b"1"]);
        let mut plain = b"$5\r\nREDIS".to_vec();
        plain.extend_from_slice(&set);
        let mut c = crate::compress::Compressor::new().unwrap();
        let mut frames = Vec::new();
        c.frame(&plain[..3], &mut frames).unwrap();
        c.frame(&plain[3..], &mut frames).unwrap();
        let mut wire =
            format!("+FULLRESYNC {} 100\r\n", std::str::from_utf8(ID).unwrap()).into_bytes();
        wire.extend_from_slice(&frames);
        for split in 0..=wire.len() {
            let mut r = Replica::new(zstd_settings(), None);
            compress_handshake(&mut r, b"+OK zstd\r\n");
            let mut events = r.handle(&wire[..split]).unwrap();
            events.extend(r.handle(&wire[split..]).unwrap());
            assert!(r.is_compressed());
            let rdb: Vec<u8> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Rdb(b) => Some(b.clone()),
                    _ => None,
                })
                .flatten()
                .collect();
            assert_eq!(rdb, b"REDIS", "split at {split}");
            assert_eq!(
                r.offset(),
                100 + set.len() as u64,
                "offsets in uncompressed terms"
            );
            assert_eq!(
                r.take_compression_counts(),
                (frames.len() as u64, plain.len() as u64)
            );
        }
    }

    #[test]
    fn an_upstream_that_does_not_agree_sends_plain_bytes() {
        for reply in [
            &b"+OK\r\n"[..],
            b"-ERR Unrecognized REPLCONF option: georep-compress\r\n",
        ] {
            let mut r = Replica::new(zstd_settings(), None);
            compress_handshake(&mut r, reply);
            let mut wire = format!(
                "+FULLRESYNC {} 0\r\n$5\r\nREDIS",
                std::str::from_utf8(ID).unwrap()
            )
            .into_bytes();
            wire.extend(cmd(&[b"PING"]));
            r.handle(&wire).unwrap();
            assert!(!r.is_compressed());
            assert!(r.is_streaming());
            assert_eq!(r.offset(), cmd(&[b"PING"]).len() as u64);
        }
    }

    #[test]
    fn a_bad_frame_kills_the_link_with_a_compression_error() {
        let resume = Resume {
            replid: ReplId::parse(ID).unwrap(),
            offset: 10,
        };
        let mut r = Replica::new(zstd_settings(), Some(resume));
        compress_handshake(&mut r, b"+OK zstd\r\n");
        let mut wire = b"+CONTINUE\r\n".to_vec();
        wire.extend(5u32.to_le_bytes());
        wire.extend(5u32.to_le_bytes());
        wire.extend(crc32c::crc32c(b"hello").to_le_bytes());
        wire.extend(b"hello");
        assert!(matches!(
            r.handle(&wire),
            Err(UpstreamError::Compression(_))
        ));
        assert!(r.handle(b"x").is_err(), "dead after the error");
    }

    #[test]
    fn well_compressed_input_is_handed_out_a_budget_at_a_time() {
        let resume = Resume {
            replid: ReplId::parse(ID).unwrap(),
            offset: 0,
        };
        let mut r = Replica::new(zstd_settings(), Some(resume));
        compress_handshake(&mut r, b"+OK zstd\r\n");
        let value = vec![b'v'; 1000];
        let one = cmd(&[b"SET", b"k", &value]);
        let stream: Vec<u8> = std::iter::repeat_n(one.as_slice(), 4000)
            .flatten()
            .copied()
            .collect();
        let mut c = crate::compress::Compressor::new().unwrap();
        let mut wire = b"+CONTINUE\r\n".to_vec();
        c.frame(&stream, &mut wire).unwrap();
        assert!(wire.len() < 64 * 1024, "one read's worth: {}", wire.len());
        let mut calls = 0;
        let mut events = r.handle(&wire).unwrap();
        loop {
            let held: usize = events
                .iter()
                .map(|e| match e {
                    Event::Stream { bytes, .. } => bytes.len(),
                    _ => 0,
                })
                .sum();
            assert!(held <= DECODE_BUDGET + 1100, "one call hands out {held}");
            calls += 1;
            if !r.has_pending() {
                break;
            }
            events = r.handle(&[]).unwrap();
        }
        assert!(calls >= 4, "{calls} calls");
        assert_eq!(r.offset(), stream.len() as u64);
    }
}
