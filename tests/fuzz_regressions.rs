//! Fuzzing findings, replayed in CI.
//!
//! The fuzz targets in `fuzz/` (run with `scripts/fuzz.sh`) share their bodies with this file
//! through `fuzz/harness.rs`, so each input here goes through exactly the code the fuzzer ran:
//! every committed seed, and every crash the fuzzer found, as a named test once fixed.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

/// Every file of `fuzz/corpus/<target>`, by file name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(out.len() >= 3, "{} holds too few seeds", dir.display());
    out
}

#[test]
fn seed_corpus_replays_through_every_target() {
    type Target = (&'static str, fn(&[u8]));
    let targets: [Target; 5] = [
        ("ingest_json", harness::ingest_json),
        ("ingest_ndjson", harness::ingest_ndjson),
        ("config_toml", harness::config_toml),
        ("checkpoint_decode", harness::checkpoint_decode),
        ("otlp_decode", harness::otlp_decode),
    ];
    for (target, run) in targets {
        for (name, bytes) in seeds(target) {
            eprintln!("{target}: {name}");
            run(&bytes);
        }
    }
}

/// The checkpoint seeds are real checkpoints of the harness alert: when the stored format
/// changes they stop decoding here, and they must be regenerated (old checkpoints in users'
/// data files would then also start fresh).
#[test]
fn checkpoint_seeds_still_decode() {
    for (name, bytes) in seeds("checkpoint_decode") {
        if name.starts_with("checkpoint_") {
            alertd::alert::AlertState::decode_checkpoint("fuzz", &bytes)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

/// The seeds of the ingest targets are valid batches, so the fuzzer starts from accepted input.
#[test]
fn ingest_seeds_are_accepted_except_the_invalid_ones() {
    let limits = alertd::ingest::Limits {
        max_events: 64,
        max_line: 4096,
    };
    for (target, nd) in [("ingest_json", false), ("ingest_ndjson", true)] {
        for (name, bytes) in seeds(target) {
            let r = alertd::ingest::parse_body(&bytes, nd, harness::NOW_MS, limits);
            let invalid = name.contains("invalid") || name.contains("bad");
            assert_eq!(r.is_err(), invalid, "{name}: {r:?}");
        }
    }
}

/// The bytes of `fuzz/regressions/<target>/<name>`: fuzzer finds, kept as found.
macro_rules! finding {
    ($target:literal, $name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/regressions/",
            $target,
            "/",
            $name
        ))
    };
}

/// checkpoint_decode, first minute: a checkpoint that decodes but whose ring head sits next to
/// `i64::MIN` (not the empty sentinel) overflowed `head - SLOTS` on the next event. Such a state
/// is now refused at decode, with the alert id, and the alert starts fresh.
#[test]
fn checkpoint_with_ring_head_near_min_is_refused_not_applied() {
    let bytes = finding!("checkpoint_decode", "ring_head_near_min.bin");
    harness::checkpoint_decode(bytes);
    let err = alertd::alert::AlertState::decode_checkpoint("prod-errors", bytes).unwrap_err();
    assert!(
        err.contains("alert \"prod-errors\"") && err.contains("inconsistent"),
        "{err}"
    );
}

/// The OTLP seeds are valid export requests in every encoding/compression mode, so the fuzzer
/// starts from bodies that reach the mapping.
#[test]
fn otlp_seeds_decode_and_map_to_traces() {
    use alertd::otlp::decode::{decode_body, Compression, Encoding};
    use alertd::otlp::map::{map_request, Context};
    for (name, bytes) in seeds("otlp_decode") {
        let (mode, body) = bytes.split_first().unwrap();
        let enc = if mode & 1 == 1 {
            Encoding::Json
        } else {
            Encoding::Protobuf
        };
        let comp = if mode & 2 == 2 {
            Compression::Gzip
        } else {
            Compression::Identity
        };
        let req = decode_body(body, enc, comp, 1 << 20).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let ctx = Context {
            now_ms: harness::NOW_MS,
            ..Context::default()
        };
        assert!(!map_request(&req, &ctx).traces.is_empty(), "{name}");
    }
}
