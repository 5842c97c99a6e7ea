//! A model's architecture, as every runtime reads it (the plaintext and secure ones here,
//! marill-train's): [`Arch`], checked when a file is opened; one [`LayerShape`]; the
//! activation and attention enums; the RoPE angle. A new architecture feature starts here.

use marill_core::format::ModelFile;

use super::names;
use crate::StdError;
use crate::model_file::ModelMeta;

/// A private layer's MLP activation (public layers keep SiLU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x·σ(x)`.
    Silu,
    /// `max(x, 0)` (MARILL's MPC-friendly approximation).
    Relu,
}

impl Activation {
    /// Every activation, in the metadata's names.
    pub const ALL: [Self; 2] = [Self::Silu, Self::Relu];
    /// The metadata's name (`ModelMeta::activation`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Silu => "silu",
            Self::Relu => "relu",
        }
    }
    /// From the metadata's name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }
    /// The function, in plaintext.
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Self::Silu => x / (1.0 + (-x).exp()),
            Self::Relu => x.max(0.0),
        }
    }
}

/// A private layer's attention normaliser (public layers keep softmax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attention {
    /// Softmax of the visible scores.
    Softmax,
    /// `relu(s) / (Σ relu(s) + 2⁻⁸)` (MARILL's MPC-friendly approximation).
    TwoRelu,
}

impl Attention {
    /// Every normaliser, in the metadata's names.
    pub const ALL: [Self; 2] = [Self::Softmax, Self::TwoRelu];
    /// The metadata's name (`ModelMeta::attention`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Softmax => "softmax",
            Self::TwoRelu => "2relu",
        }
    }
    /// From the metadata's name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }
    /// One row of visible scores normalised, in plaintext.
    pub fn normalise(self, s: &[f64]) -> Vec<f64> {
        match self {
            Self::Softmax => {
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                let sum: f64 = e.iter().sum();
                e.iter().map(|v| v / sum).collect()
            }
            Self::TwoRelu => {
                let sum: f64 = s.iter().map(|v| v.max(0.0)).sum::<f64>() + 2f64.powi(-8);
                s.iter().map(|v| v.max(0.0) / sum).collect()
            }
        }
    }
}

/// RoPE's angle at position `pos` for pair `j` of a block of `rope_dim` (half-split pairs,
/// as Hugging Face LLaMA): `pos · base^(−2j / rope_dim)`. The one definition every runtime
/// uses (plaintext, secure, marill-train).
pub fn rope_angle(pos: usize, j: usize, rope_dim: usize, base: f64) -> f64 {
    pos as f64 * base.powf(-(2.0 * j as f64) / rope_dim as f64)
}

/// The projections of a layer, in the order the runtime applies them.
pub const PROJECTIONS: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

/// The architecture, from the file's metadata.
#[derive(Debug, Clone)]
pub struct Arch {
    /// Hidden size.
    pub d: usize,
    /// Layers.
    pub n_layers: usize,
    /// Query heads (merged).
    pub n_heads: usize,
    /// Key/value heads (merged).
    pub n_kv_heads: usize,
    /// Dimension of a (merged) head.
    pub head_dim: usize,
    /// Head-merge factor.
    pub head_merge: usize,
    /// MLP hidden size.
    pub ffn: usize,
    /// Vocabulary.
    pub vocab: usize,
    /// RoPE base.
    pub rope_base: f64,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// Fixed-point fractional bits.
    pub frac_bits: u32,
    /// LoRA rank (0: none).
    pub lora_rank: usize,
    /// LoRA α.
    pub lora_alpha: f32,
    /// Projections with LoRA.
    pub lora_targets: Vec<String>,
    /// Layers `0..n_public` are public.
    pub n_public: usize,
    /// lm head = embedding.
    pub tie_embeddings: bool,
    /// Private layers' MLP activation.
    pub activation: Activation,
    /// Private layers' attention normaliser.
    pub attention: Attention,
    /// q, k and v carry biases (`arch = "qwen2"`; `"llama"`: none), in every layer.
    pub qkv_bias: bool,
    /// Sliding attention window in keys, a query itself included (`arch = "mistral"`), in
    /// every layer; `None`: causal over the whole sequence.
    pub window: Option<usize>,
}

impl Arch {
    /// The architecture of a split-model file (its public metadata), checked.
    pub fn of_file(f: &ModelFile<'_>) -> Result<Self, StdError> {
        let sec = f
            .find_section(marill_core::format::SectionKind::Metadata, false)
            .ok_or_else(|| StdError::Model("no public metadata".into()))?;
        Self::from_meta(&ModelMeta::decode(sec.bytes)?)
    }

