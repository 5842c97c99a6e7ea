//! The embedded default: a tiny LLaMA-style base pretrained here on the facts of an invented
//! world (see [`crate::data`]), fine-tuned on the private task by each MARILL recipe as the
//! paper's Appendix G prescribes, with the full fine-tune as the baseline and the
//! distillation teacher.
//!
//! Recipes (App. G):
//! * full fine-tuning: the base, NLL on the labels; it is the teacher;
//! * layer freezing, LoRA, LF + LoRA, and layer pruning (the LF ablation): the base,
//!   distillation stage II only;
//! * head merging and head pruning: the *teacher* reshaped (head similarity measured on the
//!   teacher), then stages I and II; LF + HM: the same from the LF student of that fraction.
//!
//! Every stage trains until the answer NLL on validation entities (held out of training,
//! disjoint from the test entities) stops improving, and keeps its best weights
//! ([`crate::train::train_until`]); the table states each variant's steps.

use std::path::Path;

use candle_core::Device;

use crate::data::{self, Example, Split, VOCAB, World};
use crate::load;
use crate::model::{Config, Model};
use crate::recipe::{Grouping, Recipe};
use crate::train::{self, DistillCoeffs, Objective, Stop, Trained};
use crate::{Error, Result, Rng};

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
        qkv_bias: false,
        sliding_window: None,
    }
}

/// Version of the generated corpus; part of the base cache's key.
pub const CORPUS_VERSION: u32 = 5;

/// Validation entities (of the fine-tuning half) used for early stopping.
pub const VALID_ENTITIES: usize = 16;

/// How long each stage trains.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Budget {
    /// Pretraining steps.
    pub pretrain: usize,
    /// Sequences per batch.
    pub batch: usize,
    /// When each fine-tuning stage stops.
    pub stop: Stop,
    /// The base's fact recall below which fine-tuning refuses to start.
    pub min_recall: f64,
    /// Distillation stage I also matches the teacher on lines of the public pretraining
    /// corpus (half of each batch), not only on the private task's prompts (off by default:
    /// App. G distils on the fine-tuning data; measured in the README).
    pub public_transfer: bool,
}

impl Budget {
    /// The demo's budget.
    pub fn demo() -> Self {
        Self {
            pretrain: 5000,
            batch: 16,
            stop: Stop { max_steps: 1500, every: 25, patience: 4 },
            min_recall: 0.9,
            public_transfer: false,
        }
    }
    /// A budget for tests (no recall gate).
    pub fn quick() -> Self {
        Self {
            pretrain: 60,
            batch: 16,
            stop: Stop { max_steps: 20, every: 10, patience: 1 },
            min_recall: 0.0,
            public_transfer: false,
        }
    }
}

/// Pretrain the base of the world of `seed`.
pub fn pretrain(seed: u64, budget: Budget, dev: &Device) -> Result<Model> {
    let model = Model::init(&config(), seed, dev)?;
    let world = World::new(seed);
    let mut rng = Rng::new(seed.wrapping_add(1));
    let opts = train::Opts { steps: budget.pretrain, lr: 3e-3, weight_decay: 0.01 };
    train::train(&model, opts, Objective::Nll, "pretrain", |_| {
        data::pretrain_batch(&mut rng, &world, budget.batch, dev)
    })?;
    Ok(model)
}

/// The share of the world's facts the model recalls exactly.
pub fn recall(model: &Model, world: &World) -> Result<f64> {
    Ok(train::score(model, &world.all_facts())?.0)
}

/// The key of a base pretrained from `seed` with `budget` (`base.key` in its directory).
pub fn cache_key(seed: u64, budget: Budget) -> String {
    format!(
        "{{\"corpus\":{CORPUS_VERSION},\"seed\":{seed},\"pretrain\":{},\"batch\":{},\"config\":{}}}",
        budget.pretrain,
        budget.batch,
        serde_json::to_string(&config()).unwrap_or_default()
    )
}

