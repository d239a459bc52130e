//! Start-up recovery: keep the longest valid prefix of what is on disk, and say what was not.
//!
//! - `rdb.tmp` (an RDB whose transfer did not finish) is deleted.
//! - An RDB whose header or payload CRC is wrong is deleted (counted as corrupt).
//! - In the last segment, a bad final record is a torn write (`kill -9`, power loss): trimmed.
//! - Anywhere else, a bad header or record is corruption: the segment is cut before it and every
//!   later segment deleted, so nothing after the damage is ever served. The upstream is then
//!   asked for the stream from there (`PSYNC` at the cut), which refetches it, or a full sync.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::format::{self, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::{io, RdbInfo, Recovery, Segment, Store, StoreError, INDEX_EVERY};

/// What reading a segment's records found.
struct Scan {
    end: u64,
    good_len: u64,
    index: Vec<(u64, u64)>,
    /// The first bad record: whether it is the file's last (a torn write) and why.
    bad: Option<(bool, &'static str)>,
}

fn scan(path: &Path, start: u64, file_len: u64) -> Result<Scan, StoreError> {
    let file = File::open(path).map_err(io("open", path))?;
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let mut skip = [0u8; SEGMENT_HEADER_LEN];
    r.read_exact(&mut skip).map_err(io("read", path))?;
    let mut pos = SEGMENT_HEADER_LEN as u64;
    let mut offset = start;
    let mut index: Vec<(u64, u64)> = Vec::new();
    let mut bad = None;
    while pos < file_len {
        let left = file_len - pos;
        if left < RECORD_HEADER_LEN as u64 {
            bad = Some((true, "incomplete record header"));
            break;
        }
        let mut h = [0u8; RECORD_HEADER_LEN];
        r.read_exact(&mut h).map_err(io("read", path))?;
        let (len, crc) = format::parse_record_header(&h);
        let total = RECORD_HEADER_LEN as u64 + len as u64;
        if len == 0 || len as usize > format::MAX_RECORD {
            bad = Some((false, "bad record length"));
            break;
        }
        if total > left {
            bad = Some((true, "incomplete record"));
            break;
        }
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload).map_err(io("read", path))?;
        if format::record_crc(offset, &payload) != crc {
            bad = Some((total == left, "record checksum mismatch"));
            break;
        }
        if index.is_empty() || pos - index.last().map_or(0, |(_, p)| *p) >= INDEX_EVERY {
            index.push((offset, pos));
        }
        pos += total;
        offset += len as u64;
    }
    Ok(Scan {
        end: offset - 1,
        good_len: pos,
        index,
        bad,
    })
}

fn verify_rdb(path: &Path) -> Result<Option<RdbInfo>, StoreError> {
    let mut file =
        BufReader::with_capacity(256 * 1024, File::open(path).map_err(io("open", path))?);
    let mut header = [0u8; format::RDB_HEADER_LEN];
    if file.read_exact(&mut header).is_err() {
        return Ok(None);
    }
    let Some(h) = format::parse_rdb_header(&header) else {
        return Ok(None);
    };
    let mut crc = 0u32;
    let mut left = h.len;
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let n = (left as usize).min(buf.len());
        if file.read_exact(&mut buf[..n]).is_err() {
            return Ok(None);
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        left -= n as u64;
    }
    Ok((crc == h.crc).then(|| RdbInfo {
        path: path.to_owned(),
        replid: h.replid,
        offset: h.offset,
        len: h.len,
    }))
}

