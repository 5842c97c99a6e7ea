//! A LLaMA-style causal LM on candle, built only from ops that have a backward pass.
//!
//! candle's fused `softmax_last_dim`, `rms_norm`, `rope*` and `sdpa` have no backward and
//! would silently stop gradients, so RMSNorm, RoPE and attention are written here with
//! basic ops (`sqr`, `mean_keepdim`, `narrow`, `cat`, `matmul`, `exp`, …).
//!
//! The layout is the Hugging Face one ([`marill_std::model::names`]): a projection's weight
//! is `[out, in]`, RoPE rotates half-split pairs. Each layer has its own head shape, because
//! MARILL merges heads only in the private (fine-tuned) layers: a merged head of dimension
//! `m·d_h` holds `m` original heads side by side, each rotated by RoPE in its own block of
//! `d_h`, and its scores are scaled by `1/√(m·d_h)`. MPC-friendly approximations (ReLU,
//! 2ReLU) likewise apply only to the layers that run in MPC.

use std::collections::BTreeMap;

use candle_core::{D, DType, Device, Tensor, Var};
use marill_std::model::{PROJECTIONS, names};

use crate::{Error, Result};

/// The base architecture.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Vocabulary size.
    pub vocab: usize,
    /// Hidden size.
    pub d: usize,
    /// Layers.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// MLP hidden size.
    pub ffn: usize,
    /// RoPE base.
    pub rope_base: f64,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// lm head = embedding.
    pub tie_embeddings: bool,
    /// q, k and v carry biases (Qwen2's layout). Left out of the serialised form when false,
    /// so that a LLaMA config (and the base cache's key) reads as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub qkv_bias: bool,
    /// Attention within a sliding window of this many keys, a query itself included
    /// (Mistral's); `None`: causal over the whole sequence. Omitted when `None`, as above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<usize>,
}

impl Config {
    /// Check the shape constraints.
    pub fn check(&self) -> Result<()> {
        let ok = self.vocab > 0
            && self.d > 0
            && self.n_heads > 0
            && self.n_kv_heads > 0
            && self.n_heads.is_multiple_of(self.n_kv_heads)
            && self.head_dim.is_multiple_of(2)
            && self.head_dim > 0
            && self.ffn > 0;
        if ok { Ok(()) } else { Err(Error::Config(format!("inconsistent architecture {self:?}"))) }
    }
}

/// The attention and MLP shape of one layer: the runtimes' one definition.
pub use marill_std::model::{Activation, Attention, LayerShape};

/// The pretrained (unmerged, unapproximated) shape of `cfg`'s layers.
pub fn pretrained_shape(cfg: &Config) -> LayerShape {
    LayerShape {
        n_heads: cfg.n_heads,
        n_kv_heads: cfg.n_kv_heads,
        head_dim: cfg.head_dim,
        rope_dim: cfg.head_dim,
        activation: Activation::Silu,
        attention: Attention::Softmax,
    }
}

/// A weight: frozen (a plain tensor, never differentiated) or trainable (a candle `Var`).
#[derive(Debug, Clone)]
pub enum Param {
    /// Not trained; no gradient flows into it.
    Frozen(Tensor),
    /// Trained.
    Train(Var),
}

impl Param {
    /// The tensor to compute with.
    pub fn tensor(&self) -> &Tensor {
        match self {
            Param::Frozen(t) => t,
            Param::Train(v) => v.as_tensor(),
        }
    }
}

/// LoRA on the projections of one layer: `W·x + (α/r)·B(A·x)`, kept unmerged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lora {
    /// Rank r.
    pub rank: usize,
    /// α.
    pub alpha: f32,
}

/// What the layers of one forward pass share: its shape, the RoPE tables and the causal
/// masks (additive for softmax, 0/1 for 2ReLU).
struct Pass {
    b: usize,
    t: usize,
    cos: Tensor,
    sin: Tensor,
    mask_add: Tensor,
    mask_mul: Tensor,
}

