//! The relay's disk: one RDB and the command stream after it, in checksummed segment files.
//!
//! ```text
//! DIR/rdb-<offset>.rdb   header (magic, replid, offset, length, CRC-32C of the payload) + RDB
//! DIR/seg-<start>.log    header (magic, replid, first offset, creation time, header CRC)
//!                        then records: length u32 LE, CRC-32C u32 LE, payload
//! ```
//!
//! A record's CRC covers its own offset and its payload, so a record that is damaged, cut short
//! or in the wrong place is caught. Segments are contiguous: each starts at the byte after the
//! previous one's last. A new segment starts when the current one is full or when the upstream's
//! replication ID changes (`+CONTINUE <new id>`), so each segment has one replication ID and the
//! headers together are the ID history that `PSYNC` is checked against.
//!
//! Durability: every record is written with one `write` as it arrives (a `kill -9` loses
//! nothing written); [`Store::sync`] (`fdatasync`) runs every second and when a segment is
//! closed; an RDB is synced and renamed into place before the stream after it is accepted. A
//! power loss can lose up to a second, which recovery trims like any torn tail.

mod format;
mod recover;
mod refresh;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use format::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
pub use refresh::{RdbWriter, RefreshRefused, Refreshed};

use crate::replid::ReplId;
use crate::retention::Retention;

/// An index entry is kept every this many bytes of a segment, to find an offset quickly.
const INDEX_EVERY: u64 = 64 * 1024;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing a file failed; nothing partial was kept.
    #[error("relay store: {action} {path}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why (ENOSPC for a full disk).
        source: std::io::Error,
    },
    /// A checksum did not match: the bytes are not served.
    #[error("relay store: corrupt data in {path} at offset {offset}: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The stream offset (or 0 for a header / an RDB).
        offset: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// The requested offset is not held (deleted by retention or never received).
    #[error("relay store: offset {0} is not held")]
    NotHeld(u64),
    /// Stream bytes that do not follow the last byte held.
    #[error("relay store: append at offset {got}, expected {expected}")]
    Gap {
        /// The next offset the store expects.
        expected: u64,
        /// What was given.
        got: u64,
    },
    /// There is no RDB to append the stream to.
    #[error("relay store: no RDB yet")]
    Empty,
}

impl StoreError {
    /// Whether this is the disk being full (`ENOSPC`, `EDQUOT`).
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc_enospc::ENOSPC | libc_enospc::EDQUOT)
            ),
            _ => false,
        }
    }
}

mod libc_enospc {
    pub(super) const ENOSPC: i32 = 28;
    pub(super) const EDQUOT: i32 = 122;
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// `fdatasync` of a handle from [`Store::unsynced_segment`] (blocking: run it off the runtime).
pub fn sync_file(file: &File, path: &Path) -> Result<(), StoreError> {
    file.sync_data().map_err(io("sync", path))
}

/// The stored RDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdbInfo {
    /// Its file.
    pub path: PathBuf,
    /// The replication ID it was received under.
    pub replid: ReplId,
    /// The upstream offset it corresponds to.
    pub offset: u64,
    /// Payload length (what `$<len>` announces).
    pub len: u64,
}

/// One segment file.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    pub(crate) replid: ReplId,
    /// Offset of the first byte.
    pub(crate) start: u64,
    /// Offset of the last byte (`start - 1` while empty).
    pub(crate) end: u64,
    /// File length, header included.
    pub(crate) file_len: u64,
    pub(crate) created: SystemTime,
    pub(crate) modified: SystemTime,
    /// (record offset, file position), ascending; the first record is always present.
    pub(crate) index: Vec<(u64, u64)>,
}

/// What a `PSYNC <replid> <offset>` gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `+CONTINUE <replid>`, then the stream from `from`.
    Continue {
        /// The current replication ID.
        replid: ReplId,
        /// The first byte to send.
        from: u64,
    },
    /// `+FULLRESYNC <replid> <rdb.offset>`, the RDB, then the stream after it.
    Full {
        /// The current replication ID.
        replid: ReplId,
        /// The RDB to send.
        rdb: RdbInfo,
    },
    /// Nothing to serve yet (`-NOMASTERLINK`: Redis replicas retry).
    NotReady,
}

/// A place to read stream bytes from, found under the store's lock and read without it.
#[derive(Debug, Clone)]
pub struct Location {
    path: PathBuf,
    pos: u64,
    record_offset: u64,
    /// Last byte of the segment when located: reading stops there, at a record boundary.
    end: u64,
}

