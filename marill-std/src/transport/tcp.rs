//! TCP transport between parties as processes (or threads), over loopback or a LAN.
//!
//! * **Mesh.** Party `i` accepts connections from parties `j > i` and connects to parties
//!   `j < i`, retrying until the connect timeout. The connecting side opens with a hello
//!   (`MARILL\0\x01`, its id, the id it expects to reach); anything else is refused.
//! * **Framing.** A message is a sequence of frames `[len: u32 LE][last: u8][len bytes]`
//!   with `len ≤ 1 MiB`. The receiver knows the length it expects and refuses a frame that
//!   would run past it, or a last frame that ends short of it: a peer's length field never
//!   sizes an allocation.
//! * **No deadlock.** Sends go to a writer thread per peer through a queue, so a send never
//!   waits for the peer to read: two parties may both send a large message and then both
//!   receive. The queue holds only this party's own messages ([`super::split`]).
//! * **Timeouts.** Reads and writes time out (`io_timeout`), and connecting gives up after
//!   `connect_timeout`: a peer that dies or stalls ends this party with an error.
//!   `TCP_NODELAY` is set: protocol messages are latency-bound.

use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use marill_core::{Channel, Error, PartyId};

use super::DEFAULT_TIMEOUT;
use super::split::{Out, Sender, channel, pump};
use super::tls::TlsLink;
use crate::StdError;

/// Largest frame payload.
pub const MAX_FRAME: usize = 1 << 20;
const HELLO_MAGIC: [u8; 8] = *b"MARILL\0\x01";

/// Timeouts of a TCP mesh.
#[derive(Debug, Clone, Copy)]
pub struct TcpConfig {
    /// How long to keep retrying to reach a peer that is not listening yet.
    pub connect_timeout: Duration,
    /// How long one read or write may block.
    pub io_timeout: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(30), io_timeout: DEFAULT_TIMEOUT }
    }
}

struct Peer {
    reader: Box<dyn Read + Send>,
    /// The thread that reads this peer ahead ([`TcpChannel::prefetch`]), if one does.
    prefetcher: Option<JoinHandle<()>>,
    queue: Option<Sender<Out>>,
    /// Bytes of messages queued and not yet written by the writer thread.
    queued: Arc<AtomicUsize>,
    writer: Option<JoinHandle<()>>,
    stream: TcpStream,
}

/// A connection to one peer: plaintext TCP (loopback tests, protected networks) or TLS
/// ([`super::tls`]). Reads and writes on a link before it joins a channel go straight to
/// the connection (a session's hello).
pub enum Link {
    /// Plaintext TCP.
    Plain(TcpStream),
    /// TLS 1.3 with pinned keys.
    Tls(Box<TlsLink>),
}

impl Link {
    fn stream(&self) -> &TcpStream {
        match self {
            Link::Plain(s) => s,
            Link::Tls(t) => &t.sock,
        }
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Link::Plain(s) => s.read(buf),
            Link::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Link::Plain(s) => s.write(buf),
            Link::Tls(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Link::Plain(s) => s.flush(),
            Link::Tls(t) => t.flush(),
        }
    }
}

/// One party's end of a TCP mesh.
pub struct TcpChannel {
    id: PartyId,
    peers: Vec<Option<Peer>>,
    /// Most bytes queued for one peer's writer before a send waits
    /// ([`TcpChannel::limit_ahead`]), and how long it may wait.
    ahead: Option<(usize, Duration)>,
}

impl TcpChannel {
    /// Let a send wait (up to `timeout`) while more than `bytes` sent to that peer are still
    /// queued for its writer: for a party that only sends, so that it cannot queue a whole
    /// session ahead of its peers ([`super::DEALER_AHEAD`]). The socket's own buffer adds
    /// what the kernel holds.
    pub fn limit_ahead(&mut self, bytes: usize, timeout: Duration) {
        self.ahead = Some((bytes, timeout));
    }

