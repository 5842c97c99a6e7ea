//! The one IO seam: a blocking, message-oriented channel between numbered parties.
//!
//! A `send` of `L` bytes is one message; the matching `recv` must ask for exactly `L`
//! bytes, and a transport that sees a different length returns [`Error::Malformed`]
//! instead of reading past the message. This makes a desynchronised peer an error, not
//! garbage. Sends may be buffered (they must not wait for the peer to read, or two parties
//! that send at once would deadlock); `flush` pushes buffered bytes out.

use crate::error::Result;

/// A party's index in its session: 0 and 1 are the compute parties, 2 the dealer or helper.
pub type PartyId = usize;

/// Blocking bytes to and from peers, into and out of caller buffers.
pub trait Channel {
    /// This party's id.
    fn id(&self) -> PartyId;
    /// Send one message to `to`.
    fn send(&mut self, to: PartyId, bytes: &[u8]) -> Result<()>;
    /// Receive one message from `from`; its length must be `bytes.len()`.
    fn recv(&mut self, from: PartyId, bytes: &mut [u8]) -> Result<()>;
    /// Push out anything buffered.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    /// What this channel has metered so far, if it meters ([`Metered`](crate::cost::Metered)).
    fn cost(&self) -> Option<crate::cost::Cost> {
        None
    }
    /// Wait until everything this party has sent has been delivered: a no-op on a real
    /// transport; an emulated link waits for its queue to drain.
    fn settle(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<C: Channel + ?Sized> Channel for &mut C {
    fn id(&self) -> PartyId {
        (**self).id()
    }
    fn send(&mut self, to: PartyId, bytes: &[u8]) -> Result<()> {
        (**self).send(to, bytes)
    }
    fn recv(&mut self, from: PartyId, bytes: &mut [u8]) -> Result<()> {
        (**self).recv(from, bytes)
    }
    fn flush(&mut self) -> Result<()> {
        (**self).flush()
    }
    fn cost(&self) -> Option<crate::cost::Cost> {
        (**self).cost()
    }
    fn settle(&mut self) -> Result<()> {
        (**self).settle()
    }
}

/// A barrier over `parties` parties: settle (see [`Channel::settle`]), then one byte to and
/// from every peer. Afterwards nothing sent before it is still on its way, so a measurement
/// that starts here does not pay for earlier traffic. One round; every party must call it.
pub fn barrier<C: Channel + ?Sized>(ch: &mut C, parties: usize) -> Result<()> {
    ch.settle()?;
    let me = ch.id();
    for peer in (0..parties).filter(|p| *p != me) {
        ch.send(peer, &[0])?;
    }
    ch.flush()?;
    for peer in (0..parties).filter(|p| *p != me) {
        ch.recv(peer, &mut [0])?;
    }
    Ok(())
}

/// Send a slice of ring elements (little-endian on the wire; a cast on LE hosts).
pub fn send_words<C: Channel + ?Sized>(ch: &mut C, to: PartyId, words: &[u64]) -> Result<()> {
    ch.send(to, bytemuck::cast_slice(words))
}

/// Receive exactly `words.len()` ring elements.
pub fn recv_words<C: Channel + ?Sized>(ch: &mut C, from: PartyId, words: &mut [u64]) -> Result<()> {
    ch.recv(from, bytemuck::cast_slice_mut(words))
}
