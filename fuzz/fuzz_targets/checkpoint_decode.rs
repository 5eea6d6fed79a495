//! Checkpoint, event and delivery bytes read back from redb (see `harness::checkpoint_decode`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::checkpoint_decode(data));