    /// Check and convert the metadata: every value the runtimes rely on is checked here,
    /// when a file is opened, and a bad one is refused with its field's name
    /// ([`StdError::Arch`]) rather than failing mid-inference.
    pub fn from_meta(m: &ModelMeta) -> Result<Self, StdError> {
        let bad = |field: &'static str, reason: String| Err(StdError::Arch { field, reason });
        let n_public = m.public_layers.len();
        if m.public_layers.iter().enumerate().any(|(i, l)| *l as usize != i) {
            return bad("public_layers", format!("{:?}: must be the bottom layers 0..k", m.public_layers));
        }
        // `n_layers` may be 0: the embedding and head alone (what `marill cost` measures as
        // the part of a model outside its layers).
        for (field, v) in [("d_model", m.d_model), ("ffn_dim", m.ffn_dim), ("vocab", m.vocab)] {
            if v == 0 {
                return bad(field, "must be positive".into());
            }
        }
        if n_public > m.n_layers as usize {
            return bad("public_layers", format!("{n_public} public layers of {} layers", m.n_layers));
        }
        if m.n_heads == 0 {
            return bad("n_heads", "must be positive".into());
        }
        if m.n_kv_heads == 0 || !m.n_heads.is_multiple_of(m.n_kv_heads) {
            return bad("n_kv_heads", format!("{}: must divide n_heads = {}", m.n_kv_heads, m.n_heads));
        }
        if m.head_merge == 0 {
            return bad("head_merge", "must be positive".into());
        }
        if m.head_dim == 0 || !m.head_dim.is_multiple_of(m.head_merge) || !(m.head_dim / m.head_merge).is_multiple_of(2)
        {
            return bad(
                "head_dim",
                format!("{}: must split into head_merge = {} even RoPE blocks", m.head_dim, m.head_merge),
            );
        }
        // The non-linear library's range (marill-core `nonlinear`); 16 is what every test
        // and table here uses.
        if !(1..=24).contains(&m.frac_bits) {
            return bad("frac_bits", format!("{}: secure inference supports 1 to 24 fractional bits", m.frac_bits));
        }
        if !(m.rope_base.is_finite() && m.rope_base > 1.0) {
            return bad("rope_base", format!("{}: must be finite and above 1", m.rope_base));
        }
        if !(m.rms_eps.is_finite() && m.rms_eps >= 0.0) {
            return bad("rms_eps", format!("{}: must be finite and not negative", m.rms_eps));
        }
        if let Some(t) = m.lora_targets.iter().find(|t| !PROJECTIONS.contains(&t.as_str())) {
            return bad("lora_targets", format!("{t:?}: not one of {PROJECTIONS:?}"));
        }
        if m.lora_rank > 0 && !m.lora_alpha.is_finite() {
            return bad("lora_alpha", format!("{}: must be finite", m.lora_alpha));
        }
        let qkv_bias = match m.arch.as_str() {
            "llama" | "mistral" => false,
            "qwen2" => true,
            other => return bad("arch", format!("{other:?}: not one of [\"llama\", \"qwen2\", \"mistral\"]")),
        };
        let window = match (m.arch.as_str(), m.sliding_window) {
            ("mistral", 0) => return bad("sliding_window", "a mistral model needs a window of 1 key or more".into()),
            ("mistral", w) => Some(w as usize),
            (_, 0) => None,
            (a, w) => return bad("sliding_window", format!("{w}: a window in a {a} model (only mistral has one)")),
        };
        let Some(activation) = Activation::parse(&m.activation) else {
            let names: Vec<&str> = Activation::ALL.iter().map(|a| a.name()).collect();
            return bad("activation", format!("{:?}: not one of {names:?}", m.activation));
        };
        let Some(attention) = Attention::parse(&m.attention) else {
            let names: Vec<&str> = Attention::ALL.iter().map(|a| a.name()).collect();
            return bad("attention", format!("{:?}: not one of {names:?}", m.attention));
        };
        Ok(Self {
            d: m.d_model as usize,
            n_layers: m.n_layers as usize,
            n_heads: m.n_heads as usize,
            n_kv_heads: m.n_kv_heads as usize,
            head_dim: m.head_dim as usize,
            head_merge: m.head_merge as usize,
            ffn: m.ffn_dim as usize,
            vocab: m.vocab as usize,
            rope_base: f64::from(m.rope_base),
            rms_eps: f64::from(m.rms_eps),
            frac_bits: m.frac_bits,
            lora_rank: m.lora_rank as usize,
            lora_alpha: m.lora_alpha,
            lora_targets: m.lora_targets.clone(),
            n_public,
            tie_embeddings: m.tie_embeddings,
            activation,
            attention,
            qkv_bias,
            window,
        })
    }

