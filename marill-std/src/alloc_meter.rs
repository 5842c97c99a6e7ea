//! Heap metering per party, for measurements where all parties share one process.
//!
//! [`PartyAlloc`] wraps the system allocator. A binary that wants per-party figures installs
//! it (`#[global_allocator] static A: PartyAlloc = PartyAlloc;`, as `marill` and the `cost`
//! harness do); [`crate::run`] tags each party's thread with its party id, and every
//! allocation records the tag of the thread that made it in a small header, so its release
//! is credited back to the same party whichever thread frees it (a message is allocated by
//! its sender and freed by its receiver). [`reset_peaks`] and [`peaks`] then give each
//! party's peak live heap since the reset. Untagged threads (the main thread, kernel
//! helper threads) count as "other". Memory-mapped files (the model) are not heap and are
//! not counted.
//!
//! Cost: one header of `max(16, align)` bytes and one relaxed atomic add per allocation
//! (plus one more when it sets a new peak), each party's counters on their own cache
//! line; binaries that do not install it pay nothing.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Parties metered separately (ids 0, 1, 2); index 3 is everything else.
const SLOTS: usize = 4;
const OTHER: u8 = 3;

/// One party's counters, on a cache line of their own: the parties' threads allocate at
/// once, and shared lines would bounce between cores on every allocation.
#[repr(align(64))]
struct Slot {
    live: AtomicUsize,
    peak: AtomicUsize,
}

static SLOT: [Slot; SLOTS] = [const { Slot { live: AtomicUsize::new(0), peak: AtomicUsize::new(0) } }; SLOTS];
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static TAG: Cell<u8> = const { Cell::new(OTHER) };
}

/// The system allocator, metered per party. See the module docs.
pub struct PartyAlloc;

fn tag() -> u8 {
    TAG.try_with(Cell::get).unwrap_or(OTHER)
}

/// Count this thread's later allocations as party `id`'s (ids above 2 count as "other").
pub fn tag_thread(id: usize) {
    let t = if id < OTHER as usize { id as u8 } else { OTHER };
    let _ = TAG.try_with(|c| c.set(t));
}

/// Whether [`PartyAlloc`] is this process's global allocator (it has served an allocation).
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Start a new peak for every party: each peak becomes its current live heap.
pub fn reset_peaks() {
    for s in &SLOT {
        s.peak.store(s.live.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Start a new peak for party `id` alone (0, 1 or 2): its peak becomes its live heap. A party
/// that measures one op of its own calls it from its thread, whatever the others are doing.
pub fn reset_peak(id: usize) {
    if let Some(s) = SLOT.get(id.min(OTHER as usize)) {
        s.peak.store(s.live.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Live heap of the whole process in bytes (every party and "other"), or `None` when
/// [`PartyAlloc`] is not installed. The serving parties log it after each session, so a
/// leak shows as a rising floor.
pub fn live_total() -> Option<u64> {
    installed().then(|| SLOT.iter().map(|s| s.live.load(Ordering::Relaxed) as u64).sum())
}

/// Each party's peak live heap in bytes since the last [`reset_peaks`] (parties 0, 1, 2),
/// or `None` when [`PartyAlloc`] is not installed.
pub fn peaks() -> Option<[u64; 3]> {
    installed().then(|| core::array::from_fn(|i| SLOT[i].peak.load(Ordering::Relaxed) as u64))
}

fn grew(t: u8, by: usize) {
    let s = &SLOT[t as usize];
    let live = s.live.fetch_add(by, Ordering::Relaxed) + by;
    // Most allocations are below the peak: a plain load spares the read-modify-write.
    if live > s.peak.load(Ordering::Relaxed) {
        s.peak.fetch_max(live, Ordering::Relaxed);
    }
}

fn shrank(t: u8, by: usize) {
    SLOT[t as usize].live.fetch_sub(by, Ordering::Relaxed);
}

/// Bytes in front of each block: the tag lives in the byte just before the caller's pointer.
fn header(layout: Layout) -> usize {
    layout.align().max(16)
}

/// The block the system allocator sees for a caller's `layout`.
fn outer(layout: Layout) -> Option<Layout> {
    let h = header(layout);
    Layout::from_size_align(layout.size().checked_add(h)?, h).ok()
}

// Why the impl is sound: every block handed out is `header(layout)` bytes into a
// system block allocated with `outer(layout)`, whose alignment is the header size (a power of
// two ≥ the caller's alignment), so the caller's pointer is aligned and the header byte
// before it lies inside the block. `dealloc` and `realloc` receive the caller's `layout`
// (GlobalAlloc's contract), recompute the same header and outer layout, and hand the system
// allocator back exactly the pointer and layout it gave out.
// SAFETY: the allocation contract holds as argued above.
unsafe impl GlobalAlloc for PartyAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(o) = outer(layout) else { return std::ptr::null_mut() };
        // SAFETY: `o` has a non-zero size (it includes the header).
        let base = unsafe { System.alloc(o) };
        if base.is_null() {
            return base;
        }
        INSTALLED.store(true, Ordering::Relaxed);
        let t = tag();
        // SAFETY: the block is `o.size()` ≥ header bytes long, so `base + header` is inside
        // it or one past its end (a zero-size request).
        let user = unsafe { base.add(header(layout)) };
        // SAFETY: `user - 1` is the header's last byte, inside the block.
        unsafe { user.sub(1).write(t) };
        grew(t, layout.size());
        user
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let h = header(layout);
        // SAFETY: `ptr` came from `alloc`/`realloc` with this layout (GlobalAlloc contract),
        // so the tag byte and the block start lie `1` and `h` bytes before it.
        let t = unsafe { ptr.sub(1).read() };
        shrank(t.min(OTHER), layout.size());
        let Some(o) = outer(layout) else { return };
        // SAFETY: `ptr - h` and `o` are the block and layout `alloc` got from the system.
        unsafe { System.dealloc(ptr.sub(h), o) };
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let h = header(layout);
        let (Some(o), Some(new_outer)) = (outer(layout), new_size.checked_add(h)) else {
            return std::ptr::null_mut();
        };
        // SAFETY: as in `dealloc`; the header is the same because the alignment is.
        let t = unsafe { ptr.sub(1).read() }.min(OTHER);
        // SAFETY: `ptr - h` and `o` are the block and layout the system gave out.
        let base = unsafe { System.realloc(ptr.sub(h), o, new_outer) };
        if base.is_null() {
            return base;
        }
        // The block keeps its first owner; the tag byte moved with the contents.
        if new_size >= layout.size() {
            grew(t, new_size - layout.size());
        } else {
            shrank(t, layout.size() - new_size);
        }
        // SAFETY: the new block is `new_outer` ≥ h bytes, aligned as before.
        unsafe { base.add(h) }
    }
}

#[cfg(test)]
mod tests {
    // The library's tests run on the default allocator: the accounting is exercised
    // through `marill cost` (tests/cost_cli.rs), which installs `PartyAlloc`.
    #[test]
    fn without_the_allocator_there_are_no_figures() {
        assert!(!super::installed());
        assert_eq!(super::peaks(), None);
    }
}
