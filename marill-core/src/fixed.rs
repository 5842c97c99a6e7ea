//! Fixed-point encoding of reals as two's-complement ring elements.
//!
//! A real `x` is stored as `round(x · 2^f)` in Z_2^64, read back as a signed integer divided
//! by `2^f`. The default is `f = 16` ([`DEFAULT_FRAC_BITS`]): resolution 1.5e-5, and the
//! exact truncation of the protocols stays exact for products of magnitude below 2^62, i.e.
//! reals below 2^30 in a product of two encodings — ample for LLaMA activations (|x| < 2^20
//! is the documented requirement). Encoding saturates at the ring's range; NaN encodes 0.
#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

/// Default fractional bits.
pub const DEFAULT_FRAC_BITS: u32 = 16;

/// A fixed-point format with `frac_bits` fractional bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedPoint {
    /// Fractional bits `f`, at most 62.
    pub frac_bits: u32,
}

impl Default for FixedPoint {
    fn default() -> Self {
        Self { frac_bits: DEFAULT_FRAC_BITS }
    }
}

impl FixedPoint {
    /// A format with `frac_bits` fractional bits, or `None` if `frac_bits > 62`.
    pub const fn new(frac_bits: u32) -> Option<Self> {
        if frac_bits <= 62 { Some(Self { frac_bits }) } else { None }
    }
    /// `2^f` as a float.
    pub fn scale(&self) -> f64 {
        (1u64 << self.frac_bits) as f64
    }
    /// The ring element of `1.0`.
    pub const fn one(&self) -> u64 {
        1u64 << self.frac_bits
    }
    /// `round(x · 2^f)`, saturating; NaN → 0.
    pub fn encode(&self, x: f64) -> u64 {
        let y = x * self.scale();
        // Round half away from zero (`f64::round` is not in `core`); `as` saturates and
        // maps NaN to 0: the documented behaviour.
        #[allow(clippy::cast_possible_truncation)]
        let v = if y >= 0.0 { (y + 0.5) as i64 } else { (y - 0.5) as i64 };
        v.cast_unsigned()
    }
    /// The real value of a ring element.
    pub fn decode(&self, v: u64) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let r = v.cast_signed() as f64 / self.scale();
        r
    }
    /// [`encode`](Self::encode) of an `f32`.
    pub fn encode_f32(&self, x: f32) -> u64 {
        self.encode(f64::from(x))
    }
    /// [`decode`](Self::decode) to `f32`.
    pub fn decode_f32(&self, v: u64) -> f32 {
        #[allow(clippy::cast_possible_truncation)]
        let r = self.decode(v) as f32;
        r
    }
    /// Encode a slice; lengths must match.
    pub fn encode_slice(&self, x: &[f64], out: &mut [u64]) -> crate::error::Result<()> {
        crate::error::ensure_shape(x.len() == out.len())?;
        for (o, v) in out.iter_mut().zip(x) {
            *o = self.encode(*v);
        }
        Ok(())
    }
    /// Decode a slice; lengths must match.
    pub fn decode_slice(&self, v: &[u64], out: &mut [f64]) -> crate::error::Result<()> {
        crate::error::ensure_shape(v.len() == out.len())?;
        for (o, x) in out.iter_mut().zip(v) {
            *o = self.decode(*x);
        }
        Ok(())
    }
}

/// Plaintext arithmetic shift right by `shift` bits: `⌊v / 2^shift⌋` of the signed value.
pub const fn trunc(v: u64, shift: u32) -> u64 {
    (v.cast_signed() >> shift).cast_unsigned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip_within_half_ulp(x in -1.0e9f64..1.0e9) {
            let fp = FixedPoint::default();
            // Bound: |decode(encode(x)) - x| ≤ 2^-(f+1), half a unit in the last place.
            prop_assert!((fp.decode(fp.encode(x)) - x).abs() <= 0.5 / fp.scale() + 1e-9);
        }

        #[test]
        fn trunc_is_floor(v in any::<i64>(), s in 0u32..63) {
            prop_assert_eq!(trunc(v.cast_unsigned(), s).cast_signed(), v.div_euclid(1i64 << s));
        }
    }

    #[test]
    fn saturates_and_rejects_nan() {
        let fp = FixedPoint::default();
        assert_eq!(fp.encode(f64::NAN), 0);
        assert_eq!(fp.encode(1e300), i64::MAX.cast_unsigned());
        assert_eq!(fp.encode(-1e300), i64::MIN.cast_unsigned());
        assert_eq!(fp.decode(fp.encode(-2.5)), -2.5);
        assert!(FixedPoint::new(63).is_none());
    }
}
