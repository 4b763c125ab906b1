//! Arbitrary bytes as the active segment of a partition: recovery never panics and never
//! returns a record whose batch fails its CRC.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    quipu::fuzzing::recover_segment_bytes(data);
});
