//! The embedded default: a character tokenizer, a generated pretraining corpus and a
//! "private" fine-tuning task with exact-match accuracy. Deterministic in the seed, no
//! download.
//!
//! Pretraining lines teach the base to read and write four-letter words over `a`–`p`:
//! `copy dfab = dfab.`, `sort dfab = abdf.`, `next dfab = egbc.`, `len dfab = 4.`,
//! `add 12+7 = 19.`. The private task is new to the base: `skip dfab = fhcd.` (each letter
//! two on). Accuracy is the share of held-out prompts `skip w =` (words never seen in
//! fine-tuning) whose greedy continuation is exactly the answer.
//!
//! Why this task: the base learns to copy (an induction-style skill) only after about 1000
//! steps here, and reversing words did not reach useful accuracy in a fine-tuning budget of
//! minutes, while "two on" composes skills the base has ("next", copying) and separates the
//! recipes (full fine-tuning 0.55, LF+HM 0.32 after 150 steps when this was written).

use candle_core::{Device, Tensor};

use crate::{Result, Rng};

/// The characters of the vocabulary after the three special tokens.
pub const CHARS: &str = " .=+:abcdefghijklmnopqrstuvwxyz0123456789";
/// Padding (never a target).
pub const PAD: u32 = 0;
/// Beginning of a line.
pub const BOS: u32 = 1;
/// Unused end token (lines end with `.`).
pub const EOS: u32 = 2;
/// Vocabulary size: 3 special tokens and [`CHARS`], rounded up to a multiple of 8.
pub const VOCAB: usize = 48;
/// Longest line in tokens, BOS included.
pub const MAX_LEN: usize = 20;
/// A prompt and its answer.
pub type Example = (String, String);

/// Letters per word.
const WORD: usize = 4;
/// Letters the words are drawn from.
const LETTERS: &[u8] = b"abcdefghijklmnop";

/// Token ids of `s` (characters outside [`CHARS`] are an error).
pub fn encode(s: &str) -> Result<Vec<u32>> {
    s.chars()
        .map(|c| {
            CHARS
                .find(c)
                .map(|i| i as u32 + 3)
                .ok_or_else(|| crate::Error::Config(format!("character {c:?} not in the embedded vocabulary")))
        })
        .collect()
}

/// Text of `ids` (special tokens dropped).
pub fn decode(ids: &[u32]) -> String {
    ids.iter().filter(|&&i| i >= 3).filter_map(|&i| CHARS.as_bytes().get(i as usize - 3).map(|b| *b as char)).collect()
}

/// The tokenizer of the embedded default as a Hugging Face `tokenizer.json` (a BPE model
/// without merges: one token per character), stored in exported files.
pub fn tokenizer_json() -> String {
    let mut tokens: Vec<String> = vec!["<pad>".into(), "<s>".into(), "</s>".into()];
    tokens.extend(CHARS.chars().map(String::from));
    while tokens.len() < VOCAB {
        tokens.push(format!("<unused{}>", tokens.len()));
    }
    // Fixed inputs: this cannot fail (the unit test below reads it back).
    marill_std::tokenizer::Tokenizer::from_parts(tokens, &[], &[PAD, BOS, EOS], false, false)
        .map(|t| t.to_hf_json())
        .unwrap_or_default()
}

fn word(rng: &mut Rng) -> String {
    (0..WORD).map(|_| LETTERS[rng.below(LETTERS.len())] as char).collect()
}

/// One pretraining line.
pub fn pretrain_line(rng: &mut Rng) -> String {
    let w = word(rng);
    match rng.below(5) {
        0 => format!("copy {w} = {w}."),
        1 => {
            let mut s: Vec<char> = w.chars().collect();
            s.sort_unstable();
            format!("sort {w} = {}.", s.into_iter().collect::<String>())
        }
        2 => {
            let n: String = w.bytes().map(|b| (b'a' + (b - b'a' + 1) % 26) as char).collect();
            format!("next {w} = {n}.")
        }
        3 => format!("len {w} = {}.", w.len()),
        _ => {
            let (a, b) = (rng.below(50), rng.below(50));
            format!("add {a}+{b} = {}.", a + b)
        }
    }
}

/// The private task: a prompt and its answer (the answer ends with `.`).
pub fn task_example(rng: &mut Rng) -> (String, String) {
    let w = word(rng);
    let n: String = w.bytes().map(|b| (b'a' + (b - b'a' + 2) % 26) as char).collect();
    (format!("skip {w} ="), format!(" {n}."))
}

/// `n` distinct task examples drawn with `seed`, none of whose prompts is in `exclude`.
pub fn task_set(seed: u64, n: usize, exclude: &[Example]) -> Vec<Example> {
    let mut rng = Rng::new(seed);
    let mut seen: std::collections::HashSet<String> = exclude.iter().map(|e| e.0.clone()).collect();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let e = task_example(&mut rng);
        if seen.insert(e.0.clone()) {
            out.push(e);
        }
    }
    out
}

/// A training batch: inputs and next-token targets `[b, MAX_LEN-1]` and the loss weights
/// (1 where a target counts).
pub struct Batch {
    /// Input tokens (u32).
    pub input: Tensor,
    /// Target tokens (u32).
    pub target: Tensor,
    /// f32 weights.
    pub mask: Tensor,
    /// Number of counted targets.
    pub count: usize,
}

/// A batch of `(prompt, answer)` pairs; only answer tokens count when `answer_only`.
pub fn batch(examples: &[Example], answer_only: bool, dev: &Device) -> Result<Batch> {
    let t = MAX_LEN - 1;
    let mut input = vec![PAD; examples.len() * t];
    let mut target = vec![PAD; examples.len() * t];
    let mut mask = vec![0f32; examples.len() * t];
    let mut count = 0;
    for (i, (p, a)) in examples.iter().enumerate() {
        let mut seq = vec![BOS];
        seq.extend(encode(p)?);
        let answer_from = seq.len();
        seq.extend(encode(a)?);
        if seq.len() > MAX_LEN {
            return Err(crate::Error::Config(format!("line {p}{a} longer than {MAX_LEN} tokens")));
        }
        for j in 0..seq.len() - 1 {
            input[i * t + j] = seq[j];
            target[i * t + j] = seq[j + 1];
            if !answer_only || j + 1 >= answer_from {
                mask[i * t + j] = 1.0;
                count += 1;
            }
        }
    }
    let b = examples.len();
    Ok(Batch {
        input: Tensor::from_vec(input, (b, t), dev)?,
        target: Tensor::from_vec(target, (b, t), dev)?,
        mask: Tensor::from_vec(mask, (b, t), dev)?,
        count,
    })
}

/// A pretraining batch of `b` lines.
pub fn pretrain_batch(rng: &mut Rng, b: usize, dev: &Device) -> Result<Batch> {
    let lines: Vec<Example> = (0..b).map(|_| (String::new(), pretrain_line(rng))).collect();
    batch(&lines, false, dev)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_exported_tokenizer_agrees_with_encode_and_decode() {
        let tok = marill_std::tokenizer::Tokenizer::from_hf_json(&tokenizer_json()).unwrap();
        assert_eq!(tok.vocab_size(), VOCAB);
        let mut want = vec![BOS];
        want.extend(encode("skip abcd = cdef.").unwrap());
        let ids = tok.encode("<s>skip abcd = cdef.").unwrap();
        assert_eq!(ids, want);
        assert_eq!(tok.decode(&ids, false).unwrap(), decode(&ids));
    }
}
