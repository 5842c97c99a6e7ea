//! The private layers in MPC, over any [`Protocol`].
//!
//! Parties: 0 is the client (it holds the prompt, runs the public layers in plaintext,
//! shares their output and alone learns each generated token), 1 the server (it holds the
//! private weights and secret-shares them once per session), 2 the dealer or helper.
//! Every party holds the public part of the model (a client file).
//!
//! Per private layer, on `m` new rows of hidden state (shares at `f` fractional bits):
//! RMSNorm (public or shared gain) → q, k, v (public `W`: a local product; private `W`: a
//! product with a weight the server knows, `matmul_weight`; LoRA: `(x·Aᵀ)·(α/r·B)ᵀ` in the
//! same truncation) → RoPE with public
//! cos/sin, `1/√d_head` folded into the queries' → keys and values appended to the
//! secret-shared KV cache → all heads' scores in one batched product → softmax (or 2ReLU)
//! with the causal mask → all heads' `P·V` in one batched product → o → residual →
//! RMSNorm → gate, up → SiLU (or ReLU) ⊙ up → down → residual. Then the final norm and the lm
//! head on the last row, argmax, and the index revealed to the client. Decoding a token
//! costs one row: the cache holds every earlier key and value.

use marill_core::FixedPoint;
use marill_core::format::ModelFile;
use marill_core::nonlinear::{self as nl, Gain};
use marill_core::proto::Protocol;
use marill_core::ring::MatDims;
use marill_core::{Error, PartyId};

use super::plain::{PlainModel, weights};
use super::{Activation, Arch, Attention, names};
use crate::StdError;

/// Default [`SecureModel::attn_tile_scores`]: 2^20 scores, about 20 words of state each
/// per share plane in the softmax (160 MB a plane), so a prefill's attention stays near
/// that whatever its length. Prompts whose all-head score block fits run in one tile, as
/// before (openllama-3b's 32 heads up to b = 181, SmolLM2's 9 up to b = 341).
pub const ATTN_TILE_SCORES: usize = 1 << 20;

/// The client's party id.
pub const CLIENT: PartyId = 0;
/// The server's party id.
pub const SERVER: PartyId = 1;

/// A weight matrix stored transposed, `[in, out]`, for `x·W`.
enum Mat {
    /// Known to every party (encoded ring elements).
    Public(Vec<u64>),
    /// This party's `matmul_weight` material for a weight the server knows (2PC-Dealer:
    /// a one-time masked copy, no per-call opening; 3PC: replicated shares). Only
    /// `weight_from_server` makes it; plain shares would be misread.
    Server(Vec<u64>),
}

struct SecLinear {
    w: Mat,
    /// `matmul_weight` material of `Aᵀ` `[in, r]` and of `(α/r·B)ᵀ` `[r, out]` (fused:
    /// `[in, g·r]` and block-diagonal `[g·r, Σout]`).
    lora: Option<(Vec<u64>, Vec<u64>)>,
    inp: usize,
    out: usize,
    /// Inner dimension of the LoRA product (`r`, or `g·r` when fused).
    rank: usize,
}

fn lora_rank_of(arch: &Arch, lora: bool, members: usize) -> usize {
    if lora { arch.lora_rank * members } else { 0 }
}

enum Vect {
    Public(Vec<u64>),
    Shared(Vec<u64>),
}

impl Vect {
    fn gain(&self) -> Gain<'_> {
        match self {
            Vect::Public(v) => Gain::Public(v),
            Vect::Shared(v) => Gain::Shared(v),
        }
    }
}

/// Projections that read the same input run as one product when they agree on being
/// public or the server's and on carrying LoRA: `q|k|v` and `gate|up` fuse, which saves the
/// rounds of two (one) separate products and truncations per layer.
const GROUPS: [&[&str]; 4] = [&["q", "k", "v"], &["o"], &["gate", "up"], &["down"]];

/// The longest prefill (keys per row) whose softmax takes the row maximum in groups of 4.
pub const MAX_IN_GROUPS_UP_TO: usize = 256;
/// The group size of a decoding step's row maximum (see `attention_tile`).
pub const DECODE_MAX_GROUP: usize = 16;

/// A group of projections: one fused linear (`parts.len() == 1`) or one per member.
struct Group {
    parts: Vec<SecLinear>,
    /// Output width of each member.
    widths: Vec<usize>,
}

struct SecLayer {
    attn_norm: Vect,
    /// q, k and v biases (`Arch::qkv_bias`).
    qkv_bias: Option<[Vect; 3]>,
    /// In [`GROUPS`] order.
    groups: Vec<Group>,
    mlp_norm: Vect,
}

/// `[rows × Σw]` from row-major pieces `[rows × w_i]`.
fn concat_cols(pieces: &[Vec<f32>], rows: usize, widths: &[usize]) -> Vec<f32> {
    let total: usize = widths.iter().sum();
    let mut out = vec![0.0; rows * total];
    let mut off = 0;
    for (piece, w) in pieces.iter().zip(widths) {
        for r in 0..rows {
            out[r * total + off..r * total + off + w].copy_from_slice(&piece[r * w..(r + 1) * w]);
        }
        off += w;
    }
    out
}

/// Block-diagonal `[(g·r) × Σw]` from pieces `[r × w_i]`.
fn block_diag(pieces: &[Vec<f32>], r: usize, widths: &[usize]) -> Vec<f32> {
    let total: usize = widths.iter().sum();
    let mut out = vec![0.0; pieces.len() * r * total];
    let mut off = 0;
    for (i, (piece, w)) in pieces.iter().zip(widths).enumerate() {
        for row in 0..r {
            let dst = (i * r + row) * total + off;
            out[dst..dst + w].copy_from_slice(&piece[row * w..(row + 1) * w]);
        }
        off += w;
    }
    out
}

