//! Transports: implementations of [`marill_core::Channel`].
//!
//! Both have message semantics: a `recv` must ask for exactly the length that was sent,
//! or it fails with `Malformed`; both time out instead of waiting forever.

pub mod link;
pub mod mem;
pub mod split;
pub mod tcp;
pub mod tls;

use std::time::Duration;

/// Default time a party waits for a peer's message before giving up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
