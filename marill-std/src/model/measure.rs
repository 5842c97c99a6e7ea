//! Measured secure generation: the prefill of a prompt, then decode steps, each timed and
//! metered per party (the cost harness's `--op model` and `marill cost`), with the tokens
//! checked against the plaintext model.

use std::time::{Duration, Instant};

use super::plain::PlainModel;
use super::secure::{CLIENT, SecureModel};
use super::{Arch, check};
use crate::model_file::extract_public;
use crate::ot2pc::ot::MAX_BATCH;
use crate::run::{Program, run_mem_with};
use crate::transport::link::LinkModel;
use crate::{Setting, StdError};
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
    /// The emulated link between the parties (none: memory, as fast as it goes).
    link: Option<LinkModel>,
    /// 2PC-Dealer with an offline phase ([`ModelCase::offline`]): the gate the parties pass
    /// twice a step.
    offline: Option<Gate>,
    /// Plain 2PC's OT batch ([`ModelCase::ot_batch`]).
    ot_batch: usize,
}

/// A cyclic barrier of the three party threads of an in-process run, with a deadline and a
/// way out: a party that fails breaks it, and every wait then ends with an error instead of
/// waiting for a party that will not come.
struct Gate {
    state: std::sync::Mutex<(usize, u64, bool)>,
    turn: std::sync::Condvar,
    parties: usize,
}

/// How long a party waits at the gate: the dealer's whole step over the slowest link
/// profile, with room; a stuck party fails on its channel's own deadline first.
const GATE_TIMEOUT: Duration = Duration::from_secs(3600);

impl Gate {
    fn new(parties: usize) -> Self {
        Self { state: std::sync::Mutex::new((0, 0, false)), turn: std::sync::Condvar::new(), parties }
    }

    /// Wait until every party has arrived (`PeerClosed` once the gate is broken, `Timeout`
    /// after [`GATE_TIMEOUT`]).
    fn pass(&self) -> Result<(), Error> {
        let mut st = self.state.lock().map_err(|_| Error::Protocol)?;
        if st.2 {
            return Err(Error::PeerClosed);
        }
        st.0 += 1;
        if st.0 == self.parties {
            *st = (0, st.1 + 1, false);
            self.turn.notify_all();
            return Ok(());
        }
        let generation = st.1;
        let deadline = Instant::now() + GATE_TIMEOUT;
        while st.1 == generation {
            if st.2 {
                return Err(Error::PeerClosed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            st = self.turn.wait_timeout(st, left).map_err(|_| Error::Protocol)?.0;
        }
        Ok(())
    }

    /// Let every waiting and later `pass` fail.
    fn break_all(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.2 = true;
            self.turn.notify_all();
        }
    }
}

/// Measured steps: index 0 is the prefill, then one per decoded token.
pub struct Steps {
    /// Per step: longest time any party spent.
    pub wall: Vec<Duration>,
    /// Per step: bytes each party sent.
    pub bytes: Vec<[u64; 3]>,
    /// Per step: rounds added.
    pub rounds: Vec<u64>,
    /// Per step, with an offline phase: the dealer's time (see [`Span::offline`]); empty
    /// without.
    pub offline_wall: Vec<Duration>,
    /// Per step: the roles' turn at its start and the turns it took ([`Span::turn`]).
    pub turns: Vec<(u64, u64)>,
    /// Tokens the client received.
    pub tokens: Vec<u32>,
    /// Tokens where the plaintext model disagrees (teacher-forced).
    pub mismatches: usize,
    /// Per step, per private layer: that layer's own span (from [`super::secure::Mark`]s).
    pub layers: Vec<Vec<Span>>,
    /// Per step, each part of [`super::secure::PARTS`] that ran, summed over the private
    /// layers (the head's parts once), in that order.
    pub parts: Vec<Vec<(&'static str, Span)>>,
    /// Each party's peak live heap over the whole session (set-up, prefill, decode), in
    /// bytes, where the binary installed [`crate::alloc_meter::PartyAlloc`].
    pub peak_heap: Option<[u64; 3]>,
    /// Whether the dealer dealt each step ahead ([`ModelCase::offline`]): then every span's
    /// `wall` is the compute parties' (the online phase) and `offline` the dealer's.
    pub offline: bool,
}

impl Steps {
    /// Step `i`'s bytes per party, split to scale to other numbers of layers.
    pub fn rotating(&self, i: usize) -> Rotating {
        let head: Vec<Span> =
            self.parts[i].iter().filter(|p| !super::secure::is_layer_part(p.0)).map(|p| p.1).collect();
        Rotating::split(&self.step(i), &self.layers[i], &head)
    }

