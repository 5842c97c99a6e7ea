//! Time the parts of a training step (forward, backward, optimiser) on the embedded default.
#![allow(clippy::unwrap_used)]
use candle_core::Device;
use candle_nn::Optimizer;
use marill_train::{Rng, data, embedded, model::Model, train};
use std::time::Instant;
fn main() {
    let dev = Device::Cpu;
    let m = Model::init(&embedded::config(), 1, &dev).unwrap();
    let mut rng = Rng::new(2);
    let world = data::World::new(1);
    let vars: Vec<_> = m.vars().into_iter().map(|v| v.1).collect();
    let mut opt = candle_nn::AdamW::new_lr(vars, 1e-3).unwrap();
    for b in [16usize, 32, 64] {
        let (mut tf, mut tb, mut to) = (0.0, 0.0, 0.0);
        for _ in 0..10 {
            let batch = data::pretrain_batch(&mut rng, &world, b, &dev).unwrap();
            let t = Instant::now();
            let l = train::loss(&m, &batch, train::Objective::Nll).unwrap();
            tf += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let g = l.backward().unwrap();
            tb += t.elapsed().as_secs_f64();
            let t = Instant::now();
            opt.step(&g).unwrap();
            to += t.elapsed().as_secs_f64();
        }
        println!(
            "batch {b}: forward {:.1} ms backward {:.1} ms optimiser {:.1} ms",
            tf * 100.0,
            tb * 100.0,
            to * 100.0
        );
    }
}
