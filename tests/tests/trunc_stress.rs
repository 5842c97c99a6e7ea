//! 10^7 truncations per setting with zero gross errors.
//!
//! Inputs are uniform over the whole documented range `-2^62 ≤ v < 2^62` (far beyond the
//! required |x| < 2^20 in real value at 16 fractional bits, which is |v| < 2^36). The bound
//! asserted: every result is ⌊v/2^16⌋ or ⌊v/2^16⌋ + 1 — an error above one unit in the
//! last place in any of the 10^7 elements fails the test.

#![allow(clippy::unwrap_used)]

use marill_core::fixed;
use marill_core::proto::Protocol;
use marill_std::Setting;
use marill_std::StdError;
use marill_std::run::{Program, run_mem};
use marill_tests::signed;

const CHUNK: usize = 1_000_000;
const CHUNKS: u8 = 10;

struct Stress;

impl Program for Stress {
    type Output = u64;
    fn run<P: Protocol>(&self, p: &mut P) -> Result<u64, StdError> {
        let mut gross = 0u64;
        let mut x = vec![0; CHUNK * P::PLANES];
        let mut t = vec![0; CHUNK * P::PLANES];
        let mut opened = vec![0; CHUNK];
        for c in 0..CHUNKS {
            let v = signed(CHUNK, 62, 100 + c);
            p.input(0, (p.party() == 0).then_some(&v[..]), &mut x)?;
            p.trunc(&x, 16, &mut t)?;
            p.open(&t, &mut opened)?;
            if p.party() == 0 {
                gross +=
                    v.iter().zip(&opened).filter(|(v, o)| o.wrapping_sub(fixed::trunc(**v, 16)) > 1).count() as u64;
            }
        }
        Ok(gross)
    }
}

#[test]
fn ten_million_truncations_without_a_gross_error_dealer() {
    assert_eq!(run_mem(Setting::Dealer, &Stress).unwrap()[0].0, 0);
}

#[test]
fn ten_million_truncations_without_a_gross_error_rep3() {
    assert_eq!(run_mem(Setting::Rep3, &Stress).unwrap()[0].0, 0);
}
