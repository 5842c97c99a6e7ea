//! Statistical check that 3PC products are masked with fresh zero shares, and the
//! behaviour on bad input: local errors before any byte is sent, a desynchronised or
//! vanished peer is an error, never a hang.

#![allow(clippy::unwrap_used)]

use marill_std::StdError;
use std::time::{Duration, Instant};

use marill_core::cost::Metered;
use marill_core::proto::Protocol;
use marill_core::proto::dealer::Dealer2pc;
use marill_core::proto::setup::DealerSeeds;
use marill_core::{Channel, Error};
use marill_std::Setting;
use marill_std::run::{Program, run_mem, run_tcp};
use marill_std::transport::mem;

/// Party 0's view of a 3PC multiplication of x = y = 0, input by party 2.
struct MulView(usize);

impl Program for MulView {
    type Output = (Vec<u64>, Vec<u64>, Vec<u64>);
    fn run<P: Protocol>(&self, p: &mut P) -> Result<Self::Output, StdError> {
        let n = self.0;
        let zeros = vec![0u64; n];
        let mut x = vec![0; 2 * n];
        let mut y = vec![0; 2 * n];
        let mine = (p.party() == 2).then_some(&zeros[..]);
        p.input(2, mine, &mut x)?;
        p.input(2, mine, &mut y)?;
        let mut z = vec![0; 2 * n];
        p.mul(&x, &y, &mut z)?;
        Ok((x, y, z))
    }
}

/// χ² statistic of byte frequencies (255 degrees of freedom: mean 255, sd 22.6).
fn chi2(bytes: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for b in bytes {
        counts[*b as usize] += 1;
    }
    let e = bytes.len() as f64 / 256.0;
    counts.iter().map(|c| (*c as f64 - e).powi(2) / e).sum()
}

#[test]
fn what_a_3pc_party_receives_in_mul_is_uniform() {
    let n = 40_000;
    let r = run_mem(Setting::Rep3, &MulView(n)).unwrap();
    let (x, y, z) = &r[0].0;
    // Party 0 holds (x0, x1); with x = 0 it also knows x2 = -x0 - x1. Without the zero
    // share, the z1 it receives would equal x1·y1 + x1·y2 + x2·y1 exactly.
    let mut residual = Vec::with_capacity(8 * n);
    for e in 0..n {
        let (x0, x1, y0, y1) = (x[e], x[n + e], y[e], y[n + e]);
        let (x2, y2) = (x0.wrapping_add(x1).wrapping_neg(), y0.wrapping_add(y1).wrapping_neg());
        let predicted = x1.wrapping_mul(y1).wrapping_add(x1.wrapping_mul(y2)).wrapping_add(x2.wrapping_mul(y1));
        residual.extend_from_slice(&z[n + e].wrapping_sub(predicted).to_le_bytes());
    }
    let stat = chi2(&residual);
    // 6 standard deviations above the mean: a false alarm has probability < 1e-8.
    assert!(stat < 255.0 + 6.0 * 22.6, "received product shares are not uniform: chi2 = {stat}");
    // And the plain received bytes too.
    let raw: Vec<u8> = z[n..].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert!(chi2(&raw) < 255.0 + 6.0 * 22.6);
}

fn lone_dealer_party(scratch: &mut [u64]) -> Dealer2pc<Metered<mem::MemChannel>, &mut [u64]> {
    let ch = mem::mesh(3).swap_remove(0);
    Dealer2pc::new(Metered::new(ch), scratch, DealerSeeds::Compute { dealer: [1; 32], peer: [2; 32] }).unwrap()
}

#[test]
fn local_errors_are_caught_before_any_byte_is_sent() {
    let mut small = [0u64; 10];
    let mut p = lone_dealer_party(&mut small);
    let x = vec![1u64; 100];
    let mut out = vec![0u64; 100];
    assert_eq!(p.mul(&x, &x, &mut out), Err(Error::BufferTooSmall { required: 700 }));
    assert_eq!(p.mul(&x, &x[..99], &mut out), Err(Error::ShapeMismatch));
    assert_eq!(p.trunc(&x, 0, &mut out), Err(Error::InvalidArgument));
    assert_eq!(p.trunc(&x, 63, &mut out), Err(Error::InvalidArgument));
    assert_eq!(p.reveal_to(2, &x, &mut out), Err(Error::InvalidArgument));
    assert_eq!(p.channel().cost().bytes_sent, 0);
    assert_eq!(p.channel().cost().messages, 0);
}

