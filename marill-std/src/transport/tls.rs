//! Authenticated, encrypted links between parties: TLS 1.3 with mutual authentication by
//! pinned Ed25519 keys.
//!
//! * **Identities.** Each party holds an Ed25519 key ([`Identity`]: `marill keygen`, or any
//!   PKCS#8 Ed25519 key such as `openssl genpkey -algorithm ed25519`). Its public half, 32
//!   bytes written as 64 hex digits ([`PublicKey`]), is what the other parties pin.
//! * **No certificate authorities.** Both ends present raw public keys (RFC 7250) and each
//!   accepts exactly the keys its configuration ([`Tls::trust`]) lists for the party it
//!   expects: the connecting side checks the key of the party it dialled; the accepting side
//!   accepts any key it trusts and then binds it to the party id the peer claims in its first
//!   message ([`Tls::trusts`]), so a client's key cannot act as the helper.
//! * **Protocol.** TLS 1.3 only (AES-GCM or ChaCha20-Poly1305 from `ring`), no session
//!   resumption, no tickets, no SNI: every connection does a full handshake with both
//!   signatures checked.
//! * **Concurrency.** A link is used by two threads, the channel's reader and its writer
//!   thread; [`super::split`] says how they share the TLS state.
//!
//! # Example: two parties over TLS on loopback
//!
//! ```
//! use std::net::{TcpListener, TcpStream};
//!
//! use marill_core::Channel;
//! use marill_std::transport::tcp::{Link, TcpConfig, from_links};
//! use marill_std::transport::tls::{Identity, Tls};
//!
//! let (a, _pem) = Identity::generate().unwrap(); // `_pem`: what `marill keygen` writes
//! let (b, _) = Identity::generate().unwrap();
//! // Each pins the other's public key as the other's party id.
//! let ta = Tls::new(a.clone()).trust(1, b.public());
//! let tb = Tls::new(b).trust(0, a.public());
//! let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//! let addr = listener.local_addr().unwrap();
//! let party1 = std::thread::spawn(move || {
//!     let (link, key) = tb.accept(listener.accept().unwrap().0, &[0]).unwrap();
//!     assert!(tb.trusts(0, &key)); // bind the key to the party id the peer claims
//!     let links = vec![Some(Link::Tls(Box::new(link))), None];
//!     let mut ch = from_links(1, links, TcpConfig::default()).unwrap();
//!     let mut m = [0u8; 5];
//!     ch.recv(0, &mut m).unwrap();
//!     m
//! });
//! let link = ta.connect(TcpStream::connect(addr).unwrap(), 1).unwrap();
//! let mut ch = from_links(0, vec![None, Some(Link::Tls(Box::new(link)))], TcpConfig::default()).unwrap();
//! ch.send(1, b"hello").unwrap();
//! assert_eq!(&party1.join().unwrap(), b"hello");
//! ```

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use marill_core::PartyId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{AlwaysResolvesClientRawPublicKeys, Resumption};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature_with_raw_key};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, Connection, DigitallySignedStruct, DistinguishedName,
    ServerConfig, ServerConnection, SignatureScheme,
};

use super::split::{Records, SplitReader, SplitWriter, split};
use crate::StdError;

/// DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410); the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// A party's Ed25519 public key: what its peers pin.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The key of an Ed25519 `SubjectPublicKeyInfo`, or `None` for any other encoding.
    pub fn from_spki(spki: &[u8]) -> Option<Self> {
        let key = spki.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
        Some(Self(key.try_into().ok()?))
    }
    /// The key as a `SubjectPublicKeyInfo`.
    pub fn spki(&self) -> Vec<u8> {
        [&ED25519_SPKI_PREFIX[..], &self.0].concat()
    }
    /// Parse 64 hex digits, or read them from a file (a `.pub` file from `marill keygen`).
    pub fn parse_or_read(s: &str) -> Result<Self, StdError> {
        if let Some(k) = Self::from_hex(s.trim()) {
            return Ok(k);
        }
        let (_, bytes) = read_small(Path::new(s))
            .map_err(|e| StdError::io(format!("public key {s:?}: neither 64 hex digits nor a readable file"), e))?;
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| Self::from_hex(text.trim()))
            .ok_or_else(|| StdError::Handshake(format!("public key file {s}: expected 64 hex digits")))
    }
    fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(k))
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::model_file::hex(&self.0))
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A party's own key (the private half stays inside `rustls`'s signer).
#[derive(Clone)]
pub struct Identity {
    key: Arc<CertifiedKey>,
    public: PublicKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.public)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(what: &str, e: rustls::Error) -> StdError {
    StdError::Handshake(format!("{what}: {e}"))
}

