//! The split-model file: committed vectors against the writer and the reader, round trips,
//! client extraction, zero-copy mapping, and the `marill` command line.

#![allow(clippy::unwrap_used)]
// The heap-counting allocator below is test instrumentation: the one place this test needs `unsafe`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use marill_core::format::{DType, ModelFile, SectionKind};
use marill_std::model_file::vectors::{self, Expect};
use marill_std::model_file::{MappedModel, ModelMeta, ModelWriter, extract_public, hex};

/// Counts heap bytes allocated on threads that asked for it.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only adds bookkeeping in thread-locals that
// need no allocation (const-initialised `Cell`s without destructors).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATED.with(|a| a.set(a.get() + layout.size()));
        }
        // SAFETY: the caller's contract for `alloc` is passed through unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn heap_bytes_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCATED.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCATED.with(Cell::get))
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../format-spec/vectors")
}

fn error_name(bytes: &[u8]) -> (Option<&'static str>, Option<&'static str>) {
    match ModelFile::parse(bytes) {
        Err(e) => (Some(e.name()), None),
        Ok(f) => (None, f.verify_digest().err().map(|e| e.name())),
    }
}

#[test]
fn committed_vectors_are_the_writers_output() {
    for v in vectors::all().unwrap() {
        let bin = std::fs::read(vectors_dir().join(format!("{}.bin", v.name))).unwrap();
        assert!(
            bin == v.bytes,
            "{}.bin differs from the writer's output: run `cargo run -p marill-std --example make_vectors`",
            v.name
        );
        let json = std::fs::read_to_string(vectors_dir().join(format!("{}.json", v.name))).unwrap();
        assert_eq!(json, vectors::expectation_json(&v).unwrap(), "{}.json", v.name);
        let (parse, verify) = error_name(&v.bytes);
        match v.expect {
            Expect::Valid => assert_eq!((parse, verify), (None, None), "{}", v.name),
            Expect::ParseError(e) => assert_eq!(parse, Some(e), "{}", v.name),
            Expect::VerifyError(e) => assert_eq!((parse, verify), (None, Some(e)), "{}", v.name),
        }
    }
}

