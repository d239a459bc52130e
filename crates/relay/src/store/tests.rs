use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, SystemTime};

use super::*;

const A: &[u8; 40] = b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &[u8; 40] = b"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn id(b: &[u8; 40]) -> ReplId {
    ReplId::parse(b).unwrap()
}

/// A store holding an RDB at offset 100 and `n` bytes of stream after it.
fn filled(dir: &Path, segment_size: u64, n: usize) -> (Store, Vec<u8>) {
    let (mut s, _) = Store::open(dir, segment_size).unwrap();
    s.begin_rdb(id(A), 100).unwrap();
    s.rdb_data(b"REDIS0010-fake-rdb").unwrap();
    s.finish_rdb().unwrap();
    let stream = testkit::payload(n, 7);
    for (i, chunk) in stream.chunks(1000).enumerate() {
        s.append(101 + (i * 1000) as u64, chunk).unwrap();
    }
    (s, stream)
}

fn read_all(s: &Store, from: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = from;
    while let Ok(loc) = s.locate(at) {
        let got = read_at(&loc, at, 4096).unwrap();
        assert!(!got.is_empty());
        at += got.len() as u64;
        out.extend(got);
    }
    out
}

#[test]
fn stream_reads_back_from_any_offset_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (s, stream) = filled(dir.path(), 8192, 50_000);
    assert!(s.segments.len() > 5, "small segments roll over");
    assert_eq!(s.tip(), Some((id(A), 100 + 50_000)));
    for from in [101u64, 102, 5000, 8191, 50_100] {
        assert_eq!(
            read_all(&s, from),
            stream[(from - 101) as usize..],
            "from {from}"
        );
    }
    assert!(matches!(s.locate(50_101), Err(StoreError::NotHeld(_))));
    let mut rdb = RdbReader::open(s.rdb().unwrap()).unwrap();
    assert_eq!(rdb.next_chunk().unwrap().unwrap(), b"REDIS0010-fake-rdb");
    assert_eq!(rdb.next_chunk().unwrap(), None);
}

#[test]
fn reopening_recovers_everything_and_resumes_appending() {
    let dir = tempfile::tempdir().unwrap();
    let (s, mut stream) = filled(dir.path(), 8192, 20_000);
    drop(s);
    let (mut s, recovery) = Store::open(dir.path(), 8192).unwrap();
    assert_eq!(recovery, Recovery::default());
    assert_eq!(s.tip(), Some((id(A), 20_100)));
    s.append(20_101, b"more").unwrap();
    stream.extend_from_slice(b"more");
    assert_eq!(read_all(&s, 101), stream);
    assert!(matches!(s.append(1, b"x"), Err(StoreError::Gap { .. })));
}

#[test]
fn a_torn_tail_is_trimmed_to_the_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let (s, stream) = filled(dir.path(), 1 << 20, 5_000);
    let last = s.segments.last().unwrap().path.clone();
    drop(s);
    let mut f = OpenOptions::new().append(true).open(&last).unwrap();
    f.write_all(&format::record(5_101, b"half a record")[..10])
        .unwrap();
    let (s, recovery) = Store::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(recovery.trimmed_bytes, 10);
    assert_eq!(recovery.corrupt, 0);
    assert_eq!(s.tip().unwrap().1, 5_100);
    assert_eq!(read_all(&s, 101), stream);
}

#[test]
fn corruption_in_the_middle_is_cut_and_nothing_after_it_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let (s, stream) = filled(dir.path(), 8192, 50_000);
    let victim = s.segments[2].clone();
    drop(s);
    let mut f = OpenOptions::new().write(true).open(&victim.path).unwrap();
    f.seek(SeekFrom::Start(SEGMENT_HEADER_LEN as u64 + 3000))
        .unwrap();
    f.write_all(&[0xff]).unwrap();
    drop(f);
    let (s, recovery) = Store::open(dir.path(), 8192).unwrap();
    assert_eq!(recovery.corrupt, 1);
    assert!(recovery.dropped_segments > 0);
    let (_, end) = s.tip().unwrap();
    assert!(
        end >= victim.start - 1 && end < victim.start + 3000,
        "cut before the damage: {end}"
    );
    assert_eq!(read_all(&s, 101), stream[..(end - 100) as usize]);
}

#[test]
fn a_corrupt_rdb_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = filled(dir.path(), 8192, 100);
    let rdb = s.rdb().unwrap().path.clone();
    drop(s);
    let mut f = OpenOptions::new().write(true).open(&rdb).unwrap();
    f.seek(SeekFrom::End(-1)).unwrap();
    f.write_all(b"X").unwrap();
    let (s, recovery) = Store::open(dir.path(), 8192).unwrap();
    assert_eq!(recovery.corrupt, 1);
    assert!(s.rdb().is_none());
    assert_eq!(s.decide(None, 0), Decision::NotReady);
}

#[test]
fn psync_decisions_follow_redis_psync2_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = filled(dir.path(), 8192, 1_000);
    // Promotion upstream after byte 1100: B continues A's history.
    s.new_replid(id(B)).unwrap();
    s.append(1_101, &[b'x'; 400]).unwrap();
    let cont = |from| Decision::Continue {
        replid: id(B),
        from,
    };
    assert_eq!(s.decide(Some(id(B)), 1_501), cont(1_501));
    assert_eq!(s.decide(Some(id(B)), 1_200), cont(1_200));
    assert_eq!(
        s.decide(Some(id(A)), 1_101),
        cont(1_101),
        "old ID up to the switch"
    );
    assert_eq!(s.decide(Some(id(A)), 500), cont(500));
    assert!(
        matches!(s.decide(Some(id(A)), 1_102), Decision::Full { .. }),
        "old ID past the switch"
    );
    assert_eq!(
        s.decide(Some(id(B)), 1_502),
        Decision::NotReady,
        "ahead of us: it waits, no full sync"
    );
    assert!(
        matches!(s.decide(Some(id(B)), 50), Decision::Full { .. }),
        "before what we hold"
    );
    match s.decide(None, 0) {
        Decision::Full { replid, rdb } => {
            assert_eq!(replid, id(B));
            assert_eq!(rdb.offset, 100);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.history(), vec![(id(A), 101), (id(B), 1_101)]);
    drop(s);
    let (s, _) = Store::open(dir.path(), 8192).unwrap();
    assert_eq!(
        s.history(),
        vec![(id(A), 101), (id(B), 1_101)],
        "history survives a restart"
    );
}

#[test]
fn retention_deletes_whole_old_segments_and_moves_the_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, stream) = filled(dir.path(), 8192, 100_000);
    let before = s.disk_bytes();
    assert_eq!(s.oldest().unwrap().0, 101);
    let deleted = s.enforce(Retention::Bytes(40_000), SystemTime::now());
    assert!(deleted > 0);
    assert!(s.disk_bytes() < before);
    let (oldest, _) = s.oldest().unwrap();
    assert!(oldest > 101);
    assert!(
        s.rdb().is_none(),
        "the RDB went with the start of its stream"
    );
    assert_eq!(read_all(&s, oldest), stream[(oldest - 101) as usize..]);
    assert_eq!(s.decide(Some(id(A)), 101), Decision::NotReady);
    let later = SystemTime::now() + Duration::from_secs(3600);
    s.enforce(Retention::Age(Duration::from_secs(60)), later);
    assert_eq!(s.segments.len(), 1, "the segment being written stays");
}
