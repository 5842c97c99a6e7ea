//! A channel whose peers' messages are read from the fuzz input; sends go nowhere. Shared
//! by the party targets (`#[path]`-included, not a target of its own).

use marill_core::{Channel, Error, PartyId};

/// Party `id` of a session of `parties`; every `recv` takes the next bytes of `data`.
pub struct Replay<'a> {
    pub id: PartyId,
    pub parties: usize,
    pub data: &'a [u8],
}

impl Channel for Replay<'_> {
    fn id(&self) -> PartyId {
        self.id
    }
    fn send(&mut self, to: PartyId, _: &[u8]) -> Result<(), Error> {
        if to == self.id || to >= self.parties { Err(Error::InvalidArgument) } else { Ok(()) }
    }
    fn recv(&mut self, _: PartyId, bytes: &mut [u8]) -> Result<(), Error> {
        if self.data.len() < bytes.len() {
            return Err(Error::PeerClosed);
        }
        let (head, tail) = self.data.split_at(bytes.len());
        bytes.copy_from_slice(head);
        self.data = tail;
        Ok(())
    }
}
