//! The cost-report harness: time, bytes per party and rounds of one protocol op.
//!
//! ```text
//! cargo run --release -p marill-benches --bin cost -- \
//!     --protocol {dealer|rep3|ot2pc|all} --op {OP|all|base|nonlinear} \
//!     [--shape SHAPE] [--frac-bits F] [--runs R] [--link lan|wan|RTT_MS,MBPS] [--json]
//! ```
//!
//! `--link` puts the parties on an emulated network (`marill_std::transport::link`: per
//! direction a one-way latency and a bandwidth, applied to every message; `lan` is 16 Gbps
//! and 0.1 ms round trip, `wan` 400 Mbps and 40 ms); every JSON line then names it in
//! `link` (`"none"` without). Every JSON line also names the ring kernels that ran in
//! `ring` (`portable`, `avx2` or `avx512`) and the threads per party in `threads`
//! (`--threads T`, default a third of the cores: the parties share this process).
//!
//! `--op model` measures secure greedy generation instead: the prefill of a prompt and each
//! decoded token, on a server file (`--model`) or a random model of a MARILL variant; its
//! JSON lines carry the contract's fields for the prefill (`max_abs_err` is the number of
//! tokens that differ from the plaintext model's, teacher-forced) plus `model`,
//! `decode_wall_s`, `decode_bytes_sent_per_party`, `decode_rounds` (means per token) and
//! `token_mismatches`, and `parts`: per part of a step (`norms`, `q|k|v`, `scores`,
//! `softmax`, `P·V`, `o`, `gate|up`, `SiLU×up`, `down` summed over the private layers, then
//! the head's `head norm`, `lm head`, `argmax`), its prefill and mean decode time, bytes of
//! the party that sends most and rounds; and `peak_heap_per_party`, each party's peak live
//! heap in bytes over the measured session (set-up, prefill, decode). Its figures are from one run after a warm-up run (`--no-warm-up`: the
//! first run; plain 2PC's runs take seconds, where a warm scratch makes no difference).
//! `--offline` (2PC-Dealer; the other settings run as always): the dealer deals each step
//! and delivers it before the compute parties start (`ModelCase::offline`); every line adds
//! `offline` (whether it did), `offline_s` and `decode_offline_s` (the dealer's time for the
//! prefill and a decode step, `null` without), and `wall_s` / `decode_wall_s` are then the
//! online phase's.
//!
//! With `--json`, one JSON line per case:
//! `{"protocol","op","shape","frac_bits","wall_s","bytes_sent_per_party":[p0,p1,p2],"rounds","max_abs_err"}`.
//! `wall_s` is the median of `R ≥ 3` runs after one warm-up, all in one session with all
//! parties in-process (one thread each, in-memory channels, scratch memory kept between
//! runs as a long-lived party keeps it); it is the longest time any party spends in the op.
//! `max_abs_err` is against a float64 reference on random inputs (for `argmax`, the index
//! error; for `reciprocal` and `rsqrt`, absolute on outputs of up to 1 and 10). Shapes:
//! `n=COUNT` for elementwise ops, `MxNxK` for matrix products, `HxRxC` for row-wise ops
//! (`H` blocks of `R` rows of length `C`). Ops: the protocol ops `mul matmul matmul_public
//! matmul_weight trunc ltz` (`matmul_weight`: shares times a weight the server knows, set up
//! once per session outside the timing) and the non-linear library `exp reciprocal rsqrt rmsnorm softmax softmax_2relu
//! silu gelu relu argmax`. Field names are a contract: extend, never
//! rename or drop.

use std::process::ExitCode;

/// `println!` that reports a closed standard output (`cost … --json | head -1`) as an error,
/// where `println!` would panic with a backtrace.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(|e| format!("writing to standard output: {e}"))?
    }};
}

use clap::Parser;

use marill_benches::{Case, Op, Shape};
use marill_std::Setting;
use marill_std::model::measure::ModelCase;
use marill_std::model::random::{self, Variant};

