//! Parties as processes: `marill serve`, `marill helper` (3PC) / `marill dealer`
//! (2PC-Dealer) and `marill client`, over TCP. In plain 2PC (`--setting ot2pc`) the client
//! connects to the server alone and each connection is a session.
//!
//! **Connections.** The server listens; the helper (or dealer) listens. A client picks a
//! random session id and connects to both; the helper, on a client's connection, connects
//! to the server with the same session id; the server pairs a client's and a helper's
//! connections by session id and runs up to `max_sessions` sessions at once, each in a
//! thread of its own that owns all of its state (one after another by default). An acceptor thread
//! secures each accepted connection in a thread of its own (at most 64 at once), so a peer
//! that stalls its handshake holds only that thread. Every connection opens
//! with a 32-byte hello: magic `MARILLP1`, the sender's party id (u32), the sender's role
//! flags (u32, reserved 0) and the 16-byte session id.
//!
//! **Handshake.** Then every pair of parties swaps a 64-byte [`Handshake`] — protocol
//! version, setting, fixed-point bits, the public part's digest, the session id — and both
//! refuse a mismatch with an error that names the field, so a client with other public
//! weights, another setting or another fixed-point format is turned away by every party.
//! The client then announces its request (prompt length and tokens to generate), which
//! the others check against their sequence limit.
//!
//! **Failures.** Connect and every read or write time out (`TcpConfig`), and everything
//! before a session on an accepted connection (TLS, hello) has one deadline, the I/O timeout
//! (a trickling peer is cut off); at most 8 connections from one address are in their
//! handshake at once. A party that dies ends the others with an error; the server logs it
//! and serves the next session.
//!
//! **Transport security.** By default every connection is TLS 1.3 with mutual authentication
//! by pinned Ed25519 keys ([`crate::transport::tls`]): a party dials only a peer that proves
//! the key its configuration lists for that role, and accepts a connection only from a key
//! it trusts *as the party the hello names*. The hello and everything after it travel inside
//! TLS. [`Security::InsecurePlaintext`] (`--insecure-plaintext`) is plaintext TCP, where
//! seeds and shares travel in the clear: for loopback tests only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use marill_core::cost::Metered;
use marill_core::format::ModelFile;
use marill_core::proto::Protocol;
use marill_core::{Channel, PartyId};

use crate::model::Arch;
use crate::model::plain::PlainModel;
use crate::model::secure::{CLIENT, SERVER, SecureModel, generate_streaming};
use crate::model_file::MappedModel;
use crate::ot2pc::ot;
use crate::session::{PartyBody, entropy, run_party_with};
use crate::transport::link::{LinkModel, MaybeLinked};
use crate::transport::tcp::{self, Link, TcpChannel, TcpConfig};
use crate::transport::tls::Tls;
use crate::{Setting, StdError};

/// The helper's (or dealer's) party id.
pub const HELPER: PartyId = 2;
/// Version of the session protocol (hello, handshake, request).
pub const SESSION_VERSION: u32 = 2;
const HELLO_MAGIC: [u8; 8] = *b"MARILLP1";

/// What every pair of parties must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// [`SESSION_VERSION`].
    pub version: u32,
    /// 1 = 2PC-Dealer, 2 = 3PC, 3 = plain 2PC.
    pub setting: u32,
    /// Fixed-point fractional bits.
    pub frac_bits: u32,
    /// The sender's party id.
    pub party: u32,
    /// The public part's digest.
    pub digest: [u8; 32],
    /// The session id.
    pub session: [u8; 16],
}

