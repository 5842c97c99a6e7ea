//! Link emulation in user space: a [`Channel`] wrapper that delivers every message as a
//! link of a given latency and bandwidth would (`tc netem` is not available everywhere,
//! and an emulation in the channel works the same in one process and between processes).
//!
//! **Model.** Per direction (party `i` to party `j`) the link is a queue: a message of `n`
//! bytes sent at time `s` leaves when the link is free, `start = max(s, free)`, occupies
//! it for `n / bandwidth` (`free = start + n / bandwidth`), and is delivered one one-way
//! latency later, `free + latency`. Messages keep their order. A send never waits (as a
//! socket with a large buffer); a receive returns no earlier than the delivery time.
//!
//! **Wire.** Before each message the sender sends its delivery time (8 bytes, nanoseconds
//! of the system clock, which parties on one machine share). The stamp is the peer's word
//! and is checked: since the receiver has waited for every earlier message, a well-formed
//! stamp is at most `n / bandwidth + latency` ahead of the receiver's clock (plus a second
//! of slack for scheduling); a later one is refused as malformed rather than slept on, so
//! a peer cannot stall this party, and both ends must use the same profile.
//!
//! The emulation adds the link's cost to whatever the real transport costs; on loopback
//! that is tens of microseconds per message, small beside the LAN profile's 50 µs one-way
//! latency and negligible beside the WAN's 20 ms. Metering ([`marill_core::cost::Metered`])
//! goes outside the emulation and counts payload bytes only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use marill_core::cost::{Cost, MAX_PARTIES};
use marill_core::{Channel, Error, PartyId};

/// A link profile: one-way latency and bandwidth, the same in both directions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkModel {
    /// One-way latency (half the round-trip time).
    pub one_way: Duration,
    /// Bandwidth in bits per second.
    pub bits_per_s: f64,
}

impl LinkModel {
    /// The paper's LAN: 16 Gbps, 0.1 ms round trip.
    pub const LAN: LinkModel = LinkModel { one_way: Duration::from_micros(50), bits_per_s: 16e9 };
    /// The paper's WAN (App. K): 400 Mbps, 40 ms round trip.
    pub const WAN: LinkModel = LinkModel { one_way: Duration::from_millis(20), bits_per_s: 400e6 };

    /// A profile from a round-trip time in milliseconds and a bandwidth in Mbit/s.
    pub fn new(rtt_ms: f64, mbps: f64) -> Result<Self, String> {
        if !(rtt_ms.is_finite() && (0.0..=60_000.0).contains(&rtt_ms)) {
            return Err(format!("round-trip time {rtt_ms} ms: give 0 to 60000"));
        }
        if !(mbps.is_finite() && (0.001..=1e7).contains(&mbps)) {
            return Err(format!("bandwidth {mbps} Mbit/s: give 0.001 to 10000000"));
        }
        Ok(Self { one_way: Duration::from_secs_f64(rtt_ms / 2e3), bits_per_s: mbps * 1e6 })
    }

    /// `lan`, `wan` or `RTT_MS,MBPS` (e.g. `40,400` is the WAN profile).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "lan" => Ok(Self::LAN),
            "wan" => Ok(Self::WAN),
            _ => {
                let bad = || format!("--link {s}: lan, wan or RTT_MS,MBPS (e.g. 40,400)");
                let (rtt, bw) = s.split_once(',').ok_or_else(bad)?;
                let rtt: f64 = rtt.trim().parse().map_err(|_| bad())?;
                let bw: f64 = bw.trim().parse().map_err(|_| bad())?;
                Self::new(rtt, bw)
            }
        }
    }

    /// The profile as `--link` takes it back (`lan`, `wan`, or `RTT_MS,MBPS`).
    pub fn label(&self) -> String {
        if *self == Self::LAN {
            "lan".into()
        } else if *self == Self::WAN {
            "wan".into()
        } else {
            format!("{},{}", self.one_way.as_secs_f64() * 2e3, self.bits_per_s / 1e6)
        }
    }

    /// Nanoseconds the link is busy with `n` bytes.
    fn busy_ns(&self, n: usize) -> u64 {
        (n as f64 * 8.0 * 1e9 / self.bits_per_s).ceil() as u64
    }
}

