//! The real-data recipe: fine-tune a real checkpoint (SmolLM2-135M-Instruct from GGUF) on
//! chat pairs in ChatML with a MARILL recipe, measuring the held-out answer NLL before and
//! after. The corpus is JSON lines `{"prompt", "answer"[, "category"]}`;
//! `scripts/fetch-chatterbot.sh` writes the English chatterbot corpus (PyPI
//! `chatterbot-corpus==1.3.3`) in that form.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::data::Batch;
use crate::model::Model;
use crate::recipe::Recipe;
use crate::train::{self, DistillCoeffs, Objective, Opts};
use crate::{Error, Result, Rng};
use marill_std::tokenizer::Tokenizer;

/// One tokenized pair: the ChatML prompt (user turn and the assistant header) and the
/// answer (ending with `<|im_end|>`), which alone is trained on.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Prompt tokens.
    pub prompt: Vec<u32>,
    /// Answer tokens.
    pub answer: Vec<u32>,
    /// The conversation the pair comes from (pairs of one conversation are held out
    /// together: consecutive pairs share a turn).
    pub conversation: String,
}

/// FNV-1a of `s` (a stable hash for splitting).
pub(crate) fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Split `pairs` by conversation: every conversation whose hash falls in one tenth is held
/// out whole, so that no held-out turn is trained on (as a prompt or as an answer).
/// Returns (training pairs, held-out pairs).
pub fn split_by_conversation(pairs: Vec<Pair>) -> (Vec<Pair>, Vec<Pair>) {
    let (held, train): (Vec<Pair>, Vec<Pair>) =
        pairs.into_iter().partition(|p| fnv(&p.conversation).is_multiple_of(10));
    (train, held)
}

/// The ChatML text of a user turn followed by the assistant header.
pub fn chatml(prompt: &str) -> String {
    format!("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")
}

/// Pairs from a JSON-lines file, tokenized and deduplicated; pairs longer than `max_len`
/// tokens and, with `category`, pairs of other categories are skipped. A pair's
/// conversation is its `conversation` field, else its prompt.
pub fn load_pairs(path: &Path, tok: &Tokenizer, max_len: usize, category: Option<&str>) -> Result<Vec<Pair>> {
    let end = tok.token_id("<|im_end|>").ok_or_else(|| Error::Config("the tokenizer has no <|im_end|>".into()))?;
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| Error::Config(format!("{}:{}: {e}", path.display(), i + 1)))?;
        let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
        if category.is_some_and(|c| field("category") != Some(c)) {
            continue;
        }
        let (Some(p), Some(a)) = (field("prompt"), field("answer")) else {
            return Err(Error::Config(format!("{}:{}: needs prompt and answer", path.display(), i + 1)));
        };
        let prompt = tok.encode(&chatml(p))?;
        let mut answer = tok.encode(a)?;
        answer.push(end);
        if prompt.len() + answer.len() <= max_len && seen.insert((p.to_string(), a.to_string())) {
            let conversation = field("conversation").unwrap_or(p).to_string();
            out.push(Pair { prompt, answer, conversation });
        }
    }
    if out.is_empty() {
        return Err(Error::Config(format!("{}: no usable pairs", path.display())));
    }
    Ok(out)
}

/// A batch of pairs padded to the longest; only answer tokens are targets.
pub fn batch(pairs: &[&Pair], dev: &Device) -> Result<Batch> {
    let t = pairs.iter().map(|p| p.prompt.len() + p.answer.len()).max().unwrap_or(1).max(2) - 1;
    let b = pairs.len();
    let (mut input, mut target, mut mask) = (vec![0u32; b * t], vec![0u32; b * t], vec![0f32; b * t]);
    let mut count = 0;
    for (i, p) in pairs.iter().enumerate() {
        let seq: Vec<u32> = p.prompt.iter().chain(&p.answer).copied().collect();
        for j in 0..seq.len() - 1 {
            input[i * t + j] = seq[j];
            target[i * t + j] = seq[j + 1];
            if j + 1 >= p.prompt.len() {
                mask[i * t + j] = 1.0;
                count += 1;
            }
        }
    }
    Ok(Batch {
        input: Tensor::from_vec(input, (b, t), dev)?,
        target: Tensor::from_vec(target, (b, t), dev)?,
        mask: Tensor::from_vec(mask, (b, t), dev)?,
        count,
    })
}