impl Handshake {
    fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..4].copy_from_slice(&self.version.to_le_bytes());
        b[4..8].copy_from_slice(&self.setting.to_le_bytes());
        b[8..12].copy_from_slice(&self.frac_bits.to_le_bytes());
        b[12..16].copy_from_slice(&self.party.to_le_bytes());
        b[16..48].copy_from_slice(&self.digest);
        b[48..64].copy_from_slice(&self.session);
        b
    }
    fn decode(b: &[u8; 64]) -> Self {
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&b[16..48]);
        let mut session = [0u8; 16];
        session.copy_from_slice(&b[48..64]);
        Self { version: u(0), setting: u(4), frac_bits: u(8), party: u(12), digest, session }
    }
    /// The first field in which `peer` differs from what this party expects of party `from`.
    fn mismatch(&self, peer: &Handshake, from: PartyId) -> Option<String> {
        if peer.version != self.version {
            return Some(format!("session protocol version {} (this party speaks {})", peer.version, self.version));
        }
        if peer.party as usize != from {
            return Some(format!("party id {} where party {from} was expected", peer.party));
        }
        if peer.setting != self.setting {
            return Some(format!("setting {} (this party runs {})", peer.setting, self.setting));
        }
        if peer.frac_bits != self.frac_bits {
            return Some(format!("{} fractional bits (this party uses {})", peer.frac_bits, self.frac_bits));
        }
        if peer.session != self.session {
            return Some("another session id".into());
        }
        if peer.digest != self.digest {
            return Some("a different public-model digest: the parties hold different public weights".into());
        }
        None
    }
}

fn setting_code(s: Setting) -> u32 {
    match s {
        Setting::Dealer => 1,
        Setting::Rep3 => 2,
        Setting::Ot2pc => 3,
    }
}

/// Swap handshakes with every peer of a session of `parties` parties; a mismatch is an
/// error (every party detects it).
pub fn handshake<C: Channel>(ch: &mut C, mine: &Handshake, parties: usize) -> Result<(), StdError> {
    let me = ch.id();
    let enc = mine.encode();
    for peer in (0..parties).filter(|p| *p != me) {
        ch.send(peer, &enc)?;
    }
    ch.flush()?;
    for peer in (0..parties).filter(|p| *p != me) {
        let mut b = [0u8; 64];
        ch.recv(peer, &mut b)?;
        if let Some(why) = mine.mismatch(&Handshake::decode(&b), peer) {
            return Err(StdError::Handshake(format!("party {peer} has {why}")));
        }
    }
    Ok(())
}

fn hello(party: PartyId, session: &[u8; 16]) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&HELLO_MAGIC);
    h[8..12].copy_from_slice(&(party as u32).to_le_bytes());
    h[16..32].copy_from_slice(session);
    h
}

fn read_hello(s: &mut Link) -> Result<(PartyId, [u8; 16]), StdError> {
    let mut h = [0u8; 32];
    s.read_exact(&mut h).map_err(|e| StdError::io("read hello", e))?;
    if h[..8] != HELLO_MAGIC || h[12..16] != [0; 4] {
        return Err(StdError::Handshake("not a marill party (bad hello)".into()));
    }
    let party = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
    let mut session = [0u8; 16];
    session.copy_from_slice(&h[16..32]);
    Ok((party, session))
}

/// Reach party `peer` at `addr` (retrying until the connect timeout), secure the link as
/// configured, and send the hello.
fn connect(
    addr: SocketAddr,
    cfg: &PartyConfig,
    peer: PartyId,
    me: PartyId,
    session: &[u8; 16],
) -> Result<Link, StdError> {
    let deadline = Instant::now() + cfg.tcp.connect_timeout;
    let sock = loop {
        match TcpStream::connect_timeout(&addr, cfg.tcp.connect_timeout) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => return Err(StdError::io(format!("connect to {addr}"), e)),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let mut link = secure(sock, cfg, |tls, sock| tls.connect(sock, peer))?;
    link.write_all(&hello(me, session))
        .and_then(|()| link.flush())
        .map_err(|e| StdError::io(format!("hello to {addr}"), e))?;
    Ok(link)
}

/// Set `sock`'s timeouts, then wrap it as `cfg.security` says (`handshake` runs TLS).
fn secure(
    sock: TcpStream,
    cfg: &PartyConfig,
    handshake: impl FnOnce(&Tls, TcpStream) -> Result<crate::transport::tls::TlsLink, StdError>,
) -> Result<Link, StdError> {
    tcp::set_timeouts(&sock, cfg.tcp.io_timeout)?;
    match &cfg.security {
        Security::Tls(tls) => Ok(Link::Tls(Box::new(handshake(tls, sock)?))),
        Security::InsecurePlaintext => Ok(Link::Plain(sock)),
    }
}

/// A model file's public digest, fixed-point bits and architecture.
fn model_info(f: &ModelFile<'_>) -> Result<([u8; 32], Arch), StdError> {
    Ok((f.verify_digest()?, crate::model::Arch::of_file(f)?))
}

/// The client's request: prompt length and new tokens (public to every party).
fn send_request<C: Channel>(ch: &mut C, prompt_len: usize, new_tokens: usize, parties: usize) -> Result<(), StdError> {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&(prompt_len as u32).to_le_bytes());
    b[4..].copy_from_slice(&(new_tokens as u32).to_le_bytes());
    ch.send(SERVER, &b)?;
    if parties > HELPER {
        ch.send(HELPER, &b)?;
    }
    Ok(ch.flush()?)
}

