//! The handshake state machine.
//!
//! Feed it the peer's bytes with [`Handshake::handle`], send what [`Handshake::take_outgoing`]
//! returns, and once [`Handshake::is_established`] turn it into a [`Session`]. Messages have fixed
//! sizes, so [`Handshake::wants`] tells the driver exactly how many bytes to read next.
//!
//! The CPU-heavy steps (one modular exponentiation to make our public value, one to derive the
//! shared secret) happen inside `handle`; a driver that must not block should call it from a
//! blocking-friendly thread.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::dh::{self, DhExponent, PublicValue, PUBLIC_LEN};
use crate::error::HandshakeError;
use crate::key::Key;
use crate::packet::{Opener, Sealer};

/// Length of each side's opening nonce.
pub const NONCE_LEN: usize = 32;
/// Length of the Diffie-Hellman message: public value and its HMAC.
pub const MSG_DH_LEN: usize = PUBLIC_LEN + 32;

type HmacSha256 = Hmac<Sha256>;

/// Which end of the protocol we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Connects out and encrypts its plaintext side (`spiped -e`).
    Client,
    /// Accepts encrypted connections (`spiped -d`).
    Server,
}

/// Forward-secrecy policy, spiped's `-f` / `-g`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardSecrecy {
    /// Do Diffie-Hellman; accept a peer that skips it (spiped's default).
    #[default]
    Offer,
    /// Skip Diffie-Hellman: send `y = 1` (`-f`). Keys then depend only on `K` and the nonces.
    Skip,
    /// Do Diffie-Hellman and refuse a peer that skips it (`-g`).
    Require,
}

/// The keys of an established connection.
pub struct Session {
    /// Seals what we send.
    pub sealer: Sealer,
    /// Opens what we receive.
    pub opener: Opener,
    /// Index, in the configured key list, of the key the peer used.
    pub key_index: usize,
    /// Whether both sides did Diffie-Hellman (the session survives a later leak of `K`).
    pub forward_secret: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("key_index", &self.key_index)
            .field("forward_secret", &self.forward_secret)
            .finish_non_exhaustive()
    }
}

enum State {
    /// Waiting for the peer's nonce.
    Nonce,
    /// Waiting for the peer's `y ‖ h`. The server does not know the key yet.
    Dh {
        peer_nonce: [u8; NONCE_LEN],
    },
    Established(Box<Session>),
    /// A previous message failed or the session was taken; no further input is accepted.
    Closed,
}

/// One side of a spiped handshake.
pub struct Handshake {
    role: Role,
    keys: Vec<Key>,
    forward_secrecy: ForwardSecrecy,
    nonce: [u8; NONCE_LEN],
    exponent: DhExponent,
    state: State,
    outgoing: Vec<u8>,
}

impl Handshake {
    /// Starts a handshake. Our nonce is queued for sending at once.
    ///
    /// `keys` must not be empty. A client uses `keys[0]`; a server accepts a peer using any of
    /// them (key rotation). `nonce` and `exponent_random` must be fresh random bytes.
    ///
    /// # Panics
    /// If `keys` is empty: a configuration error the caller rules out when loading keys.
    pub fn new(
        role: Role,
        keys: Vec<Key>,
        forward_secrecy: ForwardSecrecy,
        nonce: [u8; NONCE_LEN],
        exponent_random: [u8; 32],
    ) -> Self {
        assert!(!keys.is_empty(), "a handshake needs at least one key");
        Self {
            role,
            keys,
            forward_secrecy,
            nonce,
            exponent: DhExponent::from_random(exponent_random),
            state: State::Nonce,
            outgoing: nonce.to_vec(),
        }
    }

    /// Exactly how many more bytes the next step needs, or 0 when the handshake is over.
    pub fn wants(&self) -> usize {
        match self.state {
            State::Nonce => NONCE_LEN,
            State::Dh { .. } => MSG_DH_LEN,
            State::Established(_) | State::Closed => 0,
        }
    }

    /// Consumes complete handshake messages from the front of `input`, returning how many bytes
    /// were used. Bytes after the final message belong to the data stream and are left alone.
    ///
    /// After an error the handshake is closed for good: drop the connection.
    pub fn handle(&mut self, mut input: &[u8]) -> Result<usize, HandshakeError> {
        let mut used = 0;
        while self.wants() > 0 && input.len() >= self.wants() {
            let (msg, rest) = input.split_at(self.wants());
            let step = self.step(msg);
            if step.is_err() {
                self.state = State::Closed;
            }
            step?;
            used += msg.len();
            input = rest;
        }
        Ok(used)
    }

