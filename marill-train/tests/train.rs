//! marill-train's guarantees: gradients reach exactly the trainable weights, frozen weights
//! never move, LoRA with B = 0 and head merging with m = 1 change nothing, distillation
//! lowers its loss, and an exported file gives marill-std's plaintext model the same logits
//! as candle (within 1e-4).
#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device, Tensor};
use marill_core::format::{ModelFile, SectionKind};
use marill_std::model::Arch;
use marill_std::model::plain::PlainModel;
use marill_std::model_file::ModelMeta;
use marill_train::data;
use marill_train::export::{ExportInfo, export};
use marill_train::model::{Config, Model, Param};
use marill_train::recipe::{Grouping, Recipe, merge_heads};
use marill_train::train::{self, DistillCoeffs, Objective, Opts};

/// The allocator the marill-train binary uses (candle allocates a buffer per tensor op).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A tiny grouped-query model: 4 layers, d 32, 8 query / 4 kv heads of 4, ffn 48.
fn tiny() -> Model {
    tiny_family(false)
}

/// [`tiny`], with q, k and v biases (Qwen2's layout) when `qkv_bias`.
fn tiny_family(qkv_bias: bool) -> Model {
    tiny_with(qkv_bias, None)
}

/// [`tiny`] with biases and a sliding attention window as given.
fn tiny_with(qkv_bias: bool, sliding_window: Option<usize>) -> Model {
    let cfg = Config {
        vocab: data::VOCAB,
        d: 32,
        n_layers: 4,
        n_heads: 8,
        n_kv_heads: 4,
        head_dim: 4,
        ffn: 48,
        rope_base: 10000.0,
        rms_eps: 1e-5,
        tie_embeddings: true,
        qkv_bias,
        sliding_window,
    };
    Model::init(&cfg, 7, &Device::Cpu).unwrap()
}

fn examples(n: usize) -> Vec<(String, String)> {
    let w = data::World::new(3);
    (0..n).flat_map(|e| data::task_examples(&w, e)).take(n).collect()
}

fn batch() -> data::Batch {
    data::batch(&examples(8), false, &Device::Cpu).unwrap()
}

