//! The config file parser and validator (see `harness::config_toml`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::config_toml(data));
