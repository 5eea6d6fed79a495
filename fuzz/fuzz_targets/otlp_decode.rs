//! `POST /v1/traces`: OTLP protobuf or JSON, gzip or not (see `harness::otlp_decode`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::otlp_decode(data));
