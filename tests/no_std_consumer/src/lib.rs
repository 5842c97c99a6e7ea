//! Links marill-core's protocols into a `no_std` library with caller-provided memory.
#![no_std]

use marill_core::proto::Protocol;
use marill_core::proto::dealer::Dealer2pc;
use marill_core::proto::setup::DealerSeeds;
use marill_core::format::ModelFile;
use marill_core::{Channel, Error, PartyId, ring};

/// A channel with nobody on the other side.
struct Nowhere;

impl Channel for Nowhere {
    fn id(&self) -> PartyId {
        0
    }
    fn send(&mut self, _: PartyId, _: &[u8]) -> Result<(), Error> {
        Err(Error::PeerClosed)
    }
    fn recv(&mut self, _: PartyId, _: &mut [u8]) -> Result<(), Error> {
        Err(Error::PeerClosed)
    }
}

/// Exposed so the linker keeps the code: adds two vectors and runs a protocol op.
#[unsafe(no_mangle)]
pub extern "C" fn marill_no_std_probe(a: *const u64, b: *const u64, out: *mut u64, n: usize) -> i32 {
    if a.is_null() || b.is_null() || out.is_null() || n > 64 {
        return -1;
    }
    // SAFETY: the caller passes three valid, non-overlapping arrays of n ≤ 64 words.
    let (a, b, out) = unsafe {
        (core::slice::from_raw_parts(a, n), core::slice::from_raw_parts(b, n), core::slice::from_raw_parts_mut(out, n))
    };
    if ring::add(a, b, out).is_err() {
        return -2;
    }
    let mut scratch = [0u64; 1024];
    let seeds = DealerSeeds::Compute { dealer: [1; 32], peer: [2; 32] };
    let Ok(mut p) = Dealer2pc::new(Nowhere, &mut scratch[..], seeds) else { return -3 };
    match p.ltz(a, out) {
        Err(Error::PeerClosed) => 0,
        _ => -4,
    }
}

/// Validates a split-model file in place; returns its tensor count or -1.
#[unsafe(no_mangle)]
pub extern "C" fn marill_no_std_parse(bytes: *const u8, len: usize) -> i64 {
    if bytes.is_null() {
        return -1;
    }
    // SAFETY: the caller passes a valid buffer of `len` bytes.
    let b = unsafe { core::slice::from_raw_parts(bytes, len) };
    match ModelFile::parse(b) {
        Ok(f) => f.tensors().count() as i64,
        Err(_) => -1,
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
