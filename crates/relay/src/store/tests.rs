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

/// A fresh RDB of (`replid`, `offset`), as the refresh task writes it.
fn fresh(s: &Store, replid: ReplId, offset: u64, payload: &[u8]) -> RdbInfo {
    let mut w = RdbWriter::create(s.refresh_path(), replid, offset).unwrap();
    w.write(payload).unwrap();
    w.finish().unwrap()
}

fn rdb_payload(s: &Store) -> Vec<u8> {
    let mut r = RdbReader::open(s.rdb().unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(c) = r.next_chunk().unwrap() {
        out.extend(c);
    }
    out
}

fn files(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let p = e.as_ref().unwrap().path();
            p.extension().is_some_and(|e| e == ext)
        })
        .count()
}

#[test]
fn a_fresh_rdb_is_installed_inside_the_history_and_keeps_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, stream) = filled(dir.path(), 8192, 50_000);
    let segments = s.segments.len();
    let old = s.rdb().unwrap().path.clone();
    let got = s.offer_rdb(fresh(&s, id(A), 30_000, b"fresh-rdb")).unwrap();
    assert_eq!(got, Refreshed::Installed { offset: 30_000 });
    assert_eq!(s.rdb().unwrap().offset, 30_000);
    assert_eq!(rdb_payload(&s), b"fresh-rdb");
    assert!(!old.exists(), "the old RDB is deleted");
    assert_eq!(files(dir.path(), "rdb"), 1);
    assert!(!s.refresh_path().exists());
    assert_eq!(s.segments.len(), segments, "no segment dropped");
    assert_eq!(read_all(&s, 101), stream, "the whole stream still held");
    // Partial resyncs from before the RDB still work; a full sync gets the fresh RDB.
    assert_eq!(
        s.decide(Some(id(A)), 200),
        Decision::Continue {
            replid: id(A),
            from: 200
        }
    );
    match s.decide(None, 0) {
        Decision::Full { replid, rdb } => assert_eq!((replid, rdb.offset), (id(A), 30_000)),
        other => panic!("{other:?}"),
    }
    // Retention may now delete the old RDB's segments: the fresh one stays servable.
    s.enforce(Retention::Bytes(24_000), SystemTime::now());
    let (oldest, _) = s.oldest().unwrap();
    assert!(oldest > 101 && oldest <= 30_001, "horizon {oldest}");
    assert_eq!(s.rdb().unwrap().offset, 30_000);
    assert!(matches!(s.decide(None, 0), Decision::Full { .. }));
    // Once retention passes it too, it goes.
    s.enforce(Retention::Bytes(8_000), SystemTime::now());
    assert!(s.oldest().unwrap().0 > 30_001);
    assert!(s.rdb().is_none());
}

#[test]
fn a_fresh_rdb_of_another_history_or_outside_the_stream_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = filled(dir.path(), 8192, 50_000);
    let refused = |why| Refreshed::Refused(why);
    assert_eq!(
        s.offer_rdb(fresh(&s, id(B), 30_000, b"x")).unwrap(),
        refused(RefreshRefused::OtherHistory)
    );
    assert_eq!(
        s.offer_rdb(fresh(&s, id(A), 100, b"x")).unwrap(),
        refused(RefreshRefused::NotNewer)
    );
    assert_eq!(
        s.offer_rdb(fresh(&s, id(B), 60_000, b"x")).unwrap(),
        refused(RefreshRefused::OtherHistory),
        "ahead of the stream under another ID"
    );
    assert!(!s.refresh_path().exists(), "refused RDBs are deleted");
    assert_eq!(s.rdb().unwrap().offset, 100, "the stored RDB stays");
    s.enforce(Retention::Bytes(24_000), SystemTime::now());
    let (oldest, _) = s.oldest().unwrap();
    assert_eq!(
        s.offer_rdb(fresh(&s, id(A), oldest - 2, b"x")).unwrap(),
        refused(RefreshRefused::BeforeHorizon)
    );
    // After a promotion upstream at 50_101 the old ID is valid only up to there.
    s.new_replid(id(B)).unwrap();
    s.append(50_101, &[b'y'; 1000]).unwrap();
    assert_eq!(
        s.offer_rdb(fresh(&s, id(A), 50_500, b"x")).unwrap(),
        refused(RefreshRefused::OtherHistory)
    );
    assert_eq!(
        s.offer_rdb(fresh(&s, id(A), 50_100, b"old id up to the switch"))
            .unwrap(),
        Refreshed::Installed { offset: 50_100 }
    );
    assert_eq!(
        s.offer_rdb(fresh(&s, id(B), 50_900, b"x")).unwrap(),
        Refreshed::Installed { offset: 50_900 }
    );
}

