//! Fresh RDBs placed inside the stream already held.
//!
//! The stored RDB can only be served with every stream byte after it, so retention would delete
//! it with the first segment it needs. Before that ([`Store::refresh_due`]) the relay takes a new
//! RDB of the same dataset from the region's own Redis (`PSYNC ? -1` on a second connection; see
//! `run.rs`) and offers it here ([`Store::offer_rdb`]). An RDB at offset X is the dataset after
//! stream byte X, so it is installed at X *inside* the history the segments hold: no segment is
//! dropped and no downstream is disconnected. The next retention pass may then delete the old RDB
//! with its segments.
//!
//! - X inside the stream held, under an ID the history has at X (the [`Store::decide`] rule):
//!   installed at once. This is the usual case in a replica region, where the local Redis is a
//!   replica of this relay and so at or behind it.
//! - X past the last byte held, under the current ID: held in `rdb-held.tmp` until the stream
//!   reaches X ([`Store::install_held`]). The usual case in the primary region, where the local
//!   Redis is the upstream and a little ahead.
//! - Anything else (another history, before the horizon, not newer than the stored RDB) is
//!   refused and deleted.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use super::format;
use super::{crc32c_state::Crc, io, RdbInfo, Retention, Store, StoreError};
use crate::replid::ReplId;

/// Where a fresh RDB waiting for the stream to reach its offset is kept.
pub(super) const HELD: &str = "rdb-held.tmp";
/// Where a fresh RDB from the local Redis is written while it arrives.
pub(super) const REFRESHING: &str = "rdb-refresh.tmp";

/// Writes an RDB file (header with its offset, replication ID, length and CRC-32C, then the
/// payload) at a temporary path. [`RdbWriter::finish`] writes the header and syncs the file.
#[derive(Debug)]
pub struct RdbWriter {
    file: File,
    path: PathBuf,
    replid: ReplId,
    offset: u64,
    len: u64,
    crc: Crc,
}

impl RdbWriter {
    /// Creates (truncating) `path` for the RDB of (`replid`, `offset`).
    pub fn create(path: PathBuf, replid: ReplId, offset: u64) -> Result<Self, StoreError> {
        let mut file = File::create(&path).map_err(io("create", &path))?;
        // The header is written last, with the length and CRC: until then it is all zeros, and
        // recovery deletes such a file.
        file.write_all(&[0u8; format::RDB_HEADER_LEN])
            .map_err(io("write", &path))?;
        Ok(Self {
            file,
            path,
            replid,
            offset,
            len: 0,
            crc: Crc::default(),
        })
    }

    /// Appends payload bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file
            .write_all(bytes)
            .map_err(io("write", &self.path))?;
        self.len += bytes.len() as u64;
        self.crc.update(bytes);
        Ok(())
    }

    /// Writes the header and syncs the file; on error the file is deleted.
    pub fn finish(mut self) -> Result<RdbInfo, StoreError> {
        let header = format::rdb_header(&self.replid, self.offset, self.len, self.crc.0);
        let done = (|| {
            self.file.seek(SeekFrom::Start(0))?;
            self.file.write_all(&header)?;
            self.file.sync_all()
        })();
        if let Err(e) = done {
            let _ = std::fs::remove_file(&self.path);
            return Err(io("write", &self.path)(e));
        }
        Ok(RdbInfo {
            path: self.path,
            replid: self.replid,
            offset: self.offset,
            len: self.len,
        })
    }

    /// Deletes the file.
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What became of a fresh RDB offered with [`Store::offer_rdb`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// Installed at its offset, inside the stream held; the previous RDB is deleted.
    Installed {
        /// Its offset.
        offset: u64,
    },
    /// Past the stream held: kept until the stream reaches `offset`.
    Held {
        /// Its offset.
        offset: u64,
    },
    /// Not usable; deleted.
    Refused(RefreshRefused),
}

/// Why a fresh RDB cannot be placed in the stream held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshRefused {
    /// Nothing is held to place it in.
    #[error("the relay holds no stream yet")]
    Empty,
    /// Its replication ID is not the one the history has at its offset.
    #[error("its replication ID is not the stream's at its offset")]
    OtherHistory,
    /// Its offset is older than the oldest stream byte held.
    #[error("its offset is before the oldest stream byte held")]
    BeforeHorizon,
    /// The stored RDB is at the same offset or later.
    #[error("the stored RDB is as recent")]
    NotNewer,
}

