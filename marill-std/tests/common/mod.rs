//! Helpers shared by the tests that run parties as processes (`processes.rs`, `soak.rs`).
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use marill_core::format::{ModelFile, SectionKind};
use marill_std::model::Arch;
use marill_std::model::plain::{PlainModel, argmax};
use marill_std::model::random::{self, Variant};
use marill_std::model_file::{ModelMeta, extract_public};

/// Kills the child if the test ends early.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_marill")
}

/// TLS keys for the three roles, made by `marill keygen` in a directory.
pub struct Keys(PathBuf);

impl Keys {
    pub fn new(dir: &Path) -> Self {
        for role in ["server", "client", "helper"] {
            let key = dir.join(format!("{role}.key"));
            let out = Command::new(exe()).args(["keygen", "--out"]).arg(&key).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let public = std::fs::read_to_string(dir.join(format!("{role}.key.pub"))).unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), public);
            // keygen never overwrites a key.
            let again = Command::new(exe()).args(["keygen", "--out"]).arg(&key).output().unwrap();
            assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
        }
        Self(dir.to_path_buf())
    }
    /// `role`'s key, trusting the three public keys for their roles.
    pub fn args(&self, role: &str) -> Vec<String> {
        let f = |r: &str, ext: &str| self.0.join(format!("{r}.key{ext}")).to_str().unwrap().to_string();
        let mut a = vec!["--key".to_string(), f(role, "")];
        for r in ["server", "client", "helper"] {
            a.extend([format!("--trust-{r}"), f(r, ".pub")]);
        }
        a
    }
}

/// Start a listening role; returns the process and the address it printed.
pub fn start(args: &[&str], security: &[String]) -> (Guard, String) {
    start_logged(args, security, None)
}

/// [`start`] with the process's stderr (its log) written to `log` when given.
pub fn start_logged(args: &[&str], security: &[String], log: Option<&Path>) -> (Guard, String) {
    let stderr = log.map_or_else(Stdio::inherit, |l| Stdio::from(std::fs::File::create(l).unwrap()));
    let mut child =
        Command::new(exe()).args(args).args(security).stdout(Stdio::piped()).stderr(stderr).spawn().unwrap();
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
pub fn serve(model: &str, setting: &str, sessions: &str, security: &[String]) -> (Guard, String) {
    start(
        &[
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
        ],
        security,
    )
}

/// Run a command to its end: success, stdout, stderr.
pub fn output(mut cmd: Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// `marill client` with its flags.
pub fn client_cmd(
    model: &Path,
    server: &str,
    helper: &str,
    setting: &str,
    prompt: &str,
    n: usize,
    security: &[String],
) -> Command {
    let mut cmd = Command::new(exe());
    cmd.args(["client", "--model"]).arg(model).args(["--server", server]);
    if !helper.is_empty() {
        cmd.args(["--helper", helper]);
    }
    cmd.args(["--setting", setting, "--prompt", prompt, "--gen", &n.to_string(), "--timeout", "20"]).args(security);
    cmd
}

pub fn check_tokens(server_file: &[u8], prompt: &[u32], got: &[u32]) {
    let f = ModelFile::parse(server_file).unwrap();
    let meta = ModelMeta::decode(f.find_section(SectionKind::Metadata, false).unwrap().bytes).unwrap();
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

pub fn files(dir: &Path, seed: u8) -> (Vec<u8>, PathBuf, PathBuf) {
    let v = Variant { public_layers: 2, lora_rank: 4, head_merge: 1, mpc_friendly: false, private_embedding: false };
    let server = random::model(v, 4, 32, 64, seed).unwrap();
    let client = extract_public(&server).unwrap();
    let (sp, cp) = (dir.join(format!("server{seed}.marill")), dir.join(format!("client{seed}.marill")));
    std::fs::write(&sp, &server).unwrap();
    std::fs::write(&cp, &client).unwrap();
    (server, sp, cp)
}

pub fn tokens(stdout: &str) -> Vec<u32> {
    stdout.split_whitespace().map(|t| t.parse().unwrap()).collect()
}
