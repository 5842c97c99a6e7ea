//! The transformer runtime: the client's plaintext public layers ([`plain`]) and the
//! private layers in MPC ([`secure`]), over the split-model file.
//!
//! Tensor names follow the Hugging Face LLaMA layout ([`names`]); LoRA factors are
//! `….lora_a` (`[r, in]`) and `….lora_b` (`[out, r]`) next to the projection they adapt.
//! Public layers must be a prefix `0..k` (MARILL freezes the bottom layers).

mod arch;
#[cfg(feature = "harness")]
pub mod check;
pub mod dense;
#[cfg(feature = "harness")]
pub mod measure;
pub mod plain;
pub mod secure;

pub use arch::{Activation, Arch, Attention, LayerShape, PROJECTIONS, rope_angle};

/// Tensor names.
pub mod names {
    /// Token embedding `[vocab, d]`.
    pub const EMBED: &str = "model.embed_tokens.weight";
    /// Final norm `[d]`.
    pub const NORM: &str = "model.norm.weight";
    /// Untied lm head `[vocab, d]`.
    pub const LM_HEAD: &str = "lm_head.weight";

    fn module(proj: &str) -> &'static str {
        match proj {
            "gate" | "up" | "down" => "mlp",
            _ => "self_attn",
        }
    }

    /// `model.layers.L.self_attn.q_proj` (no suffix).
    pub fn proj_base(l: usize, proj: &str) -> String {
        format!("model.layers.{l}.{}.{proj}_proj", module(proj))
    }
    /// The projection's weight `[out, in]`.
    pub fn proj(l: usize, proj: &str) -> String {
        format!("{}.weight", proj_base(l, proj))
    }
    /// The projection's bias `[out]` (q, k and v in a `qwen2` model).
    pub fn proj_bias(l: usize, proj: &str) -> String {
        format!("{}.bias", proj_base(l, proj))
    }
    /// Attention norm gain.
    pub fn attn_norm(l: usize) -> String {
        format!("model.layers.{l}.input_layernorm.weight")
    }
    /// MLP norm gain.
    pub fn mlp_norm(l: usize) -> String {
        format!("model.layers.{l}.post_attention_layernorm.weight")
    }
}

/// Random models in the split-model layout, for tests and benchmarks until marill-train's
/// embedded default exists. Deterministic in `seed`.
#[cfg(feature = "harness")]
pub mod random {
    use marill_core::format::DType;
    use marill_core::prg::{Prg, Stream};

    use super::{PROJECTIONS, names};
    use crate::StdError;
    use crate::model_file::{ModelMeta, ModelWriter};