/// `x[r, j] += b[j]·2^shift` over the `m` rows of `x` (width `w`), per share plane: a
/// public bias on the protocol's public plane, a shared one plane by plane. Local.
fn add_bias<P: Protocol>(p: &P, x: &mut [u64], m: usize, w: usize, b: &Vect, shift: u32) {
    let n = m * w;
    let mut add = |q: usize, b: &[u64]| {
        for row in x[q * n..(q + 1) * n].chunks_exact_mut(w) {
            for (xv, bv) in row.iter_mut().zip(b) {
                *xv = xv.wrapping_add(bv.wrapping_shl(shift));
            }
        }
    };
    match b {
        Vect::Public(b) => {
            if let Some(q) = p.public_plane() {
                add(q, b);
            }
        }
        Vect::Shared(b) => {
            for q in 0..P::PLANES {
                add(q, &b[q * w..(q + 1) * w]);
            }
        }
    }
}

/// Per plane: rows of `T × kv_dim` shares.
type CachePlanes = Vec<Vec<u64>>;

/// The secure part of a model at one party.
pub struct SecureModel {
    arch: Arch,
    fp: FixedPoint,
    layers: Vec<SecLayer>,
    norm: Vect,
    head: Mat,
    /// Shares of the embedding `[vocab, d]` when it is private (the all-private baseline:
    /// the client shares one-hot rows and the lookup is a shared product).
    embed: Option<Vec<u64>>,
    /// Per layer, per plane: keys and values, `T × kv_dim` rows.
    cache: Vec<(CachePlanes, CachePlanes)>,
    pos: usize,
    /// Largest sequence this session accepts (bounds the cache).
    pub max_seq: usize,
    /// Most attention scores (all heads) a prefill computes at once: query rows go in
    /// tiles under it. Every party must use the same value (it fixes the messages).
    pub attn_tile_scores: usize,
    /// Layer boundaries of each step, when asked for ([`SecureModel::mark_layers`]).
    marks: Option<Vec<Mark>>,
    /// The start of each part of a step, when asked for (with the layer marks).
    parts: Option<PartLog>,
    /// Settle the channel before each mark ([`SecureModel::settle_at_marks`]).
    settle: bool,
}

/// The part marks of the steps so far, and whether to settle before each.
#[derive(Default)]
struct PartLog {
    marks: Vec<(&'static str, Mark)>,
    settle: bool,
}

/// The parts of a step that [`SecureModel::take_parts`] names: a layer's, then the head's.
pub const PARTS: [&str; 12] =
    ["norms", "q|k|v", "scores", "softmax", "P·V", "o", "gate|up", "SiLU×up", "down", "head norm", "lm head", "argmax"];

/// Is `name` one of a layer's parts (the first nine of [`PARTS`]), not the head's?
pub fn is_layer_part(name: &str) -> bool {
    PARTS[..9].contains(&name)
}

/// This party's clock and meter at a layer boundary of [`SecureModel::step`]: the start of
/// each private layer, then the end of the last. Between two marks lies one layer's own
/// cost, which `marill cost` scales to a model's depth.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    /// When the boundary was passed.
    pub at: std::time::Instant,
    /// The party's meter there (`Cost::default()` over an unmetered channel).
    pub cost: marill_core::cost::Cost,
    /// How far the roles had rotated there ([`Protocol::turns`]).
    pub turn: u64,
}

impl Mark {
    /// This party's mark now.
    pub fn now<P: Protocol>(p: &P) -> Self {
        Mark { at: std::time::Instant::now(), cost: p.cost().unwrap_or_default(), turn: p.turns() }
    }
}

fn encode(fp: FixedPoint, v: &[f32]) -> Vec<u64> {
    v.iter().map(|x| fp.encode(f64::from(*x))).collect()
}

/// `[out, in]` → `[in, out]`, scaled.
fn transpose(w: &[f32], out: usize, inp: usize, scale: f32) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for o in 0..out {
        for i in 0..inp {
            t[i * out + o] = w[o * inp + i] * scale;
        }
    }
    t
}

/// A tensor of the public part (a server file's private tensors are not public).
fn public_tensor<'a>(f: &ModelFile<'a>, name: &str) -> Option<marill_core::format::TensorView<'a>> {
    f.tensor(name).filter(|t| !t.private)
}

fn core(e: Error) -> StdError {
    StdError::Core(e)
}

/// The server's plaintext for a private tensor, or `None` at other parties.
fn server_values(server: Option<&ModelFile<'_>>, name: &str, len: usize) -> Result<Option<Vec<f32>>, StdError> {
    let Some(f) = server else { return Ok(None) };
    let t = f.tensor(name).ok_or_else(|| StdError::MissingTensor { name: name.into() })?;
    if t.numel() != len as u64 {
        return Err(StdError::TensorShape { name: name.into(), got: t.dims().to_vec(), want: vec![len as u64] });
    }
    Ok(Some(weights(&t)?.into_owned()))
}

/// A weight `[n, k]` the server knows, prepared for `matmul_weight` (once per session).
fn weight_from_server<P: Protocol>(
    p: &mut P,
    fp: FixedPoint,
    vals: Option<Vec<f32>>,
    n: usize,
    k: usize,
) -> Result<Vec<u64>, StdError> {
    let enc = vals.map(|v| encode(fp, &v));
    let spec = p.share_weight(SERVER, enc.as_deref(), n, k).map_err(core)?;
    let mut material = vec![0; spec.words];
    p.fill_weight(SERVER, enc.as_deref(), spec, &mut material).map_err(core)?;
    Ok(material)
}

fn share_from_server<P: Protocol>(
    p: &mut P,
    fp: FixedPoint,
    vals: Option<Vec<f32>>,
    len: usize,
) -> Result<Vec<u64>, StdError> {
    let enc = vals.map(|v| encode(fp, &v));
    let mut out = vec![0; len * P::PLANES];
    p.input(SERVER, enc.as_deref(), &mut out).map_err(core)?;
    Ok(out)
}

