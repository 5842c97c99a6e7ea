//! `marill-train`: pretrain the embedded default, fine-tune with MARILL recipes, evaluate,
//! export split-model files, import checkpoints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use candle_core::Device;
use marill_train::embedded::{self, Budget};
use marill_train::export::{ExportInfo, export, split_pretrained};
use marill_train::recipe::{Grouping, Recipe};
use marill_train::{Error, Result, chat, data, load, train};

const HELP: &str = "\
marill-train: MARILL fine-tuning on candle

USAGE:
  marill-train pretrain  [--out DIR] [--steps N] [--seed S]
      Pretrain the embedded default base on the facts of its invented world and generic
      skills (Hugging Face layout); report its fact recall and zero-shot task accuracy.
  marill-train finetune  [--base DIR] [--out FILE] [RECIPE] [--max-steps N] [--no-distill]
                         [--seed S]
      Fine-tune the base (default: the embedded base, pretrained or cached in
      .cache/marill/base) on the embedded private task (seed S splits the entities),
      training until the validation loss stops improving; report exact-match accuracy and
      answer NLL on the test entities and write the server's split-model file. Recipes
      follow the paper's App. G: non-full recipes distil from a fully fine-tuned teacher
      unless --no-distill; head merging and pruning start from the teacher (or the LF
      student) and add distillation stage I (with --public-transfer, half of each stage-I
      batch is public pretraining lines instead of private prompts).
  marill-train pipeline  [--out DIR] [--base DIR] [--seeds N] [--seed S] [--max-steps N]
                         [--patience P] [--pretrain-steps N] [--min-recall R]
                         [--public-transfer]
      The demo's training half: the base (cached; refused when it recalls under R of its
      facts, default 0.9), then for seeds S..S+N: zero-shot, a model trained from scratch
      on the private data, full fine-tuning (teacher), LoRA 8, LF 0.75/0.5/0.25, LF+LoRA,
      HM 4, LF+HM and the ablations (adjacent HM, head pruning, layer pruning), each to
      convergence; prints the quality table (mean ± sd over seeds), writes the first
      seed's DIR/<variant>.marill and DIR/quality.json.
  marill-train finetune-chat (--gguf FILE | --base DIR) --data FILE.jsonl [--category C] [RECIPE]
                         [--steps N] [--batch B] [--max-len L] [--lr LR] [--distill]
                         [--teacher-lr LR] [--teacher-cache DIR] [--out FILE]
      The real-data recipe: fine-tune a checkpoint on ChatML pairs (JSON lines with prompt,
      answer and conversation; scripts/fetch-chatterbot.sh writes the chatterbot corpus so;
      duplicates dropped, a tenth of the conversations held out whole), report the held-out
      answer NLL before and after, write the split-model file. --lr defaults by recipe
      (1e-3 with LoRA, else 1e-4); the --distill teacher (full fine-tuning at --teacher-lr,
      default 1e-4) is cached in DIR (default .cache/marill/chat-teacher).
  marill-train study     (--gguf FILE | --base DIR) --data FILE.jsonl [--category C] [--pairs N]
                         [--max-steps N] [--every N] [--patience P] [--batch B] [--lr LR]
                         [--hm M] [--max-len L] [--out DIR]
      The real-model quality study: zero-shot, full fine-tuning (the teacher, cached in
      .cache/marill/study-teacher), LF 0.5, LoRA 8, HM M, LF+HM, LF+LoRA, adjacent HM, head
      pruning and layer pruning (App. G recipes), each until the validation answer NLL
      stops improving; conversations split 80/10/10; held-out answer NLL, token accuracy
      and the share of full fine-tuning's gain; writes DIR/study.json and split files.
  marill-train eval      --base DIR [--prompt TEXT] [--max-new N] [--chat] [--seed S]
      Greedy generation from a checkpoint; without --prompt, the embedded task's accuracy
      on the test entities of split S (world of the default base).
  marill-train export    (--base DIR | --gguf FILE) --out FILE [--lf F] [--frac-bits B]
      A pretrained checkpoint as a split-model file: the bottom (1-F) of the layers and the
      embedding public, the rest private (no training).
  marill-train import    --gguf FILE --out DIR
      A GGUF checkpoint (llama, any candle-supported quantisation) as a Hugging Face
      directory (dequantized f32 safetensors, config.json, tokenizer.json).

