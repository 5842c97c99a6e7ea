//! `marill cost` on the tiny shape: the method of the paper-shape tables (1- and 2-layer
//! models, per-layer costs scaled to the layers in MPC) gives consistent rows.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn field(line: &serde_json::Value, k: &str) -> f64 {
    line.get(k).and_then(serde_json::Value::as_f64).unwrap()
}

#[test]
fn cost_tables_scale_per_layer_costs_consistently() {
    let out = Command::new(env!("CARGO_BIN_EXE_marill"))
        .args(["cost", "--shape", "tiny", "--prompt-len", "4", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // 6 variants and 5 Table 2 rows, in each of the three settings; only JSON on stdout.
    assert_eq!(rows.len(), 33);
    for setting in ["dealer", "rep3", "ot2pc"] {
        let of = |v: &str| rows.iter().find(|r| r["setting"] == setting && r["variant"] == v).unwrap();
        for key in ["prefill_bytes", "prefill_rounds", "decode_bytes", "decode_rounds"] {
            // LF 0.5 is Table 2's f = 13/26 row.
            assert_eq!(field(of("lf0.5"), key), field(of("f=13/26"), key));
            // Fewer layers in MPC, strictly less of everything.
            let f: Vec<f64> =
                ["f=13/26", "f=9/26", "f=6/26", "f=5/26", "f=4/26"].iter().map(|v| field(of(v), key)).collect();
            assert!(f.windows(2).all(|w| w[1] < w[0]), "{setting} {key}: {f:?}");
            // The baseline (every layer and the embedding in MPC) costs the most bytes.
            assert!(field(of("baseline"), key) > field(of("lf0.5"), key), "{setting} {key}");
        }
        for r in rows.iter().filter(|r| r["setting"] == setting) {
            assert!(field(r, "prefill_s") >= 0.0 && field(r, "decode_s") >= 0.0);
            // Plain 2PC's steps are timed once by default, the others twice.
            assert_eq!(field(r, "runs"), if setting == "ot2pc" { 1.0 } else { 2.0 });
        }
    }
}

/// `--variant` runs one row and `--link` puts the parties on an emulated network: the same
/// bytes and rounds as without it, every round now costing at least the link's one-way
/// latency, and the profile named in the JSON.
#[test]
fn one_variant_over_an_emulated_link() {
    let run = |link: Option<&str>| -> serde_json::Value { run_lf(link, None, 1) };
    let (direct, linked) = (run(None), run(Some("4,1000")));
    assert_eq!(direct["link"], "none");
    assert_eq!(direct["ring"], marill_core::ring::detected().name());
    assert_eq!(linked["link"], "4,1000");
    assert_eq!(linked["variant"], "lf0.5");
    for key in ["prefill_bytes", "prefill_rounds", "decode_bytes", "decode_rounds"] {
        assert_eq!(field(&direct, key), field(&linked, key), "{key}");
    }
    for step in ["prefill", "decode"] {
        let rounds = field(&linked, &format!("{step}_rounds"));
        let took = field(&linked, &format!("{step}_s"));
        // Rounds are one-way message depths: each costs a one-way latency of 2 ms.
        assert!(took >= 0.9 * rounds * 0.002, "{step}: {took} s for {rounds} rounds");
        assert!(took > field(&direct, &format!("{step}_s")));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_marill")).args(["cost", "--variant", "nope"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'nope' for '--variant"));
}

/// `--offline` (2PC-Dealer): the dealer deals each step and its corrections are delivered
/// before the compute parties start. Bytes and rounds are the same as without; the online
/// bytes are the compute parties'; the offline phase takes at least the dealer's bytes over
/// the link's bandwidth. Without `--offline` the new fields say there was none, and another
/// setting is refused.
#[test]
fn an_offline_phase_times_the_dealer_apart_from_the_online_phase() {
    let (streamed, ahead) = (run_lf(Some("4,100"), None, 1), run_lf_with(Some("4,100"), None, 1, &["--offline"]));
    assert_eq!((&streamed["offline"], &ahead["offline"]), (&serde_json::json!(false), &serde_json::json!(true)));
    assert!(streamed["prefill_offline_s"].is_null() && streamed["decode_offline_s"].is_null());
    for key in ["prefill_bytes", "prefill_rounds", "decode_bytes", "decode_rounds"] {
        assert_eq!(field(&streamed, key), field(&ahead, key), "{key}");
    }
    for step in ["prefill", "decode"] {
        let per: Vec<f64> =
            ahead[format!("{step}_bytes_per_party")].as_array().unwrap().iter().map(|b| b.as_f64().unwrap()).collect();
        assert_eq!(field(&ahead, &format!("{step}_online_bytes")), per[0].max(per[1]), "{step}");
        assert_eq!(field(&streamed, &format!("{step}_online_bytes")), per[0].max(per[1]), "{step}");
        // The dealer's bytes of the step at 100 Mbit/s, delivered before the step starts.
        let offline = field(&ahead, &format!("{step}_offline_s"));
        assert!(offline >= 0.9 * per[2] * 8.0 / 100e6, "{step}: {offline} s for {} bytes", per[2]);
        // The online phase still pays a one-way latency (2 ms) a round.
        assert!(field(&ahead, &format!("{step}_s")) >= 0.9 * field(&ahead, &format!("{step}_rounds")) * 0.002);
    }
    let out =
        Command::new(env!("CARGO_BIN_EXE_marill")).args(["cost", "--offline", "--setting", "rep3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2PC-Dealer"));
}

/// `MARILL_RING` pins the ring kernels and `--threads` splits them: every backend this CPU
/// has, on 1 or 3 threads, gives the same bytes and rounds and is named in the JSON; an
/// unknown backend is refused with the choices.
#[test]
fn marill_ring_pins_the_kernels_and_threads_split_them() {
    use marill_core::ring::Backend;
    let base = run_lf(None, Some("portable"), 1);
    assert_eq!((&base["ring"], &base["threads"]), (&serde_json::json!("portable"), &serde_json::json!(1)));
    // Each party's peak heap over the measured session: three figures, each at least the
    // layer's weights' shares (d 64, ffn 172: about 50 000 weights, 8 bytes a share word).
    let peak = base["peak_heap_per_party"].as_array().unwrap();
    assert_eq!(peak.len(), 3);
    assert!(peak.iter().all(|p| p.as_f64().unwrap() > 4e5), "{peak:?}");
    for (b, t) in Backend::ALL.into_iter().filter(|b| b.available()).flat_map(|b| [(b, 1), (b, 3)]) {
        let row = run_lf(None, Some(b.name()), t);
        assert_eq!(row["ring"], b.name());
        assert_eq!(row["threads"], t);
        for key in ["prefill_bytes", "prefill_rounds", "decode_bytes", "decode_rounds"] {
            assert_eq!(field(&base, key), field(&row, key), "{key} on {}", b.name());
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_marill")).env("MARILL_RING", "sse9").args(["cost"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MARILL_RING=sse9") && err.contains("portable"), "{err}");
}

/// `--ot-batch` (plain 2PC): a small batch runs the same step in windows, so about the same
/// bytes in more rounds, with a smaller peak heap at each party (the ops' OT state is bounded by the
/// batch); the JSON line names the batch; another setting refuses the flag.
#[test]
fn the_ot_batch_trades_rounds_for_memory_in_plain_2pc() {
    let run = |batch: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_marill"));
        cmd.args(["cost", "--shape", "tiny", "--prompt-len", "8", "--setting", "ot2pc", "--variant", "lf0.5"]);
        cmd.args(["--threads", "1", "--json"]);
        if let Some(b) = batch {
            cmd.args(["--ot-batch", b]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        line
    };
    let (whole, small) = (run(None), run(Some("1024")));
    assert_eq!(whole["ot_batch"], marill_std::ot2pc::ot::MAX_BATCH);
    assert_eq!(small["ot_batch"], 1024);
    // Each window rounds its IKNP matrix and its packed bits up to 64 OTs: a few per cent more.
    for key in ["prefill_bytes", "decode_bytes"] {
        let (w, s) = (field(&whole, key), field(&small, key));
        assert!(s >= w && s <= 1.1 * w, "{key}: {s} at 1024 OTs, {w} in one batch");
    }
    assert!(field(&small, "prefill_rounds") > field(&whole, "prefill_rounds"));
    let peak = |l: &serde_json::Value, p: usize| l["peak_heap_per_party"][p].as_f64().unwrap();
    for p in 0..2 {
        assert!(
            peak(&small, p) < peak(&whole, p),
            "party {p}: {} B at 1024 OTs, {} B in one batch",
            peak(&small, p),
            peak(&whole, p)
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_marill"))
        .args(["cost", "--shape", "tiny", "--setting", "dealer", "--ot-batch", "1024"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ot-batch"));
}

/// A closed standard output (`marill … | head -0`) ends the command with a clear error, not a
/// panic and its backtrace.
#[test]
fn a_closed_stdout_is_an_error_not_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_marill"))
        .args(["cost", "--shape", "tiny", "--prompt-len", "4", "--setting", "dealer", "--variant", "lf0.5", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed long before the measurement prints its line.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("marill: writing to standard output") && !err.contains("panicked"), "{err}");
}

fn run_lf(link: Option<&str>, ring: Option<&str>, threads: usize) -> serde_json::Value {
    run_lf_with(link, ring, threads, &[])
}

fn run_lf_with(link: Option<&str>, ring: Option<&str>, threads: usize, more: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_marill"));
    cmd.args(["cost", "--threads", &threads.to_string()]);
    cmd.args(more);
    if let Some(r) = ring {
        cmd.env("MARILL_RING", r);
    }
    cmd.args(["--shape", "tiny", "--prompt-len", "4", "--setting", "dealer", "--variant", "lf0.5", "--json"]);
    if let Some(l) = link {
        cmd.args(["--link", l]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].clone()
}

/// Usage errors exit with 2 and name what is wrong (clap's messages): an unknown flag (with
/// the command's usage line), a bad value (with the choices), a flag without its value, and a
/// client file given to `marill serve` (refused before it listens); `--help` exits with 0 and
/// lists every flag of the command; a flag given twice takes its last value.
#[test]
fn usage_errors_name_the_flag_or_the_value() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_marill")).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, err, _) = run(&["cost", "--bogus", "1"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unexpected argument '--bogus'") && err.contains("marill cost"), "{err}");
    let (code, err, _) = run(&["cost", "--setting", "rep4"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("'rep4' for '--setting") && err.contains("dealer, rep3, ot2pc"), "{err}");
    let (code, err, _) = run(&["cost", "--setting"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("a value is required for '--setting") && !err.contains("handshake"), "{err}");
    let (code, _, help) = run(&["cost", "--help"]);
    assert_eq!(code, Some(0));
    for flag in
        ["--setting", "--prompt-len", "--shape", "--runs", "--json", "--link", "--variant", "--threads", "--offline"]
    {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    let dir = std::env::temp_dir().join(format!("marill-usage-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    assert_eq!(run(&["random-model", "--variant", "lf", "--out", d]).0, Some(0));
    let client = dir.join("client.marill");
    let (code, err, out) = run(&[
        "serve",
        "--model",
        client.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--setting",
        "rep3",
        "--insecure-plaintext",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is a client file") && !out.contains("listening"), "{err}");
    let (code, err, _) = run(&["random-model", "--variant", "lf9", "--out", d]);
    assert_eq!(code, Some(2));
    assert!(err.contains("'lf9' for '--variant") && err.contains("lf+lora"), "{err}");
    // A flag given twice takes its last value (the soak test appends `--timeout` to the
    // client's defaults; clap's default would refuse the second); each value is still checked.
    let size = |variants: &[&str]| {
        let mut args = vec!["random-model", "--out", d];
        for v in variants {
            args.extend(["--variant", v]);
        }
        assert_eq!(run(&args).0, Some(0), "{args:?}");
        std::fs::metadata(dir.join("server.marill")).unwrap().len()
    };
    let (lf, lora) = (size(&["lf"]), size(&["lora"]));
    assert_ne!(lf, lora);
    assert_eq!(size(&["lf", "lora"]), lora);
    assert_eq!(size(&["lora", "lf"]), lf);
    let (code, err, _) = run(&["random-model", "--variant", "lf9", "--variant", "lf", "--out", d]);
    assert_eq!(code, Some(2));
    assert!(err.contains("'lf9' for '--variant"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
