//! Arbitrary bytes as RESP input: the parser never panics, never reads past the buffer, and a
//! parsed command's argument ranges lie inside the bytes it says it consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quipu::server::frame::{Limits, ParseError, parse};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_bulk: 1 << 20, max_args: 1 << 16, max_inline: 1 << 16 };
    // Inline commands are unescaped in place, so the parser gets its own copy.
    let mut copy = data.to_vec();
    let mut rest = &mut copy[..];
    while !rest.is_empty() {
        match parse(rest, &limits) {
            Ok((args, used)) => {
                assert!(used > 0 && used <= rest.len());
                for r in args {
                    assert!(r.start <= r.end && r.end <= used);
                }
                rest = &mut std::mem::take(&mut rest)[used..];
            }
            Err(ParseError::Incomplete | ParseError::Invalid(_)) => break,
        }
    }
});