impl SecureModel {
    /// Set up at every party: public weights from `public` (a client file, or the server's
    /// own file), private weights secret-shared by the server from `server` (its file;
    /// `None` at the other parties). The server's weights enter once and serve every
    /// request of the session.
    pub fn setup<P: Protocol>(
        p: &mut P,
        public: &ModelFile<'_>,
        server: Option<&ModelFile<'_>>,
        arch: Arch,
    ) -> Result<Self, StdError> {
        if (p.party() == SERVER) != server.is_some() {
            return Err(StdError::Model("exactly the server passes its model file".into()));
        }
        let fp = FixedPoint::new(arch.frac_bits).ok_or_else(|| StdError::Model("frac_bits".into()))?;
        let mut layers = Vec::new();
        for l in arch.n_public..arch.n_layers {
            let mut groups = Vec::new();
            for members in GROUPS {
                groups.push(Self::group(p, fp, public, server, &arch, l, members)?);
            }
            let attn_norm = Self::vect(p, fp, public, server, &names::attn_norm(l), arch.d)?;
            let mlp_norm = Self::vect(p, fp, public, server, &names::mlp_norm(l), arch.d)?;
            let mut qkv_bias = Vec::new();
            for proj in ["q", "k", "v"].into_iter().filter(|_| arch.qkv_bias) {
                qkv_bias.push(Self::vect(p, fp, public, server, &names::proj_bias(l, proj), arch.proj_shape(proj).0)?);
            }
            let qkv_bias = qkv_bias.try_into().ok();
            layers.push(SecLayer { attn_norm, qkv_bias, groups, mlp_norm });
        }
        let norm = Self::vect(p, fp, public, server, names::NORM, arch.d)?;
        let head_name = if arch.tie_embeddings { names::EMBED } else { names::LM_HEAD };
        let head = match public_tensor(public, head_name) {
            Some(t) => Mat::Public(encode(fp, &transpose(&weights(&t)?, arch.vocab, arch.d, 1.0))),
            None => {
                let v = server_values(server, head_name, arch.vocab * arch.d)?
                    .map(|w| transpose(&w, arch.vocab, arch.d, 1.0));
                Mat::Server(weight_from_server(p, fp, v, arch.d, arch.vocab)?)
            }
        };
        let embed = match public_tensor(public, names::EMBED) {
            Some(_) => None,
            None => {
                let v = server_values(server, names::EMBED, arch.vocab * arch.d)?;
                Some(weight_from_server(p, fp, v, arch.vocab, arch.d)?)
            }
        };
        let n = layers.len();
        Ok(Self {
            arch,
            fp,
            layers,
            norm,
            head,
            embed,
            cache: (0..n).map(|_| (vec![Vec::new(); P::PLANES], vec![Vec::new(); P::PLANES])).collect(),
            pos: 0,
            max_seq: 4096,
            attn_tile_scores: ATTN_TILE_SCORES,
            marks: None,
            parts: None,
            settle: false,
        })
    }

    /// The projections `members` of layer `l`, fused when they agree.
    fn group<P: Protocol>(
        p: &mut P,
        fp: FixedPoint,
        public: &ModelFile<'_>,
        server: Option<&ModelFile<'_>>,
        arch: &Arch,
        l: usize,
        members: &[&str],
    ) -> Result<Group, StdError> {
        let shapes: Vec<(usize, usize)> = members.iter().map(|m| arch.proj_shape(m)).collect();
        let widths: Vec<usize> = shapes.iter().map(|s| s.0).collect();
        let inp = shapes[0].1;
        let is_public: Vec<bool> =
            members.iter().map(|m| public_tensor(public, &names::proj(l, m)).is_some()).collect();
        let lora: Vec<bool> = members.iter().map(|m| arch.has_lora(m)).collect();
        let fusable = is_public.iter().all(|v| *v == is_public[0]) && lora.iter().all(|v| *v == lora[0]);
        if !fusable {
            // One linear per member (each a group of one, which always "fuses").
            let mut parts = Vec::new();
            for m in members {
                parts.push(Self::group(p, fp, public, server, arch, l, &[m])?.parts.remove(0));
            }
            return Ok(Group { parts, widths });
        }
        let total: usize = widths.iter().sum();
        // W as [in × Σout]: each member transposed, side by side.
        let w = if is_public[0] {
            let mut pieces = Vec::new();
            for (m, (out, _)) in members.iter().zip(&shapes) {
                let t = public_tensor(public, &names::proj(l, m))
                    .ok_or_else(|| StdError::Model("tensor vanished".into()))?;
                pieces.push(transpose(&weights(&t)?, *out, inp, 1.0));
            }
            Mat::Public(encode(fp, &concat_cols(&pieces, inp, &widths)))
        } else {
            let mut pieces = Vec::new();
            for (m, (out, _)) in members.iter().zip(&shapes) {
                pieces
                    .push(server_values(server, &names::proj(l, m), out * inp)?.map(|w| transpose(&w, *out, inp, 1.0)));
            }
            let fused = pieces.into_iter().collect::<Option<Vec<_>>>().map(|pc| concat_cols(&pc, inp, &widths));
            Mat::Server(weight_from_server(p, fp, fused, inp, total)?)
        };
        let lora = if lora[0] {
            let r = arch.lora_rank;
            let (mut a_pieces, mut b_pieces) = (Vec::new(), Vec::new());
            for (m, (out, _)) in members.iter().zip(&shapes) {
                let base = names::proj_base(l, m);
                a_pieces.push(
                    server_values(server, &format!("{base}.lora_a"), r * inp)?.map(|a| transpose(&a, r, inp, 1.0)),
                );
                b_pieces.push(
                    server_values(server, &format!("{base}.lora_b"), out * r)?
                        .map(|b| transpose(&b, *out, r, arch.lora_scale())),
                );
            }
            let g = members.len();
            let a = a_pieces.into_iter().collect::<Option<Vec<_>>>().map(|pc| concat_cols(&pc, inp, &vec![r; g]));
            let b = b_pieces.into_iter().collect::<Option<Vec<_>>>().map(|pc| block_diag(&pc, r, &widths));
            Some((weight_from_server(p, fp, a, inp, g * r)?, weight_from_server(p, fp, b, g * r, total)?))
        } else {
            None
        };
        let rank = lora_rank_of(arch, lora.is_some(), members.len());
        Ok(Group { parts: vec![SecLinear { w, lora, inp, out: total, rank }], widths })
    }

