//! The plaintext LLaMA forward: the client's public layers, and the reference that secure
//! inference is tested against.
//!
//! Weights are read from a split-model file in place: `f32` tensors of a memory-mapped file
//! are borrowed (64-byte aligned), other dtypes are widened once at load.

use std::borrow::Cow;

use marill_core::format::{ModelFile, TensorView};

use super::{Arch, LayerShape, dense, names};
use crate::StdError;

/// A tensor as `f32`, borrowed from the file when it already is `f32` and aligned.
pub fn weights<'a>(t: &TensorView<'a>) -> Result<Cow<'a, [f32]>, StdError> {
    if let Some(s) = t.as_f32() {
        return Ok(Cow::Borrowed(s));
    }
    let n = t.numel() as usize;
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        v.push(t.get_f32(i).ok_or_else(|| StdError::Model(format!("{}: not a float tensor", t.name)))?);
    }
    Ok(Cow::Owned(v))
}

/// Weights as `f32`, borrowed from the file or widened at load.
pub type Weights<'a> = Cow<'a, [f32]>;

/// LoRA `A` `[r, in]`, `B` `[out, r]` and the scale `α/r`.
pub type LoraPair<'a> = (Weights<'a>, Weights<'a>, f32);

/// One linear map `y = x·Wᵀ (+ (α/r)·(x·Aᵀ)·Bᵀ)`, `W` stored `[out, in]` as in Hugging Face.
pub struct Linear<'a> {
    /// `[out, in]`.
    pub w: Cow<'a, [f32]>,
    /// LoRA `A` `[r, in]` and `B` `[out, r]`, with the scale `α/r`.
    pub lora: Option<LoraPair<'a>>,
    /// Bias `[out]`.
    pub bias: Option<Weights<'a>>,
    /// Output features.
    pub out: usize,
    /// Input features.
    pub inp: usize,
}

impl Linear<'_> {
    /// `x` is `m × inp`; returns `m × out`. Products run in `f32` over the borrowed weights
    /// ([`dense::matmul_t`]); the rest of the model stays in `f64`.
    pub fn apply(&self, x: &[f64], m: usize) -> Result<Vec<f64>, StdError> {
        let x32: Vec<f32> = x.iter().map(|v| *v as f32).collect();
        let mut y = vec![0f32; m * self.out];
        dense::matmul_t(&x32, &self.w, m, self.inp, self.out, &mut y)?;
        let mut y: Vec<f64> = y.into_iter().map(f64::from).collect();
        if let Some((a, b, scale)) = &self.lora {
            let r = a.len() / self.inp.max(1);
            let mut u = vec![0f32; m * r];
            dense::matmul_t(&x32, a, m, self.inp, r, &mut u)?;
            let mut v = vec![0f32; m * self.out];
            dense::matmul_t(&u, b, m, r, self.out, &mut v)?;
            for (yv, vv) in y.iter_mut().zip(&v) {
                *yv += f64::from(*scale) * f64::from(*vv);
            }
        }
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(self.out) {
                for (yv, bv) in row.iter_mut().zip(b.iter()) {
                    *yv += f64::from(*bv);
                }
            }
        }
        Ok(y)
    }
}

/// The weights of one layer.
pub struct Layer<'a> {
    /// Head shape and approximations.
    pub shape: LayerShape,
    /// Attention norm gain.
    pub attn_norm: Cow<'a, [f32]>,
    /// Projections.
    pub q: Linear<'a>,
    /// Projections.
    pub k: Linear<'a>,
    /// Projections.
    pub v: Linear<'a>,
    /// Projections.
    pub o: Linear<'a>,
    /// MLP norm gain.
    pub mlp_norm: Cow<'a, [f32]>,
    /// MLP.
    pub gate: Linear<'a>,
    /// MLP.
    pub up: Linear<'a>,
    /// MLP.
    pub down: Linear<'a>,
}

