//! Checkpoints: the Hugging Face LLaMA layout (`config.json` + `*.safetensors`, optional
//! `tokenizer.json`) and GGUF (llama architecture, tensors dequantized to `f32`, the
//! tokenizer from the GGUF metadata).
//!
//! GGUF stores q and k rows permuted for llama.cpp's interleaved RoPE; they are permuted
//! back to the Hugging Face half-split layout that training and the runtime use.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use marill_std::model::names;
use marill_std::tokenizer::Tokenizer;

use crate::model::{Config, Model, Param};
use crate::{Error, Result};

/// A loaded checkpoint: the model (every weight trainable) and its tokenizer when the
/// checkpoint has one.
pub struct Loaded {
    /// The model.
    pub model: Model,
    /// The tokenizer.
    pub tokenizer: Option<Tokenizer>,
    /// The tokenizer as Hugging Face JSON, for export.
    pub tokenizer_json: Option<String>,
}

fn bad(m: impl Into<String>) -> Error {
    Error::Checkpoint(m.into())
}

fn into_model(cfg: Config, tensors: HashMap<String, Tensor>, dev: &Device) -> Result<Model> {
    cfg.check()?;
    let mut params = BTreeMap::new();
    for (name, t) in tensors {
        let t = t.to_dtype(DType::F32)?.contiguous()?;
        params.insert(name, Param::Train(candle_core::Var::from_tensor(&t)?));
    }
    let m = Model::from_params(cfg, params, dev);
    validate(&m)?;
    Ok(m)
}

/// Every tensor the architecture needs is there with its shape.
pub fn validate(m: &Model) -> Result<()> {
    let c = &m.cfg;
    let mut want: Vec<(String, Vec<usize>)> =
        vec![(names::EMBED.into(), vec![c.vocab, c.d]), (names::NORM.into(), vec![c.d])];
    if !c.tie_embeddings {
        want.push((names::LM_HEAD.into(), vec![c.vocab, c.d]));
    }
    for l in 0..c.n_layers {
        for p in marill_std::model::PROJECTIONS {
            let (o, i) = crate::model::proj_shape(c, &m.layers[l], p);
            want.push((names::proj(l, p), vec![o, i]));
        }
        want.push((names::attn_norm(l), vec![c.d]));
        want.push((names::mlp_norm(l), vec![c.d]));
        for p in ["q", "k", "v"].into_iter().filter(|_| c.qkv_bias) {
            want.push((names::proj_bias(l, p), vec![crate::model::proj_shape(c, &m.layers[l], p).0]));
        }
    }
    if !c.qkv_bias
        && let Some(n) = m.params.keys().find(|n| n.ends_with(".bias"))
    {
        return Err(bad(format!("{n}: a bias, but the config is not qwen2's")));
    }
    for (n, dims) in want {
        let t = m.get(&n)?;
        if t.dims() != dims.as_slice() {
            return Err(bad(format!("{n}: shape {:?}, expected {dims:?}", t.dims())));
        }
    }
    Ok(())
}

/// Load a Hugging Face LLaMA, Qwen2 or Mistral directory (`config.json`, one or more
/// `*.safetensors`, optional `tokenizer.json`).
pub fn load_hf(dir: &Path, dev: &Device) -> Result<Loaded> {
    let text = std::fs::read_to_string(dir.join("config.json"))?;
    let j: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("config.json: {e}")))?;
    let get = |k: &str| j.get(k).and_then(serde_json::Value::as_u64).map(|v| v as usize);
    let need = |k: &str| get(k).ok_or_else(|| bad(format!("config.json: missing {k}")));
    let d = need("hidden_size")?;
    let n_heads = need("num_attention_heads")?;
    // LLaMA, and the two families the architecture seam adds: Qwen2 (q, k and v biases)
    // and Mistral (a sliding attention window).
    let family = j.get("model_type").and_then(serde_json::Value::as_str).unwrap_or("llama");
    let (qkv_bias, sliding_window) = match family {
        "llama" => (false, None),
        "qwen2" => (true, None),
        "mistral" => (false, get("sliding_window")),
        other => return Err(bad(format!("config.json: model_type {other:?}: llama, qwen2 or mistral"))),
    };
    let cfg = Config {
        vocab: need("vocab_size")?,
        d,
        n_layers: need("num_hidden_layers")?,
        n_heads,
        n_kv_heads: get("num_key_value_heads").unwrap_or(n_heads),
        head_dim: get("head_dim").unwrap_or(d / n_heads.max(1)),
        ffn: need("intermediate_size")?,
        rope_base: j.get("rope_theta").and_then(serde_json::Value::as_f64).unwrap_or(10000.0),
        rms_eps: j.get("rms_norm_eps").and_then(serde_json::Value::as_f64).unwrap_or(1e-5),
        tie_embeddings: j.get("tie_word_embeddings").and_then(serde_json::Value::as_bool).unwrap_or(false),
        qkv_bias,
        sliding_window,
    };
    let mut tensors = HashMap::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(bad(format!("no .safetensors in {}", dir.display())));
    }
    for f in files {
        tensors.extend(candle_core::safetensors::load(&f, dev)?);
    }
    let tokenizer_json = std::fs::read_to_string(dir.join("tokenizer.json")).ok();
    let tokenizer = tokenizer_json.as_deref().map(Tokenizer::from_hf_json).transpose()?;
    Ok(Loaded { model: into_model(cfg, tensors, dev)?, tokenizer, tokenizer_json })
}

