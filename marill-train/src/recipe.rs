//! MARILL recipes: how a pretrained model becomes a student whose private part is small.
//!
//! Applied in this order to a copy of the pretrained base:
//! 1. *top-layer pruning* (ablation): drop the top layers;
//! 2. *layer freezing* with trained fraction `f`: the bottom `round((1−f)·N)` layers and the
//!    embedding stay the public pretrained weights;
//! 3. in the private layers, *grouped-query attention is expanded* to one key/value head per
//!    query head when heads are merged or pruned (each kv head's rows repeated for the query
//!    heads that share it): merged heads then own their keys and values, at the price of more
//!    kv rows in the private layers only;
//! 4. *head merging* by `m` (similarity or adjacent groups, see [`crate::merge`]) or *head
//!    pruning* (ablation; the heads whose o-projection columns have the smallest norm);
//! 5. *MPC-friendly approximations* (ReLU MLP, 2ReLU attention) in the private layers;
//! 6. *LoRA* of rank `r` on q, k, v, o, gate, up, down of the private layers (A normal with
//!    std `1/√in`, B zero, unmerged); with LoRA only the factors train.
//!
//! Without LoRA the private layers and the final norm train; the embedding (and an untied lm
//! head) trains only in full fine-tuning (`f = 1`, no LoRA), which is the paper's baseline
//! and the distillation teacher.

use candle_core::{DType, Tensor};
use marill_std::model::{Activation, Attention, PROJECTIONS, names};

use crate::model::{Lora, Model, normal, proj_shape};
use crate::{Error, Result, Rng, merge};

/// How merged heads are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Grouping {
    /// By attention similarity.
    Similarity,
    /// Adjacent heads (ablation).
    Adjacent,
}

/// A fine-tuning recipe; [`Recipe::full`] is full fine-tuning.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Recipe {
    /// Fraction of layers fine-tuned (1 = all).
    pub trained_fraction: f64,
    /// LoRA rank (0 = none).
    pub lora_rank: usize,
    /// LoRA α (scale α/r).
    pub lora_alpha: f32,
    /// Head-merge factor (1 = none).
    pub head_merge: usize,
    /// Grouping for merged heads.
    pub grouping: Grouping,
    /// ReLU instead of SiLU in the private layers.
    pub relu: bool,
    /// 2ReLU instead of softmax in the private layers.
    pub two_relu: bool,
    /// Heads pruned per private layer (ablation).
    pub head_prune: usize,
    /// Top layers pruned (ablation).
    pub layer_prune: usize,
}

impl Recipe {
    /// Full fine-tuning.
    pub fn full() -> Self {
        Self {
            trained_fraction: 1.0,
            lora_rank: 0,
            lora_alpha: 0.0,
            head_merge: 1,
            grouping: Grouping::Similarity,
            relu: false,
            two_relu: false,
            head_prune: 0,
            layer_prune: 0,
        }
    }

    /// Trained fraction `f`, LoRA rank `lora` (α = 2r) and head-merge factor `hm`, the rest
    /// as in full fine-tuning.
    pub fn new(f: f64, lora: usize, hm: usize) -> Self {
        Self { trained_fraction: f, lora_rank: lora, lora_alpha: 2.0 * lora as f32, head_merge: hm, ..Self::full() }
    }

    /// Whether this is full fine-tuning (the baseline).
    pub fn is_full(&self) -> bool {
        self == &Self::full()
    }

    /// Whether distillation needs stage I (layer-wise alignment): head merging, head pruning
    /// and the MPC-friendly approximations (App. G: pruning and approximations follow the
    /// head-merging recipe).
    pub fn needs_stage1(&self) -> bool {
        self.head_merge > 1 || self.head_prune > 0 || self.relu || self.two_relu
    }

    /// The recipe whose fine-tuned model this one starts from (App. G), or `None` when it
    /// starts from the pretrained base. Head merging, head pruning and the approximations
    /// reshape an already fine-tuned model: the teacher (full fine-tuning) when every layer
    /// trains, else the layer-freezing student of the same fraction. Head similarity is
    /// measured on that model.
    pub fn starts_from(&self) -> Option<Recipe> {
        if !self.needs_stage1() || self.lora_rank > 0 || self.layer_prune > 0 {
            return None;
        }
        Some(Recipe { trained_fraction: self.trained_fraction, ..Recipe::full() })
    }

    /// Public bottom layers of an `n`-layer model.
    pub fn n_public(&self, n: usize) -> usize {
        let n = n - self.layer_prune.min(n);
        (((1.0 - self.trained_fraction) * n as f64).round() as usize).min(n)
    }

