//! Secure greedy generation on the embedded default, trained here (a short pretraining and
//! short fine-tunes: token identity does not need a good model), for the baseline (full
//! fine-tuning: every layer and the embedding in MPC), LF = 0.5, LoRA, HM = 4, LF+HM and
//! LF+LoRA, in 2PC-Dealer and 3PC (20 task prompts × 16 new tokens each) and plain 2PC
//! (2 prompts × 8 tokens: OT and HE cost about 100× more), equal to the plaintext model's
//! tokens (teacher-forced; near-ties within 0.05 accepted and counted,
//! lowest index on exact ties: see `marill_std::model::check`).
#![allow(clippy::unwrap_used)]

use candle_core::Device;
use marill_std::Setting;
use marill_std::model::check::{SecureGeneration, teacher_forced};
use marill_std::model_file::extract_public;
use marill_std::run::run_mem;
use marill_train::data;
use marill_train::embedded::{self, Budget};
use marill_train::export::{ExportInfo, export};
use marill_train::recipe::Recipe;

#[test]
fn secure_generation_equals_plaintext_for_every_variant() {
    marill_train::progress::set_quiet(true);
    let dev = Device::Cpu;
    let mut budget = Budget::quick();
    budget.pretrain = 40;
    budget.stop.max_steps = 12;
    let base = embedded::pretrain(5, budget, &dev).unwrap();
    let task = embedded::task(5, 5);
    let teacher = embedded::finetune(&base, &Recipe::full(), None, &task, 5, budget).unwrap().model;
    let r = Recipe::new;
    let recipes = [r(1.0, 0, 1), r(0.5, 0, 1), r(1.0, 8, 1), r(1.0, 0, 4), r(0.5, 0, 4), r(0.5, 8, 1)];
    let tok = data::tokenizer_json();
    let prompts: Vec<Vec<u32>> = task
        .test
        .iter()
        .take(20)
        .map(|(p, _)| {
            let mut ids = vec![data::BOS];
            ids.extend(data::encode(p).unwrap());
            ids
        })
        .collect();
    let mut total_ties = 0;
    for recipe in recipes {
        let model = if recipe.is_full() {
            teacher.clone()
        } else {
            // App. G: merged students start from the teacher or the LF student.
            let start = match recipe.starts_from() {
                Some(f) if f.is_full() => teacher.clone(),
                Some(f) => embedded::finetune(&base, &f, Some(&teacher), &task, 5, budget).unwrap().model,
                None => base.clone(),
            };
            embedded::finetune(&start, &recipe, Some(&teacher), &task, 5, budget).unwrap().model
        };
        let info = ExportInfo {
            recipe: &recipe,
            distilled: true,
            tokenizer_json: Some(&tok),
            frac_bits: 16,
            notes: String::new(),
        };
        let server = export(&model, &info).unwrap();
        let client = extract_public(&server).unwrap();
        let mut ties = 0;
        for setting in Setting::ALL {
            let (take, new_tokens) = if setting == Setting::Ot2pc { (2, 8) } else { (prompts.len(), 16) };
            for prompt in &prompts[..take] {
                let g = SecureGeneration { server: &server, client: &client, prompt: prompt.clone(), new_tokens };
                let out = run_mem(setting, &g).unwrap();
                assert_eq!(out[0].0.len(), new_tokens);
                assert!(out[1..].iter().all(|p| p.0.is_empty()), "only the client learns tokens");
                ties += teacher_forced(&server, prompt, &out[0].0, 0.05)
                    .unwrap_or_else(|e| panic!("{} {setting:?}: {e}", recipe.label()));
            }
        }
        eprintln!("{}: 656 tokens, {ties} near-ties accepted", recipe.label());
        total_ties += ties;
    }
    // 3936 tokens: fixed point may tip a handful of near-ties, no more.
    assert!(total_ties <= 12, "{total_ties} near-ties");
}
