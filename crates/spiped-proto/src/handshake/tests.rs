//! Two handshakes talking in memory, with and without tampering.

use proptest::prelude::*;

use super::*;
use crate::packet::PACKET_LEN;
use crate::stream::{Decryptor, Encryptor};

fn key(s: &[u8]) -> Key {
    Key::from_file_contents(s)
}

fn new(role: Role, keys: Vec<Key>, fs: ForwardSecrecy, seed: u8) -> Handshake {
    Handshake::new(role, keys, fs, [seed; 32], [seed.wrapping_add(1); 32])
}

/// Runs both sides to completion, passing every byte through `alter` (direction, offset, byte).
/// Returns each side's result and whether it finished.
fn run(
    mut client: Handshake,
    mut server: Handshake,
    mut alter: impl FnMut(Role, usize, &mut u8),
) -> (
    Result<Option<Session>, HandshakeError>,
    Result<Option<Session>, HandshakeError>,
) {
    let (mut c_in, mut s_in) = (Vec::new(), Vec::new());
    let (mut c_sent, mut s_sent) = (0, 0);
    let (mut c_err, mut s_err) = (None, None);
    for _ in 0..8 {
        let mut out = Vec::new();
        client.take_outgoing(&mut out);
        for b in &mut out {
            alter(Role::Client, c_sent, b);
            c_sent += 1;
        }
        s_in.extend_from_slice(&out);
        let mut out = Vec::new();
        server.take_outgoing(&mut out);
        for b in &mut out {
            alter(Role::Server, s_sent, b);
            s_sent += 1;
        }
        c_in.extend_from_slice(&out);
        if s_err.is_none() {
            match server.handle(&s_in) {
                Ok(n) => drop(s_in.drain(..n)),
                Err(e) => s_err = Some(e),
            }
        }
        if c_err.is_none() {
            match client.handle(&c_in) {
                Ok(n) => drop(c_in.drain(..n)),
                Err(e) => c_err = Some(e),
            }
        }
    }
    let finish = |h: Handshake, e: Option<HandshakeError>| match e {
        Some(e) => Err(e),
        None => Ok(h.into_session()),
    };
    (finish(client, c_err), finish(server, s_err))
}

fn established(
    c: ForwardSecrecy,
    s: ForwardSecrecy,
) -> (
    Result<Option<Session>, HandshakeError>,
    Result<Option<Session>, HandshakeError>,
) {
    run(
        new(Role::Client, vec![key(b"k")], c, 1),
        new(Role::Server, vec![key(b"k")], s, 2),
        |_, _, _| {},
    )
}

fn exchange(client: &mut Session, server: &mut Session, msg: &[u8]) {
    let mut wire = Vec::new();
    Encryptor::new(client.sealer.clone()).seal(msg, &mut wire);
    let mut plain = Vec::new();
    let used = Decryptor::new(server.opener.clone())
        .open(&mut wire, &mut plain)
        .unwrap();
    assert_eq!(used, wire.len());
    assert_eq!(plain, msg);
}

#[test]
fn every_forward_secrecy_combination_agrees_on_keys() {
    use ForwardSecrecy::*;
    for (c, s, pfs) in [
        (Offer, Offer, true),
        (Skip, Offer, false),
        (Offer, Skip, false),
        (Skip, Skip, false),
        (Require, Offer, true),
    ] {
        let (c_res, s_res) = established(c, s);
        let mut cs = c_res.unwrap().expect("client established");
        let mut ss = s_res.unwrap().expect("server established");
        assert_eq!(
            (cs.forward_secret, ss.forward_secret),
            (pfs, pfs),
            "{c:?}/{s:?}"
        );
        exchange(&mut cs, &mut ss, b"hello from the client");
        exchange(&mut ss, &mut cs, &[7u8; 3000]);
    }
}

#[test]
fn require_refuses_a_peer_that_skips() {
    use ForwardSecrecy::*;
    let (_, s) = established(Skip, Require);
    assert_eq!(s.unwrap_err(), HandshakeError::ForwardSecrecyRequired);
    let (c, _) = established(Require, Skip);
    assert_eq!(c.unwrap_err(), HandshakeError::ForwardSecrecyRequired);
}

#[test]
fn wrong_key_fails_at_the_server_before_it_answers() {
    let (c, s) = run(
        new(Role::Client, vec![key(b"a")], ForwardSecrecy::Offer, 1),
        new(Role::Server, vec![key(b"b")], ForwardSecrecy::Offer, 2),
        |_, _, _| {},
    );
    assert_eq!(s.unwrap_err(), HandshakeError::BadMac);
    // The client never got the server's DH message, so it is still waiting.
    assert!(c.unwrap().is_none());
}

