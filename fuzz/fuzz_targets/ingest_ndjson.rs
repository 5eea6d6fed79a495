//! `POST /v1/events` with an NDJSON body (see `harness::ingest_ndjson`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::ingest_ndjson(data));
