//! Reading untrusted JSON without building it in memory.
//!
//! `serde_json::Value` costs 32 bytes or more per element, so an 8 MiB `[0,0,…]` body grows to
//! ~300 MiB before a count check can look at it. Here limits act *while* parsing: a body is split
//! into elements borrowed from the request bytes (no copy), the split stops at the first element
//! past the limit, an event's fields are picked out by name with everything else skipped unread
//! ([`IgnoredAny`] allocates nothing), and nested objects are kept as their (minified) text. The
//! only memory that grows with the body is one pointer per accepted element and the text the
//! events keep.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer as _;
use serde_json::value::RawValue;
use std::cell::Cell;
use std::fmt;

/// The JSON type of a value, read from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    /// The type in words, for error messages ("got an array").
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        }
    }
}

/// The type of a valid raw value. Its first byte tells: serde_json's `RawValue` never holds
/// the whitespace around a value, whether read from a document or made by
/// `RawValue::from_string` (`raw_values_hold_no_surrounding_whitespace` pins this), and this
/// runs several times per event field.
pub fn kind(raw: &RawValue) -> Kind {
    match raw.get().as_bytes().first() {
        Some(b'n') => Kind::Null,
        Some(b't') | Some(b'f') => Kind::Bool,
        Some(b'"') => Kind::String,
        Some(b'[') => Kind::Array,
        Some(b'{') => Kind::Object,
        _ => Kind::Number,
    }
}

/// Why a body could not be split.
#[derive(Debug)]
pub enum SplitError {
    /// More than the allowed number of elements; the rest was not read.
    TooMany,
    /// Not valid JSON.
    Invalid(serde_json::Error),
}

/// The elements of a top-level array, or the one value when the body is not an array, borrowed
/// from `body`. Refuses at the `max + 1`-th element without reading further.
pub fn split_top(body: &[u8], max: usize) -> Result<Vec<&RawValue>, SplitError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let mut de = serde_json::Deserializer::from_slice(body);
    let out = if first == Some(&b'[') {
        let too_many = Cell::new(false);
        match de.deserialize_seq(Bounded {
            max,
            too_many: &too_many,
        }) {
            Ok(v) => v,
            Err(_) if too_many.get() => return Err(SplitError::TooMany),
            Err(e) => return Err(SplitError::Invalid(e)),
        }
    } else {
        vec![<&RawValue as serde::Deserialize>::deserialize(&mut de).map_err(SplitError::Invalid)?]
    };
    de.end().map_err(SplitError::Invalid)?;
    Ok(out)
}

/// One value, borrowed from `bytes` (an NDJSON line).
pub fn one(bytes: &[u8]) -> Result<&RawValue, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// The values of the keys `names` in the object on one NDJSON line, read in one pass: [`one`]
/// then [`fields`] read every byte twice, and the first read was 11.6 % of alertd's CPU under
/// batched ingest (`bench/profile.sh batch`). The line is checked as UTF-8 whole (so a bad
/// byte in a skipped field is refused as before) and must hold exactly one value.
///
/// `None` when the line is not one JSON object: the caller reads it with [`one`], whose error
/// (or value) says what is wrong in the words it always used.
pub fn line_fields<'a>(
    line: &'a [u8],
    names: &'static [&'static str],
) -> Option<Vec<Option<&'a RawValue>>> {
    let text = std::str::from_utf8(line).ok()?;
    if text.trim_start().as_bytes().first() != Some(&b'{') {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = de.deserialize_map(Fields { names }).ok()?;
    de.end().ok()?;
    Some(fields)
}

struct Bounded<'c> {
    max: usize,
    too_many: &'c Cell<bool>,
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<&'de RawValue>()? {
            if out.len() == self.max {
                self.too_many.set(true);
                return Err(de::Error::custom("too many elements"));
            }
            out.push(v);
        }
        Ok(out)
    }
}

