//! Appends de-duplicated by one id per group of events: a log message, not each event in it.
//!
//! A NATS message is the unit a log redelivers, so one remembered id per message is enough to
//! count a redelivered message once, provided the message's events are stored together: all of
//! them in the same transaction, or none. [`Store::append_keyed`] does that. A 1,000-event
//! message then costs one id lookup and one id row instead of a thousand; with one id per event
//! those random-key reads and inserts were most of the source's CPU (issue 16).
//!
//! The ids live in the same tables, under the same hash of workspace + id, as the client ids of
//! [`Store::append`]: a message key and an event's client id share one namespace (a single-event
//! message keyed `X` and an HTTP event with `id` `X` in the same workspace are the same event,
//! as they were when the key was the event's client id).

use super::wal::Body;
use super::{
    durable, AppendOutcome, NewEvent, Prepared, Store, StoreError, INBOX, META, META_WAL_LSN,
};
use redb::Durability;
use std::sync::atomic::Ordering;

/// One group of events appended as a whole, de-duplicated by `key` when it is given.
#[derive(Debug, Clone)]
pub struct KeyedRequest {
    /// The group's id (e.g. the message's `Nats-Msg-Id`), remembered for the de-duplication
    /// window under the first event's workspace; `None` = the events' own client ids only.
    pub key: Option<String>,
    pub events: Vec<NewEvent>,
}

impl Store {
    /// Appends groups of events in one transaction, durable when this returns, like
    /// [`Store::append`], with one de-duplication id per group: a group whose key was seen
    /// within the window is dropped whole (counted as duplicates); otherwise its key is
    /// remembered and its events are stored, except those whose own client id is a duplicate.
    /// A group without a key is exactly an `append` request.
    ///
    /// A key is also looked up as `<key>#<n>` for the first event `n` without its own id (never
    /// written): the previous release remembered a multi-event message by one id per event, so
    /// a message it committed but did not ack is still recognised when it is redelivered to this
    /// release.
    pub fn append_keyed(
        &self,
        requests: Vec<KeyedRequest>,
        now_ms: i64,
        dedup_window_ms: i64,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let requests = requests.into_iter().map(Prepared::from).collect();
        self.append_prepared(requests, now_ms, dedup_window_ms)
    }

