//! Parties as processes over loopback TCP: `marill serve`, `marill helper` / `marill dealer`
//! and `marill client` (and the client and the server alone in plain 2PC). Generated tokens equal the plaintext model's (teacher-forced, the
//! same tie rule as `secure_model.rs`), the server serves sessions one after another, and a
//! client with other public weights is refused by a clear handshake error. The parties talk
//! TLS with keys from `marill keygen` (the 2PC-Dealer test runs `--insecure-plaintext`), and
//! killing a process mid-decode ends its peers' session with an error while the server goes
//! on serving.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Stdio};

mod common;
use common::{Keys, check_tokens, client_cmd, files, output, serve, start, start_logged, tokens};

#[test]
fn three_processes_serve_sessions_in_turn_and_refuse_a_mismatched_model() {
    let dir = std::env::temp_dir().join(format!("marill-proc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_bytes, sp, cp) = files(&dir, 21);
    let (_, _, other_cp) = files(&dir, 22);
    let (sp, cp, other) = (sp.to_str().unwrap(), cp.to_str().unwrap(), other_cp.to_str().unwrap());

    let keys = Keys::new(&dir);
    let (mut srv, saddr) = serve(sp, "rep3", "3", &keys.args("server"));
    let (mut hlp, haddr) = start(
        &["helper", "--model", cp, "--listen", "127.0.0.1:0", "--server", &saddr, "--sessions", "3", "--timeout", "20"],
        &keys.args("helper"),
    );

    for prompt in ["1 2 3 4", "40 9"] {
        let (ok, out, err) = output(client_cmd(Path::new(cp), &saddr, &haddr, "rep3", prompt, 6, &keys.args("client")));
        assert!(ok, "client failed: {err}");
        let got = tokens(&out);
        assert_eq!(got.len(), 6);
        let p: Vec<u32> = prompt.split_whitespace().map(|t| t.parse().unwrap()).collect();
        check_tokens(&server_bytes, &p, &got);
    }
    // Other public weights: every party refuses, naming the digest; the server goes on.
    let (ok, _, err) = output(client_cmd(Path::new(other), &saddr, &haddr, "rep3", "1 2", 2, &keys.args("client")));
    assert!(!ok);
    assert!(err.contains("digest"), "{err}");
    assert!(srv.0.wait().unwrap().success());
    assert!(hlp.0.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dealer_setting_as_processes() {
    let dir = std::env::temp_dir().join(format!("marill-proc-dealer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_bytes, sp, cp) = files(&dir, 23);
    let (sp, cp) = (sp.to_str().unwrap(), cp.to_str().unwrap());
    let plain = ["--insecure-plaintext".to_string()];
    // The compute parties read at most 1 MB of the dealer's corrections ahead.
    let small_ahead = [&plain[..], &["--offline-mb".to_string(), "1".to_string()]].concat();
    let (mut srv, saddr) = serve(sp, "dealer", "2", &small_ahead);
    let (mut dlr, daddr) = start(
        // A dealer bounded to 1 MB ahead of each compute party: the same tokens.
        &[
            "dealer",
            "--model",
            cp,
            "--listen",
            "127.0.0.1:0",
            "--server",
            &saddr,
            "--sessions",
            "2",
            "--timeout",
            "20",
            "--ahead-mb",
            "1",
        ],
        &plain,
    );
    let (ok, out, err) = output(client_cmd(Path::new(cp), &saddr, &daddr, "dealer", "5 6 7", 5, &small_ahead));
    assert!(ok, "{err}");
    check_tokens(&server_bytes, &[5, 6, 7], &tokens(&out));
    // A client that asks for the wrong setting is refused by the others' handshake.
    let (ok, _, err) = output(client_cmd(Path::new(cp), &saddr, &daddr, "rep3", "5", 1, &plain));
    assert!(!ok);
    assert!(err.contains("setting"), "{err}");
    assert!(srv.0.wait().unwrap().success());
    assert!(dlr.0.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every party on an emulated link (`--link`): the same tokens; a client without the
/// link is refused with an error, not left waiting.
#[test]
fn dealer_setting_over_an_emulated_link() {
    let dir = std::env::temp_dir().join(format!("marill-proc-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_bytes, sp, cp) = files(&dir, 26);
    let (sp, cp) = (sp.to_str().unwrap(), cp.to_str().unwrap());
    let linked = ["--insecure-plaintext".to_string(), "--link".to_string(), "2,1000".to_string()];
    let (mut srv, saddr) = serve(sp, "dealer", "2", &linked);
    let (mut dlr, daddr) = start(
        &["dealer", "--model", cp, "--listen", "127.0.0.1:0", "--server", &saddr, "--sessions", "2", "--timeout", "20"],
        &linked,
    );
    let (ok, out, err) = output(client_cmd(Path::new(cp), &saddr, &daddr, "dealer", "5 6 7", 3, &linked));
    assert!(ok, "{err}");
    check_tokens(&server_bytes, &[5, 6, 7], &tokens(&out));
    let plain = ["--insecure-plaintext".to_string()];
    let (ok, _, err) = output(client_cmd(Path::new(cp), &saddr, &daddr, "dealer", "5", 1, &plain));
    assert!(!ok);
    assert!(err.contains("malformed"), "{err}");
    assert!(srv.0.wait().unwrap().success());
    assert!(dlr.0.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plain_2pc_as_two_processes() {
    let dir = std::env::temp_dir().join(format!("marill-proc-ot2pc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_bytes, sp, cp) = files(&dir, 24);
    let (_, _, other_cp) = files(&dir, 25);
    let (sp, cp, other) = (sp.to_str().unwrap(), cp.to_str().unwrap(), other_cp.to_str().unwrap());
    let keys = Keys::new(&dir);
    let (mut srv, saddr) = serve(sp, "ot2pc", "3", &keys.args("server"));
    let (ok, out, err) = output(client_cmd(Path::new(cp), &saddr, "", "ot2pc", "5 6 7", 4, &keys.args("client")));
    assert!(ok, "{err}");
    check_tokens(&server_bytes, &[5, 6, 7], &tokens(&out));
    // Another setting, or other public weights: refused by the handshake; the server goes on.
    let (ok, _, err) = output(client_cmd(Path::new(other), &saddr, "", "ot2pc", "1 2", 2, &keys.args("client")));
    assert!(!ok);
    assert!(err.contains("digest"), "{err}");
    let (ok, _, err) = output(client_cmd(Path::new(cp), &saddr, "127.0.0.1:9", "ot2pc", "5", 1, &keys.args("client")));
    assert!(!ok);
    assert!(err.contains("no helper"), "{err}");
    let (ok, out, err) = output(client_cmd(Path::new(cp), &saddr, "", "ot2pc", "9 8", 3, &keys.args("client")));
    assert!(ok, "{err}");
    check_tokens(&server_bytes, &[9, 8], &tokens(&out));
    assert!(srv.0.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--max-sessions 8`: eight clients at once over TLS, in every setting, each with its
/// own prompt, each get the plaintext model's tokens for their own prompt (a session that
/// read another's shares or messages would decode garbage or fail); the sessions really ran
/// side by side (the server logs how many were running), and the server's peak memory stays
/// within eight single sessions' share of it.
#[test]
fn eight_concurrent_sessions_each_get_their_own_tokens() {
    let dir = std::env::temp_dir().join(format!("marill-proc-many-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_bytes, sp, cp) = files(&dir, 27);
    let keys = Keys::new(&dir);
    for (setting, third) in [("rep3", "helper"), ("dealer", "dealer"), ("ot2pc", "")] {
        let log = dir.join(format!("serve-{setting}.log"));
        let limits = ["--sessions", "10", "--max-sessions", "8", "--timeout", "30", "--threads", "1"].map(String::from);
        let (mut srv, saddr) = start_logged(
            &["serve", "--model", sp.to_str().unwrap(), "--listen", "127.0.0.1:0", "--setting", setting],
            &[&limits[..], &keys.args("server")].concat(),
            Some(&log),
        );
        let (hlp, haddr) = match third {
            "" => (None, String::new()),
            _ => {
                let (g, a) = start(
                    &[third, "--model", cp.to_str().unwrap(), "--listen", "127.0.0.1:0", "--server", &saddr],
                    &[&limits[..], &keys.args("helper")].concat(),
                );
                (Some(g), a)
            }
        };
        let prompt_of = |i: u32| -> Vec<u32> { (0..3 + i % 3).map(|j| (i * 7 + j * 5 + 1) % 64).collect() };
        let text = |p: &[u32]| p.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
        // One session alone first: the server's peak memory for one session.
        let (ok, out, err) =
            output(client_cmd(cp.as_path(), &saddr, &haddr, setting, &text(&prompt_of(99)), 6, &keys.args("client")));
        assert!(ok, "{err}");
        check_tokens(&server_bytes, &prompt_of(99), &tokens(&out));
        let hwm = |pid: u32| -> u64 {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map_or(0, |v| v.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap_or(0))
        };
        let one = hwm(srv.0.id());
        let clients: Vec<Child> = (0..8)
            .map(|i| {
                let mut cmd =
                    client_cmd(cp.as_path(), &saddr, &haddr, setting, &text(&prompt_of(i)), 6, &keys.args("client"));
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
            })
            .collect();
        for (i, c) in clients.into_iter().enumerate() {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "client {i}: {}", String::from_utf8_lossy(&out.stderr));
            let got = tokens(&String::from_utf8(out.stdout).unwrap());
            assert_eq!(got.len(), 6, "client {i}");
            check_tokens(&server_bytes, &prompt_of(i as u32), &got);
        }
        // Read while the server still runs (it ends after a tenth session), then one more
        // session after the crowd.
        let eight = hwm(srv.0.id());
        let (ok, out, err) =
            output(client_cmd(cp.as_path(), &saddr, &haddr, setting, &text(&prompt_of(98)), 6, &keys.args("client")));
        assert!(ok, "{err}");
        check_tokens(&server_bytes, &prompt_of(98), &tokens(&out));
        assert!(srv.0.wait().unwrap().success());
        if let Some(mut hlp) = hlp {
            assert!(hlp.0.wait().unwrap().success());
        }
        let log = std::fs::read_to_string(&log).unwrap();
        assert_eq!(log.matches(": done,").count(), 10, "{log}");
        let most = log
            .lines()
            .filter_map(|l| l.split("started, ").nth(1))
            .filter_map(|r| r.split(' ').next()?.parse::<usize>().ok())
            .max()
            .unwrap_or(0);
        assert!((2..=8).contains(&most), "sessions never overlapped (most running: {most}):\n{log}");
        eprintln!(
            "{setting}: at most {most} sessions running; server peak RSS {one} kB (one session), {eight} kB (then eight)"
        );
        // Eight sessions at once cost at most eight sessions' growth over the idle process.
        assert!(one > 0 && eight >= one && eight <= 8 * one, "peak RSS {eight} kB for 8 sessions vs {one} kB for one");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Read the client's stdout up to its first streamed token: the session is then decoding.
fn first_token(child: &mut Child) -> u32 {
    use std::io::Read;
    let out = child.stdout.as_mut().unwrap();
    let mut tok = Vec::new();
    let mut b = [0u8; 1];
    while out.read(&mut b).unwrap() == 1 && b[0] != b' ' {
        tok.push(b[0]);
    }
    String::from_utf8(tok).unwrap().trim().parse().unwrap()
}

#[test]
fn killing_a_process_mid_decode_ends_the_session_and_the_server_serves_on() {
    use std::time::{Duration, Instant};
    let dir = std::env::temp_dir().join(format!("marill-proc-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_bytes, sp, cp) = files(&dir, 26);
    let keys = Keys::new(&dir);
    let log = dir.join("serve.log");
    let (srv, saddr) = start_logged(
        &["serve", "--model", sp.to_str().unwrap(), "--listen", "127.0.0.1:0", "--setting", "rep3"],
        &[&["--sessions", "3", "--timeout", "20"].map(String::from)[..], &keys.args("server")].concat(),
        Some(&log),
    );
    let helper = |sessions: &str| {
        start(
            &["helper", "--model", cp.to_str().unwrap(), "--listen", "127.0.0.1:0", "--server", &saddr],
            &[&["--sessions", sessions, "--timeout", "20"].map(String::from)[..], &keys.args("helper")].concat(),
        )
    };
    let (mut hlp, haddr) = helper("2");
    let spawn_client = |haddr: &str| {
        client_cmd(&cp, &saddr, haddr, "rep3", "1 2", 30, &keys.args("client"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // 1. The client dies mid-decode: the server and the helper end that session with an error.
    let mut c = spawn_client(&haddr);
    first_token(&mut c);
    c.kill().unwrap();
    c.wait().unwrap();
    // 2. The next client is served in full.
    let (ok, out, err) = output(client_cmd(&cp, &saddr, &haddr, "rep3", "3 4 5", 5, &keys.args("client")));
    assert!(ok, "{err}");
    check_tokens(&server_bytes, &[3, 4, 5], &tokens(&out));
    assert!(hlp.0.wait().unwrap().success(), "the helper served both sessions");

    // 3. The helper dies mid-decode: the client fails promptly with an error.
    let (mut hlp, haddr) = helper("1");
    let mut c = spawn_client(&haddr);
    first_token(&mut c);
    let t = Instant::now();
    hlp.0.kill().unwrap();
    let status = c.wait().unwrap();
    assert!(!status.success(), "the client succeeded without its helper");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let mut err = String::new();
    std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.starts_with("marill: "), "{err}");

    // The server ended all three sessions (two with errors) and exited normally.
    let mut srv = srv;
    assert!(srv.0.wait().unwrap().success());
    let log = std::fs::read_to_string(&log).unwrap();
    let ended: Vec<&str> = log.lines().filter(|l| l.contains(": session ")).collect();
    assert_eq!(ended.len(), 3, "{log}");
    assert!(!ended[0].contains("done") && ended[1].contains("done") && !ended[2].contains("done"), "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A peer that trickles its TLS handshake or its plaintext hello a byte every 300 ms, each
/// well inside the 2 s read timeout, is cut off at the 2 s deadline for everything before a
/// session (it used to hold its handshake slot for as long as it kept trickling), and the
/// server then serves an honest client.
#[test]
fn a_trickling_peer_is_cut_off_at_the_deadline() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let dir = std::env::temp_dir().join(format!("marill-proc-trickle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_bytes, sp, cp) = files(&dir, 27);
    let (sp, cp) = (sp.to_str().unwrap(), cp.to_str().unwrap());
    let keys = Keys::new(&dir);
    // A TLS record header announcing a 512-byte ClientHello, then its body; the hello.
    let tls_start: Vec<u8> = [0x16, 0x03, 0x01, 0x02, 0x00].into_iter().chain(std::iter::repeat_n(1u8, 512)).collect();
    let hello_start: Vec<u8> = b"MARILLP1".iter().copied().chain(std::iter::repeat_n(0u8, 24)).collect();
    for (security, trickle) in
        [(keys.args("server"), tls_start), (vec!["--insecure-plaintext".to_string()], hello_start)]
    {
        let args = ["serve", "--model", sp, "--listen", "127.0.0.1:0", "--setting", "ot2pc", "--sessions", "1"];
        let (mut srv, saddr) = start(&[&args[..], &["--timeout", "2"]].concat(), &security);
        let t = Instant::now();
        let mut sock = std::net::TcpStream::connect(&saddr).unwrap();
        let mut reader = sock.try_clone().unwrap();
        let closed = std::thread::spawn(move || {
            let mut b = [0u8; 256];
            while let Ok(n) = reader.read(&mut b) {
                if n == 0 {
                    break;
                }
            }
            t.elapsed()
        });
        for b in &trickle {
            if closed.is_finished() || sock.write_all(&[*b]).is_err() || t.elapsed() > Duration::from_secs(10) {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let at = closed.join().unwrap();
        assert!(at >= Duration::from_millis(1900) && at < Duration::from_secs(4), "cut off after {at:?}");
        // The slot is free again: an honest client is served.
        let client_security = if security.len() == 1 { security.clone() } else { keys.args("client") };
        let (ok, out, err) = output(client_cmd(Path::new(cp), &saddr, "", "ot2pc", "5 6", 2, &client_security));
        assert!(ok, "{err}");
        check_tokens(&server_bytes, &[5, 6], &tokens(&out));
        assert!(srv.0.wait().unwrap().success());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One address may hold at most 8 connections in their handshake: a ninth silent
/// connection from it is closed at once, the eight at the deadline.
#[test]
fn one_address_holds_at_most_eight_handshakes() {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let dir = std::env::temp_dir().join(format!("marill-proc-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_, sp, _) = files(&dir, 28);
    let args = ["serve", "--model", sp.to_str().unwrap(), "--listen", "127.0.0.1:0", "--setting", "ot2pc"];
    let (_srv, saddr) = start(&[&args[..], &["--timeout", "3"]].concat(), &["--insecure-plaintext".to_string()]);
    let silent: Vec<std::net::TcpStream> = (0..8).map(|_| std::net::TcpStream::connect(&saddr).unwrap()).collect();
    // Let the acceptor take the eight before the ninth arrives.
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let mut ninth = std::net::TcpStream::connect(&saddr).unwrap();
    ninth.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let n = ninth.read(&mut [0u8; 8]).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(t.elapsed() < Duration::from_secs(1), "the ninth waited {:?}", t.elapsed());
    drop(silent);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A client file (public sections only) cannot serve: `marill serve` refuses at start,
/// naming the file's kind, instead of listening and failing each session.
#[test]
fn serve_refuses_a_client_file_at_start() {
    let dir = std::env::temp_dir().join(format!("marill-proc-clientfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_, _, cp) = files(&dir, 24);
    let mut cmd = std::process::Command::new(common::exe());
    cmd.args(["serve", "--model", cp.to_str().unwrap(), "--setting", "rep3", "--listen", "127.0.0.1:0"]);
    cmd.arg("--insecure-plaintext");
    let (ok, _, err) = output(cmd);
    assert!(!ok);
    assert!(err.contains("client file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--ot-batch` (plain 2PC): the parties exchange their caps after the handshake and use the
/// smaller. A client capped at 4096 OTs against an uncapped server gets the plaintext
/// model's tokens in more rounds (its ops run in windows of the cap, one after another), so the
/// server adopted the client's cap (had it not, the parties would disagree on every
/// extension's size); a cap out of range, or in another setting, is a usage error.
#[test]
fn plain_2pc_parties_agree_on_the_smaller_ot_batch() {
    let dir = std::env::temp_dir().join(format!("marill-proc-otbatch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_bytes, sp, cp) = files(&dir, 26);
    let (sp, cp) = (sp.to_str().unwrap(), cp.to_str().unwrap());
    let plain = vec!["--insecure-plaintext".to_string()];
    let (mut srv, saddr) = serve(sp, "ot2pc", "2", &plain);
    let rounds = |err: &str| -> u64 {
        let r = err.split(" bytes, ").nth(1).and_then(|t| t.split(' ').next()).and_then(|n| n.parse().ok());
        r.unwrap_or_else(|| panic!("no rounds in {err:?}"))
    };
    let (ok, out, err) = output(client_cmd(Path::new(cp), &saddr, "", "ot2pc", "5 6 7", 2, &plain));
    assert!(ok, "{err}");
    check_tokens(&server_bytes, &[5, 6, 7], &tokens(&out));
    let uncapped = rounds(&err);
    let capped_args = [plain.clone(), vec!["--ot-batch".into(), "4096".into()]].concat();
    let (ok, out, err) = output(client_cmd(Path::new(cp), &saddr, "", "ot2pc", "5 6 7", 2, &capped_args));
    assert!(ok, "{err}");
    check_tokens(&server_bytes, &[5, 6, 7], &tokens(&out));
    assert!(rounds(&err) > uncapped, "{} rounds capped, {uncapped} uncapped", rounds(&err));
    assert!(srv.0.wait().unwrap().success());
    for (setting, batch) in [("ot2pc", "10"), ("rep3", "4096")] {
        let args = [plain.clone(), vec!["--ot-batch".into(), batch.into()]].concat();
        let mut cmd = client_cmd(Path::new(cp), "127.0.0.1:9", "127.0.0.1:9", setting, "5", 1, &args);
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{setting} {batch}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--ot-batch"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
