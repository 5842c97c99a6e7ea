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
      Pretrain the embedded default base on the generated corpus (Hugging Face layout).
  marill-train finetune  [--base DIR] [--out FILE] [RECIPE] [--teacher-steps N] [--steps N]
                         [--stage1-steps N] [--no-distill] [--seed S]
      Fine-tune the base (default: the embedded base, pretrained or cached in
      .cache/marill/base) on the embedded private task, report exact-match accuracy and
      write the server's split-model file. Non-full recipes distil from a fully
      fine-tuned teacher unless --no-distill.
  marill-train pipeline  [--out DIR] [--base DIR] [--steps N] [--pretrain-steps N] [--seed S]
      The demo's training half: the base (cached), full fine-tuning, then LF=0.5, LoRA=8,
      HM=4, LF+HM, LF+LoRA and the ablations (adjacent HM, head pruning, layer pruning),
      distilled; prints the quality table, writes DIR/<variant>.marill and quality.json.
  marill-train finetune-chat (--gguf FILE | --base DIR) --data FILE.jsonl [--category C] [RECIPE]
                         [--steps N] [--batch B] [--max-len L] [--lr LR] [--distill] [--out FILE]
      The real-data recipe: fine-tune a checkpoint on ChatML pairs (JSON lines with prompt
      and answer; scripts/fetch-chatterbot.sh writes the chatterbot corpus so), report the
      held-out answer NLL before and after, write the split-model file.
  marill-train eval      --base DIR [--prompt TEXT] [--max-new N] [--chat]
      Greedy generation from a checkpoint; without --prompt, task accuracy.
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
            let (_, eval_set) = embedded::task(seed);
            let copy: Vec<data::Example> = eval_set
                .iter()
                .map(|(p, _)| {
                    let w = p.trim_start_matches("skip ").trim_end_matches(" =");
                    (format!("copy {w} ="), format!(" {w}."))
                })
                .collect();
            println!(
                "pretrained in {:.1}s; copy accuracy {:.3}; saved {}",
                t.elapsed().as_secs_f64(),
                train::accuracy(&m, &copy)?,
                out.display()
            );
            Ok(())
        }
        "pipeline" => {
            let out = PathBuf::from(a.value("--out")?.unwrap_or_else(|| ".cache/marill/demo".into()));
            let base_dir = a.value("--base")?.map_or_else(default_base_dir, PathBuf::from);
            let mut budget = Budget::demo();
            budget.finetune = a.parse("--steps", budget.finetune)?;
            budget.pretrain = a.parse("--pretrain-steps", budget.pretrain)?;
            let seed = a.parse("--seed", 1u64)?;
            a.done()?;
            embedded::pipeline(&out, &base_dir, seed, budget, &dev)?;
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
            let lr = a.parse("--lr", 1e-3f64)?;
            let seed = a.parse("--seed", 1u64)?;
            let distill = a.flag("--distill");
            let l = checkpoint(&mut a, "finetune-chat", &dev)?;
            let r = recipe(&mut a)?;
            a.done()?;
            let tok = l.tokenizer.ok_or_else(|| Error::Config("the checkpoint has no tokenizer".into()))?;
            let pairs = chat::load_pairs(std::path::Path::new(&data), &tok, max_len, category.as_deref())?;
            // Every tenth pair is held out.
            let (held, train_pairs): (Vec<_>, Vec<_>) = pairs.into_iter().enumerate().partition(|(i, _)| i % 10 == 0);
            let held: Vec<chat::Pair> = held.into_iter().map(|x| x.1).collect();
            let train_pairs: Vec<chat::Pair> = train_pairs.into_iter().map(|x| x.1).collect();
            println!("{} training pairs, {} held out", train_pairs.len(), held.len());
            let before = chat::answer_nll(&l.model, &held, bs)?;
            let opts = train::Opts { steps, lr, weight_decay: 0.0 };
            let t = Instant::now();
            let teacher = if distill && !r.is_full() {
                Some(chat::finetune(&l.model, &Recipe::full(), &train_pairs, None, opts, bs, seed)?.frozen_copy()?)
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
        "finetune" => {
            let base_dir = a.value("--base")?.map_or_else(default_base_dir, PathBuf::from);
            let out = a.value("--out")?.map(PathBuf::from);
            let mut budget = Budget::demo();
            budget.finetune = a.parse("--steps", budget.finetune)?;
            budget.stage1 = a.parse("--stage1-steps", budget.stage1)?;
            let teacher_steps = a.parse("--teacher-steps", budget.finetune)?;
            let distill = !a.flag("--no-distill");
            let seed = a.parse("--seed", 1u64)?;
            let r = recipe(&mut a)?;
            a.done()?;
            let base = embedded::cached_base(&base_dir, seed, budget, &dev)?;
            let (train_set, eval_set) = embedded::task(seed);
            let teacher = if distill && !r.is_full() {
                let b = Budget { finetune: teacher_steps, ..budget };
                Some(embedded::finetune(&base, &Recipe::full(), None, &train_set, seed, b)?)
            } else {
                None
            };
            let m = embedded::finetune(&base, &r, teacher.as_ref(), &train_set, seed, budget)?;
            let acc = train::accuracy(&m, &eval_set)?;
            let (tr, all) = m.count();
            println!(
                "{}: accuracy {acc:.3} on {} held-out prompts; {tr} of {all} weights trained",
                r.label(),
                eval_set.len()
            );
            if let Some(t) = &teacher {
                println!("teacher (full fine-tuning): accuracy {:.3}", train::accuracy(t, &eval_set)?);
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
                std::fs::write(&out, export(&m, &info)?)?;
                println!("wrote {}", out.display());
            }
            Ok(())
        }
        "eval" => {
            let base_dir = a.value("--base")?.map_or_else(default_base_dir, PathBuf::from);
            let prompt = a.value("--prompt")?;
            let max_new = a.parse("--max-new", 32usize)?;
            let chat = a.flag("--chat");
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
                    let (_, eval_set) = embedded::task(1);
                    println!("task accuracy {:.3}", train::accuracy(&l.model, &eval_set)?);
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