/// Counts of what recovery found, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments (or RDBs) with a bad checksum or header, not counting a torn tail.
    pub corrupt: u64,
    /// Bytes of an incomplete last record trimmed.
    pub trimmed_bytes: u64,
    /// Segments deleted because they could not be served (after a corruption or a gap).
    pub dropped_segments: u64,
}

/// The store. Not thread-safe by itself: the relay keeps it behind a mutex.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    segment_size: u64,
    rdb: Option<RdbInfo>,
    segments: Vec<Segment>,
    active: Option<File>,
    /// An RDB being received from the upstream (a full sync).
    incoming: Option<RdbWriter>,
    /// A fresh RDB from the local Redis at an offset the stream has not reached yet: installed
    /// once it has ([`Store::install_held`]).
    held: Option<RdbInfo>,
    unsynced: bool,
}

mod crc32c_state {
    /// A running CRC-32C.
    #[derive(Debug, Clone, Copy, Default)]
    pub(crate) struct Crc(pub(crate) u32);

    impl Crc {
        pub(crate) fn update(&mut self, bytes: &[u8]) {
            self.0 = crc32c::crc32c_append(self.0, bytes);
        }
    }
}

impl Store {
    /// Opens (creating) `dir` and recovers what it holds. See [`Recovery`].
    pub fn open(dir: &Path, segment_size: u64) -> Result<(Self, Recovery), StoreError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let mut store = Self {
            dir: dir.to_owned(),
            segment_size: segment_size.max(4096),
            rdb: None,
            segments: Vec::new(),
            active: None,
            incoming: None,
            held: None,
            unsynced: false,
        };
        let recovery = recover::recover(&mut store)?;
        Ok((store, recovery))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stored RDB, if any.
    pub fn rdb(&self) -> Option<&RdbInfo> {
        self.rdb.as_ref()
    }

    /// The replication ID of the last byte held and that byte's offset: where to resume.
    pub fn tip(&self) -> Option<(ReplId, u64)> {
        let last = self.segments.last()?;
        Some((last.replid, last.end))
    }

    /// The first stream byte held (the retention horizon) and when its segment was started.
    pub fn oldest(&self) -> Option<(u64, SystemTime)> {
        let first = self.segments.first()?;
        Some((first.start, first.created))
    }

    /// Bytes on disk: the RDB and every segment.
    pub fn disk_bytes(&self) -> u64 {
        let rdb = self
            .rdb
            .as_ref()
            .map_or(0, |r| r.len + format::RDB_HEADER_LEN as u64);
        rdb + self.segments.iter().map(|s| s.file_len).sum::<u64>()
    }

    /// The replication-ID history: each ID with the first offset it covers, oldest first.
    pub fn history(&self) -> Vec<(ReplId, u64)> {
        let mut out: Vec<(ReplId, u64)> = Vec::new();
        for s in &self.segments {
            if out.last().map(|(id, _)| *id) != Some(s.replid) {
                out.push((s.replid, s.start));
            }
        }
        out
    }

    /// Whether `PSYNC <replid> <offset>` may continue from what is held: `replid` is in the
    /// history, `offset` is held (or the next byte to come) and not past where that ID ended
    /// (Redis's `replid2` / `second_replid_offset` rule, with every ID the segments record).
    fn continues(&self, replid: ReplId, offset: u64) -> bool {
        let (Some(first), Some((_, end))) = (self.segments.first(), self.tip()) else {
            return false;
        };
        let history = self.history();
        history.iter().enumerate().any(|(i, (id, _))| {
            // An ID stays valid up to the byte where its successor begins; the current one up
            // to the next byte to come.
            let limit = history.get(i + 1).map_or(end + 1, |(_, start)| *start);
            *id == replid && offset >= first.start && offset <= limit
        })
    }

    /// Answers `PSYNC <replid> <offset>` as a Redis master with PSYNC2 would: a partial resync
    /// when [`Store::continues`] allows it, else a full one from the stored RDB.
    pub fn decide(&self, replid: Option<ReplId>, offset: u64) -> Decision {
        let Some((current, end)) = self.tip() else {
            return Decision::NotReady;
        };
        let first = self.segments[0].start;
        if replid.is_some_and(|id| self.continues(id, offset)) {
            return Decision::Continue {
                replid: current,
                from: offset,
            };
        }
        if replid == Some(current) && offset > end + 1 {
            // The replica is ahead of us (we were cut back after corruption, or restarted
            // behind): it is our own history, so it should wait for us rather than full-sync.
            return Decision::NotReady;
        }
        match &self.rdb {
            // The RDB may sit anywhere inside the stream held (a refreshed one does).
            Some(rdb) if rdb.offset + 1 >= first && rdb.offset <= end => Decision::Full {
                replid: current,
                rdb: rdb.clone(),
            },
            _ => Decision::NotReady,
        }
    }

