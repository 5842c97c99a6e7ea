//! The concurrency of a channel's link: one thread receives (the party, in `recv`), a writer
//! thread per peer sends (so a send never waits for the peer to read), and with TLS both
//! need the connection's record state.
//!
//! * **The writer thread** (`pump`) takes `Out` commands from a queue: a message to
//!   frame and send, a flush, or close. It stops at `Close` (sent by the channel's `Drop`),
//!   when every sender is gone, or at the first write error.
//! * **Shared record state** (`Arc<Mutex<R>>`, `Records`: a TLS connection) is locked only
//!   for CPU work, never across socket I/O: the writer encrypts under the lock and writes
//!   after releasing it; the reader reads the socket unlocked and decrypts under the lock.
//!   Holding it across a blocking write could deadlock two parties that both send a large
//!   message: each writer would wait for the other to read while holding the lock its own
//!   reader needs.
//! * **Ordering.** Records carry sequence numbers, so they must leave in the order they were
//!   made. Only the writer takes records out of the state, and it writes one batch before it
//!   takes the next. When decrypting makes records to send (an alert, a key update), the
//!   reader only queues `Out::Flush`; it never writes itself once a writer thread exists.
//!
//! These properties are model-checked with loom (the `loom_*` tests below, run with
//! `RUSTFLAGS="--cfg loom" cargo test -p marill-std --lib --release split`; the `sync`
//! names below are loom's under `cfg(loom)`).

use std::io::{self, BufWriter, ErrorKind, Read, Write};

#[cfg(loom)]
pub(crate) use loom::sync::mpsc::{Receiver, Sender, channel};
#[cfg(loom)]
use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::mpsc::{Receiver, Sender, channel};
#[cfg(not(loom))]
use std::sync::{Arc, Mutex, MutexGuard};

/// What a channel's writer thread is asked to do.
pub(crate) enum Out {
    /// Frame and send one message.
    Msg(Vec<u8>),
    /// Send the records the connection has pending (after the reader processed a record
    /// that calls for an answer).
    Flush,
    /// Send what is pending, close the session and stop.
    Close,
}

/// A record layer, as the two halves see it (implemented by `rustls::Connection`).
pub(crate) trait Records: Send {
    /// Decrypted bytes: `Ok(0)` once the peer closed, `WouldBlock` when none are ready.
    fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Take in some received bytes from the front of `raw`; how many were taken.
    fn receive(&mut self, raw: &mut &[u8]) -> io::Result<usize>;
    /// Process the whole records received; an error for one that does not authenticate.
    fn process(&mut self) -> io::Result<()>;
    /// Encrypt (some of) `plain`; how much was taken.
    fn encrypt(&mut self, plain: &[u8]) -> io::Result<usize>;
    /// Whether records are waiting to be sent.
    fn wants_write(&self) -> bool;
    /// Move the waiting records to `out`, in order.
    fn take_records(&mut self, out: &mut Vec<u8>) -> io::Result<()>;
    /// Queue the closing record.
    fn close_notify(&mut self);
}

/// Socket bytes read at once.
const RAW_READ: usize = 1 << 16;

/// Split `conn` into the receiving half (reading `rsock`) and the sending half (writing
/// `wsock`): two handles of the same connection.
pub(crate) fn split<R: Records, S: Read + Write, T: Write>(
    conn: R,
    rsock: S,
    wsock: T,
) -> (SplitReader<R, S>, SplitWriter<R, T>) {
    let conn = Arc::new(Mutex::new(conn));
    let reader = SplitReader {
        conn: conn.clone(),
        sock: rsock,
        raw: vec![0; RAW_READ].into_boxed_slice(),
        pos: 0,
        len: 0,
        nudge: None,
    };
    (reader, SplitWriter { conn, sock: wsock, out: Vec::new() })
}

fn lock<R>(conn: &Mutex<R>) -> io::Result<MutexGuard<'_, R>> {
    conn.lock().map_err(|_| io::Error::other("TLS state poisoned"))
}

/// The receiving half: reads the socket without the lock, decrypts under it.
pub(crate) struct SplitReader<R, S> {
    conn: Arc<Mutex<R>>,
    sock: S,
    raw: Box<[u8]>,
    pos: usize,
    len: usize,
    /// The writer thread's queue, once there is one (records to answer go through it).
    pub(crate) nudge: Option<Sender<Out>>,
}

