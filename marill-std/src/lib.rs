//! # marill-std
//!
//! The parts of marill that need an operating system: transports ([`transport::mem`] for
//! in-process parties, [`transport::tcp`] for parties as processes, over plaintext or
//! [`transport::tls`] links with pinned keys), session set-up with
//! OS entropy ([`session`]), plain 2PC ([`ot2pc`]: OT extension and RLWE matrix products),
//! a growable [`HeapScratch`], [`threads`] for the core's data-parallel kernels, and helpers that run all parties
//! of a session in threads ([`run`]), the split-model file's writer, memory-mapped
//! loader and client extraction ([`model_file`]), the transformer runtime ([`model`]) and
//! the parties as processes ([`party`]) and the BPE [`tokenizer`] of the model file.
//!
//! # Example: one secure multiplication, every party in this process
//!
//! ```
//! use marill_core::proto::Protocol;
//! use marill_core::FixedPoint;
//! use marill_std::{Setting, StdError};
//! use marill_std::run::{Program, run_mem};
//!
//! /// Party 0 inputs 1.5, party 1 inputs -2.25; everyone learns the fixed-point product.
//! struct Product;
//!
//! impl Program for Product {
//!     type Output = f64;
//!     fn run<P: Protocol>(&self, p: &mut P) -> Result<f64, StdError> {
//!         let fp = FixedPoint::default();
//!         let (mut x, mut y, mut z) = (vec![0; P::PLANES], vec![0; P::PLANES], vec![0; P::PLANES]);
//!         let mine = |v: f64| [fp.encode(v)];
//!         p.input(0, (p.party() == 0).then_some(&mine(1.5)[..]), &mut x)?;
//!         p.input(1, (p.party() == 1).then_some(&mine(-2.25)[..]), &mut y)?;
//!         p.mul_trunc(&x, &y, fp.frac_bits, &mut z)?; // x·y, truncated back to 16 bits
//!         let mut out = [0u64];
//!         p.open(&z, &mut out)?;
//!         Ok(fp.decode(out[0]))
//!     }
//! }
//!
//! // 2PC with a dealer, 3PC, and plain 2PC (OT and HE, the client and the server alone).
//! for setting in Setting::ALL {
//!     let results = run_mem(setting, &Product).unwrap();
//!     let (product, cost) = &results[0];
//!     assert!((product - (-3.375)).abs() <= 2.0 / 65536.0);
//!     assert!(cost.rounds >= 2); // truncation takes its own round
//! }
//! ```
//!
//! # Example: write a split-model file, extract the client's part, read it back
//!
//! ```
//! use marill_core::format::ModelFile;
//! use marill_std::model_file::{ModelWriter, extract_public};
//!
//! let mut w = ModelWriter::new();
//! w.tensor_f32(false, "model.embed_tokens.weight", &[2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
//! w.tensor_f32(true, "model.layers.0.self_attn.q_proj.lora_a", &[1, 2], &[0.5, 0.25]).unwrap();
//! let server = w.to_bytes().unwrap();
//! let client = extract_public(&server).unwrap();
//!
//! let (s, c) = (ModelFile::parse(&server).unwrap(), ModelFile::parse(&client).unwrap());
//! assert_eq!(s.verify_digest().unwrap(), c.verify_digest().unwrap()); // same public part
//! assert!(c.tensor("model.layers.0.self_attn.q_proj.lora_a").is_none()); // private stays home
//! assert_eq!(c.tensor("model.embed_tokens.weight").unwrap().get_f32(3), Some(4.0));
//! ```

pub mod alloc_meter;
pub mod error;
pub mod model;
pub mod model_file;
pub mod openai;
pub mod ot2pc;
pub mod party;
#[cfg(feature = "harness")]
pub mod run;
pub mod scratch;
pub mod session;
pub mod threads;
pub mod tokenizer;
pub mod transport;

pub use error::StdError;

/// Pins the ring kernels named by the environment variable `MARILL_RING` (`portable`,
/// `avx2` or `avx512`; unset or empty: the best this CPU has). The `marill` binary and the
/// `cost` harness call it first, so a user can measure the path an older CPU would take.
/// An unknown name, or a backend this CPU lacks, is an error naming the choices.
pub fn pin_ring_from_env() -> Result<(), String> {
    use marill_core::ring::{self, Backend};
    let Ok(name) = std::env::var("MARILL_RING") else { return Ok(()) };
    if name.is_empty() {
        return Ok(());
    }
    let choices: Vec<&str> = Backend::ALL.iter().filter(|b| b.available()).map(|b| b.name()).collect();
    let backend = Backend::ALL
        .into_iter()
        .find(|b| b.name() == name)
        .ok_or_else(|| format!("MARILL_RING={name} is not a ring backend (this CPU has: {})", choices.join(", ")))?;
    if !ring::force(Some(backend)) {
        return Err(format!("MARILL_RING={name}: this CPU lacks it (it has: {})", choices.join(", ")));
    }
    Ok(())
}
pub use scratch::HeapScratch;
pub use session::Setting;