/// Where [`Model::forward_to`] applies the output head.
#[derive(Debug, Clone, Copy)]
pub enum Head<'a> {
    /// At every position.
    All,
    /// At these flat positions of `b·t` (u32).
    Rows(&'a Tensor),
    /// Nowhere.
    None,
}

/// What [`Model::forward`] returns.
pub struct Forward {
    /// `[b, t, vocab]`.
    pub logits: Tensor,
    /// Per layer, the attention block's output (after the o projection), `[b, t, d]`;
    /// empty unless asked for.
    pub attn: Vec<Tensor>,
    /// Per layer, the hidden state after the layer, `[b, t, d]`; empty unless asked for.
    pub hidden: Vec<Tensor>,
}

/// The model: its configuration, the shape of each layer and its weights by name.
#[derive(Debug, Clone)]
pub struct Model {
    /// Base architecture.
    pub cfg: Config,
    /// Per layer.
    pub layers: Vec<LayerShape>,
    /// LoRA of the layers that have it (the private ones).
    pub lora: Vec<Option<Lora>>,
    /// Bottom layers kept public (frozen pretrained weights).
    pub n_public: usize,
    /// Head-merge factor of the private layers (1: none).
    pub head_merge: usize,
    /// For each private layer, the original heads of each merged head.
    pub head_groups: Vec<Vec<Vec<u32>>>,
    /// Weights by Hugging Face name.
    pub params: BTreeMap<String, Param>,
    /// Where the tensors live.
    pub device: Device,
}

/// Normal(0, std) values from a seeded PRG (candle's CPU RNG cannot be seeded).
pub fn normal(rng: &mut crate::Rng, n: usize, std: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let u1 = rng.unit().max(1e-12);
        let u2 = rng.unit();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        out.push((r * t.cos()) as f32 * std);
        if out.len() < n {
            out.push((r * t.sin()) as f32 * std);
        }
    }
    out
}

impl Model {
    /// A freshly initialised model (normal(0, 0.02) weights, unit norm gains), every weight
    /// trainable.
    pub fn init(cfg: &Config, seed: u64, device: &Device) -> Result<Self> {
        cfg.check()?;
        let mut rng = crate::Rng::new(seed);
        let mut params = BTreeMap::new();
        let shape = pretrained_shape(cfg);
        let mut put = |name: String, dims: &[usize], vals: Vec<f32>| -> Result<()> {
            let t = Tensor::from_vec(vals, dims, device)?;
            params.insert(name, Param::Train(Var::from_tensor(&t)?));
            Ok(())
        };
        put(names::EMBED.into(), &[cfg.vocab, cfg.d], normal(&mut rng, cfg.vocab * cfg.d, 0.02))?;
        for l in 0..cfg.n_layers {
            for proj in PROJECTIONS {
                let (o, i) = proj_shape(cfg, &shape, proj);
                put(names::proj(l, proj), &[o, i], normal(&mut rng, o * i, 0.02))?;
            }
            for proj in ["q", "k", "v"].into_iter().filter(|_| cfg.qkv_bias) {
                let (o, _) = proj_shape(cfg, &shape, proj);
                put(names::proj_bias(l, proj), &[o], normal(&mut rng, o, 0.02))?;
            }
            put(names::attn_norm(l), &[cfg.d], vec![1.0; cfg.d])?;
            put(names::mlp_norm(l), &[cfg.d], vec![1.0; cfg.d])?;
        }
        put(names::NORM.into(), &[cfg.d], vec![1.0; cfg.d])?;
        if !cfg.tie_embeddings {
            put(names::LM_HEAD.into(), &[cfg.vocab, cfg.d], normal(&mut rng, cfg.vocab * cfg.d, 0.02))?;
        }
        Ok(Self::from_params(cfg.clone(), params, device))
    }

    /// A model over given weights (all layers unmerged, no LoRA, nothing public).
    pub fn from_params(cfg: Config, params: BTreeMap<String, Param>, device: &Device) -> Self {
        let shape = pretrained_shape(&cfg);
        Self {
            layers: vec![shape; cfg.n_layers],
            lora: vec![None; cfg.n_layers],
            n_public: 0,
            head_merge: 1,
            head_groups: Vec::new(),
            params,
            device: device.clone(),
            cfg,
        }
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.params.get(name).map(Param::tensor).ok_or_else(|| Error::Model(format!("missing tensor {name}")))
    }

