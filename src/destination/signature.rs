//! Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
//!
//! The signed content is `"{id}.{timestamp}.{body}"`, HMAC-SHA256 with the secret's bytes (the
//! base64 after `whsec_`), sent as `v1,<base64>`. Receivers may list several signatures separated
//! by spaces during secret rotation, so verification accepts any matching one.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Decodes a `whsec_…` secret (the prefix is optional) into key bytes.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD
        .decode(b64)
        .map_err(|e| format!("must be \"whsec_\" followed by base64 ({e})"))?;
    if key.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(key)
}

/// HMAC-SHA256 over the signed content `"{id}.{timestamp}.{body}"`.
fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value for one message.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1,{}",
        STANDARD.encode(mac(key, id, timestamp, body).finalize().into_bytes())
    )
}

/// Whether any `v1,` signature in `header` matches, compared in constant time.
pub fn verify(key: &[u8], id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    header.split(' ').any(|candidate| {
        let Some(b64) = candidate.strip_prefix("v1,") else {
            return false;
        };
        let Ok(expected) = STANDARD.decode(b64) else {
            return false;
        };
        mac(key, id, timestamp, body)
            .verify_slice(&expected)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example published in the Standard Webhooks specification.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1649367553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn signs_the_specification_example() {
        let key = decode_secret(SECRET).unwrap();
        assert_eq!(sign(&key, ID, TS, BODY), SIG);
    }

    #[test]
    fn verifies_the_specification_example_and_rejects_tampering() {
        let key = decode_secret(SECRET).unwrap();
        assert!(verify(&key, ID, TS, BODY, &format!("v1,bm90IGl0 {SIG}")));
        assert!(!verify(&key, ID, TS + 1, BODY, SIG));
        assert!(!verify(&key, ID, TS, b"{}", SIG));
        assert!(!verify(&key, ID, TS, BODY, "v2,abc"));
    }

    #[test]
    fn rejects_secrets_that_are_not_base64() {
        assert!(decode_secret("whsec_!!!").is_err());
        assert!(decode_secret("whsec_").is_err());
    }
}