enum Verdict {
    Install,
    Hold,
    Refuse(RefreshRefused),
}

impl Store {
    /// Where the relay writes a fresh RDB while it arrives ([`RdbWriter::create`]).
    pub fn refresh_path(&self) -> PathBuf {
        self.dir.join(REFRESHING)
    }

    /// Whether a fresh RDB should be taken now: the stream after the stored RDB has passed half
    /// the retention (by bytes, or by the age of the segment holding the RDB's next byte), so
    /// retention would delete the RDB before long; or there is no servable RDB at all. Never
    /// while a fresh one is held or while nothing is held.
    pub fn refresh_due(&self, retention: Retention, now: SystemTime) -> bool {
        let Some((_, end)) = self.tip() else {
            return false;
        };
        if self.held.is_some() {
            return false;
        }
        let first = self.segments[0].start;
        let Some(rdb) = (self.rdb.as_ref()).filter(|r| r.offset + 1 >= first && r.offset <= end)
        else {
            return true;
        };
        match retention {
            Retention::Bytes(limit) => end - rdb.offset >= limit / 2,
            Retention::Age(age) => {
                // Retention by age deletes a segment `age` after its last write; the one being
                // written is never deleted.
                let i = self.segments.partition_point(|s| s.start <= rdb.offset + 1) - 1;
                let holding = &self.segments[i];
                i + 1 < self.segments.len()
                    && now.duration_since(holding.modified).unwrap_or_default() >= age / 2
            }
        }
    }

    fn verdict(&self, replid: ReplId, offset: u64) -> Verdict {
        let Some((current, end)) = self.tip() else {
            return Verdict::Refuse(RefreshRefused::Empty);
        };
        if offset + 1 < self.segments[0].start {
            return Verdict::Refuse(RefreshRefused::BeforeHorizon);
        }
        if self.rdb.as_ref().is_some_and(|r| r.offset >= offset) {
            return Verdict::Refuse(RefreshRefused::NotNewer);
        }
        if offset > end {
            return match replid == current {
                true => Verdict::Hold,
                false => Verdict::Refuse(RefreshRefused::OtherHistory),
            };
        }
        // The dataset after byte X under this ID is what the stream from X + 1 continues.
        match self.continues(replid, offset + 1) {
            true => Verdict::Install,
            false => Verdict::Refuse(RefreshRefused::OtherHistory),
        }
    }

    /// Places a complete fresh RDB (from [`RdbWriter::finish`]) in the stream held: installed,
    /// held for later, or refused (see the module's text). Downstreams are not disturbed.
    pub fn offer_rdb(&mut self, fresh: RdbInfo) -> Result<Refreshed, StoreError> {
        match self.verdict(fresh.replid, fresh.offset) {
            Verdict::Install => {
                let offset = fresh.offset;
                self.place_rdb(fresh)?;
                self.sync_dir()?;
                Ok(Refreshed::Installed { offset })
            }
            Verdict::Hold => {
                let path = self.dir.join(HELD);
                std::fs::rename(&fresh.path, &path).map_err(io("rename", &fresh.path))?;
                let offset = fresh.offset;
                // A previous held one, if any, was at the same path: replaced.
                self.held = Some(RdbInfo { path, ..fresh });
                Ok(Refreshed::Held { offset })
            }
            Verdict::Refuse(why) => {
                let _ = std::fs::remove_file(&fresh.path);
                Ok(Refreshed::Refused(why))
            }
        }
    }

    /// Installs the held fresh RDB once the stream has reached its offset (or drops it when the
    /// history went another way). `None` while there is none or the stream is still behind it.
    pub fn install_held(&mut self) -> Result<Option<Refreshed>, StoreError> {
        let end = self.tip().map_or(0, |(_, e)| e);
        if self.held.as_ref().is_none_or(|h| h.offset > end) {
            return Ok(None);
        }
        let held = self.held.take().expect("checked");
        self.offer_rdb(held).map(Some)
    }

    /// The fresh RDB waiting for the stream, if any.
    pub fn held(&self) -> Option<&RdbInfo> {
        self.held.as_ref()
    }
}
