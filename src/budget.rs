//! Byte budgets for what notifications carry, so no client can make a stored row or a webhook
//! body unboundedly large.
//!
//! An event may be as large as `server.max_body`, and a per-event notification echoes up to
//! `engine.max_events_per_message` events' objects. Without a byte budget, 20 prompt events of
//! 4 MiB made an 80 MiB outbox row — past the store's read limit, so alertd could not start
//! again. Two budgets apply, both in the pure engine logic and both keeping the true counts:
//!
//! - `engine.max_object_bytes`: one event's object larger than this is replaced by a *marker*
//!   that keeps its short scalar fields (`id`, `name`, …) and says it was truncated and how big
//!   it was (`{"id":…,"name":…,"truncated":true,"original_bytes":N}`; for an array, the first
//!   elements reduced that way and a final `{"truncated":true,"original_bytes":N,"omitted":k}`).
//! - `engine.max_message_bytes`: a bucket keeps events' objects while their total stays within
//!   it; later events are counted (`eventCount` stays true) but not listed, exactly as the
//!   `max_events_per_message` cap does. Destinations with a smaller limit of their own
//!   (PagerDuty: 512 KB) cut further with [`fit_items`].

use crate::rawjson::{self, Kind};
use serde_json::value::RawValue;

/// Longest string (and key) kept in a truncation marker.
const KEPT_SCALAR: usize = 256;

/// `object` (JSON text) if it fits in `budget` bytes, else its truncation marker (at most
/// `budget` bytes unless `budget` is tiny, and then at most a few hundred bytes). Read with the
/// bounded reader ([`crate::rawjson`]): no JSON tree is built, whatever the object holds.
pub fn fit_object(object: &str, budget: usize) -> std::borrow::Cow<'_, str> {
    if object.len() <= budget {
        return object.into();
    }
    let original = object.len();
    let Ok(raw) = serde_json::from_str::<&RawValue>(object) else {
        // Stored objects are validated JSON; anything else is replaced whole.
        return format!(r#"{{"truncated":true,"original_bytes":{original}}}"#).into();
    };
    let tail = |extra: String| format!(r#""truncated":true,"original_bytes":{original}{extra}}}"#);
    match rawjson::kind(raw) {
        Kind::Array => {
            let Ok((items, count)) = rawjson::elements(raw, 10_000) else {
                return format!(r#"[{{{}]"#, tail(String::new())).into();
            };
            let mut out = String::from("[");
            let mut kept = 0;
            let room = budget.saturating_sub(96);
            for item in items {
                let small = scalars_text(item, room.saturating_sub(out.len()) / 2);
                if out.len() + small.len() + 1 > room {
                    break;
                }
                out.push_str(&small);
                out.push(',');
                kept += 1;
            }
            out.push('{');
            out.push_str(&tail(format!(r#","omitted":{}"#, count - kept)));
            out.push(']');
            out.into()
        }
        Kind::Object => {
            let mut out = scalars_text(raw, budget.saturating_sub(64));
            out.pop();
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&tail(String::new()));
            out.into()
        }
        _ => format!("{{{}", tail(String::new())).into(),
    }
}

/// The short scalar fields of an object (in order) while they fit in `budget` bytes, as object
/// text; `{}` for anything else.
fn scalars_text(v: &RawValue, budget: usize) -> String {
    let mut out = String::from("{");
    if rawjson::kind(v) != Kind::Object {
        out.push('}');
        return out;
    }
    for (k, v) in rawjson::scalar_entries(v, KEPT_SCALAR).unwrap_or_default() {
        let key = serde_json::to_string(&k).expect("a string serialises");
        if out.len() + key.len() + v.get().len() + 3 > budget {
            break;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&key);
        out.push(':');
        out.push_str(v.get());
    }
    out.push('}');
    out
}

/// How many of `items` (JSON texts, in order) fit in `budget` bytes together.
pub fn items_within(items: &[String], budget: usize) -> usize {
    let mut used = 0usize;
    items
        .iter()
        .take_while(|i| {
            used += i.len() + 1;
            used <= budget
        })
        .count()
}

/// `items` cut so their texts fit in `budget` bytes: a destination's own limit. A cut list ends
/// with a marker saying how many were left out; `event_count` is untouched by the caller.
pub fn fit_items(items: &[String], budget: usize) -> Option<Vec<String>> {
    let total: usize = items.iter().map(|i| i.len() + 1).sum();
    if total <= budget {
        return None;
    }
    let marker_room = 96;
    let n = items_within(items, budget.saturating_sub(marker_room));
    let mut out: Vec<String> = items[..n].to_vec();
    out.push(
        serde_json::json!({"truncated": true, "omitted": items.len() - n, "reason": "message size limit"})
            .to_string(),
    );
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn small_objects_are_kept_verbatim() {
        assert_eq!(fit_object(r#"{"id":"p1"}"#, 100), r#"{"id":"p1"}"#);
    }

    #[test]
    fn a_large_object_becomes_a_marker_with_its_short_fields() {
        let big = serde_json::json!({"id": "p1", "name": "greeting", "template": "x".repeat(10_000), "version": 3});
        let text = big.to_string();
        let got: Value = serde_json::from_str(&fit_object(&text, 1024)).unwrap();
        assert_eq!(
            got,
            serde_json::json!({"id": "p1", "name": "greeting", "version": 3, "truncated": true, "original_bytes": text.len()})
        );
    }

    #[test]
    fn a_large_array_keeps_leading_elements_and_counts_the_rest() {
        let items: Vec<Value> = (0..1000)
            .map(|i| serde_json::json!({"id": format!("e{i}"), "name": "n", "blob": "y".repeat(300)}))
            .collect();
        let text = Value::Array(items).to_string();
        let out = fit_object(&text, 2048);
        assert!(out.len() <= 2048, "{}", out.len());
        let v: Vec<Value> = serde_json::from_str(&out).unwrap();
        let last = v.last().unwrap();
        assert_eq!(last["truncated"], true);
        assert_eq!(
            last["omitted"].as_u64().unwrap() as usize + v.len() - 1,
            1000
        );
        assert_eq!(v[0]["id"], "e0");
        assert_eq!(v[0]["name"], "n");
    }

    #[test]
    fn items_are_cut_to_a_budget_with_a_marker() {
        let items: Vec<String> = (0..10).map(|i| format!("{{\"i\":{i:0100}}}")).collect();
        assert!(fit_items(&items, 100_000).is_none());
        let cut = fit_items(&items, 500).unwrap();
        let total: usize = cut.iter().map(|i| i.len() + 1).sum();
        assert!(total <= 500, "{total}");
        let marker: Value = serde_json::from_str(cut.last().unwrap()).unwrap();
        assert_eq!(
            marker["omitted"].as_u64().unwrap() as usize,
            10 - (cut.len() - 1)
        );
    }
}
