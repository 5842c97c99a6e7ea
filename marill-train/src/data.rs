//! The embedded default: a character tokenizer, a generated world of invented entities, a
//! pretraining corpus that teaches the base their facts, and a "private" fine-tuning task
//! that needs those facts. Deterministic in the seed, no download.
//!
//! **The world.** [`World::new`] draws [`N_ENTITIES`] invented names (four letters over
//! `a`–`p`), each with a *home* (a letter `q`–`z`) and an *age* (a digit).
//!
//! **Pretraining** ([`pretrain_line`]) states every fact in several forms, `kbdf home = s.`,
//! `age of kbdf = 7.`, `kbdf: home s age 7.`, …, mixed with generic skills over random words (`copy dfab = dfab.`,
//! `sort …`, `next …`, `len …`, `add 12+7 = 19.`). Nothing in pretraining asks for two facts
//! at once.
//!
//! **The private task** ([`task_examples`]) asks for the facts in a question form the base
//! never saw: `kbdf where =` answered ` s.`, `kbdf years =` answered ` 7.`. Fine-tuning sees
//! the task for two thirds of the entities ([`Split`]); accuracy is exact match on the
//! other third, whose facts the model met only in pretraining. So a model can score only
//! by using what the base knows: the base alone does not know what `where` asks (zero-shot
//! is near chance), and a model trained from scratch on the private data cannot know the
//! held-out entities' facts (chance is 1 in 10). This
//! is MARILL's premise (the public base carries knowledge, fine-tuning teaches a new use of
//! it), which the earlier letter-shifting task did not carry: two freshly trained layers
//! solved that one, so layer pruning could only tie with layer freezing.

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
pub const MAX_LEN: usize = 24;
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

/// Invented entities in the embedded world.
pub const N_ENTITIES: usize = 192;
/// The values a home takes.
const HOMES: &[u8] = b"qrstuvwxyz";

/// The invented entities and their facts, fixed by the base's seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    /// Distinct four-letter names.
    pub names: Vec<String>,
    /// Each entity's home (a letter `q`–`z`).
    pub home: Vec<char>,
    /// Each entity's age (a digit).
    pub age: Vec<char>,
}

impl World {
    /// The world of the base pretrained from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x5767_6f72_6c64);
        let mut seen = std::collections::HashSet::new();
        let mut w = World { names: Vec::new(), home: Vec::new(), age: Vec::new() };
        while w.names.len() < N_ENTITIES {
            let n = word(&mut rng);
            if seen.insert(n.clone()) {
                w.names.push(n);
                w.home.push(HOMES[rng.below(HOMES.len())] as char);
                w.age.push((b'0' + rng.below(10) as u8) as char);
            }
        }
        w
    }

    /// Both facts of entity `e` as pretraining examples.
    pub fn facts(&self, e: usize) -> [Example; 2] {
        let n = &self.names[e];
        [(format!("{n} home ="), format!(" {}.", self.home[e])), (format!("{n} age ="), format!(" {}.", self.age[e]))]
    }

    /// Every fact of the world (the base's recall is measured on these).
    pub fn all_facts(&self) -> Vec<Example> {
        (0..self.names.len()).flat_map(|e| self.facts(e)).collect()
    }
}