fn recv_request<C: Channel>(ch: &mut C, max_seq: usize) -> Result<(usize, usize), StdError> {
    let mut b = [0u8; 8];
    ch.recv(CLIENT, &mut b)?;
    let p = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let n = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
    if p == 0 || n == 0 || p.saturating_add(n) > max_seq {
        return Err(StdError::RequestLength { prompt: p, new: n, max_seq });
    }
    Ok((p, n))
}

/// The client's side of a session: prompt, tokens to generate, and the token callback.
type ClientRequest<'a> = (&'a [u32], usize, &'a mut dyn FnMut(u32));

/// How a party protects its connections.
#[derive(Debug, Clone)]
pub enum Security {
    /// TLS 1.3 with mutual authentication by pinned keys (the default of the command line).
    Tls(Arc<Tls>),
    /// Plaintext TCP: seeds and shares in the clear. Only for loopback tests
    /// (`--insecure-plaintext`).
    InsecurePlaintext,
}

/// Options shared by the roles.
#[derive(Debug, Clone)]
pub struct PartyConfig {
    /// The setting.
    pub setting: Setting,
    /// Timeouts.
    pub tcp: TcpConfig,
    /// Longest prompt + generation a session may ask for.
    pub max_seq: usize,
    /// TLS or plaintext.
    pub security: Security,
    /// An emulated link on every session's messages ([`crate::transport::link`]); every
    /// party of a session must use the same one.
    pub link: Option<LinkModel>,
    /// Sessions a listening party (server, helper, dealer) runs at once, each in a thread of
    /// its own with its own channels, protocol state and shares (at least 1). A session
    /// ready beyond it waits, unread, until one ends; its peers' read timeouts bound the wait.
    pub max_sessions: usize,
    /// The 2PC-Dealer dealer's bound on bytes queued ahead of each compute party (`None`:
    /// unbounded, the default). The dealer is input-independent and runs ahead of the
    /// session; a bound caps its memory, but on a shared machine it costs time (see
    /// [`crate::transport::DEALER_AHEAD`]).
    pub dealer_ahead: Option<usize>,
    /// In 2PC-Dealer, how many bytes of the dealer's corrections each compute party reads
    /// ahead of need ([`TcpChannel::prefetch`]; 0: none): the offline phase's transfer and
    /// its memory bound per session ([`crate::transport::OFFLINE_AHEAD`] by default).
    pub offline_ahead: usize,
    /// In plain 2PC, the most OTs in flight at once (`64..=`[`ot::MAX_BATCH`];
    /// [`DEFAULT_OT_BATCH`] from the command line): longer ops run in windows of it, one after
    /// another, so it bounds an op's OT state at about 90 bytes per OT (`tests/ot_memory.rs`).
    /// The parties tell each other theirs after the handshake and the session uses the
    /// smaller, so each party's own cap holds.
    pub ot_batch: usize,
}

/// The OT batch of `marill serve` and `marill client` in plain 2PC when none is given: 2^22
/// OTs, at most about 370 MB of OT state per op and party (measured at about 90 bytes per
/// OT), where [`ot::MAX_BATCH`] would allow about 6 GB. An op of more OTs (a product of more
/// than 65 536 elements) takes two rounds more per window.
pub const DEFAULT_OT_BATCH: usize = 1 << 22;

