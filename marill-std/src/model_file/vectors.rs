//! The test vectors of `format-spec/vectors/`: a small server file, its client file, and
//! invalid files made by mutating them, each with its expected outcome. The generator
//! (`cargo run -p marill-std --example make_vectors`) writes them; the tests regenerate
//! them and compare byte for byte, so the committed files are the writer's output.

use marill_core::format::{DType, ModelFile, SECTION_ENTRY_LEN, SectionKind, TENSOR_ENTRY_LEN};

use super::{ModelMeta, ModelWriter, Recipe, extract_public};
use crate::StdError;

/// What a vector must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Parses and its digest verifies.
    Valid,
    /// `ModelFile::parse` fails with this error name.
    ParseError(&'static str),
    /// Parses, but `verify_digest` fails with this error name.
    VerifyError(&'static str),
}

/// One vector.
pub struct Vector {
    /// File name without `.bin`; the expectation goes to the same name with `.json`.
    pub name: &'static str,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The outcome.
    pub expect: Expect,
    /// What the vector tests.
    pub about: &'static str,
}

/// The small model every vector derives from.
pub fn tiny_server() -> Result<Vec<u8>, StdError> {
    let meta = ModelMeta {
        arch: "llama".into(),
        n_layers: 2,
        d_model: 3,
        n_heads: 1,
        n_kv_heads: 1,
        head_dim: 3,
        head_merge: 1,
        head_groups: vec![vec![0]],
        lora_rank: 2,
        lora_alpha: 4.0,
        lora_targets: vec!["q".into()],
        ffn_dim: 4,
        vocab: 4,
        rope_base: 10000.0,
        rms_eps: 1e-5,
        frac_bits: 16,
        public_layers: vec![0],
        tie_embeddings: true,
        activation: "silu".into(),
        attention: "softmax".into(),
        sliding_window: 0,
    };
    let recipe = Recipe {
        trained_fraction: 0.5,
        lora_rank: 2,
        head_merge: 1,
        grouping: "none".into(),
        distilled: false,
        notes: "test vector".into(),
    };
    let f16 = |v: &[f32]| v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect::<Vec<u8>>();
    let bf16 = |v: &[f32]| v.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect::<Vec<u8>>();
    let tokenizer = br#"{"version":"1.0","model":{"type":"BPE","vocab":{"a":0,"b":1,"c":2,"d":3},"merges":[]}}"#;
    let mut w = ModelWriter::new();
    w.metadata(false, &meta)?;
    w.section(SectionKind::Tokenizer, false, "tokenizer", tokenizer.to_vec())?;
    w.section(SectionKind::Recipe, false, "recipe", super::encode_postcard(&recipe)?)?;
    w.tensor_f32(false, "embed.weight", &[4, 3], &[0.5, -1.0, 2.0, 0.25, 0.0, -0.5, 1.5, 3.0, -2.0, 1.0, 1.0, 1.0])?;
    w.tensor(false, "layers.0.attn_norm.weight", DType::F16, &[3], f16(&[1.0, 0.5, 2.0]))?;
    w.tensor(false, "layers.0.q.weight", DType::Bf16, &[3, 3], bf16(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]))?;
    w.tensor_f32(true, "layers.1.q.lora_a", &[3, 2], &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6])?;
    w.tensor_f32(true, "layers.1.q.lora_b", &[2, 3], &[0.0; 6])?;
    let ring: Vec<u8> = [5u64, u64::MAX].iter().flat_map(|v| v.to_le_bytes()).collect();
    w.tensor(true, "layers.1.q.weight_ring", DType::U64, &[2], ring)?;
    w.to_bytes()
}

