//! The cost harness's JSON lines are a contract others measure with: these tests hold the
//! field names (extend, never rename or drop), the exactness of bytes and rounds (two runs of
//! one case agree to the byte) and the error bounds the harness reports, through the `cost`
//! binary itself.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use serde_json::Value;

/// The fields of every op line.
const OP_FIELDS: [&str; 11] = [
    "protocol",
    "op",
    "shape",
    "frac_bits",
    "wall_s",
    "bytes_sent_per_party",
    "rounds",
    "max_abs_err",
    "link",
    "ring",
    "threads",
];

/// The fields `--op model` adds to the op line's.
const MODEL_FIELDS: [&str; 10] = [
    "model",
    "decode_wall_s",
    "decode_bytes_sent_per_party",
    "decode_rounds",
    "token_mismatches",
    "parts",
    "peak_heap_per_party",
    "offline",
    "offline_s",
    "decode_offline_s",
];

fn cost(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_cost")).args(args).args(["--json", "--threads", "1"]).output().unwrap();
    assert!(out.status.success(), "cost {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

fn has_fields(line: &Value, fields: &[&str]) {
    for f in fields {
        assert!(line.get(f).is_some(), "field {f} missing from {line}");
    }
    let bytes = line["bytes_sent_per_party"].as_array().expect("bytes_sent_per_party is an array");
    assert_eq!(bytes.len(), 3, "{line}");
    assert!(bytes.iter().all(Value::is_u64), "{line}");
    assert!(line["rounds"].is_u64() && line["wall_s"].is_f64(), "{line}");
}

/// Bytes and rounds are exact: two runs of a case agree to the byte; the op's error is within
/// the harness's bound (mul of two fixed-point values, 16 fraction bits: a few units of the
/// last place, well under 1e-3).
#[test]
fn op_lines_keep_their_fields_and_exact_counts() {
    let args = ["--protocol", "all", "--op", "mul", "--shape", "n=4096"];
    let (a, b) = (cost(&args), cost(&args));
    assert_eq!(a.len(), 2, "one line per setting: {a:?}");
    for (x, y) in a.iter().zip(&b) {
        has_fields(x, &OP_FIELDS);
        assert_eq!(x["op"], "mul");
        assert_eq!(x["shape"], "n=4096");
        assert_eq!(x["link"], "none");
        assert_eq!(x["bytes_sent_per_party"], y["bytes_sent_per_party"], "bytes differ between runs");
        assert_eq!(x["rounds"], y["rounds"], "rounds differ between runs");
        let err = x["max_abs_err"].as_f64().unwrap();
        assert!(err < 1e-3, "mul error {err} in {x}");
    }
    let settings: Vec<&str> = a.iter().map(|l| l["protocol"].as_str().unwrap()).collect();
    assert_eq!(settings, ["dealer", "rep3"]);
}

/// `--op model` on a random variant: the op fields plus the model's, and the secure tokens
/// are the plaintext model's (no mismatch, teacher-forced).
#[test]
fn model_lines_keep_their_fields_and_the_plaintext_tokens() {
    let lines = cost(&["--protocol", "dealer", "--op", "model", "--variant", "lf", "--prompt-len", "4", "--gen", "2"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    has_fields(l, &OP_FIELDS);
    has_fields(l, &MODEL_FIELDS);
    assert_eq!(l["op"], "model");
    assert_eq!(l["token_mismatches"], 0, "{l}");
    assert_eq!(l["offline"], false);
    assert!(l["parts"].as_array().is_some_and(|p| !p.is_empty()), "{l}");
}

/// A closed standard output (`cost … --json | head -0`) ends the harness with a clear error,
/// not a panic and its backtrace.
#[test]
fn a_closed_stdout_is_an_error_not_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cost"))
        .args(["--protocol", "dealer", "--op", "mul", "--shape", "n=4096", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the first case is measured and printed.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cost: writing to standard output") && !err.contains("panicked"), "{err}");
}
