//! A Sentinel `Session` fed hostile bytes in fuzz-chosen pieces, the way the server feeds it.
//!
//! Input: `cfg`, then the client's bytes. `cfg` bits 0-3: piece size - 1 (1 to 16 bytes);
//! bit 4: credentials are configured; bit 5: the view has no known primary. Never panics; the
//! input buffer never holds more than one request's worth of bytes; once the session closes
//! (QUIT or a protocol error) it produces nothing more.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sentinel::{Addr, Credentials, Flow, PeerSentinel, SentinelId, Session, SessionLimits, View};

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, wire)) = data.split_first() else {
        return;
    };
    let auth = (cfg & 0x10 != 0).then(|| {
        Arc::new(Credentials {
            user: "app".into(),
            password: "pw".into(),
        })
    });
    let view = View {
        master_name: "georep".into(),
        epoch: 3,
        primary_known: cfg & 0x20 == 0,
        primary: Addr::new("127.0.0.1", 6379),
        replicas: vec![Addr::new("127.0.0.1", 6380)],
        myid: SentinelId::derive("fuzz"),
        sentinels: vec![PeerSentinel {
            id: SentinelId::derive("peer"),
            addr: Addr::new("10.0.0.2", 26379),
        }],
    };
    let limits = SessionLimits::default();
    let mut session = Session::new(1, auth, limits);
    let (mut input, mut out) = (Vec::new(), Vec::new());
    let mut closed = false;
    for piece in wire.chunks(usize::from(cfg & 0x0f) + 1) {
        input.extend_from_slice(piece);
        let before = out.len();
        let flow = session.feed(&mut input, &view, &mut out);
        if closed {
            assert_eq!(out.len(), before, "output after close");
        }
        match flow {
            Flow::Continue => assert!(input.len() < limits.request.max_bytes),
            Flow::Close(_) => {
                closed = true;
                assert!(input.is_empty());
            }
        }
    }
});
