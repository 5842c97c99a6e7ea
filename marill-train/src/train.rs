//! Training: AdamW over the trainable variables, with the losses of MARILL's distillation.
//!
//! * plain fine-tuning: masked next-token NLL;
//! * distillation stage I (when heads are merged or approximations introduced): MSE between
//!   student and teacher attention outputs (weight 0.1) and hidden states (weight 5.0) of the
//!   private layers;
//! * stage II: `0.5·KL(teacher ‖ student)` on the logits plus `0.5·NLL` on the labels.
//!
//! The teacher is a separate frozen copy (the fully fine-tuned model), never a view of the
//! student's variables.

use candle_core::{D, DType, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::data::Batch;
use crate::model::{Head, Model};
use crate::progress::Progress;
use crate::{Error, Result};

/// Optimiser settings.
#[derive(Debug, Clone, Copy)]
pub struct Opts {
    /// Steps.
    pub steps: usize,
    /// Peak learning rate (linear warm-up over the first 5 % of steps, then cosine decay).
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
}

/// Distillation coefficients (the paper's defaults).
#[derive(Debug, Clone, Copy)]
pub struct DistillCoeffs {
    /// Stage I: attention-output MSE.
    pub attn: f64,
    /// Stage I: hidden-state MSE.
    pub hidden: f64,
    /// Stage II: KL(teacher ‖ student).
    pub kl: f64,
    /// Stage II: NLL on the labels.
    pub nll: f64,
}

impl Default for DistillCoeffs {
    fn default() -> Self {
        Self { attn: 0.1, hidden: 5.0, kl: 0.5, nll: 0.5 }
    }
}

/// What a step minimises.
#[derive(Clone, Copy)]
pub enum Objective<'a> {
    /// Next-token NLL on the masked targets.
    Nll,
    /// Distillation stage I against `teacher`: layer-wise MSE on the private layers.
    Stage1(&'a Model, DistillCoeffs),
    /// Distillation stage II against `teacher`: KL on logits plus NLL.
    Stage2(&'a Model, DistillCoeffs),
}

/// The positions of a batch that count: their flat indices into `b·t` (u32), targets (u32)
/// and weights (f32), each `[n]`, and the batch's count (the losses' denominator).
pub struct Counted {
    /// Flat indices into `b·t`.
    pub rows: Tensor,
    target: Tensor,
    weight: Tensor,
    count: usize,
}

impl Counted {
    /// Read `batch`'s mask once (a small host copy).
    pub fn of(batch: &Batch) -> Result<Self> {
        let mask = batch.mask.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let idx: Vec<u32> = (0..mask.len()).filter(|&i| mask[i] > 0.0).map(|i| i as u32).collect();
        let weight: Vec<f32> = idx.iter().map(|&i| mask[i as usize]).collect();
        let dev = batch.mask.device();
        let rows = Tensor::new(idx.as_slice(), dev)?;
        let target = batch.target.flatten_all()?.index_select(&rows, 0)?;
        Ok(Self { rows, target, weight: Tensor::new(weight.as_slice(), dev)?, count: batch.count })
    }

    /// `logits` at the counted positions: `[n, V]` as they are (from [`Head::Rows`]), or
    /// gathered from `[b, t, V]`.
    fn at(&self, logits: &Tensor) -> Result<Tensor> {
        Ok(match logits.rank() {
            2 => logits.clone(),
            _ => logits.flatten_to(1)?.index_select(&self.rows, 0)?,
        })
    }

    /// Weighted mean NLL of `logits` (either shape of [`Counted::at`]).
    fn nll(&self, logits: &Tensor) -> Result<Tensor> {
        let logp = candle_nn::ops::log_softmax(&self.at(logits)?, D::Minus1)?;
        let picked = logp.gather(&self.target.unsqueeze(1)?, 1)?.squeeze(1)?;
        let s = (picked * &self.weight)?.sum_all()?;
        Ok((s.neg()? / self.count.max(1) as f64)?)
    }

    /// Weighted mean `KL(p_teacher ‖ p_student)` per position.
    fn kl(&self, teacher: &Tensor, student: &Tensor) -> Result<Tensor> {
        let lt = candle_nn::ops::log_softmax(&self.at(teacher)?, D::Minus1)?;
        let ls = candle_nn::ops::log_softmax(&self.at(student)?, D::Minus1)?;
        let per = (lt.exp()? * (lt - ls)?)?.sum(D::Minus1)?;
        Ok(((per * &self.weight)?.sum_all()? / self.count.max(1) as f64)?)
    }
}

/// Masked mean NLL of `logits` (`[b, t, V]`, or `[n, V]` at the counted positions) against
/// `batch`.
pub fn nll(logits: &Tensor, batch: &Batch) -> Result<Tensor> {
    Counted::of(batch)?.nll(logits)
}

/// Masked mean `KL(p_teacher ‖ p_student)` per position (logits as for [`nll`]).
pub fn kl(teacher: &Tensor, student: &Tensor, batch: &Batch) -> Result<Tensor> {
    Counted::of(batch)?.kl(teacher, student)
}

/// Mean squared error over the positions that count.
fn masked_mse(a: &Tensor, b: &Tensor, batch: &Batch) -> Result<Tensor> {
    let d = a.dim(D::Minus1)? as f64;
    let e = (a - b)?.sqr()?.sum(D::Minus1)?;
    let w = (batch.mask.gt(0.0)?.to_dtype(DType::F32))?;
    Ok(((e * w)?.sum_all()? / (batch.count.max(1) as f64 * d))?)
}

/// The loss of `student` on `batch` under `obj`.
pub fn loss(student: &Model, batch: &Batch, obj: Objective<'_>) -> Result<Tensor> {
    match obj {
        Objective::Nll => {
            let c = Counted::of(batch)?;
            c.nll(&student.forward_to(&batch.input, false, Head::Rows(&c.rows))?.logits)
        }
        Objective::Stage1(teacher, c) => {
            let s = student.forward_to(&batch.input, true, Head::None)?;
            let t = teacher.forward_to(&batch.input, true, Head::None)?;
            if s.hidden.len() != t.hidden.len() {
                return Err(Error::Config("stage I needs student and teacher with the same layers".into()));
            }
            let mut total = Tensor::zeros((), DType::F32, &student.device)?;
            for l in student.n_public..s.hidden.len() {
                let a = masked_mse(&s.attn[l], &t.attn[l].detach(), batch)?;
                let h = masked_mse(&s.hidden[l], &t.hidden[l].detach(), batch)?;
                total = ((total + (a * c.attn)?)? + (h * c.hidden)?)?;
            }
            Ok(total)
        }
        Objective::Stage2(teacher, c) => {
            let n = Counted::of(batch)?;
            let s = student.forward_to(&batch.input, false, Head::Rows(&n.rows))?.logits;
            let t = teacher.forward_to(&batch.input, false, Head::Rows(&n.rows))?.logits.detach();
            Ok(((n.kl(&t, &s)? * c.kl)? + (n.nll(&s)? * c.nll)?)?)
        }
    }
}

/// One optimiser step on the next batch: its loss, an error when it is not finite.
fn one_step(
    model: &Model,
    opt: &mut AdamW,
    obj: Objective<'_>,
    next: &mut impl FnMut(usize) -> Result<Batch>,
    label: &str,
    step: usize,
    progress: &mut Progress,
) -> Result<f32> {
    let batch = next(step)?;
    let l = loss(model, &batch, obj)?;
    opt.backward_step(&l)?;
    let v = l.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    if !v.is_finite() {
        return Err(Error::Model(format!("{label}: loss diverged at step {step}")));
    }
    progress.step(v, batch.input.elem_count());
    Ok(v)
}

/// Train `model`'s trainable variables for `opts.steps` steps on batches from `next`,
/// reporting progress under `label`. Returns the loss of each step.
pub fn train(
    model: &Model,
    opts: Opts,
    obj: Objective<'_>,
    label: &str,
    mut next: impl FnMut(usize) -> Result<Batch>,
) -> Result<Vec<f32>> {
    let vars: Vec<_> = model.vars().into_iter().map(|(_, v)| v).collect();
    if vars.is_empty() {
        return Err(Error::Config(format!("{label}: nothing to train")));
    }
    let mut opt =
        AdamW::new(vars, ParamsAdamW { lr: opts.lr, weight_decay: opts.weight_decay, ..ParamsAdamW::default() })?;
    let mut progress = Progress::new(label, opts.steps);
    let mut losses = Vec::with_capacity(opts.steps);
    let warm = (opts.steps / 20).max(1);
    for step in 0..opts.steps {
        let lr = if step < warm {
            opts.lr * (step + 1) as f64 / warm as f64
        } else {
            let p = (step - warm) as f64 / (opts.steps - warm).max(1) as f64;
            opts.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
        };
        opt.set_learning_rate(lr);
        let v = one_step(model, &mut opt, obj, &mut next, label, step, &mut progress)?;
        losses.push(v);
    }
    progress.finish();
    Ok(losses)
}

/// When a converging run stops: the held-out metric is measured every `every` steps, and
/// training stops after `patience` measurements without a new best (or at `max_steps`);
/// the best weights are restored.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Stop {
    /// Steps at most.
    pub max_steps: usize,
    /// Steps between measurements.
    pub every: usize,
    /// Measurements without improvement before stopping.
    pub patience: usize,
}

/// What a converging run did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Trained {
    /// Steps taken.
    pub steps: usize,
    /// The step whose weights were kept (the best held-out metric).
    pub best_step: usize,
    /// The held-out metric at that step.
    pub best: f32,
}