/// The values of the keys `names` in the JSON object `raw` (index-aligned; `None` when absent),
/// every other key skipped unread. A key given twice keeps its last value, as `Value` would.
/// `raw` must be an object (check with [`kind`] first).
pub fn fields<'a>(
    raw: &'a RawValue,
    names: &'static [&'static str],
) -> Result<Vec<Option<&'a RawValue>>, String> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_map(Fields { names })
        .map_err(|e| format!("invalid JSON: {e}"))
}

struct Fields {
    names: &'static [&'static str],
}

impl<'de> Visitor<'de> for Fields {
    type Value = Vec<Option<&'de RawValue>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = vec![None; self.names.len()];
        while let Some(slot) = map.next_key_seed(KeySlot(self.names))? {
            match slot {
                Some(i) => out[i] = Some(map.next_value::<&'de RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// A key, read as its position in a list of names (no allocation for keys without escapes).
struct KeySlot(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySlot {
    type Value = Option<usize>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySlot {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|n| *n == v))
    }
}

/// Checks that the array `raw` is non-empty and holds only objects, without keeping them.
/// `Err(Some(i))`: element `i` is not an object; `Err(None)`: the array is empty.
pub fn objects_in(raw: &RawValue) -> Result<usize, Option<usize>> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let bad = Cell::new(None);
    match de.deserialize_seq(ObjectsOnly(&bad)) {
        Ok(0) => Err(None),
        Ok(n) => Ok(n),
        Err(_) => Err(Some(bad.get().unwrap_or(0))),
    }
}

struct ObjectsOnly<'c>(&'c Cell<Option<usize>>);

impl<'de> Visitor<'de> for ObjectsOnly<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while let Some(v) = seq.next_element::<&'de RawValue>()? {
            if kind(v) != Kind::Object {
                self.0.set(Some(n));
                return Err(de::Error::custom("not an object"));
            }
            n += 1;
        }
        Ok(n)
    }
}

/// `raw` (valid JSON) without insignificant whitespace: what receivers get back, whatever
/// spacing the sender used, without parsing it into a tree.
pub fn minify(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in raw.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// The entries of the JSON object `raw` whose values are scalars (strings up to `max_string`
/// bytes, numbers, booleans, null), in order, as (key, raw value); everything else is skipped
/// unread. `raw` must be an object.
pub fn scalar_entries(
    raw: &RawValue,
    max_string: usize,
) -> Result<Vec<(String, &RawValue)>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_map(Scalars { max_string })
}

struct Scalars {
    max_string: usize,
}

impl<'de> Visitor<'de> for Scalars {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key_seed(ShortKey(self.max_string))? {
            let v = map.next_value::<&'de RawValue>()?;
            let keep = match kind(v) {
                Kind::Array | Kind::Object => false,
                Kind::String => v.get().len() <= self.max_string + 2,
                _ => true,
            };
            if let (Some(k), true) = (k, keep) {
                out.push((k, v));
            }
        }
        Ok(out)
    }
}

/// A key, kept only when at most this long.
struct ShortKey(usize);

impl<'de> DeserializeSeed<'de> for ShortKey {
    type Value = Option<String>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for ShortKey {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok((v.len() <= self.0).then(|| v.to_string()))
    }
}

/// The elements of the JSON array `raw`, borrowed, at most `max` (more are skipped unread);
/// also returns the true count.
pub fn elements(raw: &RawValue, max: usize) -> Result<(Vec<&RawValue>, usize), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_seq(Elements { max })
}

struct Elements {
    max: usize,
}