/// The base from `dir` when it holds one pretrained with exactly these settings (corpus
/// version, seed, steps, batch, architecture: the key in `dir/base.key`), else pretrained
/// and saved there.
pub fn cached_base(dir: &Path, seed: u64, budget: Budget, dev: &Device) -> Result<Model> {
    let key = cache_key(seed, budget);
    if std::fs::read_to_string(dir.join("base.key")).is_ok_and(|k| k == key) && dir.join("config.json").exists() {
        let m = load::load_hf(dir, dev)?.model;
        if m.cfg == config() {
            eprintln!("base: cached in {}", dir.display());
            return Ok(m);
        }
    }
    let m = pretrain(seed, budget, dev)?;
    load::save_hf(&m, dir, Some(&data::tokenizer_json()))?;
    std::fs::write(dir.join("base.key"), key)?;
    Ok(m)
}

/// The private task of a fine-tuning run: the world of the base and its entity split.
#[derive(Debug, Clone)]
pub struct Task {
    /// The world the base was pretrained on.
    pub world: World,
    /// Which entities are trained on, validate and test.
    pub split: Split,
    /// Task examples trained on.
    pub train: Vec<Example>,
    /// Task examples for early stopping.
    pub valid: Vec<Example>,
    /// Task examples of the test entities.
    pub test: Vec<Example>,
}

/// The task for the base of `base_seed`, split by `seed`.
pub fn task(base_seed: u64, seed: u64) -> Task {
    let world = World::new(base_seed);
    let split = Split::new(seed, world.names.len(), VALID_ENTITIES);
    let train = Split::examples(&world, &split.train);
    let valid = Split::examples(&world, &split.valid);
    let test = Split::examples(&world, &split.test);
    Task { world, split, train, valid, test }
}

