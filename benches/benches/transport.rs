//! The TCP transport over loopback, plaintext against TLS 1.3 (pinned Ed25519 keys): a
//! 1 MiB message each way (throughput: both parties send, then both receive) and an 8-byte
//! ping-pong (a protocol round). One connection per bench, set up outside the timing.

#![allow(clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use marill_core::Channel;
use marill_std::transport::tcp::{Link, TcpChannel, TcpConfig, from_links};
use marill_std::transport::tls::{Identity, Tls};

const CFG: TcpConfig = TcpConfig { connect_timeout: Duration::from_secs(10), io_timeout: Duration::from_secs(10) };

/// Party 0's and party 1's channels over one loopback connection.
fn pair(tls: bool) -> (TcpChannel, TcpChannel) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (a, b) = (Identity::generate().unwrap().0, Identity::generate().unwrap().0);
    let (ta, tb) = (Tls::new(a.clone()).trust(1, b.public()), Tls::new(b).trust(0, a.public()));
    let acc = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let link = if tls { Link::Tls(Box::new(tb.accept(s, &[0]).unwrap().0)) } else { Link::Plain(s) };
        from_links(1, vec![Some(link), None], CFG).unwrap()
    });
    let s = TcpStream::connect(addr).unwrap();
    let link = if tls { Link::Tls(Box::new(ta.connect(s, 1).unwrap())) } else { Link::Plain(s) };
    (from_links(0, vec![None, Some(link)], CFG).unwrap(), acc.join().unwrap())
}

fn transport(c: &mut Criterion) {
    let mut g = c.benchmark_group("transport");
    for (name, tls) in [("plain", false), ("tls", true)] {
        let (mut c0, mut c1) = pair(tls);
        let msg = vec![0x5au8; 1 << 20];
        // The peer echoes in a thread of its own for the whole bench.
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let echo = std::thread::spawn(move || {
            let mut big = vec![0u8; 1 << 20];
            let mut small = [0u8; 8];
            let mut kind = [0u8; 1];
            while stop_rx.try_recv().is_err() {
                if c1.recv(0, &mut kind).is_err() {
                    return;
                }
                if kind[0] == 0 {
                    c1.send(0, &big).unwrap();
                    c1.recv(0, &mut big).unwrap();
                } else {
                    c1.recv(0, &mut small).unwrap();
                    c1.send(0, &small).unwrap();
                }
            }
        });
        g.throughput(Throughput::Bytes(2 << 20));
        g.bench_function(format!("{name}/1MiB_each_way"), |b| {
            let mut got = vec![0u8; 1 << 20];
            b.iter(|| {
                c0.send(1, &[0]).unwrap();
                c0.send(1, &msg).unwrap();
                c0.recv(1, &mut got).unwrap();
            })
        });
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{name}/8B_round"), |b| {
            let mut got = [0u8; 8];
            b.iter(|| {
                c0.send(1, &[1]).unwrap();
                c0.send(1, &[7u8; 8]).unwrap();
                c0.recv(1, &mut got).unwrap();
            })
        });
        stop_tx.send(()).unwrap();
        drop(c0);
        echo.join().unwrap();
    }
    g.finish();
}

criterion_group!(benches, transport);
criterion_main!(benches);