    /// Every member's output (`m × width` shares each) of a group applied to `x`.
    fn run_group<P: Protocol>(&self, p: &mut P, g: &Group, x: &[u64], m: usize) -> Result<Vec<Vec<u64>>, Error> {
        self.run_group_as(p, g, x, m, true)
    }

    /// [`run_group`](Self::run_group), its outputs truncated or not (at `2f` bits).
    fn run_group_as<P: Protocol>(
        &self,
        p: &mut P,
        g: &Group,
        x: &[u64],
        m: usize,
        truncate: bool,
    ) -> Result<Vec<Vec<u64>>, Error> {
        let pl = P::PLANES;
        if g.parts.len() == g.widths.len() {
            return g.parts.iter().map(|lin| self.linear_as(p, lin, x, m, truncate)).collect();
        }
        let y = self.linear_as(p, &g.parts[0], x, m, truncate)?;
        let total: usize = g.widths.iter().sum();
        let mut outs = Vec::new();
        let mut off = 0;
        for w in &g.widths {
            let mut o = vec![0; m * w * pl];
            for q in 0..pl {
                for r in 0..m {
                    let src = q * m * total + r * total + off;
                    o[q * m * w + r * w..q * m * w + (r + 1) * w].copy_from_slice(&y[src..src + w]);
                }
            }
            outs.push(o);
            off += w;
        }
        Ok(outs)
    }

    fn vect<P: Protocol>(
        p: &mut P,
        fp: FixedPoint,
        public: &ModelFile<'_>,
        server: Option<&ModelFile<'_>>,
        name: &str,
        len: usize,
    ) -> Result<Vect, StdError> {
        Ok(match public_tensor(public, name) {
            Some(t) => Vect::Public(encode(fp, &weights(&t)?)),
            None => Vect::Shared(share_from_server(p, fp, server_values(server, name, len)?, len)?),
        })
    }

    /// The architecture.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// `y = x·W (+ LoRA)`, truncated (or at `2f` bits): `x` is `m × inp` shares.
    fn linear_as<P: Protocol>(
        &self,
        p: &mut P,
        lin: &SecLinear,
        x: &[u64],
        m: usize,
        truncate: bool,
    ) -> Result<Vec<u64>, Error> {
        let pl = P::PLANES;
        let d = MatDims::new(m, lin.inp, lin.out);
        let mut raw = vec![0; m * lin.out * pl];
        if let (Mat::Server(w), None, true) = (&lin.w, &lin.lora, truncate) {
            // the product and its truncation fused (3PC: a round fewer)
            p.matmul_weight_trunc(x, w, &mut raw, d, self.fp.frac_bits)?;
            return Ok(raw);
        }
        match &lin.w {
            Mat::Public(w) => p.matmul_public(x, w, &mut raw, d)?,
            Mat::Server(w) => p.matmul_weight(x, w, &mut raw, d)?,
        }
        if let Some((a, b)) = &lin.lora {
            let r = lin.rank;
            let mut u = vec![0; m * r * pl];
            p.matmul_weight_trunc(x, a, &mut u, MatDims::new(m, lin.inp, r), self.fp.frac_bits)?;
            let mut v = vec![0; m * lin.out * pl];
            p.matmul_weight(&u, b, &mut v, MatDims::new(m, r, lin.out))?;
            p.add(&raw.clone(), &v, &mut raw)?;
        }
        if truncate {
            p.trunc_in_place(&mut raw, self.fp.frac_bits)?;
        }
        Ok(raw)
    }

    /// RoPE on `x` (`m × width` shares at `2f` bits) at positions `pos..`, times `scale`:
    /// local, the result at `3f` bits, untruncated.
    fn rope<P: Protocol>(&self, x: &mut [u64], m: usize, width: usize, scale: f64) {
        let pl = P::PLANES;
        let n = m * width;
        let rd = self.arch.rope_dim();
        let half = rd / 2;
        let mut out = vec![0u64; n * pl];
        for i in 0..m {
            for j in 0..half {
                let theta = super::rope_angle(self.pos + i, j, rd, self.arch.rope_base);
                let c = self.fp.encode(theta.cos() * scale);
                let s = self.fp.encode(theta.sin() * scale);
                for chunk in 0..width / rd {
                    let (ia, ib) = (i * width + chunk * rd + j, i * width + chunk * rd + j + half);
                    for q in 0..pl {
                        let (a, b) = (x[q * n + ia], x[q * n + ib]);
                        out[q * n + ia] = a.wrapping_mul(c).wrapping_sub(b.wrapping_mul(s));
                        out[q * n + ib] = b.wrapping_mul(c).wrapping_add(a.wrapping_mul(s));
                    }
                }
            }
        }
        x.copy_from_slice(&out);
    }