/// Time, bytes per party and rounds of one protocol op, or of secure generation (`--op model`).
#[derive(Parser)]
#[command(name = "cost", version, after_help = AFTER_HELP, args_override_self = true)]
struct Cli {
    /// The settings: dealer, rep3, ot2pc, or all (dealer and rep3; plain 2PC is named, its
    /// OT-based ops take far longer)
    #[arg(long, value_name = "PROTOCOL", value_parser = protocols)]
    protocol: Protocols,
    /// An op (mul matmul matmul_public matmul_weight trunc ltz exp reciprocal rsqrt rmsnorm
    /// softmax softmax_2relu silu gelu relu argmax), all (every op at its default shape, then
    /// --op model over every variant), base (the first six), nonlinear (the last ten) or model
    /// (secure greedy generation)
    #[arg(long, value_name = "OP", value_parser = ops)]
    op: Ops,
    /// n=COUNT for elementwise ops, MxNxK for matrix products, HxRxC for row-wise ops (H
    /// blocks of R rows of length C); default: the op's own
    #[arg(long, value_name = "SHAPE", value_parser = shape)]
    shape: Option<Shape>,
    /// Fraction bits of the fixed-point encoding
    #[arg(long, value_name = "F", default_value_t = marill_core::fixed::DEFAULT_FRAC_BITS)]
    frac_bits: u32,
    /// Runs after the warm-up (wall_s is their median)
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..))]
    runs: u64,
    /// One JSON line per case
    #[arg(long)]
    json: bool,
    /// (op model) measure the first run (no warm-up run)
    #[arg(long)]
    no_warm_up: bool,
    /// (op model, 2PC-Dealer) the dealer deals each step before the others start; offline_s
    /// and decode_offline_s give its time, wall_s and decode_wall_s the online phase's
    #[arg(long)]
    offline: bool,
    /// An emulated network between the parties: lan (16 Gbps, 0.1 ms round trip), wan (400
    /// Mbps, 40 ms) or RTT_MS,MBPS
    #[arg(long, value_name = "L", value_parser = marill_std::transport::link::LinkModel::parse)]
    link: Option<marill_std::transport::link::LinkModel>,
    /// Threads per party for matrix products and PRG expansion (default: a third of the
    /// cores, as the parties share this process)
    #[arg(long, value_name = "T")]
    threads: Option<usize>,
    /// (op model) a server file to run
    #[arg(long, value_name = "SERVER_FILE", conflicts_with = "variant")]
    model: Option<String>,
    /// (op model) a random model (4 layers, d 64, vocab 256, 4 heads): baseline (embedding and
    /// every layer in MPC), private (every layer in MPC, public embedding), lf lora hm lf+hm
    /// lf+lora friendly, or all (the default)
    #[arg(long, value_name = "V", value_parser = variants)]
    variant: Option<Variants>,
    /// (op model) the prompt's length in tokens
    #[arg(long, value_name = "B", default_value_t = 16)]
    prompt_len: usize,
    /// (op model) tokens to generate
    #[arg(long = "gen", value_name = "N", default_value_t = 4)]
    tokens: usize,
}

const AFTER_HELP: &str = "\
Examples:
  cost --protocol all --op all --json
  cost --protocol dealer --op matmul --shape 64x3200x3200 --link wan
  cost --protocol all --op model --variant lf --prompt-len 16 --gen 4 --json
Field names of the JSON lines are a contract: extended, never renamed or dropped.";

/// `--protocol`: the settings to run.
type Protocols = Vec<Setting>;

fn protocols(s: &str) -> Result<Protocols, String> {
    match s {
        "all" => Ok(vec![Setting::Dealer, Setting::Rep3]),
        s => Setting::parse(s).map(|p| vec![p]).ok_or_else(|| format!("{s}: one of dealer, rep3, ot2pc, all")),
    }
}

/// `--op`: ops at their shapes, or secure generation.
#[derive(Clone)]
enum Ops {
    /// `model`.
    Model,
    /// Ops; `true` for `all` (then `--op model` over every variant).
    Ops(Vec<Op>, bool),
}

