//! Seeds for `party_peer_bytes` from honest sessions: all three parties run the target's
//! ops (its fixed seeds) over in-process channels, and for each setting and party the bytes
//! that party received, in order, become one corpus file (`[selector] ++ transcript`), which
//! the target replays to the same party (checked here: the replay runs every op to `Ok`).
//! The fuzzer then mutates real traffic.
//!
//! In `fuzz/`: `RUSTC_BOOTSTRAP=1 cargo fuzz build`, then
//! `target/<host triple>/release/record_transcripts corpus/party_peer_bytes` (the fuzz build
//! makes it with the targets, so no second build of the workspace is needed).

use std::sync::{Arc, Mutex};

use marill_core::{Channel, Error, PartyId};
use marill_std::transport::mem;

#[path = "../fuzz_targets/party_ops.rs"]
mod party_ops;
#[path = "../fuzz_targets/replay.rs"]
mod replay;

/// A channel that keeps a copy of everything it receives.
struct Recording<C> {
    inner: C,
    log: Arc<Mutex<Vec<u8>>>,
}

impl<C: Channel> Channel for Recording<C> {
    fn id(&self) -> PartyId {
        self.inner.id()
    }
    fn send(&mut self, to: PartyId, bytes: &[u8]) -> Result<(), Error> {
        self.inner.send(to, bytes)
    }
    fn recv(&mut self, from: PartyId, bytes: &mut [u8]) -> Result<(), Error> {
        self.inner.recv(from, bytes)?;
        self.log.lock().map_err(|_| Error::Io)?.extend_from_slice(bytes);
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: record_transcripts CORPUS_DIR")?;
    std::fs::create_dir_all(&dir)?;
    for mode in [0u8, 0x80] {
        let logs: Vec<Arc<Mutex<Vec<u8>>>> = (0..3).map(|_| Arc::default()).collect();
        let threads: Vec<_> = mem::mesh(3)
            .into_iter()
            .zip(&logs)
            .map(|(inner, log)| {
                let sel = (mode..mode + 3).find(|s| usize::from(s % 3) == inner.id()).unwrap_or(mode);
                let ch = Recording { inner, log: log.clone() };
                std::thread::spawn(move || party_ops::run(sel, ch))
            })
            .collect();
        for t in threads {
            t.join().map_err(|_| "a party panicked")??;
        }
        for (party, log) in logs.iter().enumerate() {
            let sel = (mode..mode + 3).find(|s| usize::from(s % 3) == party).unwrap_or(mode);
            let mut seed = vec![sel];
            seed.extend_from_slice(&log.lock().map_err(|_| "poisoned")?);
            // The target, fed this seed, must run every op to the end.
            let replayed = replay::Replay { id: party, parties: 3, data: &seed[1..] };
            party_ops::run(sel, replayed).map_err(|e| format!("transcript {sel:02x} does not replay: {e}"))?;
            let path = format!("{dir}/transcript-{sel:02x}");
            std::fs::write(&path, &seed)?;
            println!("{path}: {} bytes", seed.len());
        }
    }
    Ok(())
}
