//! `POST /v1/events` with a JSON object or array body (see `harness::ingest_json`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::ingest_json(data));