    /// A short label (`lf0.5+hm4`, `full`, …).
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if self.trained_fraction < 1.0 {
            parts.push(format!("lf{}", self.trained_fraction));
        }
        if self.lora_rank > 0 {
            parts.push(format!("lora{}", self.lora_rank));
        }
        if self.head_merge > 1 {
            parts.push(format!(
                "hm{}{}",
                self.head_merge,
                if self.grouping == Grouping::Adjacent { "adj" } else { "" }
            ));
        }
        if self.head_prune > 0 {
            parts.push(format!("hp{}", self.head_prune));
        }
        if self.layer_prune > 0 {
            parts.push(format!("lp{}", self.layer_prune));
        }
        if self.relu {
            parts.push("relu".into());
        }
        if self.two_relu {
            parts.push("2relu".into());
        }
        if parts.is_empty() { "full".into() } else { parts.join("+") }
    }

    fn check(&self, base: &Model) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("recipe {}: {m}", self.label())));
        if !(self.trained_fraction > 0.0 && self.trained_fraction <= 1.0) {
            return bad("trained fraction must be in (0, 1]");
        }
        if self.layer_prune >= base.cfg.n_layers {
            return bad("cannot prune every layer");
        }
        let h = base.cfg.n_heads;
        if self.head_merge == 0 || !h.is_multiple_of(self.head_merge) {
            return bad("the head-merge factor must divide the number of heads");
        }
        if self.head_prune >= h {
            return bad("cannot prune every head");
        }
        if self.head_prune > 0 && self.head_merge > 1 {
            return bad("head pruning and head merging are separate ablations");
        }
        // A pretrained or fully fine-tuned model, or a layer-freezing student of this
        // recipe's fraction (which head merging starts from).
        let lf_student = base.n_public == self.n_public(base.cfg.n_layers) && self.layer_prune == 0;
        if (base.n_public != 0 && !lf_student) || base.head_merge != 1 || base.lora.iter().any(Option::is_some) {
            return bad("apply recipes to a pretrained, fully fine-tuned or layer-freezing model");
        }
        if base.layers.len() != base.cfg.n_layers {
            return bad("the model's layers were pruned already");
        }
        Ok(())
    }

    /// The student: a deep copy of `base` reshaped by this recipe, with the right weights
    /// trainable. `calib` (`[b, t]` tokens, PAD = 0 ignored) is needed for similarity grouping.
    pub fn apply(&self, base: &Model, calib: Option<&Tensor>, seed: u64) -> Result<Model> {
        self.check(base)?;
        let mut m = base.frozen_copy()?;
        // 1. Top-layer pruning.
        let n = base.cfg.n_layers - self.layer_prune;
        m.params.retain(|k, _| layer_of(k).is_none_or(|l| l < n));
        m.layers.truncate(n);
        m.lora.truncate(n);
        m.cfg.n_layers = n;
        // 2. Freezing.
        m.n_public = self.n_public(base.cfg.n_layers);
        let private = m.n_public..n;
        // Groups come from the unmodified model so that merging one layer does not change
        // the calibration of the next.
        let mut groups = Vec::new();
        if self.head_merge > 1 {
            for l in private.clone() {
                groups.push(match self.grouping {
                    Grouping::Adjacent => merge::adjacent_groups(base.cfg.n_heads, self.head_merge),
                    Grouping::Similarity => {
                        let calib = calib
                            .ok_or_else(|| Error::Config("similarity grouping needs calibration prompts".into()))?;
                        merge::similarity_groups(&head_distances(base, calib, l)?, self.head_merge)
                    }
                });
            }
        }
        for (i, l) in private.clone().enumerate() {
            if self.head_merge > 1 || self.head_prune > 0 {
                expand_kv(&mut m, l)?;
            }
            if self.head_merge > 1 {
                merge_heads(&mut m, l, &groups[i])?;
            }
            if self.head_prune > 0 {
                prune_heads(&mut m, l, self.head_prune)?;
            }
            m.layers[l].activation = if self.relu { Activation::Relu } else { Activation::Silu };
            m.layers[l].attention = if self.two_relu { Attention::TwoRelu } else { Attention::Softmax };
        }
        m.head_merge = self.head_merge;
        m.head_groups = groups;
        // 6. LoRA and trainability.
        if self.lora_rank > 0 {
            let mut rng = Rng::new(seed ^ 0x4c6f5241);
            let r = self.lora_rank;
            for l in private.clone() {
                m.lora[l] = Some(Lora { rank: r, alpha: self.lora_alpha });
                for proj in PROJECTIONS {
                    let (o, i) = proj_shape(&m.cfg, &m.layers[l], proj);
                    let base_name = names::proj_base(l, proj);
                    let a = Tensor::from_vec(normal(&mut rng, r * i, 1.0 / (i as f32).sqrt()), (r, i), &m.device)?;
                    let b = Tensor::zeros((o, r), DType::F32, &m.device)?;
                    m.set(&format!("{base_name}.lora_a"), a, true)?;
                    m.set(&format!("{base_name}.lora_b"), b, true)?;
                }
            }
        } else {
            // The embedding (and an untied lm head) trains when every layer does, except
            // under layer pruning, whose embedding stays public so that its MPC cost matches
            // layer freezing's.
            let full = self.trained_fraction == 1.0 && self.lora_rank == 0 && self.layer_prune == 0;
            let first = m.n_public;
            m.set_trainable(|name| match layer_of(name) {
                Some(l) => l >= first,
                None if name == names::NORM => true,
                None => full,
            })?;
        }
        Ok(m)
    }
}

