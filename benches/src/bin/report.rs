//! `report`: the demo's two tables. Joins marill-train's `quality.json` with the JSON lines
//! of `cost --op model --model FILE`, prints the quality table and, per setting, the cost
//! table with improvement factors over the baseline (`full`: every layer and the embedding in
//! MPC), and writes `report.json` and `costs.svg` (improvement factors as bars).
//!
//! `report --quality DIR/quality.json --costs DIR/costs.jsonl --out DIR`

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    setting: String,
    variant: String,
    accuracy: Option<f64>,
    relative_accuracy: Option<f64>,
    prefill_s: f64,
    prefill_bytes: u64,
    prefill_rounds: u64,
    decode_s: f64,
    decode_bytes: f64,
    decode_rounds: f64,
    token_mismatches: u64,
    x_prefill_time: f64,
    x_prefill_bytes: f64,
    x_prefill_rounds: f64,
    x_decode_time: f64,
    x_decode_bytes: f64,
    x_decode_rounds: f64,
}

fn num(v: &Value, k: &str) -> Result<f64, String> {
    v.get(k).and_then(Value::as_f64).ok_or_else(|| format!("cost line without {k}"))
}

/// Bytes of the party that sends the most.
fn max_party(v: &Value, k: &str) -> Result<f64, String> {
    let a = v.get(k).and_then(Value::as_array).ok_or_else(|| format!("cost line without {k}"))?;
    Ok(a.iter().filter_map(Value::as_f64).fold(0.0, f64::max))
}

fn variant_of(path: &str) -> String {
    Path::new(path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.into())
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str| -> Result<String, String> {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .ok_or_else(|| format!("usage: report --quality FILE --costs FILE --out DIR (missing {k})"))
    };
    let (quality, costs, out) = (get("--quality")?, get("--costs")?, get("--out")?);
    let q: Value = serde_json::from_str(&std::fs::read_to_string(&quality).map_err(|e| format!("{quality}: {e}"))?)
        .map_err(|e| format!("{quality}: {e}"))?;
    let mut acc: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for row in q.as_array().ok_or("quality.json: not an array")? {
        let v = row.get("variant").and_then(Value::as_str).ok_or("quality row without variant")?;
        acc.insert(v.into(), (num(row, "accuracy")?, num(row, "relative")?));
    }
    let text = std::fs::read_to_string(&costs).map_err(|e| format!("{costs}: {e}"))?;
    let mut lines = Vec::new();
    for l in text.lines().filter(|l| l.trim_start().starts_with('{')) {
        let v: Value = serde_json::from_str(l).map_err(|e| format!("{costs}: {e}"))?;
        if v.get("op").and_then(Value::as_str) == Some("model") {
            lines.push(v);
        }
    }
    let mut rows = Vec::new();
    let settings: Vec<String> = {
        let mut s: Vec<String> = Vec::new();
        for p in lines.iter().filter_map(|v| v.get("protocol").and_then(Value::as_str)) {
            if !s.iter().any(|x| x == p) {
                s.push(p.into());
            }
        }
        s
    };
    for setting in &settings {
        let of: Vec<&Value> =
            lines.iter().filter(|v| v.get("protocol").and_then(Value::as_str) == Some(setting)).collect();
        let base = of
            .iter()
            .find(|v| variant_of(v.get("model").and_then(Value::as_str).unwrap_or("")) == "full")
            .ok_or(format!("{setting}: no cost line for the baseline full.marill"))?;
        let b = (
            num(base, "wall_s")?,
            max_party(base, "bytes_sent_per_party")?,
            num(base, "rounds")?,
            num(base, "decode_wall_s")?,
            max_party(base, "decode_bytes_sent_per_party")?,
            num(base, "decode_rounds")?,
        );
        for v in of {
            let variant = variant_of(v.get("model").and_then(Value::as_str).unwrap_or(""));
            let (pt, pb, pr) = (num(v, "wall_s")?, max_party(v, "bytes_sent_per_party")?, num(v, "rounds")?);
            let (dt, db, dr) =
                (num(v, "decode_wall_s")?, max_party(v, "decode_bytes_sent_per_party")?, num(v, "decode_rounds")?);
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
            rows.push(Row {
                setting: setting.clone(),
                accuracy: acc.get(&variant).map(|a| a.0),
                relative_accuracy: acc.get(&variant).map(|a| a.1),
                variant,
                prefill_s: pt,
                prefill_bytes: pb as u64,
                prefill_rounds: pr as u64,
                decode_s: dt,
                decode_bytes: db,
                decode_rounds: dr,
                token_mismatches: num(v, "token_mismatches")? as u64,
                x_prefill_time: ratio(b.0, pt),
                x_prefill_bytes: ratio(b.1, pb),
                x_prefill_rounds: ratio(b.2, pr),
                x_decode_time: ratio(b.3, dt),
                x_decode_bytes: ratio(b.4, db),
                x_decode_rounds: ratio(b.5, dr),
            });
        }
    }
    let mut t = String::new();
    for setting in &settings {
        let _ = writeln!(
            t,
            "\ncost of secure generation, {setting} (bytes: the party that sends most; ×: improvement over full):"
        );
        let _ = writeln!(
            t,
            "{:<13} {:>6} {:>9} {:>9} {:>6} {:>9} {:>9} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7}",
            "variant",
            "acc",
            "prefill s",
            "MB",
            "rounds",
            "decode s",
            "MB",
            "rounds",
            "×pre t",
            "×pre B",
            "×dec t",
            "×dec B",
            "×rnd"
        );
        for r in rows.iter().filter(|r| &r.setting == setting) {
            let _ = writeln!(
                t,
                "{:<13} {:>6} {:>9.4} {:>9.3} {:>6} {:>9.4} {:>9.4} {:>6.0} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}",
                r.variant,
                r.relative_accuracy.map_or("-".into(), |a| format!("{a:.2}")),
                r.prefill_s,
                r.prefill_bytes as f64 / 1e6,
                r.prefill_rounds,
                r.decode_s,
                r.decode_bytes / 1e6,
                r.decode_rounds,
                r.x_prefill_time,
                r.x_prefill_bytes,
                r.x_decode_time,
                r.x_decode_bytes,
                r.x_prefill_rounds
            );
            if r.token_mismatches > 0 {
                let _ = writeln!(t, "  ({} tokens differ from the plaintext model)", r.token_mismatches);
            }
        }
    }
    print!("{t}");
    let out = Path::new(&out);
    let json = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
    std::fs::write(out.join("report.json"), json).map_err(|e| e.to_string())?;
    std::fs::write(out.join("costs.svg"), svg(&rows, &settings)).map_err(|e| e.to_string())?;
    println!("\nwrote {}/report.json and {}/costs.svg", out.display(), out.display());
    Ok(())
}