    /// Starts receiving an RDB for (`replid`, `offset`); the previous one stays until it is done.
    pub fn begin_rdb(&mut self, replid: ReplId, offset: u64) -> Result<(), StoreError> {
        self.incoming = Some(RdbWriter::create(self.dir.join("rdb.tmp"), replid, offset)?);
        Ok(())
    }

    /// Appends bytes of the incoming RDB.
    pub fn rdb_data(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let writer = self.incoming.as_mut().ok_or(StoreError::Empty)?;
        if let Err(e) = writer.write(bytes) {
            self.abort_rdb();
            return Err(e);
        }
        Ok(())
    }

    /// Drops an RDB being received (the link broke).
    pub fn abort_rdb(&mut self) {
        if let Some(writer) = self.incoming.take() {
            writer.discard();
        }
    }

    /// Completes the incoming RDB. It starts a new history: every segment, the old RDB and a
    /// held fresh one go (they belong to a history the upstream no longer continues), then the
    /// RDB is renamed into place and an empty segment starts after it. The segments go first so
    /// that a crash in between never leaves an old stream next to the new RDB.
    pub fn finish_rdb(&mut self) -> Result<(), StoreError> {
        let writer = self.incoming.take().ok_or(StoreError::Empty)?;
        let fresh = writer.finish()?;
        self.active = None;
        for s in std::mem::take(&mut self.segments) {
            let _ = std::fs::remove_file(&s.path);
        }
        if let Some(held) = self.held.take() {
            let _ = std::fs::remove_file(&held.path);
        }
        self.sync_dir()?;
        let (replid, offset) = (fresh.replid, fresh.offset);
        self.place_rdb(fresh)?;
        self.start_segment(replid, offset + 1)?;
        self.sync_dir()
    }

    /// Renames a complete RDB file to `rdb-<offset>.rdb` and makes it the stored RDB; the one it
    /// replaces is deleted.
    fn place_rdb(&mut self, mut fresh: RdbInfo) -> Result<(), StoreError> {
        let path = self.dir.join(format!("rdb-{:020}.rdb", fresh.offset));
        std::fs::rename(&fresh.path, &path).map_err(io("rename", &fresh.path))?;
        fresh.path = path;
        if let Some(old) = self.rdb.replace(fresh) {
            if Some(&old.path) != self.rdb.as_ref().map(|r| &r.path) {
                let _ = std::fs::remove_file(&old.path);
            }
        }
        Ok(())
    }

    /// Records that the upstream's replication ID changed after the last byte held.
    pub fn new_replid(&mut self, replid: ReplId) -> Result<(), StoreError> {
        let (_, end) = self.tip().ok_or(StoreError::Empty)?;
        self.sync()?;
        if self.segments.last().is_some_and(|s| s.end < s.start) {
            // The current segment is empty: replace it rather than leave an empty file behind.
            let s = self.segments.pop().expect("checked");
            self.active = None;
            let _ = std::fs::remove_file(&s.path);
        }
        self.start_segment(replid, end + 1)
    }

    /// Appends stream bytes; `offset` is that of `bytes[0]` and must follow the last byte held.
    /// On a write error the partial record is cut off again, so the file stays valid.
    pub fn append(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let (replid, end) = self.tip().ok_or(StoreError::Empty)?;
        if offset != end + 1 {
            return Err(StoreError::Gap {
                expected: end + 1,
                got: offset,
            });
        }
        if bytes.is_empty() {
            return Ok(());
        }
        if bytes.len() > format::MAX_RECORD {
            return Err(StoreError::Corrupt {
                path: self.dir.clone(),
                offset,
                why: "append larger than a record may be",
            });
        }
        // One append is one record, never split: records end at command boundaries, which is
        // where a cut after corruption (and a resume) may then safely happen.
        if self
            .segments
            .last()
            .is_some_and(|s| s.file_len >= self.segment_size)
        {
            self.sync()?;
            self.start_segment(replid, offset)?;
        }
        self.append_record(bytes)
    }