/// A fine-tuned model and how it was trained.
pub struct Tuned {
    /// The model.
    pub model: Model,
    /// Each stage: its name and what it did.
    pub stages: Vec<(&'static str, Trained)>,
    /// `KL(teacher ‖ student)` per answer token right after reshaping (merging, pruning),
    /// before any training.
    pub kl_after_reshape: Option<f64>,
    /// Seconds of training.
    pub train_s: f64,
}

impl Tuned {
    /// Steps over all stages.
    pub fn steps(&self) -> usize {
        self.stages.iter().map(|s| s.1.steps).sum()
    }
}

/// Learning rate of a recipe: LoRA factors take a larger one.
pub fn learning_rate(recipe: &Recipe) -> f64 {
    if recipe.lora_rank > 0 { 3e-3 } else { 1e-3 }
}

/// Fine-tune `start` with `recipe` on the task: NLL for full fine-tuning (or without a
/// teacher), else distillation from `teacher`: stage I first when the recipe reshapes
/// heads or introduces approximations, then stage II. `start` is the base, or for the
/// head-reshaping recipes the model [`Recipe::starts_from`] names.
pub fn finetune(
    start: &Model,
    recipe: &Recipe,
    teacher: Option<&Model>,
    task: &Task,
    seed: u64,
    budget: Budget,
) -> Result<Tuned> {
    let dev = start.device.clone();
    let t0 = std::time::Instant::now();
    let calib = data::batch(&task.train[..task.train.len().min(64)], false, &dev)?.input;
    let student = recipe.apply(start, Some(&calib), seed)?;
    let label = recipe.label();
    let mut rng = Rng::new(seed ^ 0xf17e);
    let train_set = &task.train;
    let mut next = |_| {
        let ex: Vec<Example> = (0..budget.batch).map(|_| train_set[rng.below(train_set.len())].clone()).collect();
        data::batch(&ex, true, &dev)
    };
    let valid = data::batch(&task.valid, true, &dev)?;
    let lr = learning_rate(recipe);
    let c = DistillCoeffs::default();
    let mut stages = Vec::new();
    let mut kl_after_reshape = None;
    match teacher {
        Some(t) if !recipe.is_full() => {
            if recipe.needs_stage1() {
                let all = data::batch(train_set, true, &dev)?;
                let kl = train::kl(
                    &t.forward(&all.input, false)?.logits,
                    &student.forward(&all.input, false)?.logits,
                    &all,
                )?;
                kl_after_reshape = Some(f64::from(kl.to_scalar::<f32>()?));
                let s1 = Objective::Stage1(t, c);
                let stage1_label = format!("{label} (I)");
                let r = if budget.public_transfer {
                    // Half of each stage-I batch from the public pretraining corpus: the
                    // teacher's states are matched on inputs the private data alone is too
                    // small to cover (stage I needs no labels).
                    let mut prng = Rng::new(seed ^ 0x7075_626c);
                    let mut trng = Rng::new(seed ^ 0x7461_736b);
                    let mixed = |_| {
                        let half = budget.batch / 2;
                        let mut ex: Vec<Example> =
                            (0..half).map(|_| train_set[trng.below(train_set.len())].clone()).collect();
                        ex.extend(
                            (half..budget.batch).map(|_| (String::new(), data::pretrain_line(&mut prng, &task.world))),
                        );
                        data::batch(&ex, true, &dev)
                    };
                    train::train_until(&student, lr, budget.stop, s1, s1, &valid, &stage1_label, mixed)?
                } else {
                    train::train_until(&student, lr, budget.stop, s1, s1, &valid, &stage1_label, &mut next)?
                };
                stages.push(("I", r));
            }
            let r = train::train_until(
                &student,
                lr,
                budget.stop,
                Objective::Stage2(t, c),
                Objective::Nll,
                &valid,
                &format!("{label} (II)"),
                &mut next,
            )?;
            stages.push(("II", r));
        }
        _ => {
            let r = train::train_until(
                &student,
                lr,
                budget.stop,
                Objective::Nll,
                Objective::Nll,
                &valid,
                &label,
                &mut next,
            )?;
            stages.push(("NLL", r));
        }
    }
    Ok(Tuned { model: student, stages, kl_after_reshape, train_s: t0.elapsed().as_secs_f64() })
}

/// A model of the base's architecture trained from random weights on the private data
/// alone (it cannot know the test entities' facts: the check that the task needs the base).
pub fn scratch(task: &Task, seed: u64, budget: Budget, dev: &Device) -> Result<Tuned> {
    let t0 = std::time::Instant::now();
    let m = Model::init(&config(), seed ^ 0x5c7a, dev)?;
    let mut rng = Rng::new(seed ^ 0x5c7b);
    let train_set = &task.train;
    let next = |_| {
        let ex: Vec<Example> = (0..budget.batch).map(|_| train_set[rng.below(train_set.len())].clone()).collect();
        data::batch(&ex, true, dev)
    };
    let valid = data::batch(&task.valid, true, dev)?;
    let r = train::train_until(&m, 1e-3, budget.stop, Objective::Nll, Objective::Nll, &valid, "scratch", next)?;
    Ok(Tuned { model: m, stages: vec![("NLL", r)], kl_after_reshape: None, train_s: t0.elapsed().as_secs_f64() })
}

/// The recipes the demo compares, in table order: the paper's Fig. 4 variants, the layer
/// freezing sweep (Table 5's analogue) and the ablations at matched MPC cost (adjacent
/// merging and head pruning to 2 heads, like HM 4; layer pruning to the 2 layers LF 0.5
/// keeps private).
pub fn demo_recipes() -> Vec<Recipe> {
    let r = Recipe::new;
    let mut adjacent = r(1.0, 0, 4);
    adjacent.grouping = Grouping::Adjacent;
    let mut head_prune = r(1.0, 0, 1);
    head_prune.head_prune = 6;
    let mut layer_prune = r(1.0, 0, 1);
    layer_prune.layer_prune = 2;
    // LF 0.5 comes before LF 0.5 + HM 4, which starts from it.
    vec![
        r(1.0, 8, 1),
        r(0.75, 0, 1),
        r(0.5, 0, 1),
        r(0.25, 0, 1),
        r(0.5, 8, 1),
        r(1.0, 0, 4),
        r(0.5, 0, 4),
        adjacent,
        head_prune,
        layer_prune,
    ]
}

/// One row of the quality table: means and standard deviations over the seeds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Quality {
    /// Recipe label (`zero-shot`: the base; `scratch`: trained on the private data alone).
    pub variant: String,
    /// Exact-match accuracy on the test entities (mean over seeds).
    pub accuracy: f64,
    /// Its standard deviation over seeds (0 with one seed).
    pub accuracy_sd: f64,
    /// Accuracy relative to full fine-tuning (ratio of the means).
    pub relative: f64,
    /// Share of full fine-tuning's gain kept, `(acc − zero-shot) / (full − zero-shot)`,
    /// mean over seeds.
    pub gain_kept: f64,
    /// Its standard deviation.
    pub gain_kept_sd: f64,
    /// Answer NLL on the test entities, nats per token (mean).
    pub nll: f64,
    /// Its standard deviation.
    pub nll_sd: f64,
    /// `KL(teacher ‖ student)` per answer token right after reshaping heads, before
    /// training (mean); absent for recipes that reshape nothing.
    pub kl_after_reshape: Option<f64>,
    /// What the student starts from: `base`, `random`, `full`, `lf0.5`, …
    pub starts_from: String,
    /// Steps per stage (mean over seeds), e.g. `I 150 + II 300`.
    pub steps: String,
    /// Steps over all stages (mean).
    pub total_steps: f64,
    /// Seeds.
    pub seeds: usize,
    /// Weights trained.
    pub trained: usize,
    /// Weights in the private section (what MPC evaluates).
    pub private: usize,
    /// Seconds of training (all stages, mean).
    pub train_s: f64,
    /// The exported server file (first seed), empty when not exported.
    pub file: String,
}

