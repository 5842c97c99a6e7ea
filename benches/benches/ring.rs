//! Ring kernels: the matrix product per backend the CPU has (portable, AVX2, AVX-512) (throughput in multiply-adds: criterion's
//! "elements/s" reads as MAC/s, so 6.7 Gelem/s is 6.7 G MAC/s = 13.4 GOPS), and the
//! elementwise product per backend.

#![allow(clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use marill_benches::words;
use marill_core::ring::{self, MatDims};

fn matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_matmul");
    g.sample_size(10);
    for &(m, n, k) in &[(128, 768, 768), (1, 3200, 3200), (128, 64, 128)] {
        let d = MatDims::new(m, n, k);
        let (a, b) = (words(m * n, 1), words(n * k, 2));
        let mut out = vec![0u64; m * k];
        g.throughput(Throughput::Elements((m * n * k) as u64));
        for backend in ring::Backend::ALL.into_iter().filter(|b| b.available()) {
            let name = format!("{m}x{n}x{k}/{}", backend.name());
            g.bench_function(name, |bch| bch.iter(|| ring::matmul_on(backend, &a, &b, &mut out, d).unwrap()));
        }
    }
    g.finish();
}

fn elementwise(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_mul");
    let n = 1 << 20;
    let (a, b) = (words(n, 3), words(n, 4));
    let mut out = vec![0u64; n];
    g.throughput(Throughput::Elements(n as u64));
    for backend in ring::Backend::ALL.into_iter().filter(|b| b.available()) {
        assert!(ring::force(Some(backend)));
        g.bench_function(backend.name(), |bch| bch.iter(|| ring::mul(&a, &b, &mut out).unwrap()));
    }
    ring::force(None);
    g.finish();
}

/// One party's heavy local kernels on 1 and 2 threads (`marill_std::threads`), with the
/// best backend: the matrix products, an elementwise product and a PRG expansion of 2^20
/// words.
fn threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_threads");
    g.sample_size(10);
    for &(m, n, k) in &[(128, 768, 768), (1, 3200, 3200), (64, 3200, 8640)] {
        let d = MatDims::new(m, n, k);
        let (a, b) = (words(m * n, 1), words(n * k, 2));
        let mut out = vec![0u64; m * k];
        g.throughput(Throughput::Elements((m * n * k) as u64));
        for t in [1, 2] {
            marill_std::threads::set_threads(t);
            g.bench_function(format!("matmul {m}x{n}x{k}/{t}"), |bch| {
                bch.iter(|| ring::matmul(&a, &b, &mut out, d).unwrap())
            });
        }
    }
    let mut out = vec![0u64; 1 << 20];
    let (a, b) = (words(1 << 20, 3), words(1 << 20, 4));
    g.throughput(Throughput::Elements(1 << 20));
    for t in [1, 2] {
        marill_std::threads::set_threads(t);
        g.bench_function(format!("mul 2^20/{t}"), |bch| bch.iter(|| ring::mul(&a, &b, &mut out).unwrap()));
    }
    for t in [1, 2] {
        marill_std::threads::set_threads(t);
        let mut prg = marill_core::prg::Prg::new([1; 32], marill_core::prg::Stream::Deal);
        g.bench_function(format!("prg 2^20/{t}"), |bch| bch.iter(|| prg.fill(&mut out)));
    }
    marill_std::threads::set_threads(1);
    g.finish();
}

criterion_group!(benches, matmul, elementwise, threads);
criterion_main!(benches);