    fn append_record(&mut self, payload: &[u8]) -> Result<(), StoreError> {
        let segment = self.segments.last_mut().ok_or(StoreError::Empty)?;
        let record_offset = segment.end + 1;
        let record = format::record(record_offset, payload);
        let file = match &mut self.active {
            Some(f) => f,
            None => {
                let f = OpenOptions::new()
                    .append(true)
                    .open(&segment.path)
                    .map_err(io("open", &segment.path))?;
                self.active.insert(f)
            }
        };
        if let Err(e) = file.write_all(&record) {
            // Cut the partial record off; if even that fails, recovery trims it by its CRC.
            let _ = file.set_len(segment.file_len);
            self.active = None;
            return Err(io("append to", &segment.path)(e));
        }
        if segment.index.is_empty()
            || segment.file_len - segment.index.last().map_or(0, |(_, p)| *p) >= INDEX_EVERY
        {
            segment.index.push((record_offset, segment.file_len));
        }
        segment.file_len += record.len() as u64;
        segment.end += payload.len() as u64;
        segment.modified = SystemTime::now();
        self.unsynced = true;
        Ok(())
    }

    fn start_segment(&mut self, replid: ReplId, start: u64) -> Result<(), StoreError> {
        let path = self.dir.join(format!("seg-{start:020}.log"));
        let created = SystemTime::now();
        let header = format::segment_header(&replid, start, created);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io("create", &path))?;
        if let Err(e) = file.write_all(&header).and_then(|()| file.sync_data()) {
            let _ = std::fs::remove_file(&path);
            return Err(io("write", &path)(e));
        }
        drop(file);
        self.active = None;
        self.segments.push(Segment {
            path,
            replid,
            start,
            end: start - 1,
            file_len: header.len() as u64,
            created,
            modified: created,
            index: Vec::new(),
        });
        self.sync_dir()
    }

    /// `fdatasync` of the segment being written, if anything was written since the last one.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if !self.unsynced {
            return Ok(());
        }
        if let (Some(f), Some(s)) = (&self.active, self.segments.last()) {
            f.sync_data().map_err(io("sync", &s.path))?;
        }
        self.unsynced = false;
        Ok(())
    }

    /// For an `fdatasync` outside the store's lock ([`sync_file`]): a handle on the segment being
    /// written, if anything was written since the last call (or the last [`Store::sync`]).
    pub fn unsynced_segment(&mut self) -> Result<Option<(File, PathBuf)>, StoreError> {
        if !self.unsynced {
            return Ok(None);
        }
        let handle = match (&self.active, self.segments.last()) {
            (Some(f), Some(s)) => {
                Some((f.try_clone().map_err(io("dup", &s.path))?, s.path.clone()))
            }
            _ => None,
        };
        self.unsynced = false;
        Ok(handle)
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &self.dir))
    }

    /// Deletes whole segments past `retention`, oldest first, never the one being written.
    /// When a segment holding stream bytes after the RDB goes, the RDB goes too: it can no
    /// longer be completed by the stream (a refresh, [`Store::refresh_due`], replaces it before). Returns how many segments were deleted.
    pub fn enforce(&mut self, retention: Retention, now: SystemTime) -> usize {
        let mut deleted = 0;
        while self.segments.len() > 1 {
            let first = &self.segments[0];
            let expired = match retention {
                Retention::Age(age) => {
                    now.duration_since(first.modified).unwrap_or(Duration::ZERO) > age
                }
                Retention::Bytes(limit) => {
                    self.segments.iter().map(|s| s.file_len).sum::<u64>() > limit
                }
            };
            if !expired {
                break;
            }
            let gone = self.segments.remove(0);
            let _ = std::fs::remove_file(&gone.path);
            deleted += 1;
            // The RDB can be served only with every stream byte after it.
            if self.rdb.as_ref().is_some_and(|r| r.offset < gone.end) {
                if let Some(rdb) = self.rdb.take() {
                    tracing::info!(offset = rdb.offset, "retention passed the stored RDB; a downstream full sync now needs a fresh one");
                    let _ = std::fs::remove_file(&rdb.path);
                }
            }
        }
        deleted
    }

    /// Where byte `offset` can be read from, up to the last byte held now.
    pub fn locate(&self, offset: u64) -> Result<Location, StoreError> {
        let i = self.segments.partition_point(|s| s.end < offset);
        let s = self.segments.get(i).ok_or(StoreError::NotHeld(offset))?;
        if offset < s.start || offset > s.end {
            return Err(StoreError::NotHeld(offset));
        }
        let j = s.index.partition_point(|(o, _)| *o <= offset);
        let (record_offset, pos) = s.index[j.saturating_sub(1)];
        Ok(Location {
            path: s.path.clone(),
            pos,
            record_offset,
            end: s.end,
        })
    }

    /// Cuts the stream after `last`: later segments are deleted, the one holding `last` is
    /// truncated after the record that ends there (or `last` is moved back to a record
    /// boundary). Used to drop bytes found corrupt; the upstream is then asked again.
    pub fn truncate_after(&mut self, last: u64) -> Result<u64, StoreError> {
        let end = recover::truncate_after(self, last)?;
        // A refreshed RDB past the cut waits for the refetched stream to reach it again.
        if self.rdb.as_ref().is_some_and(|r| r.offset > end) {
            let rdb = self.rdb.take().expect("checked");
            let path = self.dir.join(refresh::HELD);
            if self.held.as_ref().is_none_or(|h| h.offset < rdb.offset)
                && std::fs::rename(&rdb.path, &path).is_ok()
            {
                self.held = Some(RdbInfo { path, ..rdb });
            } else {
                let _ = std::fs::remove_file(&rdb.path);
            }
        }
        Ok(end)
    }
}

