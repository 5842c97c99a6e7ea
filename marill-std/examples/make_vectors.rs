//! Writes the split-model test vectors: `cargo run -p marill-std --example make_vectors`
//! (into `format-spec/vectors/`, or the directory given as the first argument).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../format-spec/vectors"));
    std::fs::create_dir_all(&dir)?;
    for v in marill_std::model_file::vectors::all()? {
        std::fs::write(dir.join(format!("{}.bin", v.name)), &v.bytes)?;
        std::fs::write(dir.join(format!("{}.json", v.name)), marill_std::model_file::vectors::expectation_json(&v)?)?;
        println!("{:<32} {:>6} bytes  {:?}", v.name, v.bytes.len(), v.expect);
    }
    Ok(())
}
