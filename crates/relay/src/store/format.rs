//! Byte layouts of the files; every integer is little-endian.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::replid::ReplId;

const SEGMENT_MAGIC: &[u8; 8] = b"GRSEG001";
const RDB_MAGIC: &[u8; 8] = b"GRRDB001";

/// magic 8 | replid 40 | start offset 8 | created (ms since the epoch) 8 | CRC-32C of the rest 4
pub const SEGMENT_HEADER_LEN: usize = 8 + 40 + 8 + 8 + 4;
/// length 4 | CRC-32C of (record offset as 8 bytes ‖ payload) 4
pub const RECORD_HEADER_LEN: usize = 8;
/// magic 8 | replid 40 | offset 8 | payload length 8 | payload CRC-32C 4 | CRC-32C of the rest 4
pub(crate) const RDB_HEADER_LEN: usize = 8 + 40 + 8 + 8 + 4 + 4;
/// Longest record payload: one append, at most a few commands of Redis's 512 MiB maximum.
pub(crate) const MAX_RECORD: usize = 1 << 30;

pub(crate) fn segment_header(replid: &ReplId, start: u64, created: SystemTime) -> Vec<u8> {
    let ms = created
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64;
    let mut h = Vec::with_capacity(SEGMENT_HEADER_LEN);
    h.extend_from_slice(SEGMENT_MAGIC);
    h.extend_from_slice(replid.as_bytes());
    h.extend_from_slice(&start.to_le_bytes());
    h.extend_from_slice(&ms.to_le_bytes());
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

/// The fields of a valid segment header.
pub(crate) struct SegmentHeader {
    pub(crate) replid: ReplId,
    pub(crate) start: u64,
    pub(crate) created: SystemTime,
}

pub(crate) fn parse_segment_header(h: &[u8]) -> Option<SegmentHeader> {
    let h = h.get(..SEGMENT_HEADER_LEN)?;
    let (body, crc) = h.split_at(SEGMENT_HEADER_LEN - 4);
    if &body[..8] != SEGMENT_MAGIC
        || crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?)
    {
        return None;
    }
    let replid = ReplId::parse(&body[8..48]).ok()?;
    let start = u64::from_le_bytes(body[48..56].try_into().ok()?);
    let ms = u64::from_le_bytes(body[56..64].try_into().ok()?);
    (start > 0).then_some(SegmentHeader {
        replid,
        start,
        created: UNIX_EPOCH + Duration::from_millis(ms),
    })
}

pub(crate) fn record_crc(offset: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&offset.to_le_bytes()), payload)
}

pub(crate) fn record(offset: u64, payload: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    r.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    r.extend_from_slice(&record_crc(offset, payload).to_le_bytes());
    r.extend_from_slice(payload);
    r
}

pub(crate) fn parse_record_header(h: &[u8; RECORD_HEADER_LEN]) -> (u32, u32) {
    let len = u32::from_le_bytes(h[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(h[4..].try_into().expect("4 bytes"));
    (len, crc)
}

pub(crate) fn rdb_header(replid: &ReplId, offset: u64, len: u64, payload_crc: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(RDB_HEADER_LEN);
    h.extend_from_slice(RDB_MAGIC);
    h.extend_from_slice(replid.as_bytes());
    h.extend_from_slice(&offset.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&payload_crc.to_le_bytes());
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

/// The fields of a valid RDB header.
pub(crate) struct RdbHeader {
    pub(crate) replid: ReplId,
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) crc: u32,
}

pub(crate) fn parse_rdb_header(h: &[u8]) -> Option<RdbHeader> {
    let h = h.get(..RDB_HEADER_LEN)?;
    let (body, crc) = h.split_at(RDB_HEADER_LEN - 4);
    if &body[..8] != RDB_MAGIC || crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    Some(RdbHeader {
        replid: ReplId::parse(&body[8..48]).ok()?,
        offset: u64::from_le_bytes(body[48..56].try_into().ok()?),
        len: u64::from_le_bytes(body[56..64].try_into().ok()?),
        crc: u32::from_le_bytes(body[64..68].try_into().ok()?),
    })
}
