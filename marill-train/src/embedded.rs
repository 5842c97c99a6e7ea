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
        Self { pretrain: 1500, finetune: 150, stage1: 40, batch: 16 }
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
    let student = recipe.apply(base, Some(&calib), seed)?;
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

/// The recipes the demo compares: the paper's Fig. 4 variants and the ablations.
pub fn demo_recipes() -> Vec<Recipe> {
    let r = Recipe::new;
    let mut adjacent = r(1.0, 0, 4);
    adjacent.grouping = crate::recipe::Grouping::Adjacent;
    // Head pruning to the merged model's attention width (2 of 8 heads kept), and pruning
    // the top half of the layers: the ablations of §5.
    let mut head_prune = r(1.0, 0, 1);
    head_prune.head_prune = 6;
    let mut layer_prune = r(1.0, 0, 1);
    layer_prune.layer_prune = 2;
    vec![r(0.5, 0, 1), r(1.0, 8, 1), r(1.0, 0, 4), r(0.5, 0, 4), r(0.5, 8, 1), adjacent, head_prune, layer_prune]
}

/// One row of the quality table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Quality {
    /// Recipe label.
    pub variant: String,
    /// Exact-match accuracy on the held-out task prompts.
    pub accuracy: f64,
    /// Accuracy relative to full fine-tuning.
    pub relative: f64,
    /// Weights trained.
    pub trained: usize,
    /// Weights in the private section (what MPC evaluates).
    pub private: usize,
    /// Seconds of training (both distillation stages).
    pub train_s: f64,
    /// The exported server file.
    pub file: String,
}

fn private_weights(m: &Model) -> usize {
    m.params
        .iter()
        .filter(|(n, p)| matches!(p, crate::model::Param::Train(_)) || n.contains(".lora_"))
        .map(|(_, p)| p.tensor().elem_count())
        .sum()
}

/// The demo's training half: the base (cached in `base_dir`), full fine-tuning (the
/// baseline and teacher), every recipe of [`demo_recipes`] distilled from it, each exported
/// to `out_dir/<label>.marill`; prints and returns the quality table and writes it to
/// `out_dir/quality.json`.
pub fn pipeline(out_dir: &Path, base_dir: &Path, seed: u64, budget: Budget, dev: &Device) -> Result<Vec<Quality>> {
    std::fs::create_dir_all(out_dir)?;
    let base = cached_base(base_dir, seed, budget, dev)?;
    let (train_set, eval_set) = task(seed);
    let tok = data::tokenizer_json();
    let mut rows = Vec::new();
    let mut teacher = None;
    let mut full_acc = 1.0;
    for r in std::iter::once(Recipe::full()).chain(demo_recipes()) {
        let t = std::time::Instant::now();
        let m = finetune(&base, &r, teacher.as_ref(), &train_set, seed, budget)?;
        let train_s = t.elapsed().as_secs_f64();
        let accuracy = train::accuracy(&m, &eval_set)?;
        if r.is_full() {
            full_acc = accuracy.max(1e-9);
        }
        let file = out_dir.join(format!("{}.marill", r.label()));
        let info = crate::export::ExportInfo {
            recipe: &r,
            distilled: teacher.is_some(),
            tokenizer_json: Some(&tok),
            frac_bits: 16,
            notes: format!("embedded task accuracy {accuracy:.4}"),
        };
        match crate::export::export(&m, &info) {
            Ok(bytes) => std::fs::write(&file, bytes)?,
            Err(e) => eprintln!("{}: not exported ({e})", r.label()),
        }
        let (trained, _) = m.count();
        rows.push(Quality {
            variant: r.label(),
            accuracy,
            relative: accuracy / full_acc,
            trained,
            private: private_weights(&m),
            train_s,
            file: file.display().to_string(),
        });
        if r.is_full() {
            teacher = Some(m.frozen_copy()?);
        }
    }
    println!("\nquality on the private task ({} held-out prompts, exact match):", eval_set.len());
    println!(
        "{:<14} {:>9} {:>9} {:>10} {:>10} {:>8}",
        "variant", "accuracy", "vs full", "trained", "private", "train s"
    );
    for q in &rows {
        println!(
            "{:<14} {:>9.3} {:>9.3} {:>10} {:>10} {:>8.1}",
            q.variant, q.accuracy, q.relative, q.trained, q.private, q.train_s
        );
    }
    let json = serde_json::to_string_pretty(&rows).map_err(|e| crate::Error::Config(e.to_string()))?;
    std::fs::write(out_dir.join("quality.json"), json)?;
    Ok(rows)
}
