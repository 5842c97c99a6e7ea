//! Secure generation checked against the plaintext model: one session program that runs
//! the whole MARILL inference at every party, and the teacher-forced comparison that tests,
//! benchmarks and the demo use.
//!
//! Tie-breaking: secure logits carry fixed-point error, so where the plaintext model's two
//! best logits are closer than `tie` either token is accepted. The comparison is
//! teacher-forced (the plaintext model is fed the secure run's tokens), so one accepted tie
//! does not derail the rest. Both argmaxes take the lowest index on exact ties.

use marill_core::format::ModelFile;
use marill_core::proto::Protocol;

use super::Arch;
use super::plain::{PlainModel, argmax};
use super::secure::{SecureModel, generate};
use crate::StdError;
use crate::run::Program;

/// The architecture in a file's public metadata.
pub fn arch_of(f: &ModelFile<'_>) -> Result<Arch, StdError> {
    Arch::of_file(f)
}

/// One secure generation: the server holds `server` (its full file), the client `client`
/// (the public part) and the prompt. Party 0 returns the tokens, the others nothing.
pub struct SecureGeneration<'a> {
    /// The server's file.
    pub server: &'a [u8],
    /// The client's file.
    pub client: &'a [u8],
    /// The client's prompt.
    pub prompt: Vec<u32>,
    /// Tokens to generate.
    pub new_tokens: usize,
}

impl Program for SecureGeneration<'_> {
    type Output = Vec<u32>;
    fn run<P: Protocol>(&self, p: &mut P) -> Result<Vec<u32>, StdError> {
        // Errors stay at the party that met them, whole (no error carries a share).
        let client_file = ModelFile::parse(self.client)?;
        let server_file = ModelFile::parse(self.server)?;
        let arch = arch_of(&client_file)?;
        let server = (p.party() == super::secure::SERVER).then_some(&server_file);
        let public = if server.is_some() { &server_file } else { &client_file };
        let mut model = SecureModel::setup(p, public, server, arch.clone())?;
        let mut public_model = PlainModel::load(&client_file, arch.clone(), 0, arch.n_public, false)?;
        let client = (p.party() == super::secure::CLIENT).then_some((&mut public_model, &self.prompt[..]));
        generate(p, &mut model, client, self.prompt.len(), self.new_tokens)
    }
}

/// A step where the secure token is not the plaintext model's argmax.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disagreement {
    /// Index of the generated token.
    pub step: usize,
    /// The secure run's token.
    pub secure: u32,
    /// The plaintext model's argmax.
    pub plain: u32,
    /// How far the plaintext logit of the secure token lies below the best one.
    pub gap: f64,
}

/// Teacher-forced comparison of secure tokens `got` with the plaintext model of `server`
/// after `prompt`: every step where they differ.
pub fn disagreements(server: &[u8], prompt: &[u32], got: &[u32]) -> Result<Vec<Disagreement>, StdError> {
    let f = ModelFile::parse(server)?;
    let arch = arch_of(&f)?;
    let mut plain = PlainModel::load(&f, arch.clone(), 0, arch.n_layers, true)?;
    let mut feed = prompt.to_vec();
    let mut out = Vec::new();
    for (step, tok) in got.iter().enumerate() {
        let mut h = plain.embed(&feed)?;
        plain.layers(&mut h, feed.len())?;
        let logits = plain.logits(&h)?;
        let best = argmax(&logits);
        if best != *tok as usize {
            let gap = logits[best] - logits.get(*tok as usize).copied().unwrap_or(f64::NEG_INFINITY);
            out.push(Disagreement { step, secure: *tok, plain: best as u32, gap });
        }
        feed = vec![*tok];
    }
    Ok(out)
}

/// [`disagreements`] allowing near-ties: returns how many were accepted; a token that
/// differs where the plaintext logits are `tie` or further apart is an error naming the
/// step.
pub fn teacher_forced(server: &[u8], prompt: &[u32], got: &[u32], tie: f64) -> Result<usize, StdError> {
    let d = disagreements(server, prompt, got)?;
    if let Some(x) = d.iter().find(|x| x.gap >= tie) {
        return Err(StdError::Model(format!(
            "step {}: secure token {}, plaintext {}, logit gap {:.4}",
            x.step, x.secure, x.plain, x.gap
        )));
    }
    Ok(d.len())
}
