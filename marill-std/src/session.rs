//! Building a party of a session: OS entropy, seed distribution, the protocol object.

use marill_core::cost::Metered;
use marill_core::proto::Protocol;
use marill_core::proto::dealer::Dealer2pc;
use marill_core::proto::rep3::Rep3;
use marill_core::proto::setup::{dealer_setup, rep3_setup};
use marill_core::{Channel, Error};

use crate::HeapScratch;
use crate::ot2pc::Ot2pc;

/// The MPC settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// 2PC with a trusted dealer (party 2 deals).
    Dealer,
    /// 3PC honest majority, replicated shares.
    Rep3,
    /// Plain 2PC: the client and the server alone (OT and HE, [`crate::ot2pc`]).
    Ot2pc,
}

impl Setting {
    /// The name the command line and the cost harness use.
    pub fn name(self) -> &'static str {
        match self {
            Setting::Dealer => "dealer",
            Setting::Rep3 => "rep3",
            Setting::Ot2pc => "ot2pc",
        }
    }
    /// How many parties a session has (the dealer or helper is party 2).
    pub fn parties(self) -> usize {
        if self == Setting::Ot2pc { 2 } else { 3 }
    }
    /// Every setting, in the order tables list them.
    pub const ALL: [Setting; 3] = [Setting::Dealer, Setting::Rep3, Setting::Ot2pc];
    /// Parse [`name`](Self::name).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dealer" => Some(Setting::Dealer),
            "rep3" => Some(Setting::Rep3),
            "ot2pc" => Some(Setting::Ot2pc),
            _ => None,
        }
    }
}

/// 32 bytes from the operating system's generator.
pub fn entropy() -> Result<[u8; 32], Error> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).map_err(|_| Error::Io)?;
    Ok(s)
}

/// A 2PC-Dealer party over `ch` (seeds distributed over `ch` first).
pub fn dealer_party<C: Channel>(mut ch: Metered<C>) -> Result<Dealer2pc<Metered<C>, HeapScratch>, Error> {
    let id = ch.id();
    let seeds = dealer_setup(&mut ch, id, entropy()?)?;
    Dealer2pc::new(ch, HeapScratch::new(), seeds)
}

/// A plain-2PC party over `ch` (input seed, base OTs and HE keys set up over `ch` first).
pub fn ot2pc_party<C: Channel>(ch: Metered<C>) -> Result<Ot2pc<Metered<C>>, Error> {
    Ot2pc::new(ch, entropy()?)
}

/// Code a party runs once its protocol is set up: generic over the protocol, so one
/// implementation serves every setting (Rust has no generic closures).
pub trait PartyBody {
    /// What the party returns.
    type Output;
    /// The error it fails with (a set-up failure converts into it).
    type Error: From<Error>;
    /// Run at this party.
    fn run<P: Protocol>(self, p: &mut P) -> Result<Self::Output, Self::Error>;
}

/// Set up `setting`'s protocol for this party over `ch` (seeds, base OTs and keys as the
/// setting needs) and run `body` on it: the one place a [`Setting`] picks its protocol.
pub fn run_party<C: Channel, B: PartyBody>(setting: Setting, ch: Metered<C>, body: B) -> Result<B::Output, B::Error> {
    run_party_with(setting, ch, crate::ot2pc::ot::MAX_BATCH, body)
}

/// [`run_party`] with plain 2PC's extensions capped at `ot_batch` OTs
/// ([`Ot2pc::set_ot_batch`]: every party of the session must use the same cap).
pub fn run_party_with<C: Channel, B: PartyBody>(
    setting: Setting,
    ch: Metered<C>,
    ot_batch: usize,
    body: B,
) -> Result<B::Output, B::Error> {
    match setting {
        Setting::Dealer => body.run(&mut dealer_party(ch)?),
        Setting::Rep3 => body.run(&mut rep3_party(ch)?),
        Setting::Ot2pc => {
            let mut p = ot2pc_party(ch)?;
            p.set_ot_batch(ot_batch)?;
            body.run(&mut p)
        }
    }
}

/// A 3PC party over `ch` (seeds distributed over `ch` first).
pub fn rep3_party<C: Channel>(mut ch: Metered<C>) -> Result<Rep3<Metered<C>, HeapScratch>, Error> {
    let id = ch.id();
    let seeds = rep3_setup(&mut ch, id, entropy()?)?;
    Rep3::new(ch, HeapScratch::new(), seeds)
}
