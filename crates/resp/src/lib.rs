//! Just enough Redis client for the agent and the tools: RESP2 encoding and decoding (sans IO),
//! the `INFO` text format, and an authenticated tokio connection with timeouts.
//!
//! Not a general client: no pipelining API, no pub/sub, no cluster. The agent issues a handful of
//! administrative commands per second; keeping the protocol code here keeps it fuzzable and free
//! of a large dependency tree.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod conn;
mod info;

pub use codec::{decode, encode, DecodeError, Value};
pub use conn::{Conn, Credentials, Error};
pub use info::Info;