fn run_session(
    ch: TcpChannel,
    cfg: &PartyConfig,
    file: &ModelFile<'_>,
    session: [u8; 16],
    client: Option<ClientRequest<'_>>,
) -> Result<(Vec<u32>, marill_core::cost::Cost), StdError> {
    let (digest, arch) = model_info(file)?;
    let me = ch.id();
    let mut ch = ch;
    if let (Setting::Dealer, HELPER, Some(bytes)) = (cfg.setting, me, cfg.dealer_ahead) {
        // The dealer only sends: bound how far it runs ahead of each compute party.
        ch.limit_ahead(bytes, cfg.tcp.io_timeout);
    }
    if cfg.setting == Setting::Dealer && me != HELPER && cfg.offline_ahead > 0 {
        // The dealer's corrections do not depend on anyone's input: take them off the
        // connection as they come (up to the bound), ahead of the client's input and of
        // this party's own work.
        ch.prefetch(HELPER, cfg.offline_ahead, cfg.tcp.io_timeout)?;
    }
    let mut ch = Metered::new(MaybeLinked::new(ch, cfg.link));
    let mine = Handshake {
        version: SESSION_VERSION,
        setting: setting_code(cfg.setting),
        frac_bits: arch.frac_bits,
        party: me as u32,
        digest,
        session,
    };
    handshake(&mut ch, &mine, cfg.setting.parties())?;
    let (prompt_len, new_tokens) = match &client {
        Some((prompt, n, _)) => {
            send_request(&mut ch, prompt.len(), *n, cfg.setting.parties())?;
            (prompt.len(), *n)
        }
        None => recv_request(&mut ch, cfg.max_seq)?,
    };
    let ot_batch = if cfg.setting == Setting::Ot2pc { agree_ot_batch(&mut ch, cfg.ot_batch)? } else { cfg.ot_batch };
    let body = Drive { file, arch, client, prompt_len, new_tokens, max_seq: cfg.max_seq };
    run_party_with(cfg.setting, ch, ot_batch, body)
}

/// Plain 2PC: send this party's OT batch cap, read the peer's, and take the smaller (a cap
/// outside `64..=`[`ot::MAX_BATCH`] is refused).
fn agree_ot_batch<C: Channel>(ch: &mut C, mine: usize) -> Result<usize, StdError> {
    let ok = |b: usize| (64..=ot::MAX_BATCH).contains(&b);
    if !ok(mine) {
        return Err(StdError::Usage(format!("OT batch {mine}: 64 to {}", ot::MAX_BATCH)));
    }
    let peer = 1 - ch.id();
    ch.send(peer, &(mine as u32).to_le_bytes())?;
    ch.flush()?;
    let mut b = [0u8; 4];
    ch.recv(peer, &mut b)?;
    let theirs = u32::from_le_bytes(b) as usize;
    if !ok(theirs) {
        return Err(StdError::Handshake(format!("party {peer} asks for an OT batch of {theirs}")));
    }
    Ok(mine.min(theirs))
}

/// A session's model work at one party, once the protocol is set up.
struct Drive<'a, 'f, 'c> {
    file: &'a ModelFile<'f>,
    arch: Arch,
    client: Option<ClientRequest<'c>>,
    prompt_len: usize,
    new_tokens: usize,
    max_seq: usize,
}

impl PartyBody for Drive<'_, '_, '_> {
    type Output = (Vec<u32>, marill_core::cost::Cost);
    type Error = StdError;
    fn run<P: Protocol>(self, p: &mut P) -> Result<Self::Output, StdError> {
        let Drive { file, arch, client, prompt_len, new_tokens, max_seq } = self;
        let server = (p.party() == SERVER).then_some(file);
        let mut model = SecureModel::setup(p, file, server, arch.clone())?;
        model.max_seq = max_seq;
        let tokens = match client {
            Some((prompt, _, on_token)) => {
                let mut public = PlainModel::load(file, arch.clone(), 0, arch.n_public, false)?;
                generate_streaming(p, &mut model, Some((&mut public, prompt)), prompt_len, new_tokens, on_token)?
            }
            None => generate_streaming(p, &mut model, None, prompt_len, new_tokens, |_| {})?,
        };
        // What the session's channel metered, set-up included.
        Ok((tokens, p.cost().unwrap_or_default()))
    }
}

