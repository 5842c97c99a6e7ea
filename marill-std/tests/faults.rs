//! Faults against the session broker (`marill serve` / `marill helper` logic in threads):
//! garbage and impostor connections are refused without disturbing the server, a peer that
//! stalls past the timeout ends the session with a timeout error, a frame cut short ends it
//! as closed, a handshake naming another session is refused, and after each fault the
//! server serves the next session normally. Once over plaintext TCP (where raw hellos can be
//! forged) and once over TLS with pinned keys (where the impostors are keys).

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use marill_std::Setting;
use marill_std::model::random::{self, Variant};
use marill_std::model::secure::{CLIENT, SERVER};
use marill_std::model_file::{MappedModel, extract_public};
use marill_std::party::{self, HELPER, PartyConfig, Security};
use marill_std::transport::tcp::{Link, TcpConfig};
use marill_std::transport::tls::{Identity, Tls};

fn cfg(timeout: Duration) -> PartyConfig {
    with_security(timeout, Security::InsecurePlaintext)
}

fn with_security(timeout: Duration, security: Security) -> PartyConfig {
    PartyConfig {
        setting: Setting::Rep3,
        tcp: TcpConfig { connect_timeout: timeout, io_timeout: timeout },
        max_seq: 64,
        security,
        link: None,
        max_sessions: 1,
        dealer_ahead: None,
        offline_ahead: marill_std::transport::OFFLINE_AHEAD,
        ot_batch: marill_std::ot2pc::ot::MAX_BATCH,
    }
}