/// Save `model` (its current weights, unmerged and without LoRA) in the Hugging Face layout.
pub fn save_hf(model: &Model, dir: &Path, tokenizer_json: Option<&str>) -> Result<()> {
    if model.head_merge != 1 || model.lora.iter().any(Option::is_some) {
        return Err(Error::Config("only plain (unmerged, LoRA-free) models are saved as checkpoints".into()));
    }
    std::fs::create_dir_all(dir)?;
    let c = &model.cfg;
    let (arch, family) = match (c.qkv_bias, c.sliding_window) {
        (false, None) => ("LlamaForCausalLM", "llama"),
        (true, None) => ("Qwen2ForCausalLM", "qwen2"),
        (false, Some(_)) => ("MistralForCausalLM", "mistral"),
        (true, Some(_)) => return Err(Error::Config("q/k/v biases and a sliding window in one model".into())),
    };
    let mut config = serde_json::json!({
        "architectures": [arch],
        "model_type": family,
        "vocab_size": c.vocab, "hidden_size": c.d, "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads, "head_dim": c.head_dim,
        "intermediate_size": c.ffn, "rope_theta": c.rope_base, "rms_norm_eps": c.rms_eps,
        "tie_word_embeddings": c.tie_embeddings, "hidden_act": "silu",
    });
    if let Some(w) = c.sliding_window {
        config["sliding_window"] = serde_json::json!(w);
    }
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config).unwrap_or_default())?;
    let tensors: HashMap<String, Tensor> = model.params.iter().map(|(k, p)| (k.clone(), p.tensor().clone())).collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    if let Some(t) = tokenizer_json {
        std::fs::write(dir.join("tokenizer.json"), t)?;
    }
    Ok(())
}

/// Undo llama.cpp's q/k row permutation (interleaved → half-split RoPE pairs).
fn unpermute(t: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, _) = t.dims2()?;
    if heads == 0 || !out.is_multiple_of(heads) || !(out / heads).is_multiple_of(2) {
        return Err(bad("q/k rows do not split into heads"));
    }
    let hd = out / heads;
    let half = hd / 2;
    let idx: Vec<u32> = (0..out)
        .map(|r| {
            let (h, rem) = (r / hd, r % hd);
            (h * hd + 2 * (rem % half) + rem / half) as u32
        })
        .collect();
    Ok(t.index_select(&Tensor::new(idx.as_slice(), t.device())?, 0)?)
}