/// `marill serve`: serve sessions on `listener`, up to `cfg.max_sessions` at once, with the
/// server file `model`. Runs until `sessions` sessions ended (forever with `None`); each
/// session's outcome is passed to `log`.
pub fn serve(
    listener: TcpListener,
    model: &MappedModel,
    cfg: &PartyConfig,
    sessions: Option<usize>,
    log: impl FnMut(&str) + Send,
) -> Result<(), StdError> {
    let file = model.file()?;
    // Refused at start, not at the first session: a client file (public sections only)
    // cannot serve, and a bad architecture is the file's fault, not a peer's.
    if !file.has_private() {
        return Err(StdError::Model(
            "this is a client file (public sections only): the server needs the provider's file with its private \
             weights"
                .into(),
        ));
    }
    model_info(&file)?;
    let log = Mutex::new(log);
    accepting(&listener, cfg, &[CLIENT, HELPER], |next| {
        Slots::run(cfg, &log, |slots| serve_accepted(next, &file, cfg, sessions, slots))
    })
}

fn serve_accepted<'scope, 'env, L: FnMut(&str) + Send>(
    next: &mut Next<'_>,
    file: &'env ModelFile<'env>,
    cfg: &'env PartyConfig,
    sessions: Option<usize>,
    slots: &mut Slots<'scope, 'env, L>,
) -> Result<(), StdError> {
    let mut pending: Vec<(PartyId, [u8; 16], Link, Instant)> = Vec::new();
    while sessions.is_none_or(|n| slots.started < n) {
        if slots.wait_for_room() {
            // Connections that arrived while every slot was busy waited for the server, not
            // the other way round: their connect timeout starts now.
            for entry in &mut pending {
                entry.3 = Instant::now();
            }
        }
        // Half-open sessions older than the connect timeout are dropped, on a timer too.
        pending.retain(|(_, _, _, t)| t.elapsed() < cfg.tcp.connect_timeout);
        let Some((s, party, session)) = next(&mut |m| slots.log(m))? else {
            continue;
        };
        if cfg.setting == Setting::Ot2pc {
            // Plain 2PC: the client alone is the session.
            if party != CLIENT {
                slots.log("refused a helper: this server runs plain 2PC");
                continue;
            }
            slots.start(move || {
                tcp::from_links(SERVER, vec![Some(s), None], cfg.tcp)
                    .and_then(|ch| run_session(ch, cfg, file, session, None))
            });
            continue;
        }
        if pending.len() >= MAX_PENDING {
            pending.remove(0);
        }
        let other = pending.iter().position(|(p, sid, _, _)| *sid == session && *p != party);
        let Some(i) = other else {
            pending.push((party, session, s, Instant::now()));
            continue;
        };
        let (op, _, os, _) = pending.swap_remove(i);
        let mut streams: Vec<Option<Link>> = vec![None, None, None];
        streams[party] = Some(s);
        streams[op] = Some(os);
        slots.start(move || {
            tcp::from_links(SERVER, streams, cfg.tcp).and_then(|ch| run_session(ch, cfg, file, session, None))
        });
    }
    Ok(())
}

type Outcome = Result<(Vec<u32>, marill_core::cost::Cost), StdError>;

/// The sessions a listening party runs: each in a scoped thread, at most
/// `cfg.max_sessions` at once. Every session owns its links, channel, protocol state and
/// shares; the threads share only the read-only model file and the log.
struct Slots<'scope, 'env, L> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    log: &'env Mutex<L>,
    running: Arc<std::sync::atomic::AtomicUsize>,
    done: std::sync::mpsc::Receiver<()>,
    done_tx: std::sync::mpsc::Sender<()>,
    max: usize,
    /// Sessions started so far (their numbers in the log are 1, 2, …).
    started: usize,
}

impl<'scope, 'env, L: FnMut(&str) + Send> Slots<'scope, 'env, L> {
    /// Runs `body` with fresh slots; returns when `body` has and every session it started
    /// has ended.
    fn run<R>(cfg: &'env PartyConfig, log: &'env Mutex<L>, body: impl FnOnce(&mut Slots<'_, 'env, L>) -> R) -> R
    where
        L: 'env,
    {
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        std::thread::scope(|scope| {
            let (done_tx, done) = std::sync::mpsc::channel();
            let mut slots = Slots { scope, log, running, done, done_tx, max: cfg.max_sessions.max(1), started: 0 };
            body(&mut slots)
        })
    }

