//! How every georep HTTP listener is served: the agent's metrics and control listeners, the
//! control API of `georep up`, a standalone tunnel's metrics.
//!
//! Two concerns, nothing else:
//!
//! - [`serve`] bounds what one client can hold: connections served at once, the time to send a
//!   request head, the head's size, the whole exchange. One request per connection (no
//!   keep-alive): idle connections cannot pile up, and a tool's request is never queued behind
//!   another's.
//! - [`auth`] guards control surfaces: a bearer token compared in constant time, cross-origin
//!   requests refused, bodies refused where none is expected; failures counted and logged with
//!   the peer's address, never the token.
//!
//! Routing, handlers and JSON stay with the callers (axum `Router`s).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
mod server;

pub use server::{serve, Limits, Peer};