    /// Read peer `from` ahead: a thread takes its bytes off the connection as they arrive
    /// and keeps up to about `limit` of them (in 64 KiB chunks; at least one chunk) until
    /// `recv` asks for them, so that a peer that only sends, the 2PC-Dealer dealer, gets
    /// its input-independent corrections across while this party computes or waits for
    /// its input: the transfer of the offline phase, with this bound on its memory. Without
    /// it TCP's flow control holds those bytes at the sender until this party reads them
    /// (the kernel buffers a few MB). Framing checks and timeouts are unchanged: `recv`
    /// waits at most `timeout` for the next bytes.
    pub fn prefetch(&mut self, from: PartyId, limit: usize, timeout: Duration) -> Result<(), StdError> {
        let p =
            self.peers.get_mut(from).and_then(Option::as_mut).ok_or_else(|| {
                StdError::io("read ahead", std::io::Error::new(ErrorKind::InvalidInput, "no such peer"))
            })?;
        if p.prefetcher.is_some() {
            return Ok(());
        }
        let mut inner = std::mem::replace(&mut p.reader, Box::new(std::io::empty()));
        let slots = (limit / PREFETCH_CHUNK).max(1);
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(slots);
        let thread = std::thread::Builder::new()
            .name(format!("marill-tcp-r{}<-{from}", self.id))
            .spawn(move || {
                let mut buf = vec![0u8; PREFETCH_CHUNK];
                loop {
                    let got = match inner.read(&mut buf) {
                        // End of stream: an empty chunk says so.
                        Ok(n) => Ok(buf[..n].to_vec()),
                        // Idle (the socket's read timeout): the reading side keeps its own
                        // deadline; the channel's drop shuts the socket, which ends this.
                        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => Err(e),
                    };
                    let last = !matches!(&got, Ok(v) if !v.is_empty());
                    if tx.send(got).is_err() || last {
                        return;
                    }
                }
            })
            .map_err(|e| StdError::io("spawn reader", e))?;
        p.reader = Box::new(Ahead { rx, chunk: Vec::new(), pos: 0, timeout, done: None });
        p.prefetcher = Some(thread);
        Ok(())
    }
}

/// Bytes a read-ahead thread takes off the connection at once.
const PREFETCH_CHUNK: usize = 1 << 16;

/// The reading end of [`TcpChannel::prefetch`]: the chunks its thread read, in order.
struct Ahead {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    timeout: Duration,
    /// Once the stream ended: how (end of stream, or the error's kind), for every later read.
    done: Option<ErrorKind>,
}