/// Reads stream bytes from `from` (inside `loc`'s segment) up to `max` bytes, checking every
/// record's CRC. Returns an empty vector at the located segment's end.
pub fn read_at(loc: &Location, from: u64, max: usize) -> Result<Vec<u8>, StoreError> {
    let mut file = File::open(&loc.path).map_err(io("open", &loc.path))?;
    file.seek(SeekFrom::Start(loc.pos))
        .map_err(io("seek", &loc.path))?;
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let mut out = Vec::new();
    let mut offset = loc.record_offset;
    while offset <= loc.end && out.len() < max {
        let mut header = [0u8; RECORD_HEADER_LEN];
        reader
            .read_exact(&mut header)
            .map_err(io("read", &loc.path))?;
        let (len, crc) = format::parse_record_header(&header);
        if len == 0 || len > format::MAX_RECORD as u32 {
            return Err(StoreError::Corrupt {
                path: loc.path.clone(),
                offset,
                why: "bad record length",
            });
        }
        let mut payload = vec![0u8; len as usize];
        reader
            .read_exact(&mut payload)
            .map_err(io("read", &loc.path))?;
        if format::record_crc(offset, &payload) != crc {
            return Err(StoreError::Corrupt {
                path: loc.path.clone(),
                offset,
                why: "record checksum mismatch",
            });
        }
        let record_end = offset + len as u64 - 1;
        if record_end >= from {
            let skip = from.saturating_sub(offset) as usize;
            out.extend_from_slice(&payload[skip..]);
        }
        offset = record_end + 1;
    }
    Ok(out)
}

/// Reads the stored RDB's payload in chunks, checking its CRC at the end.
#[derive(Debug)]
pub struct RdbReader {
    file: std::io::BufReader<File>,
    path: PathBuf,
    left: u64,
    len: u64,
    crc: crc32c_state::Crc,
    expected: u32,
}

impl RdbReader {
    /// Opens `rdb` for reading.
    pub fn open(rdb: &RdbInfo) -> Result<Self, StoreError> {
        let mut file = File::open(&rdb.path).map_err(io("open", &rdb.path))?;
        let mut header = [0u8; format::RDB_HEADER_LEN];
        file.read_exact(&mut header)
            .map_err(io("read", &rdb.path))?;
        let parsed = format::parse_rdb_header(&header).ok_or_else(|| StoreError::Corrupt {
            path: rdb.path.clone(),
            offset: 0,
            why: "bad RDB header",
        })?;
        Ok(Self {
            file: std::io::BufReader::with_capacity(256 * 1024, file),
            path: rdb.path.clone(),
            left: parsed.len,
            len: parsed.len,
            crc: crc32c_state::Crc::default(),
            expected: parsed.crc,
        })
    }

    /// Back to the payload's first byte, e.g. to send it after checking it: the file stays
    /// open, so an RDB replaced in the meantime is still read whole.
    pub fn rewind(&mut self) -> Result<(), StoreError> {
        self.file
            .seek(SeekFrom::Start(format::RDB_HEADER_LEN as u64))
            .map_err(io("seek", &self.path))?;
        self.left = self.len;
        self.crc = crc32c_state::Crc::default();
        Ok(())
    }

    /// The next chunk, or `None` at the end (after the CRC checked out).
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        if self.left == 0 {
            if self.crc.0 != self.expected {
                return Err(StoreError::Corrupt {
                    path: self.path.clone(),
                    offset: 0,
                    why: "RDB checksum mismatch",
                });
            }
            return Ok(None);
        }
        let mut chunk = vec![0u8; self.left.min(256 * 1024) as usize];
        self.file
            .read_exact(&mut chunk)
            .map_err(io("read", &self.path))?;
        self.left -= chunk.len() as u64;
        self.crc.update(&chunk);
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests;