    /// gate|up as one product with SiLU's comparisons of the untruncated gate opened in its
    /// truncation's round ([`Protocol::matmul_weight_trunc_ltz`]): `(gate, up, [gate < θ])`,
    /// or `None` (nothing sent) where the group is not one server product without LoRA or
    /// the protocol does not fuse them.
    #[allow(clippy::type_complexity)]
    fn gate_up_fused<P: Protocol>(
        &self,
        p: &mut P,
        li: usize,
        x: &[u64],
        m: usize,
    ) -> Result<Option<(Vec<u64>, Vec<u64>, Vec<u64>)>, Error> {
        let pl = P::PLANES;
        let g = &self.layers[li].groups[2];
        let (lin, [gw, uw]) = match (&g.parts[..], &g.widths[..]) {
            ([lin], &[gw, uw]) => (lin, [gw, uw]),
            _ => return Ok(None),
        };
        let Mat::Server(w) = &lin.w else { return Ok(None) };
        if lin.lora.is_some() {
            return Ok(None);
        }
        let f = self.fp.frac_bits;
        let d = MatDims::new(m, lin.inp, lin.out);
        let offsets = nl::silu_offsets(2 * f);
        let (mut y, mut lt) = (vec![0; m * lin.out * pl], vec![0; 3 * m * gw * pl]);
        if !p.matmul_weight_trunc_ltz(x, w, d, (f, gw), &offsets, &mut y, &mut lt)? {
            return Ok(None);
        }
        let (mut gate, mut up) = (vec![0; m * gw * pl], vec![0; m * uw * pl]);
        for q in 0..pl {
            for r in 0..m {
                let src = q * m * lin.out + r * lin.out;
                gate[q * m * gw + r * gw..q * m * gw + (r + 1) * gw].copy_from_slice(&y[src..src + gw]);
                up[q * m * uw + r * uw..q * m * uw + (r + 1) * uw].copy_from_slice(&y[src + gw..src + gw + uw]);
            }
        }
        Ok(Some((gate, up, lt)))
    }

    /// Truncate several share vectors by `shift` in one call (one truncation's rounds).
    fn trunc_together<P: Protocol, const K: usize>(
        p: &mut P,
        parts: [&mut Vec<u64>; K],
        shift: u32,
    ) -> Result<(), Error> {
        let pl = P::PLANES;
        let lens: [usize; K] = core::array::from_fn(|i| parts[i].len() / pl);
        let total: usize = lens.iter().sum();
        let mut cat = vec![0; total * pl];
        let mut at = 0;
        for (part, &n) in parts.iter().zip(&lens) {
            for q in 0..pl {
                cat[q * total + at..q * total + at + n].copy_from_slice(&part[q * n..(q + 1) * n]);
            }
            at += n;
        }
        p.trunc_in_place(&mut cat, shift)?;
        let mut at = 0;
        for (part, n) in parts.into_iter().zip(lens) {
            for q in 0..pl {
                part[q * n..(q + 1) * n].copy_from_slice(&cat[q * total + at..q * total + at + n]);
            }
            at += n;
        }
        Ok(())
    }

    fn residual<P: Protocol>(p: &mut P, h: &mut [u64], add: &[u64]) -> Result<(), Error> {
        let old = h.to_vec();
        p.add(&old, add, h)
    }

    /// One tile of attention: query rows `r0..r1` of the step's `m` (shares in `q`, all
    /// heads) against the keys and values of layer `li`'s cache that its rows see (the first
    /// `t − m + r1`; under a sliding window, from the first key row `r0` sees), written into
    /// rows `r0..r1` of `attn`.
    fn attention_tile<P: Protocol>(
        &mut self,
        p: &mut P,
        li: usize,
        q: &[u64],
        attn: &mut [u64],
        (m, r0, r1): (usize, usize, usize),
        t: usize,
    ) -> Result<(), Error> {
        let a = &self.arch;
        let (pl, f) = (P::PLANES, self.fp);
        let (qd, kvd, hd, nh) = (a.q_dim(), a.kv_dim(), a.head_dim, a.n_heads);
        let group = a.n_heads / a.n_kv_heads;
        let (mt, end) = (r1 - r0, t - m + r1);
        // Keys k0..end: a sliding window starts at the first key row r0 sees, and the mask
        // hides the keys before each later row's window (public positions).
        let (k0, mask) = match a.window {
            Some(w) => ((t - m + r0 + 1).saturating_sub(w), nl::Mask::Window { queries: mt, window: w }),
            None => (0, nl::Mask::Causal(mt)),
        };
        let tt = end - k0;
        // All heads' Q (mt × hd) blocks; Kᵀ and V blocks come from the cache.
        let qb = mt * hd;
        let mut qs = vec![0; nh * qb * pl];
        for qq in 0..pl {
            for hh in 0..nh {
                for i in 0..mt {
                    for j in 0..hd {
                        qs[qq * nh * qb + hh * qb + i * hd + j] = q[qq * m * qd + (r0 + i) * qd + hh * hd + j];
                    }
                }
            }
        }
        let (kc, vc) = &self.cache[li];
        let ks = cache_blocks(kc, k0..end, kvd, hd, nh, group, true);
        Self::part(&mut self.parts, p, "scores")?;
        let mut scores = vec![0; nh * mt * tt * pl];
        p.matmul_many_trunc(&qs, &ks, &mut scores, MatDims::new(mt, hd, tt), nh, f.frac_bits)?;
        drop(ks);
        Self::part(&mut self.parts, p, "softmax")?;
        let rows = nh * mt;
        let mut probs = vec![0; scores.len()];
        // The row maximum in groups of 4 saves a third of its rounds (15 a layer at 64
        // keys) for about 3× its comparisons: worth it in prefills up to 256 keys (+2.8 %
        // of a layer's bytes at 64, about +6 % at 256); longer prefills, where the scores
        // dominate the bytes, keep pairs. Decoding (one query row per head, 1–2 % of a
        // step's bytes) takes groups of 16: 17–256 keys in two levels (65 keys: 15 rounds
        // instead of 23 in groups of 4, in 2PC-Dealer) for about 0.9 MB more a layer at
        // openllama's 32 heads.
        let max_group = if m == 1 {
            DECODE_MAX_GROUP
        } else if tt <= MAX_IN_GROUPS_UP_TO {
            4
        } else {
            2
        };
        let mut s = vec![0; nl::softmax_scratch_in_groups(rows, tt, max_group, pl)];
        match a.attention {
            Attention::TwoRelu => nl::softmax_2relu(p, &scores, rows, tt, mask, &mut probs, &mut s, f)?,
            Attention::Softmax => nl::softmax_in_groups(p, &scores, rows, tt, mask, max_group, &mut probs, &mut s, f)?,
        }
        drop((s, scores));
        Self::part(&mut self.parts, p, "P·V")?;
        let vs = cache_blocks(vc, k0..end, kvd, hd, nh, group, false);
        let mut heads = vec![0; nh * mt * hd * pl];
        p.matmul_many_trunc(&probs, &vs, &mut heads, MatDims::new(mt, tt, hd), nh, f.frac_bits)?;
        for qq in 0..pl {
            for hh in 0..nh {
                for i in 0..mt {
                    let from = qq * nh * mt * hd + hh * mt * hd + i * hd;
                    let to = qq * m * qd + (r0 + i) * qd + hh * hd;
                    attn[to..to + hd].copy_from_slice(&heads[from..from + hd]);
                }
            }
        }
        Ok(())
    }

