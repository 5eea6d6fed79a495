//! A request's events made ready for the commit thread on the request's own thread.
//!
//! Every append runs on one commit thread, and under batched ingest with client ids that
//! thread was the limit (issue 21: busy 86–90 %, 1.5 ms per 1,000-event request). Much of its
//! time went to touching each event once more after another core had parsed it: encoding it for
//! the inbox (a sixth of its samples), moving it into the outcome and again into an `Arc` for
//! the router (a tenth, mostly cache misses), reading its id for the failure bookkeeping and its
//! kind for the metrics. None of that depends on the commit, so [`Prepared::new`] does it where
//! the events were just parsed, in parallel with other requests; the commit thread then copies
//! encoded bytes and pointers, and touches an event only to look up its client id.

use super::{ClientId, KeyedRequest, NewEvent};
use crate::codec;
use crate::event::{id_print, kind_index, Event, KIND_NAMES};
use std::sync::Arc;

/// Requests with fewer events are encoded by the commit instead (see [`Prepared::encode`]).
const ENCODE_AHEAD: usize = 8;

/// One request, ready to commit (see the module doc). Built from the events and their group key
/// as [`KeyedRequest`] carries them.
#[derive(Debug)]
pub struct Prepared {
    pub(super) key: Option<String>,
    pub(super) events: Vec<Arc<Event>>,
    /// Each event's client id; empty when none has one (no lookups needed).
    pub(super) ids: Vec<Option<ClientId>>,
    /// The events encoded as the inbox stores them, one after another (see
    /// [`codec::encode_items`]), and where each ends.
    pub(super) bytes: Vec<u8>,
    pub(super) ends: Vec<usize>,
    /// Each event's [`id_print`] when the request may hold duplicates (a key or client ids):
    /// what tells its rows from its duplicates when a failed commit is checked.
    /// Shared, so the commit keeps them for that check without copying them.
    prints: Option<Arc<[u128]>>,
    /// How many events of each kind (indexed as [`KIND_NAMES`]), for the accepted-events
    /// metric.
    kinds: [u64; KIND_NAMES.len()],
}

impl Prepared {
    pub fn new(key: Option<String>, events: Vec<NewEvent>) -> Prepared {
        let (bytes, ends) = if events.len() >= ENCODE_AHEAD {
            codec::encode_items(events.iter().map(|e| &e.event))
        } else {
            Default::default()
        };
        let with_ids = events.iter().any(|e| e.client_id.is_some());
        let prints = (key.is_some() || with_ids)
            .then(|| events.iter().map(|e| id_print(&e.event.id)).collect());
        let mut kinds = [0; KIND_NAMES.len()];
        for e in &events {
            kinds[kind_index(&e.event)] += 1;
        }
        let mut ids = Vec::new();
        if with_ids {
            ids.reserve(events.len());
        }
        let events = events
            .into_iter()
            .map(|e| {
                if with_ids {
                    ids.push(e.client_id);
                }
                Arc::new(e.event)
            })
            .collect();
        Prepared {
            key,
            events,
            ids,
            bytes,
            ends,
            prints,
            kinds,
        }
    }

    /// Events in the request.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn events(&self) -> &[Arc<Event>] {
        &self.events
    }

    /// See the field.
    pub fn prints(&self) -> Option<&Arc<[u128]>> {
        self.prints.as_ref()
    }

    /// Events of each kind in the request (all of them, duplicates included), by name.
    pub fn kinds(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        KIND_NAMES
            .iter()
            .zip(self.kinds)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (*k, n))
    }

    /// [`Prepared::kinds`] as counts indexed as [`KIND_NAMES`].
    pub fn kind_counts(&self) -> [u64; KIND_NAMES.len()] {
        self.kinds
    }

    /// Encodes the events if [`Prepared::new`] left it to the commit (a small request).
    pub(super) fn encode(&mut self) {
        if self.ends.len() != self.events.len() {
            (self.bytes, self.ends) = codec::encode_items(self.events.iter().map(|e| &**e));
        }
    }

    /// Event `i`'s encoding (after [`Prepared::encode`]).
    pub(super) fn encoded(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Whether committing needs the id tables (a group key or client ids).
    pub(super) fn has_ids(&self) -> bool {
        self.key.is_some() || !self.ids.is_empty()
    }
}

impl From<KeyedRequest> for Prepared {
    fn from(r: KeyedRequest) -> Prepared {
        Prepared::new(r.key, r.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keyed::tests::event;

    #[test]
    fn each_event_is_encoded_as_the_inbox_stores_it() {
        let events: Vec<NewEvent> = (0..ENCODE_AHEAD)
            .map(|i| {
                event(
                    if i % 2 == 0 { "w" } else { "v" },
                    Some("a").filter(|_| i == 1),
                )
            })
            .collect();
        let p = Prepared::new(None, events.clone());
        assert_eq!(p.ends.len(), ENCODE_AHEAD, "encoded where it was prepared");
        for (i, e) in events.iter().enumerate() {
            let mut one = Vec::new();
            codec::seq_into(&mut one, 1, p.encoded(i));
            let back: Vec<Event> = codec::decode(&one).unwrap();
            assert_eq!(back, vec![e.event.clone()]);
        }
        assert_eq!(
            p.ids.len(),
            ENCODE_AHEAD,
            "one slot per event once any has an id"
        );
        assert!(p.has_ids() && p.prints().is_some());
        assert_eq!(
            p.kinds().collect::<Vec<_>>(),
            vec![("trace", ENCODE_AHEAD as u64)]
        );
    }

    #[test]
    fn a_small_request_is_encoded_by_the_commit_as_a_large_one_is_ahead() {
        let events: Vec<NewEvent> = (0..ENCODE_AHEAD).map(|_| event("w", None)).collect();
        let ahead = Prepared::new(None, events.clone());
        let mut small = Prepared::new(None, events[..2].to_vec());
        assert!(small.ends.is_empty(), "left to the commit");
        small.encode();
        assert_eq!(small.encoded(1), ahead.encoded(1));
        let before = small.bytes.clone();
        small.encode();
        assert_eq!(small.bytes, before, "encoded once");
    }

    #[test]
    fn a_request_without_ids_or_key_needs_no_lookups() {
        let p = Prepared::new(None, vec![event("w", None), event("w", None)]);
        assert!(p.ids.is_empty() && !p.has_ids() && p.prints().is_none());
        let keyed = Prepared::new(Some("k".into()), vec![event("w", None)]);
        assert!(keyed.has_ids() && keyed.prints().is_some());
    }
}
