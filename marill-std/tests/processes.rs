//! Parties as processes over loopback TCP: `marill serve`, `marill helper` / `marill dealer`
//! and `marill client` (and the client and the server alone in plain 2PC). Generated tokens equal the plaintext model's (teacher-forced, the
//! same tie rule as `secure_model.rs`), the server serves sessions one after another, and a
//! client with other public weights is refused by a clear handshake error.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use marill_core::format::{ModelFile, SectionKind};
use marill_std::model::Arch;
use marill_std::model::plain::{PlainModel, argmax};
use marill_std::model::random::{self, Variant};
use marill_std::model_file::{ModelMeta, decode_postcard, extract_public};

/// Kills the child if the test ends early.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_marill")
}

/// Start a listening role; returns the process and the address it printed.
fn start(args: &[&str]) -> (Guard, String) {
    let mut child = Command::new(exe()).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (Guard(child), addr)
}

/// `marill serve` in `setting` for `sessions` sessions, 20 s timeouts.
fn serve(model: &str, setting: &str, sessions: &str) -> (Guard, String) {
    start(&[
        "serve",
        "--model",
        model,
        "--listen",
        "127.0.0.1:0",
        "--setting",
        setting,
        "--sessions",
        sessions,
        "--timeout",
        "20",
    ])
}

fn client(model: &Path, server: &str, helper: &str, setting: &str, prompt: &str, n: usize) -> (bool, String, String) {
    let mut cmd = Command::new(exe());
    cmd.args(["client", "--model"]).arg(model).args(["--server", server]);
    if !helper.is_empty() {
        cmd.args(["--helper", helper]);
    }
    let out = cmd
        .args(["--setting", setting, "--prompt", prompt, "--gen", &n.to_string(), "--timeout", "20"])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn check_tokens(server_file: &[u8], prompt: &[u32], got: &[u32]) {
    let f = ModelFile::parse(server_file).unwrap();
    let meta: ModelMeta = decode_postcard(f.find_section(SectionKind::Metadata, false).unwrap().bytes).unwrap();
    let arch = Arch::from_meta(&meta).unwrap();
    let mut plain = PlainModel::load(&f, arch.clone(), 0, arch.n_layers, true).unwrap();
    let mut feed = prompt.to_vec();
    for tok in got {
        let mut h = plain.embed(&feed).unwrap();
        plain.layers(&mut h, feed.len()).unwrap();
        let logits = plain.logits(&h).unwrap();
        let best = argmax(&logits);
        assert!(
            best == *tok as usize || logits[best] - logits[*tok as usize] < 0.05,
            "token {tok} vs plaintext {best}"
        );
        feed = vec![*tok];
    }
}

fn files(dir: &Path, seed: u8) -> (Vec<u8>, PathBuf, PathBuf) {
    let v = Variant { public_layers: 2, lora_rank: 4, head_merge: 1, mpc_friendly: false, private_embedding: false };
    let server = random::model(v, 4, 32, 64, seed).unwrap();
    let client = extract_public(&server).unwrap();
    let (sp, cp) = (dir.join(format!("server{seed}.marill")), dir.join(format!("client{seed}.marill")));
    std::fs::write(&sp, &server).unwrap();
    std::fs::write(&cp, &client).unwrap();
    (server, sp, cp)
}

fn tokens(stdout: &str) -> Vec<u32> {
    stdout.split_whitespace().map(|t| t.parse().unwrap()).collect()
}

#[test]
fn three_processes_serve_sessions_in_turn_and_refuse_a_mismatched_model() {
    let dir = std::env::temp_dir().join(format!("marill-proc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_bytes, sp, cp) = files(&dir, 21);
    let (_, _, other_cp) = files(&dir, 22);
    let (sp, cp, other) = (sp.to_str().unwrap(), cp.to_str().unwrap(), other_cp.to_str().unwrap());

    let (mut srv, saddr) = serve(sp, "rep3", "3");
    let (mut hlp, haddr) = start(&[
        "helper",
        "--model",
        cp,
        "--listen",
        "127.0.0.1:0",
        "--server",
        &saddr,
        "--sessions",
        "3",
        "--timeout",
        "20",
    ]);

    for prompt in ["1 2 3 4", "40 9"] {
        let (ok, out, err) = client(Path::new(cp), &saddr, &haddr, "rep3", prompt, 6);
        assert!(ok, "client failed: {err}");
        let got = tokens(&out);
        assert_eq!(got.len(), 6);
        let p: Vec<u32> = prompt.split_whitespace().map(|t| t.parse().unwrap()).collect();
        check_tokens(&server_bytes, &p, &got);
    }
    // Other public weights: every party refuses, naming the digest; the server goes on.
    let (ok, _, err) = client(Path::new(other), &saddr, &haddr, "rep3", "1 2", 2);
    assert!(!ok);
    assert!(err.contains("digest"), "{err}");
    assert!(srv.0.wait().unwrap().success());
    assert!(hlp.0.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dealer_setting_as_processes() {
    let dir = std::env::temp_dir().join(format!("marill-proc-dealer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_bytes, sp, cp) = files(&dir, 23);
    let (sp, cp) = (sp.to_str().unwrap(), cp.to_str().unwrap());
    let (mut srv, saddr) = serve(sp, "dealer", "2");
    let (mut dlr, daddr) = start(&[
        "dealer",
        "--model",
        cp,
        "--listen",
        "127.0.0.1:0",
        "--server",
        &saddr,
        "--sessions",
        "2",
        "--timeout",
        "20",
    ]);
    let (ok, out, err) = client(Path::new(cp), &saddr, &daddr, "dealer", "5 6 7", 5);
    assert!(ok, "{err}");
    check_tokens(&server_bytes, &[5, 6, 7], &tokens(&out));
    // A client that asks for the wrong setting is refused by the others' handshake.
    let (ok, _, err) = client(Path::new(cp), &saddr, &daddr, "rep3", "5", 1);
    assert!(!ok);
    assert!(err.contains("setting"), "{err}");
    assert!(srv.0.wait().unwrap().success());
    assert!(dlr.0.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plain_2pc_as_two_processes() {
    let dir = std::env::temp_dir().join(format!("marill-proc-ot2pc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_bytes, sp, cp) = files(&dir, 24);
    let (_, _, other_cp) = files(&dir, 25);
    let (sp, cp, other) = (sp.to_str().unwrap(), cp.to_str().unwrap(), other_cp.to_str().unwrap());
    let (mut srv, saddr) = serve(sp, "ot2pc", "3");
    let (ok, out, err) = client(Path::new(cp), &saddr, "", "ot2pc", "5 6 7", 4);
    assert!(ok, "{err}");
    check_tokens(&server_bytes, &[5, 6, 7], &tokens(&out));
    // Another setting, or other public weights: refused by the handshake; the server goes on.
    let (ok, _, err) = client(Path::new(other), &saddr, "", "ot2pc", "1 2", 2);
    assert!(!ok);
    assert!(err.contains("digest"), "{err}");
    let (ok, _, err) = client(Path::new(cp), &saddr, "127.0.0.1:9", "ot2pc", "5", 1);
    assert!(!ok);
    assert!(err.contains("no helper"), "{err}");
    let (ok, out, err) = client(Path::new(cp), &saddr, "", "ot2pc", "9 8", 3);
    assert!(ok, "{err}");
    check_tokens(&server_bytes, &[9, 8], &tokens(&out));
    assert!(srv.0.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}