RECIPE flags (combinable):
  --lf F            train the top fraction F of the layers (default 1: all)
  --lora R          unmerged LoRA of rank R on q,k,v,o,gate,up,down (--alpha A, default 2R)
  --hm M            merge heads by M (--grouping similarity|adjacent, default similarity)
  --head-prune P    prune P heads per private layer (ablation)
  --layer-prune L   drop the top L layers (ablation)
  --relu            ReLU instead of SiLU in private layers
  --2relu           2ReLU instead of softmax in private layers

Progress goes to stderr (set MARILL_QUIET=1 to silence it). Runs on the CPU; build with
--features cuda for a GPU.
";

struct Args(Vec<String>);

impl Args {
    fn flag(&mut self, name: &str) -> bool {
        match self.0.iter().position(|a| a == name) {
            Some(i) => {
                self.0.remove(i);
                true
            }
            None => false,
        }
    }
    fn value(&mut self, name: &str) -> Result<Option<String>> {
        match self.0.iter().position(|a| a == name) {
            Some(i) if i + 1 < self.0.len() => {
                let v = self.0.remove(i + 1);
                self.0.remove(i);
                Ok(Some(v))
            }
            Some(_) => Err(Error::Config(format!("{name} needs a value"))),
            None => Ok(None),
        }
    }
    fn parse<T: std::str::FromStr>(&mut self, name: &str, default: T) -> Result<T> {
        match self.value(name)? {
            Some(v) => v.parse().map_err(|_| Error::Config(format!("{name}: cannot parse {v:?}"))),
            None => Ok(default),
        }
    }
    fn done(&self) -> Result<()> {
        match self.0.first() {
            Some(a) => Err(Error::Config(format!("unexpected argument {a:?} (see --help)"))),
            None => Ok(()),
        }
    }
}

fn recipe(a: &mut Args) -> Result<Recipe> {
    let mut r = Recipe::full();
    r.trained_fraction = a.parse("--lf", 1.0)?;
    r.lora_rank = a.parse("--lora", 0)?;
    r.lora_alpha = a.parse("--alpha", 2.0 * r.lora_rank as f32)?;
    r.head_merge = a.parse("--hm", 1)?;
    r.grouping = match a.value("--grouping")?.as_deref() {
        None | Some("similarity") => Grouping::Similarity,
        Some("adjacent") => Grouping::Adjacent,
        Some(g) => return Err(Error::Config(format!("--grouping {g}: similarity or adjacent"))),
    };
    r.head_prune = a.parse("--head-prune", 0)?;
    r.layer_prune = a.parse("--layer-prune", 0)?;
    r.relu = a.flag("--relu");
    r.two_relu = a.flag("--2relu");
    Ok(r)
}

/// The checkpoint named by `--gguf FILE` or `--base DIR` (exactly one).
fn checkpoint(a: &mut Args, cmd: &str, dev: &Device) -> Result<load::Loaded> {
    match (a.value("--gguf")?, a.value("--base")?) {
        (Some(g), None) => load::load_gguf(std::path::Path::new(&g), dev),
        (None, Some(b)) => load::load_hf(std::path::Path::new(&b), dev),
        _ => Err(Error::Config(format!("{cmd} needs exactly one of --gguf FILE, --base DIR"))),
    }
}

fn device() -> Result<Device> {
    #[cfg(feature = "cuda")]
    {
        return Ok(Device::new_cuda(0)?);
    }
    #[allow(unreachable_code)]
    Ok(Device::Cpu)
}

fn default_base_dir() -> PathBuf {
    PathBuf::from(".cache/marill/base")
}