    /// [`Store::append_keyed`] for requests already prepared on their own threads (see
    /// [`Prepared`]): what the journal's commit thread calls.
    pub fn append_prepared(
        &self,
        requests: Vec<Prepared>,
        now_ms: i64,
        dedup_window_ms: i64,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let _w = super::written::attribute("append");
        let r = self.with_db(|db| {
            // Held from the transaction to the log write: records go in commit order.
            let mut wal = self.inner.wal.lock().expect("wal lock is never poisoned");
            wal.restart_if_covered(self.inner.durable_lsn.load(Ordering::Acquire));
            let mut requests = match self.append_to_tail(db, &mut wal, requests)? {
                Ok(outcomes) => {
                    self.inner.last_append_ms.store(now_ms, Ordering::Release);
                    return Ok(outcomes);
                }
                Err(requests) => requests,
            };
            let lsn = wal.next_lsn();
            let mut log = Body::default();
            let mut txn = db.begin_write()?;
            let mut outcomes = Vec::with_capacity(requests.len());
            // Each stored event's sequence number and encoding, in order.
            let mut rows: Vec<(u64, &[u8])> = Vec::new();
            let (ids, direct, seq) = {
                let mut meta = txn.open_table(META)?;
                let mut inbox = txn.open_table(INBOX)?;
                // The tail's rows first: they were acknowledged before these.
                wal.tail.insert_into(&mut inbox, &mut meta)?;
                let mut seq = super::inbox::last_seq(&meta, &inbox)?;
                let mut ids = self.inner.ids.batch(&txn, now_ms, dedup_window_ms);
                // Taken out, so they move into the outcomes while the encodings stay borrowed.
                let taken: Vec<_> = requests
                    .iter_mut()
                    .map(|r| {
                        r.encode();
                        std::mem::take(&mut r.events)
                    })
                    .collect();
                for (request, events) in requests.iter().zip(taken) {
                    let mut outcome = AppendOutcome::default();
                    if let (Some(key), Some(first)) = (&request.key, events.first()) {
                        let ws = &first.workspace;
                        // The previous release's id of the first event without its own id.
                        let old = (events.len() > 1)
                            .then(|| {
                                (0..events.len()).find(|&i| {
                                    request.ids.get(i).is_none_or(|id| id.is_none())
                                })
                            })
                            .flatten();
                        let earlier = match old {
                            Some(i) => ids.was_seen(ws, &format!("{key}#{}", i + 1))?,
                            None => false,
                        };
                        if earlier || ids.is_duplicate(ws, key)? {
                            outcome.duplicates = events.len();
                            outcomes.push(outcome);
                            continue;
                        }
                    }
                    outcome.stored.reserve(events.len());
                    ids.warm(request.ids.iter().flatten());
                    for (i, event) in events.into_iter().enumerate() {
                        if let Some(Some(cid)) = request.ids.get(i) {
                            if ids.is_duplicate_id(cid)? {
                                outcome.duplicates += 1;
                                continue;
                            }
                        }
                        seq += 1;
                        outcome.stored.push((seq, event));
                        rows.push((seq, request.encoded(i)));
                    }
                    outcomes.push(outcome);
                }
                super::inbox::insert(&mut inbox, &rows, &mut log)?;
                let ids = ids.write_log(&mut log)?;
                // Small commits are made durable by the append log, large ones by redb (see
                // [`super::wal`]); one that inserted nothing needs neither. Only a logged one
                // takes an LSN (a large one writes no meta row, so its commit dirties no meta
                // page).
                let logged = !log.is_empty() && wal.fits(&log);
                if logged {
                    meta.insert(META_WAL_LSN, lsn)?;
                }
                (ids, !log.is_empty() && !logged, seq)
            };
            txn.set_durability(if direct {
                Durability::Immediate
            } else {
                Durability::None
            })?;
            txn.commit()?;
            wal.tail.clear();
            self.inner.tail_pending.store(false, Ordering::Release);
            wal.last_seq = Some(seq);
            if direct {
                // It holds every commit before it, so every record logged.
                self.inner.durable_lsn.fetch_max(lsn - 1, Ordering::AcqRel);
                wal.committed_durably(false);
            } else if !log.is_empty() {
                if let Err(e) = wal.append(&log) {
                    // The rows are committed but not durable: a durable commit makes them so;
                    // if that fails too, the error reopens the file, which keeps only what
                    // was durable (the log's whole records included).
                    tracing::warn!(error = %e, "append log write failed; committing durably instead");
                    durable(db)?.commit()?;
                    self.inner.durable_lsn.fetch_max(lsn, Ordering::AcqRel);
                    wal.committed_durably(true);
                }
            }
            ids.committed();
            self.inner.last_append_ms.store(now_ms, Ordering::Release);
            Ok(outcomes)
        });
        // Sealing lags far behind (the background thread is starved): catch up here, so
        // unsealed ids stay bounded in memory. The events are stored whatever happens.
        if let Err(e) = self.seal_until(super::ids::MAX_FROZEN) {
            tracing::warn!(error = %e, "sealing remembered client ids failed");
        }
        r
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::event::{Event, EventBody};
    use crate::store::ClientId;

    const NOW: i64 = 1_780_000_000_000;
    const WINDOW: i64 = 600_000;

    /// A trace event of workspace `workspace` (other store tests build theirs with it).
    pub(in crate::store) fn event(workspace: &str, client_id: Option<&str>) -> NewEvent {
        NewEvent {
            client_id: client_id.map(|id| ClientId::new(workspace, id)),
            event: Event {
                id: uuid::Uuid::now_v7().to_string(),
                workspace: workspace.into(),
                project: Some("p".into()),
                project_id: None,
                timestamp_ms: NOW,
                received_ms: NOW,
                user: "system".into(),
                body: EventBody::Trace {
                    trace_id: None,
                    duration_s: None,
                    cost: Some(1.0),
                    error: false,
                },
            },
        }
    }

    fn group(key: Option<&str>, n: usize) -> KeyedRequest {
        KeyedRequest {
            key: key.map(str::to_string),
            events: (0..n).map(|_| event("w", None)).collect(),
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("alertd.redb")).unwrap();
        (dir, store)
    }

    fn counts(o: &[AppendOutcome]) -> Vec<(usize, usize)> {
        o.iter().map(|o| (o.stored.len(), o.duplicates)).collect()
    }

    #[test]
    fn a_keyed_group_is_stored_whole_once_and_dropped_whole_after() {
        let (_d, s) = store();
        let first = s
            .append_keyed(vec![group(Some("S:1"), 1000), group(None, 2)], NOW, WINDOW)
            .unwrap();
        assert_eq!(counts(&first), vec![(1000, 0), (2, 0)]);
        let seqs: Vec<u64> = first
            .iter()
            .flat_map(|o| o.stored.iter().map(|r| r.0))
            .collect();
        assert_eq!(seqs, (1..=1002).collect::<Vec<_>>());
        // Redelivered (twice in one commit, and once more later): counted once.
        let again = s
            .append_keyed(
                vec![
                    group(Some("S:1"), 1000),
                    group(Some("S:2"), 3),
                    group(Some("S:2"), 3),
                ],
                NOW + 1,
                WINDOW,
            )
            .unwrap();
        assert_eq!(counts(&again), vec![(0, 1000), (3, 0), (0, 3)]);
        assert_eq!(s.last_seq().unwrap(), 1005);
        // After the window the key is forgotten.
        let late = s
            .append_keyed(vec![group(Some("S:1"), 1)], NOW + WINDOW + 1, WINDOW)
            .unwrap();
        assert_eq!(counts(&late), vec![(1, 0)]);
    }

    #[test]
    fn events_with_their_own_ids_are_still_deduplicated_one_by_one() {
        let (_d, s) = store();
        s.append(vec![vec![event("w", Some("mine"))]], NOW, WINDOW)
            .unwrap();
        let r = KeyedRequest {
            key: Some("m-1".into()),
            events: vec![
                event("w", None),
                event("w", Some("mine")),
                event("w", Some("new")),
            ],
        };
        let o = s.append_keyed(vec![r], NOW, WINDOW).unwrap();
        assert_eq!(counts(&o), vec![(2, 1)]);
    }

    #[test]
    fn keys_share_the_client_id_namespace_of_append() {
        let (_d, s) = store();
        // An HTTP event with id X, then a one-event message keyed X: the same event.
        s.append(vec![vec![event("w", Some("X"))]], NOW, WINDOW)
            .unwrap();
        let o = s
            .append_keyed(vec![group(Some("X"), 1)], NOW, WINDOW)
            .unwrap();
        assert_eq!(counts(&o), vec![(0, 1)]);
        // And the other way round; another workspace is another namespace.
        s.append_keyed(vec![group(Some("Y"), 1)], NOW, WINDOW)
            .unwrap();
        let o = s
            .append(
                vec![vec![event("w", Some("Y")), event("v", Some("Y"))]],
                NOW,
                WINDOW,
            )
            .unwrap();
        assert_eq!((o[0].stored.len(), o[0].duplicates), (1, 1));
    }

    #[test]
    fn a_message_stored_with_per_event_ids_by_the_previous_release_is_recognised() {
        let (_d, s) = store();
        // The previous release: events of message S:9 remembered as S:9#1, S:9#2, …
        let old: Vec<NewEvent> = (1..=3)
            .map(|n| event("w", Some(&format!("S:9#{n}"))))
            .collect();
        s.append(vec![old], NOW, WINDOW).unwrap();
        let o = s
            .append_keyed(vec![group(Some("S:9"), 3)], NOW + 5, WINDOW)
            .unwrap();
        assert_eq!(counts(&o), vec![(0, 3)]);
        // When the first event had its own id, the second was remembered as S:8#2.
        let old = vec![event("w", Some("own")), event("w", Some("S:8#2"))];
        s.append(vec![old], NOW, WINDOW).unwrap();
        let again = KeyedRequest {
            key: Some("S:8".into()),
            events: vec![event("w", Some("own")), event("w", None)],
        };
        let o = s.append_keyed(vec![again], NOW + 5, WINDOW).unwrap();
        assert_eq!(counts(&o), vec![(0, 2)]);
    }
}
