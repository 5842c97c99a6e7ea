//! `marill cost`: MARILL's cost tables at openllama-3b-v2's shapes, from this engine.

use clap::{Args, ValueEnum};
use marill_std::transport::link::LinkModel;
use marill_std::{Setting, StdError};

/// The rows `--variant` can pick.
const VARIANTS: [&str; 11] = [
    "baseline",
    "lf0.5",
    "hm4",
    "lora64",
    "lf0.5+hm4",
    "lf0.5+lora64",
    "f=13/26",
    "f=9/26",
    "f=6/26",
    "f=5/26",
    "f=4/26",
];

/// `marill cost`'s flags.
#[derive(Args)]
#[command(after_help = "\
Each variant is measured on a random model of one private layer, with the runtime's layer marks:
the span between them is a layer's cost, the rest of the step the fixed cost (sharing the hidden
state, the final norm, the lm head, argmax), and a model of k private layers costs fixed + k
layers. The baseline's fixed cost (its embedding in MPC besides) comes from a model without
layers. Public layers run in plaintext at the client and are not counted. Each span is the
fastest of N runs. With --json, one JSON line per setting and variant (fields are a contract:
extended, never renamed or dropped).")]
pub(crate) struct CostArgs {
    /// The settings to measure (default: all three; with --offline, dealer)
    #[arg(long, value_parser = setting)]
    setting: Option<CostSetting>,
    /// The prompt's length in tokens
    #[arg(long, value_name = "B", default_value_t = 64)]
    prompt_len: usize,
    /// paper: openllama-3b-v2 (d 3200, 32 heads, ffn 8640, vocab 32000, 26 layers); tiny: d 64
    /// in seconds, for tests
    #[arg(long, value_enum, default_value = "paper")]
    shape: ShapeArg,
    /// Runs per case; each span the fastest (default 2, or 1 in ot2pc)
    #[arg(long, value_name = "N", value_parser = super::at_least_one)]
    runs: Option<usize>,
    /// One JSON line per setting and variant instead of the tables
    #[arg(long)]
    json: bool,
    /// Emulate a network between the parties: lan (16 Gbps, 0.1 ms round trip), wan (400 Mbps,
    /// 40 ms) or RTT_MS,MBPS
    #[arg(long, value_name = "L", value_parser = LinkModel::parse)]
    link: Option<LinkModel>,
    /// Measure one row only
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(VARIANTS))]
    variant: Option<String>,
    /// Threads per party (default: a third of the cores, as the three parties share this process)
    #[arg(long, value_name = "T", value_parser = super::at_least_one)]
    threads: Option<usize>,
    /// (2PC-Dealer) the dealer deals each step and its corrections are delivered before the
    /// others start; times split into the offline and the online phase
    #[arg(long)]
    offline: bool,
    /// (Plain 2PC) the most OTs in flight, 64 to 67108864 (the default, one window for
    /// nearly every op): longer ops run in windows of N, in more rounds, with at most N OTs'
    /// state (about 90 bytes each) live per party
    #[arg(long, value_name = "N", value_parser = super::ot_batch)]
    ot_batch: Option<usize>,
}

/// `marill cost --setting`: one setting or all.
#[derive(Clone, Copy)]
enum CostSetting {
    One(Setting),
    All,
}

/// `--setting dealer|rep3|ot2pc|all`.
fn setting(s: &str) -> Result<CostSetting, String> {
    match s {
        "all" => Ok(CostSetting::All),
        s => Setting::parse(s).map(CostSetting::One).ok_or_else(|| format!("{s}: one of dealer, rep3, ot2pc, all")),
    }
}

/// `marill cost --shape`.
#[derive(Clone, Copy, ValueEnum)]
enum ShapeArg {
    /// openllama-3b-v2's shapes
    Paper,
    /// d 64, 4 heads of 16, ffn 172, vocab 256
    Tiny,
}

/// One measured quantity of a step: (seconds, bytes of the party that sends most, rounds).
/// Seconds (online, with an offline phase), bytes of the party that sends most, rounds,
/// bytes per party, and the offline phase's seconds (zero without one).
type Metric = (f64, f64, f64, [f64; 3], f64);