    /// Query width.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
    /// Key/value width.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
    /// RoPE block: an original (unmerged) head.
    pub fn rope_dim(&self) -> usize {
        self.head_dim / self.head_merge
    }
    /// `(out, in)` of a projection of a private layer.
    pub fn proj_shape(&self, proj: &str) -> (usize, usize) {
        LayerShape::private(self).proj_shape(self, proj)
    }
    /// Whether `proj` carries a bias.
    pub fn has_bias(&self, proj: &str) -> bool {
        self.qkv_bias && matches!(proj, "q" | "k" | "v")
    }
    /// LoRA scale `α/r`.
    pub fn lora_scale(&self) -> f32 {
        if self.lora_rank == 0 { 0.0 } else { self.lora_alpha / self.lora_rank as f32 }
    }
    /// Whether `proj` of private layers carries LoRA.
    pub fn has_lora(&self, proj: &str) -> bool {
        self.lora_rank > 0 && self.lora_targets.iter().any(|t| t == proj)
    }
}

/// The attention and MLP shape of one layer, for every runtime (the plaintext and secure
/// ones here, marill-train's). Private layers have the file's (merged) heads and its
/// approximations; public layers keep the `n_heads·head_merge` original heads of
/// `head_dim/head_merge`, with as many kv heads as their k projection has, SiLU and softmax
/// (MARILL merges and approximates only what runs in MPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerShape {
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Head dimension (of a merged head where heads are merged).
    pub head_dim: usize,
    /// RoPE block: one original head (`head_dim / head_merge`).
    pub rope_dim: usize,
    /// MLP activation.
    pub activation: Activation,
    /// Attention normaliser.
    pub attention: Attention,
}

impl LayerShape {
    /// The shape of layer `l` of `f` (public layers read their kv heads from `k`).
    pub fn of(f: &ModelFile<'_>, arch: &Arch, l: usize) -> Result<Self, StdError> {
        if l >= arch.n_public {
            return Ok(Self::private(arch));
        }
        let hd = arch.rope_dim();
        let n_heads = arch.n_heads * arch.head_merge;
        let name = names::proj(l, "k");
        let k = f.tensor(&name).ok_or_else(|| StdError::MissingTensor { name: name.clone() })?;
        let rows = k.dims().first().copied().unwrap_or(0) as usize;
        let n_kv_heads = rows / hd;
        if rows == 0 || !rows.is_multiple_of(hd) || !n_heads.is_multiple_of(n_kv_heads) {
            return Err(StdError::Model(format!("{name}: {rows} rows do not make kv heads of {hd}")));
        }
        Ok(Self {
            n_heads,
            n_kv_heads,
            head_dim: hd,
            rope_dim: hd,
            activation: Activation::Silu,
            attention: Attention::Softmax,
        })
    }

    /// The shape of the file's private layers (merged heads, its approximations).
    pub fn private(arch: &Arch) -> Self {
        Self {
            n_heads: arch.n_heads,
            n_kv_heads: arch.n_kv_heads,
            head_dim: arch.head_dim,
            rope_dim: arch.rope_dim(),
            activation: arch.activation,
            attention: arch.attention,
        }
    }

    /// `(out, in)` of a projection.
    pub fn proj_shape(&self, arch: &Arch, proj: &str) -> (usize, usize) {
        self.proj_dims(arch.d, arch.ffn, proj)
    }

    /// `(out, in)` of a projection in a model of hidden size `d` and MLP size `ffn`.
    pub fn proj_dims(&self, d: usize, ffn: usize, proj: &str) -> (usize, usize) {
        let (q, kv) = (self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim);
        match proj {
            "q" => (q, d),
            "k" | "v" => (kv, d),
            "o" => (d, q),
            "gate" | "up" => (ffn, d),
            _ => (d, ffn),
        }
    }
}