/// Mean NLL per answer token over `pairs` (in batches of `bs`).
pub fn answer_nll(model: &Model, pairs: &[Pair], bs: usize) -> Result<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for chunk in pairs.chunks(bs.max(1)) {
        let refs: Vec<&Pair> = chunk.iter().collect();
        let b = batch(&refs, &model.device)?;
        let l = train::nll(&model.forward(&b.input, false)?.logits, &b)?;
        sum += f64::from(l.to_dtype(DType::F32)?.to_scalar::<f32>()?) * b.count as f64;
        n += b.count;
    }
    Ok(sum / n.max(1) as f64)
}

/// Fine-tune `base` with `recipe` on `pairs`: `steps` steps of `bs` pairs drawn with
/// `seed`; distilled from `teacher` when given (stage I first where the recipe needs it).
pub fn finetune(
    base: &Model,
    recipe: &Recipe,
    pairs: &[Pair],
    teacher: Option<&Model>,
    opts: Opts,
    bs: usize,
    seed: u64,
) -> Result<Model> {
    let dev = base.device.clone();
    let calib: Vec<&Pair> = pairs.iter().take(bs.max(8)).collect();
    let student = recipe.apply(base, Some(&batch(&calib, &dev)?.input), seed)?;
    let mut rng = Rng::new(seed ^ 0xc4a7);
    let mut next = |_| {
        let picked: Vec<&Pair> = (0..bs).map(|_| &pairs[rng.below(pairs.len())]).collect();
        batch(&picked, &dev)
    };
    let label = recipe.label();
    let c = DistillCoeffs::default();
    match teacher {
        Some(t) if !recipe.is_full() => {
            if recipe.needs_stage1() {
                let o1 = Opts { steps: (opts.steps / 4).max(1), ..opts };
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_answer_tokens_are_targets_and_short_pairs_are_padded() {
        let a = Pair { prompt: vec![1, 2, 3], answer: vec![4, 5], conversation: "a".into() };
        let b = Pair { prompt: vec![6], answer: vec![7], conversation: "b".into() };
        let x = batch(&[&a, &b], &Device::Cpu).unwrap();
        assert_eq!(x.input.to_vec2::<u32>().unwrap(), [[1, 2, 3, 4], [6, 0, 0, 0]]);
        assert_eq!(x.target.to_vec2::<u32>().unwrap(), [[2, 3, 4, 5], [7, 0, 0, 0]]);
        assert_eq!(x.mask.to_vec2::<f32>().unwrap(), [[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]]);
        assert_eq!(x.count, 3);
    }

    #[test]
    fn a_conversation_is_held_out_whole() {
        // 100 conversations of five turns: pair k is (turn k, turn k + 1).
        let pairs: Vec<Pair> = (0..100u32)
            .flat_map(|c| (0..4).map(move |k| (c, k)))
            .map(|(c, k)| Pair {
                prompt: vec![c * 10 + k],
                answer: vec![c * 10 + k + 1],
                conversation: format!("c{c}"),
            })
            .collect();
        let (train, held) = split_by_conversation(pairs);
        assert!(!held.is_empty() && train.len() > 5 * held.len());
        for h in &held {
            assert!(train.iter().all(|t| t.conversation != h.conversation));
            // Consecutive pairs share a turn: no held-out turn appears in training.
            assert!(train.iter().all(|t| t.prompt != h.answer && t.answer != h.prompt));
        }
    }
}
