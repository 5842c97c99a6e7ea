//! The split-model file on the std side: metadata, the writer, the memory-mapped loader and
//! client-file extraction. Parsing and validation are `marill_core::format`'s; the writer
//! builds its bytes from the same `#[repr(C)]` types, so writer and reader cannot drift.

use std::fs::File;
use std::path::Path;

use marill_core::format::{
    self, DType, FLAG_PRIVATE, FormatError, HEADER_LEN, MAGIC, ModelFile, RawHeader, RawSection, RawTensor,
    SECTION_ENTRY_LEN, SectionKind, VERSION_MAJOR,
};
use serde::{Deserialize, Serialize};
use zerocopy_shim::{u16le, u32le, u64le};

pub mod vectors;

use crate::StdError;

/// Little-endian field constructors for the zerocopy types.
mod zerocopy_shim {
    pub fn u16le(v: u16) -> marill_core::format::U16Le {
        marill_core::format::U16Le::new(v)
    }
    pub fn u32le(v: u32) -> marill_core::format::U32Le {
        marill_core::format::U32Le::new(v)
    }
    pub fn u64le(v: u64) -> marill_core::format::U64Le {
        marill_core::format::U64Le::new(v)
    }
}

/// Architecture and MARILL layout of a model: the public metadata section, postcard-encoded
/// (field order is the encoding; see `format-spec/SPEC.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Architecture name (`"llama"`).
    pub arch: String,
    /// Transformer layers.
    pub n_layers: u32,
    /// Hidden size.
    pub d_model: u32,
    /// Query heads (after head merging).
    pub n_heads: u32,
    /// Key/value heads (after head merging).
    pub n_kv_heads: u32,
    /// Dimension of one (merged) head.
    pub head_dim: u32,
    /// Head-merge factor `m` (1: no merging).
    pub head_merge: u32,
    /// For each merged head, the original heads it holds.
    pub head_groups: Vec<Vec<u32>>,
    /// LoRA rank (0: no LoRA).
    pub lora_rank: u32,
    /// LoRA scale numerator `α` (the update is `(α/r)·B(A·x)`).
    pub lora_alpha: f32,
    /// Projections that carry LoRA (`q`, `k`, `v`, `o`, `gate`, `up`, `down`).
    pub lora_targets: Vec<String>,
    /// MLP hidden size.
    pub ffn_dim: u32,
    /// Vocabulary size.
    pub vocab: u32,
    /// RoPE base.
    pub rope_base: f32,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Fixed-point fractional bits secure inference uses.
    pub frac_bits: u32,
    /// Layers whose weights are public (frozen), in ascending order.
    pub public_layers: Vec<u32>,
    /// Whether the lm head is the embedding.
    pub tie_embeddings: bool,
    /// MLP activation (`"silu"` or `"relu"`).
    pub activation: String,
    /// Attention normaliser (`"softmax"` or `"2relu"`).
    pub attention: String,
    /// Sliding attention window in keys (0: none; `arch = "mistral"`). Format 1.1's
    /// appended field: written after the fields above only when nonzero, so files without a
    /// window keep 1.0's bytes. Read and write it with [`ModelMeta::decode`] and
    /// [`ModelMeta::encode`] (plain postcard skips it).
    #[serde(skip)]
    pub sliding_window: u32,
}

impl ModelMeta {
    /// The metadata section's bytes: the 1.0 fields, then the appended ones where set.
    pub fn encode(&self) -> Result<Vec<u8>, StdError> {
        let mut b = encode_postcard(self)?;
        if self.sliding_window > 0 {
            b.extend(encode_postcard(&self.sliding_window)?);
        }
        Ok(b)
    }

    /// From a metadata section: the 1.0 fields, then the appended ones if present (a
    /// section that ends after the 1.0 fields has none). Bytes after the fields this reader
    /// knows are ignored, as the spec requires of a later minor's.
    pub fn decode(b: &[u8]) -> Result<Self, StdError> {
        let (mut meta, rest): (ModelMeta, &[u8]) =
            postcard::take_from_bytes(b).map_err(|e| StdError::Codec { what: "decode", reason: e.to_string() })?;
        if !rest.is_empty() {
            meta.sliding_window = decode_postcard(rest)?;
        }
        Ok(meta)
    }
}