fn ops(s: &str) -> Result<Ops, String> {
    Ok(match s {
        "model" => Ops::Model,
        "all" => Ops::Ops(Op::ALL.to_vec(), true),
        "base" => Ops::Ops(Op::ALL[..6].to_vec(), false),
        "nonlinear" => Ops::Ops(Op::ALL[6..].to_vec(), false),
        s => Ops::Ops(vec![Op::parse(s).ok_or_else(|| format!("unknown op {s} (see --help)"))?], false),
    })
}

fn shape(s: &str) -> Result<Shape, String> {
    Shape::parse(s).ok_or_else(|| format!("bad shape {s}: n=COUNT, MxNxK or HxRxC"))
}

/// `--variant`: the random-model variants to run (a type of its own: clap would take an
/// `Option<Vec<_>>` field for a flag of many values, each one parsed alone).
#[derive(Clone)]
struct Variants(Vec<&'static str>);

fn variants(s: &str) -> Result<Variants, String> {
    match s {
        "all" => Ok(Variants(VARIANTS.iter().map(|(n, _)| *n).collect())),
        s => VARIANTS.iter().find(|(n, _)| *n == s).map(|(n, _)| Variants(vec![*n])).ok_or_else(|| {
            let names: Vec<&str> = VARIANTS.iter().map(|(n, _)| *n).collect();
            format!("unknown variant {s}: one of {} or all", names.join(" "))
        }),
    }
}

/// Per-party heap figures for `--op model` (see `marill_std::alloc_meter`).
#[global_allocator]
static GLOBAL: marill_std::alloc_meter::PartyAlloc = marill_std::alloc_meter::PartyAlloc;

fn main() -> ExitCode {
    // Usage errors print clap's message and exit with 2.
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cost: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    marill_std::pin_ring_from_env()?;
    let Cli { protocol: protocols, op, shape, frac_bits, runs, json, no_warm_up, offline, link, threads, .. } = cli;
    let (warm_up, runs) = (!no_warm_up, runs as usize);
    marill_std::threads::set_threads(threads.unwrap_or_else(marill_std::threads::shared_default_threads));
    let (ops, all_ops) = match op {
        Ops::Model => {
            let how = HowToRun { json, warm_up, offline, link };
            return run_model(
                &protocols,
                cli.model,
                cli.variant.map(|v| v.0).unwrap_or_default(),
                cli.prompt_len,
                cli.tokens,
                how,
            );
        }
        Ops::Ops(ops, all) => (ops, all),
    };
    let link_name = link.map_or_else(|| "none".to_string(), |l| l.label());
    let ring = marill_core::ring::backend().name();
    let threads = marill_std::threads::threads();
    for &setting in &protocols {
        for &op in &ops {
            let sh = match shape {
                Some(s) if ops.len() == 1 => s,
                _ => op.default_shape(),
            };
            let case = Case::new(op, sh, frac_bits)?;
            let samples = case.measure_over(setting, runs, link)?;
            let mut walls: Vec<f64> = samples.iter().map(|m| m.wall.as_secs_f64()).collect();
            walls.sort_by(f64::total_cmp);
            let median = walls[walls.len() / 2];
            let last = &samples[samples.len() - 1];
            let err = samples.iter().map(|m| m.max_abs_err).fold(0.0, f64::max);
            if json {
                let line = serde_json::json!({
                    "protocol": setting.name(), "op": op.name(), "shape": sh.text(), "frac_bits": frac_bits,
                    "wall_s": micros(median), "bytes_sent_per_party": last.bytes_sent, "rounds": last.rounds,
                    "max_abs_err": err, "link": link_name, "ring": ring, "threads": threads,
                });
                outln!("{line}");
            } else {
                let mb = |b: u64| b as f64 / 1e6;
                outln!(
                    "{:<7} {:<14} {:<14} {:>9.4} s  {:>9.2} / {:>9.2} / {:>9.2} MB  {:>3} rounds  err {:.2e}",
                    setting.name(),
                    op.name(),
                    sh.text(),
                    median,
                    mb(last.bytes_sent[0]),
                    mb(last.bytes_sent[1]),
                    mb(last.bytes_sent[2]),
                    last.rounds,
                    err
                );
            }
        }
    }
    if all_ops {
        let how = HowToRun { json, warm_up, offline, link };
        run_model(&protocols, None, Vec::new(), cli.prompt_len, cli.tokens, how)?;
    }
    Ok(())
}

/// The random-model variants of `--op model`.
const VARIANTS: [(&str, Variant); 8] = [
    (
        "baseline",
        Variant { public_layers: 0, lora_rank: 0, head_merge: 1, mpc_friendly: false, private_embedding: true },
    ),
    (
        "private",
        Variant { public_layers: 0, lora_rank: 0, head_merge: 1, mpc_friendly: false, private_embedding: false },
    ),
    ("lf", Variant { public_layers: 2, lora_rank: 0, head_merge: 1, mpc_friendly: false, private_embedding: false }),
    ("lora", Variant { public_layers: 0, lora_rank: 8, head_merge: 1, mpc_friendly: false, private_embedding: false }),
    ("hm", Variant { public_layers: 0, lora_rank: 0, head_merge: 2, mpc_friendly: false, private_embedding: false }),
    ("lf+hm", Variant { public_layers: 2, lora_rank: 0, head_merge: 2, mpc_friendly: false, private_embedding: false }),
    (
        "lf+lora",
        Variant { public_layers: 2, lora_rank: 8, head_merge: 1, mpc_friendly: false, private_embedding: false },
    ),
    (
        "friendly",
        Variant { public_layers: 0, lora_rank: 0, head_merge: 1, mpc_friendly: true, private_embedding: false },
    ),
];

fn mean_u64(v: &[u64]) -> f64 {
    if v.is_empty() { 0.0 } else { v.iter().sum::<u64>() as f64 / v.len() as f64 }
}

/// How `--op model` runs and prints.
struct HowToRun {
    json: bool,
    warm_up: bool,
    /// 2PC-Dealer with an offline phase (`ModelCase::offline`); the other settings run as
    /// always.
    offline: bool,
    link: Option<marill_std::transport::link::LinkModel>,
}

/// `--op model`: prefill and per-token decode of secure greedy generation.
fn run_model(
    protocols: &[Setting],
    model: Option<String>,
    mut variants: Vec<&'static str>,
    prompt_len: usize,
    gen_tokens: usize,
    how: HowToRun,
) -> Result<(), String> {
    let HowToRun { json, warm_up, offline, link } = how;
    let link_name = link.map_or_else(|| "none".to_string(), |l| l.label());
    let ring = marill_core::ring::backend().name();
    let threads = marill_std::threads::threads();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(path) = model {
        let bytes = std::fs::read(&path).map_err(|e| format!("read {path}: {e}"))?;
        cases.push((path, bytes));
    } else {
        if variants.is_empty() {
            variants = VARIANTS.iter().map(|(n, _)| *n).collect();
        }
        for name in variants {
            let v = VARIANTS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).ok_or("variant")?;
            cases.push((format!("random:{name}"), random::model(v, 4, 64, 256, 11).map_err(|e| e.to_string())?));
        }
    }
    for &setting in protocols {
        for (name, bytes) in &cases {
            let case = ModelCase::new(bytes.clone(), prompt_len, gen_tokens)?.over(link);
            let ahead = offline && setting == Setting::Dealer;
            let case = if ahead { case.offline() } else { case };
            if warm_up {
                case.measure(setting)?;
            }
            let m = case.measure(setting)?;
            let decode = 1..m.wall.len();
            let dec_wall = if decode.is_empty() {
                0.0
            } else {
                m.wall[decode.clone()].iter().map(|d| d.as_secs_f64()).sum::<f64>() / decode.len() as f64
            };
            let dec_bytes: Vec<f64> =
                (0..3).map(|p| mean_u64(&m.bytes[decode.clone()].iter().map(|b| b[p]).collect::<Vec<_>>())).collect();
            let dec_rounds = mean_u64(&m.rounds[decode.clone()]);
            // The offline phase's time (the dealer's), `null` without one.
            let off = |d: &[std::time::Duration]| -> serde_json::Value {
                if !ahead || d.is_empty() {
                    return serde_json::Value::Null;
                }
                serde_json::json!(micros(d.iter().map(|x| x.as_secs_f64()).sum::<f64>() / d.len() as f64))
            };
            let (off_pre, off_dec) =
                (off(&m.offline_wall[..m.offline_wall.len().min(1)]), off(m.offline_wall.get(1..).unwrap_or(&[])));
            let shape = format!("prompt={prompt_len},gen={gen_tokens}");
            // Per part of a step (summed over the private layers): the prefill's, and the
            // mean of the decode steps'.
            let mut parts = Vec::new();
            for (k, (name, pre)) in m.parts[0].iter().enumerate() {
                let dec: Vec<_> = m.parts[decode.clone()].iter().filter_map(|p| p.get(k)).map(|p| p.1).collect();
                let n = dec.len().max(1) as f64;
                let dwall = dec.iter().map(|s| s.wall.as_secs_f64()).sum::<f64>() / n;
                let dbytes = dec.iter().map(|s| *s.bytes.iter().max().unwrap_or(&0) as f64).sum::<f64>() / n;
                let drounds = dec.iter().map(|s| s.rounds as f64).sum::<f64>() / n;
                parts.push((
                    *name,
                    serde_json::json!({
                        "part": name, "prefill_s": micros(pre.wall.as_secs_f64()),
                        "prefill_bytes": pre.bytes.iter().max().unwrap_or(&0), "prefill_rounds": pre.rounds,
                        "decode_s": micros(dwall), "decode_bytes": dbytes.round() as u64,
                        "decode_rounds": (drounds * 10.0).round() / 10.0,
                    }),
                    pre.rounds,
                    drounds,
                ));
            }
            let parts_json: Vec<serde_json::Value> = parts.iter().map(|p| p.1.clone()).collect();
            if json {
                // `max_abs_err` is the token mismatches here (the model's error is its tokens).
                let line = serde_json::json!({
                    "protocol": setting.name(), "op": "model", "shape": shape, "frac_bits": 16,
                    "wall_s": micros(m.wall[0].as_secs_f64()), "bytes_sent_per_party": m.bytes[0],
                    "rounds": m.rounds[0], "max_abs_err": m.mismatches, "model": name,
                    "decode_wall_s": micros(dec_wall),
                    "decode_bytes_sent_per_party": dec_bytes.iter().map(|b| b.round() as u64).collect::<Vec<_>>(),
                    "decode_rounds": (dec_rounds * 10.0).round() / 10.0, "token_mismatches": m.mismatches,
                    "link": link_name, "ring": ring, "threads": threads, "peak_heap_per_party": m.peak_heap,
                    "parts": parts_json, "offline": ahead, "offline_s": off_pre, "decode_offline_s": off_dec,
                });
                outln!("{line}");
            } else {
                let mb = |b: f64| b / 1e6;
                outln!(
                    "{:<7} {:<18} prefill {:>8.4} s {:>8.2} / {:>8.2} / {:>8.2} MB {:>5} rounds | decode {:>8.4} s {:>7.2} / {:>7.2} / {:>7.2} MB {:>5.0} rounds | mismatches {}",
                    setting.name(),
                    name,
                    m.wall[0].as_secs_f64(),
                    mb(m.bytes[0][0] as f64),
                    mb(m.bytes[0][1] as f64),
                    mb(m.bytes[0][2] as f64),
                    m.rounds[0],
                    dec_wall,
                    mb(dec_bytes[0]),
                    mb(dec_bytes[1]),
                    mb(dec_bytes[2]),
                    dec_rounds,
                    m.mismatches
                );
                if ahead {
                    outln!(
                        "        offline phase (the dealer, before each step): prefill {off_pre} s, decode {off_dec} s a step"
                    );
                }
                let line: Vec<String> = parts.iter().map(|p| format!("{} {}/{:.0}", p.0, p.2, p.3)).collect();
                outln!("        rounds per part (prefill/decode, over the private layers): {}", line.join(", "));
            }
        }
    }
    Ok(())
}

/// Seconds to the microsecond, as the harness has always printed them.
fn micros(s: f64) -> f64 {
    (s * 1e6).round() / 1e6
}
