//! `marill-train`: pretrain the embedded default, fine-tune with MARILL recipes, evaluate,
//! export split-model files, import checkpoints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use candle_core::Device;
use clap::{Args, Parser, Subcommand, ValueEnum};
use marill_train::embedded::{self, Budget};
use marill_train::export::{ExportInfo, export, split_pretrained};
use marill_train::recipe::{Grouping, Recipe};
use marill_train::study::StudyOpts;
use marill_train::{Error, Result, chat, data, load, train};

/// candle allocates a buffer per tensor op: mimalloc reuses them where glibc's malloc maps and
/// unmaps each large one (measured in the README: pretraining's kernel time).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// MARILL fine-tuning on candle: pretrain the embedded default, fine-tune with MARILL
/// recipes, evaluate, export split-model files, import checkpoints.
#[derive(Parser)]
#[command(name = "marill-train", version, arg_required_else_help = true, after_help = AFTER_HELP, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const AFTER_HELP: &str = "\
Progress goes to stderr (MARILL_QUIET=1 silences it). Runs on the CPU; build with
--features cuda for a GPU.";

#[derive(Subcommand)]
enum Command {
    /// Pretrain the embedded default base
    ///
    /// Pretrain the embedded default base on the facts of its invented world and generic
    /// skills (Hugging Face layout); report its fact recall and zero-shot task accuracy
    Pretrain {
        /// The checkpoint directory to write
        #[arg(long, value_name = "DIR", default_value = DEFAULT_BASE)]
        out: PathBuf,
        /// Pretraining steps
        #[arg(long, value_name = "N", default_value_t = Budget::demo().pretrain)]
        steps: usize,
        /// The world's and the initialisation's seed
        #[arg(long, value_name = "S", default_value_t = 1)]
        seed: u64,
    },
    /// Fine-tune the embedded base with one MARILL recipe
    ///
    /// Fine-tune the base on the embedded private task (seed S splits the entities) until the
    /// validation loss stops improving; report exact-match accuracy and answer NLL on the test
    /// entities and write the server's split-model file. Non-full recipes distil from a fully
    /// fine-tuned teacher (App. G) unless --no-distill; head merging and pruning start from
    /// the teacher (or the LF student) and add distillation stage I
    Finetune {
        /// The base checkpoint (pretrained and cached there when missing)
        #[arg(long, value_name = "DIR", default_value = DEFAULT_BASE)]
        base: PathBuf,
        /// The split-model file to write
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        recipe: RecipeArgs,
        /// The most steps a stage trains
        #[arg(long, value_name = "N", default_value_t = Budget::demo().stop.max_steps)]
        max_steps: usize,
        /// Pretraining steps when the base is not cached
        #[arg(long, value_name = "N", default_value_t = Budget::demo().pretrain)]
        pretrain_steps: usize,
        /// Half of each distillation stage-I batch is public pretraining lines instead of
        /// private prompts
        #[arg(long)]
        public_transfer: bool,
        /// Train on the labels alone, without a teacher
        #[arg(long)]
        no_distill: bool,
        /// The seed that splits the entities
        #[arg(long, value_name = "S", default_value_t = 1)]
        seed: u64,
    },
    /// The demo's training half: every variant over seeds, the quality table
    ///
    /// The demo's training half: the base (cached; refused when it recalls under R of its
    /// facts), then for each seed: zero-shot, trained from scratch, full fine-tuning
    /// (teacher), LoRA 8, LF 0.75/0.5/0.25, LF+LoRA, HM 4, LF+HM and the ablations, each to
    /// convergence; prints the quality table (mean ± sd over seeds), writes the first seed's
    /// DIR/<variant>.marill and DIR/quality.json
    Pipeline {
        /// The output directory
        #[arg(long, value_name = "DIR", default_value = ".cache/marill/demo")]
        out: PathBuf,
        /// The base checkpoint (pretrained and cached there when missing)
        #[arg(long, value_name = "DIR", default_value = DEFAULT_BASE)]
        base: PathBuf,
        /// Seeds S..S+N
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: u64,
        /// The first seed
        #[arg(long, value_name = "S", default_value_t = 1)]
        seed: u64,
        /// The most steps a stage trains
        #[arg(long, value_name = "N", default_value_t = Budget::demo().stop.max_steps)]
        max_steps: usize,
        /// Evaluations without improvement before a stage stops
        #[arg(long, value_name = "P", default_value_t = Budget::demo().stop.patience)]
        patience: usize,
        /// Pretraining steps when the base is not cached
        #[arg(long, value_name = "N", default_value_t = Budget::demo().pretrain)]
        pretrain_steps: usize,
        /// The base's least fact recall
        #[arg(long, value_name = "R", default_value_t = Budget::demo().min_recall)]
        min_recall: f64,
        /// Half of each distillation stage-I batch is public pretraining lines
        #[arg(long)]
        public_transfer: bool,
    },
    /// Fine-tune a checkpoint on ChatML pairs (the real-data recipe)
    ///
    /// The real-data recipe: fine-tune a checkpoint on ChatML pairs (JSON lines with prompt,
    /// answer and conversation, as scripts/fetch-chatterbot.sh writes the chatterbot corpus;
    /// duplicates dropped, a tenth of the conversations held out whole), report the held-out
    /// answer NLL before and after, write the split-model file
    FinetuneChat {
        #[command(flatten)]
        input: ChatInput,
        #[command(flatten)]
        recipe: RecipeArgs,
        /// Training steps
        #[arg(long, value_name = "N", default_value_t = 40)]
        steps: usize,
        /// Pairs per batch
        #[arg(long, value_name = "B", default_value_t = 4)]
        batch: usize,
        /// The longest pair in tokens (longer ones are dropped)
        #[arg(long, value_name = "L", default_value_t = 96)]
        max_len: usize,
        /// The learning rate (default 1e-3 with LoRA, else 1e-4)
        #[arg(long, value_name = "LR")]
        lr: Option<f64>,
        /// Distil from a fully fine-tuned teacher (cached in --teacher-cache)
        #[arg(long)]
        distill: bool,
        /// The teacher's learning rate
        #[arg(long, value_name = "LR", default_value_t = 1e-4)]
        teacher_lr: f64,
        /// Where teachers are cached
        #[arg(long, value_name = "DIR", default_value = ".cache/marill/chat-teacher")]
        teacher_cache: PathBuf,
        /// The batches' seed
        #[arg(long, value_name = "S", default_value_t = 1)]
        seed: u64,
        /// The split-model file to write
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// The real-model quality study: every variant on ChatML pairs
    ///
    /// The real-model quality study: zero-shot, full fine-tuning (the teacher, cached in
    /// .cache/marill/study-teacher), LF 0.5, LoRA 8, HM M, LF+HM, LF+LoRA, adjacent HM, head
    /// pruning and layer pruning (App. G recipes), each until the validation answer NLL stops
    /// improving; conversations split 80/10/10; held-out answer NLL, token accuracy and the
    /// share of full fine-tuning's gain; writes DIR/study.json and split files
    Study {
        #[command(flatten)]
        input: ChatInput,
        /// Use at most N pairs
        #[arg(long, value_name = "N")]
        pairs: Option<usize>,
        /// The most steps a stage trains
        #[arg(long, value_name = "N", default_value_t = StudyOpts::default().stop.max_steps)]
        max_steps: usize,
        /// Steps between validations
        #[arg(long, value_name = "N", default_value_t = StudyOpts::default().stop.every)]
        every: usize,
        /// Validations without improvement before a stage stops
        #[arg(long, value_name = "P", default_value_t = StudyOpts::default().stop.patience)]
        patience: usize,
        /// Pairs per batch
        #[arg(long, value_name = "B", default_value_t = StudyOpts::default().batch)]
        batch: usize,
        /// The learning rate
        #[arg(long, value_name = "LR", default_value_t = StudyOpts::default().lr)]
        lr: f64,
        /// The head-merge factor
        #[arg(long, value_name = "M", default_value_t = StudyOpts::default().hm)]
        hm: usize,
        /// The seed
        #[arg(long, value_name = "S", default_value_t = StudyOpts::default().seed)]
        seed: u64,
        /// The longest pair in tokens
        #[arg(long, value_name = "L", default_value_t = 96)]
        max_len: usize,
        /// The output directory
        #[arg(long, value_name = "DIR", default_value = ".cache/marill/study")]
        out: PathBuf,
    },
    /// Greedy generation from a checkpoint, or the embedded task's accuracy
    ///
    /// Greedy generation from a checkpoint; without --prompt, the embedded task's accuracy on
    /// the test entities of split S (world of the default base)
    Eval {
        /// The checkpoint
        #[arg(long, value_name = "DIR", default_value = DEFAULT_BASE)]
        base: PathBuf,
        /// The text to continue
        #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
        prompt: Option<String>,
        /// Tokens to generate
        #[arg(long, value_name = "N", default_value_t = 32)]
        max_new: usize,
        /// Wrap the prompt in the ChatML template
        #[arg(long)]
        chat: bool,
        /// The world's seed
        #[arg(long, value_name = "S", default_value_t = 1)]
        world_seed: u64,
        /// The seed that splits the entities
        #[arg(long, value_name = "S", default_value_t = 1)]
        seed: u64,
    },
    /// A pretrained checkpoint as a split-model file, without training
    ///
    /// A pretrained checkpoint as a split-model file: the bottom (1-F) of the layers and the
    /// embedding public, the rest private (no training)
    Export {
        #[command(flatten)]
        checkpoint: Checkpoint,
        /// The split-model file to write
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The fraction of the layers (from the top) that is private
        #[arg(long, value_name = "F", default_value_t = 1.0)]
        lf: f64,
        /// Fraction bits of the fixed-point encoding
        #[arg(long, value_name = "B", default_value_t = 16)]
        frac_bits: u32,
    },
    /// A GGUF checkpoint as a Hugging Face directory
    ///
    /// A GGUF checkpoint (llama, any candle-supported quantisation) as a Hugging Face
    /// directory (dequantized f32 safetensors, config.json, tokenizer.json)
    Import {
        /// The GGUF file
        #[arg(long, value_name = "FILE")]
        gguf: PathBuf,
        /// The directory to write
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

const DEFAULT_BASE: &str = ".cache/marill/base";

/// A checkpoint and the ChatML pairs to fine-tune it on.
#[derive(Args)]
struct ChatInput {
    #[command(flatten)]
    checkpoint: Checkpoint,
    /// The pairs (JSON lines)
    #[arg(long, value_name = "FILE.jsonl")]
    data: PathBuf,
    /// Only the pairs of this category
    #[arg(long, value_name = "C")]
    category: Option<String>,
}

/// A checkpoint: exactly one of `--gguf FILE`, `--base DIR`.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct Checkpoint {
    /// A GGUF file (llama, any candle-supported quantisation)
    #[arg(long, value_name = "FILE")]
    gguf: Option<PathBuf>,
    /// A Hugging Face directory (config.json, model.safetensors, tokenizer.json)
    #[arg(long, value_name = "DIR")]
    base: Option<PathBuf>,
}

impl Checkpoint {
    fn load(&self, dev: &Device) -> Result<load::Loaded> {
        match (&self.gguf, &self.base) {
            (Some(g), _) => load::load_gguf(g, dev),
            (None, Some(b)) => load::load_hf(b, dev),
            (None, None) => Err(Error::Config("one of --gguf FILE, --base DIR is required".into())),
        }
    }
    /// The flag and its value as given, for the teacher caches' keys.
    fn key(&self) -> Vec<String> {
        match (&self.gguf, &self.base) {
            (Some(g), _) => vec!["--gguf".into(), g.display().to_string()],
            (None, Some(b)) => vec!["--base".into(), b.display().to_string()],
            (None, None) => Vec::new(),
        }
    }
}

/// The MARILL recipe's flags (combinable).
#[derive(Args)]
#[command(next_help_heading = "Recipe")]
struct RecipeArgs {
    /// Train the top fraction F of the layers
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    lf: f64,
    /// Unmerged LoRA of rank R on q, k, v, o, gate, up, down
    #[arg(long, value_name = "R", default_value_t = 0)]
    lora: usize,
    /// LoRA's alpha (default 2R)
    #[arg(long, value_name = "A")]
    alpha: Option<f32>,
    /// Merge heads by M
    #[arg(long, value_name = "M", default_value_t = 1)]
    hm: usize,
    /// How heads are grouped for merging
    #[arg(long, value_enum, default_value = "similarity")]
    grouping: GroupingArg,
    /// Prune P heads per private layer (ablation)
    #[arg(long, value_name = "P", default_value_t = 0)]
    head_prune: usize,
    /// Drop the top L layers (ablation)
    #[arg(long, value_name = "L", default_value_t = 0)]
    layer_prune: usize,
    /// ReLU instead of SiLU in private layers
    #[arg(long)]
    relu: bool,
    /// 2ReLU instead of softmax in private layers
    #[arg(long = "2relu")]
    two_relu: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum GroupingArg {
    /// Heads whose attention is most alike
    Similarity,
    /// Consecutive heads
    Adjacent,
}

impl RecipeArgs {
    fn recipe(&self) -> Recipe {
        Recipe {
            trained_fraction: self.lf,
            lora_rank: self.lora,
            lora_alpha: self.alpha.unwrap_or(2.0 * self.lora as f32),
            head_merge: self.hm,
            grouping: match self.grouping {
                GroupingArg::Similarity => Grouping::Similarity,
                GroupingArg::Adjacent => Grouping::Adjacent,
            },
            head_prune: self.head_prune,
            layer_prune: self.layer_prune,
            relu: self.relu,
            two_relu: self.two_relu,
        }
    }
    /// The flags as given, for the chat teacher cache's key.
    fn key(&self) -> Vec<String> {
        let mut k = Vec::new();
        let mut push = |flag: &str, v: String| {
            k.push(flag.to_string());
            k.push(v);
        };
        if self.lf != 1.0 {
            push("--lf", self.lf.to_string());
        }
        if self.lora != 0 {
            push("--lora", self.lora.to_string());
        }
        if let Some(a) = self.alpha {
            push("--alpha", a.to_string());
        }
        if self.hm != 1 {
            push("--hm", self.hm.to_string());
        }
        if self.head_prune != 0 {
            push("--head-prune", self.head_prune.to_string());
        }
        if self.layer_prune != 0 {
            push("--layer-prune", self.layer_prune.to_string());
        }
        if matches!(self.grouping, GroupingArg::Adjacent) {
            push("--grouping", "adjacent".into());
        }
        if self.relu {
            k.push("--relu".into());
        }
        if self.two_relu {
            k.push("--2relu".into());
        }
        k
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

fn run(cli: Cli) -> Result<()> {
    let dev = device()?;
    match cli.command {
        Command::Pretrain { out, steps, seed } => {
            let budget = Budget { pretrain: steps, ..Budget::demo() };
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
        Command::Pipeline {
            out,
            base,
            seeds: n_seeds,
            seed,
            max_steps,
            patience,
            pretrain_steps,
            min_recall,
            public_transfer,
        } => {
            let mut budget = Budget::demo();
            budget.stop.max_steps = max_steps;
            budget.stop.patience = patience;
            budget.pretrain = pretrain_steps;
            budget.min_recall = min_recall;
            budget.public_transfer = public_transfer;
            let seeds: Vec<u64> = (0..n_seeds).map(|i| seed + i).collect();
            let opts = embedded::PipelineOpts {
                out_dir: &out,
                base_dir: &base,
                base_seed: 1,
                seeds: &seeds,
                budget,
                recipes: embedded::demo_recipes(),
            };
            embedded::pipeline(&opts, &dev)?;
            println!("wrote {}/*.marill and quality.json", out.display());
            Ok(())
        }
        Command::FinetuneChat {
            input: ChatInput { checkpoint, data, category },
            recipe,
            steps,
            batch: bs,
            max_len,
            lr,
            distill,
            teacher_lr,
            teacher_cache,
            seed,
            out,
        } => {
            let source = format!("{:?}", [checkpoint.key(), recipe.key()].concat());
            let data = data.display().to_string();
            let l = checkpoint.load(&dev)?;
            let r = recipe.recipe();
            // Per-recipe learning rates: LoRA factors take a larger one than full weights.
            let lr = lr.unwrap_or(if r.lora_rank > 0 { 1e-3 } else { 1e-4 });
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
        Command::Study {
            input: ChatInput { checkpoint, data, category },
            pairs,
            max_steps,
            every,
            patience,
            batch,
            lr,
            hm,
            seed,
            max_len,
            out,
        } => {
            let data = data.display().to_string();
            let limit = pairs.unwrap_or(usize::MAX);
            let mut o = marill_train::study::StudyOpts { batch, lr, hm, seed, ..Default::default() };
            o.stop.max_steps = max_steps;
            o.stop.every = every;
            o.stop.patience = patience;
            let source = format!("{:?}", checkpoint.key());
            let l = checkpoint.load(&dev)?;
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
        Command::Finetune {
            base: base_dir,
            out,
            recipe,
            max_steps,
            pretrain_steps,
            public_transfer,
            no_distill,
            seed,
        } => {
            let mut budget = Budget::demo();
            budget.stop.max_steps = max_steps;
            budget.pretrain = pretrain_steps;
            budget.public_transfer = public_transfer;
            let distill = !no_distill;
            let r = recipe.recipe();
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
        Command::Eval { base: base_dir, prompt, max_new, chat, world_seed: base_seed, seed: split_seed } => {
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
        Command::Import { gguf, out } => {
            let l = load::load_gguf(&gguf, &dev)?;
            load::save_hf(&l.model, &out, l.tokenizer_json.as_deref())?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Export { checkpoint, out, lf, frac_bits } => {
            let l = checkpoint.load(&dev)?;
            let n = l.model.cfg.n_layers;
            std::fs::write(&out, split_pretrained(&l.model, lf, l.tokenizer_json.as_deref(), frac_bits)?)?;
            let np = Recipe { trained_fraction: lf, ..Recipe::full() }.n_public(n);
            println!("wrote {}: {np} public layers of {n}", out.display());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    // Usage errors print clap's message and exit with 2; --help and --version exit with 0.
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("marill-train: {e}");
            ExitCode::FAILURE
        }
    }
}
