//! A client `Handshake` fed hostile bytes in fuzz-chosen pieces, the way the driver feeds it.
//!
//! Input: `cfg`, `k`, `k` piece sizes, then the wire bytes. `cfg` bits 0-1: the client's forward
//! secrecy (Skip, Offer, Require, Require; Offer and Require cost a modular exponentiation once
//! 32 bytes arrive); bit 2: "peer" mode. In raw mode the wire is the rest of the input. In peer
//! mode the wire is a genuine server's messages (bit 3: under a wrong key; bit 4: the server
//! offers Diffie-Hellman), then `lo hi mask`: flip `mask` into byte `lo | hi << 8`, then data
//! bytes sent after the handshake. Peer mode checks the outcome: established exactly when nothing
//! was flipped and the peer is acceptable, with the right forward secrecy, data left unread.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use spiped_proto::{ForwardSecrecy, Handshake, HandshakeError, Key, Role, MSG_DH_LEN, NONCE_LEN};

const CLIENT_NONCE: [u8; NONCE_LEN] = [0xc1; NONCE_LEN];
const CLIENT_EXPONENT: [u8; 32] = [7; 32];
const SERVER_NONCE: [u8; NONCE_LEN] = [0x5e; NONCE_LEN];

fn key(wrong: bool) -> Key {
    let contents: &[u8] = if wrong { b"wrong key" } else { b"key zero" };
    Key::from_file_contents(contents)
}

/// A genuine server's whole output (nonce, then `y ‖ h`) per key (right, wrong) and Skip/Offer,
/// made once per process by running a client twin of ours (same nonce, Skip) against it. The
/// server's `y ‖ h` depends only on its key, its policy and the two nonces.
fn server_messages(wrong_key: bool, offer: bool) -> &'static [u8] {
    static MESSAGES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let all = MESSAGES.get_or_init(|| {
        let mut all = Vec::new();
        for wrong in [false, true] {
            for fs in [ForwardSecrecy::Skip, ForwardSecrecy::Offer] {
                let skip = ForwardSecrecy::Skip;
                let k = vec![key(wrong)];
                let mut c = Handshake::new(Role::Client, k.clone(), skip, CLIENT_NONCE, [1; 32]);
                let mut s = Handshake::new(Role::Server, k, fs, SERVER_NONCE, [9; 32]);
                let mut to_server = Vec::new();
                c.take_outgoing(&mut to_server);
                assert_eq!(s.handle(&to_server), Ok(NONCE_LEN));
                let mut from_server = Vec::new();
                s.take_outgoing(&mut from_server);
                assert_eq!(c.handle(&from_server), Ok(NONCE_LEN));
                to_server.clear();
                c.take_outgoing(&mut to_server);
                assert_eq!(s.handle(&to_server), Ok(MSG_DH_LEN));
                s.take_outgoing(&mut from_server);
                assert_eq!(from_server.len(), NONCE_LEN + MSG_DH_LEN);
                all.push(from_server);
            }
        }
        all
    });
    &all[usize::from(wrong_key) * 2 + usize::from(offer)]
}

fuzz_target!(|data: &[u8]| {
    let [cfg, k, rest @ ..] = data else {
        return;
    };
    let (sizes, rest) = rest.split_at(usize::from(*k).min(rest.len()));
    let client_fs = match cfg & 3 {
        0 => ForwardSecrecy::Skip,
        1 => ForwardSecrecy::Offer,
        _ => ForwardSecrecy::Require,
    };
    let mut client = Handshake::new(
        Role::Client,
        vec![key(false)],
        client_fs,
        CLIENT_NONCE,
        CLIENT_EXPONENT,
    );
    let peer = cfg & 4 != 0;

    let mut wire = Vec::new();
    let mut flipped = false;
    let (wrong_key, server_offers) = (cfg & 8 != 0, cfg & 0x10 != 0);
    if peer {
        wire.extend_from_slice(server_messages(wrong_key, server_offers));
        let [lo, hi, mask, data @ ..] = rest else {
            return;
        };
        wire.extend_from_slice(data);
        let at = usize::from(u16::from_le_bytes([*lo, *hi]));
        if *mask != 0 && at < wire.len() {
            wire[at] ^= mask;
            flipped = at < NONCE_LEN + MSG_DH_LEN;
        }
    } else {
        wire.extend_from_slice(rest);
    }

    let (result, left) = drive(&mut client, &wire, sizes);
    let established = client.is_established();
    assert_eq!(established, result.is_ok() && client.wants() == 0);
    let mut out = Vec::new();
    client.take_outgoing(&mut out);
    assert_eq!(out[..NONCE_LEN], CLIENT_NONCE);
    // The client answers the server's nonce at once, and that step cannot fail.
    let answered = wire.len() >= NONCE_LEN;
    assert_eq!(out.len(), NONCE_LEN + if answered { MSG_DH_LEN } else { 0 });
    let session = client.into_session();
    assert_eq!(session.is_some(), established);

    if peer {
        let refused_skip = client_fs == ForwardSecrecy::Require && !server_offers;
        let acceptable = !flipped && !wrong_key && !refused_skip;
        assert_eq!(established, acceptable, "{result:?}");
        if let Some(session) = session {
            assert_eq!(session.key_index, 0);
            let fs = server_offers && client_fs != ForwardSecrecy::Skip;
            assert_eq!(session.forward_secret, fs);
            assert_eq!(
                left,
                wire[NONCE_LEN + MSG_DH_LEN..],
                "data after the handshake was eaten"
            );
        }
    }
});

/// Feeds `wire` in pieces of `sizes[i] + 1` bytes (then the rest at once), keeping what `handle`
/// leaves unconsumed buffered as the driver does. Returns the outcome and the bytes left over.
fn drive(hs: &mut Handshake, wire: &[u8], sizes: &[u8]) -> (Result<(), HandshakeError>, Vec<u8>) {
    let mut sizes = sizes.iter().map(|&n| usize::from(n) + 1);
    let (mut rest, mut buf) = (wire, Vec::new());
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        buf.extend_from_slice(piece);
        match hs.handle(&buf) {
            Ok(used) => {
                assert!(used <= buf.len());
                buf.drain(..used);
                assert!(
                    hs.wants() == 0 || buf.len() < hs.wants(),
                    "a whole message was left"
                );
            }
            Err(e) => {
                assert_eq!(hs.wants(), 0, "a failed handshake must stay closed");
                assert_eq!(hs.handle(&buf), Ok(0));
                assert!(!hs.is_established());
                return (Err(e), buf);
            }
        }
    }
    (Ok(()), buf)
}