/// How the model was fine-tuned (the public recipe section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// Fraction of layers trained (layer freezing `f`; 1.0 = all).
    pub trained_fraction: f32,
    /// LoRA rank (0: none).
    pub lora_rank: u32,
    /// Head-merge factor (1: none).
    pub head_merge: u32,
    /// How heads were grouped (`"similarity"`, `"adjacent"`, `"none"`).
    pub grouping: String,
    /// Whether distillation from the fully fine-tuned teacher was used.
    pub distilled: bool,
    /// Free text: data, steps, learning rate.
    pub notes: String,
}

/// Encode with postcard.
pub fn encode_postcard<T: Serialize>(v: &T) -> Result<Vec<u8>, StdError> {
    postcard::to_allocvec(v).map_err(|e| StdError::Codec { what: "encode", reason: e.to_string() })
}

/// Decode with postcard.
pub fn decode_postcard<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, StdError> {
    postcard::from_bytes(b).map_err(|e| StdError::Codec { what: "decode", reason: e.to_string() })
}

struct PendingTensor {
    name: String,
    dtype: DType,
    shape: Vec<u64>,
    data: Vec<u8>,
}

enum Payload {
    Bytes(Vec<u8>),
    /// Tensors of one visibility: becomes an index and a data section.
    Tensors,
}

struct PendingSection {
    kind: SectionKind,
    private: bool,
    name: String,
    payload: Payload,
}

/// Builds a split-model file. Sections are written in the order they were added (tensor
/// sections where the first tensor of their visibility was added); tensors are sorted by
/// name within their index. Output is deterministic.
#[derive(Default)]
pub struct ModelWriter {
    /// The header's minor version: `format::VERSION_MINOR` (0), or 1 where the metadata carries
    /// 1.1's appended field.
    minor: u16,
    sections: Vec<PendingSection>,
    public_tensors: Vec<PendingTensor>,
    private_tensors: Vec<PendingTensor>,
}

fn pad_to(v: &mut Vec<u8>, align: usize) {
    while !v.len().is_multiple_of(align) {
        v.push(0);
    }
}

fn name16(s: &str) -> Result<[u8; 16], StdError> {
    let mut n = [0u8; 16];
    if s.len() > 16 || s.contains('\0') {
        return Err(StdError::Writer(format!("section name {s:?} longer than 16 bytes")));
    }
    n[..s.len()].copy_from_slice(s.as_bytes());
    Ok(n)
}

