//! The share codec: ring words and packed bits as they travel (`send_words` / `recv_words`,
//! little-endian), and the share layouts. From arbitrary bytes:
//! * decode → encode reproduces the bytes (words through a channel and back);
//! * packed bits rebuilt one by one with `get_bit`/`set_bit` equal the input with its tail
//!   masked, and `mask_tail` clears exactly the bits past `n`;
//! * additive and replicated sharing reconstruct the input; replicated reconstruction of
//!   shares whose copies disagree is `Malformed`, never a wrong value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marill_core::channel::{recv_words, send_words};
use marill_core::share::{
    get_bit, mask_tail, reconstruct_additive, reconstruct_replicated, set_bit, split_additive, split_replicated,
};
use marill_core::{Channel, Error, PartyId};

/// A one-message loopback: `send` stores the bytes, `recv` returns them.
struct Loop(Vec<u8>);

impl Channel for Loop {
    fn id(&self) -> PartyId {
        0
    }
    fn send(&mut self, _: PartyId, bytes: &[u8]) -> Result<(), Error> {
        self.0 = bytes.to_vec();
        Ok(())
    }
    fn recv(&mut self, _: PartyId, bytes: &mut [u8]) -> Result<(), Error> {
        if bytes.len() != self.0.len() {
            return Err(Error::Malformed);
        }
        bytes.copy_from_slice(&self.0);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let bytes = &rest[..rest.len() / 8 * 8];
    let n = bytes.len() / 8;
    // Decode: the wire bytes as words; encode: send them; the wire must be the input.
    let mut ch = Loop(bytes.to_vec());
    let mut words = vec![0u64; n];
    recv_words(&mut ch, 1, &mut words).unwrap();
    for (w, b) in words.iter().zip(bytes.chunks_exact(8)) {
        assert_eq!(*w, u64::from_le_bytes(b.try_into().unwrap()), "words are little-endian");
    }
    ch.0.clear();
    send_words(&mut ch, 1, &words).unwrap();
    assert_eq!(ch.0, bytes);
    // A wrong length is refused, never truncated or padded.
    if n > 0 {
        assert_eq!(recv_words(&mut ch, 1, &mut words[1..]), Err(Error::Malformed));
    }

    // Packed bits: a bit count from the selector within the words.
    let nbits = if n == 0 { 0 } else { (n - 1) * 64 + usize::from(sel % 64) + 1 };
    let mut masked = words.clone();
    mask_tail(&mut masked, nbits);
    let mut rebuilt = vec![u64::MAX; n];
    for e in 0..n * 64 {
        set_bit(&mut rebuilt, e, if e < nbits { get_bit(&words, e) } else { 0 });
    }
    assert_eq!(rebuilt, masked);

    // Sharing: the first half are values, the second half masks.
    let h = n / 2;
    let (x, r) = (&words[..h], &words[h..2 * h]);
    let (mut s0, mut s1, mut out) = (vec![0; h], vec![0; h], vec![0; h]);
    split_additive(x, r, &mut s0, &mut s1).unwrap();
    reconstruct_additive(&s0, &s1, &mut out).unwrap();
    assert_eq!(out, x);
    let r1: Vec<u64> = r.iter().map(|v| v.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15).collect();
    let (mut p0, mut p1, mut p2) = (vec![0; 2 * h], vec![0; 2 * h], vec![0; 2 * h]);
    split_replicated(x, r, &r1, [&mut p0, &mut p1, &mut p2]).unwrap();
    reconstruct_replicated([&p0, &p1, &p2], &mut out).unwrap();
    assert_eq!(out, x);
    if h > 0 {
        // One copy of one component disagrees: refused.
        let e = usize::from(sel) % (2 * h);
        p1[e] ^= 1;
        assert_eq!(reconstruct_replicated([&p0, &p1, &p2], &mut out), Err(Error::Malformed));
    }
    // Mismatched lengths are shape errors, never a panic.
    assert!(split_additive(x, &r[..h.saturating_sub(1)], &mut s0, &mut s1).is_err() || h == 0);
});