pub(super) fn recover(store: &mut Store) -> Result<Recovery, StoreError> {
    let mut recovery = Recovery::default();
    let dir = store.dir.clone();
    let mut rdbs: Vec<PathBuf> = Vec::new();
    let mut segs: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io("list", &dir))? {
        let path = entry.map_err(io("list", &dir))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name == "rdb.tmp" || name == super::refresh::REFRESHING {
            let _ = std::fs::remove_file(&path);
        } else if name == super::refresh::HELD {
            match verify_rdb(&path)? {
                Some(info) => store.held = Some(info),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        } else if name.starts_with("rdb-") && name.ends_with(".rdb") {
            rdbs.push(path);
        } else if name.starts_with("seg-") && name.ends_with(".log") {
            segs.push(path);
        }
    }
    rdbs.sort();
    segs.sort();

    // The newest valid RDB wins; older ones are leftovers of an interrupted replacement.
    while let Some(path) = rdbs.pop() {
        match verify_rdb(&path)? {
            Some(info) if store.rdb.is_none() => store.rdb = Some(info),
            Some(_) => {
                let _ = std::fs::remove_file(&path);
            }
            None => {
                tracing::error!(path = %path.display(), "corrupt RDB file: deleted, never served");
                recovery.corrupt += 1;
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    let mut expected: Option<u64> = None;
    let count = segs.len();
    let mut stop = false;
    for (i, path) in segs.into_iter().enumerate() {
        if stop {
            let _ = std::fs::remove_file(&path);
            recovery.dropped_segments += 1;
            continue;
        }
        let file_len = std::fs::metadata(&path).map_err(io("stat", &path))?.len();
        let mut header = vec![0u8; SEGMENT_HEADER_LEN];
        let header_ok = File::open(&path)
            .and_then(|mut f| f.read_exact(&mut header))
            .is_ok();
        let Some(h) = header_ok
            .then(|| format::parse_segment_header(&header))
            .flatten()
        else {
            tracing::error!(path = %path.display(), "corrupt segment header: this and later segments dropped, never served");
            recovery.corrupt += 1;
            recovery.dropped_segments += 1;
            let _ = std::fs::remove_file(&path);
            stop = true;
            continue;
        };
        match expected {
            Some(e)
                if h.start != e && store.rdb.as_ref().is_some_and(|r| r.offset + 1 == h.start) =>
            {
                // The stream before is an older history that a full sync's RDB replaced (an
                // interrupted replacement by an earlier version, which deleted it afterwards).
                for old in store.segments.drain(..) {
                    let _ = std::fs::remove_file(&old.path);
                }
            }
            Some(e) if h.start != e => {
                tracing::error!(path = %path.display(), expected = e, start = h.start, "gap between segments: this and later segments dropped");
                recovery.dropped_segments += 1;
                let _ = std::fs::remove_file(&path);
                stop = true;
                continue;
            }
            _ => {}
        }
        let scan = scan(&path, h.start, file_len)?;
        let last = i + 1 == count;
        if let Some((torn, why)) = scan.bad {
            let trimmed = file_len - scan.good_len;
            if torn && last {
                tracing::warn!(path = %path.display(), trimmed, why, "trimmed an incomplete last record");
                recovery.trimmed_bytes += trimmed;
            } else {
                tracing::error!(path = %path.display(), offset = scan.end + 1, why, "corrupt segment: cut before the damage, later segments dropped, never served; the upstream is asked again from here");
                recovery.corrupt += 1;
                stop = true;
            }
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(scan.good_len).and_then(|()| f.sync_all()))
                .map_err(io("truncate", &path))?;
        }
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .unwrap_or(h.created);
        store.segments.push(Segment {
            path,
            replid: h.replid,
            start: h.start,
            end: scan.end,
            file_len: scan.good_len,
            created: h.created,
            modified,
            index: scan.index,
        });
        expected = Some(scan.end + 1);
    }
    place_rdb(store)?;
    if let Some(outcome) = store.install_held()? {
        tracing::info!(?outcome, "fresh RDB held before the restart");
    }
    Ok(recovery)
}

/// The stored RDB is kept only where the stream held completes it: anywhere from the byte before
/// the first one held to the last one, under an ID the history has there. Past the end (the
/// stream was cut before it) it waits like a held fresh RDB; before the horizon it goes.
fn place_rdb(store: &mut Store) -> Result<(), StoreError> {
    let Some(rdb) = store.rdb.clone() else {
        return Ok(());
    };
    let Some((_, end)) = store.tip() else {
        // An RDB alone (its first segment not created yet): the stream starts after it.
        return store.start_segment(rdb.replid, rdb.offset + 1);
    };
    let first = store.segments[0].start;
    if rdb.offset + 1 >= first && rdb.offset <= end && store.continues(rdb.replid, rdb.offset + 1) {
        return Ok(());
    }
    store.rdb = None;
    if rdb.offset > end && store.held.as_ref().is_none_or(|h| h.offset < rdb.offset) {
        let path = store.dir.join(super::refresh::HELD);
        if std::fs::rename(&rdb.path, &path).is_ok() {
            tracing::warn!(
                offset = rdb.offset,
                end,
                "the stored RDB is past the stream held: kept until the stream reaches it"
            );
            store.held = Some(RdbInfo { path, ..rdb });
            return Ok(());
        }
    }
    tracing::warn!(
        offset = rdb.offset,
        "the stored RDB's stream is incomplete: RDB deleted"
    );
    let _ = std::fs::remove_file(&rdb.path);
    Ok(())
}

pub(super) fn truncate_after(store: &mut Store, last: u64) -> Result<u64, StoreError> {
    store.active = None;
    let i = store.segments.partition_point(|s| s.end < last);
    let Some(s) = store.segments.get(i).cloned() else {
        return Ok(store.tip().map_or(0, |(_, e)| e));
    };
    for later in store.segments.drain(i + 1..) {
        let _ = std::fs::remove_file(&later.path);
    }
    // Re-scan the segment and keep the records that end at or before `last`.
    let file_len = s.file_len;
    let scan = scan(&s.path, s.start, file_len)?;
    let mut keep_len = SEGMENT_HEADER_LEN as u64;
    let mut end = s.start - 1;
    {
        let file = File::open(&s.path).map_err(io("open", &s.path))?;
        let mut r = BufReader::new(file);
        let mut skip = [0u8; SEGMENT_HEADER_LEN];
        r.read_exact(&mut skip).map_err(io("read", &s.path))?;
        while keep_len < scan.good_len {
            let mut h = [0u8; RECORD_HEADER_LEN];
            r.read_exact(&mut h).map_err(io("read", &s.path))?;
            let (len, _) = format::parse_record_header(&h);
            if end + len as u64 > last {
                break;
            }
            std::io::copy(&mut (&mut r).take(len as u64), &mut std::io::sink())
                .map_err(io("read", &s.path))?;
            keep_len += RECORD_HEADER_LEN as u64 + len as u64;
            end += len as u64;
        }
    }
    OpenOptions::new()
        .write(true)
        .open(&s.path)
        .and_then(|f| f.set_len(keep_len).and_then(|()| f.sync_all()))
        .map_err(io("truncate", &s.path))?;
    let seg = &mut store.segments[i];
    seg.file_len = keep_len;
    seg.end = end;
    seg.index.retain(|(o, p)| *o <= end && *p < keep_len);
    Ok(end)
}