impl Identity {
    /// A fresh key from the operating system's generator, and its PKCS#8 encoding in PEM
    /// (what [`Identity::from_pem_or_der`] reads back).
    pub fn generate() -> Result<(Self, String), StdError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| StdError::Handshake("key generation failed".into()))?;
        let id = Self::from_pkcs8(doc.as_ref())?;
        Ok((id, pem("PRIVATE KEY", doc.as_ref())))
    }
    /// A key from PKCS#8, PEM (`-----BEGIN PRIVATE KEY-----`) or DER.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, StdError> {
        if bytes.starts_with(b"-----BEGIN") {
            let der = PrivateKeyDer::from_pem_slice(bytes)
                .map_err(|e| StdError::Handshake(format!("private key: not a PEM private key ({e})")))?;
            return Self::from_der(der);
        }
        Self::from_pkcs8(bytes)
    }
    /// Read [`Identity::from_pem_or_der`] from a file. On Unix the file must not be open to
    /// the group or others (mode `0600` or stricter, as `marill keygen` writes it), as ssh
    /// demands of its keys: a key others can read is no longer this party's alone.
    pub fn read(path: &Path) -> Result<Self, StdError> {
        let (file, bytes) = read_small(path).map_err(|e| StdError::io(format!("read key {}", path.display()), e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                file.metadata().map_err(|e| StdError::io(format!("key {}", path.display()), e))?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(StdError::Handshake(format!(
                    "key {}: open to the group or others (mode {:o}); `chmod 600` it",
                    path.display(),
                    mode & 0o777
                )));
            }
        }
        drop(file);
        Self::from_pem_or_der(&bytes).map_err(|e| StdError::Handshake(format!("key {}: {e}", path.display())))
    }
    fn from_pkcs8(der: &[u8]) -> Result<Self, StdError> {
        Self::from_der(PrivateKeyDer::Pkcs8(der.to_vec().into()))
    }
    fn from_der(der: PrivateKeyDer<'_>) -> Result<Self, StdError> {
        let signer = provider()
            .key_provider
            .load_private_key(der.clone_key())
            .map_err(|e| tls_err("private key not usable", e))?;
        let public = signer
            .public_key()
            .and_then(|spki| PublicKey::from_spki(spki.as_ref()))
            .ok_or_else(|| StdError::Handshake("private key: only Ed25519 keys are supported".into()))?;
        let cert = CertificateDer::from(public.spki());
        Ok(Self { key: Arc::new(CertifiedKey::new(vec![cert], signer)), public })
    }
    /// The public half, for the peers to pin.
    pub fn public(&self) -> PublicKey {
        self.public
    }
}

/// The most a key file may hold: a PEM Ed25519 key is 119 bytes, a public key 65.
const MAX_KEY_FILE: u64 = 16 * 1024;

/// A key file's handle and contents, refusing one of more than [`MAX_KEY_FILE`] bytes (a
/// path such as `/dev/zero` must not read forever).
fn read_small(path: &Path) -> std::io::Result<(std::fs::File, Vec<u8>)> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    (&file).take(MAX_KEY_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "more than 16 KiB: not a key file"));
    }
    Ok((file, bytes))
}

/// PEM armour (RFC 7468) around `der`.
fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// One party's TLS configuration: its key and the keys it accepts for each peer.
#[derive(Debug, Clone)]
pub struct Tls {
    identity: Identity,
    trusted: Vec<(PartyId, PublicKey)>,
}

impl Tls {
    /// This party's key, trusting no one yet.
    pub fn new(identity: Identity) -> Self {
        Self { identity, trusted: Vec::new() }
    }
    /// Accept `key` as party `party` (call once per key; a party may have several).
    pub fn trust(mut self, party: PartyId, key: PublicKey) -> Self {
        self.trusted.push((party, key));
        self
    }
    /// Whether `key` is trusted as party `party`.
    pub fn trusts(&self, party: PartyId, key: &PublicKey) -> bool {
        self.trusted.iter().any(|(p, k)| *p == party && k == key)
    }
    /// Whether any key is trusted as party `party`.
    pub fn trusts_any(&self, party: PartyId) -> bool {
        self.trusted.iter().any(|(p, _)| *p == party)
    }
    /// This party's public key.
    pub fn public(&self) -> PublicKey {
        self.identity.public
    }
    fn keys_of(&self, parties: &[PartyId]) -> Vec<PublicKey> {
        self.trusted.iter().filter(|(p, _)| parties.contains(p)).map(|(_, k)| *k).collect()
    }