fn linear<'a>(
    f: &ModelFile<'a>,
    arch: &Arch,
    shape: &LayerShape,
    layer: usize,
    proj: &str,
) -> Result<Linear<'a>, StdError> {
    let name = names::proj(layer, proj);
    let t = f.tensor(&name).ok_or_else(|| StdError::MissingTensor { name: name.clone() })?;
    let (out, inp) = shape.proj_shape(arch, proj);
    if t.dims() != [out as u64, inp as u64] {
        return Err(StdError::TensorShape { name, got: t.dims().to_vec(), want: vec![out as u64, inp as u64] });
    }
    let lora = match (
        f.tensor(&format!("{}.lora_a", names::proj_base(layer, proj))),
        f.tensor(&format!("{}.lora_b", names::proj_base(layer, proj))),
    ) {
        (Some(a), Some(b)) => {
            let r = arch.lora_rank;
            if a.dims() != [r as u64, inp as u64] || b.dims() != [out as u64, r as u64] {
                return Err(StdError::Model(format!("{name}: LoRA shapes {:?} {:?}", a.dims(), b.dims())));
            }
            Some((weights(&a)?, weights(&b)?, arch.lora_scale()))
        }
        _ => None,
    };
    let bias_name = names::proj_bias(layer, proj);
    let bias = match (arch.has_bias(proj), f.tensor(&bias_name)) {
        (true, Some(_)) => Some(vector(f, &bias_name, out)?),
        (false, None) => None,
        (true, None) => return Err(StdError::MissingTensor { name: bias_name }),
        (false, Some(_)) => {
            return Err(StdError::Model(format!("{bias_name}: a bias, but only a qwen2 file's q, k and v have one")));
        }
    };
    Ok(Linear { w: weights(&t)?, lora, bias, out, inp })
}

fn vector<'a>(f: &ModelFile<'a>, name: &str, len: usize) -> Result<Cow<'a, [f32]>, StdError> {
    let t = f.tensor(name).ok_or_else(|| StdError::MissingTensor { name: name.into() })?;
    if t.numel() != len as u64 {
        return Err(StdError::TensorShape { name: name.into(), got: t.dims().to_vec(), want: vec![len as u64] });
    }
    weights(&t)
}

impl<'a> Layer<'a> {
    /// Load layer `l` from `f` (which must hold all of its tensors).
    pub fn load(f: &ModelFile<'a>, arch: &Arch, l: usize) -> Result<Self, StdError> {
        let s = LayerShape::of(f, arch, l)?;
        Ok(Self {
            shape: s,
            attn_norm: vector(f, &names::attn_norm(l), arch.d)?,
            q: linear(f, arch, &s, l, "q")?,
            k: linear(f, arch, &s, l, "k")?,
            v: linear(f, arch, &s, l, "v")?,
            o: linear(f, arch, &s, l, "o")?,
            mlp_norm: vector(f, &names::mlp_norm(l), arch.d)?,
            gate: linear(f, arch, &s, l, "gate")?,
            up: linear(f, arch, &s, l, "up")?,
            down: linear(f, arch, &s, l, "down")?,
        })
    }
}

/// A plaintext model over layers `[first, last)`, with its own KV cache.
pub struct PlainModel<'a> {
    /// The architecture.
    pub arch: Arch,
    /// `None` when the file has no public embedding (the all-private baseline).
    embed: Option<Weights<'a>>,
    layers: Vec<Layer<'a>>,
    first: usize,
    /// Final norm gain and lm head.
    head: Option<(Weights<'a>, Weights<'a>)>,
    /// Per layer: cached keys and values, `T × kv_dim` each.
    cache: Vec<(Vec<f64>, Vec<f64>)>,
    pos: usize,
}

/// RMSNorm of each row of `x` (`m × d`) with gain `g`.
pub fn rms_norm(x: &[f64], g: &[f32], eps: f64) -> Vec<f64> {
    let d = g.len();
    let mut y = x.to_vec();
    for row in y.chunks_mut(d) {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let r = 1.0 / (ms + eps).sqrt();
        for (v, w) in row.iter_mut().zip(g) {
            *v *= r * f64::from(*w);
        }
    }
    y
}

