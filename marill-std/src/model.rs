//! The transformer runtime: the client's plaintext public layers ([`plain`]) and the
//! private layers in MPC ([`secure`]), over the split-model file.
//!
//! Tensor names follow the Hugging Face LLaMA layout ([`names`]); LoRA factors are
//! `….lora_a` (`[r, in]`) and `….lora_b` (`[out, r]`) next to the projection they adapt.
//! Public layers must be a prefix `0..k` (MARILL freezes the bottom layers).

pub mod check;
pub mod dense;
pub mod measure;
pub mod plain;
pub mod secure;

use crate::StdError;
use crate::model_file::ModelMeta;

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
    /// Attention norm gain.
    pub fn attn_norm(l: usize) -> String {
        format!("model.layers.{l}.input_layernorm.weight")
    }
    /// MLP norm gain.
    pub fn mlp_norm(l: usize) -> String {
        format!("model.layers.{l}.post_attention_layernorm.weight")
    }
}

/// RoPE's angle at position `pos` for pair `j` of a block of `rope_dim` (half-split pairs,
/// as Hugging Face LLaMA): `pos · base^(−2j / rope_dim)`. The one definition every runtime
/// uses (plaintext, secure, marill-train).
pub fn rope_angle(pos: usize, j: usize, rope_dim: usize, base: f64) -> f64 {
    pos as f64 * base.powf(-(2.0 * j as f64) / rope_dim as f64)
}

/// The projections of a layer, in the order the runtime applies them.
pub const PROJECTIONS: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

/// The architecture, from the file's metadata.
#[derive(Debug, Clone)]
pub struct Arch {
    /// Hidden size.
    pub d: usize,
    /// Layers.
    pub n_layers: usize,
    /// Query heads (merged).
    pub n_heads: usize,
    /// Key/value heads (merged).
    pub n_kv_heads: usize,
    /// Dimension of a (merged) head.
    pub head_dim: usize,
    /// Head-merge factor.
    pub head_merge: usize,
    /// MLP hidden size.
    pub ffn: usize,
    /// Vocabulary.
    pub vocab: usize,
    /// RoPE base.
    pub rope_base: f64,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// Fixed-point fractional bits.
    pub frac_bits: u32,
    /// LoRA rank (0: none).
    pub lora_rank: usize,
    /// LoRA α.
    pub lora_alpha: f32,
    /// Projections with LoRA.
    pub lora_targets: Vec<String>,
    /// Layers `0..n_public` are public.
    pub n_public: usize,
    /// lm head = embedding.
    pub tie_embeddings: bool,
    /// ReLU instead of SiLU.
    pub relu: bool,
    /// 2ReLU instead of softmax.
    pub two_relu: bool,
}

impl Arch {
    /// Check and convert the metadata: every value the runtimes rely on is checked here,
    /// when a file is opened, and a bad one is refused with its field's name
    /// ([`StdError::Arch`]) rather than failing mid-inference.
    pub fn from_meta(m: &ModelMeta) -> Result<Self, StdError> {
        let bad = |field: &'static str, reason: String| Err(StdError::Arch { field, reason });
        let n_public = m.public_layers.len();
        if m.public_layers.iter().enumerate().any(|(i, l)| *l as usize != i) {
            return bad("public_layers", format!("{:?}: must be the bottom layers 0..k", m.public_layers));
        }
        // `n_layers` may be 0: the embedding and head alone (what `marill cost` measures as
        // the part of a model outside its layers).
        for (field, v) in [("d_model", m.d_model), ("ffn_dim", m.ffn_dim), ("vocab", m.vocab)] {
            if v == 0 {
                return bad(field, "must be positive".into());
            }
        }
        if n_public > m.n_layers as usize {
            return bad("public_layers", format!("{n_public} public layers of {} layers", m.n_layers));
        }
        if m.n_heads == 0 {
            return bad("n_heads", "must be positive".into());
        }
        if m.n_kv_heads == 0 || !m.n_heads.is_multiple_of(m.n_kv_heads) {
            return bad("n_kv_heads", format!("{}: must divide n_heads = {}", m.n_kv_heads, m.n_heads));
        }
        if m.head_merge == 0 {
            return bad("head_merge", "must be positive".into());
        }
        if m.head_dim == 0 || !m.head_dim.is_multiple_of(m.head_merge) || !(m.head_dim / m.head_merge).is_multiple_of(2)
        {
            return bad(
                "head_dim",
                format!("{}: must split into head_merge = {} even RoPE blocks", m.head_dim, m.head_merge),
            );
        }
        // The non-linear library's range (marill-core `nonlinear`); 16 is what every test
        // and table here uses.
        if !(1..=24).contains(&m.frac_bits) {
            return bad("frac_bits", format!("{}: secure inference supports 1 to 24 fractional bits", m.frac_bits));
        }
        if !(m.rope_base.is_finite() && m.rope_base > 1.0) {
            return bad("rope_base", format!("{}: must be finite and above 1", m.rope_base));
        }
        if !(m.rms_eps.is_finite() && m.rms_eps >= 0.0) {
            return bad("rms_eps", format!("{}: must be finite and not negative", m.rms_eps));
        }
        if let Some(t) = m.lora_targets.iter().find(|t| !PROJECTIONS.contains(&t.as_str())) {
            return bad("lora_targets", format!("{t:?}: not one of {PROJECTIONS:?}"));
        }
        if m.lora_rank > 0 && !m.lora_alpha.is_finite() {
            return bad("lora_alpha", format!("{}: must be finite", m.lora_alpha));
        }
        let relu = match m.activation.as_str() {
            "silu" => false,
            "relu" => true,
            other => return bad("activation", format!("{other:?}: must be \"silu\" or \"relu\"")),
        };
        let two_relu = match m.attention.as_str() {
            "softmax" => false,
            "2relu" => true,
            other => return bad("attention", format!("{other:?}: must be \"softmax\" or \"2relu\"")),
        };
        Ok(Self {
            d: m.d_model as usize,
            n_layers: m.n_layers as usize,
            n_heads: m.n_heads as usize,
            n_kv_heads: m.n_kv_heads as usize,
            head_dim: m.head_dim as usize,
            head_merge: m.head_merge as usize,
            ffn: m.ffn_dim as usize,
            vocab: m.vocab as usize,
            rope_base: f64::from(m.rope_base),
            rms_eps: f64::from(m.rms_eps),
            frac_bits: m.frac_bits,
            lora_rank: m.lora_rank as usize,
            lora_alpha: m.lora_alpha,
            lora_targets: m.lora_targets.clone(),
            n_public,
            tie_embeddings: m.tie_embeddings,
            relu,
            two_relu,
        })
    }