/// One pretraining line: a fact of `world` (four lines in five) or a generic skill. Each fact
/// is stated in several forms, the entity first or last, alone or with its other fact in
/// either order: stated one way only, a small model memorises the line rather than the
/// entity, and fine-tuning on a new request cannot reach the facts of entities it did not
/// see (measured here: full fine-tuning 0.08–0.24 on the test entities, chance 0.1; the
/// "knowledge augmentation" finding of Allen-Zhu and Li, *Physics of Language Models 3.1*).
pub fn pretrain_line(rng: &mut Rng, world: &World) -> String {
    if rng.below(5) < 4 {
        let e = rng.below(world.names.len());
        let (n, h, a) = (&world.names[e], world.home[e], world.age[e]);
        return match rng.below(6) {
            0 => format!("{n} home = {h}."),
            1 => format!("{n} age = {a}."),
            2 => format!("home of {n} = {h}."),
            3 => format!("age of {n} = {a}."),
            4 => format!("{n}: home {h} age {a}."),
            _ => format!("{n}: age {a} home {h}."),
        };
    }
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

/// The private task for entity `e`: two questions in a form the base never saw (`where`,
/// `years`), each asking for one fact (answers end with `.`).
pub fn task_examples(world: &World, e: usize) -> [Example; 2] {
    let n = &world.names[e];
    let (h, a) = (world.home[e], world.age[e]);
    [(format!("{n} where ="), format!(" {h}.")), (format!("{n} years ="), format!(" {a}."))]
}

/// Which entities the private fine-tuning data covers and which are held out.
#[derive(Debug, Clone)]
pub struct Split {
    /// Entities whose task examples are trained on.
    pub train: Vec<usize>,
    /// Entities of the training half kept for early stopping (never trained on).
    pub valid: Vec<usize>,
    /// Entities whose task examples are the test set (never trained on, never used to stop).
    pub test: Vec<usize>,
}

impl Split {
    /// Two thirds of the entities for fine-tuning (of which `valid` for early stopping),
    /// one third for the test, shuffled by `seed`.
    pub fn new(seed: u64, n_entities: usize, valid: usize) -> Self {
        let mut rng = Rng::new(seed ^ 0x0053_706c_6974);
        let mut idx: Vec<usize> = (0..n_entities).collect();
        for i in (1..idx.len()).rev() {
            idx.swap(i, rng.below(i + 1));
        }
        let half = n_entities * 2 / 3;
        let test = idx.split_off(half);
        let train = idx.split_off(valid.min(half));
        Self { train, valid: idx, test }
    }

    /// Task examples of `entities`.
    pub fn examples(world: &World, entities: &[usize]) -> Vec<Example> {
        entities.iter().flat_map(|&e| task_examples(world, e)).collect()
    }
}

/// A training batch: inputs and next-token targets `[b, t]` (`t`: the longest line less
/// one) and the loss weights (1 where a target counts).
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
    let mut seqs = Vec::with_capacity(examples.len());
    for (p, a) in examples {
        let mut seq = vec![BOS];
        seq.extend(encode(p)?);
        let answer_from = seq.len();
        seq.extend(encode(a)?);
        if seq.len() > MAX_LEN {
            return Err(crate::Error::Config(format!("line {p}{a} longer than {MAX_LEN} tokens")));
        }
        seqs.push((seq, answer_from));
    }
    let t = seqs.iter().map(|s| s.0.len()).max().unwrap_or(2).max(2) - 1;
    let mut input = vec![PAD; examples.len() * t];
    let mut target = vec![PAD; examples.len() * t];
    let mut mask = vec![0f32; examples.len() * t];
    let mut count = 0;
    for (i, (seq, answer_from)) in seqs.iter().enumerate() {
        let answer_from = *answer_from;
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
pub fn pretrain_batch(rng: &mut Rng, world: &World, b: usize, dev: &Device) -> Result<Batch> {
    let lines: Vec<Example> = (0..b).map(|_| (String::new(), pretrain_line(rng, world))).collect();
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
        want.extend(encode("kbdf where = s.").unwrap());
        let ids = tok.encode("<s>kbdf where = s.").unwrap();
        assert_eq!(ids, want);
        assert_eq!(tok.decode(&ids, false).unwrap(), decode(&ids));
    }

    #[test]
    fn the_split_partitions_the_entities_and_every_line_fits() {
        let w = World::new(1);
        assert_eq!(w, World::new(1));
        assert_ne!(w.names, World::new(2).names);
        let s = Split::new(4, w.names.len(), 16);
        let mut all: Vec<usize> = s.train.iter().chain(&s.valid).chain(&s.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..N_ENTITIES).collect::<Vec<_>>());
        assert_eq!((s.train.len(), s.valid.len(), s.test.len()), (112, 16, 64));
        assert_eq!(Split::examples(&w, &s.test).len(), 128);
        assert_ne!(s.test, Split::new(5, w.names.len(), 16).test);
        // Every line the corpus and the task can produce fits a batch.
        let mut ex = w.all_facts();
        ex.extend(Split::examples(&w, &s.test));
        assert!(batch(&ex, true, &Device::Cpu).is_ok());
        let mut rng = Rng::new(9);
        let lines: Vec<Example> = (0..200).map(|_| (String::new(), pretrain_line(&mut rng, &w))).collect();
        assert!(batch(&lines, false, &Device::Cpu).is_ok());
    }
}