    /// Step `i` as a whole.
    pub fn step(&self, i: usize) -> Span {
        let offline = self.offline_wall.get(i).copied().unwrap_or_default();
        let (turn, turns) = self.turns[i];
        Span { wall: self.wall[i], bytes: self.bytes[i], rounds: self.rounds[i], offline, turn, turns }
    }
}

/// One span of a step across the parties.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Span {
    /// The longest time any party spent in it.
    pub wall: Duration,
    /// Bytes each party sent in it.
    pub bytes: [u64; 3],
    /// Rounds it added: the latest clock at its end less the latest at its start.
    pub rounds: u64,
    /// With an offline phase ([`ModelCase::offline`]): the dealer's time to deal it and
    /// deliver its corrections, which `wall` (the compute parties') leaves out; zero
    /// without.
    pub offline: Duration,
    /// The roles' turn where the span began ([`Protocol::turns`]: 3PC's helper rotation).
    pub turn: u64,
    /// Turns the span took: the next span's roles sit that many parties further on.
    pub turns: u64,
}

/// At one party, a span: its time and cost, the clock before and after, and the roles'
/// turn ([`Protocol::turns`]) before and after.
struct Spent {
    wall: Duration,
    cost: Cost,
    clock: (u64, u64),
    turn: (u64, u64),
}

impl Spent {
    /// From one mark to the next.
    fn between(a: &super::secure::Mark, b: &super::secure::Mark) -> Self {
        Spent {
            wall: b.at - a.at,
            cost: b.cost.since(&a.cost),
            clock: (a.cost.rounds, b.cost.rounds),
            turn: (a.turn, b.turn),
        }
    }
}

/// One span across the parties; `offline`: party 2 is the dealer with an offline phase,
/// whose time goes to [`Span::offline`] rather than `wall`.
fn span(per_party: &[&Spent], offline: bool) -> Span {
    let mut bytes = [0; 3];
    for (b, s) in bytes.iter_mut().zip(per_party) {
        *b = s.cost.bytes_sent;
    }
    let after = per_party.iter().map(|s| s.clock.1).max().unwrap_or(0);
    let before = per_party.iter().map(|s| s.clock.0).max().unwrap_or(0);
    let online = if offline { &per_party[..per_party.len().min(2)] } else { per_party };
    // Every party makes the same calls, so their turns agree; party 0's stand for all.
    let turn = per_party.first().map_or((0, 0), |s| s.turn);
    Span {
        wall: online.iter().map(|s| s.wall).max().unwrap_or_default(),
        bytes,
        rounds: after - before,
        offline: if offline { per_party.get(2).map(|s| s.wall).unwrap_or_default() } else { Duration::ZERO },
        turn: turn.0,
        turns: turn.1 - turn.0,
    }
}

/// One step's bytes per party, split so that they scale to any number of layers where the
/// roles rotate (3PC's helper, [`Protocol::turns`]). The secure model starts layer `l` of a
/// step at turn `l` ([`Protocol::align_turns`]), so a 3-layer model's layers send `[a, b, c]`,
/// `[c, a, b]`, `[b, c, a]`, not three times `[a, b, c]`, and the head's vector moves with
/// the number of layers before it. Where roles never move (every turn 0) this is
/// `fixed + k·layer` per party.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rotating {
    /// Before the layers (sharing the input, the embedding) and after the head (the
    /// reveal): as measured, whatever the layers (the step starts at turn 0).
    pub pre: [f64; 3],
    /// The head (final norm, lm head, argmax) as measured.
    pub head: [f64; 3],
    /// The turn the head began at in the measured model.
    pub head_turn: u64,
    /// One layer, rotated back to turn 0 (`layer[r]` is what party `r` sends in a layer
    /// that starts at turn 0).
    pub layer: [f64; 3],
    /// Turns one layer takes (0: the roles never move).
    pub layer_turns: u64,
}