fn run(mut a: Args) -> Result<()> {
    let cmd = if a.0.is_empty() { String::from("--help") } else { a.0.remove(0) };
    let dev = device()?;
    match cmd.as_str() {
        "-h" | "--help" | "help" => {
            print!("{HELP}");
            Ok(())
        }
        "pretrain" => {
            let out = a.value("--out")?.map_or_else(default_base_dir, PathBuf::from);
            let mut budget = Budget::demo();
            budget.pretrain = a.parse("--steps", budget.pretrain)?;
            let seed = a.parse("--seed", 1u64)?;
            a.done()?;
            let t = Instant::now();
            let m = embedded::pretrain(seed, budget, &dev)?;
            load::save_hf(&m, &out, Some(&data::tokenizer_json()))?;
            std::fs::write(out.join("base.key"), embedded::cache_key(seed, budget))?;
            let world = data::World::new(seed);
            let task = embedded::task(seed, seed);
            let (zs, _) = train::score(&m, &task.test)?;
            println!(
                "pretrained in {:.1}s; recalls {:.3} of {} facts; zero-shot task accuracy {zs:.3}; saved {}",
                t.elapsed().as_secs_f64(),
                embedded::recall(&m, &world)?,
                2 * world.names.len(),
                out.display()
            );
            Ok(())
        }
        "pipeline" => {
            let out = PathBuf::from(a.value("--out")?.unwrap_or_else(|| ".cache/marill/demo".into()));
            let base_dir = a.value("--base")?.map_or_else(default_base_dir, PathBuf::from);
            let mut budget = Budget::demo();
            budget.stop.max_steps = a.parse("--max-steps", budget.stop.max_steps)?;
            budget.stop.patience = a.parse("--patience", budget.stop.patience)?;
            budget.pretrain = a.parse("--pretrain-steps", budget.pretrain)?;
            budget.min_recall = a.parse("--min-recall", budget.min_recall)?;
            budget.public_transfer = a.flag("--public-transfer");
            let seed = a.parse("--seed", 1u64)?;
            let n_seeds = a.parse("--seeds", 1u64)?;
            a.done()?;
            if n_seeds == 0 {
                return Err(Error::Config("--seeds must be at least 1".into()));
            }
            let seeds: Vec<u64> = (0..n_seeds).map(|i| seed + i).collect();
            let opts = embedded::PipelineOpts {
                out_dir: &out,
                base_dir: &base_dir,
                base_seed: 1,
                seeds: &seeds,
                budget,
                recipes: embedded::demo_recipes(),
            };
            embedded::pipeline(&opts, &dev)?;
            println!("wrote {}/*.marill and quality.json", out.display());
            Ok(())
        }
        "finetune-chat" => {
            let data = a.value("--data")?.ok_or_else(|| Error::Config("finetune-chat needs --data FILE".into()))?;
            let out = a.value("--out")?.map(PathBuf::from);
            let category = a.value("--category")?;
            let steps = a.parse("--steps", 40usize)?;
            let bs = a.parse("--batch", 4usize)?;
            let max_len = a.parse("--max-len", 96usize)?;
            let lr = a.parse("--lr", 0f64)?;
            let teacher_lr = a.parse("--teacher-lr", 1e-4f64)?;
            let seed = a.parse("--seed", 1u64)?;
            let distill = a.flag("--distill");
            let teacher_cache =
                a.value("--teacher-cache")?.map_or_else(|| PathBuf::from(".cache/marill/chat-teacher"), PathBuf::from);
            let source = format!("{:?}", a.0);
            let l = checkpoint(&mut a, "finetune-chat", &dev)?;
            let r = recipe(&mut a)?;
            a.done()?;
            // Per-recipe learning rates: LoRA factors take a larger one than full weights.
            let lr = if lr > 0.0 {
                lr
            } else if r.lora_rank > 0 {
                1e-3
            } else {
                1e-4
            };
            let tok = l.tokenizer.ok_or_else(|| Error::Config("the checkpoint has no tokenizer".into()))?;
            let pairs = chat::load_pairs(std::path::Path::new(&data), &tok, max_len, category.as_deref())?;
            // A tenth of the conversations is held out whole.
            let (train_pairs, held) = chat::split_by_conversation(pairs);
            println!("{} training pairs, {} held out (whole conversations)", train_pairs.len(), held.len());
            let before = chat::answer_nll(&l.model, &held, bs)?;
            let opts = train::Opts { steps, lr, weight_decay: 0.0 };
            let t = Instant::now();
            let teacher = if distill && !r.is_full() {
                // The teacher is trained once per (checkpoint, data, settings) and cached.
                let key = format!("{source} {data} {category:?} {steps} {bs} {max_len} {teacher_lr} {seed}");
                let digest = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(key.as_bytes()));
                let dir = teacher_cache.join(digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>());
                if dir.join("config.json").exists() {
                    eprintln!("teacher: cached in {}", dir.display());
                    Some(load::load_hf(&dir, &dev)?.model)
                } else {
                    let o = train::Opts { lr: teacher_lr, ..opts };
                    let t =
                        chat::finetune(&l.model, &Recipe::full(), &train_pairs, None, o, bs, seed)?.frozen_copy()?;
                    load::save_hf(&t, &dir, l.tokenizer_json.as_deref())?;
                    Some(t)
                }
            } else {
                None
            };
            let m = chat::finetune(&l.model, &r, &train_pairs, teacher.as_ref(), opts, bs, seed)?;
            let after = chat::answer_nll(&m, &held, bs)?;
            let (trained, all) = m.count();
            println!(
                "{}: held-out answer NLL {before:.3} -> {after:.3} nats/token ({:.1}s; {trained} of {all} weights trained)",
                r.label(),
                t.elapsed().as_secs_f64()
            );
            if let Some(out) = out {
                let info = ExportInfo {
                    recipe: &r,
                    distilled: teacher.is_some(),
                    tokenizer_json: l.tokenizer_json.as_deref(),
                    frac_bits: 16,
                    notes: format!("chat fine-tuning on {data}: held-out answer NLL {before:.3} -> {after:.3}"),
                };
                std::fs::write(&out, export(&m, &info)?)?;
                println!("wrote {}", out.display());
            }
            Ok(())
        }
        "study" => {
            let data = a.value("--data")?.ok_or_else(|| Error::Config("study needs --data FILE".into()))?;
            let out = PathBuf::from(a.value("--out")?.unwrap_or_else(|| ".cache/marill/study".into()));
            let category = a.value("--category")?;
            let max_len = a.parse("--max-len", 96usize)?;
            let limit = a.parse("--pairs", usize::MAX)?;
            let mut o = marill_train::study::StudyOpts::default();
            o.stop.max_steps = a.parse("--max-steps", o.stop.max_steps)?;
            o.stop.every = a.parse("--every", o.stop.every)?;
            o.stop.patience = a.parse("--patience", o.stop.patience)?;
            o.batch = a.parse("--batch", o.batch)?;
            o.lr = a.parse("--lr", o.lr)?;
            o.hm = a.parse("--hm", o.hm)?;
            o.seed = a.parse("--seed", o.seed)?;
            let source = format!("{:?}", a.0);
            let l = checkpoint(&mut a, "study", &dev)?;
            a.done()?;
            let tok = l.tokenizer.ok_or_else(|| Error::Config("the checkpoint has no tokenizer".into()))?;
            let mut pairs = chat::load_pairs(std::path::Path::new(&data), &tok, max_len, category.as_deref())?;
            pairs.truncate(limit);
            let key =
                format!("{source} {data} {category:?} {max_len} {limit} {:?} {} {} {}", o.stop, o.batch, o.lr, o.seed);
            let digest = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(key.as_bytes()));
            let teacher_dir = PathBuf::from(".cache/marill/study-teacher")
                .join(digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>());
            let t = Instant::now();
            marill_train::study::run(&l.model, l.tokenizer_json.as_deref(), pairs, &teacher_dir, &out, &o)?;
            println!(
                "study done in {:.0} s; wrote {}/study.json and the split files",
                t.elapsed().as_secs_f64(),
                out.display()
            );
            Ok(())
        }
        "finetune" => {
            let base_dir = a.value("--base")?.map_or_else(default_base_dir, PathBuf::from);
            let out = a.value("--out")?.map(PathBuf::from);
            let mut budget = Budget::demo();
            budget.stop.max_steps = a.parse("--max-steps", budget.stop.max_steps)?;
            budget.pretrain = a.parse("--pretrain-steps", budget.pretrain)?;
            budget.public_transfer = a.flag("--public-transfer");
            let distill = !a.flag("--no-distill");
            let seed = a.parse("--seed", 1u64)?;
            let r = recipe(&mut a)?;
            a.done()?;
            let base = embedded::cached_base(&base_dir, 1, budget, &dev)?;
            let task = embedded::task(1, seed);
            let teacher = if (distill && !r.is_full()) || r.starts_from().is_some() {
                Some(embedded::finetune(&base, &Recipe::full(), None, &task, seed, budget)?.model.frozen_copy()?)
            } else {
                None
            };
            let start = match (r.starts_from(), &teacher) {
                (Some(f), Some(t)) if f.is_full() => t.frozen_copy()?,
                (Some(f), _) => {
                    embedded::finetune(&base, &f, teacher.as_ref(), &task, seed, budget)?.model.frozen_copy()?
                }
                (None, _) => base,
            };
            let m = embedded::finetune(&start, &r, if distill { teacher.as_ref() } else { None }, &task, seed, budget)?;
            let (acc, nll) = train::score(&m.model, &task.test)?;
            let (tr, all) = m.model.count();
            println!(
                "{}: accuracy {acc:.3}, answer NLL {nll:.3} on {} test prompts; {} steps; {tr} of {all} weights trained",
                r.label(),
                task.test.len(),
                m.steps()
            );
            if let Some(t) = &teacher {
                println!("teacher (full fine-tuning): accuracy {:.3}", train::score(t, &task.test)?.0);
            }
            if let Some(out) = out {
                let tok = data::tokenizer_json();
                let info = ExportInfo {
                    recipe: &r,
                    distilled: teacher.is_some(),
                    tokenizer_json: Some(&tok),
                    frac_bits: 16,
                    notes: format!("embedded task accuracy {acc:.4}"),
                };
                std::fs::write(&out, export(&m.model, &info)?)?;
                println!("wrote {}", out.display());
            }
            Ok(())
        }
        "eval" => {
            let base_dir = a.value("--base")?.map_or_else(default_base_dir, PathBuf::from);
            let prompt = a.value("--prompt")?;
            let max_new = a.parse("--max-new", 32usize)?;
            let chat = a.flag("--chat");
            let base_seed = a.parse("--world-seed", 1u64)?;
            let split_seed = a.parse("--seed", 1u64)?;
            a.done()?;
            let l = load::load_hf(&base_dir, &dev)?;
            match (prompt, l.tokenizer) {
                (Some(p), Some(tok)) => {
                    let text =
                        if chat { format!("<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n") } else { p };
                    let ids = tok.encode(&text)?;
                    let stop = tok.token_id("<|im_end|>");
                    let out = l.model.generate(&ids, max_new, stop)?;
                    println!("{}", tok.decode(&out, false)?);
                    Ok(())
                }
                (Some(_), None) => Err(Error::Config("the checkpoint has no tokenizer.json".into())),
                (None, _) => {
                    let task = embedded::task(base_seed, split_seed);
                    let (acc, nll) = train::score(&l.model, &task.test)?;
                    println!("task accuracy {acc:.3}, answer NLL {nll:.3} on {} test prompts", task.test.len());
                    Ok(())
                }
            }
        }
        "import" => {
            let gguf = a.value("--gguf")?.ok_or_else(|| Error::Config("import needs --gguf FILE".into()))?;
            let out = a.value("--out")?.ok_or_else(|| Error::Config("import needs --out DIR".into()))?;
            a.done()?;
            let l = load::load_gguf(std::path::Path::new(&gguf), &dev)?;
            load::save_hf(&l.model, std::path::Path::new(&out), l.tokenizer_json.as_deref())?;
            println!("wrote {out}");
            Ok(())
        }
        "export" => {
            let out = a.value("--out")?.ok_or_else(|| Error::Config("export needs --out FILE".into()))?;
            let lf: f64 = a.parse("--lf", 1.0)?;
            let frac_bits = a.parse("--frac-bits", 16u32)?;
            let l = checkpoint(&mut a, "export", &dev)?;
            a.done()?;
            let n = l.model.cfg.n_layers;
            std::fs::write(&out, split_pretrained(&l.model, lf, l.tokenizer_json.as_deref(), frac_bits)?)?;
            let np = Recipe { trained_fraction: lf, ..Recipe::full() }.n_public(n);
            println!("wrote {out}: {np} public layers of {n}");
            Ok(())
        }
        other => Err(Error::Config(format!("unknown command {other:?} (see --help)"))),
    }
}

fn main() -> ExitCode {
    match run(Args(std::env::args().skip(1).collect())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("marill-train: {e}");
            ExitCode::FAILURE
        }
    }
}
