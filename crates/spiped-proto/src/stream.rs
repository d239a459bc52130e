//! Byte-stream framing over [`Sealer`] and [`Opener`].
//!
//! The IO layer reads and writes arbitrary chunks; these types cut plaintext into packets and
//! reassemble packets from a ciphertext stream that may arrive split anywhere.

use crate::error::OpenError;
use crate::packet::{Opener, Sealer, MAX_PAYLOAD, PACKET_LEN};

/// Turns a plaintext stream into packets.
pub struct Encryptor {
    sealer: Sealer,
}

impl Encryptor {
    /// Wraps one direction's sealer.
    pub fn new(sealer: Sealer) -> Self {
        Self { sealer }
    }

    /// Appends to `out` the packets carrying all of `plaintext`, 1,024 bytes to a packet (the
    /// last one may be short). Empty input yields nothing: the protocol has no empty packet.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) {
        for chunk in plaintext.chunks(MAX_PAYLOAD) {
            let start = out.len();
            out.resize(start + PACKET_LEN, 0);
            let packet = (&mut out[start..]).try_into().expect("PACKET_LEN bytes");
            self.sealer.seal(chunk, packet);
        }
    }

    /// How many packets were sealed so far.
    pub fn packets(&self) -> u64 {
        self.sealer.packets()
    }
}

/// Turns a ciphertext stream back into plaintext, packet by packet.
pub struct Decryptor {
    opener: Opener,
}

impl Decryptor {
    /// Wraps one direction's opener.
    pub fn new(opener: Opener) -> Self {
        Self { opener }
    }

    /// Opens every complete packet at the front of `wire` (decrypting in place), appends the
    /// plaintext to `out` and returns how many bytes of `wire` were used. A partial packet at the
    /// end is not an error: it is left for the caller to complete with more bytes.
    ///
    /// On error, `out` holds the plaintext of every packet before the bad one, and nothing more.
    pub fn open(&mut self, wire: &mut [u8], out: &mut Vec<u8>) -> Result<usize, OpenError> {
        let mut used = 0;
        for packet in wire.chunks_exact_mut(PACKET_LEN) {
            let packet: &mut [u8; PACKET_LEN] = packet.try_into().expect("exact chunk");
            out.extend_from_slice(self.opener.open(packet)?);
            used += PACKET_LEN;
        }
        Ok(used)
    }

    /// How many packets were opened so far.
    pub fn packets(&self) -> u64 {
        self.opener.packets()
    }
}
