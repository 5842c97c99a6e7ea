//! Per-party heap metering (`marill_std::alloc_meter`) with `PartyAlloc` installed: each
//! party's peak is its own allocations, a buffer one party allocates and another frees is
//! credited back to the first, and `realloc` keeps the owner.

#![allow(clippy::unwrap_used)]

use marill_core::proto::Protocol;
use marill_std::Setting;
use marill_std::StdError;
use marill_std::alloc_meter::{PartyAlloc, peaks, reset_peaks};
use marill_std::run::{Program, run_mem};

#[global_allocator]
static GLOBAL: PartyAlloc = PartyAlloc;

const MB: usize = 1 << 20;

/// Party i allocates (i + 1) × 8 MB at once, touches it and frees it; party 2 also grows a
/// vector by `realloc` to 4 MB.
struct Grow;

impl Program for Grow {
    type Output = ();
    fn run<P: Protocol>(&self, p: &mut P) -> Result<(), StdError> {
        let i = p.party();
        let mut v = vec![0u8; (i + 1) * 8 * MB];
        v[i] = 1;
        drop(v);
        if i == 2 {
            let mut g: Vec<u8> = Vec::new();
            for k in 0..4 * MB {
                g.push(k as u8);
            }
        }
        Ok(())
    }
}

#[test]
fn each_party_is_metered_on_its_own() {
    assert!(marill_std::alloc_meter::installed());
    reset_peaks();
    let base = peaks().unwrap();
    run_mem(Setting::Rep3, &Grow).unwrap();
    let got = peaks().unwrap();
    for (i, (g, b)) in got.iter().zip(base).enumerate() {
        let want = ((i + 1) * 8 * MB) as u64;
        // Its own buffer, plus the session's few MB of channels and set-up at most.
        assert!(*g >= want && *g < b + want + 4 * MB as u64, "party {i}: peak {g} B, base {b} B, buffer {want} B");
    }
    // A buffer allocated on one thread and freed on another is credited to its allocator.
    reset_peaks();
    let before = peaks().unwrap();
    let v = std::thread::spawn(|| {
        marill_std::alloc_meter::tag_thread(1);
        vec![7u8; 16 * MB]
    })
    .join()
    .unwrap();
    assert!(peaks().unwrap()[1] >= before[1] + 16 * MB as u64);
    drop(v);
    reset_peaks();
    assert!(peaks().unwrap()[1] < before[1] + MB as u64, "the free on the main thread went to party 1");
}