impl Rotating {
    /// Bytes per party of this step in a model of `k` layers (`k ≥ 1`, or 0 for a split
    /// measured without layers).
    pub fn with_layers(&self, k: usize) -> [f64; 3] {
        // A vector measured at turn t, seen at turn t + d: party q sends what q − d did.
        let at = |v: &[f64; 3], d: u64, q: usize| v[(q + 3 - (d % 3) as usize) % 3];
        let rotates = u64::from(self.layer_turns > 0);
        let start = |l: usize| l as u64 * rotates;
        // The head starts after the last layer (at its start plus its turns).
        let head = if k == 0 { self.head_turn } else { start(k - 1) + self.layer_turns };
        let d = (head % 3 + 3 - self.head_turn % 3) % 3;
        std::array::from_fn(|q| {
            let layers: f64 = (0..k).map(|l| at(&self.layer, start(l), q)).sum();
            self.pre[q] + layers + at(&self.head, d, q)
        })
    }

    /// A step's split from its spans: the whole step, its private layers and the head's
    /// parts in order.
    pub fn split(whole: &Span, layers: &[Span], head: &[Span]) -> Rotating {
        let f = |b: [u64; 3]| b.map(|x| x as f64);
        let sum = |v: &[Span]| v.iter().fold([0.0; 3], |a, s| std::array::from_fn(|q| a[q] + s.bytes[q] as f64));
        let head_bytes = sum(head);
        let head_turn = head.first().map_or(whole.turn + whole.turns, |s| s.turn);
        let (lb, lt) = layers.first().map_or(([0.0; 3], 0), |s| (f(s.bytes), s.turn));
        // The last layer's turns: an earlier layer's span also holds the realignment at
        // the next layer's start.
        let lturns = layers.last().map_or(0, |s| s.turns);
        let all_layers = sum(layers);
        let pre = std::array::from_fn(|q| f(whole.bytes)[q] - all_layers[q] - head_bytes[q]);
        Rotating {
            pre,
            head: head_bytes,
            head_turn,
            layer: std::array::from_fn(|r| lb[(r + (lt % 3) as usize) % 3]),
            layer_turns: lturns,
        }
    }
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
        Ok(Self { server, client, prompt_len, new_tokens, link: None, offline: None, ot_batch: MAX_BATCH })
    }

    /// Measure 2PC-Dealer with an offline phase: before each step the dealer deals the
    /// whole step and its corrections are delivered (over the link, if any) before the
    /// compute parties start; their time is the online phase's, the dealer's the offline
    /// phase's ([`Steps::offline`]). The compute parties buffer the step's corrections (the
    /// dealer's bytes of a step: 388 MB for one openllama-3b layer at 64 tokens). Only
    /// [`Setting::Dealer`] can be measured so ([`ModelCase::measure`] refuses the others).
    pub fn offline(mut self) -> Self {
        self.offline = Some(Gate::new(3));
        self
    }

    /// In plain 2PC, at most `batch` OTs in flight ([`crate::ot2pc::Ot2pc::set_ot_batch`];
    /// default [`MAX_BATCH`]): it bounds each op's OT state, and an op of more OTs runs in
    /// windows, in more rounds. The other settings ignore it.
    pub fn ot_batch(mut self, batch: usize) -> Self {
        self.ot_batch = batch;
        self
    }

    /// The parties talk over `link` (see [`crate::transport::link`]).
    pub fn over(mut self, link: Option<LinkModel>) -> Self {
        self.link = link;
        self
    }

    fn prompt(&self, vocab: usize) -> Vec<u32> {
        (0..self.prompt_len).map(|i| ((i * 7 + 3) % vocab) as u32).collect()
    }

    /// Run every party in memory and measure each step.
    pub fn measure(&self, setting: Setting) -> Result<Steps, String> {
        let offline = self.offline.is_some();
        if offline && setting != Setting::Dealer {
            return Err(format!(
                "an offline phase is 2PC-Dealer's: {} has no party whose messages do not depend on the inputs",
                setting.name()
            ));
        }
        crate::alloc_meter::reset_peaks();
        let r = run_mem_with(setting, self.link, self.ot_batch, self).map_err(|e| e.to_string())?;
        let steps = r[0].0.steps.len();
        let mut out = Steps {
            wall: Vec::new(),
            bytes: Vec::new(),
            rounds: Vec::new(),
            offline_wall: Vec::new(),
            turns: Vec::new(),
            tokens: r[0].0.tokens.clone(),
            mismatches: 0,
            layers: Vec::new(),
            parts: Vec::new(),
            peak_heap: crate::alloc_meter::peaks(),
            offline,
        };
        for i in 0..steps {
            let whole = span(&r.iter().map(|(o, _)| &o.steps[i]).collect::<Vec<_>>(), offline);
            out.wall.push(whole.wall);
            if offline {
                out.offline_wall.push(whole.offline);
            }
            out.bytes.push(whole.bytes);
            out.rounds.push(whole.rounds);
            out.turns.push((whole.turn, whole.turns));
            let layers = r[0].0.layers[i].len();
            if r.iter().any(|(o, _)| o.layers[i].len() != layers) {
                return Err("the parties marked different numbers of layers".into());
            }
            out.layers.push(
                (0..layers)
                    .map(|l| span(&r.iter().map(|(o, _)| &o.layers[i][l]).collect::<Vec<_>>(), offline))
                    .collect(),
            );
            let names: Vec<&str> = r[0].0.parts[i].iter().map(|x| x.0).collect();
            if r.iter().any(|(o, _)| o.parts[i].iter().map(|x| x.0).ne(names.iter().copied())) {
                return Err("the parties marked different parts".into());
            }
            let mut parts: Vec<(&'static str, Span)> = Vec::new();
            for (k, name) in r[0].0.parts[i].iter().map(|x| x.0).enumerate() {
                let one = span(&r.iter().map(|(o, _)| &o.parts[i][k].1).collect::<Vec<_>>(), offline);
                match parts.iter_mut().find(|x| x.0 == name) {
                    Some(x) => {
                        x.1.wall += one.wall;
                        x.1.offline += one.offline;
                        x.1.turns += one.turns;
                        x.1.rounds += one.rounds;
                        for (a, b) in x.1.bytes.iter_mut().zip(one.bytes) {
                            *a += b;
                        }
                    }
                    None => parts.push((name, one)),
                }
            }
            parts.sort_by_key(|x| super::secure::PARTS.iter().position(|p| *p == x.0));
            out.parts.push(parts);
        }
        // Teacher-forced plaintext check of the tokens.
        let prompt = self.prompt(arch_of(&ModelFile::parse(&self.client).map_err(|e| e.to_string())?)?.vocab);
        out.mismatches = check::disagreements(&self.server, &prompt, &out.tokens).map_err(|e| e.to_string())?.len();
        Ok(out)
    }
}