#[test]
fn nonlinear_buffer_errors_come_before_any_byte() {
    use marill_core::FixedPoint;
    use marill_core::nonlinear as nl;
    let mut big = vec![0u64; 1 << 16];
    let mut p = lone_dealer_party(&mut big);
    let fp = FixedPoint::default();
    let x = vec![1u64; 4 * 32];
    let mut out = vec![0u64; 4 * 32];
    let need = nl::softmax_scratch(4, 32, 1);
    let mut scratch = vec![0u64; need - 1];
    assert_eq!(
        nl::softmax(&mut p, &x, 4, 32, nl::Mask::All, &mut out, &mut scratch, fp),
        Err(Error::BufferTooSmall { required: need })
    );
    let mut scratch = vec![0u64; need];
    assert_eq!(nl::softmax(&mut p, &x, 4, 31, nl::Mask::All, &mut out, &mut scratch, fp), Err(Error::ShapeMismatch));
    assert_eq!(
        nl::softmax(&mut p, &x, 4, 32, nl::Mask::Causal(5), &mut out, &mut scratch, fp),
        Err(Error::ShapeMismatch)
    );
    let mut small = vec![0u64; nl::exp_scratch(128, 1) - 1];
    assert_eq!(
        nl::exp(&mut p, &x, &mut out, &mut small, fp),
        Err(Error::BufferTooSmall { required: nl::exp_scratch(128, 1) })
    );
    assert_eq!(nl::silu(&mut p, &x, &mut out[..5], &mut small, fp), Err(Error::ShapeMismatch));
    let mut s2 = vec![0u64; nl::normalised_scratch(128, 1, 0, 10)];
    assert_eq!(nl::reciprocal(&mut p, &x, &mut out, &mut s2, fp, 10, 0, 32), Err(Error::InvalidArgument));
    let (mut i, mut m) = (vec![0u64; 3], vec![0u64; 4]);
    let mut s3 = vec![0u64; nl::argmax_scratch(4, 32, 1)];
    assert_eq!(nl::argmax(&mut p, &x, 4, 32, &mut i, &mut m, &mut s3), Err(Error::ShapeMismatch));
    assert_eq!(p.channel().cost().bytes_sent, 0);
}

#[test]
fn a_message_of_the_wrong_length_is_malformed() {
    let mut m = mem::mesh(2);
    let mut b = m.pop().unwrap();
    let mut a = m.pop().unwrap();
    a.send(1, &[1, 2, 3]).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(b.recv(0, &mut buf), Err(Error::Malformed));
    drop(a);
    assert_eq!(b.recv(0, &mut buf), Err(Error::PeerClosed));
}

/// Party 1 stops before the multiplication; the others must fail, not hang.
struct Quitter;

impl Program for Quitter {
    type Output = ();
    fn run<P: Protocol>(&self, p: &mut P) -> Result<(), StdError> {
        if p.party() == 1 {
            return Err(Error::Protocol.into());
        }
        let x = vec![1u64; 1000 * P::PLANES];
        let mut o = vec![0u64; 1000 * P::PLANES];
        p.mul(&x, &x, &mut o)?;
        Ok(p.ltz(&x, &mut o)?)
    }
}

#[test]
fn a_vanished_peer_ends_the_others_with_an_error() {
    for s in Setting::ALL {
        let t = Instant::now();
        assert!(run_mem(s, &Quitter).is_err());
        assert!(run_tcp(s, &Quitter).is_err());
        assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
    }
}

/// The client's copy of a server weight (2PC-Dealer's `W − S`) is uniform even for an
/// all-zero weight: a missing mask would leave it all zero.
#[test]
fn the_clients_copy_of_a_server_weight_is_masked() {
    struct Setup;
    impl Program for Setup {
        type Output = Vec<u64>;
        fn run<P: Protocol>(&self, p: &mut P) -> Result<Vec<u64>, StdError> {
            let w = vec![0u64; 200 * 100];
            let mine = (p.party() == 1).then_some(&w[..]);
            let spec = p.share_weight(1, mine, 200, 100)?;
            let mut m = vec![0; spec.words];
            p.fill_weight(1, mine, spec, &mut m)?;
            Ok(m)
        }
    }
    let r = run_mem(Setting::Dealer, &Setup).unwrap();
    let bytes: Vec<u8> = r[0].0.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert!(chi2(&bytes) < 255.0 + 6.0 * 22.6, "client's weight copy is not uniform");
}