/// Train like [`train`] (linear warm-up over `stop.every` steps, then a constant `lr`)
/// until `metric` on `valid` stops improving; restore the weights of the best measurement.
/// `metric` is evaluated without gradients on the held-out batch. A run that never improves
/// on its starting point keeps its starting weights (`best_step` 0).
#[allow(clippy::too_many_arguments)]
pub fn train_until(
    model: &Model,
    lr: f64,
    stop: Stop,
    obj: Objective<'_>,
    metric: Objective<'_>,
    valid: &Batch,
    label: &str,
    mut next: impl FnMut(usize) -> Result<Batch>,
) -> Result<Trained> {
    let vars: Vec<_> = model.vars().into_iter().map(|(_, v)| v).collect();
    if vars.is_empty() {
        return Err(Error::Config(format!("{label}: nothing to train")));
    }
    let every = stop.every.max(1);
    let measure = || -> Result<f32> { Ok(loss(model, valid, metric)?.to_dtype(DType::F32)?.to_scalar::<f32>()?) };
    let snapshot = || -> Result<Vec<Tensor>> { vars.iter().map(|v| Ok(v.as_tensor().copy()?)).collect() };
    let mut best = Trained { steps: 0, best_step: 0, best: measure()? };
    let mut kept = snapshot()?;
    let mut opt = AdamW::new(vars.clone(), ParamsAdamW { lr, weight_decay: 0.0, ..ParamsAdamW::default() })?;
    let mut progress = Progress::new(label, stop.max_steps);
    let mut since = 0;
    for step in 0..stop.max_steps {
        opt.set_learning_rate(lr * ((step + 1) as f64 / every as f64).min(1.0));
        one_step(model, &mut opt, obj, &mut next, label, step, &mut progress)?;
        best.steps = step + 1;
        if (step + 1) % every == 0 {
            let m = measure()?;
            if m < best.best * (1.0 - 1e-3) {
                best.best = m;
                best.best_step = step + 1;
                kept = snapshot()?;
                since = 0;
            } else {
                since += 1;
                if since >= stop.patience {
                    break;
                }
            }
        }
    }
    progress.finish();
    for (v, t) in vars.iter().zip(&kept) {
        v.set(t)?;
    }
    Ok(best)
}

