//! Every harness op (the protocol ops and the non-linear library) in every setting, all parties in-process: criterion's view of what
//! `cost` reports (each iteration is a whole session: threads, seed set-up, a warm-up run
//! and a measured run; use the `cost` binary for op-only figures, bytes and rounds).

#![allow(clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use marill_benches::{Case, Op, Shape};
use marill_core::MatDims;
use marill_std::Setting;

fn ops(c: &mut Criterion) {
    let mut g = c.benchmark_group("proto");
    g.sample_size(10);
    for setting in Setting::ALL {
        for op in Op::ALL {
            let shape = if op.is_rowwise() {
                Shape::Mat(MatDims::new(4, 32, 128))
            } else if op.is_matrix() && setting == Setting::Ot2pc {
                // HE products take seconds at 128×768×768: a smaller product keeps the
                // bench's 10 samples short (the cost harness measures the large one).
                Shape::Mat(MatDims::new(32, 256, 256))
            } else if op.is_matrix() {
                Shape::Mat(MatDims::new(128, 768, 768))
            } else {
                Shape::Elems(10_000)
            };
            let case = Case::new(op, shape, 16).unwrap();
            g.bench_function(format!("{}/{}/{}", setting.name(), op.name(), shape.text()), |b| {
                b.iter(|| case.measure(setting, 1).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, ops);
criterion_main!(benches);