/// Load a GGUF file of the llama architecture.
pub fn load_gguf(path: &Path, dev: &Device) -> Result<Loaded> {
    let mut f = std::fs::File::open(path)?;
    let content = gguf_file::Content::read(&mut f).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let md = &content.metadata;
    let arch = md.get("general.architecture").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    if arch != "llama" {
        return Err(bad(format!("architecture {arch:?}: only llama is supported")));
    }
    let u = |k: &str| -> Result<usize> {
        md.get(&format!("llama.{k}"))
            .and_then(|v| v.to_u32().ok().map(|x| x as usize).or_else(|| v.to_u64().ok().map(|x| x as usize)))
            .ok_or_else(|| bad(format!("missing llama.{k}")))
    };
    let fl = |k: &str, default: f64| -> f64 {
        md.get(&format!("llama.{k}")).and_then(|v| v.to_f32().ok()).map_or(default, f64::from)
    };
    let tokenizer = gguf_tokenizer(md)?;
    let d = u("embedding_length")?;
    let n_heads = u("attention.head_count")?;
    let n_kv_heads = u("attention.head_count_kv").unwrap_or(n_heads);
    let has_output = content.tensor_infos.contains_key("output.weight");
    let cfg = Config {
        vocab: tokenizer.vocab_size(),
        d,
        n_layers: u("block_count")?,
        n_heads,
        n_kv_heads,
        head_dim: u("attention.key_length").unwrap_or(d / n_heads.max(1)),
        ffn: u("feed_forward_length")?,
        rope_base: fl("rope.freq_base", 10000.0),
        rms_eps: fl("attention.layer_norm_rms_epsilon", 1e-5),
        tie_embeddings: !has_output,
        qkv_bias: false,
        sliding_window: None,
    };
    let mut tensors = HashMap::new();
    let mut get = |gg: &str| -> Result<Tensor> {
        let q = content.tensor(&mut f, gg, dev).map_err(|e| bad(format!("{gg}: {e}")))?;
        Ok(q.dequantize(dev)?)
    };
    tensors.insert(names::EMBED.to_string(), get("token_embd.weight")?);
    tensors.insert(names::NORM.to_string(), get("output_norm.weight")?);
    if has_output {
        tensors.insert(names::LM_HEAD.to_string(), get("output.weight")?);
    }
    for l in 0..cfg.n_layers {
        let b = format!("blk.{l}");
        tensors.insert(names::proj(l, "q"), unpermute(&get(&format!("{b}.attn_q.weight"))?, n_heads)?);
        tensors.insert(names::proj(l, "k"), unpermute(&get(&format!("{b}.attn_k.weight"))?, n_kv_heads)?);
        tensors.insert(names::proj(l, "v"), get(&format!("{b}.attn_v.weight"))?);
        tensors.insert(names::proj(l, "o"), get(&format!("{b}.attn_output.weight"))?);
        tensors.insert(names::proj(l, "gate"), get(&format!("{b}.ffn_gate.weight"))?);
        tensors.insert(names::proj(l, "up"), get(&format!("{b}.ffn_up.weight"))?);
        tensors.insert(names::proj(l, "down"), get(&format!("{b}.ffn_down.weight"))?);
        tensors.insert(names::attn_norm(l), get(&format!("{b}.attn_norm.weight"))?);
        tensors.insert(names::mlp_norm(l), get(&format!("{b}.ffn_norm.weight"))?);
    }
    let tokenizer_json = Some(tokenizer.to_hf_json());
    Ok(Loaded { model: into_model(cfg, tensors, dev)?, tokenizer: Some(tokenizer), tokenizer_json })
}

/// The tokenizer in a GGUF file's metadata (`tokenizer.ggml.*`, GPT-2-style BPE).
fn gguf_tokenizer(md: &HashMap<String, gguf_file::Value>) -> Result<Tokenizer> {
    let model = md.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    if model != "gpt2" {
        return Err(bad(format!("tokenizer model {model:?}: only gpt2-style BPE is supported")));
    }
    let strings = |k: &str| -> Result<Vec<String>> {
        let v = md.get(k).ok_or_else(|| bad(format!("missing {k}")))?.to_vec()?;
        v.iter().map(|x| x.to_string().cloned().map_err(Error::from)).collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    // Token types 3 (control) and 4 (user-defined) are matched as whole tokens.
    let mut specials = Vec::new();
    if let Some(types) = md.get("tokenizer.ggml.token_type") {
        for (i, t) in types.to_vec()?.iter().enumerate() {
            if matches!(t.to_i32(), Ok(3 | 4)) {
                specials.push(i as u32);
            }
        }
    }
    let pre = md.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    // llama.cpp's "smollm" pre-tokenizer splits digits one by one, as SmolLM's tokenizer.json.
    let digits = pre == "smollm";
    Ok(Tokenizer::from_parts(tokens, &merges, &specials, true, digits)?)
}