fn private_weights(m: &Model) -> usize {
    m.params
        .iter()
        .filter(|(n, p)| matches!(p, crate::model::Param::Train(_)) || n.contains(".lora_"))
        .map(|(_, p)| p.tensor().elem_count())
        .sum()
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (m, var.sqrt())
}

/// One variant's results for one seed.
#[derive(Clone)]
struct Run {
    acc: f64,
    nll: f64,
    kl: Option<f64>,
    stages: Vec<(&'static str, Trained)>,
    train_s: f64,
    trained: usize,
    private: usize,
    starts_from: String,
    file: String,
}

/// Where the pipeline writes and what it runs.
pub struct PipelineOpts<'a> {
    /// Output directory (split files of the first seed, `quality.json`).
    pub out_dir: &'a Path,
    /// Base cache directory.
    pub base_dir: &'a Path,
    /// The base's (and world's) seed.
    pub base_seed: u64,
    /// Fine-tuning seeds (entity split, data order, initialisation).
    pub seeds: &'a [u64],
    /// Budgets.
    pub budget: Budget,
    /// Recipes after full fine-tuning (default: [`demo_recipes`]).
    pub recipes: Vec<Recipe>,
}

/// The demo's training half: the base (cached, its fact recall gated), then per seed the
/// zero-shot base, a model trained from scratch on the private data, full fine-tuning (the
/// baseline and teacher) and every recipe, each trained to convergence; the first seed's
/// models exported to `out_dir/<label>.marill`. Prints the quality table and writes it to
/// `out_dir/quality.json`.
pub fn pipeline(o: &PipelineOpts<'_>, dev: &Device) -> Result<Vec<Quality>> {
    std::fs::create_dir_all(o.out_dir)?;
    let base = cached_base(o.base_dir, o.base_seed, o.budget, dev)?;
    let world = World::new(o.base_seed);
    let base_recall = recall(&base, &world)?;
    eprintln!("base: recalls {:.3} of the {} facts it was pretrained on", base_recall, 2 * world.names.len());
    if base_recall < o.budget.min_recall {
        return Err(Error::Config(format!(
            "the base recalls only {base_recall:.3} of its facts (at least {} needed for the task to make sense): \
             pretrain longer (--pretrain-steps)",
            o.budget.min_recall
        )));
    }
    if o.seeds.is_empty() {
        return Err(Error::Config("no seeds".into()));
    }
    let tok = data::tokenizer_json();
    let mut runs: Vec<(String, Vec<Run>)> = Vec::new();
    let push = |runs: &mut Vec<(String, Vec<Run>)>, name: String, r: Run| match runs.iter_mut().find(|x| x.0 == name) {
        Some(x) => x.1.push(r),
        None => runs.push((name, vec![r])),
    };
    for (si, &seed) in o.seeds.iter().enumerate() {
        let task = task(o.base_seed, seed);
        eprintln!(
            "seed {seed}: {} training entities, {} validation, {} test ({} test prompts)",
            task.split.train.len(),
            task.split.valid.len(),
            task.split.test.len(),
            task.test.len()
        );
        let eval = |name: &str, t: &Tuned, starts_from: &str, file: String| -> Result<Run> {
            let (acc, nll) = train::score(&t.model, &task.test)?;
            eprintln!("{name}: accuracy {acc:.3}, answer NLL {nll:.3} after {} steps", t.steps());
            Ok(Run {
                acc,
                nll,
                kl: t.kl_after_reshape,
                stages: t.stages.clone(),
                train_s: t.train_s,
                trained: t.model.count().0,
                private: private_weights(&t.model),
                starts_from: starts_from.into(),
                file,
            })
        };
        let export = |r: &Recipe, t: &Tuned, acc_note: bool| -> Result<String> {
            if si != 0 {
                return Ok(String::new());
            }
            let file = o.out_dir.join(format!("{}.marill", r.label()));
            let info = crate::export::ExportInfo {
                recipe: r,
                distilled: !r.is_full(),
                tokenizer_json: Some(&tok),
                frac_bits: 16,
                notes: if acc_note { "embedded task (invented-entity facts)".into() } else { String::new() },
            };
            match crate::export::export(&t.model, &info) {
                Ok(bytes) => {
                    std::fs::write(&file, bytes)?;
                    Ok(file.display().to_string())
                }
                Err(e) => {
                    eprintln!("{}: not exported ({e})", r.label());
                    Ok(String::new())
                }
            }
        };
        if si == 0 {
            // A test prompt for the demo's secure generation (an entity never fine-tuned on).
            std::fs::write(o.out_dir.join("prompt.txt"), format!("<s>{}", task.test[0].0))?;
        }
        // The base as it is.
        let zs = Tuned { model: base.frozen_copy()?, stages: Vec::new(), kl_after_reshape: None, train_s: 0.0 };
        let run = eval("zero-shot", &zs, "base", String::new())?;
        push(&mut runs, "zero-shot".into(), run);
        let s = scratch(&task, seed, o.budget, dev)?;
        let run = eval("scratch", &s, "random", String::new())?;
        push(&mut runs, "scratch".into(), run);
        let full = Recipe::full();
        let teacher = finetune(&base, &full, None, &task, seed, o.budget)?;
        let run = eval("full", &teacher, "base", export(&full, &teacher, true)?)?;
        push(&mut runs, "full".into(), run);
        let teacher_model = teacher.model.frozen_copy()?;
        let mut lf_students: Vec<(f64, Model)> = Vec::new();
        for r in &o.recipes {
            let from = r.starts_from();
            let (start, start_name) = match &from {
                None => (&base, "base".to_string()),
                Some(f) if f.is_full() => (&teacher_model, "full".to_string()),
                Some(f) => {
                    if !lf_students.iter().any(|x| x.0 == f.trained_fraction) {
                        let t = finetune(&base, f, Some(&teacher_model), &task, seed, o.budget)?;
                        lf_students.push((f.trained_fraction, t.model.frozen_copy()?));
                    }
                    let m =
                        &lf_students.iter().find(|x| x.0 == f.trained_fraction).ok_or(Error::Config("lf".into()))?.1;
                    (m, f.label())
                }
            };
            let t = finetune(start, r, Some(&teacher_model), &task, seed, o.budget)?;
            if r.head_merge == 1 && r.lora_rank == 0 && r.head_prune == 0 && r.layer_prune == 0 {
                lf_students.push((r.trained_fraction, t.model.frozen_copy()?));
            }
            let run = eval(&r.label(), &t, &start_name, export(r, &t, true)?)?;
            push(&mut runs, r.label(), run);
        }
    }
    let full_accs: Vec<f64> =
        runs.iter().find(|x| x.0 == "full").map(|x| x.1.iter().map(|r| r.acc).collect()).unwrap_or_default();
    let zs_accs: Vec<f64> =
        runs.iter().find(|x| x.0 == "zero-shot").map(|x| x.1.iter().map(|r| r.acc).collect()).unwrap_or_default();
    let full_mean = mean_sd(&full_accs).0.max(1e-9);
    let mut rows = Vec::new();
    for (name, rs) in &runs {
        let accs: Vec<f64> = rs.iter().map(|r| r.acc).collect();
        let gains: Vec<f64> = rs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (f, z) = (full_accs.get(i).copied().unwrap_or(1.0), zs_accs.get(i).copied().unwrap_or(0.0));
                if f > z { (r.acc - z) / (f - z) } else { 0.0 }
            })
            .collect();
        let nlls: Vec<f64> = rs.iter().map(|r| r.nll).collect();
        let kls: Vec<f64> = rs.iter().filter_map(|r| r.kl).collect();
        let (acc, acc_sd) = mean_sd(&accs);
        let (gain, gain_sd) = mean_sd(&gains);
        let (nll, nll_sd) = mean_sd(&nlls);
        let mut steps = String::new();
        for (k, (stage, _)) in rs[0].stages.iter().enumerate() {
            let m = rs.iter().map(|r| r.stages.get(k).map_or(0, |s| s.1.steps) as f64).sum::<f64>() / rs.len() as f64;
            if !steps.is_empty() {
                steps.push_str(" + ");
            }
            steps.push_str(&format!("{stage} {m:.0}"));
        }
        rows.push(Quality {
            variant: name.clone(),
            accuracy: acc,
            accuracy_sd: acc_sd,
            relative: acc / full_mean,
            gain_kept: gain,
            gain_kept_sd: gain_sd,
            nll,
            nll_sd,
            kl_after_reshape: if kls.is_empty() { None } else { Some(mean_sd(&kls).0) },
            starts_from: rs[0].starts_from.clone(),
            steps: if steps.is_empty() { "-".into() } else { steps },
            total_steps: rs.iter().map(|r| r.stages.iter().map(|s| s.1.steps).sum::<usize>() as f64).sum::<f64>()
                / rs.len() as f64,
            seeds: rs.len(),
            trained: rs[0].trained,
            private: rs[0].private,
            train_s: rs.iter().map(|r| r.train_s).sum::<f64>() / rs.len() as f64,
            file: rs[0].file.clone(),
        });
    }
    let t0 = task(o.base_seed, o.seeds[0]);
    print_table(&rows, o.seeds.len(), t0.split.test.len(), t0.test.len());
    let json = serde_json::to_string_pretty(&rows).map_err(|e| Error::Config(e.to_string()))?;
    std::fs::write(o.out_dir.join("quality.json"), json)?;
    Ok(rows)
}

