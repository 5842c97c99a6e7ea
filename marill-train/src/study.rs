//! The real-model quality study: MARILL's recipes on a real checkpoint (SmolLM2-135M-Instruct)
//! and real chat data (the chatterbot corpus), measured by the held-out answer NLL.
//!
//! Conversations are split three ways by a stable hash (a tenth held out for the test, a
//! tenth for early stopping, the rest trained on), so no test turn is ever trained on.
//! Rows: zero-shot (the checkpoint as it is), full fine-tuning (the teacher, trained once
//! and cached), then each recipe per App. G (LF, LoRA, LF + LoRA and layer pruning from the
//! checkpoint with stage II; head merging and head pruning from the teacher, LF + HM from
//! the LF student, with stages I and II). Each stage trains until the validation answer NLL
//! stops improving (at most `max_steps`). The share of full fine-tuning's gain kept is
//! `(NLL_zero-shot − NLL) / (NLL_zero-shot − NLL_full)`.

use std::path::Path;

use candle_core::Device;

use crate::chat::{self, Pair};
use crate::data::Batch;
use crate::model::Model;
use crate::recipe::{Grouping, Recipe};
use crate::train::{self, DistillCoeffs, Objective, Stop, Trained};
use crate::{Error, Result, Rng};

/// What the study runs.
#[derive(Debug, Clone)]
pub struct StudyOpts {
    /// Pairs per batch.
    pub batch: usize,
    /// When each stage stops.
    pub stop: Stop,
    /// Learning rate for full weights (LoRA factors take ten times more).
    pub lr: f64,
    /// Head-merge factor (must divide the heads: 3 for SmolLM2's 9).
    pub hm: usize,
    /// The seed of batch order and LoRA initialisation.
    pub seed: u64,
    /// The recipes after full fine-tuning (`None`: [`study_recipes`]).
    pub recipes: Option<Vec<Recipe>>,
    /// Labels of the variants whose split files are written (`None`: every variant).
    pub export: Option<Vec<String>>,
}

impl Default for StudyOpts {
    fn default() -> Self {
        Self {
            batch: 4,
            stop: Stop { max_steps: 120, every: 10, patience: 3 },
            lr: 1e-4,
            hm: 3,
            seed: 1,
            recipes: None,
            export: None,
        }
    }
}

/// One row of the study.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StudyRow {
    /// Recipe label, or `zero-shot`.
    pub variant: String,
    /// Held-out answer NLL, nats per token.
    pub nll: f64,
    /// Teacher-forced next-token accuracy on the held-out answer tokens.
    pub token_accuracy: f64,
    /// Share of full fine-tuning's NLL gain kept.
    pub gain_kept: f64,
    /// What the student started from.
    pub starts_from: String,
    /// Steps per stage, each with the step whose weights were kept.
    pub steps: String,
    /// Learning rate.
    pub lr: f64,
    /// Seconds of training.
    pub train_s: f64,
}