    /// Replace (or add) a weight.
    pub fn set(&mut self, name: &str, t: Tensor, trainable: bool) -> Result<()> {
        let p = if trainable { Param::Train(Var::from_tensor(&t)?) } else { Param::Frozen(t.detach()) };
        self.params.insert(name.to_string(), p);
        Ok(())
    }

    /// Make every weight frozen or trainable according to `train(name)`.
    pub fn set_trainable(&mut self, train: impl Fn(&str) -> bool) -> Result<()> {
        let names: Vec<String> = self.params.keys().cloned().collect();
        for n in names {
            let t = self.get(&n)?.detach();
            let trainable = train(&n);
            self.set(&n, t, trainable)?;
        }
        Ok(())
    }

    /// The trainable variables, by name.
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.params
            .iter()
            .filter_map(|(n, p)| match p {
                Param::Train(v) => Some((n.clone(), v.clone())),
                Param::Frozen(_) => None,
            })
            .collect()
    }

    /// A deep copy whose weights are all frozen and share no variable with `self` (the
    /// distillation teacher).
    pub fn frozen_copy(&self) -> Result<Self> {
        let mut m = self.clone();
        for p in m.params.values_mut() {
            *p = Param::Frozen(p.tensor().copy()?.detach());
        }
        Ok(m)
    }

    /// Number of weights (trainable, total).
    pub fn count(&self) -> (usize, usize) {
        let mut t = 0;
        let mut all = 0;
        for p in self.params.values() {
            let n = p.tensor().elem_count();
            all += n;
            if matches!(p, Param::Train(_)) {
                t += n;
            }
        }
        (t, all)
    }

    fn linear(&self, x: &Tensor, l: usize, proj: &str) -> Result<Tensor> {
        let w = self.get(&names::proj(l, proj))?;
        let mut y = x.matmul(&w.t()?)?;
        if let Some(b) = self.params.get(&names::proj_bias(l, proj)) {
            y = y.broadcast_add(b.tensor())?;
        }
        if let Some(lora) = self.lora[l] {
            let base = names::proj_base(l, proj);
            if let (Some(a), Some(b)) =
                (self.params.get(&format!("{base}.lora_a")), self.params.get(&format!("{base}.lora_b")))
            {
                let u = x.matmul(&a.tensor().t()?)?;
                let v = u.matmul(&b.tensor().t()?)?;
                y = (y + (v * f64::from(lora.alpha / lora.rank as f32))?)?;
            }
        }
        Ok(y)
    }

    /// The forward pass over `tokens` (`[b, t]`, u32). With `trace`, also the per-layer
    /// attention outputs and hidden states.
    pub fn forward(&self, tokens: &Tensor, trace: bool) -> Result<Forward> {
        self.forward_to(tokens, trace, Head::All)
    }

    /// The forward pass with the output head applied where `head` says: at every position
    /// (`[b, t, vocab]` logits), only at the given flat positions of `b·t` (`[n, vocab]`: the
    /// training losses need logits only where an answer token is scored, and the head is a
    /// fifth of a small model's work), or nowhere (empty logits; stage I needs none).
    pub fn forward_to(&self, tokens: &Tensor, trace: bool, head: Head<'_>) -> Result<Forward> {
        let (b, t) = tokens.dims2()?;
        let d = self.cfg.d;
        let (mut h, ctx) = self.embed(tokens)?;
        let mut out = Forward { logits: h.clone(), attn: Vec::new(), hidden: Vec::new() };
        for l in 0..self.layers.len() {
            let (next, a, _) = self.layer(&h, l, &ctx)?;
            h = next;
            if trace {
                out.attn.push(a.reshape((b, t, d))?);
                out.hidden.push(h.reshape((b, t, d))?);
            }
        }
        let h = match head {
            Head::None => return Ok(out),
            Head::All => h,
            Head::Rows(rows) => h.reshape((b * t, d))?.index_select(rows, 0)?,
        };
        let x = rms_norm(&h, self.get(names::NORM)?, self.cfg.rms_eps)?;
        let embed = self.get(names::EMBED)?;
        let w = if self.cfg.tie_embeddings { embed } else { self.get(names::LM_HEAD)? };
        out.logits = x.matmul(&w.t()?)?;
        if let Head::All = head {
            out.logits = out.logits.reshape((b, t, self.cfg.vocab))?;
        }
        Ok(out)
    }

    /// Attention probabilities of every head of layer `l` on `tokens`, `[b, h, t, t]` (for
    /// head-similarity grouping, on the unmerged model).
    pub fn attention_probs(&self, tokens: &Tensor, l: usize) -> Result<Tensor> {
        if l >= self.layers.len() {
            return Err(Error::Model(format!("layer {l} out of range")));
        }
        let (mut h, ctx) = self.embed(tokens)?;
        for j in 0..l {
            h = self.layer(&h, j, &ctx)?.0;
        }
        Ok(self.layer(&h, l, &ctx)?.2)
    }

    /// Embedding rows of `tokens` (`[b·t, d]`) and what every layer of this pass shares.
    fn embed(&self, tokens: &Tensor) -> Result<(Tensor, Pass)> {
        let (b, t) = tokens.dims2()?;
        let h = self.get(names::EMBED)?.index_select(&tokens.flatten_all()?, 0)?;
        let (cos, sin) = self.rope_tables(t, self.cfg.head_dim)?;
        let (mask_add, mask_mul) = causal_mask(t, self.cfg.sliding_window, &self.device)?;
        Ok((h, Pass { b, t, cos, sin, mask_add, mask_mul }))
    }

    /// Layer `l` on `h` (`[b·t, d]`): the new hidden state, the attention block's output and
    /// the attention probabilities (`[b, heads, t, t]`).
    fn layer(&self, h: &Tensor, l: usize, c: &Pass) -> Result<(Tensor, Tensor, Tensor)> {
        let s = self.layers[l];
        let (b, t) = (c.b, c.t);
        let x = rms_norm(h, self.get(&names::attn_norm(l))?, self.cfg.rms_eps)?;
        let heads = |z: Tensor, n: usize| -> Result<Tensor> {
            Ok(z.reshape((b, t, n, s.head_dim))?.transpose(1, 2)?.contiguous()?)
        };
        let group = s.n_heads / s.n_kv_heads;
        let q = rope(&heads(self.linear(&x, l, "q")?, s.n_heads)?, &c.cos, &c.sin, s.rope_dim)?;
        let k = rope(&heads(self.linear(&x, l, "k")?, s.n_kv_heads)?, &c.cos, &c.sin, s.rope_dim)?;
        let k = repeat_kv(&k, group)?;
        let v = repeat_kv(&heads(self.linear(&x, l, "v")?, s.n_kv_heads)?, group)?;
        let scores = (q.matmul(&k.t()?)? / (s.head_dim as f64).sqrt())?;
        let probs = match s.attention {
            Attention::TwoRelu => {
                let r = scores.relu()?.broadcast_mul(&c.mask_mul)?;
                let sum = (r.sum_keepdim(D::Minus1)? + 2f64.powi(-8))?;
                r.broadcast_div(&sum)?
            }
            Attention::Softmax => candle_nn::ops::softmax(&scores.broadcast_add(&c.mask_add)?, D::Minus1)?,
        };
        let a = probs.matmul(&v)?.transpose(1, 2)?.reshape((b * t, s.n_heads * s.head_dim))?;
        let a = self.linear(&a, l, "o")?;
        let h = (h + &a)?;
        let x = rms_norm(&h, self.get(&names::mlp_norm(l))?, self.cfg.rms_eps)?;
        let g = self.linear(&x, l, "gate")?;
        let g = match s.activation {
            Activation::Relu => g.relu()?,
            Activation::Silu => g.silu()?,
        };
        let m = self.linear(&(g * self.linear(&x, l, "up")?)?, l, "down")?;
        Ok(((h + m)?, a, probs))
    }

    fn rope_tables(&self, t: usize, rope_dim: usize) -> Result<(Tensor, Tensor)> {
        let half = rope_dim / 2;
        let mut c = Vec::with_capacity(t * half);
        let mut s = Vec::with_capacity(t * half);
        for p in 0..t {
            for j in 0..half {
                let theta = marill_std::model::rope_angle(p, j, rope_dim, self.cfg.rope_base);
                c.push(theta.cos() as f32);
                s.push(theta.sin() as f32);
            }
        }
        // Shaped to broadcast over [b, h, t, blocks, half].
        Ok((
            Tensor::from_vec(c, (1, 1, t, 1, half), &self.device)?,
            Tensor::from_vec(s, (1, 1, t, 1, half), &self.device)?,
        ))
    }

    /// Greedy continuation of `prompt` by up to `max_new` tokens, stopping after `stop`.
    pub fn generate(&self, prompt: &[u32], max_new: usize, stop: Option<u32>) -> Result<Vec<u32>> {
        let mut seq = prompt.to_vec();
        let mut out = Vec::new();
        for _ in 0..max_new {
            let x = Tensor::new(seq.as_slice(), &self.device)?.unsqueeze(0)?;
            let logits = self.forward(&x, false)?.logits;
            let last = logits.get(0)?.get(seq.len() - 1)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            let next = argmax(&last);
            out.push(next);
            seq.push(next);
            if Some(next) == stop {
                break;
            }
        }
        Ok(out)
    }
}

