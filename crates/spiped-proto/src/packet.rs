//! One direction's packet keys: seal plaintext into 1,060-byte packets, open them again.
//!
//! ```text
//! padded    = M ‖ 0x00 … ‖ BE32(len(M))               1,028 bytes, 1 ≤ len(M) ≤ 1,024
//! encrypted = AES-256-CTR(E, padded, nonce = packet#)  counter block BE64(packet#) ‖ BE64(block#)
//! packet    = encrypted ‖ HMAC-SHA256(H, encrypted ‖ BE64(packet#))
//! ```

use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};
use aes::Aes256;
use ctr::{Ctr128BE, CtrCore};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::OpenError;

/// Largest plaintext one packet carries.
pub const MAX_PAYLOAD: usize = 1024;
/// Size of the encrypted part: payload, zero padding, 4-byte length.
const BODY_LEN: usize = MAX_PAYLOAD + 4;
/// Size of every packet on the wire.
pub const PACKET_LEN: usize = BODY_LEN + 32;

type HmacSha256 = Hmac<Sha256>;

/// Keys and counter shared by [`Sealer`] and [`Opener`].
#[derive(Clone)]
struct DirectionKeys {
    aes: Aes256,
    /// HMAC state already keyed with `H`; cloned per packet so the key schedule runs once.
    mac: HmacSha256,
    packet_number: u64,
}

impl DirectionKeys {
    /// `keys` is `E ‖ H`, one half of `dk_2`.
    fn new(keys: &[u8; 64]) -> Self {
        Self {
            aes: Aes256::new(keys[..32].into()),
            mac: <HmacSha256 as Mac>::new_from_slice(&keys[32..])
                .expect("HMAC takes any key length"),
            packet_number: 0,
        }
    }

    fn apply_keystream(&self, body: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&self.packet_number.to_be_bytes());
        let core = CtrCore::inner_iv_init(self.aes.clone(), &iv.into());
        Ctr128BE::<Aes256>::from_core(core).apply_keystream(body);
    }

    fn mac(&self, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(body);
        mac.update(&self.packet_number.to_be_bytes());
        mac
    }
}

/// Seals plaintext into packets for one direction.
#[derive(Clone)]
pub struct Sealer(DirectionKeys);

impl Sealer {
    pub(crate) fn new(keys: &[u8; 64]) -> Self {
        Self(DirectionKeys::new(keys))
    }

    /// Seals `payload` (1 to 1,024 bytes) into `out`, and advances the packet number.
    ///
    /// # Panics
    /// If `payload` is empty or longer than [`MAX_PAYLOAD`]: the protocol cannot express it, and
    /// only our own code chooses the payload size.
    pub fn seal(&mut self, payload: &[u8], out: &mut [u8; PACKET_LEN]) {
        assert!(
            (1..=MAX_PAYLOAD).contains(&payload.len()),
            "a packet carries 1..=1024 bytes"
        );
        let (body, tag) = out.split_at_mut(BODY_LEN);
        body[..payload.len()].copy_from_slice(payload);
        body[payload.len()..MAX_PAYLOAD].fill(0);
        body[MAX_PAYLOAD..].copy_from_slice(&(payload.len() as u32).to_be_bytes());
        self.0.apply_keystream(body);
        tag.copy_from_slice(&self.0.mac(body).finalize().into_bytes());
        // 2^64 packets of 1 KiB is far beyond any connection's life; wrap like C spiped would.
        self.0.packet_number = self.0.packet_number.wrapping_add(1);
    }

    /// How many packets this direction has sealed.
    pub fn packets(&self) -> u64 {
        self.0.packet_number
    }
}

/// Opens packets from one direction, rejecting anything altered, replayed or reordered.
#[derive(Clone)]
pub struct Opener(DirectionKeys);

impl Opener {
    pub(crate) fn new(keys: &[u8; 64]) -> Self {
        Self(DirectionKeys::new(keys))
    }

    /// Verifies and decrypts one packet in place, returning its payload.
    ///
    /// On error the packet number does not advance and the connection must be dropped.
    pub fn open<'p>(&mut self, packet: &'p mut [u8; PACKET_LEN]) -> Result<&'p [u8], OpenError> {
        if self.0.packet_number == u64::MAX {
            return Err(OpenError::CounterExhausted);
        }
        let (body, tag) = packet.split_at_mut(BODY_LEN);
        self.0
            .mac(body)
            .verify_slice(tag)
            .map_err(|_| OpenError::BadMac)?;
        self.0.apply_keystream(body);
        self.0.packet_number += 1;
        let len = u32::from_be_bytes(body[MAX_PAYLOAD..].try_into().expect("4 bytes"));
        if len == 0 || len as usize > MAX_PAYLOAD {
            return Err(OpenError::BadLength(len));
        }
        Ok(&body[..len as usize])
    }

    /// How many packets this direction has opened.
    pub fn packets(&self) -> u64 {
        self.0.packet_number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Sealer, Opener) {
        let keys = [0x42u8; 64];
        (Sealer::new(&keys), Opener::new(&keys))
    }

    #[test]
    fn round_trip_every_length_edge() {
        let (mut s, mut o) = pair();
        for len in [1, 2, 1023, 1024] {
            let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut p = [0u8; PACKET_LEN];
            s.seal(&msg, &mut p);
            assert_eq!(o.open(&mut p).unwrap(), &msg[..]);
        }
        assert_eq!((s.packets(), o.packets()), (4, 4));
    }

    #[test]
    fn replayed_packet_is_rejected() {
        let (mut s, mut o) = pair();
        let mut p = [0u8; PACKET_LEN];
        s.seal(b"once", &mut p);
        let mut replay = p;
        o.open(&mut p).unwrap();
        assert_eq!(o.open(&mut replay), Err(OpenError::BadMac));
    }

    #[test]
    fn counter_block_is_packet_number_then_block_number_big_endian() {
        // A little-endian counter (septid's bug) makes C spiped drop every packet.
        use aes::cipher::BlockEncrypt;
        let (mut s, _) = pair();
        let mut p = [0u8; PACKET_LEN];
        s.seal(&[0; 1024], &mut p); // packet 0
        s.seal(&[0; 1024], &mut p); // packet 1: zero plaintext, so the body is the keystream
        let aes = Aes256::new(&[0x42u8; 32].into());
        for block in 0u64..2 {
            let mut counter = [0u8; 16];
            counter[..8].copy_from_slice(&1u64.to_be_bytes());
            counter[8..].copy_from_slice(&block.to_be_bytes());
            let mut ks = counter.into();
            aes.encrypt_block(&mut ks);
            let at = block as usize * 16;
            assert_eq!(p[at..at + 16], ks[..]);
        }
    }
}
