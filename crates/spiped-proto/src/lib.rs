//! The spiped protocol, sans IO.
//!
//! This crate turns bytes into bytes: it derives keys, runs the handshake as a state machine and
//! seals and opens the 1,060-byte data packets. It opens no sockets, reads no files, reads no
//! clock and draws no randomness: the caller supplies nonces and Diffie-Hellman exponents, so
//! every exchange is deterministic under test. The tokio driver lives in the `tunnel` crate.
//!
//! ```text
//!   client (-e)                                  server (-d)
//!   nonce_C  ───────────────────────────────────►
//!            ◄─────────────────────────────────── nonce_S
//!   y_C ‖ HMAC(dhmac_C, y_C) ───────────────────►  check MAC, y_C < p
//!            ◄─────────────────────────────────── y_S ‖ HMAC(dhmac_S, y_S)
//!   check MAC, y_S < p
//!   ════════ 1060-byte packets, AES-256-CTR + HMAC-SHA256, both directions ════════
//! ```
//!
//! The wire format is spiped's (see its `DESIGN.md`), byte for byte, so either side interoperates
//! with the C implementation.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod dh;
mod error;
mod handshake;
mod key;
mod packet;
mod stream;

pub use dh::{DhExponent, PUBLIC_LEN};
pub use error::{HandshakeError, OpenError};
pub use handshake::{ForwardSecrecy, Handshake, Role, Session, MSG_DH_LEN, NONCE_LEN};
pub use key::Key;
pub use packet::{Opener, Sealer, MAX_PAYLOAD, PACKET_LEN};
pub use stream::{Decryptor, Encryptor};
