//! `report`: the demo's two tables. Joins marill-train's `quality.json` with the JSON lines
//! of `cost --op model --model FILE`, prints the quality table and, per setting, the cost
//! table with improvement factors over the baseline (`full`: every layer and the embedding in
//! MPC), and writes `report.json` and the quality-vs-cost chart `quality-cost.png` and
//! `quality-cost.svg` (per setting: x = secure prefill speed-up over full, log scale; y = the
//! share of full fine-tuning's gain kept; one labelled point per variant), drawn with
//! plotters.
//!
//! `report --quality DIR/quality.json --costs DIR/costs.jsonl --out DIR`
//!
//! The quality file may also be the study's `study.json` (`marill-train study`): its token
//! accuracy stands in for the accuracy, relative to full fine-tuning's.

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
    let mut gain: BTreeMap<String, f64> = BTreeMap::new();
    let rows_in = q.as_array().ok_or("quality.json: not an array")?;
    // The study's rows (`marill-train study`) carry a token accuracy and no `relative`:
    // relative to full fine-tuning's.
    let accuracy_of = |row: &Value| num(row, "accuracy").or_else(|_| num(row, "token_accuracy"));
    let full_acc = rows_in
        .iter()
        .find(|r| r.get("variant").and_then(Value::as_str) == Some("full"))
        .and_then(|r| accuracy_of(r).ok());
    for row in rows_in {
        let v = row.get("variant").and_then(Value::as_str).ok_or("quality row without variant")?;
        let a = accuracy_of(row)?;
        let relative = match (num(row, "relative"), full_acc) {
            (Ok(r), _) => r,
            (Err(_), Some(f)) if f > 0.0 => a / f,
            (Err(e), _) => return Err(e),
        };
        acc.insert(v.into(), (a, relative));
        if let Some(g) = row.get("gain_kept").and_then(Value::as_f64) {
            gain.insert(v.into(), g);
        }
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
    match chart(&rows, &gain, &settings, out) {
        Ok(()) => println!("\nwrote {0}/report.json and {0}/quality-cost.png (and .svg)", out.display()),
        // The tables and report.json are the report; the chart needs a font file.
        Err(e) => println!("\nwrote {}/report.json; no chart: {e}", out.display()),
    }
    Ok(())
}

/// Font files tried for the chart's text (the first that exists is used).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// Register a sans-serif font for plotters' ab_glyph text (once per process).
fn register_font() -> Result<(), String> {
    let path = std::env::var("MARILL_CHART_FONT")
        .ok()
        .or_else(|| FONTS.iter().find(|p| Path::new(p).exists()).map(|p| p.to_string()))
        .ok_or("no font for the chart: install fonts-dejavu-core or set MARILL_CHART_FONT=FILE.ttf")?;
    let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    // plotters keeps the font for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes)
        .map_err(|_| format!("{path}: not a usable font"))
}

/// One point of the chart: a variant's prefill speed-up and quality.
pub struct Point {
    /// Variant label.
    pub label: String,
    /// Secure prefill time speed-up over full fine-tuning (×).
    pub speedup: f64,
    /// Share of full fine-tuning's quality gain kept.
    pub quality: f64,
}

/// Quality against cost, one panel per setting: x = secure prefill speed-up over full
/// fine-tuning (log scale), y = share of full fine-tuning's gain kept; one labelled point
/// per variant. Drawn into any plotters backend.
fn draw<DB: plotters::prelude::DrawingBackend>(
    root: plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    panels: &[(String, Vec<Point>)],
    title: &str,
) -> Result<(), String> {
    use plotters::prelude::*;
    let e = |x: &dyn std::fmt::Debug| format!("chart: {x:?}");
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(|x| e(&x))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, (setting, points)) in areas.into_iter().zip(panels) {
        let xmax = points.iter().map(|p| p.speedup).fold(2.0, f64::max) * 1.6;
        let xmin = points.iter().map(|p| p.speedup).fold(1.0, f64::min) * 0.8;
        let ymin = points.iter().map(|p| p.quality).fold(0.0, f64::min) - 0.05;
        let ymax = points.iter().map(|p| p.quality).fold(1.0, f64::max) + 0.2;
        let mut chart = ChartBuilder::on(&area)
            .caption(setting, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((xmin..xmax).log_scale(), ymin..ymax)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("secure prefill speed-up over full (×, log)")
            .y_desc("share of full fine-tuning's gain")
            .x_label_formatter(&|v| format!("{v:.1}×"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|x| e(&x))?;
        chart.draw_series(LineSeries::new([(xmin, 1.0), (xmax, 1.0)], BLACK.mix(0.3))).map_err(|x| e(&x))?;
        for (i, p) in points.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((p.speedup, p.quality))
                        + Circle::new((0, 0), 5, colour.filled())
                        + Text::new(p.label.clone(), (7, -12), ("sans-serif", 12).into_font()),
                ))
                .map_err(|x| e(&x))?;
        }
    }
    root.present().map_err(|x| e(&x))
}

/// `DIR/quality-cost.png` and `.svg` from the report's rows (the quality of a variant is its
/// share of full fine-tuning's gain from quality.json, else its accuracy relative to full).
fn chart(rows: &[Row], gain: &BTreeMap<String, f64>, settings: &[String], out: &Path) -> Result<(), String> {
    let panels: Vec<(String, Vec<Point>)> = settings
        .iter()
        .map(|s| {
            let pts = rows
                .iter()
                .filter(|r| &r.setting == s)
                .filter_map(|r| {
                    let q = gain.get(&r.variant).copied().or(r.relative_accuracy)?;
                    Some(Point { label: r.variant.clone(), speedup: r.x_prefill_time, quality: q })
                })
                .collect();
            (s.clone(), pts)
        })
        .collect();
    chart_points(&panels, "MARILL: quality kept against secure prefill speed-up", out, "quality-cost")
}

/// Write `out/NAME.png` and `out/NAME.svg`.
pub fn chart_points(panels: &[(String, Vec<Point>)], title: &str, out: &Path, name: &str) -> Result<(), String> {
    use plotters::prelude::*;
    register_font()?;
    let size = (460 * panels.len().max(1) as u32, 440);
    let png = out.join(format!("{name}.png"));
    draw(BitMapBackend::new(&png, size).into_drawing_area(), panels, title)?;
    let svg = out.join(format!("{name}.svg"));
    draw(SVGBackend::new(&svg, size).into_drawing_area(), panels, title)?;
    Ok(())
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
