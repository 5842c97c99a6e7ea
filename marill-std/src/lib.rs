//! # marill-std
//!
//! The parts of marill that need an operating system: transports ([`transport::mem`] for
//! in-process parties, [`transport::tcp`] for parties as processes), session set-up with
//! OS entropy ([`session`]), a growable [`HeapScratch`], and helpers that run all parties
//! of a session in threads ([`run`]), and the split-model file's writer, memory-mapped
//! loader and client extraction ([`model_file`]).

pub mod error;
pub mod model;
pub mod model_file;
pub mod party;
pub mod run;
pub mod scratch;
pub mod session;
pub mod transport;

pub use error::StdError;
pub use scratch::HeapScratch;
pub use session::Setting;
