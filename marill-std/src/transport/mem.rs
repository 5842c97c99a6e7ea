//! In-process transport: one thread per party, messages over `std::sync::mpsc`.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::Duration;

use marill_core::{Channel, Error, PartyId};

use super::DEFAULT_TIMEOUT;

/// One party's end of an in-process mesh.
pub struct MemChannel {
    id: PartyId,
    to: Vec<Option<Sender<Vec<u8>>>>,
    from: Vec<Option<Receiver<Vec<u8>>>>,
    timeout: Duration,
}

/// A full mesh between `n` parties; element `i` is party `i`'s channel.
pub fn mesh(n: usize) -> Vec<MemChannel> {
    mesh_with_timeout(n, DEFAULT_TIMEOUT)
}

/// [`mesh`] with a receive timeout.
pub fn mesh_with_timeout(n: usize, timeout: Duration) -> Vec<MemChannel> {
    let mut to: Vec<Vec<Option<Sender<Vec<u8>>>>> = (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut from: Vec<Vec<Option<Receiver<Vec<u8>>>>> = (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let (s, r) = channel();
                to[i][j] = Some(s);
                from[j][i] = Some(r);
            }
        }
    }
    to.into_iter().zip(from).enumerate().map(|(id, (to, from))| MemChannel { id, to, from, timeout }).collect()
}

impl Channel for MemChannel {
    fn id(&self) -> PartyId {
        self.id
    }

    fn send(&mut self, to: PartyId, bytes: &[u8]) -> Result<(), Error> {
        let s = self.to.get(to).and_then(Option::as_ref).ok_or(Error::InvalidArgument)?;
        s.send(bytes.to_vec()).map_err(|_| Error::PeerClosed)
    }

    fn recv(&mut self, from: PartyId, bytes: &mut [u8]) -> Result<(), Error> {
        let r = self.from.get(from).and_then(Option::as_ref).ok_or(Error::InvalidArgument)?;
        let msg = r.recv_timeout(self.timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => Error::Timeout,
            RecvTimeoutError::Disconnected => Error::PeerClosed,
        })?;
        if msg.len() != bytes.len() {
            return Err(Error::Malformed);
        }
        bytes.copy_from_slice(&msg);
        Ok(())
    }
}
