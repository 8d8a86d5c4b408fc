//! Arbitrary bytes as a site file through the inventory reader and resolver.
//! The property lives in `haseed::fuzzing::inventory` (replayed by tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(why) = haseed::fuzzing::inventory(data) {
        panic!("inventory property violated: {why}");
    }
});
