//! The TCP frame reader on arbitrary bytes: `Ok` only for a well-formed message of the
//! expected length, otherwise an error; never a panic or an allocation sized by the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marill_std::transport::tcp::read_message;

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else { return };
    let mut buf = vec![0u8; usize::from(len) * 97];
    let _ = read_message(&mut &rest[..], &mut buf);
});
