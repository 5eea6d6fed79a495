//! The one place stored values are encoded.
//!
//! Every value starts with a format byte so that swapping bincode for another format later is a
//! migration that can recognise old rows, not a rewrite. bincode is pinned to 2.0.1 (3.0.0 on
//! crates.io is an empty release); nothing outside this module names it.

use serde::{de::DeserializeOwned, Serialize};

/// Format byte of values written by this build: bincode 2 standard config via serde.
const FORMAT_BINCODE2: u8 = 1;

/// A stored value that cannot be decoded: foreign bytes, a newer format, or corruption.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty value")]
    Empty,
    #[error("unknown value format {0} (written by a newer alertd?)")]
    UnknownFormat(u8),
    #[error("undecodable value: {0}")]
    Decode(String),
}

/// Encodes `value` with the current format byte in front.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_BINCODE2];
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())
        .expect("encoding into a Vec cannot fail for our plain data types");
    out
}

/// Decodes a value written by [`encode`], rejecting trailing garbage.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&format, rest) = bytes.split_first().ok_or(CodecError::Empty)?;
    if format != FORMAT_BINCODE2 {
        return Err(CodecError::UnknownFormat(format));
    }
    let config = bincode::config::standard().with_limit::<{ 64 * 1024 * 1024 }>();
    let (value, used) = bincode::serde::decode_from_slice(rest, config)
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != rest.len() {
        return Err(CodecError::Decode(format!(
            "{} trailing bytes",
            rest.len() - used
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_bytes() {
        let v = (1u64, "x".to_string(), Some(2.5f64));
        let bytes = encode(&v);
        assert_eq!(decode::<(u64, String, Option<f64>)>(&bytes).unwrap(), v);
        assert!(matches!(decode::<u64>(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<u64>(&[9, 1]),
            Err(CodecError::UnknownFormat(9))
        ));
        assert!(decode::<(u64, String)>(&[1, 200]).is_err());
    }
}
