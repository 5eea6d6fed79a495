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
//! A chunk holds at most [`CHUNK_EVENTS`] events, and a commit's events are cut into chunks
//! that fill their leaf pages (see [`chunk_target`]): when redb writes them (a durable commit
//! before they are pruned; small commits are otherwise made durable by the append log, see
//! [`super::wal`]), a chunk that half-fills a page twice its size doubles what they cost.
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

/// redb's page size (4 KiB in every file it creates; not configurable).
const PAGE: usize = 4096;
/// What a leaf holding one chunk spends besides the value: page header (4), the value's length
/// (4) and the u64 key (8).
const LEAF_OVERHEAD: usize = 16;
/// Commits up to this many bytes (a 64 KiB page's worth) are cut into chunks that fill their
/// pages; larger ones are stored in chunks of [`CHUNK_EVENTS`] as they come, where the rounding
/// of the last page matters little (and cutting them into 64 KiB chunks made the bench's data
/// file a third larger after a batched burst).
const MAX_CUT: usize = 64 * 1024 - LEAF_OVERHEAD;
/// A chunk's value before its events: first sequence number (8), format byte (1), event count
/// (at most 3 bytes for up to [`CHUNK_EVENTS`]).
const CHUNK_HEAD: usize = 12;

/// The most value bytes of the next chunk when `remaining` bytes (heads included) are left to
/// store: the largest page that the rest fills completely, or no limit above [`MAX_CUT`].
///
/// redb gives a value larger than a page a leaf of its own whose size is the next power of two
/// pages, and writes all of it at the commit: a 9.5 KB chunk (a 15-event request) took a
/// 16 KiB leaf. Cut to fill their pages, it takes an 8 and a 4 KiB leaf.
fn chunk_target(remaining: usize) -> usize {
    if remaining > MAX_CUT {
        return usize::MAX;
    }
    let mut page = PAGE;
    while 2 * page - LEAF_OVERHEAD <= remaining {
        page *= 2;
    }
    page - LEAF_OVERHEAD
}

/// Stores a commit's events (consecutive sequence numbers, in order, each with its encoding
/// from [`codec::encode_items`]) as chunks sized to fill their leaf pages (see
/// [`chunk_target`]).
pub(super) fn insert(
    inbox: &mut redb::Table<u64, &'static [u8]>,
    rows: &[(u64, &[u8])],
    log: &mut super::wal::Body,
) -> Result<(), StoreError> {
    chunk_rows(rows, |key, value| {
        inbox.insert(key, super::counted("inbox", value))?;
        log.row(super::wal::Table::Inbox, key, value);
        Ok(())
    })
}

/// [`insert`] for events not encoded yet: the upgrade from one row per event.
pub(super) fn insert_events(
    inbox: &mut redb::Table<u64, &'static [u8]>,
    events: &[(u64, Event)],
    log: &mut super::wal::Body,
) -> Result<(), StoreError> {
    let (bytes, ends) = codec::encode_items(events.iter().map(|(_, e)| e));
    let rows: Vec<(u64, &[u8])> = events
        .iter()
        .zip(&ends)
        .scan(0, |start, ((seq, _), &end)| {
            let row = (*seq, &bytes[*start..end]);
            *start = end;
            Some(row)
        })
        .collect();
    insert(inbox, &rows, log)
}

