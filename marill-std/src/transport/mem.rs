//! In-process transport: one thread per party, messages over `std::sync::mpsc`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use marill_core::{Channel, Error, PartyId};

use super::DEFAULT_TIMEOUT;

/// The sending end towards one peer, with the count of bytes it has not read yet.
type Outgoing = Option<(Sender<Vec<u8>>, Arc<AtomicUsize>)>;
/// The receiving end from one peer, with the same count.
type Incoming = Option<(Receiver<Vec<u8>>, Arc<AtomicUsize>)>;

/// One party's end of an in-process mesh.
pub struct MemChannel {
    id: PartyId,
    to: Vec<Outgoing>,
    from: Vec<Incoming>,
    timeout: Duration,
    /// Most bytes queued towards one peer before a send waits ([`MemChannel::limit_ahead`]).
    ahead: Option<usize>,
}

/// A full mesh between `n` parties; element `i` is party `i`'s channel.
pub fn mesh(n: usize) -> Vec<MemChannel> {
    mesh_with_timeout(n, DEFAULT_TIMEOUT)
}

/// [`mesh`] with a receive timeout.
pub fn mesh_with_timeout(n: usize, timeout: Duration) -> Vec<MemChannel> {
    let mut to: Vec<Vec<Outgoing>> = (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut from: Vec<Vec<Incoming>> = (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let (s, r) = channel();
                let queued = Arc::new(AtomicUsize::new(0));
                to[i][j] = Some((s, Arc::clone(&queued)));
                from[j][i] = Some((r, queued));
            }
        }
    }
    to.into_iter()
        .zip(from)
        .enumerate()
        .map(|(id, (to, from))| MemChannel { id, to, from, timeout, ahead: None })
        .collect()
}

impl MemChannel {
    /// Let a send wait (up to the timeout) while more than `bytes` sent to that peer are
    /// still unread: for a party that only sends, so that it cannot queue a whole session
    /// ahead of its peers ([`super::DEALER_AHEAD`]).
    pub fn limit_ahead(&mut self, bytes: usize) {
        self.ahead = Some(bytes);
    }
}

impl Channel for MemChannel {
    fn id(&self) -> PartyId {
        self.id
    }

    fn send(&mut self, to: PartyId, bytes: &[u8]) -> Result<(), Error> {
        let (s, queued) = self.to.get(to).and_then(Option::as_ref).ok_or(Error::InvalidArgument)?;
        if let Some(limit) = self.ahead {
            // A dropped receiver (its end of the count gone) ends the wait at once.
            super::wait_for_room(queued, bytes.len(), limit, Instant::now() + self.timeout, || {
                Arc::strong_count(queued) == 1
            })?;
        }
        queued.fetch_add(bytes.len(), Ordering::AcqRel);
        s.send(bytes.to_vec()).map_err(|_| Error::PeerClosed)
    }

    fn recv(&mut self, from: PartyId, bytes: &mut [u8]) -> Result<(), Error> {
        let (r, queued) = self.from.get(from).and_then(Option::as_ref).ok_or(Error::InvalidArgument)?;
        let msg = r.recv_timeout(self.timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => Error::Timeout,
            RecvTimeoutError::Disconnected => Error::PeerClosed,
        })?;
        queued.fetch_sub(msg.len(), Ordering::AcqRel);
        if msg.len() != bytes.len() {
            return Err(Error::Malformed);
        }
        bytes.copy_from_slice(&msg);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limited_sender_waits_for_its_peer_to_read() {
        let mut m = mesh_with_timeout(2, Duration::from_millis(50));
        let (mut a, mut b) = (m.remove(0), m.remove(0));
        a.limit_ahead(100);
        // Anything goes through an empty queue, even past the limit.
        a.send(1, &[1; 150]).unwrap();
        // 150 bytes unread: the next message waits, then times out.
        assert_eq!(a.send(1, &[2; 10]), Err(Error::Timeout));
        let mut buf = [0u8; 150];
        b.recv(0, &mut buf).unwrap();
        a.send(1, &[3; 60]).unwrap();
        a.send(1, &[4; 40]).unwrap(); // 100 queued: at the limit, still accepted
        assert_eq!(a.send(1, &[5; 1]), Err(Error::Timeout));
        // A peer that is gone ends the wait at once, not at the timeout.
        drop(b);
        let mut m = mesh_with_timeout(2, Duration::from_secs(30));
        let (mut a, b) = (m.remove(0), m.remove(0));
        a.limit_ahead(10);
        a.send(1, &[0; 20]).unwrap();
        drop(b);
        let t = Instant::now();
        assert_eq!(a.send(1, &[0; 20]), Err(Error::PeerClosed));
        assert!(t.elapsed() < Duration::from_secs(5));
        // An unlimited channel never waits.
        let mut m = mesh(2);
        for _ in 0..100 {
            m[0].send(1, &[0; 1000]).unwrap();
        }
    }
}
