//! Measured secure generation: the prefill of a prompt, then decode steps, each timed and
//! metered per party (the cost harness's `--op model` and `marill cost`), with the tokens
//! checked against the plaintext model.

use std::time::{Duration, Instant};

use super::plain::PlainModel;
use super::secure::{CLIENT, SecureModel};
use super::{Arch, check};
use crate::Setting;
use crate::model_file::extract_public;
use crate::run::{Program, run_mem};
use marill_core::Error;
use marill_core::cost::Cost;
use marill_core::format::ModelFile;
use marill_core::proto::Protocol;

/// A model and a generation length.
pub struct ModelCase {
    server: Vec<u8>,
    client: Vec<u8>,
    prompt_len: usize,
    new_tokens: usize,
}

/// Measured steps: index 0 is the prefill, then one per decoded token.
pub struct Steps {
    /// Per step: longest time any party spent.
    pub wall: Vec<Duration>,
    /// Per step: bytes each party sent.
    pub bytes: Vec<[u64; 3]>,
    /// Per step: rounds added.
    pub rounds: Vec<u64>,
    /// Tokens the client received.
    pub tokens: Vec<u32>,
    /// Tokens where the plaintext model disagrees (teacher-forced).
    pub mismatches: usize,
}

fn arch_of(f: &ModelFile<'_>) -> Result<Arch, String> {
    check::arch_of(f).map_err(|e| e.to_string())
}

impl ModelCase {
    /// A case over a server file's bytes.
    pub fn new(server: Vec<u8>, prompt_len: usize, new_tokens: usize) -> Result<Self, String> {
        let client = extract_public(&server).map_err(|e| e.to_string())?;
        if prompt_len == 0 || new_tokens == 0 {
            return Err("--prompt-len and --gen must be positive".into());
        }
        Ok(Self { server, client, prompt_len, new_tokens })
    }

    fn prompt(&self, vocab: usize) -> Vec<u32> {
        (0..self.prompt_len).map(|i| ((i * 7 + 3) % vocab) as u32).collect()
    }

    /// Run every party in memory and measure each step.
    pub fn measure(&self, setting: Setting) -> Result<Steps, String> {
        let r = run_mem(setting, self).map_err(|e| e.to_string())?;
        let steps = r[0].0.0.len();
        let mut out =
            Steps { wall: Vec::new(), bytes: Vec::new(), rounds: Vec::new(), tokens: r[0].0.1.clone(), mismatches: 0 };
        for i in 0..steps {
            out.wall.push(r.iter().map(|((s, _), _)| s[i].0).max().unwrap_or_default());
            out.bytes.push([
                r[0].0.0[i].1.bytes_sent,
                r[1].0.0[i].1.bytes_sent,
                r.get(2).map_or(0, |p| p.0.0[i].1.bytes_sent),
            ]);
            let after = r.iter().map(|((s, _), _)| s[i].2.1).max().unwrap_or(0);
            let before = r.iter().map(|((s, _), _)| s[i].2.0).max().unwrap_or(0);
            out.rounds.push(after - before);
        }
        // Teacher-forced plaintext check of the tokens.
        let prompt = self.prompt(arch_of(&ModelFile::parse(&self.client).map_err(|e| e.to_string())?)?.vocab);
        out.mismatches = check::disagreements(&self.server, &prompt, &out.tokens).map_err(|e| e.to_string())?.len();
        Ok(out)
    }
}

impl Program for ModelCase {
    /// Per step (time, cost, clocks before/after) and the client's tokens.
    type Output = (Vec<(Duration, Cost, (u64, u64))>, Vec<u32>);

    fn run<P: Protocol>(&self, p: &mut P) -> Result<Self::Output, Error> {
        let bad = |_| Error::Protocol;
        let cf = ModelFile::parse(&self.client).map_err(|_| Error::Malformed)?;
        let sf = ModelFile::parse(&self.server).map_err(|_| Error::Malformed)?;
        let arch = arch_of(&cf).map_err(|_| Error::Malformed)?;
        let server = (p.party() == 1).then_some(&sf);
        let public = if p.party() == 1 { &sf } else { &cf };
        let mut model = SecureModel::setup(p, public, server, arch.clone()).map_err(bad)?;
        let mut pm = PlainModel::load(&cf, arch.clone(), 0, arch.n_public, false).map_err(bad)?;
        let mut feed = self.prompt(arch.vocab);
        let mut m = self.prompt_len;
        let (mut steps, mut tokens) = (Vec::new(), Vec::new());
        for _ in 0..self.new_tokens {
            let c0 = p.cost().unwrap_or_default();
            let t0 = Instant::now();
            let client = (p.party() == CLIENT).then_some((&mut pm, &feed[..]));
            let mut h = model.entry(p, m, client).map_err(bad)?;
            let idx = model.step(p, &mut h, m).map_err(bad)?;
            let mut tok = [0u64];
            p.reveal_to(CLIENT, &idx, &mut tok)?;
            let c1 = p.cost().unwrap_or_default();
            steps.push((t0.elapsed(), c1.since(&c0), (c0.rounds, c1.rounds)));
            if p.party() == CLIENT {
                tokens.push(tok[0] as u32);
                feed = vec![tok[0] as u32];
            }
            m = 1;
        }
        Ok((steps, tokens))
    }
}