#[test]
fn a_fresh_rdb_ahead_of_the_stream_is_held_until_the_stream_reaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = filled(dir.path(), 8192, 10_000);
    assert_eq!(
        s.offer_rdb(fresh(&s, id(A), 12_000, b"ahead")).unwrap(),
        Refreshed::Held { offset: 12_000 }
    );
    assert_eq!(
        s.rdb().unwrap().offset,
        100,
        "not served before the stream reaches it"
    );
    assert!(!s.refresh_due(Retention::Bytes(1_000), SystemTime::now()));
    s.append(10_101, &[b'z'; 1000]).unwrap();
    assert_eq!(s.install_held().unwrap(), None, "not reached yet");
    // Survives a restart while held.
    drop(s);
    let (mut s, recovery) = Store::open(dir.path(), 8192).unwrap();
    assert_eq!(recovery, Recovery::default());
    assert_eq!(s.held().unwrap().offset, 12_000);
    s.append(11_101, &[b'z'; 1000]).unwrap();
    assert_eq!(
        s.install_held().unwrap(),
        Some(Refreshed::Installed { offset: 12_000 })
    );
    assert_eq!(rdb_payload(&s), b"ahead");
    assert!(s.held().is_none());

    // A held RDB whose ID the stream did not continue is dropped when reached.
    s.offer_rdb(fresh(&s, id(A), 13_000, b"ahead")).unwrap();
    s.new_replid(id(B)).unwrap();
    s.append(12_101, &[b'z'; 1000]).unwrap();
    assert_eq!(
        s.install_held().unwrap(),
        Some(Refreshed::Refused(RefreshRefused::OtherHistory))
    );
    assert_eq!(s.rdb().unwrap().offset, 12_000);
    assert!(!dir.path().join(refresh::HELD).exists());
}

#[test]
fn an_installed_rdb_survives_a_restart_inside_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, stream) = filled(dir.path(), 8192, 40_000);
    s.offer_rdb(fresh(&s, id(A), 20_000, b"fresh")).unwrap();
    drop(s);
    let (s, recovery) = Store::open(dir.path(), 8192).unwrap();
    assert_eq!(recovery, Recovery::default());
    assert_eq!(s.rdb().unwrap().offset, 20_000);
    assert_eq!(rdb_payload(&s), b"fresh");
    assert_eq!(
        read_all(&s, 101),
        stream,
        "no segment before the RDB dropped"
    );
    assert_eq!(s.tip(), Some((id(A), 40_100)));
    // An interrupted install (both RDBs on disk): the newer one wins.
    let older = dir.path().join(format!("rdb-{:020}.rdb", 100));
    let mut w = RdbWriter::create(dir.path().join("x.tmp"), id(A), 100).unwrap();
    w.write(b"REDIS0010-fake-rdb").unwrap();
    std::fs::rename(w.finish().unwrap().path, &older).unwrap();
    drop(s);
    let (s, _) = Store::open(dir.path(), 8192).unwrap();
    assert_eq!(s.rdb().unwrap().offset, 20_000);
    assert!(!older.exists());
}

#[test]
fn a_cut_before_an_installed_rdb_holds_it_until_the_stream_is_refetched() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, stream) = filled(dir.path(), 8192, 40_000);
    s.offer_rdb(fresh(&s, id(A), 30_000, b"fresh")).unwrap();
    let end = s.truncate_after(25_000).unwrap();
    assert!(end <= 25_000);
    assert_eq!(
        s.decide(None, 0),
        Decision::NotReady,
        "nothing completes an RDB"
    );
    assert_eq!(s.held().unwrap().offset, 30_000);
    let refetch = &stream[(end - 100) as usize..];
    for (i, chunk) in refetch.chunks(1000).enumerate() {
        s.append(end + 1 + (i * 1000) as u64, chunk).unwrap();
        s.install_held().unwrap();
    }
    assert_eq!(s.rdb().unwrap().offset, 30_000);
    assert!(matches!(s.decide(None, 0), Decision::Full { .. }));
}

#[test]
fn a_refresh_is_due_when_the_stream_after_the_rdb_passes_half_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = filled(dir.path(), 8192, 10_000);
    let now = SystemTime::now();
    assert!(!s.refresh_due(Retention::Bytes(40_000), now));
    assert!(s.refresh_due(Retention::Bytes(20_000), now), "10 KB of 20");
    // By age: the segment holding the RDB's next byte, once closed, ages out.
    let hour = Duration::from_secs(3600);
    assert!(!s.refresh_due(Retention::Age(2 * hour), now));
    assert!(s.refresh_due(Retention::Age(2 * hour), now + hour));
    // Nothing after the RDB but the segment being written: never deleted, nothing due.
    let (t, _) = filled(&dir.path().join("t"), 1 << 20, 1_000);
    assert!(!t.refresh_due(Retention::Age(2 * hour), now + 10 * hour));
    // No servable RDB at all: due.
    s.enforce(Retention::Bytes(4_000), now);
    assert!(s.rdb().is_none());
    assert!(s.refresh_due(Retention::Bytes(1 << 30), now));
    let empty = Store::open(&dir.path().join("e"), 8192).unwrap().0;
    assert!(
        !empty.refresh_due(Retention::Bytes(1), now),
        "nothing held yet"
    );
}
