//! The embedded default: a tiny LLaMA-style base pretrained here on the generated corpus,
//! fine-tuned on the private task by each MARILL recipe, with the full fine-tune as the
//! baseline and the distillation teacher.

use std::path::Path;

use candle_core::Device;

use crate::data::{self, VOCAB};
use crate::load;
use crate::model::{Config, Model};
use crate::recipe::Recipe;
use crate::train::{self, DistillCoeffs, Objective, Opts};
use crate::{Result, Rng};

/// 4 layers, d = 128, 8 heads of 16 (multi-head), ffn 384, tied embeddings, vocab 48.
pub fn config() -> Config {
    Config {
        vocab: VOCAB,
        d: 128,
        n_layers: 4,
        n_heads: 8,
        n_kv_heads: 8,
        head_dim: 16,
        ffn: 384,
        rope_base: 10000.0,
        rms_eps: 1e-5,
        tie_embeddings: true,
    }
}

/// How long each stage trains.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Pretraining steps.
    pub pretrain: usize,
    /// Fine-tuning steps (each recipe; distillation stage II too).
    pub finetune: usize,
    /// Distillation stage I steps.
    pub stage1: usize,
    /// Sequences per batch.
    pub batch: usize,
}

impl Budget {
    /// The demo's budget (minutes on 2 cores for everything).
    pub fn demo() -> Self {
        Self { pretrain: 600, finetune: 300, stage1: 100, batch: 32 }
    }
    /// A budget for tests.
    pub fn quick() -> Self {
        Self { pretrain: 60, finetune: 30, stage1: 10, batch: 16 }
    }
}

/// Pretrain the base from `seed`.
pub fn pretrain(seed: u64, budget: Budget, dev: &Device) -> Result<Model> {
    let model = Model::init(&config(), seed, dev)?;
    let mut rng = Rng::new(seed.wrapping_add(1));
    let opts = Opts { steps: budget.pretrain, lr: 3e-3, weight_decay: 0.01 };
    train::train(&model, opts, Objective::Nll, "pretrain", |_| data::pretrain_batch(&mut rng, budget.batch, dev))?;
    Ok(model)
}

/// The base from `dir` when it holds one, else pretrained and saved there.
pub fn cached_base(dir: &Path, seed: u64, budget: Budget, dev: &Device) -> Result<Model> {
    if dir.join("config.json").exists() {
        let m = load::load_hf(dir, dev)?.model;
        if m.cfg == config() {
            return Ok(m);
        }
    }
    let m = pretrain(seed, budget, dev)?;
    load::save_hf(&m, dir, Some(&data::tokenizer_json()))?;
    Ok(m)
}

/// The private task's training examples and the held-out evaluation set.
pub fn task(seed: u64) -> (Vec<data::Example>, Vec<data::Example>) {
    let train_set = data::task_set(seed, 4000, &[]);
    let eval_set = data::task_set(seed ^ 0xe7a1, 256, &train_set);
    (train_set, eval_set)
}

/// Fine-tune `base` with `recipe` on the task. Full fine-tuning trains on the labels alone;
/// every other recipe distils from `teacher` when given (stage I first when heads are merged
/// or approximations introduced).
pub fn finetune(
    base: &Model,
    recipe: &Recipe,
    teacher: Option<&Model>,
    train_set: &[data::Example],
    seed: u64,
    budget: Budget,
) -> Result<Model> {
    let dev = base.device.clone();
    let calib = data::batch(&train_set[..train_set.len().min(64)], false, &dev)?.input;
    let student = recipe.apply(base, &calib, seed)?;
    let label = recipe.label();
    let mut rng = Rng::new(seed ^ 0xf17e);
    let mut next = |_| {
        let ex: Vec<data::Example> = (0..budget.batch).map(|_| train_set[rng.below(train_set.len())].clone()).collect();
        data::batch(&ex, true, &dev)
    };
    let lr = if recipe.lora_rank > 0 { 3e-3 } else { 1e-3 };
    let opts = Opts { steps: budget.finetune, lr, weight_decay: 0.0 };
    let c = DistillCoeffs::default();
    match teacher {
        Some(t) if !recipe.is_full() => {
            if recipe.needs_stage1() && budget.stage1 > 0 {
                let o1 = Opts { steps: budget.stage1, ..opts };
                train::train(&student, o1, Objective::Stage1(t, c), &format!("{label} (I)"), &mut next)?;
            }
            train::train(&student, opts, Objective::Stage2(t, c), &format!("{label} (II)"), &mut next)?;
        }
        _ => {
            train::train(&student, opts, Objective::Nll, &label, &mut next)?;
        }
    }
    Ok(student)
}