    /// One step: `m` new rows of hidden state `h` (shares) through the private layers, the
    /// head and argmax. Returns this party's shares of the token index.
    pub fn step<P: Protocol>(&mut self, p: &mut P, h: &mut [u64], m: usize) -> Result<Vec<u64>, StdError> {
        let pl = P::PLANES;
        if m == 0 || h.len() != m * self.arch.d * pl {
            return Err(StdError::Core(Error::ShapeMismatch));
        }
        if self.pos + m > self.max_seq {
            return Err(StdError::Model(format!(
                "sequence longer than the session's limit of {} tokens",
                self.max_seq
            )));
        }
        for li in 0..self.layers.len() {
            // Layer li's roles start at turn li: the helper's extra bytes go round the
            // parties from layer to layer, whatever a layer's own turns.
            p.align_turns(li as u64);
            self.mark(p)?;
            self.attention(p, li, h, m)?;
            self.mlp(p, li, h, m)?;
        }
        self.mark(p)?;
        self.pos += m;
        self.head(p, h, m)
    }

    /// Layer `li`'s attention block on the `m` rows of `h` (norm, q|k|v with RoPE, the KV
    /// cache, attention in tiles, o), added to `h`.
    fn attention<P: Protocol>(&mut self, p: &mut P, li: usize, h: &mut [u64], m: usize) -> Result<(), StdError> {
        let a = self.arch.clone();
        let pl = P::PLANES;
        let f = self.fp;
        let (qd, kvd, hd, nh) = (a.q_dim(), a.kv_dim(), a.head_dim, a.n_heads);
        Self::part(&mut self.parts, p, "norms")?;
        let mut x = vec![0; h.len()];
        let mut s = vec![0; nl::rms_norm_scratch(m, a.d, pl)];
        nl::rms_norm(p, h, m, a.d, self.layers[li].attn_norm.gain(), a.rms_eps, &mut x, &mut s, f).map_err(core)?;
        Self::part(&mut self.parts, p, "q|k|v")?;
        // q|k|v untruncated (2f bits); RoPE (and q's 1/√d) multiply q and k by
        // constants at f bits, v is shifted up by f, and one truncation by 2f ends all
        // three: a truncation's rounds instead of three (q, k, v entries below 2^14).
        let mut qkv = self.run_group_as(p, &self.layers[li].groups[0], &x, m, false).map_err(core)?.into_iter();
        let (mut q, mut k, mut v) = match (qkv.next(), qkv.next(), qkv.next()) {
            (Some(q), Some(k), Some(v)) => (q, k, v),
            _ => return Err(StdError::Core(Error::Protocol)),
        };
        if let Some(b) = &self.layers[li].qkv_bias {
            // Biases at f bits, raised to the products' 2f (local).
            for (x, (b, w)) in [&mut q, &mut k, &mut v].into_iter().zip(b.iter().zip([qd, kvd, kvd])) {
                add_bias(p, x, m, w, b, f.frac_bits);
            }
        }
        self.rope::<P>(&mut q, m, qd, 1.0 / (hd as f64).sqrt());
        self.rope::<P>(&mut k, m, kvd, 1.0);
        for w in v.iter_mut() {
            *w = w.wrapping_shl(f.frac_bits);
        }
        Self::trunc_together(p, [&mut q, &mut k, &mut v], 2 * f.frac_bits).map_err(core)?;
        let (kc, vc) = &mut self.cache[li];
        for qq in 0..pl {
            kc[qq].extend_from_slice(&k[qq * m * kvd..(qq + 1) * m * kvd]);
            vc[qq].extend_from_slice(&v[qq * m * kvd..(qq + 1) * m * kvd]);
        }
        let t = kc[0].len() / kvd;
        let mut attn = vec![0; m * qd * pl];
        // Query rows in tiles of at most `attn_tile_scores` scores (all heads): a tile of
        // rows r0..r1 needs only the keys its last row sees (causal), so memory is
        // bounded by the tile and the masked upper triangle is never computed. One tile
        // (every decode step, and prefills up to the budget) is the whole block.
        let rows_per_tile = (self.attn_tile_scores / (nh * t)).clamp(1, m);
        for r0 in (0..m).step_by(rows_per_tile) {
            let r1 = (r0 + rows_per_tile).min(m);
            self.attention_tile(p, li, &q, &mut attn, (m, r0, r1), t).map_err(core)?;
        }
        Self::part(&mut self.parts, p, "o")?;
        let o = self.run_group(p, &self.layers[li].groups[1], &attn, m).map_err(core)?.remove(0);
        Self::residual(p, h, &o).map_err(core)?;
        Ok(())
    }

