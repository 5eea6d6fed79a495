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

/// Items of a sequence encoded one after another, without a format byte, and where each one
/// ends: a caller can then cut a long sequence into stored values of a bounded size (see
/// [`seq_into`]) without encoding anything twice.
pub fn encode_items<'a, T: Serialize + 'a>(
    items: impl IntoIterator<Item = &'a T>,
) -> (Vec<u8>, Vec<usize>) {
    let items = items.into_iter();
    let n = items.size_hint().0;
    // Sized for typical events (a trace event is ~130 bytes), so a single-event request's
    // encoding is not grown from nothing in six steps.
    let (mut out, mut ends) = (Vec::with_capacity(n * 192), Vec::with_capacity(n));
    for item in items {
        bincode::serde::encode_into_std_write(item, &mut out, bincode::config::standard())
            .expect("encoding into a Vec cannot fail for our plain data types");
        ends.push(out.len());
    }
    (out, ends)
}

/// Appends to `out` the value [`encode`] writes for a `Vec` of `count` items whose encodings
/// (from [`encode_items`]) are `items`, laid end to end.
pub fn seq_into(out: &mut Vec<u8>, count: usize, items: &[u8]) {
    seq_head(out, count);
    out.extend_from_slice(items);
}

/// Appends to `out` what [`encode`] writes for a `Vec` of `count` items before the items: the
/// caller then appends the items' encodings (from [`encode_items`]) one after another.
pub fn seq_head(out: &mut Vec<u8>, count: usize) {
    out.push(FORMAT_BINCODE2);
    // A sequence starts with its length, encoded as a u64 is.
    bincode::serde::encode_into_std_write(count as u64, out, bincode::config::standard())
        .expect("encoding into a Vec cannot fail");
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

    #[test]
    fn a_sequence_assembled_from_items_is_the_encoded_vec() {
        let all: Vec<String> = (0..300).map(|i| "x".repeat(i % 7)).collect();
        let (bytes, ends) = encode_items(&all);
        assert_eq!(ends.len(), all.len());
        // A cut in the middle, and a count past one varint byte.
        let cut = ends[99];
        let mut first = Vec::new();
        seq_into(&mut first, 100, &bytes[..cut]);
        assert_eq!(first, encode(&all[..100].to_vec()));
        let mut rest = Vec::new();
        seq_into(&mut rest, 200, &bytes[cut..]);
        assert_eq!(decode::<Vec<String>>(&rest).unwrap(), all[100..]);
        let mut whole = Vec::new();
        seq_into(&mut whole, 300, &bytes);
        assert_eq!(whole, encode(&all));
    }
}
