//! The inbox: accepted events awaiting every alert, stored as one row per journal commit
//! (per thousand events of it).
//!
//! A row per event cost a B-tree insert per event (a fifth of the CPU of batched ingest) and a
//! delete per event when pruned. A commit's events get consecutive sequence numbers, so they are
//! stored together: key = the last sequence number of the chunk, value = the first sequence
//! number (8 bytes, little endian) followed by the encoded events. Keying by the *last* number
//! makes "the chunk holding sequence `s` or the next one" a plain `range(s..)`, and the inbox's
//! last sequence number its last key.
//!
//! A chunk holds at most [`CHUNK_EVENTS`] events.
//!
//! Pruning deletes whole chunks at or below the point every alert has applied; a chunk that
//! straddles it stays until the alerts pass its end (readers skip what they have applied).

use super::{codec, decode, StoreError, META, META_LAST_SEQ};
use crate::event::Event;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

/// Schema ≥ 4: last sequence number of a chunk → first sequence number + encoded events.
pub(super) const INBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("inbox_chunks");
/// Schema ≤ 3: one row per event (sequence number → encoded event); migrated to chunks.
const OLD_INBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("inbox");

/// Most events in one chunk: large enough that the per-row cost vanishes, small enough that a
/// commit of several 8 MiB batches is not encoded into one buffer of their whole size.
const CHUNK_EVENTS: usize = 1_000;

/// Stores a commit's events (consecutive sequence numbers, in order) as chunks.
pub(super) fn insert<'a>(
    inbox: &mut redb::Table<u64, &'static [u8]>,
    stored: impl Iterator<Item = &'a (u64, Event)>,
) -> Result<(), StoreError> {
    let mut chunk: Vec<&(u64, Event)> = Vec::with_capacity(CHUNK_EVENTS);
    let mut flush = |chunk: &mut Vec<&(u64, Event)>| -> Result<(), StoreError> {
        if let (Some(first), Some(last)) = (chunk.first(), chunk.last()) {
            let value = encode_chunk(first.0, chunk.iter().map(|(_, e)| e));
            inbox.insert(last.0, value.as_slice())?;
        }
        chunk.clear();
        Ok(())
    };
    for row in stored {
        chunk.push(row);
        if chunk.len() == CHUNK_EVENTS {
            flush(&mut chunk)?;
        }
    }
    flush(&mut chunk)
}

