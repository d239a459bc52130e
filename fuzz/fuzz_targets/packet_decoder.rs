//! `Decryptor::open` on hostile and on tampered ciphertext.
//!
//! The first byte picks a mode:
//! - raw (`& 3` is 0 or 3): `(b >> 2) & 3` genuine packets, then the fuzz bytes, opened at once;
//! - tamper (1): the fuzz bytes are sealed, one byte is flipped, and opening must fail having
//!   produced exactly the packets before the flipped one;
//! - stream (2): the fuzz bytes are sealed and fed back in fuzz-chosen pieces, as a socket would,
//!   and must come out unchanged.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use spiped_proto::{
    Decryptor, Encryptor, ForwardSecrecy, Handshake, Key, Opener, Role, Sealer, MAX_PAYLOAD,
    PACKET_LEN,
};

/// The client-to-server direction of one session, established once per process.
fn session() -> &'static (Sealer, Opener) {
    static SESSION: OnceLock<(Sealer, Opener)> = OnceLock::new();
    SESSION.get_or_init(|| {
        let key = Key::from_file_contents(b"fuzz key");
        let skip = ForwardSecrecy::Skip; // y = 1 on both sides: no modular exponentiation
        let mut client = Handshake::new(Role::Client, vec![key.clone()], skip, [1; 32], [2; 32]);
        let mut server = Handshake::new(Role::Server, vec![key], skip, [3; 32], [4; 32]);
        for _ in 0..4 {
            let mut wire = Vec::new();
            client.take_outgoing(&mut wire);
            assert_eq!(server.handle(&wire), Ok(wire.len()));
            wire.clear();
            server.take_outgoing(&mut wire);
            assert_eq!(client.handle(&wire), Ok(wire.len()));
        }
        let client = client.into_session().expect("client established");
        let server = server.into_session().expect("server established");
        (client.sealer, server.opener)
    })
}

fn seal(plaintext: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    Encryptor::new(session().0.clone()).seal(plaintext, &mut wire);
    wire
}

fn decryptor() -> Decryptor {
    Decryptor::new(session().1.clone())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    match mode & 3 {
        1 => tamper(input),
        2 => stream(input),
        _ => raw(usize::from(mode >> 2) & 3, input),
    }
});

fn raw(genuine: usize, input: &[u8]) {
    let prefix: Vec<u8> = (0..genuine * MAX_PAYLOAD).map(|i| i as u8).collect();
    let mut wire = seal(&prefix);
    wire.extend_from_slice(input);
    let len = wire.len();
    let (mut dec, mut out) = (decryptor(), Vec::new());
    let result = dec.open(&mut wire, &mut out);
    if let Ok(used) = result {
        assert_eq!(used % PACKET_LEN, 0);
        assert!(used <= len);
        assert!(out.len() <= MAX_PAYLOAD * used / PACKET_LEN);
        assert_eq!(
            used,
            len - len % PACKET_LEN,
            "a complete packet was left unopened"
        );
    }
    // Nothing the fuzzer made up opens: exactly the genuine packets come out, Ok or Err.
    assert_eq!(out, prefix);
    assert_eq!(dec.packets() as usize, genuine);
    assert_eq!(result.is_ok(), input.len() < PACKET_LEN);
}

fn tamper(input: &[u8]) {
    let [p0, p1, p2, mask, plaintext @ ..] = input else {
        return;
    };
    if plaintext.is_empty() {
        return;
    }
    let mut wire = seal(plaintext);
    let at = usize::from_le_bytes([*p0, *p1, *p2, 0, 0, 0, 0, 0]) % wire.len();
    wire[at] ^= if *mask == 0 { 0x80 } else { *mask };
    let (mut dec, mut out) = (decryptor(), Vec::new());
    assert!(
        dec.open(&mut wire, &mut out).is_err(),
        "flipped byte {at} went unnoticed"
    );
    let intact = at / PACKET_LEN;
    assert_eq!(
        out,
        &plaintext[..intact * MAX_PAYLOAD],
        "output is not the intact prefix"
    );
    assert_eq!(dec.packets() as usize, intact);
}

fn stream(input: &[u8]) {
    let Some((&seed, plaintext)) = input.split_first() else {
        return;
    };
    let wire = seal(plaintext);
    let (mut dec, mut out, mut pending) = (decryptor(), Vec::new(), Vec::new());
    // Piece sizes from 1 to 2 packets and a bit, drawn from a tiny LCG seeded by the input.
    let mut state = u32::from(seed) | 1;
    let mut rest = &wire[..];
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (state >> 16) as usize % (2 * PACKET_LEN + 7) + 1;
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        pending.extend_from_slice(piece);
        let used = dec
            .open(&mut pending, &mut out)
            .expect("genuine packets open");
        assert_eq!(used, pending.len() - pending.len() % PACKET_LEN);
        pending.drain(..used);
    }
    assert!(pending.is_empty());
    assert_eq!(out, plaintext);
}