impl ModelWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a section of raw bytes.
    pub fn section(
        &mut self,
        kind: SectionKind,
        private: bool,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<&mut Self, StdError> {
        if matches!(kind, SectionKind::TensorIndex | SectionKind::TensorData) {
            return Err(StdError::Writer("tensor sections are built from tensors".into()));
        }
        name16(name)?;
        self.sections.push(PendingSection { kind, private, name: name.into(), payload: Payload::Bytes(bytes) });
        Ok(self)
    }

    /// Add the metadata (public or private), postcard-encoded.
    pub fn metadata(&mut self, private: bool, meta: &ModelMeta) -> Result<&mut Self, StdError> {
        let b = meta.encode()?;
        if meta.sliding_window > 0 {
            self.minor = self.minor.max(1);
        }
        self.section(SectionKind::Metadata, private, "meta", b)
    }

    /// Add a tensor. `data` is little-endian elements of `dtype`.
    pub fn tensor(
        &mut self,
        private: bool,
        name: &str,
        dtype: DType,
        shape: &[u64],
        data: Vec<u8>,
    ) -> Result<&mut Self, StdError> {
        if name.is_empty() || name.len() > format::MAX_NAME_LEN || name.contains('\0') {
            return Err(StdError::Writer(format!("tensor name {name:?}: 1 to 64 bytes, no NUL")));
        }
        if shape.len() > format::MAX_RANK {
            return Err(StdError::Writer(format!("tensor {name}: rank {} above 4", shape.len())));
        }
        let numel = shape.iter().try_fold(1u64, |a, d| a.checked_mul(*d));
        if numel.and_then(|n| n.checked_mul(dtype.size())) != Some(data.len() as u64) {
            return Err(StdError::Writer(format!(
                "tensor {name}: {} bytes for shape {shape:?} of {}",
                data.len(),
                dtype.name()
            )));
        }
        let list = if private { &mut self.private_tensors } else { &mut self.public_tensors };
        if list.iter().any(|t| t.name == name) {
            return Err(StdError::Writer(format!("tensor {name} added twice")));
        }
        if list.is_empty() {
            let label = if private { "private" } else { "public" };
            self.sections.push(PendingSection {
                kind: SectionKind::TensorIndex,
                private,
                name: label.into(),
                payload: Payload::Tensors,
            });
        }
        list.push(PendingTensor { name: name.into(), dtype, shape: shape.to_vec(), data });
        Ok(self)
    }

    /// Add an `f32` tensor.
    pub fn tensor_f32(
        &mut self,
        private: bool,
        name: &str,
        shape: &[u64],
        data: &[f32],
    ) -> Result<&mut Self, StdError> {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(private, name, DType::F32, shape, bytes)
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, StdError> {
        // Expand tensor groups into (index, data) section pairs.
        struct Out {
            kind: SectionKind,
            private: bool,
            name: [u8; 16],
            bytes: Vec<u8>,
            link: u32,
        }
        let mut outs: Vec<Out> = Vec::new();
        for s in &self.sections {
            match &s.payload {
                Payload::Bytes(b) => outs.push(Out {
                    kind: s.kind,
                    private: s.private,
                    name: name16(&s.name)?,
                    bytes: b.clone(),
                    link: u32::MAX,
                }),
                Payload::Tensors => {
                    let list = if s.private { &self.private_tensors } else { &self.public_tensors };
                    let mut order: Vec<&PendingTensor> = list.iter().collect();
                    order.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
                    let mut index = Vec::with_capacity(order.len() * format::TENSOR_ENTRY_LEN);
                    let mut data = Vec::new();
                    for t in order {
                        pad_to(&mut data, format::DATA_ALIGN as usize);
                        let mut raw = RawTensor {
                            name: [0; 64],
                            dtype: u32le(t.dtype.code()),
                            rank: u32le(t.shape.len() as u32),
                            shape: [u64le(0); 4],
                            offset: u64le(data.len() as u64),
                            length: u64le(t.data.len() as u64),
                            reserved: [0; 8],
                        };
                        raw.name[..t.name.len()].copy_from_slice(t.name.as_bytes());
                        for (d, v) in raw.shape.iter_mut().zip(&t.shape) {
                            *d = u64le(*v);
                        }
                        index.extend_from_slice(zerocopy::IntoBytes::as_bytes(&raw));
                        data.extend_from_slice(&t.data);
                    }
                    let data_no = (outs.len() + 1) as u32;
                    outs.push(Out {
                        kind: SectionKind::TensorIndex,
                        private: s.private,
                        name: name16(&s.name)?,
                        bytes: index,
                        link: data_no,
                    });
                    outs.push(Out {
                        kind: SectionKind::TensorData,
                        private: s.private,
                        name: name16(&s.name)?,
                        bytes: data,
                        link: u32::MAX,
                    });
                }
            }
        }
        let table_off = HEADER_LEN;
        let mut file = vec![0u8; table_off + outs.len() * SECTION_ENTRY_LEN];
        let mut table = Vec::with_capacity(outs.len());
        for o in &outs {
            pad_to(&mut file, format::DATA_ALIGN as usize);
            table.push(RawSection {
                kind: u32le(o.kind.code()),
                flags: u32le(if o.private { FLAG_PRIVATE } else { 0 }),
                offset: u64le(file.len() as u64),
                length: u64le(o.bytes.len() as u64),
                link: u32le(o.link),
                reserved: u32le(0),
                name: o.name,
            });
            file.extend_from_slice(&o.bytes);
        }
        let digest =
            format::public_digest(outs.iter().filter(|o| !o.private).map(|o| (o.kind.code(), &o.name, &o.bytes[..])));
        let header = RawHeader {
            magic: MAGIC,
            version_major: u16le(VERSION_MAJOR),
            version_minor: u16le(self.minor),
            header_len: u32le(HEADER_LEN as u32),
            section_count: u32le(outs.len() as u32),
            flags: u32le(0),
            section_table_offset: u64le(table_off as u64),
            file_len: u64le(file.len() as u64),
            public_digest: digest,
            reserved: [0; 24],
        };
        file[..HEADER_LEN].copy_from_slice(zerocopy::IntoBytes::as_bytes(&header));
        for (i, t) in table.iter().enumerate() {
            let at = table_off + i * SECTION_ENTRY_LEN;
            file[at..at + SECTION_ENTRY_LEN].copy_from_slice(zerocopy::IntoBytes::as_bytes(t));
        }
        // The writer's output must parse: a cheap guard against writer bugs.
        ModelFile::parse(&file)?;
        Ok(file)
    }

    /// Write the file to `path`; returns the public digest.
    pub fn write(&self, path: &Path) -> Result<[u8; 32], StdError> {
        let b = self.to_bytes()?;
        std::fs::write(path, &b).map_err(|e| StdError::io(format!("write {}", path.display()), e))?;
        Ok(ModelFile::parse(&b)?.stored_digest())
    }
}

/// The client file of a server file: its public sections only, re-laid out, with the same
/// public digest (checked).
pub fn extract_public(server: &[u8]) -> Result<Vec<u8>, StdError> {
    let f = ModelFile::parse(server)?;
    let digest = f.verify_digest()?;
    let public: Vec<_> = f.sections().filter(|s| !s.private).collect();
    // New numbers of the kept sections, for tensor-index links.
    let renumber = |old: u32| public.iter().position(|s| s.index == old).map(|p| p as u32);
    let table_off = HEADER_LEN;
    let mut file = vec![0u8; table_off + public.len() * SECTION_ENTRY_LEN];
    let mut table = Vec::with_capacity(public.len());
    for s in &public {
        pad_to(&mut file, format::DATA_ALIGN as usize);
        let link = match s.link {
            Some(l) => {
                renumber(l).ok_or_else(|| StdError::Model("a public index links to a private section".into()))?
            }
            None => u32::MAX,
        };
        let mut raw = *s.raw;
        raw.offset = u64le(file.len() as u64);
        raw.link = u32le(link);
        table.push(raw);
        file.extend_from_slice(s.bytes);
    }
    let mut header = *f.header();
    header.section_count = u32le(public.len() as u32);
    header.section_table_offset = u64le(table_off as u64);
    header.file_len = u64le(file.len() as u64);
    header.header_len = u32le(HEADER_LEN as u32);
    file[..HEADER_LEN].copy_from_slice(zerocopy::IntoBytes::as_bytes(&header));
    for (i, t) in table.iter().enumerate() {
        let at = table_off + i * SECTION_ENTRY_LEN;
        file[at..at + SECTION_ENTRY_LEN].copy_from_slice(zerocopy::IntoBytes::as_bytes(t));
    }
    let out = ModelFile::parse(&file)?;
    if out.verify_digest()? != digest {
        return Err(StdError::Model("extracted file's digest differs".into()));
    }
    Ok(file)
}

/// A split-model file mapped into memory: tensor views borrow the mapping, so a client uses
/// the public weights in place, without copying them.
pub struct MappedModel {
    map: memmap2::Mmap,
}

/// Map `file` read-only.
///
/// # Safety
///
/// The caller must ensure that nobody modifies or truncates the file while the mapping
/// lives (another process writing it would change bytes that validated slices point to;
/// truncation would make reads fault). marill opens model files read-only and never writes
/// a file it has mapped; deployments keep model files read-only.
#[allow(unsafe_code)]
pub unsafe fn map_readonly(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the caller upholds the contract above; memmap2 requires exactly that.
    unsafe { memmap2::Mmap::map(file) }
}

impl MappedModel {
    /// Map and validate `path`.
    pub fn open(path: &Path) -> Result<Self, StdError> {
        let file = File::open(path).map_err(|e| StdError::io(format!("open {}", path.display()), e))?;
        // SAFETY: model files are read-only while mapped (see `map_readonly`).
        #[allow(unsafe_code)]
        let map = unsafe { map_readonly(&file) }.map_err(|e| StdError::io(format!("map {}", path.display()), e))?;
        ModelFile::parse(&map)?;
        Ok(Self { map })
    }

    /// The validated file, borrowing the mapping.
    pub fn file(&self) -> Result<ModelFile<'_>, FormatError> {
        ModelFile::parse(&self.map)
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

/// Lower-case hex of a digest.
pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}