/// One stored chunk's value.
pub(super) fn encode_chunk<'a>(first: u64, events: impl Iterator<Item = &'a Event>) -> Vec<u8> {
    let events: Vec<&Event> = events.collect();
    let body = codec::encode(&events);
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The first sequence number of a chunk, read without decoding its events.
fn chunk_first(value: &[u8]) -> Result<u64, StoreError> {
    let head: [u8; 8] =
        value
            .get(..8)
            .and_then(|h| h.try_into().ok())
            .ok_or(StoreError::Codec {
                table: "inbox_chunks",
                source: codec::CodecError::Empty,
            })?;
    Ok(u64::from_le_bytes(head))
}

/// A chunk's events with their sequence numbers; the count must match the key range.
fn decode_chunk(last: u64, value: &[u8]) -> Result<Vec<(u64, Event)>, StoreError> {
    let first = chunk_first(value)?;
    let events: Vec<Event> = decode("inbox_chunks", &value[8..])?;
    if first > last || events.len() as u64 != last - first + 1 {
        return Err(StoreError::Codec {
            table: "inbox_chunks",
            source: codec::CodecError::Decode(format!(
                "chunk {first}..={last} holds {} events",
                events.len()
            )),
        });
    }
    Ok((first..=last).zip(events).collect())
}

/// The last sequence number given out: the inbox's last key, or, when pruning emptied the
/// inbox, the floor pruning recorded. Appends do not write it, so a commit dirties no meta page.
pub(super) fn last_seq(
    meta: &impl ReadableTable<&'static str, u64>,
    inbox: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<u64, StoreError> {
    let floor = meta.get(META_LAST_SEQ)?.map(|v| v.value()).unwrap_or(0);
    let last = inbox.last()?.map(|(k, _)| k.value()).unwrap_or(0);
    Ok(floor.max(last))
}

/// Up to `limit` events with a sequence number above `after`, in order.
pub(super) fn read(
    inbox: &impl ReadableTable<u64, &'static [u8]>,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, Event)>, StoreError> {
    let mut out = Vec::new();
    for row in inbox.range(after.saturating_add(1)..)? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = row?;
        let room = limit - out.len();
        out.extend(
            decode_chunk(k.value(), v.value())?
                .into_iter()
                .filter(|(s, _)| *s > after)
                .take(room),
        );
    }
    Ok(out)
}

/// Events held (from the first chunk's first sequence number to the last).
pub(super) fn len(inbox: &impl ReadableTable<u64, &'static [u8]>) -> Result<u64, StoreError> {
    let Some((_, first)) = inbox.first()? else {
        return Ok(0);
    };
    let first = chunk_first(first.value())?;
    let last = inbox.last()?.map(|(k, _)| k.value()).unwrap_or(first);
    Ok(last + 1 - first)
}

/// Deletes whole chunks ending at or below `through`, about `max_events` events' worth at most;
/// true when none is left. Records the floor of the next sequence number first, so an emptied
/// inbox still knows where numbering goes on.
pub(super) fn prune(
    txn: &WriteTransaction,
    through: u64,
    max_events: usize,
) -> Result<bool, StoreError> {
    let mut inbox = txn.open_table(INBOX)?;
    let mut end = None;
    let mut events = 0usize;
    for row in inbox.range(..=through)? {
        let (k, v) = row?;
        let last = k.value();
        events += (last + 1).saturating_sub(chunk_first(v.value())?) as usize;
        end = Some(last);
        if events >= max_events {
            break;
        }
    }
    let Some(end) = end else {
        return Ok(true);
    };
    let mut meta = txn.open_table(META)?;
    if meta.get(META_LAST_SEQ)?.is_none_or(|v| v.value() < end) {
        meta.insert(META_LAST_SEQ, end)?;
    }
    inbox.retain_in(..=end, |_, _| false)?;
    let done = inbox.range(..=through)?.next().is_none();
    Ok(done)
}

/// 3 → 4: per-event rows become chunks of consecutive sequence numbers. A row that cannot be
/// decoded could never have been applied; it is logged and left out rather than refusing the file.
pub(super) fn migrate(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut chunks: Vec<Vec<(u64, Event)>> = Vec::new();
    {
        let old = txn.open_table(OLD_INBOX)?;
        for row in old.iter()? {
            let (k, v) = row?;
            let seq = k.value();
            let event = match decode::<Event>("inbox", v.value()) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(seq, error = %e, "an unreadable inbox row is dropped in the upgrade");
                    continue;
                }
            };
            match chunks.last_mut() {
                Some(c)
                    if c.len() < CHUNK_EVENTS && c.last().is_some_and(|(s, _)| s + 1 == seq) =>
                {
                    c.push((seq, event))
                }
                _ => chunks.push(vec![(seq, event)]),
            }
        }
    }
    {
        let mut inbox = txn.open_table(INBOX)?;
        for chunk in chunks {
            let (first, last) = (chunk[0].0, chunk[chunk.len() - 1].0);
            inbox.insert(
                last,
                encode_chunk(first, chunk.iter().map(|(_, e)| e)).as_slice(),
            )?;
        }
    }
    // Schema ≤ 3 wrote the last sequence number at every append; it stays as the floor.
    txn.delete_table(OLD_INBOX)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBody;
    use crate::store::{NewEvent, Store};

    fn event(id: &str) -> Event {
        Event {
            id: id.into(),
            workspace: "default".into(),
            project: Some("p".into()),
            project_id: None,
            timestamp_ms: 1_000,
            received_ms: 1_000,
            user: "system".into(),
            body: EventBody::Trace {
                trace_id: None,
                duration_s: None,
                cost: None,
                error: true,
            },
        }
    }

    fn new(id: &str) -> NewEvent {
        NewEvent {
            client_id: None,
            event: event(id),
        }
    }

    fn ids(rows: &[(u64, Event)]) -> Vec<(u64, String)> {
        rows.iter().map(|(s, e)| (*s, e.id.clone())).collect()
    }

    #[test]
    fn reads_cross_chunks_and_start_inside_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb")).unwrap();
        // Two commits: requests of 2 + 1 events, then one of 3.
        store
            .append(
                vec![vec![new("a"), new("b")], vec![new("c")]],
                1_000,
                60_000,
            )
            .unwrap();
        store
            .append(vec![vec![new("d"), new("e"), new("f")]], 1_000, 60_000)
            .unwrap();
        assert_eq!(store.last_seq().unwrap(), 6);
        assert_eq!(store.inbox_len().unwrap(), 6);
        let all = store.read_inbox(0, 100).unwrap();
        assert_eq!(
            ids(&all),
            ["a", "b", "c", "d", "e", "f"]
                .iter()
                .enumerate()
                .map(|(i, id)| (i as u64 + 1, id.to_string()))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            ids(&store.read_inbox(1, 2).unwrap()),
            [(2, "b".into()), (3, "c".into())]
        );
        assert_eq!(ids(&store.read_inbox(3, 1).unwrap()), [(4, "d".into())]);
        assert_eq!(ids(&store.read_inbox(5, 10).unwrap()), [(6, "f".into())]);
        assert!(store.read_inbox(6, 10).unwrap().is_empty());
    }

    #[test]
    fn pruning_keeps_a_straddling_chunk_and_numbering_survives_an_empty_inbox() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb")).unwrap();
        store
            .append(vec![vec![new("a"), new("b")]], 1_000, 60_000)
            .unwrap();
        store
            .append(vec![vec![new("c"), new("d")]], 1_000, 60_000)
            .unwrap();
        // Through 3: the chunk 1..=2 goes, 3..=4 straddles and stays.
        assert!(store.prune_step(3, 0, u64::MAX, 1_000).unwrap());
        assert_eq!(store.inbox_len().unwrap(), 2);
        assert_eq!(ids(&store.read_inbox(3, 10).unwrap()), [(4, "d".into())]);
        assert!(store.prune_step(4, 0, u64::MAX, 1_000).unwrap());
        assert_eq!(store.inbox_len().unwrap(), 0);
        assert_eq!(store.last_seq().unwrap(), 4, "the floor outlives the rows");
        drop(store);
        let store = Store::open(&dir.path().join("a.redb")).unwrap();
        let out = store.append(vec![vec![new("e")]], 1_000, 60_000).unwrap();
        assert_eq!(out[0].stored[0].0, 5);
    }

    #[test]
    fn a_large_commit_is_split_into_bounded_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb")).unwrap();
        let batch = (0..2_500).map(|i| new(&format!("e{i}"))).collect();
        store.append(vec![batch], 1_000, 60_000).unwrap();
        let rows = {
            let db = store.db().unwrap();
            let txn = redb::ReadableDatabase::begin_read(&*db).unwrap();
            let t = txn.open_table(INBOX).unwrap();
            t.iter()
                .unwrap()
                .map(|r| r.unwrap().0.value())
                .collect::<Vec<_>>()
        };
        assert_eq!(rows, [1_000, 2_000, 2_500]);
        assert_eq!(
            ids(&store.read_inbox(998, 3).unwrap()),
            [
                (999, "e998".into()),
                (1_000, "e999".into()),
                (1_001, "e1000".into())
            ]
        );
        assert_eq!(store.read_inbox(0, usize::MAX).unwrap().len(), 2_500);
    }

    #[test]
    fn pruning_goes_in_bounded_steps() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb")).unwrap();
        for i in 0..10 {
            store
                .append(vec![vec![new(&format!("e{i}"))]], 1_000, 60_000)
                .unwrap();
        }
        assert!(!store.prune_step(10, 0, u64::MAX, 4).unwrap());
        assert_eq!(store.inbox_len().unwrap(), 6);
        assert!(!store.prune_step(10, 0, u64::MAX, 4).unwrap());
        assert!(store.prune_step(10, 0, u64::MAX, 4).unwrap());
        assert_eq!(store.inbox_len().unwrap(), 0);
    }

    #[test]
    fn schema_3_rows_become_chunks_and_an_unreadable_one_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let t = db.begin_write().unwrap();
            {
                let mut meta = t.open_table(META).unwrap();
                meta.insert("schema_version", 3).unwrap();
                meta.insert(META_LAST_SEQ, 9).unwrap();
                let mut old = t.open_table(OLD_INBOX).unwrap();
                for seq in [4u64, 5, 6, 8, 9] {
                    old.insert(seq, codec::encode(&event(&format!("e{seq}"))).as_slice())
                        .unwrap();
                }
                old.insert(7, [1u8, 2, 3].as_slice()).unwrap();
            }
            t.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.last_seq().unwrap(), 9);
        assert_eq!(
            ids(&store.read_inbox(0, 100).unwrap()),
            [4, 5, 6, 8, 9].map(|s| (s, format!("e{s}")))
        );
        assert_eq!(ids(&store.read_inbox(5, 1).unwrap()), [(6, "e6".into())]);
        let out = store.append(vec![vec![new("x")]], 1_000, 60_000).unwrap();
        assert_eq!(out[0].stored[0].0, 10);
    }
}