    /// The connecting side: a full TLS 1.3 handshake over `sock` that succeeds only if the
    /// peer proves it holds a key trusted as party `peer`. Set `sock`'s read and write
    /// timeouts first: they bound the handshake too.
    pub fn connect(&self, sock: TcpStream, peer: PartyId) -> Result<TlsLink, StdError> {
        let keys = self.keys_of(&[peer]);
        if keys.is_empty() {
            return Err(StdError::Handshake(format!("no trusted key for party {peer}")));
        }
        let mut cfg = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_err("TLS configuration", e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned::new(keys)))
            .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(self.identity.key.clone())));
        cfg.resumption = Resumption::disabled();
        cfg.enable_sni = false;
        let name = ServerName::try_from("marill.invalid").map_err(|_| StdError::Handshake("server name".into()))?;
        let conn = ClientConnection::new(Arc::new(cfg), name).map_err(|e| tls_err("TLS client", e))?;
        let (link, _) = TlsLink::handshake(Connection::Client(conn), sock)?;
        Ok(link)
    }

    /// The accepting side: a full TLS 1.3 handshake over `sock` that succeeds only if the
    /// peer proves it holds a key trusted as one of `parties`; returns the link and that key,
    /// which the caller binds to the party the peer then claims to be ([`Tls::trusts`]).
    /// Set `sock`'s timeouts first, as for [`Tls::connect`].
    pub fn accept(&self, sock: TcpStream, parties: &[PartyId]) -> Result<(TlsLink, PublicKey), StdError> {
        let keys = self.keys_of(parties);
        if keys.is_empty() {
            return Err(StdError::Handshake(format!("no trusted key for parties {parties:?}")));
        }
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_err("TLS configuration", e))?
            .with_client_cert_verifier(Arc::new(Pinned::new(keys)))
            .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(self.identity.key.clone())));
        cfg.send_tls13_tickets = 0;
        cfg.session_storage = Arc::new(NoServerSessionStorage {});
        let conn = ServerConnection::new(Arc::new(cfg)).map_err(|e| tls_err("TLS server", e))?;
        let (link, key) = TlsLink::handshake(Connection::Server(conn), sock)?;
        Ok((link, key))
    }
}

/// A verifier that accepts exactly the pinned raw public keys.
#[derive(Debug)]
struct Pinned {
    keys: Vec<PublicKey>,
    algs: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn new(keys: Vec<PublicKey>) -> Self {
        Self { keys, algs: provider().signature_verification_algorithms }
    }
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        match PublicKey::from_spki(end_entity.as_ref()) {
            Some(k) if intermediates.is_empty() && self.keys.contains(&k) => Ok(()),
            Some(_) => Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)),
            None => Err(rustls::Error::InvalidCertificate(CertificateError::BadEncoding)),
        }
    }
}

/// The methods both verifier traits share: TLS 1.3 signatures by the pinned key only.
macro_rules! pinned_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.2 is not offered".into()))
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature_with_raw_key(message, &SubjectPublicKeyInfoDer::from(cert.as_ref()), dss, &self.algs)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ED25519]
        }
        fn requires_raw_public_keys(&self) -> bool {
            true
        }
    };
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates).map(|()| ServerCertVerified::assertion())
    }
    pinned_signatures!();
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates).map(|()| ClientCertVerified::assertion())
    }
    pinned_signatures!();
}

/// A TLS connection after its handshake, split into the halves two threads use
/// ([`super::split`]).
pub struct TlsLink {
    pub(crate) reader: SplitReader<Connection, TcpStream>,
    pub(crate) writer: SplitWriter<Connection, TcpStream>,
    pub(crate) sock: TcpStream,
}

impl TlsLink {
    fn handshake(mut conn: Connection, mut sock: TcpStream) -> Result<(Self, PublicKey), StdError> {
        let fail = |e: io::Error| StdError::io("TLS handshake", e);
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).map_err(fail)?;
        }
        while conn.wants_write() {
            conn.write_tls(&mut sock).map_err(fail)?;
        }
        let key = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| PublicKey::from_spki(c.as_ref()))
            .ok_or_else(|| StdError::Handshake("TLS peer presented no key".into()))?;
        // Whole messages are encrypted at once (the writer drains every record right away).
        conn.set_buffer_limit(None);
        let clone = |s: &TcpStream| s.try_clone().map_err(|e| StdError::io("clone socket", e));
        let (reader, writer) = split(conn, clone(&sock)?, clone(&sock)?);
        Ok((Self { reader, writer, sock }, key))
    }
}