/// Index of the largest value, lowest index on ties (as the secure argmax).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// `(out, in)` of a projection for a layer shape.
pub fn proj_shape(cfg: &Config, s: &LayerShape, proj: &str) -> (usize, usize) {
    s.proj_dims(cfg.d, cfg.ffn, proj)
}

/// RMSNorm of the rows of `x` (`[n, d]`) with gain `g`.
pub fn rms_norm(x: &Tensor, g: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let r = (ms + eps)?.sqrt()?.recip()?;
    Ok(x.broadcast_mul(&r)?.broadcast_mul(g)?)
}

/// RoPE on `x` (`[b, h, t, hd]`), rotating each block of `rope_dim` (half-split pairs).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, rope_dim: usize) -> Result<Tensor> {
    let (b, h, t, hd) = x.dims4()?;
    let half = rope_dim / 2;
    let x = x.reshape((b, h, t, hd / rope_dim, rope_dim))?;
    let x1 = x.narrow(4, 0, half)?;
    let x2 = x.narrow(4, half, half)?;
    let a = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let c = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Ok(Tensor::cat(&[&a, &c], 4)?.reshape((b, h, t, hd))?)
}

/// Each key/value head repeated for the `group` query heads that share it.
pub fn repeat_kv(x: &Tensor, group: usize) -> Result<Tensor> {
    if group == 1 {
        return Ok(x.clone());
    }
    let (b, kv, t, hd) = x.dims4()?;
    Ok(Tensor::cat(&vec![x; group], 2)?.reshape((b, kv * group, t, hd))?)
}

/// The causal mask as an additive `[t, t]` (−1e9 above the diagonal) and a multiplicative
/// 0/1 one.
/// Additive and multiplicative masks of `t` positions: query `i` sees keys `j ≤ i`, and
/// within a sliding `window` only `j > i − window`.
fn causal_mask(t: usize, window: Option<usize>, dev: &Device) -> Result<(Tensor, Tensor)> {
    let mut add = vec![0f32; t * t];
    let mut mul = vec![1f32; t * t];
    for i in 0..t {
        for j in 0..t {
            if j > i || window.is_some_and(|w| j + w <= i) {
                add[i * t + j] = -1e9;
                mul[i * t + j] = 0.0;
            }
        }
    }
    Ok((Tensor::from_vec(add, (t, t), dev)?, Tensor::from_vec(mul, (t, t), dev)?))
}