/// RoPE on `x` (`m × heads·hd`) at positions `pos0..`, rotating each original head of
/// `rope_dim` dimensions (half-split pairs, as Hugging Face LLaMA); `scale` multiplies the
/// result (1/√hd for queries).
pub fn rope(x: &mut [f64], m: usize, width: usize, rope_dim: usize, pos0: usize, base: f64, scale: f64) {
    let half = rope_dim / 2;
    for i in 0..m {
        for chunk in x[i * width..(i + 1) * width].chunks_mut(rope_dim) {
            for j in 0..half {
                let theta = super::rope_angle(pos0 + i, j, rope_dim, base);
                let (c, s) = (theta.cos() * scale, theta.sin() * scale);
                let (a, b) = (chunk[j], chunk[j + half]);
                chunk[j] = a * c - b * s;
                chunk[j + half] = b * c + a * s;
            }
        }
    }
}

impl<'a> PlainModel<'a> {
    /// Layers `[first, last)` of `f`; with `with_head` also the final norm and lm head.
    pub fn load(f: &ModelFile<'a>, arch: Arch, first: usize, last: usize, with_head: bool) -> Result<Self, StdError> {
        // The all-private baseline has no public embedding: the client then runs no layer.
        let embed = match f.tensor(names::EMBED) {
            None if first == last && !with_head => None,
            _ => Some(vector(f, names::EMBED, arch.vocab * arch.d)?),
        };
        let layers = (first..last).map(|l| Layer::load(f, &arch, l)).collect::<Result<Vec<_>, _>>()?;
        let head = if with_head {
            let norm = vector(f, names::NORM, arch.d)?;
            let lm = match (&embed, arch.tie_embeddings) {
                (Some(e), true) => e.clone(),
                _ => vector(f, if arch.tie_embeddings { names::EMBED } else { names::LM_HEAD }, arch.vocab * arch.d)?,
            };
            Some((norm, lm))
        } else {
            None
        };
        let cache = vec![(Vec::new(), Vec::new()); last - first];
        Ok(Self { arch, embed, layers, first, head, cache, pos: 0 })
    }

    /// Embedding rows of `tokens`.
    pub fn embed(&self, tokens: &[u32]) -> Result<Vec<f64>, StdError> {
        let d = self.arch.d;
        let embed = self.embed.as_ref().ok_or_else(|| StdError::Model("no public embedding".into()))?;
        let mut h = Vec::with_capacity(tokens.len() * d);
        for t in tokens {
            let t = *t as usize;
            if t >= self.arch.vocab {
                return Err(StdError::TokenOutsideVocab { token: t as u64, vocab: self.arch.vocab });
            }
            h.extend(embed[t * d..(t + 1) * d].iter().map(|v| f64::from(*v)));
        }
        Ok(h)
    }

    /// Run the layers on `m` new rows `h`, extending the cache.
    pub fn layers(&mut self, h: &mut [f64], m: usize) -> Result<(), StdError> {
        for li in 0..self.layers.len() {
            self.attention(li, h, m)?;
            self.mlp(li, h, m)?;
        }
        self.pos += m;
        Ok(())
    }