/// Prefill and mean decode metrics of a model of `layers` (0 or 1) private layers: the whole
/// step, and the private layer's own span in it (from the runtime's layer marks; zeros
/// without a layer).
fn measure_case(
    server: Vec<u8>,
    setting: Setting,
    prompt_len: usize,
    runs: usize,
    layers: usize,
    link: Option<marill_std::transport::link::LinkModel>,
    offline: bool,
    ot_batch: usize,
) -> Result<Measured, StdError> {
    use marill_std::model::measure::{ModelCase, Span, Steps};
    let bad = |e: String| StdError::Model(format!("cost: {e}"));
    // The prefill, then four decode steps (averaged: one step is short and noisy).
    let case = ModelCase::new(server, prompt_len, 5).map_err(bad)?.over(link).ot_batch(ot_batch);
    let case = if offline { case.offline() } else { case };
    // `runs` runs; the fastest time of each span (bytes and rounds do not vary).
    let mut all = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let m = case.measure(setting).map_err(bad)?;
        if m.mismatches > 0 {
            return Err(StdError::Model(format!("cost: {} tokens differ from the plaintext model", m.mismatches)));
        }
        if layers > 1 || m.layers.iter().any(|l| l.len() != layers) {
            return Err(bad(format!("expected {layers} private layer(s), 0 or 1")));
        }
        all.push(m);
    }
    // Per step: the span of the first run with the fastest time of any run.
    let fastest = |pick: fn(&Steps, usize) -> Span| -> Vec<Span> {
        (0..all[0].wall.len())
            .map(|i| Span { wall: all.iter().map(|r| pick(r, i).wall).min().unwrap_or_default(), ..pick(&all[0], i) })
            .collect()
    };
    let metric = |s: &Span| -> Metric {
        let per = s.bytes.map(|b| b as f64);
        (
            s.wall.as_secs_f64(),
            s.bytes.iter().copied().max().unwrap_or(0) as f64,
            s.rounds as f64,
            per,
            s.offline.as_secs_f64(),
        )
    };
    let prefill_and_decode = |spans: Vec<Span>| -> [Metric; 2] {
        let decode = &spans[1..];
        let n = decode.len().max(1) as f64;
        let mean = decode.iter().map(metric).fold((0.0, 0.0, 0.0, [0.0; 3], 0.0), |a, s| {
            (a.0 + s.0 / n, a.1 + s.1 / n, a.2 + s.2 / n, std::array::from_fn(|i| a.3[i] + s.3[i] / n), a.4 + s.4 / n)
        });
        [metric(&spans[0]), mean]
    };
    let whole = fastest(Steps::step);
    let layer = fastest(|r, i| r.layers[i].first().copied().unwrap_or_default());
    // Each part as a span, the same way.
    let names: Vec<&'static str> = all[0].parts[0].iter().map(|x| x.0).collect();
    let mut parts = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let spans = (0..all[0].wall.len())
            .map(|i| {
                let own = |r: &Steps| r.parts[i].get(k).filter(|x| x.0 == *name).map(|x| x.1);
                let first = own(&all[0]).ok_or_else(|| bad("the steps marked different parts".into()))?;
                let wall = all.iter().filter_map(own).map(|s| s.wall).min().unwrap_or_default();
                Ok(Span { wall, ..first })
            })
            .collect::<Result<Vec<_>, StdError>>()?;
        parts.push((*name, prefill_and_decode(spans)));
    }
    // Each party's peak heap: the largest over the runs.
    let peak = all.iter().filter_map(|r| r.peak_heap).reduce(|a, b| std::array::from_fn(|i| a[i].max(b[i])));
    // Bytes per party of each step, split to scale with rotating roles.
    let rot = (0..all[0].wall.len()).map(|i| all[0].rotating(i)).collect();
    Ok((prefill_and_decode(whole), prefill_and_decode(layer), parts, peak, rot))
}