#[test]
fn server_accepts_any_key_of_a_rotation_and_says_which() {
    let server_keys = vec![key(b"old"), key(b"new")];
    for (client_key, index) in [(b"old", 0), (b"new", 1)] {
        let (c, s) = run(
            new(
                Role::Client,
                vec![key(client_key)],
                ForwardSecrecy::Offer,
                3,
            ),
            new(Role::Server, server_keys.clone(), ForwardSecrecy::Offer, 4),
            |_, _, _| {},
        );
        assert!(c.unwrap().is_some());
        assert_eq!(s.unwrap().unwrap().key_index, index);
    }
}

#[test]
fn a_flipped_byte_anywhere_in_the_handshake_is_caught() {
    // Client sends nonce (32) + DH (288); server sends nonce (32) + DH (288).
    // A flipped nonce byte changes the MAC keys, so the next MAC check fails on one side.
    for direction in [Role::Client, Role::Server] {
        for at in 0..(NONCE_LEN + MSG_DH_LEN) {
            let (c, s) = run(
                new(Role::Client, vec![key(b"k")], ForwardSecrecy::Skip, 1),
                new(Role::Server, vec![key(b"k")], ForwardSecrecy::Skip, 2),
                |dir, offset, b| {
                    if dir == direction && offset == at {
                        *b ^= 0x01;
                    }
                },
            );
            let both_ok = matches!((&c, &s), (Ok(Some(_)), Ok(Some(_))));
            assert!(!both_ok, "flip at {direction:?} byte {at} went unnoticed");
        }
    }
}

#[test]
fn handle_leaves_data_after_the_last_message() {
    let mut client = new(Role::Client, vec![key(b"k")], ForwardSecrecy::Skip, 1);
    let mut server = new(Role::Server, vec![key(b"k")], ForwardSecrecy::Skip, 2);
    let mut to_server = Vec::new();
    client.take_outgoing(&mut to_server);
    let mut to_client = Vec::new();
    server.take_outgoing(&mut to_client);
    assert_eq!(client.handle(&to_client).unwrap(), NONCE_LEN);
    to_server.clear();
    client.take_outgoing(&mut to_server);
    server.handle(&[0u8; NONCE_LEN]).unwrap_or_default();
    let mut s2 = new(Role::Server, vec![key(b"k")], ForwardSecrecy::Skip, 2);
    let mut all = [1u8; NONCE_LEN].to_vec();
    all.extend_from_slice(&to_server);
    all.extend_from_slice(b"trailing");
    // Wrong client nonce (we sent [1;32] where the client's real nonce was [1;32] too).
    assert_eq!(s2.handle(&all).unwrap(), NONCE_LEN + MSG_DH_LEN);
    assert!(s2.is_established());
    assert_eq!(s2.wants(), 0);
    assert_eq!(s2.handle(b"more").unwrap(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn open_inverts_seal(msg in proptest::collection::vec(any::<u8>(), 1..5000)) {
        let (c, s) = established(ForwardSecrecy::Skip, ForwardSecrecy::Skip);
        let (mut c, mut s) = (c.unwrap().unwrap(), s.unwrap().unwrap());
        let mut wire = Vec::new();
        Encryptor::new(c.sealer.clone()).seal(&msg, &mut wire);
        prop_assert_eq!(wire.len() % PACKET_LEN, 0);
        let mut plain = Vec::new();
        Decryptor::new(s.opener.clone()).open(&mut wire, &mut plain).unwrap();
        prop_assert_eq!(&plain, &msg);
        let _ = (&mut c, &mut s);
    }

    #[test]
    fn any_altered_byte_is_rejected_and_only_earlier_packets_come_out(
        msg in proptest::collection::vec(any::<u8>(), 1..4000),
        at in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (c, s) = established(ForwardSecrecy::Skip, ForwardSecrecy::Skip);
        let (c, s) = (c.unwrap().unwrap(), s.unwrap().unwrap());
        let mut wire = Vec::new();
        Encryptor::new(c.sealer).seal(&msg, &mut wire);
        let at = at.index(wire.len());
        wire[at] ^= flip;
        let mut plain = Vec::new();
        let result = Decryptor::new(s.opener).open(&mut wire, &mut plain);
        prop_assert!(result.is_err());
        let bad_packet = at / PACKET_LEN;
        prop_assert_eq!(&plain[..], &msg[..(bad_packet * 1024).min(msg.len())]);
    }
}