/// Random server and client files of a small 3PC model in a fresh directory.
fn model_files(tag: &str) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("marill-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let v = Variant { public_layers: 2, lora_rank: 0, head_merge: 1, mpc_friendly: false, private_embedding: false };
    let server_bytes = random::model(v, 4, 32, 64, 31).unwrap();
    let (sp, cp) = (dir.join("s.marill"), dir.join("c.marill"));
    std::fs::write(&sp, &server_bytes).unwrap();
    std::fs::write(&cp, extract_public(&server_bytes).unwrap()).unwrap();
    (dir, sp, cp)
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
    let (dir, sp, cp) = model_files("faults");
    let timeout = Duration::from_secs(2);
    let c = cfg(timeout);

    let sl = TcpListener::bind("127.0.0.1:0").unwrap();
    let hl = TcpListener::bind("127.0.0.1:0").unwrap();
    let (saddr, haddr) = (sl.local_addr().unwrap(), hl.local_addr().unwrap());
    let server_log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (sp2, cp2, c2, c3, log2) = (sp.clone(), cp.clone(), c.clone(), c.clone(), server_log.clone());
    // Sessions the server sees: the stalled client's, a truncated frame's and a wrong session
    // id's, and a good one, in the order their hellos arrive.
    let server = std::thread::spawn(move || {
        let m = MappedModel::open(&sp2).unwrap();
        party::serve(sl, &m, &c2, Some(4), |l| log2.lock().unwrap().push(l.to_string())).unwrap();
    });
    let helper = std::thread::spawn(move || {
        let m = MappedModel::open(&cp2).unwrap();
        party::helper(hl, saddr, &m, &c3, Some(4), |_| {}).unwrap();
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

    // 3. A client whose handshake frame is cut short: header for 64 bytes, 10 bytes, gone.
    //    (Every message is preceded by the metering layer's 8-byte round stamp.)
    let frame = |payload: &[u8], claimed: u32| {
        let mut f = vec![8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        f.extend(claimed.to_le_bytes());
        f.push(1);
        f.extend_from_slice(payload);
        f
    };
    for addr in [saddr, haddr] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&hello(0, [3; 16])).unwrap();
        s.write_all(&frame(&[0; 10], 64)).unwrap();
    }
    // 4. A client whose handshake names another session than its hello: every field right
    //    but the session id (this version, 3PC, the model's fixed-point bits, party 0).
    let frac = marill_std::model::check::arch_of(&MappedModel::open(&cp).unwrap().file().unwrap()).unwrap().frac_bits;
    let mut hs = [0u8; 64];
    for (i, v) in [party::SESSION_VERSION, 2, frac, 0].into_iter().enumerate() {
        hs[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    hs[48..].copy_from_slice(&[0xee; 16]);
    let wrong_session: Vec<TcpStream> = [saddr, haddr]
        .into_iter()
        .map(|addr| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&hello(0, [4; 16])).unwrap();
            s.write_all(&frame(&hs, 64)).unwrap();
            s
        })
        .collect();

    // 5. A real client afterwards is served normally (the broker waits for the stalled
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
    drop((s1, h1, g, imp, wrong_session));
    let log = server_log.lock().unwrap().clone();
    let ended: Vec<&String> = log.iter().filter(|l| l.starts_with("session ")).collect();
    assert_eq!(ended.len(), 4, "{log:?}");
    // The sessions in any order: connections are secured concurrently, so the server pairs
    // them in the order their hellos complete, not the order they connected. One is done,
    // the three faulty ones each end with their own error.
    assert_eq!(ended.iter().filter(|l| l.contains("done")).count(), 1, "{log:?}");
    assert!(ended.iter().any(|l| l.contains("closed")), "a truncated frame ends the session: {log:?}");
    assert!(ended.iter().any(|l| l.contains("another session id")), "{log:?}");
    assert!(ended.iter().any(|l| l.contains("timed out")), "the stalled session times out: {log:?}");
    assert!(log.iter().any(|l| l.contains("refused") && l.contains("bad hello")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("party id 1")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("timed out") || l.contains("Timeout") || l.contains("timeout")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("done")), "{log:?}");
    // The stalled session ended within its timeout (plus the good session's run).
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The same faults under TLS: a plaintext peer, a key nobody pinned, a trusted client key
/// claiming to be the helper, and a trusted client that stalls after its hello are all
/// refused or timed out; a real client is then served; a client that pins the wrong server
/// key never gets a session.
#[test]
fn tls_faults_are_refused_and_the_server_keeps_serving() {
    let (dir, sp, cp) = model_files("tls-faults");
    let [server_id, helper_id, client_id, stranger] = [(); 4].map(|()| Identity::generate().unwrap().0);
    let tls = |me: &Identity| {
        Tls::new(me.clone())
            .trust(CLIENT, client_id.public())
            .trust(SERVER, server_id.public())
            .trust(HELPER, helper_id.public())
    };
    let timeout = Duration::from_secs(2);
    let sc = with_security(timeout, Security::Tls(Arc::new(tls(&server_id))));
    let hc = with_security(timeout, Security::Tls(Arc::new(tls(&helper_id))));
    let sl = TcpListener::bind("127.0.0.1:0").unwrap();
    let hl = TcpListener::bind("127.0.0.1:0").unwrap();
    let (saddr, haddr) = (sl.local_addr().unwrap(), hl.local_addr().unwrap());
    let server_log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (sp2, cp2, log2) = (sp.clone(), cp.clone(), server_log.clone());
    let server = std::thread::spawn(move || {
        let m = MappedModel::open(&sp2).unwrap();
        party::serve(sl, &m, &sc, Some(2), |l| log2.lock().unwrap().push(l.to_string())).unwrap();
    });
    let helper = std::thread::spawn(move || {
        let m = MappedModel::open(&cp2).unwrap();
        party::helper(hl, saddr, &m, &hc, Some(2), |_| {}).unwrap();
    });
    let dial = |who: &Identity, addr, party: u32, session: [u8; 16]| -> Option<Link> {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let target = if addr == saddr { SERVER } else { HELPER };
        let mut l = Link::Tls(Box::new(tls(who).connect(s, target).ok()?));
        l.write_all(&hello(party, session)).ok()?;
        Some(l)
    };

    // 1. A plaintext hello; a key no one pinned; the client's key claiming party id 2.
    let mut g = TcpStream::connect(saddr).unwrap();
    g.write_all(&hello(0, [5; 16])).unwrap();
    let unpinned = dial(&stranger, saddr, 0, [6; 16]);
    let posing = dial(&client_id, saddr, 2, [9; 16]);
    // 2. A trusted client that says hello to both, then stalls.
    let t = Instant::now();
    let stalled = (dial(&client_id, saddr, 0, [7; 16]), dial(&client_id, haddr, 0, [7; 16]));
    assert!(stalled.0.is_some() && stalled.1.is_some());
    // 3. A client that pins another key as the server's is refused at its own end.
    let model = MappedModel::open(&cp).unwrap();
    let wrong = Tls::new(client_id.clone()).trust(SERVER, stranger.public()).trust(HELPER, helper_id.public());
    let wc = with_security(Duration::from_secs(5), Security::Tls(Arc::new(wrong)));
    assert!(party::client(saddr, Some(haddr), &model, &wc, &[1, 2], 2, &mut |_| {}).is_err());
    // 4. The real client is served.
    let good = with_security(Duration::from_secs(15), Security::Tls(Arc::new(tls(&client_id))));
    let mut got = Vec::new();
    let (tokens, _) = party::client(saddr, Some(haddr), &model, &good, &[1, 2, 3], 4, &mut |t| got.push(t)).unwrap();
    assert_eq!(tokens.len(), 4);
    assert_eq!(tokens, got);
    server.join().unwrap();
    helper.join().unwrap();
    drop((g, unpinned, posing, stalled));
    let log = server_log.lock().unwrap().clone();
    let has = |needle: &str| log.iter().any(|l| l.contains(needle));
    assert!(has("refused") && has("TLS handshake"), "{log:?}");
    assert!(has("not trusted as party 2"), "{log:?}");
    assert!(has("timed out") || has("Timeout") || has("timeout"), "{log:?}");
    assert!(has("done"), "{log:?}");
    assert!(t.elapsed() < Duration::from_secs(40), "{:?}", t.elapsed());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A peer that opens a connection and stalls in the TLS handshake holds only its own
/// handshake thread: a client that comes after it is served while it still stalls. The
/// check is not a timing: after the session, the staller's connection must still be open,
/// which it would not be had the server waited out its 30 s timeout first.
#[test]
fn a_stalled_tls_handshake_does_not_hold_the_server() {
    let (dir, sp, cp) = model_files("tls-stall");
    let [server_id, helper_id, client_id] = [(); 3].map(|()| Identity::generate().unwrap().0);
    let tls = |me: &Identity| {
        Arc::new(
            Tls::new(me.clone())
                .trust(CLIENT, client_id.public())
                .trust(SERVER, server_id.public())
                .trust(HELPER, helper_id.public()),
        )
    };
    let timeout = Duration::from_secs(30);
    let sc = with_security(timeout, Security::Tls(tls(&server_id)));
    let hc = with_security(timeout, Security::Tls(tls(&helper_id)));
    let sl = TcpListener::bind("127.0.0.1:0").unwrap();
    let hl = TcpListener::bind("127.0.0.1:0").unwrap();
    let (saddr, haddr) = (sl.local_addr().unwrap(), hl.local_addr().unwrap());
    // Stall both listeners' handshakes before anyone else connects.
    let stallers = [TcpStream::connect(saddr).unwrap(), TcpStream::connect(haddr).unwrap()];
    let (sp2, cp2) = (sp.clone(), cp.clone());
    let server = std::thread::spawn(move || {
        let m = MappedModel::open(&sp2).unwrap();
        party::serve(sl, &m, &sc, Some(1), |_| {}).unwrap();
    });
    let helper = std::thread::spawn(move || {
        let m = MappedModel::open(&cp2).unwrap();
        party::helper(hl, saddr, &m, &hc, Some(1), |_| {}).unwrap();
    });
    let model = MappedModel::open(&cp).unwrap();
    let good = with_security(Duration::from_secs(20), Security::Tls(tls(&client_id)));
    let (tokens, _) = party::client(saddr, Some(haddr), &model, &good, &[1, 2, 3], 3, &mut |_| {}).unwrap();
    assert_eq!(tokens.len(), 3);
    for mut s in stallers {
        // Still open: a read waits (no end of stream, no reset).
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut b = [0u8; 1];
        let r = std::io::Read::read(&mut s, &mut b);
        assert!(
            matches!(&r, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "{r:?}"
        );
        // Now give up: the server and helper finish once their handshake threads see it.
        drop(s);
    }
    server.join().unwrap();
    helper.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