/// The layer index in a tensor name (`model.layers.L.…`).
pub fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("model.layers.")?.split('.').next()?.parse().ok()
}

fn head_distances(base: &Model, calib: &Tensor, l: usize) -> Result<Vec<Vec<f64>>> {
    let probs = base.attention_probs(calib, l)?.to_dtype(DType::F32)?; // [b, h, t, t]
    let (b, h, t, _) = probs.dims4()?;
    let tokens = calib.to_vec2::<u32>()?;
    let all = probs.flatten_all()?.to_vec1::<f32>()?;
    let mut per_head = vec![Vec::new(); h];
    for (hh, rows) in per_head.iter_mut().enumerate() {
        for bi in 0..b {
            for i in 0..t {
                if tokens[bi][i] == crate::data::PAD {
                    continue;
                }
                let off = ((bi * h + hh) * t + i) * t;
                rows.push(all[off..off + t].to_vec());
            }
        }
    }
    Ok(merge::head_distances(&per_head))
}

fn rows_of(heads: &[usize], hd: usize) -> Vec<u32> {
    heads.iter().flat_map(|&h| (h * hd..(h + 1) * hd).map(|r| r as u32)).collect()
}

fn select(m: &mut Model, name: &str, idx: &[u32], dim: usize) -> Result<()> {
    let t = m.get(name)?;
    let i = Tensor::new(idx, &m.device)?;
    let t = t.index_select(&i, dim)?.contiguous()?;
    m.set(name, t, false)
}

/// Rows `idx` of projection `proj` of layer `l`: its weight's, and its bias's where it has one.
fn select_rows(m: &mut Model, l: usize, proj: &str, idx: &[u32]) -> Result<()> {
    select(m, &names::proj(l, proj), idx, 0)?;
    let bias = names::proj_bias(l, proj);
    if m.params.contains_key(&bias) {
        select(m, &bias, idx, 0)?;
    }
    Ok(())
}

/// One kv head per query head in layer `l`.
pub fn expand_kv(m: &mut Model, l: usize) -> Result<()> {
    let s = m.layers[l];
    if s.n_kv_heads == s.n_heads {
        return Ok(());
    }
    let group = s.n_heads / s.n_kv_heads;
    let heads: Vec<usize> = (0..s.n_heads).map(|h| h / group).collect();
    for proj in ["k", "v"] {
        select_rows(m, l, proj, &rows_of(&heads, s.head_dim))?;
    }
    m.layers[l].n_kv_heads = s.n_heads;
    Ok(())
}

/// Merge the heads of layer `l` (expanded to MHA) into `groups`.
pub fn merge_heads(m: &mut Model, l: usize, groups: &[Vec<u32>]) -> Result<()> {
    let s = m.layers[l];
    let mm = groups.first().map_or(1, Vec::len);
    let order: Vec<usize> = groups.iter().flatten().map(|&h| h as usize).collect();
    let mut check = order.clone();
    check.sort_unstable();
    if s.n_kv_heads != s.n_heads || check != (0..s.n_heads).collect::<Vec<_>>() || groups.iter().any(|g| g.len() != mm)
    {
        return Err(Error::Config(format!("layer {l}: groups must partition the heads equally")));
    }
    let rows = rows_of(&order, s.head_dim);
    for proj in ["q", "k", "v"] {
        select_rows(m, l, proj, &rows)?;
    }
    select(m, &names::proj(l, "o"), &rows, 1)?;
    let s = &mut m.layers[l];
    s.n_heads /= mm;
    s.n_kv_heads = s.n_heads;
    s.head_dim *= mm;
    Ok(())
}

/// Drop the `p` heads of layer `l` (expanded to MHA) whose o-projection columns have the
/// smallest Frobenius norm.
pub fn prune_heads(m: &mut Model, l: usize, p: usize) -> Result<()> {
    let s = m.layers[l];
    let o = m.get(&names::proj(l, "o"))?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let mut norms: Vec<(f64, usize)> = (0..s.n_heads)
        .map(|h| {
            let n: f64 = o
                .iter()
                .map(|row| row[h * s.head_dim..(h + 1) * s.head_dim].iter().map(|v| f64::from(v * v)).sum::<f64>())
                .sum();
            (n, h)
        })
        .collect();
    norms.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut keep: Vec<usize> = norms.iter().take(s.n_heads - p).map(|x| x.1).collect();
    keep.sort_unstable();
    let rows = rows_of(&keep, s.head_dim);
    for proj in ["q", "k", "v"] {
        select_rows(m, l, proj, &rows)?;
    }
    select(m, &names::proj(l, "o"), &rows, 1)?;
    m.layers[l].n_heads = keep.len();
    m.layers[l].n_kv_heads = keep.len();
    Ok(())
}