    /// Which MARILL variant to lay out.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Variant {
        /// Bottom layers that are public (layer freezing).
        pub public_layers: usize,
        /// LoRA rank on the private layers (0: the private layers' weights are private).
        pub lora_rank: usize,
        /// Head-merge factor (1: none).
        pub head_merge: usize,
        /// ReLU MLP and 2ReLU attention instead of SiLU and softmax.
        pub mpc_friendly: bool,
        /// The embedding (and so the tied lm head) is private: the paper's baseline, with
        /// every layer and the embedding evaluated in MPC (needs `public_layers == 0`).
        pub private_embedding: bool,
    }

    fn uniform(prg: &mut Prg, n: usize, bound: f32) -> Vec<f32> {
        let mut w = vec![0u64; n];
        prg.fill(&mut w);
        w.into_iter().map(|v| ((v >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * bound).collect()
    }

    /// The dimensions of a random model.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Shape {
        /// Layers.
        pub layers: usize,
        /// Hidden size.
        pub d: usize,
        /// Original (unmerged) query heads; `d` must be a multiple.
        pub heads: usize,
        /// Original key/value heads.
        pub kv_heads: usize,
        /// MLP hidden size.
        pub ffn: usize,
        /// Vocabulary.
        pub vocab: usize,
    }

    /// A model with `layers` layers, `d`, 4 original heads (2 kv heads), ffn `2d`, vocab
    /// `vocab`; returns the server file's bytes.
    pub fn model(v: Variant, layers: usize, d: usize, vocab: usize, seed: u8) -> Result<Vec<u8>, StdError> {
        model_shaped(v, Shape { layers, d, heads: 4, kv_heads: 2, ffn: 2 * d, vocab }, seed)
    }

    /// A model of `shape` laid out as variant `v` (merged heads own their keys and values);
    /// returns the server file's bytes.
    pub fn model_shaped(v: Variant, shape: Shape, seed: u8) -> Result<Vec<u8>, StdError> {
        model_with(v, shape, Family::Llama, seed, None)
    }

    /// Which family's layers a random model has.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Family {
        /// LLaMA: no biases.
        Llama,
        /// Qwen2: biases on q, k and v (private where the weights are).
        Qwen2,
        /// Mistral: attention within a sliding window of this many keys.
        Mistral(u32),
    }

    /// [`model_shaped`] with the layers of `family`, and a tokenizer section (a Hugging
    /// Face `tokenizer.json` over the model's vocabulary) when given.
    pub fn model_with(
        v: Variant,
        shape: Shape,
        family: Family,
        seed: u8,
        tokenizer: Option<&str>,
    ) -> Result<Vec<u8>, StdError> {
        let Shape { layers, d, heads: h0, kv_heads: kv0, ffn, vocab } = shape;
        if v.private_embedding && v.public_layers > 0 {
            return Err(StdError::Model("public layers need a public embedding".into()));
        }
        if h0 == 0 || v.head_merge == 0 || !h0.is_multiple_of(v.head_merge) || !d.is_multiple_of(h0) {
            return Err(StdError::Model("shape: heads must divide d, the merge factor the heads".into()));
        }
        let mut prg = Prg::new([seed; 32], Stream::Local);
        let heads = h0 / v.head_merge;
        let kv_heads = if v.head_merge == 1 { kv0 } else { heads };
        let head_dim = d / h0 * v.head_merge;
        let meta = ModelMeta {
            arch: match family {
                Family::Llama => "llama",
                Family::Qwen2 => "qwen2",
                Family::Mistral(_) => "mistral",
            }
            .into(),
            n_layers: layers as u32,
            d_model: d as u32,
            n_heads: heads as u32,
            n_kv_heads: kv_heads as u32,
            head_dim: head_dim as u32,
            head_merge: v.head_merge as u32,
            head_groups: (0..heads as u32)
                .map(|h| (0..v.head_merge as u32).map(|j| h * v.head_merge as u32 + j).collect())
                .collect(),
            lora_rank: v.lora_rank as u32,
            lora_alpha: 2.0 * v.lora_rank as f32,
            lora_targets: if v.lora_rank > 0 {
                PROJECTIONS.iter().map(|s| s.to_string()).collect()
            } else {
                Vec::new()
            },
            ffn_dim: ffn as u32,
            vocab: vocab as u32,
            rope_base: 10000.0,
            rms_eps: 1e-5,
            frac_bits: 16,
            public_layers: (0..v.public_layers as u32).collect(),
            tie_embeddings: true,
            activation: if v.mpc_friendly { "relu" } else { "silu" }.into(),
            attention: if v.mpc_friendly { "2relu" } else { "softmax" }.into(),
            sliding_window: match family {
                Family::Mistral(w) => w,
                _ => 0,
            },
        };
        let arch = super::Arch::from_meta(&meta)?;
        let mut w = ModelWriter::new();
        w.metadata(false, &meta)?;
        if let Some(t) = tokenizer {
            w.section(marill_core::format::SectionKind::Tokenizer, false, "tokenizer", t.as_bytes().to_vec())?;
        }
        w.tensor_f32(v.private_embedding, names::EMBED, &[vocab as u64, d as u64], &uniform(&mut prg, vocab * d, 1.0))?;
        for l in 0..layers {
            let public_layer = l < v.public_layers;
            let weights_public = public_layer || v.lora_rank > 0;
            for proj in PROJECTIONS {
                let (out, inp) = arch.proj_shape(proj);
                let bound = (3.0 / inp as f32).sqrt();
                w.tensor_f32(
                    !weights_public,
                    &names::proj(l, proj),
                    &[out as u64, inp as u64],
                    &uniform(&mut prg, out * inp, bound),
                )?;
                if arch.has_bias(proj) {
                    w.tensor_f32(
                        !weights_public,
                        &names::proj_bias(l, proj),
                        &[out as u64],
                        &uniform(&mut prg, out, 0.5),
                    )?;
                }
                if !public_layer && v.lora_rank > 0 {
                    let r = v.lora_rank;
                    let base = names::proj_base(l, proj);
                    w.tensor_f32(
                        true,
                        &format!("{base}.lora_a"),
                        &[r as u64, inp as u64],
                        &uniform(&mut prg, r * inp, bound),
                    )?;
                    w.tensor_f32(
                        true,
                        &format!("{base}.lora_b"),
                        &[out as u64, r as u64],
                        &uniform(&mut prg, out * r, 0.05),
                    )?;
                }
            }
            for name in [names::attn_norm(l), names::mlp_norm(l)] {
                let g: Vec<f32> = uniform(&mut prg, d, 0.2).into_iter().map(|x| 1.0 + x).collect();
                w.tensor(
                    !weights_public,
                    &name,
                    DType::F32,
                    &[d as u64],
                    g.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )?;
            }
        }
        let g: Vec<f32> = uniform(&mut prg, d, 0.2).into_iter().map(|x| 1.0 + x).collect();
        w.tensor_f32(v.public_layers < layers && v.lora_rank == 0, names::NORM, &[d as u64], &g)?;
        w.to_bytes()
    }
}
