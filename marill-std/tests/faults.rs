//! Faults against the session broker (`marill serve` / `marill helper` logic in threads):
//! garbage and impostor connections are refused without disturbing the server, a peer that
//! stalls past the timeout ends the session with a timeout error, and after each fault the
//! server serves the next session normally.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use marill_std::Setting;
use marill_std::model::random::{self, Variant};
use marill_std::model_file::{MappedModel, extract_public};
use marill_std::party::{self, PartyConfig};
use marill_std::transport::tcp::TcpConfig;

fn cfg(timeout: Duration) -> PartyConfig {
    PartyConfig {
        setting: Setting::Rep3,
        tcp: TcpConfig { connect_timeout: timeout, io_timeout: timeout },
        max_seq: 64,
    }
}

/// A hello as the session protocol writes it (magic, party id, reserved, session).
fn hello(party: u32, session: [u8; 16]) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(b"MARILLP1");
    h[8..12].copy_from_slice(&party.to_le_bytes());
    h[16..].copy_from_slice(&session);
    h
}

#[test]
fn faults_are_refused_and_the_server_keeps_serving() {
    let dir = std::env::temp_dir().join(format!("marill-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let v = Variant { public_layers: 2, lora_rank: 0, head_merge: 1, mpc_friendly: false, private_embedding: false };
    let server_bytes = random::model(v, 4, 32, 64, 31).unwrap();
    let (sp, cp) = (dir.join("s.marill"), dir.join("c.marill"));
    std::fs::write(&sp, &server_bytes).unwrap();
    std::fs::write(&cp, extract_public(&server_bytes).unwrap()).unwrap();
    let timeout = Duration::from_secs(2);
    let c = cfg(timeout);

    let sl = TcpListener::bind("127.0.0.1:0").unwrap();
    let hl = TcpListener::bind("127.0.0.1:0").unwrap();
    let (saddr, haddr) = (sl.local_addr().unwrap(), hl.local_addr().unwrap());
    let server_log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (sp2, cp2, c2, c3, log2) = (sp.clone(), cp.clone(), c.clone(), c.clone(), server_log.clone());
    // Sessions the server sees: the stalled client's, then a good one.
    let server = std::thread::spawn(move || {
        let m = MappedModel::open(&sp2).unwrap();
        party::serve(sl, &m, &c2, Some(2), |l| log2.lock().unwrap().push(l.to_string())).unwrap();
    });
    let helper = std::thread::spawn(move || {
        let m = MappedModel::open(&cp2).unwrap();
        party::helper(hl, saddr, &m, &c3, Some(2), |_| {}).unwrap();
    });

    // 1. Garbage, and an impostor claiming to be party 1: refused, nothing paired.
    let mut g = TcpStream::connect(saddr).unwrap();
    g.write_all(b"GET / HTTP/1.1\r\n\r\n0123456789abcd").unwrap();
    let mut imp = TcpStream::connect(saddr).unwrap();
    imp.write_all(&hello(1, [9; 16])).unwrap();

    // 2. A client that says hello to both, then stalls: the session times out.
    let t = Instant::now();
    let mut s1 = TcpStream::connect(saddr).unwrap();
    s1.write_all(&hello(0, [7; 16])).unwrap();
    let mut h1 = TcpStream::connect(haddr).unwrap();
    h1.write_all(&hello(0, [7; 16])).unwrap();

    // 3. A real client afterwards is served normally (the broker waits for the stalled
    //    session to end first: sessions run one after another).
    //    Its own timeout must outlast the server's, which the stalled session holds for 2 s.
    let model = MappedModel::open(&cp).unwrap();
    let mut got = Vec::new();
    let patient = cfg(Duration::from_secs(15));
    let (tokens, _) = party::client(saddr, Some(haddr), &model, &patient, &[1, 2, 3], 4, &mut |t| got.push(t)).unwrap();
    assert_eq!(tokens.len(), 4);
    assert_eq!(tokens, got, "tokens are streamed as they arrive");
    server.join().unwrap();
    helper.join().unwrap();
    drop((s1, h1, g, imp));
    let log = server_log.lock().unwrap().clone();
    assert!(log.iter().any(|l| l.contains("refused") && l.contains("bad hello")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("party id 1")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("timed out") || l.contains("Timeout") || l.contains("timeout")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("done")), "{log:?}");
    // The stalled session ended within its timeout (plus the good session's run).
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    std::fs::remove_dir_all(&dir).unwrap();
}