/// What one party measured.
pub struct PartySteps {
    /// Per step.
    steps: Vec<Spent>,
    /// Per step, per private layer.
    layers: Vec<Vec<Spent>>,
    /// Per step, per part mark: its name and span to the next mark.
    parts: Vec<Vec<(&'static str, Spent)>>,
    /// The client's tokens (empty at the other parties).
    tokens: Vec<u32>,
}

impl Program for ModelCase {
    type Output = PartySteps;

    fn run<P: Protocol>(&self, p: &mut P) -> Result<Self::Output, StdError> {
        let r = self.run_party(p);
        if r.is_err()
            && let Some(g) = &self.offline
        {
            g.break_all();
        }
        r
    }
}

impl ModelCase {
    fn run_party<P: Protocol>(&self, p: &mut P) -> Result<PartySteps, StdError> {
        let party = p.party();
        // With an offline phase the dealer deals each step whole, then the compute parties
        // run it (see `ModelCase::offline`).
        let gate = self.offline.as_ref();
        let dealer_ahead = gate.is_some() && party == 2;
        // The whole error and where it happened.
        let failed = |stage: &'static str, e: StdError| StdError::AtParty { party, stage, source: Box::new(e) };
        let cf = ModelFile::parse(&self.client)?;
        let sf = ModelFile::parse(&self.server)?;
        let arch = check::arch_of(&cf)?;
        let server = (p.party() == 1).then_some(&sf);
        let public = if p.party() == 1 { &sf } else { &cf };
        let mut model = SecureModel::setup(p, public, server, arch.clone()).map_err(|e| failed("set-up", e))?;
        if dealer_ahead {
            model.settle_at_marks();
        } else {
            model.mark_layers();
        }
        // Over an emulated link the set-up's traffic (the weights' shares) can still be
        // queued: wait it out, so that the steps pay only for their own. Without a link too,
        // so that every party (the dealer included) starts the steps at one clock and the
        // rounds do not depend on the link.
        p.barrier()?;
        let mut pm = PlainModel::load(&cf, arch.clone(), 0, arch.n_public, false)
            .map_err(|e| failed("loading the public layers", e))?;
        let mut feed = self.prompt(arch.vocab);
        let mut m = self.prompt_len;
        let (mut steps, mut layers, mut parts, mut tokens) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..self.new_tokens {
            if let Some(g) = gate {
                // Everyone is done with the previous step; the compute parties then wait
                // for the dealer to have dealt (and delivered) this one.
                g.pass()?;
                if !dealer_ahead {
                    g.pass()?;
                }
            }
            let start = super::secure::Mark::now(p);
            let client = (p.party() == CLIENT).then_some((&mut pm, &feed[..]));
            let mut h = model.entry(p, m, client).map_err(|e| failed("the entry", e))?;
            let idx =
                model.step(p, &mut h, m).map_err(|e| failed(if m > 1 { "the prefill" } else { "a decode step" }, e))?;
            let mut tok = [0u64];
            p.reveal_to(CLIENT, &idx, &mut tok)?;
            if dealer_ahead {
                p.settle()?;
            }
            steps.push(Spent::between(&start, &super::secure::Mark::now(p)));
            if dealer_ahead && let Some(g) = gate {
                g.pass()?;
            }
            let marks = model.take_marks();
            layers.push(marks.windows(2).map(|w| Spent::between(&w[0], &w[1])).collect());
            let marks = model.take_parts();
            parts.push(marks.windows(2).map(|w| (w[0].0, Spent::between(&w[0].1, &w[1].1))).collect());
            if p.party() == CLIENT {
                tokens.push(tok[0] as u32);
                feed = vec![tok[0] as u32];
            }
            m = 1;
        }
        Ok(PartySteps { steps, layers, parts, tokens })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::random::{Shape, Variant, model_shaped};

    /// One layer's bytes per party scale to a deeper model exactly, in every setting: in 3PC
    /// the helper's role moves on from layer to layer, so the layers' vectors rotate
    /// ([`Rotating`]), and the split of a 1-layer model predicts each party's bytes of a 2-
    /// and a 4-layer model step by step; in 3PC a deeper model is more even than k times one
    /// layer's most (what `marill cost` reported before), in the prefill and in decoding.
    #[test]
    fn one_layers_bytes_per_party_predict_a_deeper_models() {
        let var =
            Variant { public_layers: 0, lora_rank: 0, head_merge: 1, mpc_friendly: false, private_embedding: false };
        let shape = |layers| Shape { layers, d: 32, heads: 4, kv_heads: 4, ffn: 48, vocab: 64 };
        for setting in [Setting::Dealer, Setting::Rep3] {
            let run = |layers| {
                let case = ModelCase::new(model_shaped(var, shape(layers), 3).unwrap(), 5, 3).unwrap();
                case.measure(setting).unwrap()
            };
            let one = run(1);
            for k in [2, 4] {
                let deep = run(k);
                for step in 0..3 {
                    let predicted = one.rotating(step).with_layers(k);
                    let measured = deep.bytes[step].map(|b| b as f64);
                    assert_eq!(predicted, measured, "{setting:?}, {k} layers, step {step}");
                    // The split of the deep model predicts itself and the shallow one.
                    assert_eq!(deep.rotating(step).with_layers(1), one.bytes[step].map(|b| b as f64));
                }
                if setting == Setting::Rep3 && k == 4 {
                    let naive = |step: usize| {
                        let r = one.rotating(step);
                        let layer_max = r.layer.iter().copied().fold(0.0, f64::max);
                        (0..3).map(|q| r.pre[q] + r.head[q]).fold(0.0, f64::max) + k as f64 * layer_max
                    };
                    for step in 0..3 {
                        let most = deep.bytes[step].iter().copied().max().unwrap() as f64;
                        assert!(most < naive(step), "step {step}: {most} vs {}", naive(step));
                    }
                }
            }
        }
    }

    /// A layer's marked span is what one more layer adds: the span of the one layer of a
    /// 1-layer model equals the 2-layer model's step less the 1-layer model's, in bytes
    /// (summed over the parties) exactly, and in rounds to within one. Both spans of the
    /// 2-layer model send as much. `marill cost` scales this span to 26 layers.
    #[test]
    fn a_marked_layer_costs_what_a_layer_adds() {
        let var =
            Variant { public_layers: 0, lora_rank: 0, head_merge: 1, mpc_friendly: false, private_embedding: false };
        let shape = |layers| Shape { layers, d: 32, heads: 4, kv_heads: 4, ffn: 48, vocab: 64 };
        for setting in [Setting::Dealer, Setting::Rep3, Setting::Ot2pc] {
            let run = |layers| {
                let case = ModelCase::new(model_shaped(var, shape(layers), 3).unwrap(), 5, 3).unwrap();
                case.measure(setting).unwrap()
            };
            let (one, two) = (run(1), run(2));
            assert_eq!(
                one.mismatches + two.mismatches,
                0,
                "{setting:?}: {} {} {:?} {:?}",
                one.mismatches,
                two.mismatches,
                one.tokens,
                two.tokens
            );
            for step in 0..3 {
                assert_eq!(one.layers[step].len(), 1);
                assert_eq!(two.layers[step].len(), 2);
                let layer = one.layers[step][0];
                // Summed over the parties: in 3PC the helper role rotates from op to op, so
                // which party sends what depends on where the rotation stands.
                let sum = |b: &[u64; 3]| b.iter().sum::<u64>();
                assert_eq!(sum(&layer.bytes), sum(&two.bytes[step]) - sum(&one.bytes[step]), "{setting:?} {step}");
                assert_eq!(sum(&two.layers[step][0].bytes), sum(&layer.bytes));
                assert_eq!(sum(&two.layers[step][1].bytes), sum(&layer.bytes));
                // Rounds to within one: a layer's first message can leave at the same clock as
                // the previous layer's last (the clocks are each party's own), so a boundary can
                // share a round with its neighbour.
                let added = two.rounds[step] - one.rounds[step];
                assert!(layer.rounds.abs_diff(added) <= 1, "{setting:?} {step}: {} vs {added}", layer.rounds);
                assert!(layer.wall <= one.wall[step]);
                // The parts of the layers add up to the layers, in bytes and rounds exactly;
                // the head's parts run once per step.
                let in_layer = super::super::secure::is_layer_part;
                let parts = &two.parts[step];
                assert_eq!(parts.iter().filter(|p| !in_layer(p.0)).count(), 3, "{parts:?}");
                let (pb, pr) = parts
                    .iter()
                    .filter(|p| in_layer(p.0))
                    .fold((0, 0), |(b, r), p| (b + sum(&p.1.bytes), r + p.1.rounds));
                let layers = &two.layers[step];
                assert_eq!(pb, layers.iter().map(|l| sum(&l.bytes)).sum::<u64>(), "{setting:?} {step}");
                assert_eq!(pr, layers.iter().map(|l| l.rounds).sum::<u64>(), "{setting:?} {step}");
                assert!(layer.bytes.iter().zip(one.bytes[step]).all(|(l, s)| *l <= s));
            }
        }
    }
}
