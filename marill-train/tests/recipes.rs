//! The recipes follow the paper's Appendix G, and the embedded pipeline's bookkeeping is
//! honest: merged and pruned students start from the fine-tuned model they reshape (its
//! weights unchanged before stage I), head pruning runs stage I, the base cache is keyed on
//! every setting that changes the base, and the teacher-forced exact match equals greedy
//! decoding's.
#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device, Tensor};
use marill_train::data::{self, World};
use marill_train::embedded::{self, Budget};
use marill_train::model::{Config, Model};
use marill_train::recipe::{Grouping, Recipe};
use marill_train::train::{self, Objective, Opts};

/// The allocator the marill-train binary uses (candle allocates a buffer per tensor op).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn tiny() -> Model {
    let cfg = Config {
        vocab: data::VOCAB,
        d: 32,
        n_layers: 4,
        n_heads: 8,
        n_kv_heads: 8,
        head_dim: 4,
        ffn: 48,
        rope_base: 10000.0,
        rms_eps: 1e-5,
        tie_embeddings: true,
        qkv_bias: false,
        sliding_window: None,
    };
    Model::init(&cfg, 11, &Device::Cpu).unwrap()
}

/// `m` trained a few steps on the task, as a frozen model (a stand-in for a fine-tuned one).
fn trained(m: &Model, task: &embedded::Task) -> Model {
    let s = Recipe::full().apply(m, None, 1).unwrap();
    let opts = Opts { steps: 5, lr: 1e-2, weight_decay: 0.0 };
    train::train(&s, opts, Objective::Nll, "t", |_| data::batch(&task.train, true, &Device::Cpu)).unwrap();
    s.frozen_copy().unwrap()
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.dims() == b.dims()
        && (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap() == 0.0
}

#[test]
fn merged_and_pruned_students_start_from_the_model_app_g_names() {
    let r = Recipe::new;
    assert_eq!(r(1.0, 0, 4).starts_from(), Some(Recipe::full()));
    assert_eq!(r(0.5, 0, 4).starts_from(), Some(r(0.5, 0, 1)));
    let mut hp = r(1.0, 0, 1);
    hp.head_prune = 6;
    assert_eq!(hp.starts_from(), Some(Recipe::full()));
    assert!(hp.needs_stage1(), "head pruning follows the head-merging recipe: stage I");
    for plain in [r(0.5, 0, 1), r(1.0, 8, 1), r(0.5, 8, 1)] {
        assert_eq!(plain.starts_from(), None, "{}", plain.label());
        assert!(!plain.needs_stage1());
    }
    let mut lp = r(1.0, 0, 1);
    lp.layer_prune = 2;
    assert_eq!(lp.starts_from(), None);

    // The merged student holds the teacher's weights, heads permuted into groups.
    marill_train::progress::set_quiet(true);
    let task = embedded::task(1, 1);
    let teacher = trained(&tiny(), &task);
    let calib = data::batch(&task.train[..16], false, &Device::Cpu).unwrap().input;
    let s = r(1.0, 0, 4).apply(&teacher, Some(&calib), 1).unwrap();
    for (name, p) in &teacher.params {
        let t = p.tensor();
        let st = s.get(name).unwrap();
        if name.contains(".self_attn.") && !name.ends_with("norm.weight") {
            // Same multiset of values: a permutation of rows (q, k, v) or columns (o).
            let mut a = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mut b = st.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            a.sort_by(f32::total_cmp);
            b.sort_by(f32::total_cmp);
            assert_eq!(a, b, "{name}");
        } else {
            assert!(same(t, st), "{name} differs from the teacher's before stage I");
        }
    }
    // Before any training, merging changes the function (that is what stage I repairs) but
    // keeps every parameter.
    assert_eq!(s.count().1, teacher.count().1);

    // LF + HM starts from the LF student: its public layers stay the student's.
    let lf = r(0.5, 0, 1).apply(&tiny(), None, 1).unwrap();
    let lfhm = r(0.5, 0, 4).apply(&lf, Some(&calib), 1).unwrap();
    assert_eq!(lfhm.n_public, 2);
    for (name, p) in &lf.params {
        if marill_train::recipe::layer_of(name).is_some_and(|l| l < 2) {
            assert!(same(p.tensor(), lfhm.get(name).unwrap()), "{name}");
        }
    }
    // A recipe of another fraction cannot start from that student.
    assert!(r(0.25, 0, 4).apply(&lf, Some(&calib), 1).is_err());
}

#[test]
fn head_pruning_and_merging_run_stage_one_and_report_the_kl_after_reshaping() {
    marill_train::progress::set_quiet(true);
    let mut budget = Budget::quick();
    budget.stop.max_steps = 4;
    budget.stop.every = 2;
    let task = embedded::task(1, 2);
    let base = tiny();
    let teacher = trained(&base, &task);
    let r = Recipe::new;
    let mut hp = r(1.0, 0, 1);
    hp.head_prune = 6;
    let mut adj = r(1.0, 0, 4);
    adj.grouping = Grouping::Adjacent;
    for recipe in [hp, adj, r(1.0, 0, 4)] {
        let t = embedded::finetune(&teacher, &recipe, Some(&teacher), &task, 2, budget).unwrap();
        let stages: Vec<&str> = t.stages.iter().map(|s| s.0).collect();
        assert_eq!(stages, ["I", "II"], "{}", recipe.label());
        let kl = t.kl_after_reshape.unwrap();
        assert!(kl.is_finite() && kl > 0.0, "{}: KL {kl}", recipe.label());
    }
    let t = embedded::finetune(&base, &r(0.5, 0, 1), Some(&teacher), &task, 2, budget).unwrap();
    assert_eq!(t.stages.iter().map(|s| s.0).collect::<Vec<_>>(), ["II"]);
    assert!(t.kl_after_reshape.is_none());
}

#[test]
fn the_base_cache_is_keyed_on_every_setting_that_changes_the_base() {
    marill_train::progress::set_quiet(true);
    let dir = std::env::temp_dir().join(format!("marill-base-key-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut b = Budget::quick();
    b.pretrain = 3;
    let dev = Device::Cpu;
    let emb = |m: &Model| m.get("model.embed_tokens.weight").unwrap().to_dtype(DType::F32).unwrap();
    let a = embedded::cached_base(&dir, 1, b, &dev).unwrap();
    let key = std::fs::read_to_string(dir.join("base.key")).unwrap();
    // The same settings load the cache (bit-identical weights, key unchanged).
    let again = embedded::cached_base(&dir, 1, b, &dev).unwrap();
    assert!(same(&emb(&a), &emb(&again)));
    // Another seed, another step count: pretrained afresh.
    let other = embedded::cached_base(&dir, 2, b, &dev).unwrap();
    assert!(!same(&emb(&a), &emb(&other)));
    let mut longer = b;
    longer.pretrain = 4;
    embedded::cached_base(&dir, 2, longer, &dev).unwrap();
    let key2 = std::fs::read_to_string(dir.join("base.key")).unwrap();
    assert_ne!(key, key2);
    assert!(key2.contains("\"seed\":2") && key2.contains("\"pretrain\":4") && key2.contains("\"corpus\""));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn teacher_forced_exact_match_equals_greedy_decoding() {
    marill_train::progress::set_quiet(true);
    let task = embedded::task(1, 3);
    let m = trained(&tiny(), &task);
    let world = World::new(1);
    let mut ex = task.test.clone();
    ex.extend(world.all_facts().into_iter().take(64));
    // A model that gets some right and some wrong makes the comparison meaningful.
    let (acc, nll) = train::score(&m, &ex).unwrap();
    assert_eq!(acc, train::accuracy(&m, &ex).unwrap());
    assert!(nll.is_finite() && nll > 0.0);
    // On the training examples of a model trained on them, both agree too.
    assert_eq!(train::score(&m, &task.train).unwrap().0, train::accuracy(&m, &task.train).unwrap());
}