impl Read for Ahead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use std::sync::mpsc::RecvTimeoutError;
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.chunk.len() {
            match self.done {
                Some(ErrorKind::UnexpectedEof) => return Ok(0),
                Some(kind) => return Err(kind.into()),
                None => {}
            }
            match self.rx.recv_timeout(self.timeout) {
                Ok(Ok(v)) if v.is_empty() => self.done = Some(ErrorKind::UnexpectedEof),
                Ok(Ok(v)) => (self.chunk, self.pos) = (v, 0),
                Ok(Err(e)) => {
                    self.done = Some(e.kind());
                    return Err(e);
                }
                Err(RecvTimeoutError::Timeout) => return Err(ErrorKind::TimedOut.into()),
                Err(RecvTimeoutError::Disconnected) => self.done = Some(ErrorKind::UnexpectedEof),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Bind party `id`'s listening socket (needed if any party has a larger id).
pub fn listen(addr: SocketAddr) -> Result<TcpListener, StdError> {
    TcpListener::bind(addr).map_err(|e| StdError::io(format!("bind {addr}"), e))
}

/// Join the mesh as party `id`. `addrs[j]` is party `j`'s listening address; `listener`
/// is this party's own (from [`listen`]), required when `id < addrs.len() - 1`.
pub fn establish(
    id: PartyId,
    listener: Option<TcpListener>,
    addrs: &[SocketAddr],
    cfg: TcpConfig,
) -> Result<TcpChannel, StdError> {
    let n = addrs.len();
    if id >= n {
        return Err(StdError::Handshake(format!("party id {id} out of range for {n} parties")));
    }
    let mut streams: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    // Connect to lower ids.
    for (j, addr) in addrs.iter().enumerate().take(id) {
        let deadline = Instant::now() + cfg.connect_timeout;
        let stream = loop {
            match TcpStream::connect_timeout(addr, cfg.connect_timeout) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(StdError::io(format!("party {id}: connect to party {j} at {addr}"), e)),
            }
        };
        configure(&stream, cfg)?;
        let mut hello = [0u8; 16];
        hello[..8].copy_from_slice(&HELLO_MAGIC);
        hello[8..12].copy_from_slice(&(id as u32).to_le_bytes());
        hello[12..16].copy_from_slice(&(j as u32).to_le_bytes());
        (&stream).write_all(&hello).map_err(|e| StdError::io(format!("party {id}: hello to party {j}"), e))?;
        streams[j] = Some(stream);
    }
    // Accept higher ids.
    if id + 1 < n {
        let listener = listener.ok_or_else(|| StdError::Handshake(format!("party {id} needs a listener")))?;
        listener.set_nonblocking(true).map_err(|e| StdError::io("listener", e))?;
        let deadline = Instant::now() + cfg.connect_timeout;
        let mut missing = n - id - 1;
        while missing > 0 {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).map_err(|e| StdError::io("accept", e))?;
                    configure(&stream, cfg)?;
                    let mut hello = [0u8; 16];
                    (&stream).read_exact(&mut hello).map_err(|e| StdError::io(format!("party {id}: read hello"), e))?;
                    let from = u32::from_le_bytes([hello[8], hello[9], hello[10], hello[11]]) as usize;
                    let to = u32::from_le_bytes([hello[12], hello[13], hello[14], hello[15]]) as usize;
                    if hello[..8] != HELLO_MAGIC || to != id || from <= id || from >= n || streams[from].is_some() {
                        // Not one of ours: drop it and keep waiting for the real peers.
                        continue;
                    }
                    streams[from] = Some(stream);
                    missing -= 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(StdError::Handshake(format!(
                            "party {id}: {missing} peer(s) did not connect in time"
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(StdError::io("accept", e)),
            }
        }
    }
    let mut peers = Vec::with_capacity(n);
    for (j, s) in streams.into_iter().enumerate() {
        peers.push(match s {
            None => None,
            Some(stream) => Some(spawn_peer(id, j, Link::Plain(stream))?),
        });
    }
    Ok(TcpChannel { id, peers, ahead: None })
}

/// A channel for party `id` from links already connected to its peers (`links[j]` for
/// each peer `j`, `None` for itself), for callers that set connections up themselves (the
/// session broker of `marill serve`). The sockets are configured with `cfg`.
pub fn from_links(id: PartyId, links: Vec<Option<Link>>, cfg: TcpConfig) -> Result<TcpChannel, StdError> {
    let mut peers = Vec::with_capacity(links.len());
    for (j, l) in links.into_iter().enumerate() {
        peers.push(match l {
            None => None,
            Some(link) => {
                configure(link.stream(), cfg)?;
                Some(spawn_peer(id, j, link)?)
            }
        });
    }
    Ok(TcpChannel { id, peers, ahead: None })
}

/// Set `TCP_NODELAY` and `timeout` for reads and writes on `s` (before a TLS handshake or a
/// hello, which they bound too).
pub fn set_timeouts(s: &TcpStream, timeout: Duration) -> Result<(), StdError> {
    configure(s, TcpConfig { connect_timeout: timeout, io_timeout: timeout })
}

fn configure(s: &TcpStream, cfg: TcpConfig) -> Result<(), StdError> {
    s.set_nodelay(true).map_err(|e| StdError::io("set TCP_NODELAY", e))?;
    s.set_read_timeout(Some(cfg.io_timeout)).map_err(|e| StdError::io("set read timeout", e))?;
    s.set_write_timeout(Some(cfg.io_timeout)).map_err(|e| StdError::io("set write timeout", e))?;
    Ok(())
}

fn spawn_peer(id: PartyId, j: PartyId, link: Link) -> Result<Peer, StdError> {
    let (tx, rx) = channel::<Out>();
    let queued = Arc::new(AtomicUsize::new(0));
    let written = Arc::clone(&queued);
    let name = format!("marill-tcp-w{id}->{j}");
    let spawn = |f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new().name(name.clone()).spawn(f).map_err(|e| StdError::io("spawn writer", e))
    };
    match link {
        Link::Plain(stream) => {
            let wstream = stream.try_clone().map_err(|e| StdError::io("clone socket", e))?;
            let rstream = stream.try_clone().map_err(|e| StdError::io("clone socket", e))?;
            let writer = spawn(Box::new(move || {
                let w = BufWriter::with_capacity(MAX_FRAME + 5, wstream);
                pump(rx, w, counted(written), |_| Ok(()));
            }))?;
            let reader = Box::new(BufReader::with_capacity(1 << 16, rstream));
            Ok(Peer { reader, prefetcher: None, queue: Some(tx), queued, writer: Some(writer), stream })
        }
        Link::Tls(t) => {
            let TlsLink { mut reader, writer, sock } = *t;
            reader.nudge = Some(tx.clone());
            let writer = spawn(Box::new(move || {
                let w = BufWriter::with_capacity(MAX_FRAME + 5, writer);
                pump(rx, w, counted(written), |w| w.close());
            }))?;
            Ok(Peer {
                reader: Box::new(reader),
                prefetcher: None,
                queue: Some(tx),
                queued,
                writer: Some(writer),
                stream: sock,
            })
        }
    }
}

/// Frame a message, then take its bytes off the writer's queue count.
fn counted<W: Write>(written: Arc<AtomicUsize>) -> impl Fn(&mut BufWriter<W>, &[u8]) -> std::io::Result<()> {
    move |w, msg| {
        let r = write_message(w, msg);
        written.fetch_sub(msg.len(), Ordering::AcqRel);
        r
    }
}

fn write_message(w: &mut impl Write, msg: &[u8]) -> std::io::Result<()> {
    let mut chunks = msg.chunks(MAX_FRAME).peekable();
    if chunks.peek().is_none() {
        w.write_all(&[0, 0, 0, 0, 1])?;
    }
    while let Some(c) = chunks.next() {
        let last = u8::from(chunks.peek().is_none());
        let mut h = [0u8; 5];
        h[..4].copy_from_slice(&(c.len() as u32).to_le_bytes());
        h[4] = last;
        w.write_all(&h)?;
        w.write_all(c)?;
    }
    w.flush()
}

fn map_read_err(e: std::io::Error) -> Error {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Error::Timeout,
        // A TLS record that does not authenticate, or a protocol violation.
        ErrorKind::InvalidData => Error::Malformed,
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => Error::PeerClosed,
        _ => Error::Io,
    }
}