impl Read for TlsLink {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Write for TlsLink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl Records for Connection {
    fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader().read(buf)
    }
    fn receive(&mut self, raw: &mut &[u8]) -> io::Result<usize> {
        self.read_tls(raw)
    }
    fn process(&mut self) -> io::Result<()> {
        self.process_new_packets().map(|_| ()).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))
    }
    fn encrypt(&mut self, plain: &[u8]) -> io::Result<usize> {
        self.writer().write(plain)
    }
    fn wants_write(&self) -> bool {
        (**self).wants_write()
    }
    fn take_records(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        while (**self).wants_write() {
            self.write_tls(out)?;
        }
        Ok(())
    }
    fn close_notify(&mut self) {
        self.send_close_notify();
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use marill_core::{Channel, Error};

    use super::*;
    use crate::transport::tcp::{Link, TcpChannel, TcpConfig, from_links, set_timeouts};

    const CFG: TcpConfig = TcpConfig { connect_timeout: Duration::from_secs(5), io_timeout: Duration::from_secs(5) };

    fn identity() -> Identity {
        Identity::generate().unwrap().0
    }

    /// Party 0 dials party 1 through `relay` (which may tamper), each with its own TLS view;
    /// the two channels, or the errors.
    fn pair(
        dialer: Tls,
        acceptor: Tls,
        relay: impl FnOnce(TcpStream, TcpStream) + Send + 'static,
    ) -> (Result<TcpChannel, StdError>, Result<TcpChannel, StdError>) {
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let back = TcpListener::bind("127.0.0.1:0").unwrap();
        let (fa, ba) = (front.local_addr().unwrap(), back.local_addr().unwrap());
        std::thread::spawn(move || {
            let (inner, _) = front.accept().unwrap();
            let outer = TcpStream::connect(ba).unwrap();
            relay(inner, outer);
        });
        let acc = std::thread::spawn(move || {
            let (s, _) = back.accept().unwrap();
            set_timeouts(&s, CFG.io_timeout).unwrap();
            let (link, key) = acceptor.accept(s, &[0])?;
            assert!(acceptor.trusts(0, &key));
            from_links(1, vec![Some(Link::Tls(Box::new(link))), None], CFG)
        });
        let s = TcpStream::connect(fa).unwrap();
        set_timeouts(&s, CFG.io_timeout).unwrap();
        let dial = dialer.connect(s, 1).and_then(|l| from_links(0, vec![None, Some(Link::Tls(Box::new(l)))], CFG));
        (dial, acc.join().unwrap())
    }

    /// Copy bytes both ways; `flip` (if any) is the offset in the dialer → acceptor stream
    /// whose byte is inverted.
    fn relay(flip: Option<usize>) -> impl FnOnce(TcpStream, TcpStream) + Send + 'static {
        move |a: TcpStream, b: TcpStream| {
            let copy = |mut from: TcpStream, mut to: TcpStream, flip: Option<usize>| {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut off = 0;
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if let Some(f) = flip.filter(|f| (off..off + n).contains(f)) {
                            buf[f - off] ^= 0x20;
                        }
                        off += n;
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                })
            };
            copy(a.try_clone().unwrap(), b.try_clone().unwrap(), flip);
            copy(b, a, None);
        }
    }

    fn trusting_each_other() -> (Tls, Tls) {
        let (a, b) = (identity(), identity());
        (Tls::new(a.clone()).trust(1, b.public()), Tls::new(b).trust(0, a.public()))
    }

    #[test]
    fn both_sides_send_large_messages_at_once_and_small_ones_in_turn() {
        let (a, b) = trusting_each_other();
        let (c0, c1) = pair(a, b, relay(None));
        let (mut c0, mut c1) = (c0.unwrap(), c1.unwrap());
        let msg = |seed: u8, n: usize| -> Vec<u8> { (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect() };
        // 5 MiB each way, both sending before either receives: the writer threads must not
        // wait for the peer to read, and the shared TLS state must not deadlock.
        let t = std::thread::spawn(move || {
            c1.send(0, &msg(1, 5 << 20)).unwrap();
            let mut got = vec![0u8; 5 << 20];
            c1.recv(0, &mut got).unwrap();
            assert!(got == msg(0, 5 << 20));
            for i in 0..200usize {
                let mut b = [0u8; 8];
                c1.recv(0, &mut b).unwrap();
                assert_eq!(u64::from_le_bytes(b), i as u64);
                c1.send(0, &(i as u64 + 1).to_le_bytes()).unwrap();
            }
            c1
        });
        c0.send(1, &msg(0, 5 << 20)).unwrap();
        let mut got = vec![0u8; 5 << 20];
        c0.recv(1, &mut got).unwrap();
        assert!(got == msg(1, 5 << 20));
        for i in 0..200usize {
            c0.send(1, &(i as u64).to_le_bytes()).unwrap();
            let mut b = [0u8; 8];
            c0.recv(1, &mut b).unwrap();
            assert_eq!(u64::from_le_bytes(b), i as u64 + 1);
        }
        // An empty message and a wrong expected length.
        c0.send(1, &[]).unwrap();
        c0.send(1, &[7; 3]).unwrap();
        let mut c1 = t.join().unwrap();
        c1.recv(0, &mut []).unwrap();
        assert_eq!(c1.recv(0, &mut [0; 4]), Err(Error::Malformed));
    }

    #[test]
    fn an_unpinned_key_is_refused_on_both_sides() {
        let (a, b) = trusting_each_other();
        let stranger = identity();
        // The dialer reaches a party whose key it does not pin as party 1.
        let wrong_pin = Tls::new(a.identity.clone()).trust(1, stranger.public());
        let (d, acc) = pair(wrong_pin, b.clone(), relay(None));
        assert!(d.is_err() && acc.is_err());
        // The acceptor sees a key it does not trust.
        let (d, acc) = pair(Tls::new(stranger).trust(1, b.public()), b, relay(None));
        assert!(d.is_err() || acc.is_err());
        assert!(acc.is_err(), "the acceptor trusted an unknown key");
    }

    #[test]
    fn a_plaintext_peer_is_refused_within_the_timeout() {
        let (_, b) = trusting_each_other();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            // A plaintext hello where a ClientHello belongs, then silence.
            s.write_all(b"MARILLP1\0\0\0\0\0\0\0\0").unwrap();
            std::thread::sleep(Duration::from_secs(1));
        });
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let t0 = Instant::now();
        assert!(b.accept(s, &[0]).is_err());
        assert!(t0.elapsed() < Duration::from_secs(4));
        t.join().unwrap();
    }

    #[test]
    fn a_tampered_record_is_an_error_not_data() {
        let (a, b) = trusting_each_other();
        // Well past the handshake (a few hundred bytes), inside the application data.
        let (c0, c1) = pair(a, b, relay(Some(40_000)));
        let (mut c0, mut c1) = (c0.unwrap(), c1.unwrap());
        let msg = vec![0x55u8; 100_000];
        c0.send(1, &msg).unwrap();
        let mut got = vec![0u8; msg.len()];
        assert_eq!(c1.recv(0, &mut got), Err(Error::Malformed));
    }

    #[test]
    fn keys_round_trip_through_pem_hex_and_files_and_other_algorithms_are_refused() {
        let (id, pem) = Identity::generate().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = Identity::from_pem_or_der(pem.as_bytes()).unwrap();
        assert_eq!(back.public(), id.public());
        let hex = id.public().to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(PublicKey::parse_or_read(&hex).unwrap(), id.public());
        assert!(PublicKey::parse_or_read(&hex[1..]).is_err());
        assert_eq!(PublicKey::from_spki(&id.public().spki()), Some(id.public()));
        // An ECDSA P-256 key parses as PKCS#8 but is not an Ed25519 key.
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let ec = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let e = Identity::from_pem_or_der(ec.as_ref()).unwrap_err().to_string();
        assert!(e.contains("Ed25519"), "{e}");
        assert!(Identity::from_pem_or_der(b"not a key").is_err());
        // Key files: open to others refused (Unix), too large refused, 0600 read.
        let dir = std::env::temp_dir().join(format!("marill-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("party.key");
        std::fs::write(&path, &pem).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = Identity::read(&path).err().unwrap().to_string();
            assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(Identity::read(&path).unwrap().public(), id.public());
        let big = dir.join("big.key");
        std::fs::write(&big, vec![b'A'; MAX_KEY_FILE as usize + 1]).unwrap();
        #[cfg(unix)]
        std::fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        assert!(Identity::read(&big).err().unwrap().to_string().contains("16 KiB"));
        let public = dir.join("party.key.pub");
        std::fs::write(&public, format!("{}\n", id.public())).unwrap();
        assert_eq!(PublicKey::parse_or_read(public.to_str().unwrap()).unwrap(), id.public());
        assert!(PublicKey::parse_or_read(big.to_str().unwrap()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(Identity::from_pem_or_der(b"-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n").is_err());
    }
}
