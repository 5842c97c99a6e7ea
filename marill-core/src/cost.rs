//! Cost accounting: a channel wrapper that counts bytes, messages and rounds.
//!
//! **Rounds** are the depth of the message DAG, measured with Lamport clocks: every
//! payload is preceded by an 8-byte stamp carrying the sender's clock `L`; a receiver sets
//! its clock to `max(L_own, L_msg + 1)`. After a computation the largest clock of all
//! parties is its number of sequential message exchanges on the critical path. A party
//! that never receives (the 2PC-Dealer dealer) keeps clock 0, so its correlations add a
//! round only if a compute party waits on them before its first send — which the
//! protocols avoid by reading dealer messages after their own exchange. Stamps are not
//! counted in `bytes_sent`; every party of a run must be metered, or stamps are misread.

use crate::channel::{Channel, PartyId};
use crate::error::{Error, Result};

/// Parties a session can have.
pub const MAX_PARTIES: usize = 3;

/// What one party spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Payload bytes this party sent (stamps excluded).
    pub bytes_sent: u64,
    /// Payload bytes this party received.
    pub bytes_received: u64,
    /// Payload bytes sent to each party.
    pub bytes_sent_to: [u64; MAX_PARTIES],
    /// Messages sent.
    pub messages: u64,
    /// This party's Lamport clock: the message depth it has seen.
    pub rounds: u64,
}

impl Cost {
    /// `self - earlier`, field by field (clocks subtract too).
    pub fn since(&self, earlier: &Cost) -> Cost {
        let mut to = [0; MAX_PARTIES];
        for (i, t) in to.iter_mut().enumerate() {
            *t = self.bytes_sent_to[i] - earlier.bytes_sent_to[i];
        }
        Cost {
            bytes_sent: self.bytes_sent - earlier.bytes_sent,
            bytes_received: self.bytes_received - earlier.bytes_received,
            bytes_sent_to: to,
            messages: self.messages - earlier.messages,
            rounds: self.rounds - earlier.rounds,
        }
    }
}

/// Wraps a channel and meters it. See the module docs for how rounds are counted.
pub struct Metered<C> {
    inner: C,
    cost: Cost,
}

impl<C: Channel> Metered<C> {
    /// Meter `inner` from zero.
    pub fn new(inner: C) -> Self {
        Self { inner, cost: Cost::default() }
    }
    /// Costs so far.
    pub fn cost(&self) -> Cost {
        self.cost
    }
    /// The wrapped channel.
    pub fn into_inner(self) -> C {
        self.inner
    }
    /// The wrapped channel, by reference.
    pub fn inner_mut(&mut self) -> &mut C {
        &mut self.inner
    }
}

impl<C: Channel> Channel for Metered<C> {
    fn id(&self) -> PartyId {
        self.inner.id()
    }
    fn send(&mut self, to: PartyId, bytes: &[u8]) -> Result<()> {
        let slot = self.cost.bytes_sent_to.get_mut(to).ok_or(Error::InvalidArgument)?;
        self.inner.send(to, &self.cost.rounds.to_le_bytes())?;
        self.inner.send(to, bytes)?;
        *slot += bytes.len() as u64;
        self.cost.bytes_sent += bytes.len() as u64;
        self.cost.messages += 1;
        Ok(())
    }
    fn recv(&mut self, from: PartyId, bytes: &mut [u8]) -> Result<()> {
        let mut stamp = [0u8; 8];
        self.inner.recv(from, &mut stamp)?;
        self.inner.recv(from, bytes)?;
        let stamp = u64::from_le_bytes(stamp);
        self.cost.rounds = self.cost.rounds.max(stamp.saturating_add(1));
        self.cost.bytes_received += bytes.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
    fn cost(&self) -> Option<Cost> {
        Some(self.cost)
    }
    fn settle(&mut self) -> Result<()> {
        self.inner.settle()
    }
}
