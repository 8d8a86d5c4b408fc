//! A small boot partition (FAT12, FAT16 or FAT32, made by fatfs in memory) with
//! bytes and FAT-entry-sized values poked into its metadata, through haseed's
//! FAT check and, when the check passes, haseed's own edit of it.
//! The property lives in `haseed::image::fatfuzz::fat` (replayed by tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(why) = haseed::image::fatfuzz::fat(data) {
        panic!("fat property violated: {why}");
    }
});
