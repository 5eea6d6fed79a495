//! OpenTelemetry in: an OTLP/HTTP traces receiver (DESIGN §14).
//!
//! - [`decode`]: content types, bounded gzip, generated-type decoding, answer encoding.
//! - [`map`]: pure mapping of an export request's root spans to `trace` events.
//! - [`handler`]: `POST /v1/traces`, which feeds the mapped events through the journal like
//!   `POST /v1/events` and answers as the OTLP/HTTP spec says.

pub mod decode;
pub mod handler;
pub mod map;