impl<R: Records, S: Read + Write> Read for SplitReader<R, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut c = lock(&self.conn)?;
                loop {
                    match c.read_plain(buf) {
                        // The peer closed the session.
                        Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                        Ok(n) => return Ok(n),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                    if self.pos == self.len {
                        break;
                    }
                    let mut pending = &self.raw[self.pos..self.len];
                    let took = c.receive(&mut pending)?;
                    if took == 0 {
                        return Err(io::Error::new(ErrorKind::InvalidData, "record buffer full"));
                    }
                    self.pos += took;
                    let state = c.process();
                    if c.wants_write() {
                        match &self.nudge {
                            Some(q) => {
                                let _ = q.send(Out::Flush);
                            }
                            // No writer thread yet (set-up): this thread is the only user.
                            None => {
                                let mut out = Vec::new();
                                c.take_records(&mut out)?;
                                self.sock.write_all(&out)?;
                            }
                        }
                    }
                    state?;
                }
            }
            let n = self.sock.read(&mut self.raw)?;
            if n == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            self.pos = 0;
            self.len = n;
        }
    }
}

/// The sending half: encrypts under the lock, writes the socket after it.
pub(crate) struct SplitWriter<R, T> {
    conn: Arc<Mutex<R>>,
    sock: T,
    out: Vec<u8>,
}

impl<R: Records, T: Write> SplitWriter<R, T> {
    /// Send the closing record and whatever is pending.
    pub(crate) fn close(&mut self) -> io::Result<()> {
        let mut c = lock(&self.conn)?;
        c.close_notify();
        drain(c, &mut self.out, &mut self.sock)
    }
}

/// Take the pending records out under the lock, then write them after releasing it.
fn drain<R: Records>(mut c: MutexGuard<'_, R>, out: &mut Vec<u8>, sock: &mut impl Write) -> io::Result<()> {
    c.take_records(out)?;
    drop(c);
    sock.write_all(out)?;
    out.clear();
    Ok(())
}

impl<R: Records, T: Write> Write for SplitWriter<R, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut c = lock(&self.conn)?;
        let n = c.encrypt(buf)?;
        drain(c, &mut self.out, &mut self.sock)?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        let c = lock(&self.conn)?;
        drain(c, &mut self.out, &mut self.sock)?;
        self.sock.flush()
    }
}

/// The writer thread: send queued messages until `Out::Close` or the queue closes, then
/// `close` the connection. A write error (the peer is gone or stalled past the timeout)
/// stops it; later sends see a closed queue.
pub(crate) fn pump<W: Write>(
    rx: Receiver<Out>,
    mut w: BufWriter<W>,
    frame: impl Fn(&mut BufWriter<W>, &[u8]) -> io::Result<()>,
    close: impl FnOnce(&mut W) -> io::Result<()>,
) {
    while let Ok(out) = rx.recv() {
        let r = match out {
            Out::Msg(msg) => frame(&mut w, &msg),
            Out::Flush => w.flush(),
            Out::Close => break,
        };
        if r.is_err() {
            return;
        }
    }
    if w.flush().is_ok() {
        let _ = close(w.get_mut());
    }
}

#[cfg(all(test, loom))]
mod tests {
    //! A toy record layer stands in for TLS: a record is `[seq][kind][len][payload]`, and
    //! the receiver refuses a record out of sequence, as TLS's AEAD nonces do. A `PING`
    //! record makes the receiver queue a `PONG` (as a key update calls for an answer).

    use super::*;

    const DATA: u8 = 0;
    const PING: u8 = 1;
    const PONG: u8 = 2;
    const CLOSE: u8 = 3;

    #[derive(Default)]
    struct Toy {
        send_seq: u8,
        recv_seq: u8,
        outgoing: Vec<u8>,
        incoming: Vec<u8>,
        plain: Vec<u8>,
        closed: bool,
    }

    impl Toy {
        fn record(&mut self, kind: u8, payload: &[u8]) {
            self.outgoing.extend([self.send_seq, kind, payload.len() as u8]);
            self.outgoing.extend_from_slice(payload);
            self.send_seq += 1;
        }
    }