    /// Layer `li`'s attention block on the `m` rows of `h` (norm, q, k, v, RoPE, the
    /// cache, scores, softmax or 2ReLU, `P·V`, o), added to `h`.
    fn attention(&mut self, li: usize, h: &mut [f64], m: usize) -> Result<(), StdError> {
        let a = &self.arch;
        let layer = &self.layers[li];
        let s = layer.shape;
        let (qd, kvd, hd) = (s.n_heads * s.head_dim, s.n_kv_heads * s.head_dim, s.head_dim);
        let x = rms_norm(h, &layer.attn_norm, a.rms_eps);
        let mut q = layer.q.apply(&x, m)?;
        let mut k = layer.k.apply(&x, m)?;
        let v = layer.v.apply(&x, m)?;
        rope(&mut q, m, qd, a.rope_dim(), self.pos, a.rope_base, 1.0 / (hd as f64).sqrt());
        rope(&mut k, m, kvd, a.rope_dim(), self.pos, a.rope_base, 1.0);
        let (kc, vc) = &mut self.cache[li];
        kc.extend_from_slice(&k);
        vc.extend_from_slice(&v);
        let t_len = kc.len() / kvd;
        let mut attn = vec![0.0; m * qd];
        let group = s.n_heads / s.n_kv_heads;
        for hh in 0..s.n_heads {
            let kvh = hh / group;
            for i in 0..m {
                let qrow = &q[i * qd + hh * hd..i * qd + (hh + 1) * hd];
                // Keys first..=me: up to the query itself, within the window if any.
                let me = t_len - m + i;
                let first = a.window.map_or(0, |w| (me + 1).saturating_sub(w));
                let scores: Vec<f64> = (first..=me)
                    .map(|t| {
                        let krow = &kc[t * kvd + kvh * hd..t * kvd + (kvh + 1) * hd];
                        qrow.iter().zip(krow).map(|(x, y)| x * y).sum()
                    })
                    .collect();
                let probs = s.attention.normalise(&scores);
                for (t, pr) in (first..).zip(&probs) {
                    let vrow = &vc[t * kvd + kvh * hd..t * kvd + (kvh + 1) * hd];
                    for (j, vv) in vrow.iter().enumerate() {
                        attn[i * qd + hh * hd + j] += pr * vv;
                    }
                }
            }
        }
        let o = layer.o.apply(&attn, m)?;
        for (hv, ov) in h.iter_mut().zip(&o) {
            *hv += ov;
        }
        Ok(())
    }

    /// Layer `li`'s MLP block on the `m` rows of `h` (norm, gate, up, SiLU or ReLU, down),
    /// added to `h`.
    fn mlp(&self, li: usize, h: &mut [f64], m: usize) -> Result<(), StdError> {
        let layer = &self.layers[li];
        let x = rms_norm(h, &layer.mlp_norm, self.arch.rms_eps);
        let g = layer.gate.apply(&x, m)?;
        let u = layer.up.apply(&x, m)?;
        let act: Vec<f64> = g.iter().zip(&u).map(|(g, u)| layer.shape.activation.apply(*g) * u).collect();
        let dn = layer.down.apply(&act, m)?;
        for (hv, dv) in h.iter_mut().zip(&dn) {
            *hv += dv;
        }
        Ok(())
    }

    /// Logits of the last row of `h` (requires the head).
    pub fn logits(&self, h: &[f64]) -> Result<Vec<f64>, StdError> {
        let (norm, lm) = self.head.as_ref().ok_or_else(|| StdError::Model("no lm head loaded".into()))?;
        let d = self.arch.d;
        let last = &h[h.len() - d..];
        let x: Vec<f32> = rms_norm(last, norm, self.arch.rms_eps).into_iter().map(|v| v as f32).collect();
        let mut logits = vec![0f32; self.arch.vocab];
        dense::matmul_t(&x, lm, 1, d, self.arch.vocab, &mut logits)?;
        Ok(logits.into_iter().map(f64::from).collect())
    }

    /// The loaded layers, to edit in place (ablations: a bias or a LoRA removed).
    pub fn layers_mut(&mut self) -> &mut [Layer<'a>] {
        &mut self.layers
    }

    /// Position of the next token.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether the file gave this model a public embedding.
    pub fn has_embedding(&self) -> bool {
        self.embed.is_some()
    }

    /// The first layer this model runs.
    pub fn first_layer(&self) -> usize {
        self.first
    }
}

/// Softmax of one row of scores.
pub fn softmax(s: &[f64]) -> Vec<f64> {
    super::Attention::Softmax.normalise(s)
}

/// Index of the largest value (lowest index on ties, as the secure argmax).
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}