    fn log(&self, m: &str) {
        (self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner))(m);
    }

    /// Blocks while every slot is taken (waking each `IDLE_TICK`, and as soon as a session
    /// ends); whether it had to wait.
    fn wait_for_room(&self) -> bool {
        use std::sync::atomic::Ordering;
        // Sessions that ended while there was room left a note each: drop them, so that the
        // channel does not grow with every session of a long-running server.
        while self.done.try_recv().is_ok() {}
        let mut waited = false;
        while self.running.load(Ordering::Acquire) >= self.max {
            waited = true;
            let _ = self.done.recv_timeout(IDLE_TICK);
        }
        waited
    }

    /// Runs one session in a thread of its own and logs how it ended.
    fn start(&mut self, session: impl FnOnce() -> Outcome + Send + 'env) {
        use std::sync::atomic::Ordering;
        self.started += 1;
        let (n, log, running, done) = (self.started, self.log, Arc::clone(&self.running), self.done_tx.clone());
        let now = running.fetch_add(1, Ordering::AcqRel) + 1;
        if self.max > 1 {
            self.log(&format!("session {n}: started, {now} running"));
        }
        let spawned =
            std::thread::Builder::new().name(format!("marill-session-{n}")).spawn_scoped(self.scope, move || {
                let outcome = session();
                report(&mut |m| (log.lock().unwrap_or_else(std::sync::PoisonError::into_inner))(m), n, outcome);
                running.fetch_sub(1, Ordering::AcqRel);
                let _ = done.send(());
            });
        if let Err(e) = spawned {
            // The session's links were moved into the closure and are closed with it: its
            // peers see the connection end.
            self.running.fetch_sub(1, Ordering::AcqRel);
            self.log(&format!("session {n}: could not start a thread: {e}"));
        }
    }
}

/// Half-open sessions the server keeps waiting for their second connection.
const MAX_PENDING: usize = 64;

/// A secured connection: its link, the party id its hello names, and the session id.
type Accepted = (Link, PartyId, [u8; 16]);

/// The next secured connection (`None` after logging a refusal to the given log).
type Next<'a> = dyn FnMut(&mut dyn FnMut(&str)) -> Result<Option<Accepted>, StdError> + 'a;

/// Handshakes that may run at once; a connection beyond them is refused.
const MAX_HANDSHAKES: usize = 64;
/// Handshakes that may run at once from one IP address (a client, a helper and a few
/// retries; a flood from one host cannot take every slot), or two per session slot where
/// `--max-sessions` is larger (a helper opens one connection per concurrent session).
const MAX_HANDSHAKES_PER_ADDR: usize = 8;
/// How often the serving loop wakes without a connection (to drop stale half-open sessions).
const IDLE_TICK: Duration = Duration::from_secs(1);

/// What the acceptor hands the serving loop.
enum Arrival {
    /// A connection secured and greeted.
    Party(Accepted),
    /// A connection refused, and why (for the log).
    Refused(String),
    /// The listener failed.
    Failed(std::io::Error),
}