/// Read one framed message of exactly `buf.len()` bytes.
pub fn read_message(r: &mut impl Read, buf: &mut [u8]) -> Result<(), Error> {
    let mut off = 0;
    loop {
        let mut h = [0u8; 5];
        r.read_exact(&mut h).map_err(map_read_err)?;
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let last = match h[4] {
            0 => false,
            1 => true,
            _ => return Err(Error::Malformed),
        };
        if len > MAX_FRAME || len > buf.len() - off {
            return Err(Error::Malformed);
        }
        r.read_exact(&mut buf[off..off + len]).map_err(map_read_err)?;
        off += len;
        if last {
            return if off == buf.len() { Ok(()) } else { Err(Error::Malformed) };
        }
        if len == 0 {
            // Empty non-final frames would let a peer keep us busy forever.
            return Err(Error::Malformed);
        }
    }
}

impl Channel for TcpChannel {
    fn id(&self) -> PartyId {
        self.id
    }

    fn send(&mut self, to: PartyId, bytes: &[u8]) -> Result<(), Error> {
        let p = self.peers.get(to).and_then(Option::as_ref).ok_or(Error::InvalidArgument)?;
        let q = p.queue.as_ref().ok_or(Error::PeerClosed)?;
        if let Some((limit, timeout)) = self.ahead {
            // A writer that stopped (write error) never drains: the wait ends with it.
            let stopped = || p.writer.as_ref().is_none_or(JoinHandle::is_finished);
            super::wait_for_room(&p.queued, bytes.len(), limit, Instant::now() + timeout, stopped)?;
        }
        p.queued.fetch_add(bytes.len(), Ordering::AcqRel);
        q.send(Out::Msg(bytes.to_vec())).map_err(|_| Error::PeerClosed)
    }

