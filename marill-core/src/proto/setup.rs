//! Session set-up: distributing the seeds the protocols expand.
//!
//! Each function runs at every party of a session with fresh local entropy (32 bytes
//! from the OS generator in `marill-std`) and returns this party's seeds. Seeds travel
//! over the session's channel, which must be confidential (TLS, or loopback for tests):
//! they are the only long-term secrets of a semi-honest session.

use crate::channel::{Channel, PartyId};
use crate::error::{Error, Result};
use crate::prg::{Prg, Seed, Stream};

/// A party's seeds in 2PC-Dealer.
#[derive(Clone)]
pub enum DealerSeeds {
    /// Party 0 or 1: the seed shared with the dealer and the one shared with the other
    /// compute party.
    Compute {
        /// Shared with the dealer (party 2).
        dealer: Seed,
        /// Shared between parties 0 and 1.
        peer: Seed,
    },
    /// The dealer: the seeds shared with party 0 and with party 1.
    Dealer {
        /// Shared with party 0.
        a: Seed,
        /// Shared with party 1.
        b: Seed,
    },
}

/// A party's seeds in 3PC: party `i` holds `k_i` and `k_{i+1}`, plus one seed all share.
#[derive(Clone)]
pub struct Rep3Seeds {
    /// `k_i`, shared with party `i - 1`.
    pub own: Seed,
    /// `k_{i+1}`, shared with party `i + 1`.
    pub next: Seed,
    /// Shared by all three parties.
    pub all: Seed,
}

/// Seeds for 2PC-Dealer; `party` 2 is the dealer.
pub fn dealer_setup<C: Channel>(ch: &mut C, party: PartyId, entropy: Seed) -> Result<DealerSeeds> {
    let mut local = Prg::new(entropy, Stream::Local);
    match party {
        0 => {
            let peer = local.seed();
            ch.send(1, &peer)?;
            ch.flush()?;
            let mut dealer = [0u8; 32];
            ch.recv(2, &mut dealer)?;
            Ok(DealerSeeds::Compute { dealer, peer })
        }
        1 => {
            let mut peer = [0u8; 32];
            ch.recv(0, &mut peer)?;
            let mut dealer = [0u8; 32];
            ch.recv(2, &mut dealer)?;
            Ok(DealerSeeds::Compute { dealer, peer })
        }
        2 => {
            let (a, b) = (local.seed(), local.seed());
            ch.send(0, &a)?;
            ch.send(1, &b)?;
            ch.flush()?;
            Ok(DealerSeeds::Dealer { a, b })
        }
        _ => Err(Error::InvalidArgument),
    }
}

/// Seeds for 3PC.
pub fn rep3_setup<C: Channel>(ch: &mut C, party: PartyId, entropy: Seed) -> Result<Rep3Seeds> {
    if party > 2 {
        return Err(Error::InvalidArgument);
    }
    let mut local = Prg::new(entropy, Stream::Local);
    let own = local.seed();
    let prev = (party + 2) % 3;
    let next_id = (party + 1) % 3;
    ch.send(prev, &own)?;
    let mut all = [0u8; 32];
    if party == 0 {
        all = local.seed();
        ch.send(1, &all)?;
        ch.send(2, &all)?;
    }
    ch.flush()?;
    let mut next = [0u8; 32];
    ch.recv(next_id, &mut next)?;
    if party != 0 {
        ch.recv(0, &mut all)?;
    }
    Ok(Rep3Seeds { own, next, all })
}
