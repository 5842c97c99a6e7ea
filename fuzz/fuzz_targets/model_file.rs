//! The split-model parser on arbitrary bytes: `parse` returns a typed error or a file whose
//! every accessor works; never a panic, never an allocation (the parser has no allocator).
#![no_main]

use libfuzzer_sys::fuzz_target;
use marill_core::format::ModelFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = ModelFile::parse(data) {
        let _ = f.verify_digest();
        let mut names = 0usize;
        for t in f.tensors() {
            names += t.name.len();
            let _ = (t.as_f32(), t.as_f16(), t.as_bf16(), t.as_u64(), t.get_f32(0), t.numel());
            assert!(f.tensor(t.name).is_some());
        }
        for s in f.sections() {
            let _ = (s.kind.name(), s.bytes.len(), s.link);
        }
        let _ = (names, f.has_private());
    }
});
