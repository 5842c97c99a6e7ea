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

/// A suggested bound (64 MiB) on how far a party that only sends, the 2PC-Dealer dealer,
/// may run ahead of each peer (`marill dealer --ahead-mb`, `MemChannel::limit_ahead`,
/// `TcpChannel::limit_ahead`): its corrections do not depend on the parties' inputs, so
/// without a bound it queues as much of the session as it gets ahead (2.25 GB at the tiny
/// shape's b = 2048). Not applied by default: on this 2-core machine a bound of 64 or 256
/// MiB made openllama's b = 64 prefill in 2PC-Dealer 3–4× slower (the dealer no longer
/// computes ahead while the others work). A message is always accepted when nothing is
/// queued, so any size goes through.
pub const DEALER_AHEAD: usize = 64 << 20;

/// How many bytes of the dealer's corrections a 2PC-Dealer compute party reads ahead of
/// need by default (`marill serve | client --offline-mb`, 256 MiB): the offline phase's
/// transfer. On a real network TCP's flow control otherwise keeps the dealer's bytes at the
/// dealer until they are read, so they would cross only while the party waits for them.
pub const OFFLINE_AHEAD: usize = 256 << 20;

/// Waits until `queued` (bytes sent to a peer and not yet taken) leaves room for `len`
/// more under `limit` (or is empty), polling; `Timeout` past `deadline`, `PeerClosed` once
/// `gone()` says the peer's end is closed.
fn wait_for_room(
    queued: &std::sync::atomic::AtomicUsize,
    len: usize,
    limit: usize,
    deadline: std::time::Instant,
    gone: impl Fn() -> bool,
) -> Result<(), marill_core::Error> {
    use std::sync::atomic::Ordering;
    loop {
        let q = queued.load(Ordering::Acquire);
        if q == 0 || q.saturating_add(len) <= limit {
            return Ok(());
        }
        if gone() {
            return Err(marill_core::Error::PeerClosed);
        }
        if std::time::Instant::now() >= deadline {
            return Err(marill_core::Error::Timeout);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}