fn recipe(f: f64, lora: usize, hm: usize) -> Recipe {
    Recipe { trained_fraction: f, lora_rank: lora, lora_alpha: 2.0 * lora as f32, head_merge: hm, ..Recipe::full() }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn logits(m: &Model, b: &data::Batch) -> Tensor {
    m.forward(&b.input, false).unwrap().logits
}

#[test]
fn gradients_reach_every_trainable_weight_and_nothing_frozen_moves() {
    marill_train::progress::set_quiet(true);
    let base = tiny();
    let b = batch();
    // Train the base a little first, so that LoRA's B = 0 does not block A's gradient in
    // later steps (at B = 0 only B gets a gradient, as it should).
    for r in [recipe(1.0, 0, 1), recipe(0.5, 0, 1), recipe(0.5, 4, 1), recipe(0.5, 0, 2), recipe(1.0, 2, 4)] {
        let student = r.apply(&base, Some(&b.input), 1).unwrap();
        let frozen: Vec<(String, Vec<f32>)> = student
            .params
            .iter()
            .filter(|(_, p)| matches!(p, Param::Frozen(_)))
            .map(|(n, p)| (n.clone(), p.tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
        let opts = Opts { steps: 3, lr: 1e-2, weight_decay: 0.01 };
        train::train(&student, opts, Objective::Nll, "t", |_| Ok(batch())).unwrap();
        // After a few steps B is nonzero, so every variable must get a gradient.
        let l = train::loss(&student, &b, Objective::Nll).unwrap();
        let grads = l.backward().unwrap();
        let vars = student.vars();
        assert!(!vars.is_empty());
        for (name, v) in &vars {
            let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{}: no gradient for {name}", r.label()));
            let n = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(n > 0.0, "{}: zero gradient for {name}", r.label());
        }
        for (name, before) in frozen {
            let after = student.get(&name).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(before.iter().zip(&after).all(|(x, y)| x.to_bits() == y.to_bits()), "{}: {name} moved", r.label());
        }
        // What trains is what the recipe says.
        let np = r.n_public(4);
        for (name, p) in &student.params {
            let layer = marill_train::recipe::layer_of(name);
            let want = if r.lora_rank > 0 {
                name.contains(".lora_")
            } else {
                layer.map_or(name == marill_std::model::names::NORM || r.is_full() || r.trained_fraction == 1.0, |l| {
                    l >= np
                })
            };
            assert_eq!(matches!(p, Param::Train(_)), want, "{}: {name}", r.label());
        }
    }
}

#[test]
fn lora_with_zero_b_and_unit_head_merge_change_nothing() {
    // With and without q, k and v biases (which must move with their heads' rows).
    for qkv_bias in [false, true] {
        zero_lora_and_unit_merge(tiny_family(qkv_bias));
    }
}

fn zero_lora_and_unit_merge(base: Model) {
    let b = batch();
    let reference = logits(&base, &b);
    let lora = recipe(0.5, 4, 1).apply(&base, Some(&b.input), 1).unwrap();
    assert_eq!(max_diff(&logits(&lora, &b), &reference), 0.0);
    // m = 1 with a permutation of the heads is the same function.
    let mut permuted = base.frozen_copy().unwrap();
    marill_train::recipe::expand_kv(&mut permuted, 2).unwrap();
    let groups: Vec<Vec<u32>> = [5, 2, 7, 0, 1, 6, 3, 4].iter().map(|h| vec![*h]).collect();
    merge_heads(&mut permuted, 2, &groups).unwrap();
    assert!(max_diff(&logits(&permuted, &b), &reference) < 1e-5);
    // Real merging changes the function.
    let merged = recipe(1.0, 0, 4).apply(&base, Some(&b.input), 1).unwrap();
    assert!(max_diff(&logits(&merged, &b), &reference) > 1e-3);
}

#[test]
fn distillation_lowers_its_losses() {
    marill_train::progress::set_quiet(true);
    let base = tiny();
    let b = batch();
    // The teacher: the base fully fine-tuned for a few steps, then frozen.
    let tuned = Recipe::full().apply(&base, Some(&b.input), 1).unwrap();
    let opts = Opts { steps: 20, lr: 1e-2, weight_decay: 0.0 };
    train::train(&tuned, opts, Objective::Nll, "teacher", |_| Ok(batch())).unwrap();
    let teacher = tuned.frozen_copy().unwrap();
    let mut r = recipe(0.5, 0, 4);
    r.grouping = Grouping::Adjacent;
    r.relu = true;
    let student = r.apply(&base, Some(&b.input), 1).unwrap();
    let c = DistillCoeffs::default();
    let kl = |m: &Model| {
        let t = teacher.forward(&b.input, false).unwrap().logits;
        train::kl(&t, &m.forward(&b.input, false).unwrap().logits, &b).unwrap().to_scalar::<f32>().unwrap()
    };
    let kl_start = kl(&student);
    for obj in [Objective::Stage1(&teacher, c), Objective::Stage2(&teacher, c)] {
        let before = train::loss(&student, &b, obj).unwrap().to_scalar::<f32>().unwrap();
        let opts = Opts { steps: 40, lr: 1e-2, weight_decay: 0.0 };
        train::train(&student, opts, obj, "d", |_| Ok(batch())).unwrap();
        let after = train::loss(&student, &b, obj).unwrap().to_scalar::<f32>().unwrap();
        // Stage I (layer MSE) can fall far: 8.5 -> 0.47 when written. Stage II cannot reach
        // zero (half of it is the labels' NLL, and the frozen layers differ from the
        // teacher's), so it must only fall.
        let bound = if matches!(obj, Objective::Stage1(..)) { 0.2 * before } else { before };
        assert!(after < bound, "{before} -> {after}");
    }
    // Together they bring the student's distribution towards the teacher's (1.02 -> 0.91
    // when written).
    let kl_end = kl(&student);
    assert!(kl_end < 0.95 * kl_start, "KL {kl_start} -> {kl_end}");
}

/// candle's logits vs marill-std's plaintext model on the exported file.
/// A split file's public layer count, and the largest difference between the last
/// position's logits of its plaintext model (marill-std) and of `model` (candle) on a fixed
/// prompt.
fn file_against_candle(f: &ModelFile<'_>, model: &Model) -> (usize, f64) {
    let meta = ModelMeta::decode(f.find_section(SectionKind::Metadata, false).unwrap().bytes).unwrap();
    let arch = Arch::from_meta(&meta).unwrap();
    let tokens: Vec<u32> = data::encode("abcd where = q.").unwrap();
    let x = Tensor::new(tokens.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let want = model.forward(&x, false).unwrap().logits.to_dtype(DType::F32).unwrap();
    let want = want.get(0).unwrap().to_vec2::<f32>().unwrap();
    let mut plain = PlainModel::load(f, arch.clone(), 0, arch.n_layers, true).unwrap();
    let mut h = plain.embed(&tokens).unwrap();
    plain.layers(&mut h, tokens.len()).unwrap();
    let got = plain.logits(&h).unwrap();
    let err = got.iter().zip(want.last().unwrap()).map(|(a, b)| (a - f64::from(*b)).abs()).fold(0.0, f64::max);
    (arch.n_public, err)
}

fn export_matches(student: &Model, r: &Recipe) {
    let tok = data::tokenizer_json();
    let info =
        ExportInfo { recipe: r, distilled: false, tokenizer_json: Some(&tok), frac_bits: 16, notes: String::new() };
    let bytes = export(student, &info).unwrap();
    let f = ModelFile::parse(&bytes).unwrap();
    let (n_public, err) = file_against_candle(&f, student);
    assert_eq!(n_public, r.n_public(student.cfg.n_layers + r.layer_prune));
    assert!(err < 1e-4, "{}: max logit error {err}", r.label());
    // Private exactly what trained: the client's part never holds a trained tensor.
    for (name, p) in &student.params {
        let private = f.tensor(name).unwrap().private;
        assert_eq!(private, matches!(p, Param::Train(_)) || name.contains(".lora_"), "{}: {name}", r.label());
    }
}

#[test]
fn export_gives_the_runtime_candle_logits() {
    marill_train::progress::set_quiet(true);
    let base = tiny();
    let b = batch();
    let mut recipes =
        vec![recipe(1.0, 0, 1), recipe(0.5, 0, 1), recipe(0.5, 4, 1), recipe(0.5, 0, 4), recipe(1.0, 0, 2)];
    let mut mpc = recipe(0.75, 0, 2);
    mpc.relu = true;
    mpc.two_relu = true;
    recipes.push(mpc);
    let mut pruned = recipe(1.0, 0, 1);
    pruned.head_prune = 2;
    pruned.layer_prune = 1;
    recipes.push(pruned);
    for r in recipes {
        let student = r.apply(&base, Some(&b.input), 1).unwrap();
        // A few steps so that LoRA's B and the private weights are not the base's.
        let opts = Opts { steps: 2, lr: 1e-2, weight_decay: 0.0 };
        train::train(&student, opts, Objective::Nll, "e", |_| Ok(batch())).unwrap();
        export_matches(&student, &r);
    }
    // Head pruning with frozen public layers cannot be described by the file.
    let mut bad = recipe(0.5, 0, 1);
    bad.head_prune = 2;
    let student = bad.apply(&base, Some(&b.input), 1).unwrap();
    let info = ExportInfo { recipe: &bad, distilled: false, tokenizer_json: None, frac_bits: 16, notes: String::new() };
    assert!(export(&student, &info).is_err());
}

#[test]
fn attention_and_mlp_gradients_match_finite_differences() {
    // A small model with weights scaled ×3 so that attention is far from uniform; central
    // differences in f32 (ε = 2e-3) agree with backprop to 1e-3 + 5 % (measured ≤ 2 %).
    let cfg = Config {
        vocab: data::VOCAB,
        d: 16,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 4,
        ffn: 24,
        rope_base: 10000.0,
        rms_eps: 1e-5,
        tie_embeddings: true,
        qkv_bias: false,
        sliding_window: None,
    };
    let dev = Device::Cpu;
    let m = Model::init(&cfg, 3, &dev).unwrap();
    for (_, v) in m.vars() {
        v.set(&(v.as_tensor() * 3.0).unwrap()).unwrap();
    }
    let b = data::batch(&examples(4), false, &dev).unwrap();
    let loss = |m: &Model| f64::from(train::loss(m, &b, Objective::Nll).unwrap().to_scalar::<f32>().unwrap());
    let grads = train::loss(&m, &b, Objective::Nll).unwrap().backward().unwrap();
    for name in [
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.self_attn.k_proj.weight",
        "model.layers.0.self_attn.v_proj.weight",
        "model.layers.1.self_attn.o_proj.weight",
        "model.layers.1.mlp.gate_proj.weight",
        "model.layers.0.input_layernorm.weight",
        "model.embed_tokens.weight",
    ] {
        let v = m.vars().into_iter().find(|x| x.0 == name).unwrap().1;
        let g = grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let orig = v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let shape = v.as_tensor().shape().clone();
        let at = |vals: Vec<f32>| {
            v.set(&Tensor::from_vec(vals, &shape, &dev).unwrap()).unwrap();
            loss(&m)
        };
        for i in [0usize, 5, 11] {
            let eps = 2e-3f32;
            let (mut p, mut q) = (orig.clone(), orig.clone());
            p[i] += eps;
            q[i] -= eps;
            let numeric = (at(p) - at(q)) / (2.0 * f64::from(eps));
            at(orig.clone());
            let analytic = f64::from(g[i]);
            assert!(
                (analytic - numeric).abs() <= 1e-3 + 0.05 * numeric.abs(),
                "{name}[{i}]: backprop {analytic}, finite differences {numeric}"
            );
        }
    }
}

/// The architecture seam's first proving feature through marill-train: a base with q, k and
/// v biases trains them where the recipe trains the layer (full fine-tuning, LF 0.5, head
/// merging, whose head permutation moves the biases with the rows), freezes them under
/// LoRA, exports a `qwen2` file whose plaintext logits are candle's (1e-4) and whose secure
/// generation in 2PC-Dealer and 3PC gives the plaintext model's tokens.
#[test]
fn qkv_biases_train_export_and_run_securely() {
    use marill_std::model::names;
    marill_train::progress::set_quiet(true);
    let base = tiny_family(true);
    let b = batch();
    for r in [recipe(1.0, 0, 1), recipe(0.5, 0, 1), recipe(0.5, 4, 1), recipe(0.5, 0, 2)] {
        let student = r.apply(&base, Some(&b.input), 1).unwrap();
        let before = student.get(&names::proj_bias(3, "k")).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let opts = Opts { steps: 2, lr: 1e-2, weight_decay: 0.0 };
        train::train(&student, opts, Objective::Nll, "b", |_| Ok(batch())).unwrap();
        let after = student.get(&names::proj_bias(3, "k")).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let moved = before.iter().zip(&after).any(|(x, y)| x != y);
        assert_eq!(moved, r.lora_rank == 0, "{}: a private layer's bias trains unless LoRA", r.label());
        export_matches(&student, &r);
        let meta = export_and_run_securely(&student, &r, "abcd where");
        assert_eq!(meta.arch, "qwen2");
    }
}

/// The seam's second proving feature through marill-train: a base whose attention sees a
/// sliding window of 5 keys (Mistral's) trains under LF 0.5 and full fine-tuning, exports a
/// `mistral` file whose plaintext logits are candle's (1e-4; the window changes them) and
/// whose secure generation gives the plaintext model's tokens in 2PC-Dealer and 3PC.
#[test]
fn a_sliding_window_trains_exports_and_runs_securely() {
    marill_train::progress::set_quiet(true);
    let base = tiny_with(false, Some(5));
    let b = batch();
    assert!(b.input.dims()[1] > 5, "the batch's sequences must be longer than the window");
    let causal = Model { cfg: Config { sliding_window: None, ..base.cfg.clone() }, ..base.clone() };
    assert!(max_diff(&logits(&base, &b), &logits(&causal, &b)) > 1e-3, "the window changes the function");
    for r in [recipe(1.0, 0, 1), recipe(0.5, 0, 1)] {
        let student = r.apply(&base, Some(&b.input), 1).unwrap();
        let opts = Opts { steps: 2, lr: 1e-2, weight_decay: 0.0 };
        train::train(&student, opts, Objective::Nll, "w", |_| Ok(batch())).unwrap();
        export_matches(&student, &r);
        assert!(data::encode("abcd where = q").unwrap().len() > 5);
        let meta = export_and_run_securely(&student, &r, "abcd where = q");
        assert_eq!((meta.arch.as_str(), meta.sliding_window), ("mistral", 5));
    }
}

/// Hugging Face checkpoints of the three families round-trip: a base with q/k/v biases is
/// saved as `qwen2`, one with a sliding window as `mistral` (its window in `config.json`),
/// and each loads back to the same config and the same logits; a bias under a `llama`
/// config is refused.
#[test]
fn hf_checkpoints_of_each_family_round_trip() {
    use marill_train::load::{load_hf, save_hf};
    let b = batch();
    for (bias, window, family) in [(false, None, "llama"), (true, None, "qwen2"), (false, Some(5), "mistral")] {
        let m = tiny_with(bias, window);
        let dir = std::env::temp_dir().join(format!("marill-hf-{family}-{}", std::process::id()));
        save_hf(&m, &dir, None).unwrap();
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let j: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(j["model_type"], family);
        let back = load_hf(&dir, &Device::Cpu).unwrap().model;
        assert_eq!(back.cfg, m.cfg, "{family}");
        assert_eq!(max_diff(&logits(&back, &b), &logits(&m, &b)), 0.0, "{family}");
        if bias {
            // The same tensors under a llama config: the biases are refused, not ignored.
            let mut j = j.clone();
            j["model_type"] = "llama".into();
            std::fs::write(dir.join("config.json"), j.to_string()).unwrap();
            let e = load_hf(&dir, &Device::Cpu).err().unwrap().to_string();
            assert!(e.contains("bias"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Export `student` (recipe `r`), then generate 6 tokens after `prompt` in 2PC-Dealer and
/// 3PC: the plaintext model's tokens (at most one near-tie each). Returns the metadata.
fn export_and_run_securely(student: &Model, r: &Recipe, prompt: &str) -> ModelMeta {
    use marill_std::Setting;
    use marill_std::model::check::{SecureGeneration, teacher_forced};
    use marill_std::model_file::extract_public;
    use marill_std::run::run_mem;
    let info = ExportInfo { recipe: r, distilled: false, tokenizer_json: None, frac_bits: 16, notes: String::new() };
    let server = export(student, &info).unwrap();
    let f = ModelFile::parse(&server).unwrap();
    let meta = ModelMeta::decode(f.find_section(SectionKind::Metadata, false).unwrap().bytes).unwrap();
    let client = extract_public(&server).unwrap();
    let prompt: Vec<u32> = data::encode(prompt).unwrap();
    for setting in [Setting::Dealer, Setting::Rep3] {
        let g = SecureGeneration { server: &server, client: &client, prompt: prompt.clone(), new_tokens: 6 };
        let out = run_mem(setting, &g).unwrap();
        let ties = teacher_forced(&server, &prompt, &out[0].0, 0.05).unwrap();
        assert!(ties <= 1, "{} {setting:?}: {ties} near-ties", r.label());
    }
    meta
}

/// The command line (clap): `marill-train export` writes a split file of a checkpoint with the
/// asked-for public layers, whose plaintext model gives candle's logits; usage errors (no
/// checkpoint, both checkpoints, a bad value) exit with 2 and name the flag; `--help` lists
/// the recipe flags.
#[test]
fn the_command_line_exports_a_checkpoint_and_refuses_bad_usage() {
    use std::process::Command;
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_marill-train")).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let m = tiny();
    let dir = std::env::temp_dir().join(format!("marill-train-cli-{}", std::process::id()));
    marill_train::load::save_hf(&m, &dir, None).unwrap();
    let file = dir.join("split.marill");
    let (d, f) = (dir.to_str().unwrap(), file.to_str().unwrap());
    let (code, out, err) = run(&["export", "--base", d, "--out", f, "--lf", "0.5"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("2 public layers of 4"), "{out}");
    let bytes = std::fs::read(&file).unwrap();
    let (n_public, err) = file_against_candle(&ModelFile::parse(&bytes).unwrap(), &m);
    assert_eq!(n_public, 2);
    assert!(err < 1e-4, "max logit error {err}");

    let (code, _, err) = run(&["export", "--out", f]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--gguf") && err.contains("--base"), "{err}");
    let (code, _, err) = run(&["export", "--base", d, "--gguf", f, "--out", f]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot be used with"), "{err}");
    let (code, _, err) = run(&["finetune", "--grouping", "random"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("'random' for '--grouping") && err.contains("adjacent"), "{err}");
    let (code, help, _) = run(&["finetune", "--help"]);
    assert_eq!(code, Some(0));
    for flag in
        ["--lf", "--lora", "--alpha", "--hm", "--grouping", "--head-prune", "--layer-prune", "--relu", "--2relu"]
    {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