    /// Query width.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
    /// Key/value width.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
    /// RoPE block: an original (unmerged) head.
    pub fn rope_dim(&self) -> usize {
        self.head_dim / self.head_merge
    }
    /// `(out, in)` of a projection of a private layer.
    pub fn proj_shape(&self, proj: &str) -> (usize, usize) {
        plain::LayerShape::private(self).proj_shape(self, proj)
    }
    /// LoRA scale `α/r`.
    pub fn lora_scale(&self) -> f32 {
        if self.lora_rank == 0 { 0.0 } else { self.lora_alpha / self.lora_rank as f32 }
    }
    /// Whether `proj` of private layers carries LoRA.
    pub fn has_lora(&self, proj: &str) -> bool {
        self.lora_rank > 0 && self.lora_targets.iter().any(|t| t == proj)
    }
}

/// Random models in the split-model layout, for tests and benchmarks until marill-train's
/// embedded default exists. Deterministic in `seed`.
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
            arch: "llama".into(),
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
        };
        let arch = super::Arch::from_meta(&meta)?;
        let mut w = ModelWriter::new();
        w.metadata(false, &meta)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model_file::{ModelMeta, decode_postcard};
    use marill_core::format::{ModelFile, SectionKind};

    fn meta() -> ModelMeta {
        let var = random::Variant {
            public_layers: 1,
            lora_rank: 2,
            head_merge: 2,
            mpc_friendly: false,
            private_embedding: false,
        };
        let shape = random::Shape { layers: 2, d: 32, heads: 4, kv_heads: 4, ffn: 48, vocab: 64 };
        let bytes = random::model_shaped(var, shape, 1).unwrap();
        let f = ModelFile::parse(&bytes).unwrap();
        decode_postcard(f.find_section(SectionKind::Metadata, false).unwrap().bytes).unwrap()
    }

    /// A file's architecture is checked when it is opened: each bad value is refused with
    /// the name of its metadata field, before any party computes.
    #[test]
    fn a_bad_architecture_value_is_refused_naming_its_field() {
        assert!(Arch::from_meta(&meta()).is_ok());
        type Spoil = fn(&mut ModelMeta);
        let cases: [(&str, Spoil); 14] = [
            ("frac_bits", |m| m.frac_bits = 0),
            ("frac_bits", |m| m.frac_bits = 40),
            ("public_layers", |m| m.public_layers = vec![1]),
            ("public_layers", |m| m.public_layers = vec![0, 1, 2]),
            ("d_model", |m| m.d_model = 0),
            ("ffn_dim", |m| m.ffn_dim = 0),
            ("n_kv_heads", |m| m.n_kv_heads = 3),
            ("head_merge", |m| m.head_merge = 0),
            ("head_dim", |m| m.head_dim = 6),
            ("rope_base", |m| m.rope_base = f32::NAN),
            ("rms_eps", |m| m.rms_eps = -1.0),
            ("lora_targets", |m| m.lora_targets = vec!["qkv".into()]),
            ("activation", |m| m.activation = "gelu".into()),
            ("attention", |m| m.attention = "linear".into()),
        ];
        for (field, spoil) in cases {
            let mut m = meta();
            spoil(&mut m);
            match Arch::from_meta(&m) {
                Err(StdError::Arch { field: f, reason }) => {
                    assert_eq!(f, field, "{reason}");
                    let text = StdError::Arch { field: f, reason }.to_string();
                    assert!(text.contains(field), "{text}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