    /// Layer `li`'s MLP block on the `m` rows of `h` (norm, gate|up, SiLU or ReLU, the
    /// product with up, down), added to `h`.
    fn mlp<P: Protocol>(&mut self, p: &mut P, li: usize, h: &mut [u64], m: usize) -> Result<(), StdError> {
        let a = self.arch.clone();
        let pl = P::PLANES;
        let f = self.fp;
        let mut x = vec![0; h.len()];
        Self::part(&mut self.parts, p, "norms")?;
        let mut s = vec![0; nl::rms_norm_scratch(m, a.d, pl)];
        nl::rms_norm(p, h, m, a.d, self.layers[li].mlp_norm.gain(), a.rms_eps, &mut x, &mut s, f).map_err(core)?;
        Self::part(&mut self.parts, p, "gate|up")?;
        // SiLU's comparisons on the untruncated gate, opened with gate|up's truncation
        // where the protocol fuses them (one round fewer).
        let fused = match a.activation {
            Activation::Silu => self.gate_up_fused(p, li, &x, m).map_err(core)?,
            Activation::Relu => None,
        };
        let (g, u, lt) = match fused {
            Some(v) => v,
            None => {
                let mut gu_parts = self.run_group(p, &self.layers[li].groups[2], &x, m).map_err(core)?.into_iter();
                match (gu_parts.next(), gu_parts.next()) {
                    (Some(g), Some(u)) => (g, u, Vec::new()),
                    _ => return Err(StdError::Core(Error::Protocol)),
                }
            }
        };
        Self::part(&mut self.parts, p, "SiLU×up")?;
        let mut act = vec![0; g.len()];
        if !lt.is_empty() {
            let mut s = vec![0; nl::act_scratch(m * a.ffn, pl)];
            nl::silu_given(p, &g, &lt, &mut act, &mut s, f).map_err(core)?;
        } else if a.activation == Activation::Relu {
            let mut s = vec![0; nl::relu_scratch(m * a.ffn, pl)];
            nl::relu(p, &g, &mut act, &mut s).map_err(core)?;
        } else {
            let mut s = vec![0; nl::act_scratch(m * a.ffn, pl)];
            nl::silu(p, &g, &mut act, &mut s, f).map_err(core)?;
        }
        let mut gu = vec![0; g.len()];
        p.mul_trunc(&act, &u, f.frac_bits, &mut gu).map_err(core)?;
        Self::part(&mut self.parts, p, "down")?;
        let dn = self.run_group(p, &self.layers[li].groups[3], &gu, m).map_err(core)?.remove(0);
        Self::residual(p, h, &dn).map_err(core)?;
        Ok(())
    }

    /// The head on the last of the `m` rows of `h`: final norm, lm head, argmax (the
    /// token's shares).
    fn head<P: Protocol>(&mut self, p: &mut P, h: &[u64], m: usize) -> Result<Vec<u64>, StdError> {
        let a = self.arch.clone();
        let pl = P::PLANES;
        let f = self.fp;
        Self::part(&mut self.parts, p, "head norm")?;
        // Head on the last row.
        let mut last = vec![0; a.d * pl];
        for qq in 0..pl {
            last[qq * a.d..(qq + 1) * a.d].copy_from_slice(&h[qq * m * a.d + (m - 1) * a.d..qq * m * a.d + m * a.d]);
        }
        let mut xn = vec![0; last.len()];
        let mut s = vec![0; nl::rms_norm_scratch(1, a.d, pl)];
        nl::rms_norm(p, &last, 1, a.d, self.norm.gain(), a.rms_eps, &mut xn, &mut s, f).map_err(core)?;
        Self::part(&mut self.parts, p, "lm head")?;
        let head = SecLinear {
            w: std::mem::replace(&mut self.head, Mat::Public(Vec::new())),
            lora: None,
            inp: a.d,
            out: a.vocab,
            rank: 0,
        };
        // The logits stay at 2f bits: argmax compares them exactly at any scale, so their
        // truncation would only cost rounds (and precision).
        let logits = self.linear_as(p, &head, &xn, 1, false);
        self.head = head.w;
        let logits = logits.map_err(core)?;
        Self::part(&mut self.parts, p, "argmax")?;
        let (mut idx, mut mx) = (vec![0; pl], vec![0; pl]);
        let mut s = vec![0; nl::argmax_scratch(1, a.vocab, pl)];
        nl::argmax(p, &logits, 1, a.vocab, &mut idx, &mut mx, &mut s).map_err(core)?;
        Self::part(&mut self.parts, p, "end")?;
        Ok(idx)
    }

    /// Record a [`Mark`] at every layer boundary of each later step (taken with
    /// [`SecureModel::take_marks`]). Off by default: a mark reads the clock and the meter.
    pub fn mark_layers(&mut self) {
        self.marks.get_or_insert_with(Vec::new);
        self.parts.get_or_insert_with(PartLog::default);
    }