/// Cuts a commit's encoded events into chunk rows (key = the chunk's last sequence number) and
/// hands each to `emit`.
pub(super) fn chunk_rows(
    rows: &[(u64, &[u8])],
    mut emit: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut value = Vec::new();
    let mut ends = Vec::with_capacity(rows.len().min(CHUNK_EVENTS));
    for window in rows.chunks(CHUNK_EVENTS) {
        // Where each event's encoding ends, as if the window's were laid end to end.
        ends.clear();
        let mut total = 0;
        for (_, bytes) in window {
            total += bytes.len();
            ends.push(total);
        }
        let mut start = 0;
        while start < window.len() {
            let begin = if start == 0 { 0 } else { ends[start - 1] };
            let target = chunk_target(CHUNK_HEAD + total - begin);
            // At least one event, however large.
            let mut end = start + 1;
            while end < window.len() && CHUNK_HEAD + ends[end] - begin <= target {
                end += 1;
            }
            value.clear();
            value.extend_from_slice(&window[start].0.to_le_bytes());
            codec::seq_head(&mut value, end - start);
            for (_, bytes) in &window[start..end] {
                value.extend_from_slice(bytes);
            }
            emit(window[end - 1].0, &value)?;
            start = end;
        }
    }
    Ok(())
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
            insert_events(&mut inbox, &chunk, &mut Default::default())?;
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
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (chunk_first(v.value()).unwrap(), k.value(), v.value().len())
                })
                .collect::<Vec<_>>()
        };
        // Consecutive chunks covering 1..=2500.
        assert_eq!(rows.first().unwrap().0, 1);
        assert_eq!(rows.last().unwrap().1, 2_500);
        for pair in rows.windows(2) {
            assert_eq!(pair[0].1 + 1, pair[1].0);
        }
        // Windows of 1,000 events (35 KB of these small events), each cut to fill its pages.
        let ends: Vec<u64> = rows.iter().map(|r| r.1).collect();
        assert!(ends.contains(&1_000) && ends.contains(&2_000), "{rows:?}");
        for (first, last, len) in &rows {
            assert!(last - first < CHUNK_EVENTS as u64);
            assert!(
                len + LEAF_OVERHEAD <= MAX_CUT,
                "{first}..={last}: {len} bytes"
            );
        }
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

    /// A guardrail event of the `perevent` bench: 500 bytes of details, 633 bytes encoded.
    fn guardrail(n: usize) -> (u64, Event) {
        let head = format!("match {n}: ");
        let filler: String = "lorem ipsum dolor sit amet "
            .chars()
            .cycle()
            .take(500 - 14 - head.len())
            .collect();
        let mut e = event(&uuid::Uuid::now_v7().to_string());
        e.body = EventBody::Guardrail {
            trace_id: Some(format!("g-{n}")),
            failed: true,
            object: format!(
                r#"{{"name":"pii","result":"failed","details":{{"excerpt":"{head}{filler}"}}}}"#
            ),
        };
        (n as u64 + 1, e)
    }

    #[test]
    fn chunks_fill_their_pages() {
        // Sizes from a 15-event request (9.5 KB) to a full 64 KiB page.
        for n in [1usize, 6, 7, 15, 40, 103] {
            let rows: Vec<(u64, Event)> = (0..n).map(guardrail).collect();
            let dir = tempfile::tempdir().unwrap();
            let db = redb::Database::create(dir.path().join("a.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            let mut pages = 0;
            let mut bytes = 0;
            {
                let mut t = txn.open_table(INBOX).unwrap();
                insert_events(&mut t, &rows, &mut Default::default()).unwrap();
                for r in t.iter().unwrap() {
                    let len = r.unwrap().1.value().len();
                    bytes += len;
                    pages += (len + LEAF_OVERHEAD).div_ceil(PAGE).next_power_of_two();
                }
                assert_eq!(read(&t, 0, usize::MAX).unwrap().len(), n);
            }
            // Pages rounded up to their power of two: at most one partly filled page more than
            // the bytes need.
            assert!(
                pages <= bytes.div_ceil(PAGE) + 1,
                "{n} events: {bytes} bytes in {pages} pages"
            );
        }
    }

    /// What a durable commit of one 15-event request writes to the file, measured through the
    /// counting backend: the header, redb's own pages (system tables, the table tree, the
    /// inbox's branch) and the chunk's leaves. A chunk in one 16 KiB leaf wrote 37,184 bytes.
    #[test]
    fn a_small_request_writes_its_pages_and_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let file = crate::store::written::CountingFile::open(&dir.path().join("a.redb")).unwrap();
        let written = file.counter();
        let db = redb::Database::builder().create_with_backend(file).unwrap();
        let mut per_commit = Vec::new();
        for j in 0..40 {
            let rows: Vec<(u64, Event)> = (j * 15..j * 15 + 15).map(guardrail).collect();
            let before = written.load(std::sync::atomic::Ordering::Relaxed);
            let mut txn = db.begin_write().unwrap();
            txn.set_durability(redb::Durability::Immediate).unwrap();
            insert_events(
                &mut txn.open_table(INBOX).unwrap(),
                &rows,
                &mut Default::default(),
            )
            .unwrap();
            txn.commit().unwrap();
            per_commit.push(written.load(std::sync::atomic::Ordering::Relaxed) - before);
        }
        // Once the inbox has a branch page: header (320) + 5 pages of redb's + 8 + 4 KiB leaves.
        let steady = &per_commit[10..];
        assert!(
            steady.iter().all(|&b| b <= 320 + 5 * 4096 + 12 * 1024),
            "{per_commit:?}"
        );
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