/// Run `body` while an acceptor thread takes connections on `listener` and secures each in
/// a thread of its own (TLS handshake and hello, each read bounded by the I/O timeout), so a
/// peer that stalls holds only its own thread, never the sessions of others. `body` gets
/// the next secured connection from its argument (`None` after logging a refusal).
fn accepting<R>(
    listener: &TcpListener,
    cfg: &PartyConfig,
    allowed: &[PartyId],
    body: impl FnOnce(&mut Next<'_>) -> Result<R, StdError>,
) -> Result<R, StdError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    // Polled, so that the acceptor notices when `body` is done.
    listener.set_nonblocking(true).map_err(|e| StdError::io("listen", e))?;
    let stop = AtomicBool::new(false);
    let in_flight = AtomicUsize::new(0);
    let per_addr = std::sync::Mutex::new(std::collections::HashMap::<std::net::IpAddr, usize>::new());
    let per_addr_cap = MAX_HANDSHAKES_PER_ADDR.max(2 * cfg.max_sessions).min(MAX_HANDSHAKES);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<Arrival>();
        let (stop, in_flight, per_addr) = (&stop, &in_flight, &per_addr);
        scope.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let (sock, peer) = match listener.accept() {
                    Ok(c) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(e) => {
                        let _ = tx.send(Arrival::Failed(e));
                        return;
                    }
                };
                if in_flight.load(Ordering::Acquire) >= MAX_HANDSHAKES {
                    let why = format!("refused a connection from {peer}: {MAX_HANDSHAKES} handshakes in flight");
                    let _ = tx.send(Arrival::Refused(why));
                    continue;
                }
                let ip = peer.ip();
                let admitted = per_addr.lock().is_ok_and(|mut m| {
                    let n = m.entry(ip).or_insert(0);
                    *n += 1;
                    *n <= per_addr_cap
                });
                let release = move || {
                    if let Ok(mut m) = per_addr.lock()
                        && let Some(n) = m.get_mut(&ip)
                    {
                        *n -= 1;
                        if *n == 0 {
                            m.remove(&ip);
                        }
                    }
                };
                if !admitted {
                    release();
                    let why =
                        format!("refused a connection from {peer}: {per_addr_cap} handshakes in flight from {ip}");
                    let _ = tx.send(Arrival::Refused(why));
                    continue;
                }
                in_flight.fetch_add(1, Ordering::AcqRel);
                let tx = tx.clone();
                scope.spawn(move || {
                    let arrival = match greet(sock, cfg, allowed) {
                        Ok(a) => Arrival::Party(a),
                        Err(why) => Arrival::Refused(format!("refused a connection from {peer}: {why}")),
                    };
                    release();
                    in_flight.fetch_sub(1, Ordering::AcqRel);
                    // The serving loop may be gone (its sessions done): then this one is dropped.
                    let _ = tx.send(arrival);
                });
            }
        });
        // Wakes every IDLE_TICK without an arrival (`None`), so callers can expire state.
        let mut next = |log: &mut dyn FnMut(&str)| match rx.recv_timeout(IDLE_TICK) {
            Ok(Arrival::Party(a)) => Ok(Some(a)),
            Ok(Arrival::Refused(why)) => {
                log(&why);
                Ok(None)
            }
            Ok(Arrival::Failed(e)) => Err(StdError::io("accept", e)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(StdError::Handshake("the acceptor stopped".into()))
            }
        };
        let out = body(&mut next);
        stop.store(true, Ordering::Relaxed);
        out
    })
}

/// Secure an accepted connection and read its hello, all within one deadline (the I/O
/// timeout, from accept to the hello's last byte); an error (the reason, for the log) for a
/// failed TLS handshake, a bad hello, a party id outside `allowed`, a key not trusted as the
/// party the hello names, or the deadline passing. Each read has its own timeout too, but a
/// peer that trickles a byte just inside it would otherwise hold the connection (and its
/// handshake slot) for ever: a watchdog shuts the socket down at the deadline, which ends any
/// read in progress.
fn greet(s: TcpStream, cfg: &PartyConfig, allowed: &[PartyId]) -> Result<Accepted, String> {
    use std::sync::{Condvar, Mutex};
    // Accepted sockets inherit the listener's non-blocking mode on some systems.
    s.set_nonblocking(false).map_err(|e| e.to_string())?;
    let watched = s.try_clone().map_err(|e| e.to_string())?;
    // (greeting finished, deadline fired), decided under one lock so exactly one wins.
    let state = Arc::new((Mutex::new((false, false)), Condvar::new()));
    let deadline = Instant::now() + cfg.tcp.io_timeout;
    let watchdog = {
        let state = Arc::clone(&state);
        std::thread::spawn(move || {
            let (lock, cv) = &*state;
            let Ok(mut g) = lock.lock() else { return };
            while !g.0 {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    g.1 = true;
                    let _ = watched.shutdown(std::net::Shutdown::Both);
                    return;
                }
                g = match cv.wait_timeout(g, left) {
                    Ok((g, _)) => g,
                    Err(_) => return,
                };
            }
        })
    };
    let out = greet_within(s, cfg, allowed);
    let fired = {
        let (lock, cv) = &*state;
        let mut g = lock.lock().map_err(|_| "greeting state poisoned".to_string())?;
        g.0 = true;
        cv.notify_all();
        g.1
    };
    let _ = watchdog.join();
    if fired {
        return Err(format!("no hello within {} s of connecting", cfg.tcp.io_timeout.as_secs_f64()));
    }
    out
}