    /// Moves the bytes queued for the peer into `out`.
    pub fn take_outgoing(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.outgoing);
    }

    /// Whether the session keys are ready (our last message may still be queued).
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established(_))
    }

    /// Takes the session once established. Send [`Handshake::take_outgoing`] first.
    pub fn into_session(self) -> Option<Session> {
        match self.state {
            State::Established(s) => Some(*s),
            _ => None,
        }
    }

    fn step(&mut self, msg: &[u8]) -> Result<(), HandshakeError> {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Nonce => {
                let peer_nonce: [u8; NONCE_LEN] = msg.try_into().expect("sized by wants()");
                if self.role == Role::Client {
                    // The client speaks first: it knows its key, so its MAC key is ready now.
                    let (mine, _) = self.dh_mac_keys(0, &peer_nonce);
                    let message = self.dh_message(&mine);
                    self.outgoing.extend_from_slice(&message);
                }
                self.state = State::Dh { peer_nonce };
                Ok(())
            }
            State::Dh { peer_nonce } => {
                let (y, h) = msg.split_at(PUBLIC_LEN);
                let y: &[u8; PUBLIC_LEN] = y.try_into().expect("sized by wants()");
                let key_index = self.verify_peer_mac(&peer_nonce, y, h)?;
                let peer_skips_dh = match dh::check_public(y) {
                    PublicValue::Invalid => return Err(HandshakeError::BadDhValue),
                    PublicValue::One => true,
                    PublicValue::Element => false,
                };
                if peer_skips_dh && self.forward_secrecy == ForwardSecrecy::Require {
                    return Err(HandshakeError::ForwardSecrecyRequired);
                }
                if self.role == Role::Server {
                    // Only now, with the client authenticated, do we spend a modexp on it.
                    let (mine, _) = self.dh_mac_keys(key_index, &peer_nonce);
                    let message = self.dh_message(&mine);
                    self.outgoing.extend_from_slice(&message);
                }
                let we_skip_dh = self.forward_secrecy == ForwardSecrecy::Skip;
                // y_SC is 1 when either side sent y = 1 (1^x = 1), exactly as C spiped computes.
                let shared = if we_skip_dh || peer_skips_dh {
                    Zeroizing::new(dh::one())
                } else {
                    Zeroizing::new(self.exponent.shared(y))
                };
                let session = self.session(key_index, &peer_nonce, &shared);
                self.state = State::Established(Box::new(Session {
                    forward_secret: !(we_skip_dh || peer_skips_dh),
                    ..session
                }));
                Ok(())
            }
            State::Established(_) | State::Closed => unreachable!("wants() is 0 in these states"),
        }
    }

    /// Our public value and its MAC.
    fn dh_message(&self, mac_key: &[u8; 32]) -> Vec<u8> {
        let y = match self.forward_secrecy {
            ForwardSecrecy::Skip => dh::one(),
            ForwardSecrecy::Offer | ForwardSecrecy::Require => self.exponent.public(),
        };
        let mut message = Vec::with_capacity(MSG_DH_LEN);
        message.extend_from_slice(&y);
        message.extend_from_slice(&hmac(mac_key, &y));
        message
    }

    /// Finds the key under which the peer's MAC verifies: the only key for a client, any of the
    /// rotation set for a server.
    fn verify_peer_mac(
        &self,
        peer_nonce: &[u8; NONCE_LEN],
        y: &[u8; PUBLIC_LEN],
        h: &[u8],
    ) -> Result<usize, HandshakeError> {
        let candidates = match self.role {
            Role::Client => 0..1,
            Role::Server => 0..self.keys.len(),
        };
        for index in candidates {
            let (_, theirs) = self.dh_mac_keys(index, peer_nonce);
            if bool::from(hmac(&theirs, y).ct_eq(h)) {
                return Ok(index);
            }
        }
        Err(HandshakeError::BadMac)
    }

    /// `dhmac_C ‖ dhmac_S = PBKDF2-SHA256(K, nonce_C ‖ nonce_S, 1, 64)`, as (ours, theirs).
    fn dh_mac_keys(
        &self,
        key_index: usize,
        peer_nonce: &[u8; NONCE_LEN],
    ) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        let salt = self.nonces(peer_nonce);
        let mut dk1 = Zeroizing::new([0u8; 64]);
        pbkdf2::pbkdf2_hmac::<Sha256>(self.keys[key_index].as_bytes(), &salt, 1, &mut *dk1);
        let client = Zeroizing::new(<[u8; 32]>::try_from(&dk1[..32]).expect("32 bytes"));
        let server = Zeroizing::new(<[u8; 32]>::try_from(&dk1[32..]).expect("32 bytes"));
        match self.role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        }
    }

    /// `E_C ‖ H_C ‖ E_S ‖ H_S = PBKDF2-SHA256(K, nonce_C ‖ nonce_S ‖ y_SC, 1, 128)`.
    fn session(
        &self,
        key_index: usize,
        peer_nonce: &[u8; NONCE_LEN],
        shared: &[u8; PUBLIC_LEN],
    ) -> Session {
        let mut salt = Zeroizing::new(Vec::with_capacity(2 * NONCE_LEN + PUBLIC_LEN));
        salt.extend_from_slice(&self.nonces(peer_nonce));
        salt.extend_from_slice(shared);
        let mut dk2 = Zeroizing::new([0u8; 128]);
        pbkdf2::pbkdf2_hmac::<Sha256>(self.keys[key_index].as_bytes(), &salt, 1, &mut *dk2);
        let client: &[u8; 64] = dk2[..64].try_into().expect("64 bytes");
        let server: &[u8; 64] = dk2[64..].try_into().expect("64 bytes");
        let (send, receive) = match self.role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        };
        Session {
            sealer: Sealer::new(send),
            opener: Opener::new(receive),
            key_index,
            forward_secret: false,
        }
    }

    /// `nonce_C ‖ nonce_S`.
    fn nonces(&self, peer_nonce: &[u8; NONCE_LEN]) -> [u8; 2 * NONCE_LEN] {
        let (c, s) = match self.role {
            Role::Client => (&self.nonce, peer_nonce),
            Role::Server => (peer_nonce, &self.nonce),
        };
        let mut out = [0u8; 2 * NONCE_LEN];
        out[..NONCE_LEN].copy_from_slice(c);
        out[NONCE_LEN..].copy_from_slice(s);
        out
    }
}

fn hmac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("role", &self.role)
            .field("forward_secrecy", &self.forward_secrecy)
            .field("wants", &self.wants())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
