//! Running every party of a session at once, in threads: for tests, benches and the demo.
//!
//! A [`Program`] is the code every party runs (generic over the protocol, so one program
//! runs in every setting). [`run_mem`] connects the parties in memory, [`run_tcp`] over
//! loopback TCP; both return each party's output and what it spent *after* set-up.

use std::net::SocketAddr;

use marill_core::cost::{Cost, Metered};
use marill_core::proto::Protocol;
use marill_core::{Channel, Error};

use crate::ot2pc::ot::MAX_BATCH;
use crate::session::{PartyBody, run_party_with};
use crate::transport::link::{LinkModel, MaybeLinked};
use crate::transport::{mem, tcp};
use crate::{Setting, StdError};

/// Code that every party runs.
pub trait Program: Sync {
    /// What each party returns.
    type Output: Send;
    /// Run at one party.
    fn run<P: Protocol>(&self, p: &mut P) -> Result<Self::Output, StdError>;
}

/// One party's result: its output and its costs after set-up.
pub type PartyResult<T> = (T, Cost);

fn party<C: Channel, G: Program>(
    setting: Setting,
    ch: C,
    ot_batch: usize,
    prog: &G,
) -> Result<PartyResult<G::Output>, StdError> {
    run_party_with(setting, Metered::new(ch), ot_batch, Measured(prog))
}

/// `prog` at a party: its output and what it cost after set-up.
struct Measured<'a, G>(&'a G);

impl<G: Program> PartyBody for Measured<'_, G> {
    type Output = PartyResult<G::Output>;
    type Error = StdError;
    fn run<P: Protocol>(self, p: &mut P) -> Result<Self::Output, StdError> {
        let before = p.cost().unwrap_or_default();
        let out = self.0.run(p)?;
        Ok((out, p.cost().unwrap_or_default().since(&before)))
    }
}

fn join_all<T: Send, F>(n: usize, f: F) -> Result<Vec<Result<T, StdError>>, StdError>
where
    F: Fn(usize) -> Result<T, StdError> + Sync,
{
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = (0..n)
            .map(|i| {
                s.spawn(move || {
                    // Party i's allocations, for `alloc_meter` where it is installed.
                    crate::alloc_meter::tag_thread(i);
                    f(i)
                })
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for (i, h) in handles.into_iter().enumerate() {
            out.push(h.join().map_err(|_| StdError::Panicked(i))?);
        }
        Ok(out)
    })
}

/// Run `prog` at the parties of `setting` (three, or two in plain 2PC), connected in memory. The first party
/// error, if any, is returned (the others then fail with `PeerClosed` or `Timeout`).
pub fn run_mem<G: Program>(setting: Setting, prog: &G) -> Result<Vec<PartyResult<G::Output>>, StdError> {
    run_mem_over(setting, None, prog)
}

/// [`run_mem`] with every message over an emulated `link` when one is given
/// ([`crate::transport::link`]).
pub fn run_mem_over<G: Program>(
    setting: Setting,
    link: Option<LinkModel>,
    prog: &G,
) -> Result<Vec<PartyResult<G::Output>>, StdError> {
    run_mem_with(setting, link, MAX_BATCH, prog)
}

/// [`run_mem_over`] with plain 2PC's OT batch set to `ot_batch`
/// ([`crate::ot2pc::Ot2pc::set_ot_batch`]; the other settings ignore it).
pub fn run_mem_with<G: Program>(
    setting: Setting,
    link: Option<LinkModel>,
    ot_batch: usize,
    prog: &G,
) -> Result<Vec<PartyResult<G::Output>>, StdError> {
    let n = setting.parties();
    let chans = std::sync::Mutex::new(mem::mesh(n).into_iter().map(Some).collect::<Vec<_>>());
    let results = join_all(n, |i| {
        let ch = chans.lock().map_err(|_| Error::Protocol)?[i].take().ok_or(Error::Protocol)?;
        party(setting, MaybeLinked::new(ch, link), ot_batch, prog)
    })?;
    collect(results)
}

/// Run `prog` at the parties of `setting`, connected over loopback TCP.
pub fn run_tcp<G: Program>(setting: Setting, prog: &G) -> Result<Vec<PartyResult<G::Output>>, StdError> {
    let any: SocketAddr = "127.0.0.1:0".parse().map_err(|_| StdError::Handshake("address".into()))?;
    let n = setting.parties();
    // The last party listens for nobody.
    let listeners = (0..n - 1).map(|_| tcp::listen(any)).collect::<Result<Vec<_>, _>>()?;
    let mut addrs = Vec::new();
    for l in &listeners {
        addrs.push(l.local_addr().map_err(|e| StdError::io("local addr", e))?);
    }
    addrs.push(any);
    let listeners = std::sync::Mutex::new(listeners.into_iter().map(Some).collect::<Vec<_>>());
    let results = join_all(n, |i| {
        let l = if i + 1 < n { listeners.lock().map_err(|_| Error::Protocol)?[i].take() } else { None };
        let ch = tcp::establish(i, l, &addrs, tcp::TcpConfig::default()).map_err(|_| Error::Io)?;
        party(setting, ch, MAX_BATCH, prog)
    })?;
    collect(results)
}

/// Every party's output, or the error that explains the failure: the first that is not a
/// consequence of another party's (a peer that closed, a wait that timed out), else the first.
fn collect<T>(results: Vec<Result<T, StdError>>) -> Result<Vec<T>, StdError> {
    let consequence = |e: &StdError| {
        let mut e = e;
        while let StdError::AtParty { source, .. } = e {
            e = source;
        }
        matches!(e, StdError::Core(Error::PeerClosed | Error::Timeout))
    };
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(v) => out.push(v),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        return Ok(out);
    }
    let i = errors.iter().position(|e| !consequence(e)).unwrap_or(0);
    Err(errors.swap_remove(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error that explains a failed session is the one that is not a consequence of
    /// another party's: a peer that closed or timed out yields to the cause, whatever the
    /// party order; with consequences only, the first.
    #[test]
    fn the_cause_is_reported_not_its_consequences() {
        let cause = || StdError::AtParty {
            party: 1,
            stage: "set-up",
            source: Box::new(StdError::MissingTensor { name: "lm_head.weight".into() }),
        };
        let closed =
            || StdError::AtParty { party: 0, stage: "the prefill", source: Box::new(Error::PeerClosed.into()) };
        let r = collect::<()>(vec![Err(closed()), Err(cause()), Err(Error::Timeout.into())]);
        let e = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(e, "party 1 in set-up: model file: missing tensor lm_head.weight");
        let r = collect::<()>(vec![Ok(()), Err(Error::Timeout.into()), Err(closed())]);
        assert!(matches!(r, Err(StdError::Core(Error::Timeout))));
        assert_eq!(collect(vec![Ok(1), Ok(2)]).ok(), Some(vec![1, 2]));
    }
}
