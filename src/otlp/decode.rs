//! The OTLP/HTTP wire: content types, bounded gzip, request decoding and answer encoding.
//!
//! Decoding is the maintained generated types from `opentelemetry-proto`: prost for
//! `application/x-protobuf`, their serde implementation (hex ids, string-encoded 64-bit
//! integers, camelCase names) for `application/json`. Nothing here reads protobuf by hand.
//!
//! A gzip body is inflated as a stream that stops one byte past `max_body`, so a small bomb that
//! would expand to gigabytes costs at most `max_body` of memory and is answered `413`.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::borrow::Cow;
use std::io::Read;

/// The two OTLP/HTTP encodings; answers use the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding named by a `Content-Type` (parameters such as `charset` are ignored), or
    /// `None` for anything else (answered `415`).
    pub fn from_content_type(content_type: Option<&str>) -> Option<Encoding> {
        let media = content_type?.split(';').next()?.trim();
        if media.eq_ignore_ascii_case("application/x-protobuf")
            || media.eq_ignore_ascii_case("application/protobuf")
        {
            Some(Encoding::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    /// The `Content-Type` of answers in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Encoding::Protobuf => "protobuf",
            Encoding::Json => "json",
        }
    }
}

/// A body's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Identity,
    Gzip,
}

impl Compression {
    /// The compression named by a `Content-Encoding` header, or `None` when unsupported
    /// (answered `415`: OTLP/HTTP senders compress with gzip or not at all).
    pub fn from_header(content_encoding: Option<&str>) -> Option<Compression> {
        match content_encoding.map(str::trim) {
            None | Some("") => Some(Compression::Identity),
            Some(c) if c.eq_ignore_ascii_case("identity") => Some(Compression::Identity),
            Some(c) if c.eq_ignore_ascii_case("gzip") || c.eq_ignore_ascii_case("x-gzip") => {
                Some(Compression::Gzip)
            }
            Some(_) => None,
        }
    }
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than `max_body` once decompressed (`413`).
    TooLarge(String),
    /// Not gzip, not protobuf or not OTLP/JSON (`400`).
    Invalid(String),
}

/// Inflates a gzip body (every member), refusing output larger than `max` bytes.
pub fn gunzip_bounded(body: &[u8], max: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
    let mut reader = flate2::read::MultiGzDecoder::new(body).take(max as u64 + 1);
    reader.read_to_end(&mut out).map_err(|e| {
        BodyError::Invalid(format!("Content-Encoding is gzip but the body is not: {e}"))
    })?;
    if out.len() > max {
        return Err(BodyError::TooLarge(format!(
            "the body inflates past server.max_body ({max} bytes)"
        )));
    }
    Ok(out)
}

/// Decodes one export request in `encoding`.
pub fn decode_request(
    bytes: &[u8],
    encoding: Encoding,
) -> Result<ExportTraceServiceRequest, String> {
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(bytes).map_err(|e| {
            format!("the body is not an OTLP ExportTraceServiceRequest in protobuf: {e}")
        }),
        Encoding::Json => serde_json::from_slice(bytes)
            .map_err(|e| format!("the body is not an OTLP ExportTraceServiceRequest in JSON: {e}")),
    }
}

/// Decompresses (bounded) and decodes a body: everything between the HTTP bytes and the
/// generated request type. The fuzz target calls exactly this.
pub fn decode_body(
    body: &[u8],
    encoding: Encoding,
    compression: Compression,
    max_body: usize,
) -> Result<ExportTraceServiceRequest, BodyError> {
    let bytes: Cow<'_, [u8]> = match compression {
        Compression::Identity => Cow::Borrowed(body),
        Compression::Gzip => Cow::Owned(gunzip_bounded(body, max_body)?),
    };
    decode_request(&bytes, encoding).map_err(BodyError::Invalid)
}

/// `google.rpc.Status`, the body of every OTLP/HTTP error answer. Only `code` and `message`:
/// alertd sends no `details`, and prost skips the field when reading.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub struct RpcStatus {
    /// A `google.rpc.Code` (3 invalid argument, 8 resource exhausted, 14 unavailable).
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `google.rpc.Code` values used in error answers.
pub mod code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNAVAILABLE: i32 = 14;
}

/// An error answer's body in `encoding`.
pub fn encode_status(code: i32, message: &str, encoding: Encoding) -> Vec<u8> {
    let status = RpcStatus {
        code,
        message: message.to_string(),
    };
    match encoding {
        Encoding::Protobuf => status.encode_to_vec(),
        Encoding::Json => {
            serde_json::to_vec(&status).expect("a struct of an int and a string serializes")
        }
    }
}

