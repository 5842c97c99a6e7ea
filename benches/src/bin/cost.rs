//! The cost-report harness: time, bytes per party and rounds of one protocol op.
//!
//! ```text
//! cargo run --release -p marill-benches --bin cost -- \
//!     --protocol {dealer|rep3|all} --op {OP|all|base|nonlinear} \
//!     [--shape SHAPE] [--frac-bits F] [--runs R] [--json]
//! ```
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
//! trunc ltz` and the non-linear library `exp reciprocal rsqrt rmsnorm softmax softmax_2relu
//! silu gelu relu argmax`. Field names are a contract: extend, never
//! rename or drop.

use std::process::ExitCode;

use marill_benches::{Case, Op, Shape};
use marill_std::Setting;

const USAGE: &str = "usage: cost --protocol {dealer|rep3|all} --op OP [--shape n=COUNT|MxNxK|HxRxC] [--frac-bits F] \
[--runs R] [--json]
  OP: mul matmul matmul_public trunc ltz exp reciprocal rsqrt rmsnorm softmax softmax_2relu silu gelu relu argmax,
      or all (every op at its default shape), or base (the first five), or nonlinear (the last ten)";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cost: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut protocols = Vec::new();
    let mut ops = Vec::new();
    let mut shape = None;
    let mut frac_bits = marill_core::fixed::DEFAULT_FRAC_BITS;
    let mut runs = 3usize;
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--protocol" => {
                let v = val()?;
                protocols = match v.as_str() {
                    "all" => vec![Setting::Dealer, Setting::Rep3],
                    s => vec![Setting::parse(s).ok_or_else(|| format!("unknown protocol {s}"))?],
                };
            }
            "--op" => {
                let v = val()?;
                ops = match v.as_str() {
                    "all" => Op::ALL.to_vec(),
                    "base" => Op::ALL[..5].to_vec(),
                    "nonlinear" => Op::ALL[5..].to_vec(),
                    s => vec![Op::parse(s).ok_or_else(|| format!("unknown op {s}"))?],
                };
            }
            "--shape" => {
                let v = val()?;
                shape = Some(Shape::parse(&v).ok_or_else(|| format!("bad shape {v}"))?);
            }
            "--frac-bits" => frac_bits = val()?.parse().map_err(|_| "bad --frac-bits".to_string())?,
            "--runs" => runs = val()?.parse().map_err(|_| "bad --runs".to_string())?,
            "--json" => json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if protocols.is_empty() || ops.is_empty() {
        return Err("--protocol and --op are required".into());
    }
    if runs < 3 {
        return Err("--runs must be at least 3".into());
    }
    for &setting in &protocols {
        for &op in &ops {
            let sh = match shape {
                Some(s) if ops.len() == 1 => s,
                _ => op.default_shape(),
            };
            let case = Case::new(op, sh, frac_bits)?;
            let samples = case.measure(setting, runs)?;
            let mut walls: Vec<f64> = samples.iter().map(|m| m.wall.as_secs_f64()).collect();
            walls.sort_by(f64::total_cmp);
            let median = walls[walls.len() / 2];
            let last = &samples[samples.len() - 1];
            let err = samples.iter().map(|m| m.max_abs_err).fold(0.0, f64::max);
            if json {
                println!(
                    "{{\"protocol\":\"{}\",\"op\":\"{}\",\"shape\":\"{}\",\"frac_bits\":{},\"wall_s\":{:.6},\"bytes_sent_per_party\":[{},{},{}],\"rounds\":{},\"max_abs_err\":{:e}}}",
                    setting.name(),
                    op.name(),
                    sh.text(),
                    frac_bits,
                    median,
                    last.bytes_sent[0],
                    last.bytes_sent[1],
                    last.bytes_sent[2],
                    last.rounds,
                    err
                );
            } else {
                let mb = |b: u64| b as f64 / 1e6;
                println!(
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
    Ok(())
}