fn greet_within(s: TcpStream, cfg: &PartyConfig, allowed: &[PartyId]) -> Result<Accepted, String> {
    let mut key = None;
    let mut link = secure(s, cfg, |tls, sock| {
        let (link, k) = tls.accept(sock, allowed)?;
        key = Some(k);
        Ok(link)
    })
    .map_err(|e| e.to_string())?;
    let (p, sid) = read_hello(&mut link).map_err(|e| e.to_string())?;
    if !allowed.contains(&p) {
        return Err(format!("party id {p}"));
    }
    match (&cfg.security, key) {
        (Security::Tls(t), Some(k)) if !t.trusts(p, &k) => Err(format!("its key is not trusted as party {p}")),
        _ => Ok((link, p, sid)),
    }
}

/// Log how session `n` ended.
fn report(log: &mut dyn FnMut(&str), n: usize, outcome: Outcome) {
    // The process's live heap after the session (where `marill` installed the metering
    // allocator): a leak shows as a rising floor in the log.
    let heap = crate::alloc_meter::live_total().map_or_else(String::new, |b| format!("; live heap {b} bytes"));
    match outcome {
        Ok((_, cost)) => {
            log(&format!("session {n}: done, {} bytes sent, {} rounds{heap}", cost.bytes_sent, cost.rounds))
        }
        Err(e) => log(&format!("session {n}: {e}{heap}")),
    }
}

/// `marill helper` / `marill dealer`: for each client that connects to `listener`, join
/// the session at `server` and play party 2; up to `cfg.max_sessions` sessions at once.
pub fn helper(
    listener: TcpListener,
    server: SocketAddr,
    model: &MappedModel,
    cfg: &PartyConfig,
    sessions: Option<usize>,
    log: impl FnMut(&str) + Send,
) -> Result<(), StdError> {
    let file = model.file()?;
    let log = Mutex::new(log);
    let file = &file;
    accepting(&listener, cfg, &[CLIENT], |next| {
        Slots::run(cfg, &log, |slots| {
            while sessions.is_none_or(|n| slots.started < n) {
                slots.wait_for_room();
                let Some((c, _, session)) = next(&mut |m| slots.log(m))? else {
                    continue;
                };
                slots.start(move || {
                    let s = connect(server, cfg, SERVER, HELPER, &session)?;
                    let ch = tcp::from_links(HELPER, vec![Some(c), Some(s), None], cfg.tcp)?;
                    run_session(ch, cfg, file, session, None)
                });
            }
            Ok(())
        })
    })
}

/// `marill client`: one session; `on_token` sees each token as it arrives. `helper` is the
/// helper's or dealer's address (`None` in plain 2PC).
pub fn client(
    server: SocketAddr,
    helper: Option<SocketAddr>,
    model: &MappedModel,
    cfg: &PartyConfig,
    prompt: &[u32],
    new_tokens: usize,
    on_token: &mut dyn FnMut(u32),
) -> Result<(Vec<u32>, marill_core::cost::Cost), StdError> {
    let file = model.file()?;
    match (cfg.setting, helper) {
        (Setting::Ot2pc, Some(_)) => return Err(StdError::Handshake("plain 2PC has no helper".into())),
        (Setting::Dealer | Setting::Rep3, None) => {
            return Err(StdError::Handshake("this setting needs the helper's or dealer's address".into()));
        }
        _ => {}
    }
    let mut session = [0u8; 16];
    session.copy_from_slice(&entropy()?[..16]);
    let s = connect(server, cfg, SERVER, CLIENT, &session)?;
    let links = match helper {
        None => vec![None, Some(s)],
        Some(helper) => vec![None, Some(s), Some(connect(helper, cfg, HELPER, CLIENT, &session)?)],
    };
    let ch = tcp::from_links(CLIENT, links, cfg.tcp)?;
    run_session(ch, cfg, &file, session, Some((prompt, new_tokens, on_token)))
}