/// The success answer: an `ExportTraceServiceResponse`, with `partial_success` when root spans
/// were rejected.
pub fn encode_response(rejected: i64, error_message: &str, encoding: Encoding) -> Vec<u8> {
    let response = ExportTraceServiceResponse {
        partial_success: (rejected > 0 || !error_message.is_empty()).then(|| {
            ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message: error_message.to_string(),
            }
        }),
    };
    match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        // A full success is `{}`, not `{"partialSuccess": null}`: both are valid proto3 JSON,
        // the first is what the Collector sends.
        Encoding::Json if response.partial_success.is_none() => b"{}".to_vec(),
        Encoding::Json => {
            serde_json::to_vec(&response).expect("generated OTLP types serialize to JSON")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn content_types_are_recognised_case_insensitively_with_parameters() {
        use Encoding::*;
        for (ct, want) in [
            (Some("application/x-protobuf"), Some(Protobuf)),
            (Some("Application/X-Protobuf"), Some(Protobuf)),
            (Some("application/protobuf"), Some(Protobuf)),
            (Some("application/json; charset=utf-8"), Some(Json)),
            (Some("text/plain"), None),
            (Some("application/x-ndjson"), None),
            (Some(""), None),
            (None, None),
        ] {
            assert_eq!(Encoding::from_content_type(ct), want, "{ct:?}");
        }
    }

    #[test]
    fn only_gzip_and_identity_are_accepted_encodings() {
        assert_eq!(Compression::from_header(None), Some(Compression::Identity));
        assert_eq!(
            Compression::from_header(Some("GZIP")),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_header(Some("identity")),
            Some(Compression::Identity)
        );
        assert_eq!(Compression::from_header(Some("zstd")), None);
        assert_eq!(Compression::from_header(Some("br")), None);
    }

    #[test]
    fn gzip_within_the_limit_inflates_and_past_it_is_too_large() {
        let data = vec![b'a'; 10_000];
        assert_eq!(gunzip_bounded(&gzip(&data), 10_000).unwrap(), data);
        assert!(matches!(
            gunzip_bounded(&gzip(&data), 9_999),
            Err(BodyError::TooLarge(_))
        ));
        assert!(matches!(
            gunzip_bounded(b"not gzip at all", 10_000),
            Err(BodyError::Invalid(_))
        ));
    }

    #[test]
    fn a_json_request_decodes_through_the_generated_types() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","startTimeUnixNano":"1","endTimeUnixNano":2}]}]}]}"#;
        let req = decode_body(body, Encoding::Json, Compression::Identity, 1 << 20).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.end_time_unix_nano, 2);
        let again = decode_body(
            &req.encode_to_vec(),
            Encoding::Protobuf,
            Compression::Identity,
            1 << 20,
        )
        .unwrap();
        assert_eq!(again, req, "protobuf round trip");
    }

    #[test]
    fn junk_is_invalid_in_both_encodings() {
        for enc in [Encoding::Protobuf, Encoding::Json] {
            let r = decode_body(
                b"\xff\xff\xff\xff junk",
                enc,
                Compression::Identity,
                1 << 20,
            );
            assert!(matches!(r, Err(BodyError::Invalid(_))), "{enc:?}: {r:?}");
        }
        let r = decode_body(
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}"#,
            Encoding::Json,
            Compression::Identity,
            1 << 20,
        );
        assert!(matches!(r, Err(BodyError::Invalid(_))), "bad hex: {r:?}");
    }

    #[test]
    fn answers_round_trip_in_both_encodings() {
        let pb = encode_response(2, "two bad", Encoding::Protobuf);
        let r = ExportTraceServiceResponse::decode(pb.as_slice()).unwrap();
        assert_eq!(r.partial_success.unwrap().rejected_spans, 2);
        assert!(encode_response(0, "", Encoding::Protobuf).is_empty());
        assert_eq!(encode_response(0, "", Encoding::Json), b"{}");
        let v: serde_json::Value =
            serde_json::from_slice(&encode_response(1, "bad", Encoding::Json)).unwrap();
        assert_eq!(v["partialSuccess"]["rejectedSpans"], 1);
        assert_eq!(v["partialSuccess"]["errorMessage"], "bad");

        let s = RpcStatus::decode(encode_status(3, "nope", Encoding::Protobuf).as_slice()).unwrap();
        assert_eq!((s.code, s.message.as_str()), (3, "nope"));
        let v: serde_json::Value =
            serde_json::from_slice(&encode_status(14, "busy", Encoding::Json)).unwrap();
        assert_eq!(v, serde_json::json!({"code": 14, "message": "busy"}));
    }
}
