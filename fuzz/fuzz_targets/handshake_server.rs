//! A server `Handshake` fed hostile bytes in fuzz-chosen pieces, the way the driver feeds it.
//!
//! Input: `cfg`, `k`, `k` piece sizes, then the wire bytes. `cfg` bit 0: the server has two keys;
//! bits 1-2: its forward secrecy (Skip, Offer, Require, Skip); bit 3: "peer" mode. In raw mode the
//! wire is the rest of the input. In peer mode the wire is a genuine client's messages (client key
//! from bits 4-5: ours, our second, a wrong one; bit 6: the client offers Diffie-Hellman), then
//! `lo hi mask`: flip `mask` into byte `lo | hi << 8`, then data bytes sent after the handshake.
//! Peer mode checks the outcome: established exactly when nothing was flipped and the peer is
//! acceptable, with the right key index and forward secrecy, and the data bytes left unread.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use spiped_proto::{ForwardSecrecy, Handshake, HandshakeError, Key, Role, MSG_DH_LEN, NONCE_LEN};

const CLIENT_NONCE: [u8; NONCE_LEN] = [0xc1; NONCE_LEN];
const SERVER_NONCE: [u8; NONCE_LEN] = [0x5e; NONCE_LEN];

fn keys() -> [Key; 3] {
    [b"key zero".as_slice(), b"key one", b"wrong key"].map(Key::from_file_contents)
}

/// A genuine client's whole output (nonce, then `y ‖ h`) per key (3) and Skip/Offer (2), made
/// once per process: the Offer ones each cost a modular exponentiation.
fn client_messages(key: usize, offer: bool) -> &'static [u8] {
    static MESSAGES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let all = MESSAGES.get_or_init(|| {
        let mut all = Vec::new();
        for key in keys() {
            for fs in [ForwardSecrecy::Skip, ForwardSecrecy::Offer] {
                let mut c =
                    Handshake::new(Role::Client, vec![key.clone()], fs, CLIENT_NONCE, [7; 32]);
                assert_eq!(c.handle(&SERVER_NONCE), Ok(NONCE_LEN));
                let mut out = Vec::new();
                c.take_outgoing(&mut out);
                assert_eq!(out.len(), NONCE_LEN + MSG_DH_LEN);
                all.push(out);
            }
        }
        all
    });
    &all[key * 2 + usize::from(offer)]
}

fuzz_target!(|data: &[u8]| {
    let [cfg, k, rest @ ..] = data else {
        return;
    };
    let (sizes, rest) = rest.split_at(usize::from(*k).min(rest.len()));
    let [k0, k1, _] = keys();
    let server_keys = if cfg & 1 == 0 { vec![k0] } else { vec![k0, k1] };
    let two_keys = server_keys.len() == 2;
    let server_fs = match (cfg >> 1) & 3 {
        1 => ForwardSecrecy::Offer,
        2 => ForwardSecrecy::Require,
        _ => ForwardSecrecy::Skip,
    };
    let mut server = Handshake::new(Role::Server, server_keys, server_fs, SERVER_NONCE, [9; 32]);
    let peer = cfg & 8 != 0;

    let mut wire = Vec::new();
    let mut flipped = false;
    let (client_key, client_offers) = (usize::from((cfg >> 4) & 3).min(2), cfg & 0x40 != 0);
    if peer {
        wire.extend_from_slice(client_messages(client_key, client_offers));
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

    let (result, left) = drive(&mut server, &wire, sizes);
    let established = server.is_established();
    assert_eq!(established, result.is_ok() && server.wants() == 0);
    let mut out = Vec::new();
    server.take_outgoing(&mut out);
    assert_eq!(out[..NONCE_LEN], SERVER_NONCE);
    assert_eq!(
        out.len(),
        NONCE_LEN + if established { MSG_DH_LEN } else { 0 }
    );
    let session = server.into_session();
    assert_eq!(session.is_some(), established);

    if peer {
        let key_index = match client_key {
            0 => Some(0),
            1 if two_keys => Some(1),
            _ => None,
        };
        let refused_skip = server_fs == ForwardSecrecy::Require && !client_offers;
        let acceptable = !flipped && key_index.is_some() && !refused_skip;
        assert_eq!(established, acceptable, "{result:?}");
        if let Some(session) = session {
            assert_eq!(Some(session.key_index), key_index);
            let fs = client_offers && server_fs != ForwardSecrecy::Skip;
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
