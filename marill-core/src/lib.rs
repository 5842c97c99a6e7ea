//! # marill-core
//!
//! The `no_std`, allocation-free core of marill: everything that touches a secret share.
//!
//! * [`ring`]: wrapping `u64` slice kernels (Z_2^64) with portable, AVX2 and AVX-512
//!   backends, the best one chosen once at run time.
//! * [`fixed`]: fixed-point encoding of reals into the ring.
//! * [`share`]: additive (2-of-2) and replicated (2-of-3) layouts, packed boolean shares.
//! * [`channel`]: the one IO seam ([`Channel`]), blocking and message-oriented.
//! * [`cost`]: a metering channel wrapper that counts bytes and rounds.
//! * [`par`]: the data-parallel hook: a host registers an executor and the matrix products
//!   and PRG expansion split their output across its threads.
//! * [`prg`]: the AES-128-CTR generator that expands seeds into correlated randomness.
//! * [`proto`]: the [`Protocol`](proto::Protocol) trait and its implementations,
//!   2PC with a dealer ([`proto::dealer`]) and 3PC replicated ([`proto::rep3`]).
//! * [`format`]: zero-copy, validating parser of the split-model file.
//! * [`nonlinear`]: exp, reciprocal, rsqrt, RMSNorm, softmax (and 2ReLU), SiLU, GeLU,
//!   ReLU, row max and argmax, written once over any protocol.
//!
//! Nothing here allocates: callers pass every buffer, and temporary memory comes from a
//! [`Scratch`](scratch::Scratch) the caller provides. Sizes are checked before any byte is
//! sent, so a local mistake never leaves the parties out of step.
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(target_endian = "big")]
compile_error!("marill puts shares on the wire little-endian by casting slices; big-endian hosts are not supported");

// Unit tests may allocate; the library never does.
#[cfg(test)]
extern crate std;

pub mod channel;
pub mod cost;
pub mod error;
pub mod fixed;
pub mod format;
pub mod nonlinear;
pub mod par;
pub mod prg;
pub mod proto;
pub mod ring;
pub mod scratch;
pub mod share;

pub use channel::{Channel, PartyId};
pub use error::Error;
pub use fixed::FixedPoint;
pub use ring::MatDims;
pub use scratch::Scratch;