/// (train, valid, test) by conversation.
pub fn split3(pairs: Vec<Pair>) -> (Vec<Pair>, Vec<Pair>, Vec<Pair>) {
    let (mut train, mut valid, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for p in pairs {
        match chat::fnv(&p.conversation) % 10 {
            0 => test.push(p),
            1 => valid.push(p),
            _ => train.push(p),
        }
    }
    (train, valid, test)
}

/// Answer NLL and teacher-forced token accuracy on `pairs`.
pub fn evaluate(model: &Model, pairs: &[Pair], bs: usize) -> Result<(f64, f64)> {
    let (mut nll, mut hits, mut n) = (0.0, 0.0, 0usize);
    for chunk in pairs.chunks(bs.max(1)) {
        let refs: Vec<&Pair> = chunk.iter().collect();
        let b = chat::batch(&refs, &model.device)?;
        let logits = model.forward(&b.input, false)?.logits;
        let l = train::nll(&logits, &b)?.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        let best = logits.argmax(candle_core::D::Minus1)?.to_dtype(candle_core::DType::U32)?;
        let hit = (best.eq(&b.target)?.to_dtype(candle_core::DType::F32)? * &b.mask)?.sum_all()?.to_scalar::<f32>()?;
        nll += f64::from(l) * b.count as f64;
        hits += f64::from(hit);
        n += b.count;
    }
    Ok((nll / n.max(1) as f64, hits / n.max(1) as f64))
}

fn one_batch(pairs: &[Pair], dev: &Device) -> Result<Batch> {
    let refs: Vec<&Pair> = pairs.iter().collect();
    chat::batch(&refs, dev)
}

/// Fine-tune `start` with `recipe` (distilled from `teacher` when given) until the
/// validation NLL stops improving.
fn tune(
    start: &Model,
    recipe: &Recipe,
    teacher: Option<&Model>,
    train_pairs: &[Pair],
    valid: &Batch,
    o: &StudyOpts,
    lr: f64,
) -> Result<(Model, Vec<(&'static str, Trained)>)> {
    let dev = start.device.clone();
    let calib: Vec<&Pair> = train_pairs.iter().take(8).collect();
    let student = recipe.apply(start, Some(&chat::batch(&calib, &dev)?.input), o.seed)?;
    let mut rng = Rng::new(o.seed ^ 0x57d9);
    let mut next = |_| {
        let picked: Vec<&Pair> = (0..o.batch).map(|_| &train_pairs[rng.below(train_pairs.len())]).collect();
        chat::batch(&picked, &dev)
    };
    let label = recipe.label();
    let c = DistillCoeffs::default();
    let mut stages = Vec::new();
    match teacher {
        Some(t) if !recipe.is_full() => {
            if recipe.needs_stage1() {
                let s1 = Objective::Stage1(t, c);
                stages.push((
                    "I",
                    train::train_until(&student, lr, o.stop, s1, s1, valid, &format!("{label} (I)"), &mut next)?,
                ));
            }
            let s2 = Objective::Stage2(t, c);
            stages.push((
                "II",
                train::train_until(
                    &student,
                    lr,
                    o.stop,
                    s2,
                    Objective::Nll,
                    valid,
                    &format!("{label} (II)"),
                    &mut next,
                )?,
            ));
        }
        _ => {
            let r = train::train_until(&student, lr, o.stop, Objective::Nll, Objective::Nll, valid, &label, &mut next)?;
            stages.push(("NLL", r));
        }
    }
    Ok((student, stages))
}

/// The recipes of the study, in order (LF 0.5 before LF 0.5 + HM, which starts from it).
pub fn study_recipes(hm: usize, n_heads: usize, n_layers: usize) -> Vec<Recipe> {
    let r = Recipe::new;
    let mut adjacent = r(1.0, 0, hm);
    adjacent.grouping = Grouping::Adjacent;
    let mut head_prune = r(1.0, 0, 1);
    head_prune.head_prune = n_heads - n_heads / hm;
    let mut layer_prune = r(1.0, 0, 1);
    layer_prune.layer_prune = n_layers / 2;
    vec![r(0.5, 0, 1), r(1.0, 8, 1), r(1.0, 0, hm), r(0.5, 0, hm), r(0.5, 8, 1), adjacent, head_prune, layer_prune]
}

/// Run the study on `base` with `pairs`; `teacher_dir` caches the teacher. Prints the
/// table and writes `out_dir/study.json`; every variant's split file goes to
/// `out_dir/<label>.marill` (the teacher's to `full.marill`); `scripts/study-report.sh`
/// then checks each securely and draws the quality-vs-cost chart.
pub fn run(
    base: &Model,
    tokenizer_json: Option<&str>,
    pairs: Vec<Pair>,
    teacher_dir: &Path,
    out_dir: &Path,
    o: &StudyOpts,
) -> Result<Vec<StudyRow>> {
    std::fs::create_dir_all(out_dir)?;
    let dev = base.device.clone();
    let (train_pairs, valid_pairs, test) = split3(pairs);
    if train_pairs.is_empty() || valid_pairs.is_empty() || test.is_empty() {
        return Err(Error::Config("too few conversations for a train/valid/test split".into()));
    }
    eprintln!(
        "study: {} training pairs, {} validation, {} test (split by conversation)",
        train_pairs.len(),
        valid_pairs.len(),
        test.len()
    );
    // At most 24 validation pairs in one batch (the logits over a 49k vocabulary are large).
    let valid = one_batch(&valid_pairs[..valid_pairs.len().min(24)], &dev)?;
    let mut rows = Vec::new();
    let (zs_nll, zs_acc) = evaluate(base, &test, o.batch)?;
    rows.push(StudyRow {
        variant: "zero-shot".into(),
        nll: zs_nll,
        token_accuracy: zs_acc,
        gain_kept: 0.0,
        starts_from: "-".into(),
        steps: "-".into(),
        lr: 0.0,
        train_s: 0.0,
    });
    // Steps taken per stage, and the step whose weights were kept (the cap binds when the two
    // are close: the held-out NLL was still improving).
    let steps_of = |s: &[(&str, Trained)]| {
        s.iter().map(|(n, t)| format!("{n} {} (best {})", t.steps, t.best_step)).collect::<Vec<_>>().join(" + ")
    };
    let export = |r: &Recipe, m: &Model| -> Result<()> {
        if o.export.as_ref().is_some_and(|e| !e.contains(&r.label())) {
            return Ok(());
        }
        let info = crate::export::ExportInfo {
            recipe: r,
            distilled: !r.is_full(),
            tokenizer_json,
            frac_bits: 16,
            notes: "study on chat data".into(),
        };
        match crate::export::export(m, &info) {
            Ok(b) => std::fs::write(out_dir.join(format!("{}.marill", r.label())), b)?,
            Err(e) => eprintln!("{}: not exported ({e})", r.label()),
        }
        Ok(())
    };
    // The teacher, trained once and cached.
    let t0 = std::time::Instant::now();
    let full = Recipe::full();
    let (teacher, teacher_steps) = if teacher_dir.join("config.json").exists() {
        eprintln!("teacher: cached in {}", teacher_dir.display());
        (crate::load::load_hf(teacher_dir, &dev)?.model, "cached".to_string())
    } else {
        let (m, s) = tune(base, &full, None, &train_pairs, &valid, o, o.lr)?;
        let m = m.frozen_copy()?;
        crate::load::save_hf(&m, teacher_dir, tokenizer_json)?;
        (m, steps_of(&s))
    };
    // The baseline of the cost comparison: every layer and the embedding in MPC.
    export(&full, &teacher)?;
    let (full_nll, full_acc) = evaluate(&teacher, &test, o.batch)?;
    let gain = |nll: f64| if zs_nll > full_nll { (zs_nll - nll) / (zs_nll - full_nll) } else { 0.0 };
    rows.push(StudyRow {
        variant: "full".into(),
        nll: full_nll,
        token_accuracy: full_acc,
        gain_kept: 1.0,
        starts_from: "base".into(),
        steps: teacher_steps,
        lr: o.lr,
        train_s: t0.elapsed().as_secs_f64(),
    });
    eprintln!("full: NLL {full_nll:.3} (zero-shot {zs_nll:.3})");
    let mut lf_students: Vec<(f64, Model)> = Vec::new();
    let recipes = o.recipes.clone().unwrap_or_else(|| study_recipes(o.hm, base.cfg.n_heads, base.cfg.n_layers));
    for r in recipes {
        let t0 = std::time::Instant::now();
        let lr = if r.lora_rank > 0 { 10.0 * o.lr } else { o.lr };
        let (start, from) = match r.starts_from() {
            None => (base, "base".to_string()),
            Some(f) if f.is_full() => (&teacher, "full".to_string()),
            Some(f) => {
                if !lf_students.iter().any(|x| x.0 == f.trained_fraction) {
                    let (m, _) = tune(base, &f, Some(&teacher), &train_pairs, &valid, o, lr)?;
                    lf_students.push((f.trained_fraction, m.frozen_copy()?));
                }
                let m = &lf_students.iter().find(|x| x.0 == f.trained_fraction).ok_or(Error::Config("lf".into()))?.1;
                (m, f.label())
            }
        };
        let (m, stages) = tune(start, &r, Some(&teacher), &train_pairs, &valid, o, lr)?;
        if r.head_merge == 1 && r.lora_rank == 0 && r.head_prune == 0 && r.layer_prune == 0 {
            lf_students.push((r.trained_fraction, m.frozen_copy()?));
        }
        let (nll, acc) = evaluate(&m, &test, o.batch)?;
        eprintln!("{}: NLL {nll:.3}, gain kept {:.3}", r.label(), gain(nll));
        export(&r, &m)?;
        rows.push(StudyRow {
            variant: r.label(),
            nll,
            token_accuracy: acc,
            gain_kept: gain(nll),
            starts_from: from,
            steps: steps_of(&stages),
            lr,
            train_s: t0.elapsed().as_secs_f64(),
        });
    }
    println!(
        "\nstudy ({} held-out pairs; gain kept = (NLL zero-shot − NLL) / (NLL zero-shot − NLL full)):",
        test.len()
    );
    println!(
        "{:<14} {:>8} {:>9} {:>9} {:<8} {:<34} {:>8} {:>8}",
        "variant", "NLL", "token acc", "gain kept", "from", "steps", "lr", "train s"
    );
    for r in &rows {
        println!(
            "{:<14} {:>8.3} {:>9.3} {:>9.3} {:<8} {:<34} {:>8.0e} {:>8.1}",
            r.variant, r.nll, r.token_accuracy, r.gain_kept, r.starts_from, r.steps, r.lr, r.train_s
        );
    }
    let json = serde_json::to_string_pretty(&rows).map_err(|e| Error::Config(e.to_string()))?;
    std::fs::write(out_dir.join("study.json"), json)?;
    Ok(rows)
}
