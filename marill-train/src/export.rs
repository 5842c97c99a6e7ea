//! Export to the split-model file (`format-spec/SPEC.md`), through the same
//! [`marill_std::model_file`] types the reader uses.
//!
//! A tensor goes to the **private** section when the recipe trained it (the private layers'
//! weights and norms, the final norm, the embedding in full fine-tuning) or when it is a LoRA
//! factor; everything else — the embedding and layers that stay pretrained, the pretrained
//! `W` under LoRA, a frozen lm head — is **public**, as are the metadata, the recipe and the
//! tokenizer. Merged heads are laid out as the runtime reads them: the rows of merged head
//! `g` are its original heads' rows side by side.
//!
//! The file describes one head shape for the private layers (`n_heads`, `head_dim`,
//! `head_merge`); public layers keep `n_heads·head_merge` original heads of
//! `head_dim/head_merge` and SiLU/softmax. Head pruning with frozen public layers therefore
//! cannot be expressed and is refused (prune with `f = 1`, or evaluate it in plaintext).

use marill_core::format::SectionKind;
use marill_std::model::{Activation, Attention, PROJECTIONS};
use marill_std::model_file::{ModelMeta, ModelWriter, Recipe as FileRecipe, encode_postcard};

use crate::model::{Model, Param};
use crate::recipe::{Grouping, Recipe};
use crate::{Error, Result};

/// What goes into the file besides the weights.
pub struct ExportInfo<'a> {
    /// The recipe the model was trained with.
    pub recipe: &'a Recipe,
    /// Whether distillation was used.
    pub distilled: bool,
    /// Hugging Face `tokenizer.json`, stored in the public section.
    pub tokenizer_json: Option<&'a str>,
    /// Fixed-point fractional bits for secure inference.
    pub frac_bits: u32,
    /// Free text for the recipe section.
    pub notes: String,
}

/// The metadata the runtime will read for `model`.
pub fn meta(model: &Model, frac_bits: u32) -> Result<ModelMeta> {
    let n = model.layers.len();
    let np = model.n_public;
    let m = model.head_merge.max(1);
    let reference = if np < n { model.layers[np] } else { model.layers[0] };
    if model.layers[np..].iter().any(|s| *s != reference) {
        return Err(Error::Config("private layers must share one head shape".into()));
    }
    for s in &model.layers[..np] {
        if s.n_heads != reference.n_heads * m
            || s.head_dim * m != reference.head_dim
            || s.activation != Activation::Silu
            || s.attention != Attention::Softmax
        {
            return Err(Error::Config(
                "public layers must keep the original heads of the private layers (head pruning needs f = 1)".into(),
            ));
        }
    }
    let lora = model.lora[np..].iter().flatten().next().copied();
    Ok(ModelMeta {
        arch: match (model.cfg.qkv_bias, model.cfg.sliding_window) {
            (false, None) => "llama",
            (true, None) => "qwen2",
            (false, Some(_)) => "mistral",
            (true, Some(_)) => return Err(Error::Config("q/k/v biases and a sliding window in one model".into())),
        }
        .into(),
        n_layers: n as u32,
        d_model: model.cfg.d as u32,
        n_heads: reference.n_heads as u32,
        n_kv_heads: reference.n_kv_heads as u32,
        head_dim: reference.head_dim as u32,
        head_merge: m as u32,
        head_groups: model.head_groups.iter().flatten().cloned().collect(),
        lora_rank: lora.map_or(0, |l| l.rank as u32),
        lora_alpha: lora.map_or(0.0, |l| l.alpha),
        lora_targets: if lora.is_some() { PROJECTIONS.iter().map(|s| s.to_string()).collect() } else { Vec::new() },
        ffn_dim: model.cfg.ffn as u32,
        vocab: model.cfg.vocab as u32,
        rope_base: model.cfg.rope_base as f32,
        rms_eps: model.cfg.rms_eps as f32,
        frac_bits,
        public_layers: (0..np as u32).collect(),
        tie_embeddings: model.cfg.tie_embeddings,
        activation: if np < n { reference.activation } else { Activation::Silu }.name().into(),
        attention: if np < n { reference.attention } else { Attention::Softmax }.name().into(),
        sliding_window: match model.cfg.sliding_window {
            Some(w) => u32::try_from(w).map_err(|_| Error::Config(format!("sliding window {w}")))?,
            None => 0,
        },
    })
}

/// The server's split-model file for `model`.
pub fn export(model: &Model, info: &ExportInfo<'_>) -> Result<Vec<u8>> {
    let meta = meta(model, info.frac_bits)?;
    let mut w = ModelWriter::new();
    w.metadata(false, &meta)?;
    let r = info.recipe;
    let file_recipe = FileRecipe {
        trained_fraction: r.trained_fraction as f32,
        lora_rank: r.lora_rank as u32,
        head_merge: r.head_merge as u32,
        grouping: match (r.head_merge, r.grouping) {
            (1, _) => "none",
            (_, Grouping::Similarity) => "similarity",
            (_, Grouping::Adjacent) => "adjacent",
        }
        .into(),
        distilled: info.distilled,
        notes: info.notes.clone(),
    };
    w.section(SectionKind::Recipe, false, "recipe", encode_postcard(&file_recipe)?)?;
    if let Some(t) = info.tokenizer_json {
        w.section(SectionKind::Tokenizer, false, "tokenizer", t.as_bytes().to_vec())?;
    }
    for (name, p) in &model.params {
        let private = matches!(p, Param::Train(_)) || name.contains(".lora_");
        let t = p.tensor().to_dtype(candle_core::DType::F32)?;
        let dims: Vec<u64> = t.dims().iter().map(|d| *d as u64).collect();
        let vals = t.flatten_all()?.to_vec1::<f32>()?;
        w.tensor_f32(private, name, &dims, &vals)?;
    }
    Ok(w.to_bytes()?)
}

/// A pretrained model as a split file without training: the recipe "layer freezing with
/// fraction `f`" applied to it (the bottom `round((1−f)·N)` layers and the embedding public,
/// the rest and the final norm private; the embedding too when `f = 1`).
pub fn split_pretrained(model: &Model, f: f64, tokenizer_json: Option<&str>, frac_bits: u32) -> Result<Vec<u8>> {
    let r = Recipe { trained_fraction: f, ..Recipe::full() };
    let split = r.apply(model, None, 0)?;
    let info = ExportInfo {
        recipe: &r,
        distilled: false,
        tokenizer_json,
        frac_bits,
        notes: "pretrained weights, split without training".into(),
    };
    export(&split, &info)
}