    /// The marks recorded since the last call: per step, one per private layer and one more
    /// at the end of the last.
    pub fn take_marks(&mut self) -> Vec<Mark> {
        self.marks.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The part marks recorded since the last call, in order: each names the part that
    /// starts there (one of [`PARTS`]), and a last one, `end`, closes the step. A part's
    /// cost is from its mark to the next.
    pub fn take_parts(&mut self) -> Vec<(&'static str, Mark)> {
        self.parts.as_mut().map(|l| std::mem::take(&mut l.marks)).unwrap_or_default()
    }

    /// The 2PC-Dealer dealer's offline phase, measured: before each mark this party waits
    /// until what it sent has been delivered ([`Protocol::settle`]), so that a span's time
    /// is dealing its corrections *and* getting them to the compute parties over an
    /// emulated link (the two not overlapped: an upper bound by the dealing time). Only for
    /// a party that never waits on a peer inside a step, the dealer; with the marks.
    pub fn settle_at_marks(&mut self) {
        self.mark_layers();
        self.settle = true;
        if let Some(log) = &mut self.parts {
            log.settle = true;
        }
    }

    fn part<P: Protocol>(parts: &mut Option<PartLog>, p: &mut P, name: &'static str) -> Result<(), Error> {
        if let Some(log) = parts {
            if log.settle {
                p.settle()?;
            }
            log.marks.push((name, Mark::now(p)));
        }
        Ok(())
    }

    fn mark<P: Protocol>(&mut self, p: &mut P) -> Result<(), Error> {
        if let Some(m) = &mut self.marks {
            if self.settle {
                p.settle()?;
            }
            m.push(Mark::now(p));
        }
        Ok(())
    }

    /// Position of the next token.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether the embedding is private, so tokens enter as shared one-hot rows.
    pub fn embeds_in_mpc(&self) -> bool {
        self.embed.is_some()
    }

    /// Hidden rows for `m` tokens: the client's plaintext hidden state shared, or, for a
    /// private embedding, shared one-hot rows times the shared embedding (an integer one-hot
    /// times `f`-bit weights needs no truncation).
    pub fn entry<P: Protocol>(
        &self,
        p: &mut P,
        m: usize,
        client: Option<(&mut PlainModel<'_>, &[u32])>,
    ) -> Result<Vec<u64>, StdError> {
        // Each step starts the helpers' rotation afresh (3PC): a step's roles, and so each
        // party's bytes, depend on the model's shape, not on the steps before it.
        p.align_turns(0);
        let (d, v, pl) = (self.arch.d, self.arch.vocab, P::PLANES);
        let mut h = vec![0; m * d * pl];
        match &self.embed {
            None => {
                let plain = match client {
                    Some((public, feed)) => {
                        let mut x = public.embed(feed)?;
                        public.layers(&mut x, m)?;
                        Some(x.iter().map(|z| self.fp.encode(*z)).collect::<Vec<u64>>())
                    }
                    None => None,
                };
                p.input(CLIENT, plain.as_deref(), &mut h).map_err(core)?;
            }
            Some(e) => {
                let onehot = match client {
                    Some((_, feed)) => {
                        let mut o = vec![0u64; m * v];
                        for (i, t) in feed.iter().enumerate() {
                            let t = *t as usize;
                            if t >= v {
                                return Err(StdError::TokenOutsideVocab { token: t as u64, vocab: v });
                            }
                            o[i * v + t] = 1;
                        }
                        Some(o)
                    }
                    None => None,
                };
                let mut oh = vec![0; m * v * pl];
                p.input(CLIENT, onehot.as_deref(), &mut oh).map_err(core)?;
                p.matmul_weight(&oh, e, &mut h, MatDims::new(m, v, d)).map_err(core)?;
            }
        }
        Ok(h)
    }
}

/// Every query head's block of a cache (`planes × T × kv_dim`, kv head `h / group`), as the
/// right operand of `matmul_many`: `Kᵀ` blocks (`hd × T`) with `transposed`, `V` blocks
/// (`T × hd`) without.
fn cache_blocks(
    c: &[Vec<u64>],
    keys: std::ops::Range<usize>,
    kvd: usize,
    hd: usize,
    nh: usize,
    group: usize,
    transposed: bool,
) -> Vec<u64> {
    let t = keys.len();
    let b = t * hd;
    let mut out = vec![0; c.len() * nh * b];
    for (qq, plane) in c.iter().enumerate() {
        for hh in 0..nh {
            let kvh = hh / group;
            for (tt, key) in keys.clone().enumerate() {
                for j in 0..hd {
                    let at = if transposed { j * t + tt } else { tt * hd + j };
                    out[qq * nh * b + hh * b + at] = plane[key * kvd + kvh * hd + j];
                }
            }
        }
    }
    out
}

/// Greedy generation: the client (party 0) passes its public model and the prompt; every
/// party passes the prompt length (public) and the number of tokens. Returns the generated
/// tokens at the client, an empty vector elsewhere.
pub fn generate<P: Protocol>(
    p: &mut P,
    model: &mut SecureModel,
    client: Option<(&mut PlainModel<'_>, &[u32])>,
    prompt_len: usize,
    new_tokens: usize,
) -> Result<Vec<u32>, StdError> {
    generate_streaming(p, model, client, prompt_len, new_tokens, |_| {})
}

/// [`generate`], calling `on_token` at the client as each token arrives.
pub fn generate_streaming<P: Protocol>(
    p: &mut P,
    model: &mut SecureModel,
    mut client: Option<(&mut PlainModel<'_>, &[u32])>,
    prompt_len: usize,
    new_tokens: usize,
    mut on_token: impl FnMut(u32),
) -> Result<Vec<u32>, StdError> {
    let is_client = p.party() == CLIENT;
    if is_client != client.is_some() {
        return Err(StdError::Model("exactly the client passes the prompt".into()));
    }
    if client.as_ref().is_some_and(|(_, prompt)| prompt.len() != prompt_len) {
        return Err(StdError::Model("prompt length differs from the announced one".into()));
    }
    let mut out = Vec::new();
    let mut feed: Vec<u32> = client.as_ref().map(|(_, pr)| pr.to_vec()).unwrap_or_default();
    let mut m = prompt_len;
    for _ in 0..new_tokens {
        let c = client.as_mut().map(|(public, _)| (&mut **public, &feed[..]));
        let mut h = model.entry(p, m, c)?;
        let idx = model.step(p, &mut h, m)?;
        let mut tok = [0u64];
        p.reveal_to(CLIENT, &idx, &mut tok).map_err(core)?;
        if is_client {
            let t = u32::try_from(tok[0])
                .map_err(|_| StdError::TokenOutsideVocab { token: tok[0], vocab: model.arch.vocab })?;
            out.push(t);
            on_token(t);
            feed = vec![t];
        }
        m = 1;
    }
    Ok(out)
}