fn section_of(f: &ModelFile<'_>, kind: SectionKind, private: bool) -> Result<u32, StdError> {
    f.find_section(kind, private).map(|s| s.index).ok_or_else(|| StdError::Model(format!("no {kind:?} section")))
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn vector(name: &'static str, bytes: Vec<u8>, expect: Expect, about: &'static str) -> Vector {
    Vector { name, bytes, expect, about }
}

/// Every vector, sorted by name.
pub fn all() -> Result<Vec<Vector>, StdError> {
    use Expect::{ParseError as P, Valid, VerifyError};
    let server = tiny_server()?;
    let client = extract_public(&server)?;
    let f = ModelFile::parse(&server)?;
    let entry = |i: u32| 96 + i as usize * SECTION_ENTRY_LEN;
    let tok = section_of(&f, SectionKind::Tokenizer, false)?;
    let meta = section_of(&f, SectionKind::Metadata, false)?;
    let index = section_of(&f, SectionKind::TensorIndex, false)?;
    let data = section_of(&f, SectionKind::TensorData, false)?;
    let index_off = f.section(index).map(|s| s.offset as usize).unwrap_or(0);
    let data_sec = f.section(data).ok_or_else(|| StdError::Model("no data section".into()))?;
    let (data_off, data_len) = (data_sec.offset, data_sec.bytes.len() as u64);
    let mutate = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = server.clone();
        edit(&mut b);
        b
    };
    let unknown_optional = {
        let mut w = ModelWriter::new();
        w.section(SectionKind::Unknown(77), false, "future", vec![1, 2, 3])?;
        w.to_bytes()?
    };
    let mut longer = server.clone();
    longer.extend_from_slice(&[0; 64]);
    let mut v = vec![
        vector("valid_server", server.clone(), Valid, "a server file: public and private sections"),
        vector("valid_client", client, Valid, "the client file extracted from valid_server: the same digest"),
        vector("valid_empty", ModelWriter::new().to_bytes()?, Valid, "no sections at all"),
        vector(
            "valid_unknown_optional_section",
            unknown_optional,
            Valid,
            "an unknown kind without the required flag is skipped",
        ),
        vector("valid_future_minor", mutate(&|b| b[10] = 7), Valid, "a later minor version is read"),
        vector("truncated", server[..50].to_vec(), P("TooShort"), "shorter than a header"),
        vector("bad_magic", mutate(&|b| b[0] = b'X'), P("BadMagic"), "wrong magic"),
        vector("future_major", mutate(&|b| b[8] = 2), P("UnsupportedVersion"), "major version 2"),
        vector("bad_header_len", mutate(&|b| put_u32(b, 12, 95)), P("BadHeaderLen"), "header_len below 96"),
        vector("length_mismatch", longer, P("LengthMismatch"), "bytes after file_len"),
        vector("reserved_nonzero", mutate(&|b| b[95] = 1), P("NonZeroReserved"), "a reserved header byte set"),
        vector("too_many_sections", mutate(&|b| put_u32(b, 16, 300)), P("TooManySections"), "section_count above 256"),
        vector(
            "table_out_of_bounds",
            mutate(&|b| {
                let n = b.len() as u64;
                put_u64(b, 24, n - 8)
            }),
            P("BadSectionTable"),
            "the section table runs past the end",
        ),
        vector(
            "section_out_of_bounds",
            mutate(&|b| put_u64(b, entry(tok) + 16, u64::MAX - 8)),
            P("SectionOutOfBounds"),
            "offset + length overflows",
        ),
        vector(
            "sections_overlap",
            mutate(&|b| {
                let off = get_u64(b, entry(meta) + 8);
                put_u64(b, entry(tok) + 8, off)
            }),
            P("SectionsOverlap"),
            "the tokenizer starts inside the metadata",
        ),
        vector(
            "data_misaligned",
            mutate(&|b| {
                put_u64(b, entry(data) + 8, data_off + 8);
                put_u64(b, entry(data) + 16, data_len - 8);
            }),
            P("Misaligned"),
            "a tensor data section off its 64-byte boundary",
        ),
        vector(
            "unknown_required_section",
            mutate(&|b| {
                put_u32(b, entry(tok), 99);
                put_u32(b, entry(tok) + 4, 2)
            }),
            P("UnknownRequiredSection"),
            "an unknown kind flagged required",
        ),
        vector(
            "index_bad_length",
            mutate(&|b| {
                let l = get_u64(b, entry(index) + 16);
                put_u64(b, entry(index) + 16, l - 1)
            }),
            P("BadTensorIndex"),
            "an index that is not whole entries",
        ),
        vector(
            "index_bad_link",
            mutate(&|b| put_u32(b, entry(index) + 24, meta)),
            P("BadTensorIndex"),
            "an index linked to the metadata",
        ),
        vector("tensor_bad_dtype", mutate(&|b| put_u32(b, index_off + 64, 9)), P("BadTensor"), "dtype code 9"),
        vector(
            "tensor_size_mismatch",
            mutate(&|b| put_u64(b, index_off + 72, 5)),
            P("SizeMismatch"),
            "shape 5×3 f32 for 48 bytes",
        ),
        vector(
            "tensor_out_of_bounds",
            mutate(&|b| put_u64(b, index_off + 104, 1 << 20)),
            P("TensorOutOfBounds"),
            "a tensor past its data section",
        ),
        vector(
            "names_not_sorted",
            mutate(&|b| {
                let (a, c) = (index_off, index_off + TENSOR_ENTRY_LEN);
                let first: Vec<u8> = b[a..a + 64].to_vec();
                let second: Vec<u8> = b[c..c + 64].to_vec();
                b[a..a + 64].copy_from_slice(&second);
                b[c..c + 64].copy_from_slice(&first);
            }),
            P("NamesNotSorted"),
            "tensor names out of order",
        ),
        vector(
            "public_tampered",
            mutate(&|b| b[data_off as usize] ^= 1),
            VerifyError("DigestMismatch"),
            "one bit of a public tensor flipped: parses, the digest fails",
        ),
    ];
    v.sort_by_key(|x| x.name);
    Ok(v)
}

/// The expectation as JSON (what `format-spec/vectors/NAME.json` holds).
pub fn expectation_json(v: &Vector) -> Result<String, StdError> {
    let mut s = String::from("{\n");
    s += &format!("  \"file\": \"{}.bin\",\n  \"about\": \"{}\",\n", v.name, v.about);
    match &v.expect {
        Expect::ParseError(e) => s += &format!("  \"valid\": false,\n  \"stage\": \"parse\",\n  \"error\": \"{e}\"\n"),
        Expect::VerifyError(e) => {
            s += &format!("  \"valid\": false,\n  \"stage\": \"verify\",\n  \"error\": \"{e}\"\n")
        }
        Expect::Valid => {
            let f = ModelFile::parse(&v.bytes)?;
            s += &format!("  \"valid\": true,\n  \"digest\": \"{}\",\n", super::hex(&f.verify_digest()?));
            s += &format!("  \"sections\": {},\n  \"tensors\": [", f.section_count());
            let ts: Vec<String> = f
                .tensors()
                .map(|t| {
                    format!(
                        "\n    {{\"name\": \"{}\", \"dtype\": \"{}\", \"shape\": {:?}, \"private\": {}, \"bytes\": {}}}",
                        t.name,
                        t.dtype.name(),
                        t.dims(),
                        t.private,
                        t.bytes.len()
                    )
                })
                .collect();
            s += &ts.join(",");
            s += if ts.is_empty() { "]\n" } else { "\n  ]\n" };
        }
    }
    s += "}\n";
    Ok(s)
}