/// Grouped bars: per setting and variant, the prefill time, prefill bytes and decode time
/// improvement factors (log scale, 1× marked).
fn svg(rows: &[Row], settings: &[String]) -> String {
    let variants: Vec<&str> = {
        let mut v: Vec<&str> = rows.iter().map(|r| r.variant.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let (bar, gap, top, h) = (10.0, 14.0, 40.0, 240.0);
    let group = 3.0 * bar + gap;
    let panel = variants.len() as f64 * group + 60.0;
    let width = settings.len() as f64 * panel + 40.0;
    let max = rows.iter().flat_map(|r| [r.x_prefill_time, r.x_prefill_bytes, r.x_decode_time]).fold(2.0, f64::max);
    let y = |x: f64| top + h - h * (x.max(0.25).log2() + 2.0) / (max.log2() + 2.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{}" font-family="sans-serif" font-size="10">"#,
        top + h + 90.0
    );
    let _ = write!(
        s,
        r#"<text x="10" y="16" font-size="13">MARILL improvement over the all-in-MPC baseline (log scale; blue: prefill time, orange: prefill bytes, green: decode time)</text>"#
    );
    let colours = ["#4472c4", "#ed7d31", "#70ad47"];
    for (si, setting) in settings.iter().enumerate() {
        let x0 = 40.0 + si as f64 * panel;
        let _ = write!(s, r#"<text x="{x0}" y="{}" font-size="12">{setting}</text>"#, top - 6.0);
        let one = y(1.0);
        let _ = write!(
            s,
            r##"<line x1="{x0}" y1="{one}" x2="{}" y2="{one}" stroke="#999" stroke-dasharray="3,3"/><text x="{}" y="{}">1×</text>"##,
            x0 + panel - 40.0,
            x0 - 18.0,
            one + 3.0
        );
        for (vi, v) in variants.iter().enumerate() {
            let Some(r) = rows.iter().find(|r| &r.setting == setting && r.variant == *v) else { continue };
            let gx = x0 + vi as f64 * group;
            for (k, val) in [r.x_prefill_time, r.x_prefill_bytes, r.x_decode_time].iter().enumerate() {
                let (yv, bx) = (y(*val), gx + k as f64 * bar);
                let (ya, yb) = if yv < one { (yv, one) } else { (one, yv) };
                let _ = write!(
                    s,
                    r#"<rect x="{bx}" y="{ya}" width="{}" height="{}" fill="{}"><title>{v} {val:.2}×</title></rect>"#,
                    bar - 1.0,
                    (yb - ya).max(0.5),
                    colours[k]
                );
            }
            let _ = write!(s, r#"<text transform="translate({},{}) rotate(60)">{v}</text>"#, gx + 4.0, top + h + 8.0);
        }
    }
    s.push_str("</svg>\n");
    s
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("report: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