#[test]
fn every_committed_vector_meets_its_json() {
    let mut seen = 0;
    for entry in std::fs::read_dir(vectors_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        seen += 1;
        let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let bin = std::fs::read(vectors_dir().join(j["file"].as_str().unwrap())).unwrap();
        let (parse, verify) = error_name(&bin);
        if j["valid"].as_bool().unwrap() {
            assert_eq!((parse, verify), (None, None), "{}", path.display());
            let f = ModelFile::parse(&bin).unwrap();
            assert_eq!(hex(&f.verify_digest().unwrap()), j["digest"].as_str().unwrap());
            assert_eq!(f.section_count() as u64, j["sections"].as_u64().unwrap());
            let want = j["tensors"].as_array().unwrap();
            let got: Vec<_> = f.tensors().collect();
            assert_eq!(got.len(), want.len());
            for (t, w) in got.iter().zip(want) {
                assert_eq!(t.name, w["name"].as_str().unwrap());
                assert_eq!(t.dtype.name(), w["dtype"].as_str().unwrap());
                let shape: Vec<u64> = w["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
                assert_eq!(t.dims(), &shape[..]);
                assert_eq!(t.private, w["private"].as_bool().unwrap());
                assert_eq!(t.bytes.len() as u64, w["bytes"].as_u64().unwrap());
            }
        } else {
            let e = j["error"].as_str().unwrap();
            match j["stage"].as_str().unwrap() {
                "parse" => assert_eq!(parse, Some(e), "{}", path.display()),
                _ => assert_eq!((parse, verify), (None, Some(e)), "{}", path.display()),
            }
        }
    }
    assert!(seen >= 20, "only {seen} vectors found");
}

#[test]
fn round_trip_values_and_metadata() {
    let b = vectors::tiny_server().unwrap();
    let f = ModelFile::parse(&b).unwrap();
    let meta = ModelMeta::decode(f.find_section(SectionKind::Metadata, false).unwrap().bytes).unwrap();
    assert_eq!(meta.n_layers, 2);
    assert_eq!(meta.public_layers, vec![0]);
    // The parsed bytes live at an arbitrary heap address here; element access works
    // regardless of alignment.
    let e = f.tensor("embed.weight").unwrap();
    assert_eq!((e.dtype, e.dims()), (DType::F32, &[4u64, 3][..]));
    assert_eq!(e.get_f32(2), Some(2.0));
    let n = f.tensor("layers.0.attn_norm.weight").unwrap();
    assert_eq!((n.dtype, n.get_f32(1)), (DType::F16, Some(0.5)));
    let q = f.tensor("layers.0.q.weight").unwrap();
    assert_eq!((q.dtype, q.get_f32(4)), (DType::Bf16, Some(1.0)));
    assert!(f.tensor("layers.1.q.lora_a").unwrap().private);
    assert!(f.tensor("nope").is_none());
    assert!(f.has_private());
}

#[test]
fn client_file_keeps_the_public_part_and_its_digest() {
    let server = vectors::tiny_server().unwrap();
    let client = extract_public(&server).unwrap();
    let (s, c) = (ModelFile::parse(&server).unwrap(), ModelFile::parse(&client).unwrap());
    assert!(!c.has_private());
    assert_eq!(s.verify_digest().unwrap(), c.verify_digest().unwrap());
    let public: Vec<_> = s.tensors().filter(|t| !t.private).map(|t| (t.name, t.bytes)).collect();
    let kept: Vec<_> = c.tensors().map(|t| (t.name, t.bytes)).collect();
    assert_eq!(public, kept);
    assert!(c.tensor("layers.1.q.lora_a").is_none());
    // Extracting a client file again changes nothing.
    assert_eq!(extract_public(&client).unwrap(), client);
}

fn big_model(dir: &Path, floats: usize) -> PathBuf {
    let mut w = ModelWriter::new();
    let data: Vec<f32> = (0..floats).map(|i| i as f32).collect();
    w.tensor_f32(false, "big", &[floats as u64], &data).unwrap();
    w.tensor_f32(false, "small", &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    w.tensor_f32(true, "secret", &[2], &[7.0, 8.0]).unwrap();
    let p = dir.join(format!("big_{floats}.marill"));
    w.write(&p).unwrap();
    p
}

#[test]
fn mapped_tensors_point_into_the_mapping_and_the_heap_does_not_grow_with_the_file() {
    let dir = std::env::temp_dir().join(format!("marill-zero-copy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut heap = Vec::new();
    for floats in [1 << 16, 1 << 24] {
        let path = big_model(&dir, floats);
        let ((sum, inside), bytes) = heap_bytes_during(|| {
            let m = MappedModel::open(&path).unwrap();
            let f = m.file().unwrap();
            let t = f.tensor("big").unwrap();
            let map = m.bytes().as_ptr_range();
            let inside = map.contains(&t.bytes.as_ptr()) && t.bytes.as_ptr_range().end <= map.end;
            // Typed, zero-copy access: the mapping is page-aligned and data 64-aligned.
            let v = t.as_f32().unwrap();
            (v[v.len() - 1] as f64 + v[1] as f64, inside)
        });
        assert!(inside, "tensor slice lies outside the mapping");
        assert_eq!(sum, (floats - 1) as f64 + 1.0);
        heap.push(bytes);
        std::fs::remove_file(&path).unwrap();
    }
    // 256 KiB and 64 MiB files: the same small heap use (the path, the File).
    assert!(heap[0] < 4096 && heap[1] < 4096, "heap bytes while opening: {heap:?}");
    assert_eq!(heap[0], heap[1]);
}

#[test]
fn command_line_inspect_and_extract() {
    let exe = env!("CARGO_BIN_EXE_marill");
    let server = vectors_dir().join("valid_server.bin");
    let out = std::process::Command::new(exe).args(["inspect"]).arg(&server).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["server (public + private)", "(verified)", "embed.weight", "bf16", "private", "tensor-data"] {
        assert!(text.contains(needle), "inspect output lacks {needle:?}:\n{text}");
    }
    let dir = std::env::temp_dir().join(format!("marill-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let client = dir.join("client.marill");
    let out =
        std::process::Command::new(exe).arg("extract-public").arg(&server).arg("-o").arg(&client).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&client).unwrap(), std::fs::read(vectors_dir().join("valid_client.bin")).unwrap());
    // A bad file is a clear error, not a panic.
    let bad = vectors_dir().join("sections_overlap.bin");
    let out = std::process::Command::new(exe).arg("inspect").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SectionsOverlap"));
    std::fs::remove_dir_all(&dir).unwrap();
}