fn print_table(rows: &[Quality], seeds: usize, entities: usize, prompts: usize) {
    println!(
        "\nquality on the private task ({prompts} prompts about {entities} test entities never fine-tuned on, exact \
         match; mean ± sd over {seeds} seed{}; gain kept = (acc − zero-shot) / (full − zero-shot)):",
        if seeds == 1 { "" } else { "s" }
    );
    println!(
        "{:<12} {:>13} {:>7} {:>13} {:>13} {:>8} {:<8} {:<16} {:>8} {:>7}",
        "variant", "accuracy", "vs full", "gain kept", "answer NLL", "KL merge", "from", "steps", "private", "train s"
    );
    for q in rows {
        let pm = |m: f64, s: f64| if seeds > 1 { format!("{m:.3} ± {s:.3}") } else { format!("{m:.3}") };
        println!(
            "{:<12} {:>13} {:>7.3} {:>13} {:>13} {:>8} {:<8} {:<16} {:>8} {:>7.1}",
            q.variant,
            pm(q.accuracy, q.accuracy_sd),
            q.relative,
            pm(q.gain_kept, q.gain_kept_sd),
            pm(q.nll, q.nll_sd),
            q.kl_after_reshape.map_or("-".into(), |k| format!("{k:.3}")),
            q.starts_from,
            q.steps,
            q.private,
            q.train_s
        );
    }
}
