#![allow(clippy::unwrap_used, missing_docs)]
use candle_core::{Device, Tensor};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let l = marill_train::load::load_hf(std::path::Path::new(&args[1]), &Device::Cpu).unwrap();
    let tok = l.tokenizer.unwrap();
    let ids = tok.encode(&args[2]).unwrap();
    let x = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    for layer in 0..l.model.layers.len() {
        let p = l.model.attention_probs(&x, layer).unwrap().to_dtype(candle_core::DType::F64).unwrap();
        let v = p.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let t = ids.len();
        // lower triangle minimum (non-masked)
        let mut mn = f64::MAX;
        for (i, pv) in v.iter().enumerate() { let r = (i / t) % t; let c = i % t; if c <= r { mn = mn.min(*pv); } }
        println!("layer {layer}: min unmasked prob {mn:e} (ln {:.1})", mn.ln());
    }
}