    impl Records for Toy {
        fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.plain.is_empty() {
                return if self.closed { Ok(0) } else { Err(ErrorKind::WouldBlock.into()) };
            }
            let n = buf.len().min(self.plain.len());
            buf[..n].copy_from_slice(&self.plain[..n]);
            self.plain.drain(..n);
            Ok(n)
        }
        fn receive(&mut self, raw: &mut &[u8]) -> io::Result<usize> {
            self.incoming.extend_from_slice(raw);
            let n = raw.len();
            *raw = &raw[n..];
            Ok(n)
        }
        fn process(&mut self) -> io::Result<()> {
            while self.incoming.len() >= 3 && self.incoming.len() >= 3 + self.incoming[2] as usize {
                let (seq, kind, len) = (self.incoming[0], self.incoming[1], self.incoming[2] as usize);
                if seq != self.recv_seq {
                    return Err(io::Error::new(ErrorKind::InvalidData, "record out of sequence"));
                }
                self.recv_seq += 1;
                let payload: Vec<u8> = self.incoming.drain(..3 + len).skip(3).collect();
                match kind {
                    DATA => self.plain.extend(payload),
                    PING => self.record(PONG, &[]),
                    _ => self.closed = true,
                }
            }
            Ok(())
        }
        fn encrypt(&mut self, plain: &[u8]) -> io::Result<usize> {
            let n = plain.len().min(255);
            self.record(DATA, &plain[..n]);
            Ok(n)
        }
        fn wants_write(&self) -> bool {
            !self.outgoing.is_empty()
        }
        fn take_records(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
            out.append(&mut self.outgoing);
            Ok(())
        }
        fn close_notify(&mut self) {
            self.record(CLOSE, &[]);
        }
    }

    /// The wire as the peer sees it: what the writer thread wrote.
    #[derive(Clone, Default)]
    struct Wire(Arc<Mutex<Vec<u8>>>);

    impl Write for Wire {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().map_err(|_| io::Error::other("poisoned"))?.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The peer's bytes, already arrived; writes here would be the reader answering records
    /// itself, which must not happen once a writer thread exists.
    struct Arrived(io::Cursor<Vec<u8>>);

    impl Read for Arrived {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl Write for Arrived {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            panic!("the reader wrote to the socket while a writer thread owns it")
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn frame(w: &mut BufWriter<SplitWriter<Toy, Wire>>, msg: &[u8]) -> io::Result<()> {
        w.write_all(msg)?;
        w.flush()
    }

    /// Parse the wire: each record's kind, checking the sequence numbers run 0, 1, 2, ...
    fn kinds(wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < wire.len() {
            assert_eq!(wire[i] as usize, out.len(), "records left out of order: {wire:?}");
            let len = wire[i + 2] as usize;
            out.push((wire[i + 1], wire[i + 3..i + 3 + len].to_vec()));
            i += 3 + len;
        }
        out
    }

    /// The party receives a message with a `PING` in the middle while it sends two messages
    /// of its own; then its channel closes. In every interleaving: the received message is
    /// intact, the records leave in sequence with the `PONG` among them, both sent messages
    /// arrive whole and in order, and the writer thread ends (with the reader still holding a
    /// sender, so only `Close` can end it) with the closing record last.
    #[test]
    fn loom_records_leave_in_order_and_the_writer_always_ends() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let mut peer = Toy::default();
            peer.record(DATA, b"ab");
            peer.record(PING, &[]);
            peer.record(DATA, b"cd");
            let wire = Wire::default();
            let (mut reader, writer) = split(Toy::default(), Arrived(io::Cursor::new(peer.outgoing)), wire.clone());
            let (tx, rx) = channel::<Out>();
            reader.nudge = Some(tx.clone());
            let t = loom::thread::spawn(move || {
                pump(rx, BufWriter::new(writer), frame, |w: &mut SplitWriter<Toy, Wire>| w.close());
            });
            tx.send(Out::Msg(b"xy".to_vec())).unwrap();
            let mut got = [0u8; 4];
            reader.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"abcd");
            tx.send(Out::Msg(b"z".to_vec())).unwrap();
            tx.send(Out::Close).unwrap();
            t.join().unwrap();
            let records = kinds(&wire.0.lock().unwrap());
            let data: Vec<u8> = records.iter().filter(|(k, _)| *k == DATA).flat_map(|(_, p)| p.clone()).collect();
            assert_eq!(data, b"xyz");
            assert_eq!(records.iter().filter(|(k, _)| *k == PONG).count(), 1);
            assert_eq!(records.last().map(|r| r.0), Some(CLOSE));
        });
    }

    /// Dropping a channel sends `Close`; the writer drains what was queued before it, even
    /// though the queue stays open (the reader holds a sender).
    #[test]
    fn loom_close_drains_what_was_queued() {
        loom::model(|| {
            let wire = Wire::default();
            let (reader, writer) = split(Toy::default(), Arrived(io::Cursor::new(Vec::new())), wire.clone());
            let (tx, rx) = channel::<Out>();
            let keep = tx.clone();
            let t = loom::thread::spawn(move || {
                pump(rx, BufWriter::new(writer), frame, |w: &mut SplitWriter<Toy, Wire>| w.close());
            });
            tx.send(Out::Msg(b"q".to_vec())).unwrap();
            tx.send(Out::Close).unwrap();
            t.join().unwrap();
            let records = kinds(&wire.0.lock().unwrap());
            assert_eq!(records, vec![(DATA, b"q".to_vec()), (CLOSE, Vec::new())]);
            drop((reader, keep));
        });
    }
}
