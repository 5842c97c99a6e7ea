//! Plain 2PC's memory per op is bounded by the OT batch (`--ot-batch`,
//! `Ot2pc::set_ot_batch`): an op longer than the batch runs in windows, one after another, and
//! drops each window's OT state before the next. Measured with the per-party heap meter: each
//! party's peak live heap during one op, above what it held before (its inputs and outputs are
//! allocated before), against the bound the README states:
//!
//! `words_per_output · 8 · outputs + BYTES_PER_OT · batch` bytes per party,
//!
//! and the same op with the whole op in one batch, which must exceed that bound (so the test
//! fails if the windows stop releasing their state, or if nothing is metered).
#![allow(clippy::unwrap_used)]

use marill_core::proto::Protocol;
use marill_std::alloc_meter::{self, PartyAlloc};
use marill_std::ot2pc::ot::MAX_BATCH;
use marill_std::run::{Program, run_mem_with};
use marill_std::{Setting, StdError};

#[global_allocator]
static ALLOC: PartyAlloc = PartyAlloc;

/// The bound's OT term: bytes of OT state per OT in flight at one party, both directions at
/// once (the receiver's IKNP rows and matrix, the sender's rows, correlations, outputs and
/// corrections). Measured with the whole op in one batch: 88 (mul), 66 (ltz), 64 (AND).
const BYTES_PER_OT: u64 = 128;

#[derive(Clone, Copy, Debug)]
enum Op {
    /// 64 OTs per element each way.
    Mul,
    /// 63 OTs per element (and the borrow tree's ANDs).
    Ltz,
    /// 64 OTs per word each way.
    And,
    /// One OT per bit.
    B2a,
}

impl Op {
    /// Words per output word the op may hold beside its OT state (its temporaries: the cross
    /// terms' shares, the conversion's bits, one word each; measured 1 for mul, 2 for AND and
    /// conversion, and a comparison's digits and borrow tree are per chunk of a batch).
    fn words_per_output(self) -> u64 {
        match self {
            Op::Mul | Op::Ltz => 2,
            Op::And | Op::B2a => 4,
        }
    }

    /// Output words for `n` input words (a conversion makes one per bit).
    fn outputs(self, n: usize) -> usize {
        if matches!(self, Op::B2a) { 64 * n } else { n }
    }
}

struct Measure {
    op: Op,
    n: usize,
}

impl Program for Measure {
    type Output = u64;
    fn run<P: Protocol>(&self, p: &mut P) -> Result<u64, StdError> {
        let me = p.party();
        let n = self.n;
        let x: Vec<u64> = (0..n as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        let mut sx = vec![0u64; n];
        p.input(0, (me == 0).then_some(&x[..]), &mut sx)?;
        let mut out = vec![0u64; self.op.outputs(n)];
        // Both parties are past set-up and hold their inputs before either measures.
        let mut sync = [0u64; 1];
        p.open(&[0], &mut sync)?;
        alloc_meter::reset_peak(me);
        let before = alloc_meter::peaks().ok_or_else(|| StdError::Model("no heap meter".into()))?[me];
        match self.op {
            Op::Mul => p.mul(&sx, &sx, &mut out)?,
            Op::Ltz => p.ltz(&sx, &mut out)?,
            Op::And => p.and_bits(&sx, &sx, &mut out)?,
            Op::B2a => p.b2a(&sx, &mut out)?,
        }
        let peak = alloc_meter::peaks().ok_or_else(|| StdError::Model("no heap meter".into()))?[me];
        Ok(peak - before)
    }
}

/// Each party's peak heap above its starting point during one `op` over `n` elements.
fn peak_above(op: Op, n: usize, batch: usize) -> [u64; 2] {
    let r = run_mem_with(Setting::Ot2pc, None, batch, &Measure { op, n }).unwrap();
    [r[0].0, r[1].0]
}

#[test]
fn an_ops_memory_is_bounded_by_the_ot_batch() {
    let n = 1 << 13;
    let batch = 1 << 12;
    for op in [Op::Mul, Op::Ltz, Op::And, Op::B2a] {
        let bound = op.words_per_output() * 8 * op.outputs(n) as u64 + BYTES_PER_OT * batch as u64;
        let capped = peak_above(op, n, batch);
        let whole = peak_above(op, n, MAX_BATCH);
        eprintln!(
            "{op:?} n {n}: peak above start {capped:?} B at a batch of {batch} OTs, {whole:?} B in one batch; bound {bound} B"
        );
        for (party, &b) in capped.iter().enumerate() {
            assert!(b <= bound, "{op:?}: party {party} peaked {b} B above its start, over the bound {bound} B");
        }
        assert!(whole.iter().any(|&b| b > bound), "{op:?}: one batch stayed within {bound} B: {whole:?}");
    }
}