/// Nanoseconds since the Unix epoch (the clock every party on a machine shares).
fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Wait until the system clock reads `t` (ns): sleep while far, then yield (sleeps
/// overshoot by tens of microseconds, as long as the LAN profile's latency).
fn wait_until(t: u64) {
    loop {
        let now = now_ns();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > 2_000_000 {
            std::thread::sleep(Duration::from_nanos(left - 1_000_000));
        } else if left > 300_000 {
            std::thread::sleep(Duration::from_micros(100));
        } else {
            std::thread::yield_now();
        }
    }
}

/// A channel whose messages travel over an emulated [`LinkModel`] (see the module docs).
pub struct Linked<C> {
    inner: C,
    link: LinkModel,
    /// Per peer: when the link towards it is next free (ns).
    free: [u64; MAX_PARTIES],
}

/// Slack allowed between a stamp and what this party's clock predicts.
const SLACK_NS: u64 = 1_000_000_000;

impl<C: Channel> Linked<C> {
    /// Emulate `link` on every message of `inner`.
    pub fn new(inner: C, link: LinkModel) -> Self {
        Self { inner, link, free: [0; MAX_PARTIES] }
    }
    /// The profile.
    pub fn link(&self) -> LinkModel {
        self.link
    }
    /// The wrapped channel.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

impl<C: Channel> Channel for Linked<C> {
    fn id(&self) -> PartyId {
        self.inner.id()
    }
    fn send(&mut self, to: PartyId, bytes: &[u8]) -> Result<(), Error> {
        let free = self.free.get_mut(to).ok_or(Error::InvalidArgument)?;
        let start = now_ns().max(*free);
        *free = start + self.link.busy_ns(bytes.len());
        let deliver = *free + self.link.one_way.as_nanos() as u64;
        self.inner.send(to, &deliver.to_le_bytes())?;
        self.inner.send(to, bytes)
    }
    fn recv(&mut self, from: PartyId, bytes: &mut [u8]) -> Result<(), Error> {
        let mut stamp = [0u8; 8];
        self.inner.recv(from, &mut stamp)?;
        self.inner.recv(from, bytes)?;
        let deliver = u64::from_le_bytes(stamp);
        let latest = now_ns()
            .saturating_add(self.link.busy_ns(bytes.len()))
            .saturating_add(self.link.one_way.as_nanos() as u64)
            .saturating_add(SLACK_NS);
        if deliver > latest {
            return Err(Error::Malformed);
        }
        wait_until(deliver);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Error> {
        self.inner.flush()
    }
    fn cost(&self) -> Option<Cost> {
        self.inner.cost()
    }
    fn settle(&mut self) -> Result<(), Error> {
        let busy = self.free.iter().copied().max().unwrap_or(0);
        wait_until(busy.saturating_add(self.link.one_way.as_nanos() as u64));
        self.inner.settle()
    }
}

/// A channel with or without an emulated link, so a caller picks at run time.
pub enum MaybeLinked<C> {
    /// The transport as it is.
    Direct(C),
    /// Over an emulated link.
    Linked(Linked<C>),
}

impl<C: Channel> MaybeLinked<C> {
    /// `inner` over `link` when one is given.
    pub fn new(inner: C, link: Option<LinkModel>) -> Self {
        match link {
            Some(l) => Self::Linked(Linked::new(inner, l)),
            None => Self::Direct(inner),
        }
    }
}

impl<C: Channel> Channel for MaybeLinked<C> {
    fn id(&self) -> PartyId {
        match self {
            Self::Direct(c) => c.id(),
            Self::Linked(c) => c.id(),
        }
    }
    fn send(&mut self, to: PartyId, bytes: &[u8]) -> Result<(), Error> {
        match self {
            Self::Direct(c) => c.send(to, bytes),
            Self::Linked(c) => c.send(to, bytes),
        }
    }
    fn recv(&mut self, from: PartyId, bytes: &mut [u8]) -> Result<(), Error> {
        match self {
            Self::Direct(c) => c.recv(from, bytes),
            Self::Linked(c) => c.recv(from, bytes),
        }
    }
    fn flush(&mut self) -> Result<(), Error> {
        match self {
            Self::Direct(c) => c.flush(),
            Self::Linked(c) => c.flush(),
        }
    }
    fn cost(&self) -> Option<Cost> {
        match self {
            Self::Direct(c) => c.cost(),
            Self::Linked(c) => c.cost(),
        }
    }
    fn settle(&mut self) -> Result<(), Error> {
        match self {
            Self::Direct(c) => c.settle(),
            Self::Linked(c) => c.settle(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::transport::mem;
    use std::time::Instant;

    fn pair(link: LinkModel) -> (Linked<mem::MemChannel>, Linked<mem::MemChannel>) {
        let mut m = mem::mesh(2).into_iter();
        (Linked::new(m.next().unwrap(), link), Linked::new(m.next().unwrap(), link))
    }

    /// A 1-byte ping-pong takes two one-way latencies, within 10 % (the fastest of seven:
    /// on a loaded machine a thread can wake late, which a link emulation cannot undo).
    #[test]
    fn ping_pong_takes_a_round_trip() {
        let link = LinkModel::new(50.0, 400.0).unwrap();
        let (mut a, mut b) = pair(link);
        let echo = std::thread::spawn(move || {
            let mut x = [0u8];
            for _ in 0..7 {
                b.recv(0, &mut x).unwrap();
                b.send(0, &x).unwrap();
            }
        });
        let mut x = [7u8];
        let mut best = f64::MAX;
        for _ in 0..7 {
            let t = Instant::now();
            a.send(1, &x).unwrap();
            a.recv(1, &mut x).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        echo.join().unwrap();
        assert!((best - 0.050).abs() < 0.005, "round trip {best} s, want 0.050 s");
    }

    /// 100 MB take size / bandwidth (plus one latency), within 10 %, whether sent as one
    /// message or as a hundred (the fastest of three runs each).
    #[test]
    fn a_bulk_transfer_takes_size_over_bandwidth() {
        let link = LinkModel::new(2.0, 1000.0).unwrap();
        for pieces in [1usize, 100] {
            // The fastest of three: the link never delivers early, but on a loaded machine
            // (the other tests of this binary run beside it) a thread can run late.
            let mut took = f64::MAX;
            for _ in 0..3 {
                let (mut a, mut b) = pair(link);
                let n = 100_000_000 / pieces;
                // Buffers first: only the transfer is timed.
                let (out, mut buf) = (vec![1u8; n], vec![0u8; n]);
                let t = Instant::now();
                let sender = std::thread::spawn(move || {
                    for _ in 0..pieces {
                        a.send(1, &out).unwrap();
                    }
                });
                for _ in 0..pieces {
                    b.recv(0, &mut buf).unwrap();
                }
                took = took.min(t.elapsed().as_secs_f64());
                sender.join().unwrap();
            }
            let want = 0.8 + 0.001;
            assert!((took - want).abs() < 0.1 * want, "{pieces} pieces: {took} s, want {want} s");
        }
    }

    /// `settle` returns once everything sent has been delivered: 10 MB at 100 Mbit/s.
    #[test]
    fn settle_waits_for_the_queue_to_drain() {
        // The fastest of three, as above: a loaded machine can only make it later.
        let mut took = f64::MAX;
        for _ in 0..3 {
            let (mut a, _b) = pair(LinkModel::new(10.0, 100.0).unwrap());
            let buf = vec![0u8; 10_000_000];
            let t = Instant::now();
            a.send(1, &buf).unwrap();
            a.settle().unwrap();
            took = took.min(t.elapsed().as_secs_f64());
        }
        assert!((took - 0.805).abs() < 0.08, "{took} s");
    }

    /// A stamp further ahead than the link allows is refused, not slept on.
    #[test]
    fn a_stamp_from_the_far_future_is_malformed() {
        let mut m = mem::mesh(2).into_iter();
        let mut raw = m.next().unwrap();
        let mut b = Linked::new(m.next().unwrap(), LinkModel::WAN);
        raw.send(1, &u64::MAX.to_le_bytes()).unwrap();
        raw.send(1, &[1]).unwrap();
        let t = Instant::now();
        assert_eq!(b.recv(0, &mut [0u8]), Err(Error::Malformed));
        assert!(t.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn profiles_parse_and_print() {
        assert_eq!(LinkModel::parse("lan").unwrap(), LinkModel::LAN);
        assert_eq!(LinkModel::parse("wan").unwrap(), LinkModel::WAN);
        assert_eq!(LinkModel::parse("40,400").unwrap(), LinkModel::WAN);
        assert_eq!(LinkModel::parse("10,100").unwrap().label(), "10,100");
        assert_eq!(LinkModel::WAN.label(), "wan");
        for bad in ["", "fast", "40", "40,", "-1,10", "10,0", "nan,1", "1,inf"] {
            assert!(LinkModel::parse(bad).is_err(), "{bad}");
        }
    }
}
