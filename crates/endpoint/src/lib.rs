//! The primary endpoint: one address per region where applications always reach the primary.
//!
//! ```text
//!   client ──► endpoint ── hold while no route ──► refuse: -LOADING georep: no primary known (…)
//!                 │
//!                 └── Route::Primary { target, epoch } ──► byte-for-byte to target: the local
//!                     Redis (its Unix socket, or TCP), or the tunnel to the primary region;
//!                     closed when the route changes
//! ```
//!
//! The data path never parses RESP: MULTI/EXEC, pub/sub, blocking commands, `HELLO 3` and
//! scripts pass untouched, and each direction's end of stream travels as a half-close. The
//! agent decides the [`Route`]; this crate only carries it out. One thread forwards every
//! connection; with [`Limits::busy_poll`] it polls for a moment after traffic instead of
//! sleeping at once, which saves the two wake-ups a request otherwise costs (`busy_poll`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod busy_poll;
mod forward;
pub mod metrics;
mod route;
mod server;

pub use metrics::EndpointMetrics;
pub use route::{Route, Target};
pub use server::{serve, Limits, REFUSAL_CODE};
