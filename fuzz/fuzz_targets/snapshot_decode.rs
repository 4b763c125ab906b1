//! Arbitrary bytes as a cache snapshot file: decoding never panics; anything but a well-formed
//! snapshot is rejected whole.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quipu::fuzzing::decode_snapshot_for_fuzzing(data);
});
