//! MARILL fine-tuning on candle: layer freezing, unmerged LoRA, head merging, MPC-friendly
//! approximations and distillation, exported to the split-model file that
//! [`marill_std`] serves.
//!
//! * [`model`]: a LLaMA-style causal LM built from ops with a backward pass;
//! * [`recipe`]: a MARILL recipe turns a pretrained model into a student whose private part
//!   is small (frozen public layers, LoRA, merged heads);
//! * [`merge`]: head grouping by attention similarity (Jensen–Shannon, K-medoids, balanced
//!   assignment) or adjacency;
//! * [`train`]: AdamW training with the two distillation stages;
//! * [`data`]: the embedded default — a generated corpus, a character tokenizer and a private
//!   task with exact-match accuracy;
//! * [`load`]: checkpoints in the Hugging Face layout and GGUF (dequantized);
//! * [`export`]: the split-model file (public section for the client, private for the server).

pub mod chat;
pub mod data;
pub mod embedded;
pub mod export;
pub mod load;
pub mod merge;
pub mod model;
pub mod progress;
pub mod recipe;
pub mod study;
pub mod train;

/// Errors of marill-train.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// From marill-std (model files, tokenizer).
    #[error("{0}")]
    Std(#[from] marill_std::StdError),
    /// I/O.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A bad configuration or recipe.
    #[error("config: {0}")]
    Config(String),
    /// A model that does not have what is asked of it.
    #[error("model: {0}")]
    Model(String),
    /// A malformed checkpoint.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

/// Result of marill-train.
pub type Result<T> = std::result::Result<T, Error>;

/// A seeded PRG (AES-128-CTR from marill-core): initialisation, sampling and batches are
/// reproducible from the seed, which candle's CPU RNG is not.
pub struct Rng(marill_core::prg::Prg);

impl Rng {
    /// From a 64-bit seed.
    pub fn new(seed: u64) -> Self {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        s[8..16].copy_from_slice(b"marill-t");
        Self(marill_core::prg::Prg::new(s, marill_core::prg::Stream::Local))
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.0.next_u64()) * n as u128) >> 64) as usize
    }
}