/// Exact match and answer NLL of `examples` in one teacher-forced forward pass: an answer
/// counts when the argmax at every answer position is its next token (which is exactly
/// when greedy decoding would produce it); the NLL is per answer token, in nats.
pub fn score(model: &Model, examples: &[crate::data::Example]) -> Result<(f64, f64)> {
    if examples.is_empty() {
        return Ok((0.0, 0.0));
    }
    let mut correct = 0;
    let mut nll_sum = 0.0;
    let mut count = 0;
    for chunk in examples.chunks(256) {
        let b = crate::data::batch(chunk, true, &model.device)?;
        let logits = model.forward(&b.input, false)?.logits;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let picked = logp.gather(&b.target.unsqueeze(2)?, 2)?.squeeze(2)?;
        let best = logits.argmax(D::Minus1)?.to_dtype(DType::U32)?;
        let hit = best.eq(&b.target)?.to_dtype(DType::F32)?;
        let picked = picked.to_vec2::<f32>()?;
        let hit = hit.to_vec2::<f32>()?;
        let mask = b.mask.to_vec2::<f32>()?;
        for i in 0..chunk.len() {
            let mut ok = true;
            for j in 0..mask[i].len() {
                if mask[i][j] > 0.0 {
                    ok &= hit[i][j] > 0.0;
                    nll_sum -= f64::from(picked[i][j]);
                    count += 1;
                }
            }
            correct += usize::from(ok);
        }
    }
    Ok((correct as f64 / examples.len() as f64, nll_sum / count.max(1) as f64))
}

/// Exact-match accuracy of greedy answers on `(prompt, answer)` pairs of the embedded task.
/// Prompts of equal length are decoded together.
pub fn accuracy(model: &Model, examples: &[crate::data::Example]) -> Result<f64> {
    use std::collections::BTreeMap;
    let dot = crate::data::encode(".")?[0];
    let mut by_len: BTreeMap<usize, Vec<[Vec<u32>; 2]>> = BTreeMap::new();
    for (p, a) in examples {
        let mut seq = vec![crate::data::BOS];
        seq.extend(crate::data::encode(p)?);
        by_len.entry(seq.len()).or_default().push([seq, crate::data::encode(a)?]);
    }
    let mut correct = 0;
    for (_, group) in by_len {
        let max_new = group.iter().map(|g| g[1].len()).max().unwrap_or(0) + 1;
        let mut seqs: Vec<Vec<u32>> = group.iter().map(|g| g[0].clone()).collect();
        let mut done = vec![false; seqs.len()];
        let mut answers: Vec<Vec<u32>> = vec![Vec::new(); seqs.len()];
        for _ in 0..max_new {
            let t = seqs[0].len();
            let flat: Vec<u32> = seqs.iter().flatten().copied().collect();
            let x = Tensor::from_vec(flat, (seqs.len(), t), &model.device)?;
            let logits = model.forward(&x, false)?.logits.narrow(1, t - 1, 1)?.squeeze(1)?;
            let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            for (i, row) in rows.iter().enumerate() {
                let next = crate::model::argmax(row);
                seqs[i].push(next);
                if !done[i] {
                    answers[i].push(next);
                    done[i] = next == dot;
                }
            }
            if done.iter().all(|d| *d) {
                break;
            }
        }
        correct += group.iter().zip(&answers).filter(|(g, out)| out == &&g[1]).count();
    }
    Ok(correct as f64 / examples.len().max(1) as f64)
}
