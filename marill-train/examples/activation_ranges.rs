//! Ranges of a checkpoint's activations that secure inference must cover: per layer, the
//! largest row sum of squares entering each RMSNorm (log2) and the largest |activation|.
//! `cargo run -p marill-train --example activation_ranges -- FILE.gguf "prompt"`
#![allow(clippy::unwrap_used)]
use candle_core::{D, Device, Tensor};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let l = marill_train::load::load_gguf(std::path::Path::new(&args[1]), &Device::Cpu).unwrap();
    let tok = l.tokenizer.unwrap();
    let ids = tok.encode(&args[2]).unwrap();
    let x = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let f = l.model.forward(&x, true).unwrap();
    for (i, h) in f.hidden.iter().enumerate() {
        let ss =
            h.sqr().unwrap().sum(D::Minus1).unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        let mx = h.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        println!("after layer {i:>2}: max row Σx² = 2^{:.1}, max |h| {mx:.1}", ss.log2());
    }
}