impl<'de> Visitor<'de> for Elements {
    type Value = (Vec<&'de RawValue>, usize);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        let mut n = 0;
        while n < self.max {
            match seq.next_element::<&'de RawValue>()? {
                Some(v) => out.push(v),
                None => return Ok((out, n)),
            }
            n += 1;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok((out, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`kind`] reads a raw value's first byte: every way this crate gets a `RawValue` must
    /// leave out the whitespace around it.
    #[test]
    fn raw_values_hold_no_surrounding_whitespace() {
        let spaced = " \t\r\n {\"a\" : \t \"x\" \n, \"b\":\n[ 1 ] , \"c\":  null  }\n ";
        let whole = one(spaced.as_bytes()).unwrap();
        assert!(whole.get().starts_with('{') && whole.get().ends_with('}'));
        let f = fields(whole, &["a", "b", "c"]).unwrap();
        let got: Vec<&str> = f.iter().map(|v| v.unwrap().get()).collect();
        assert_eq!(got, ["\"x\"", "[ 1 ]", "null"]);
        let line = line_fields(spaced.trim().as_bytes(), &["a", "b", "c"]).unwrap();
        assert_eq!(
            line.iter().map(|v| v.unwrap().get()).collect::<Vec<_>>(),
            got
        );
        let items = split_top(b" [ \n 7 , \"s\"\t, {} ] ", 10).unwrap();
        assert_eq!(
            items.iter().map(|v| v.get()).collect::<Vec<_>>(),
            ["7", "\"s\"", "{}"]
        );
        let owned = RawValue::from_string("  \n[1]\t ".to_string()).unwrap();
        assert_eq!(owned.get(), "[1]");
        let kinds: Vec<Kind> = f.iter().map(|v| kind(v.unwrap())).collect();
        assert_eq!(kinds, [Kind::String, Kind::Array, Kind::Null]);
    }

    #[test]
    fn split_stops_at_the_limit_and_keeps_elements_borrowed() {
        let body = b" [ {\"a\":1} , 2 ,\"x\" ] ";
        let v = split_top(body, 3).unwrap();
        assert_eq!(
            v.iter().map(|r| r.get()).collect::<Vec<_>>(),
            ["{\"a\":1}", "2", "\"x\""]
        );
        assert!(matches!(split_top(body, 2), Err(SplitError::TooMany)));
        // Past the limit the rest is not even read: invalid JSON there is not reported.
        assert!(matches!(
            split_top(b"[1,2,3,oops", 2),
            Err(SplitError::TooMany)
        ));
        assert!(matches!(split_top(b"[1,2", 5), Err(SplitError::Invalid(_))));
        assert!(matches!(
            split_top(b"{} {}", 5),
            Err(SplitError::Invalid(_))
        ));
        assert_eq!(split_top(b"{\"k\":1}", 1).unwrap().len(), 1);
    }

    #[test]
    fn fields_picks_named_keys_and_skips_the_rest() {
        let raw: &RawValue =
            serde_json::from_str(r#"{"kind":"t","junk":[[1,{"x":2}]],"id":"a","kind":"u"}"#)
                .unwrap();
        let f = fields(raw, &["kind", "id", "user"]).unwrap();
        assert_eq!(f[0].unwrap().get(), "\"u\"", "the last duplicate wins");
        assert_eq!(f[1].unwrap().get(), "\"a\"");
        assert!(f[2].is_none());
    }

    #[test]
    fn objects_in_names_the_first_non_object() {
        let raw: &RawValue = serde_json::from_str(r#"[{}, {"a":1}, 3]"#).unwrap();
        assert_eq!(objects_in(raw), Err(Some(2)));
        let raw: &RawValue = serde_json::from_str("[]").unwrap();
        assert_eq!(objects_in(raw), Err(None));
        let raw: &RawValue = serde_json::from_str(r#"[{}, {"a":[1]}]"#).unwrap();
        assert_eq!(objects_in(raw), Ok(2));
    }

    #[test]
    fn minify_drops_whitespace_outside_strings_only() {
        assert_eq!(
            minify("{ \"a b\" : [1, 2],\n\t\"c\\\" d\": \" x \" }"),
            "{\"a b\":[1,2],\"c\\\" d\":\" x \"}"
        );
    }
}