/// `marill cost`: MARILL's cost tables for openllama-3b-v2's shapes (d 3200, 32 heads, ffn
/// 8640, vocab 32000, 26 layers) from this engine. Each variant is measured on a random model
/// of one private layer, with the runtime's layer marks: the span between them is the cost
/// of a layer, the rest of the step the fixed cost (sharing the hidden state, final norm, lm
/// head, argmax), and a model of k private layers costs fixed + k·layer. The baseline's
/// fixed cost (the embedding in MPC besides) comes from a model without layers, and its
/// layers cost what the all-private variant's do. Public layers run at the client in
/// plaintext and are not counted.
/// Per part of a step (`marill_std::model::secure::PARTS`): prefill and decode.
type Parts = Vec<(&'static str, [Metric; 2])>;

/// A measured case: the whole step and the marked layer (prefill, decode), the parts, and
/// each party's peak heap.
type Measured = ([Metric; 2], [Metric; 2], Parts, Option<[u64; 3]>, Vec<Rotating>);

/// One measured layer kind: the fixed cost of a step, a layer's, a layer's parts, the
/// head's parts, and each party's peak heap while the measured model ran.
type Fit = ([Metric; 2], [Metric; 2], Parts, Parts, Option<[u64; 3]>, Vec<Rotating>);
use marill_std::model::measure::Rotating;

/// A model of `k` private layers from a measured fit (prefill, mean decode step): time,
/// rounds and the offline phase as `fixed + k·layer`; bytes per party from the steps' splits
/// ([`Rotating`]), the party that sends most from those.
fn scaled(fixed: &[Metric; 2], per: &[Metric; 2], rot: &[Rotating], k: f64) -> [Metric; 2] {
    let layers = k.round() as usize;
    let decode = &rot[1.min(rot.len())..];
    let n = decode.len().max(1) as f64;
    let pp = [
        rot.first().map_or([0.0; 3], |r| r.with_layers(layers)),
        decode.iter().map(|r| r.with_layers(layers)).fold([0.0; 3], |a, v| std::array::from_fn(|q| a[q] + v[q] / n)),
    ];
    std::array::from_fn(|i| {
        let most = pp[i].iter().copied().fold(0.0, f64::max);
        (fixed[i].0 + k * per[i].0, most, fixed[i].2 + k * per[i].2, pp[i], fixed[i].4 + k * per[i].4)
    })
}

/// Bytes each party sent, as a JSON array (parties 0, 1, 2; in 2PC-Dealer the dealer is 2
/// and the others' bytes are the online phase's).
fn per_party_json(b: [f64; 3]) -> serde_json::Value {
    serde_json::json!(b.map(whole))
}

/// A byte or round count (scaled figures are whole numbers up to rounding).
fn whole(x: f64) -> u64 {
    x.round() as u64
}

/// Seconds to 0.1 ms, as the table prints them.
fn secs(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// The offline phase's seconds as JSON: `null` when the run had none.
fn offline_json(offline: bool, s: f64) -> serde_json::Value {
    if offline { serde_json::json!(secs(s)) } else { serde_json::Value::Null }
}

/// Bytes of the party that sends most in the online phase: in 2PC-Dealer the compute
/// parties' (the dealer's corrections are input-independent: the offline phase's, whether
/// or not they were sent ahead), in the other settings every party's.
fn online_bytes(setting: Setting, m: &Metric) -> f64 {
    let online = if setting == Setting::Dealer { &m.3[..2] } else { &m.3[..] };
    online.iter().copied().fold(0.0, f64::max)
}

/// Peak heap per party as JSON (`null` where the allocator is not metered).
fn peak_json(p: Option<[u64; 3]>) -> serde_json::Value {
    serde_json::json!(p)
}

/// A step's parts as JSON: each with `scope` `layer` (one private layer's part) or `step`
/// (the head's, once per step), and its prefill and decode time, bytes and rounds.
fn parts_json(layer: &Parts, head: &Parts) -> serde_json::Value {
    let one = |scope: &str, (name, m): &(&str, [Metric; 2])| {
        serde_json::json!({
            "part": name, "scope": scope,
            "prefill_s": secs(m[0].0), "prefill_bytes": whole(m[0].1), "prefill_rounds": whole(m[0].2),
            "decode_s": secs(m[1].0), "decode_bytes": whole(m[1].1), "decode_rounds": whole(m[1].2),
            "prefill_bytes_per_party": per_party_json(m[0].3), "decode_bytes_per_party": per_party_json(m[1].3),
        })
    };
    layer.iter().map(|p| one("layer", p)).chain(head.iter().map(|p| one("step", p))).collect()
}

pub(crate) fn paper_cost(a: CostArgs) -> Result<(), StdError> {
    use marill_std::model::random::{Shape, Variant, model_shaped};
    let (json, offline) = (a.json, a.offline);
    marill_std::threads::set_threads(a.threads.unwrap_or_else(marill_std::threads::shared_default_threads));
    let threads = marill_std::threads::threads();
    let settings = match a.setting {
        None | Some(CostSetting::All) if offline => vec![Setting::Dealer],
        None | Some(CostSetting::All) => vec![Setting::Dealer, Setting::Rep3, Setting::Ot2pc],
        Some(CostSetting::One(s)) if offline && s != Setting::Dealer => {
            return Err(StdError::Usage(format!(
                "--offline --setting {}: an offline phase is 2PC-Dealer's (the dealer's corrections do not depend on the inputs); use --setting dealer",
                s.name()
            )));
        }
        Some(CostSetting::One(s)) => vec![s],
    };
    if a.ot_batch.is_some() && !settings.contains(&Setting::Ot2pc) {
        return Err(StdError::Usage("--ot-batch: for plain 2PC (--setting ot2pc or all)".into()));
    }
    let ot_batch = a.ot_batch.unwrap_or(marill_std::ot2pc::ot::MAX_BATCH);
    let b = a.prompt_len;
    let link = a.link;
    let link_name = link.map_or_else(|| "none".to_string(), |l| l.label());
    let ring = marill_core::ring::backend().name();
    let only = a.variant.clone();
    // Plain 2PC's steps take minutes at the paper's shapes: one run unless asked.
    let runs =
        |s: Setting| -> Result<usize, StdError> { Ok(a.runs.unwrap_or(if s == Setting::Ot2pc { 1 } else { 2 })) };
    // `tiny` (d 64, 4 heads of 16, ffn 172, vocab 256) runs the same method in seconds, for tests.
    let base_shape = match a.shape {
        ShapeArg::Paper => Shape { layers: 1, d: 3200, heads: 32, kv_heads: 32, ffn: 8640, vocab: 32000 },
        ShapeArg::Tiny => Shape { layers: 1, d: 64, heads: 4, kv_heads: 4, ffn: 172, vocab: 256 },
    };
    const N: f64 = 26.0;
    let v = |lora_rank, head_merge, private_embedding| Variant {
        public_layers: 0,
        lora_rank,
        head_merge,
        mpc_friendly: false,
        private_embedding,
    };
    // (name, variant, layers in MPC of the 26)
    let cases: [(&str, Variant, f64); 6] = [
        ("baseline", v(0, 1, true), N),
        ("lf0.5", v(0, 1, false), N / 2.0),
        ("hm4", v(0, 4, false), N),
        ("lora64", v(64, 1, false), N),
        ("lf0.5+hm4", v(0, 4, false), N / 2.0),
        ("lf0.5+lora64", v(64, 1, false), N / 2.0),
    ];
    let table2 = [13.0, 9.0, 6.0, 5.0, 4.0];
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if !json {
        outln!(
            "{} shapes, prompt {b} tokens, link {link_name}, ring kernels {ring}, {threads} thread(s) per party; one private layer's cost measured in a 1-layer random \
         model and scaled to the layers in MPC out of 26 (public layers run in plaintext at the client and are not counted)",
            if base_shape.d == 3200 { "openllama-3b-v2" } else { "tiny" }
        );
    }
    for setting in settings {
        let runs = runs(setting)?;
        // (variant key, fixed, per layer, a layer's parts, the head's parts)
        let mut fits: Vec<(&str, Fit)> = Vec::new();
        let mut fit = |name: &'static str, var: Variant| -> Result<Fit, StdError> {
            if let Some((_, f)) = fits.iter().find(|x| x.0 == name) {
                return Ok(f.clone());
            }
            // A private layer costs the same whether the embedding is in MPC or not, so the
            // baseline takes the all-private variant's layer and is measured without one:
            // its embedding and lm head are the largest weights (3PC at b = 256 does not fit
            // 24 GB with a layer besides).
            let borrowed = if var.private_embedding {
                fits.iter().find(|x| x.0 == "private").map(|x| (x.1.1, x.1.2.clone(), x.1.5.clone()))
            } else {
                None
            };
            let layers = usize::from(borrowed.is_none());
            eprintln!("marill cost: {} {name}, {layers} private layer(s), {runs} run(s)", setting.name());
            let t = std::time::Instant::now();
            let (whole, own, parts, peak, mut rot) = measure_case(
                model_shaped(var, Shape { layers, ..base_shape }, 5)?,
                setting,
                b,
                runs,
                layers,
                link,
                offline,
                ot_batch,
            )?;
            let heap = peak.map_or_else(String::new, |p| {
                let mb = |i: usize| p[i] as f64 / 1e6;
                format!(", peak heap per party {:.1} / {:.1} / {:.1} MB", mb(0), mb(1), mb(2))
            });
            eprintln!("marill cost:   done in {:.1} s{heap}", t.elapsed().as_secs_f64());
            // The layer's span is part of the step, so the rest is never negative in bytes
            // or rounds; a time can be by a hair of clock skew between parties, so it clamps.
            let sub = |a: Metric, c: Metric| {
                (
                    (a.0 - c.0).max(0.0),
                    a.1 - c.1,
                    a.2 - c.2,
                    std::array::from_fn(|i| a.3[i] - c.3[i]),
                    (a.4 - c.4).max(0.0),
                )
            };
            let fixed = [sub(whole[0], own[0]), sub(whole[1], own[1])];
            let (layer_parts, head_parts): (Parts, Parts) =
                parts.into_iter().partition(|p| marill_std::model::secure::is_layer_part(p.0));
            let (per, layer_parts) = match borrowed {
                Some((per, parts, layer_rot)) => {
                    // This model's fixed parts, the borrowed layer's vector and turns.
                    for (r, l) in rot.iter_mut().zip(&layer_rot) {
                        (r.layer, r.layer_turns) = (l.layer, l.layer_turns);
                    }
                    (per, parts)
                }
                None => (own, layer_parts),
            };
            fits.push((name, (fixed, per, layer_parts.clone(), head_parts.clone(), peak, rot.clone())));
            Ok((fixed, per, layer_parts, head_parts, peak, rot))
        };
        // The baseline borrows the all-private variant's layer.
        if wanted("baseline") {
            fit("private", v(0, 1, false))?;
        }
        let mut rows = Vec::new();
        for (name, var, k) in cases.iter().copied().filter(|c| wanted(c.0)) {
            let key = match (var.private_embedding, var.head_merge, var.lora_rank) {
                (true, ..) => "baseline",
                (_, 4, _) => "hm",
                (_, _, 64) => "lora",
                _ => "private",
            };
            let (fixed, per, lp, hp, peak, rot) = fit(key, var)?;
            rows.push((name.to_string(), scaled(&fixed, &per, &rot, k), key, parts_json(&lp, &hp), peak));
        }
        // Table 2: layer freezing alone, trained fraction f of 26 layers.
        for t in table2.into_iter().filter(|t| wanted(&format!("f={t}/26"))) {
            let (fixed, per, lp, hp, peak, rot) = fit("private", v(0, 1, false))?;
            rows.push((format!("f={t}/26"), scaled(&fixed, &per, &rot, t), "private", parts_json(&lp, &hp), peak));
        }
        // Ratios against the baseline (none when --variant leaves it out).
        let base = rows.iter().find(|r| r.0 == "baseline").map(|r| r.1);
        if !json {
            outln!("\n{} (× = baseline / variant)", setting.name());
            outln!(
                "{:<13} {:>10} {:>10} {:>7} {:>6} {:>6} {:>6} | {:>9} {:>9} {:>7} {:>6} {:>6} {:>6}",
                "variant",
                "prefill s",
                "MB",
                "rounds",
                "×time",
                "×comm",
                "×rnd",
                "decode s",
                "MB",
                "rounds",
                "×time",
                "×comm",
                "×rnd"
            );
        }
        for (name, r, _, parts, peak) in &rows {
            // "-" without a baseline in the run (--variant).
            let x = |i: usize, j: usize| -> String {
                let Some(base) = base else { return "-".into() };
                let (a, c) = (base[i], r[i]);
                let (a, c) = match j {
                    0 => (a.0, c.0),
                    1 => (a.1, c.1),
                    _ => (a.2, c.2),
                };
                format!("{:.2}", if c > 0.0 { a / c } else { 0.0 })
            };
            if json {
                let line = serde_json::json!({
                    "setting": setting.name(), "variant": name, "prompt_len": b, "runs": runs,
                    "prefill_s": secs(r[0].0), "prefill_bytes": whole(r[0].1), "prefill_rounds": whole(r[0].2),
                    "decode_s": secs(r[1].0), "decode_bytes": whole(r[1].1), "decode_rounds": whole(r[1].2),
                    "link": link_name, "ring": ring, "threads": threads,
                    "peak_heap_per_party": peak_json(*peak), "parts": parts,
                    "prefill_bytes_per_party": per_party_json(r[0].3),
                    "decode_bytes_per_party": per_party_json(r[1].3),
                    "offline": offline,
                    "ot_batch": (setting == Setting::Ot2pc).then_some(ot_batch),
                    "prefill_offline_s": offline_json(offline, r[0].4),
                    "decode_offline_s": offline_json(offline, r[1].4),
                    "prefill_online_bytes": whole(online_bytes(setting, &r[0])),
                    "decode_online_bytes": whole(online_bytes(setting, &r[1])),
                });
                outln!("{line}");
            } else {
                outln!(
                    "{:<13} {:>10.2} {:>10.1} {:>7.0} {:>6} {:>6} {:>6} | {:>9.3} {:>9.2} {:>7.0} {:>6} {:>6} {:>6}",
                    name,
                    r[0].0,
                    r[0].1 / 1e6,
                    r[0].2,
                    x(0, 0),
                    x(0, 1),
                    x(0, 2),
                    r[1].0,
                    r[1].1 / 1e6,
                    r[1].2,
                    x(1, 0),
                    x(1, 1),
                    x(1, 2)
                );
                if offline {
                    outln!(
                        "{:<13} offline phase (the dealer, ahead): prefill {:.2} s, {:.1} MB; decode {:.3} s, {:.2} MB | online MB (compute party that sends most): prefill {:.1}, decode {:.2}",
                        "",
                        r[0].4,
                        r[0].3[2] / 1e6,
                        r[1].4,
                        r[1].3[2] / 1e6,
                        online_bytes(setting, &r[0]) / 1e6,
                        online_bytes(setting, &r[1]) / 1e6
                    );
                }
            }
        }
        if !json {
            let mut keys: Vec<&str> = Vec::new();
            for (_, _, key, _, _) in &rows {
                let key = if *key == "baseline" { "private" } else { key };
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            for key in keys {
                if let Some((_, (_, _, lp, hp, peak, _))) = fits.iter().find(|x| x.0 == key) {
                    let what = match key {
                        "hm" => "a head-merged (HM 4) layer",
                        "lora" => "a LoRA 64 layer",
                        _ => "a private layer",
                    };
                    let heap = peak.map_or_else(String::new, |p| {
                        let mb = |i: usize| p[i] as f64 / 1e6;
                        format!(
                            "; peak heap per party over the 1-layer model's session: {:.1} / {:.1} / {:.1} MB",
                            mb(0),
                            mb(1),
                            mb(2)
                        )
                    });
                    print_parts(
                        &format!("{} per part: {what}, then the head (once per step){heap}", setting.name()),
                        lp,
                        hp,
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// The per-part table of `marill cost` (bytes of the party that sends most, and each
/// party's in the prefill).
fn print_parts(title: &str, layer: &Parts, head: &Parts) -> Result<(), StdError> {
    outln!("\n{title}");
    outln!(
        "{:<11} {:>10} {:>9} {:>7} | {:>9} {:>9} {:>7} | {:>26}",
        "part",
        "prefill s",
        "MB",
        "rounds",
        "decode s",
        "MB",
        "rounds",
        "prefill MB by party 0/1/2"
    );
    let row = |name: &str, m: &[Metric; 2]| -> Result<(), StdError> {
        let by = m[0].3.map(|b| format!("{:.2}", b / 1e6)).join(" / ");
        outln!(
            "{:<11} {:>10.4} {:>9.2} {:>7.0} | {:>9.4} {:>9.3} {:>7.0} | {:>26}",
            name,
            m[0].0,
            m[0].1 / 1e6,
            m[0].2,
            m[1].0,
            m[1].1 / 1e6,
            m[1].2,
            by
        );
        Ok(())
    };
    let mut sum = [(0.0, 0.0, 0.0, [0.0; 3], 0.0); 2];
    for (name, m) in layer {
        row(name, m)?;
        for i in 0..2 {
            let pp = std::array::from_fn(|q| sum[i].3[q] + m[i].3[q]);
            sum[i] = (sum[i].0 + m[i].0, sum[i].1 + m[i].1, sum[i].2 + m[i].2, pp, sum[i].4 + m[i].4);
        }
    }
    // A layer's bytes: the party that sends most over the whole layer (in 3PC the helper's
    // role rotates from op to op, so the sum of the parts' largest overstates it).
    for m in &mut sum {
        m.1 = m.3.iter().copied().fold(0.0, f64::max);
    }
    row("layer", &sum)?;
    for (name, m) in head {
        row(name, m)?;
    }
    Ok(())
}