    fn recv(&mut self, from: PartyId, bytes: &mut [u8]) -> Result<(), Error> {
        let p = self.peers.get_mut(from).and_then(Option::as_mut).ok_or(Error::InvalidArgument)?;
        read_message(&mut p.reader, bytes)
    }
}

impl Drop for TcpChannel {
    fn drop(&mut self) {
        for p in self.peers.iter_mut().flatten() {
            // `Close` lets the writer drain what is queued and exit (the TLS reader holds a
            // sender too, so the queue alone would not close); its write timeout bounds the
            // wait if the peer stopped reading.
            if let Some(q) = p.queue.take() {
                let _ = q.send(Out::Close);
            }
            if let Some(w) = p.writer.take() {
                let _ = w.join();
            }
            let _ = p.stream.shutdown(Shutdown::Both);
            // A read-ahead thread ends at the shut socket, or, blocked on a full buffer,
            // when its receiving end goes.
            if let Some(r) = p.prefetcher.take() {
                p.reader = Box::new(std::io::empty());
                let _ = r.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limited_sender_waits_for_its_peer_to_read_over_tcp() {
        let l = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addrs = [l.local_addr().unwrap(), "127.0.0.1:0".parse().unwrap()];
        let cfg = TcpConfig { connect_timeout: Duration::from_secs(5), io_timeout: Duration::from_secs(10) };
        let peer = std::thread::spawn(move || establish(1, None, &addrs, cfg).unwrap());
        let mut a = establish(0, Some(l), &addrs, cfg).unwrap();
        let mut b = peer.join().unwrap();
        a.limit_ahead(1 << 20, Duration::from_millis(300));
        // 32 MB cannot all sit in the kernel's socket buffers: the writer is still on it,
        // so the next message waits and times out while nobody reads.
        let big = vec![7u8; 32 << 20];
        a.send(1, &big).unwrap();
        assert_eq!(a.send(1, &[1; 10]), Err(Error::Timeout));
        let mut got = vec![0u8; big.len()];
        b.recv(0, &mut got).unwrap();
        assert!(got == big);
        // Read: the writer finishes the message and the queue empties.
        a.limit_ahead(1 << 20, Duration::from_secs(10));
        a.send(1, &[1; 10]).unwrap();
        let mut small = [0u8; 10];
        b.recv(0, &mut small).unwrap();
        assert_eq!(small, [1; 10]);
    }

    /// A pair over loopback: party 0 (the sender, as the dealer) and party 1.
    fn pair() -> (TcpChannel, TcpChannel) {
        let l = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addrs = [l.local_addr().unwrap(), "127.0.0.1:0".parse().unwrap()];
        let cfg = TcpConfig { connect_timeout: Duration::from_secs(5), io_timeout: Duration::from_secs(10) };
        let peer = std::thread::spawn(move || establish(1, None, &addrs, cfg).unwrap());
        let a = establish(0, Some(l), &addrs, cfg).unwrap();
        (a, peer.join().unwrap())
    }

    #[test]
    fn reading_ahead_takes_a_senders_bytes_within_its_bound() {
        let big: Vec<u8> = (0..32usize << 20).map(|i| (i * 7 + i / 4093) as u8).collect();
        // Ahead by 64 MB: the 32 MB leave the sender's queue although party 1 reads nothing
        // (the sender's next message finds an empty queue: no wait, no timeout).
        let (mut a, mut b) = pair();
        b.prefetch(0, 64 << 20, Duration::from_secs(10)).unwrap();
        a.send(1, &big).unwrap();
        a.limit_ahead(1 << 20, Duration::from_secs(10));
        a.send(1, &[1; 10]).unwrap();
        let mut got = vec![0u8; big.len()];
        b.recv(0, &mut got).unwrap();
        assert!(got == big);
        let mut small = [0u8; 10];
        b.recv(0, &mut small).unwrap();
        assert_eq!(small, [1; 10]);
        // Framing is still checked: a message of another length is refused.
        a.send(1, &[2; 10]).unwrap();
        let mut wrong = [0u8; 11];
        assert_eq!(b.recv(0, &mut wrong), Err(Error::Malformed));
        // Ahead by 1 MB: most of the 32 MB stay queued at the sender, whose next message
        // waits and times out while nobody reads.
        let (mut a, mut b) = pair();
        b.prefetch(0, 1 << 20, Duration::from_secs(10)).unwrap();
        a.limit_ahead(1 << 20, Duration::from_millis(300));
        a.send(1, &big).unwrap();
        assert_eq!(a.send(1, &[1; 10]), Err(Error::Timeout));
        b.recv(0, &mut got).unwrap();
        assert!(got == big);
        // The sender gone: the reader sees the end of the stream, not a hang.
        drop(a);
        assert_eq!(b.recv(0, &mut small), Err(Error::PeerClosed));
        // Nothing sent: the wait ends at the reading side's deadline.
        let (_a, mut b) = pair();
        b.prefetch(0, 1 << 20, Duration::from_millis(200)).unwrap();
        let t = Instant::now();
        assert_eq!(b.recv(0, &mut small), Err(Error::Timeout));
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn frames_round_trip_and_reject_bad_lengths() {
        for len in [0usize, 1, MAX_FRAME - 1, MAX_FRAME, MAX_FRAME + 1, 3 * MAX_FRAME + 7] {
            let msg: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let mut wire = Vec::new();
            write_message(&mut wire, &msg).unwrap();
            let mut out = vec![0u8; len];
            read_message(&mut wire.as_slice(), &mut out).unwrap();
            assert_eq!(out, msg);
            // Expecting one byte more: the last frame ends short.
            let mut longer = vec![0u8; len + 1];
            assert_eq!(read_message(&mut wire.as_slice(), &mut longer), Err(Error::Malformed));
            // Expecting one byte less: a frame runs past the buffer.
            if len > 0 {
                let mut shorter = vec![0u8; len - 1];
                assert_eq!(read_message(&mut wire.as_slice(), &mut shorter), Err(Error::Malformed));
            }
            // Truncated stream: peer closed.
            if !wire.is_empty() {
                let cut = &wire[..wire.len() - 1];
                let mut out = vec![0u8; len];
                let r = read_message(&mut &cut[..], &mut out);
                assert!(r == Err(Error::PeerClosed) || r == Err(Error::Malformed));
            }
        }
        // A huge length field is refused without allocating.
        let wire = [0xff, 0xff, 0xff, 0x7f, 1];
        let mut out = vec![0u8; 8];
        assert_eq!(read_message(&mut &wire[..], &mut out), Err(Error::Malformed));
    }
}