// The tests build random models (the `harness` feature).
#[cfg(all(test, feature = "harness"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::random;
    use crate::model_file::{ModelMeta, decode_postcard, encode_postcard};
    use marill_core::format::{ModelFile, SectionKind};

    fn meta() -> ModelMeta {
        let var = random::Variant {
            public_layers: 1,
            lora_rank: 2,
            head_merge: 2,
            mpc_friendly: false,
            private_embedding: false,
        };
        let shape = random::Shape { layers: 2, d: 32, heads: 4, kv_heads: 4, ffn: 48, vocab: 64 };
        let bytes = random::model_shaped(var, shape, 1).unwrap();
        let f = ModelFile::parse(&bytes).unwrap();
        ModelMeta::decode(f.find_section(SectionKind::Metadata, false).unwrap().bytes).unwrap()
    }

    /// A 2-layer random model of `family`, its bottom layer public, no LoRA.
    fn small(family: random::Family) -> Vec<u8> {
        let v = random::Variant {
            public_layers: 1,
            lora_rank: 0,
            head_merge: 1,
            mpc_friendly: false,
            private_embedding: false,
        };
        let shape = random::Shape { layers: 2, d: 32, heads: 4, kv_heads: 4, ffn: 48, vocab: 64 };
        random::model_with(v, shape, family, 1, None).unwrap()
    }

    /// A file's architecture is checked when it is opened: each bad value is refused with
    /// the name of its metadata field, before any party computes.
    #[test]
    fn a_bad_architecture_value_is_refused_naming_its_field() {
        assert!(Arch::from_meta(&meta()).is_ok());
        type Spoil = fn(&mut ModelMeta);
        let cases: [(&str, Spoil); 17] = [
            ("frac_bits", |m| m.frac_bits = 0),
            ("frac_bits", |m| m.frac_bits = 40),
            ("public_layers", |m| m.public_layers = vec![1]),
            ("public_layers", |m| m.public_layers = vec![0, 1, 2]),
            ("d_model", |m| m.d_model = 0),
            ("ffn_dim", |m| m.ffn_dim = 0),
            ("n_kv_heads", |m| m.n_kv_heads = 3),
            ("head_merge", |m| m.head_merge = 0),
            ("head_dim", |m| m.head_dim = 6),
            ("rope_base", |m| m.rope_base = f32::NAN),
            ("rms_eps", |m| m.rms_eps = -1.0),
            ("lora_targets", |m| m.lora_targets = vec!["qkv".into()]),
            ("activation", |m| m.activation = "gelu".into()),
            ("attention", |m| m.attention = "linear".into()),
            ("arch", |m| m.arch = "gemma".into()),
            ("sliding_window", |m| m.arch = "mistral".into()),
            ("sliding_window", |m| m.sliding_window = 8),
        ];
        for (field, spoil) in cases {
            let mut m = meta();
            spoil(&mut m);
            match Arch::from_meta(&m) {
                Err(StdError::Arch { field: f, reason }) => {
                    assert_eq!(f, field, "{reason}");
                    let text = StdError::Arch { field: f, reason }.to_string();
                    assert!(text.contains(field), "{text}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    /// The window is format 1.1's appended metadata field: absent from a file without one
    /// (1.0's bytes), read back where present, and skipped by a 1.0 reader.
    #[test]
    fn a_window_is_appended_to_the_metadata_and_read_back() {
        let mut m = meta();
        let plain = m.encode().unwrap();
        assert_eq!(plain, encode_postcard(&m).unwrap());
        m.arch = "mistral".into();
        m.sliding_window = 4096;
        let b = m.encode().unwrap();
        assert!(b.len() > plain.len());
        assert_eq!(ModelMeta::decode(&b).unwrap(), m);
        let old: ModelMeta = decode_postcard(&b).unwrap();
        assert_eq!(old.sliding_window, 0);
        assert_eq!(Arch::from_meta(&m).unwrap().window, Some(4096));
        // A file with the window says minor 1 in its header; one without keeps minor 0.
        for (family, minor) in [(random::Family::Llama, 0), (random::Family::Mistral(8), 1)] {
            let bytes = small(family);
            assert_eq!(ModelFile::parse(&bytes).unwrap().header().version_minor.get(), minor);
        }
    }

    /// A tensor the architecture needs and the file lacks is named in a typed error.
    #[test]
    fn a_missing_bias_is_named() {
        let bytes = small(random::Family::Llama);
        let f = ModelFile::parse(&bytes).unwrap();
        let arch = Arch { qkv_bias: true, ..Arch::of_file(&f).unwrap() };
        match crate::model::plain::PlainModel::load(&f, arch, 0, 2, true) {
            Err(StdError::MissingTensor { name }) => assert_eq!(name, "model.layers.0.self_attn.q_proj.bias"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("loaded without its biases"),
        }
    }
}
