//! Bucket items: the events per-event alerts hold in their open debounce buckets, stored once.
//!
//! A per-event alert (guardrails, prompts, experiments) lists the events of its open bucket in
//! the notification it sends when the bucket is due. Those events must outlive inbox pruning,
//! but copying them into every alert's checkpoint rewrote whole buckets at every tick, once per
//! alert an event reached. Instead the tick commit stores each listed event once, and an
//! alert's checkpoint names only the inbox sequence its stored items start from; the alert
//! module rebuilds the list from the stored items when the alert (re)starts. An alert whose
//! checkpoint references stored items has a row in `bucket_item_floors` (alert id → first
//! sequence it needs).
//!
//! **Blocks (schema 8).** The items a tick stores are one row of `bucket_item_blocks`, deflated
//! together: events of one platform share most of their words, so a tick's block is 2–3×
//! smaller than its items one row each (schema 6–7's `bucket_items`, which the upgrade turns
//! into blocks), and it is one B-tree insert instead of hundreds (issue 21: these rows were 51
//! KiB/s of the 88 KiB/s of events accepted in the per-event bench). A block is keyed by its
//! highest sequence and starts with its sequences uncompressed, so "is this event stored
//! already" and "which blocks can hold sequences from `s` on" (the blocks keyed `s..`) read no
//! deflated bytes. A block goes when the lowest floor passes its highest sequence, in the same
//! commit: items live about one debounce period, plus at most one tick's block.

use super::{codec, decode, durable, Store, StoreError, TickCommit};
use redb::{ReadableTable, TableDefinition};
use std::collections::{BTreeMap, HashSet};

/// Highest inbox sequence in the block → the items one tick stored (see [`encode_block`]).
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("bucket_item_blocks");
/// Schema 6–7: inbox sequence → one item. Emptied into blocks by [`migrate`].
const OLD_ITEMS: TableDefinition<u64, &[u8]> = TableDefinition::new("bucket_items");
/// Alert id → the lowest sequence of stored items its stored checkpoint still needs.
const BUCKET_ITEM_FLOORS: TableDefinition<&str, u64> = TableDefinition::new("bucket_item_floors");

/// The only block layout so far: `[1][count u32]` then `count` × `[seq u64][length u32]`, then
/// the items' encoded events, concatenated and deflated.
const BLOCK_V1: u8 = 1;
/// Items per block when the upgrade regroups old rows (a tick's block has what the tick stored).
const MIGRATED_PER_BLOCK: usize = 1_000;
/// What one block's events may inflate to (the codec's row limit is far below it).
const MAX_BLOCK_BYTES: u64 = 1 << 30;

/// Stored items, raw: (inbox sequence, encoded event), in sequence order.
pub type StoredItems = Vec<(u64, Vec<u8>)>;

/// Creates the tables (at open).
pub(super) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(BLOCKS)?;
    txn.open_table(BUCKET_ITEM_FLOORS)?;
    Ok(())
}

/// Schema 6–7 → 8: the one-row-per-item table becomes blocks of [`MIGRATED_PER_BLOCK`] items
/// and is deleted. Rows are copied as they are (never decoded), so an unreadable one stays as
/// unreadable as it was, no more.
pub(super) fn migrate(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let old: StoredItems = match txn.open_table(OLD_ITEMS) {
        Ok(t) => t
            .iter()?
            .map(|r| r.map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect::<Result<_, _>>()?,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut blocks = txn.open_table(BLOCKS)?;
    for chunk in old.chunks(MIGRATED_PER_BLOCK) {
        let last = chunk.last().expect("chunks are never empty").0;
        blocks.insert(last, encode_block(chunk).as_slice())?;
    }
    drop(blocks);
    txn.delete_table(OLD_ITEMS)?;
    tracing::info!(items = old.len(), "bucket items regrouped into blocks");
    Ok(())
}

/// A block of items sorted by sequence.
fn encode_block(items: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + items.len() * 12 + items.len() * 200);
    out.push(BLOCK_V1);
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    let mut all = Vec::with_capacity(items.iter().map(|(_, v)| v.len()).sum());
    for (seq, bytes) in items {
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        all.extend_from_slice(bytes);
    }
    super::deflate::deflate_into(&mut out, &all);
    out
}

fn bad_block(why: String) -> StoreError {
    StoreError::Codec {
        table: "bucket_item_blocks",
        source: codec::CodecError::Decode(why),
    }
}

/// A block's (sequence, length) pairs and where its deflated events start, without inflating.
fn block_index(block: &[u8]) -> Result<(Vec<(u64, u32)>, usize), StoreError> {
    let (&tag, rest) = block
        .split_first()
        .ok_or_else(|| bad_block("empty block".into()))?;
    if tag != BLOCK_V1 {
        return Err(bad_block(format!("unknown block format {tag}")));
    }
    let n = rest
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| bad_block("short block header".into()))?;
    let index = rest
        .get(4..4 + n * 12)
        .ok_or_else(|| bad_block(format!("block of {n} items cut short")))?;
    let pairs = index
        .chunks_exact(12)
        .map(|c| {
            (
                u64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
                u32::from_le_bytes(c[8..].try_into().expect("4 bytes")),
            )
        })
        .collect();
    Ok((pairs, 1 + 4 + n * 12))
}

/// A block's items.
fn decode_block(block: &[u8]) -> Result<StoredItems, StoreError> {
    let (index, start) = block_index(block)?;
    let total: u64 = index.iter().map(|(_, len)| u64::from(*len)).sum();
    let all = super::deflate::inflate(&block[start..], total.min(MAX_BLOCK_BYTES))
        .map_err(|e| bad_block(e.to_string()))?;
    if all.len() as u64 != total {
        return Err(bad_block(format!(
            "block events are {} bytes, its index says {total}",
            all.len()
        )));
    }
    let mut at = 0;
    Ok(index
        .into_iter()
        .map(|(seq, len)| {
            let bytes = all[at..at + len as usize].to_vec();
            at += len as usize;
            (seq, bytes)
        })
        .collect())
}

/// The items of the blocks that can hold sequences from `from` on, those from `from` on, in
/// sequence order. An unreadable block is logged and left out (its events are still counted by
/// their buckets, only not listed), like an unreadable item.
fn items_from(
    blocks: &impl ReadableTable<u64, &'static [u8]>,
    from: u64,
) -> Result<StoredItems, StoreError> {
    let mut out = Vec::new();
    for row in blocks.range(from..)? {
        let (k, v) = row?;
        match decode_block(v.value()) {
            Ok(items) => out.extend(items.into_iter().filter(|(seq, _)| *seq >= from)),
            Err(e) => {
                tracing::error!(block = k.value(), error = %e, "skipping an unreadable block of bucket items")
            }
        }
    }
    // Blocks are in the order of their highest sequence; a late item can sit below another
    // block's.
    out.sort_by_key(|(seq, _)| *seq);
    out.dedup_by_key(|(seq, _)| *seq);
    Ok(out)
}

/// The tick's share of items: one block of the events not stored yet, floors of the
/// checkpoints written, and deletion of blocks no checkpoint needs any more. Runs inside the
/// tick's transaction, after the checkpoints, so items and the checkpoints that reference them
/// are durable together.
pub(super) fn commit(txn: &redb::WriteTransaction, tick: &TickCommit) -> Result<(), StoreError> {
    if tick.items.is_empty() && tick.item_floors.is_empty() {
        return Ok(());
    }
    let mut blocks = txn.open_table(BLOCKS)?;
    // Alerts list the same event once each; an alert that applied a batch late lists events an
    // earlier tick stored.
    let mut fresh: BTreeMap<u64, &crate::event::Event> = tick
        .items
        .iter()
        .map(|(seq, e)| (*seq, e.as_ref()))
        .collect();
    if let Some(&lowest) = fresh.keys().next() {
        let mut stored = HashSet::new();
        for row in blocks.range(lowest..)? {
            let (k, v) = row?;
            match block_index(v.value()) {
                Ok((index, _)) => stored.extend(index.into_iter().map(|(seq, _)| seq)),
                // Rewritten below if this tick's block takes its key; otherwise it stays.
                Err(e) => {
                    tracing::error!(block = k.value(), error = %e, "unreadable block of bucket items")
                }
            }
        }
        fresh.retain(|seq, _| !stored.contains(seq));
    }
    if let Some((&last, _)) = fresh.last_key_value() {
        let items: StoredItems = fresh
            .iter()
            .map(|(seq, e)| (*seq, codec::encode(*e)))
            .collect();
        blocks.insert(
            last,
            super::counted("bucket_item_blocks", &encode_block(&items)),
        )?;
    }
    let mut floors = txn.open_table(BUCKET_ITEM_FLOORS)?;
    for (id, floor) in &tick.item_floors {
        let stored = floors.get(id.as_str())?.map(|v| v.value());
        match floor {
            Some(f) if stored != Some(*f) => {
                floors.insert(id.as_str(), *f)?;
            }
            None if stored.is_some() => {
                floors.remove(id.as_str())?;
            }
            _ => {}
        }
    }
    let lowest = lowest_floor(&floors)?;
    drop_below(&mut blocks, lowest)?;
    crate::metrics::set_bucket_items(count(&blocks)?);
    Ok(())
}

/// Items held by the stored blocks (those below the lowest floor in a block still needed
/// included: they are on disk until the block goes).
fn count(blocks: &impl ReadableTable<u64, &'static [u8]>) -> Result<u64, StoreError> {
    let mut n = 0;
    for row in blocks.iter()? {
        let (_, v) = row?;
        n += block_index(v.value()).map_or(0, |(index, _)| index.len() as u64);
    }
    Ok(n)
}

/// The lowest floor of every alert, `None` when no checkpoint references stored items.
fn lowest_floor(floors: &impl ReadableTable<&'static str, u64>) -> Result<Option<u64>, StoreError> {
    let mut lowest: Option<u64> = None;
    for row in floors.iter()? {
        let (_, v) = row?;
        lowest = Some(lowest.map_or(v.value(), |l| l.min(v.value())));
    }
    Ok(lowest)
}

/// Deletes the blocks whose every item is below `lowest` (every block when nothing is
/// referenced).
fn drop_below(
    blocks: &mut redb::Table<u64, &'static [u8]>,
    lowest: Option<u64>,
) -> Result<(), StoreError> {
    let first = blocks.first()?.map(|(k, _)| k.value());
    match (first, lowest) {
        (Some(first), Some(l)) if first < l => blocks.retain_in(..l, |_, _| false)?,
        (Some(_), None) => blocks.retain(|_, _| false)?,
        _ => {}
    }
    Ok(())
}

/// Forgets the floors of these alerts (their checkpoints are deleted in the same
/// transaction) and the rows only they needed.
pub(super) fn forget(txn: &redb::WriteTransaction, ids: &[String]) -> Result<(), StoreError> {
    let mut floors = txn.open_table(BUCKET_ITEM_FLOORS)?;
    let mut changed = false;
    for id in ids {
        changed |= floors.remove(id.as_str())?.is_some();
    }
    if changed {
        let lowest = lowest_floor(&floors)?;
        drop_below(&mut txn.open_table(BLOCKS)?, lowest)?;
    }
    Ok(())
}

/// The stored items the checkpoints of `ids` reference (from the lowest of their floors on).
pub(super) fn for_alerts(
    txn: &redb::ReadTransaction,
    ids: &[String],
) -> Result<StoredItems, StoreError> {
    let floors = txn.open_table(BUCKET_ITEM_FLOORS)?;
    let mut from: Option<u64> = None;
    for id in ids {
        if let Some(f) = floors.get(id.as_str())?.map(|v| v.value()) {
            from = Some(from.map_or(f, |l| l.min(f)));
        }
    }
    let Some(from) = from else {
        return Ok(Vec::new());
    };
    items_from(&txn.open_table(BLOCKS)?, from)
}

impl Store {
    /// Rewrites the checkpoint of an alert that stops running (disabled, failed) so that it no
    /// longer references stored items: `inline` gets the checkpoint and the items it references
    /// and returns the checkpoint with those items inside it (`None`: leave it). A stopped
    /// alert's floor would otherwise keep every later item until it runs again.
    pub fn inline_bucket_items(
        &self,
        alert_id: &str,
        inline: impl Fn(&[u8], &StoredItems) -> Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        self.with(|db| {
            let txn = durable(db)?;
            {
                let floor = txn
                    .open_table(BUCKET_ITEM_FLOORS)?
                    .get(alert_id)?
                    .map(|v| v.value());
                let Some(floor) = floor else {
                    txn.abort()?;
                    return Ok(());
                };
                let mut state = txn.open_table(super::ALERT_STATE)?;
                let cp = state.get(alert_id)?.map(|v| v.value().to_vec());
                if let Some(cp) = cp {
                    let items = items_from(&txn.open_table(BLOCKS)?, floor)?;
                    match inline(&cp, &items) {
                        Some(bytes) => {
                            state.insert(alert_id, bytes.as_slice())?;
                        }
                        None => {
                            drop(state);
                            txn.abort()?;
                            return Ok(());
                        }
                    }
                }
                drop(state);
                forget(&txn, &[alert_id.to_string()])?;
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// Alerts whose checkpoints reference stored items.
    pub fn alerts_with_bucket_items(&self) -> Result<Vec<String>, StoreError> {
        self.with(|db| {
            let txn = redb::ReadableDatabase::begin_read(db)?;
            let floors = txn.open_table(BUCKET_ITEM_FLOORS)?;
            let mut out = Vec::new();
            for row in floors.iter()? {
                out.push(row?.0.value().to_string());
            }
            Ok(out)
        })
    }

    /// Stored bucket items, for metrics and tests.
    pub fn bucket_items_len(&self) -> Result<u64, StoreError> {
        self.with(|db| {
            let txn = redb::ReadableDatabase::begin_read(db)?;
            count(&txn.open_table(BLOCKS)?)
        })
    }
}

/// Decodes stored items; an unreadable row is logged and left out (its event is still counted
/// by the bucket, only not listed).
pub fn decode_items(raw: &StoredItems) -> Vec<(u64, crate::event::Event)> {
    raw.iter()
        .filter_map(|(seq, bytes)| match decode("bucket_items", bytes) {
            Ok(e) => Some((*seq, e)),
            Err(e) => {
                tracing::error!(seq, error = %e, "skipping an unreadable bucket item");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventBody, EventType};
    use std::sync::Arc;

    fn event(seq: u64) -> Arc<Event> {
        Arc::new(Event {
            id: format!("e{seq}"),
            workspace: "default".into(),
            project: None,
            project_id: None,
            timestamp_ms: 1_000,
            received_ms: 1_000,
            user: "u".into(),
            body: EventBody::Object {
                event_type: EventType::PromptCreated,
                object: format!("{{\"n\":{seq}}}"),
            },
        })
    }

    fn tick(store: &Store, alerts: &[(&str, Option<u64>)], items: &[u64]) {
        store
            .commit_tick(&TickCommit {
                checkpoints: alerts
                    .iter()
                    .map(|(id, _)| (id.to_string(), vec![1, 2, 3]))
                    .collect(),
                item_floors: alerts.iter().map(|(id, f)| (id.to_string(), *f)).collect(),
                items: items.iter().map(|s| (*s, event(*s))).collect(),
                ..Default::default()
            })
            .unwrap();
    }

    /// A guardrail-like event with `n` words of varied text, as the per-event bench sends.
    fn wordy(seq: u64, n: usize) -> Arc<Event> {
        const WORDS: &[&str] = &["the", "customer", "asked", "refund", "card", "ending", "in"];
        let text: Vec<String> = (0..n as u64)
            .map(|i| {
                format!(
                    "{} {}",
                    WORDS[((seq * 7 + i * 13) % 7) as usize],
                    seq * 31 + i
                )
            })
            .collect();
        Arc::new(Event {
            id: format!("e{seq}"),
            workspace: "default".into(),
            project: Some("p".into()),
            project_id: None,
            timestamp_ms: 1_000 + seq as i64,
            received_ms: 1_000,
            user: "u".into(),
            body: EventBody::Object {
                event_type: EventType::PromptCreated,
                object: format!("{{\"details\":\"{}\"}}", text.join(" ")),
            },
        })
    }

    fn seqs(store: &Store, ids: &[&str]) -> Vec<u64> {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let seeds = store.load_seeds(&ids).unwrap();
        decode_items(&seeds.items).iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn items_live_from_the_lowest_floor_and_go_with_the_last_bucket_that_needs_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        tick(&store, &[("a", Some(1)), ("b", Some(2))], &[1, 2, 3]);
        assert_eq!(store.bucket_items_len().unwrap(), 3);
        // A seed gets the items from its own floor on.
        assert_eq!(seqs(&store, &["b"]), vec![2, 3]);
        assert_eq!(seqs(&store, &["a", "b"]), vec![1, 2, 3]);
        assert_eq!(seqs(&store, &["c"]), Vec::<u64>::new());
        // a flushed its bucket and opened a new one at 4: item 1 is no one's any more.
        tick(&store, &[("a", Some(4))], &[4]);
        assert_eq!(seqs(&store, &["a", "b"]), vec![2, 3, 4]);
        // b flushed without a new bucket.
        tick(&store, &[("b", None)], &[]);
        assert_eq!(seqs(&store, &["a"]), vec![4]);
        assert_eq!(store.alerts_with_bucket_items().unwrap(), vec!["a"]);
        // a removed from the config: nothing is left.
        store.retain_checkpoints(&["b".to_string()]).unwrap();
        assert_eq!(store.bucket_items_len().unwrap(), 0);
        assert!(store.alerts_with_bucket_items().unwrap().is_empty());
    }

    #[test]
    fn a_stopped_alert_takes_its_items_into_its_checkpoint_and_releases_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        tick(&store, &[("a", Some(1)), ("b", Some(3))], &[1, 2, 3]);
        let seen = std::sync::Mutex::new(Vec::new());
        store
            .inline_bucket_items("a", |cp, items| {
                seen.lock().unwrap().push((
                    cp.to_vec(),
                    items.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
                ));
                Some(vec![9])
            })
            .unwrap();
        assert_eq!(
            seen.into_inner().unwrap(),
            vec![(vec![1, 2, 3], vec![1, 2, 3])]
        );
        assert_eq!(store.load_checkpoint("a").unwrap(), Some(vec![9]));
        assert_eq!(seqs(&store, &["b"]), vec![3]);
        assert_eq!(
            store.bucket_items_len().unwrap(),
            3,
            "1 and 2 were only a's, but they share a block with 3, which b needs"
        );
        // No floor: nothing to do, the checkpoint is not read.
        store
            .inline_bucket_items("a", |_, _| panic!("not called"))
            .unwrap();
    }

    #[test]
    fn an_item_listed_by_several_alerts_is_stored_once_and_rewriting_it_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        tick(&store, &[("a", Some(5)), ("b", Some(5))], &[5]);
        tick(&store, &[("c", Some(5))], &[5, 6]);
        assert_eq!(seqs(&store, &["a", "b", "c"]), vec![5, 6]);
        let items = decode_items(&store.load_seeds(&["c".to_string()]).unwrap().items);
        assert_eq!(items[0].1, *event(5));
    }

    #[test]
    fn a_ticks_items_are_one_deflated_block_smaller_than_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let events: Vec<(u64, Arc<Event>)> = (1..=200).map(|s| (s, wordy(s, 60))).collect();
        let raw: usize = events
            .iter()
            .map(|(_, e)| codec::encode(e.as_ref()).len())
            .sum();
        store
            .commit_tick(&TickCommit {
                checkpoints: vec![("a".into(), vec![1])],
                item_floors: vec![("a".into(), Some(1))],
                items: events.clone(),
                ..Default::default()
            })
            .unwrap();
        let rows = store
            .with(|db| {
                let txn = redb::ReadableDatabase::begin_read(db)?;
                let t = txn.open_table(BLOCKS)?;
                let rows: Vec<(u64, usize)> = t
                    .iter()?
                    .map(|r| r.map(|(k, v)| (k.value(), v.value().len())))
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .unwrap();
        assert_eq!(
            rows.len(),
            1,
            "one block per tick, keyed by its highest sequence"
        );
        assert_eq!(rows[0].0, 200);
        assert!(
            rows[0].1 * 2 < raw,
            "block {} bytes for {raw} bytes of encoded events",
            rows[0].1
        );
        let items = decode_items(&store.load_seeds(&["a".to_string()]).unwrap().items);
        assert_eq!(items.len(), 200);
        for ((seq, e), (want_seq, want)) in items.iter().zip(&events) {
            assert_eq!((seq, e), (want_seq, want.as_ref()));
        }
    }

    #[test]
    fn a_late_item_below_a_stored_block_is_stored_once_and_listed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        tick(&store, &[("a", Some(5))], &[5, 6, 9]);
        // b applied its batch late: it lists 7 (new, below block 9) and 6 (stored).
        tick(&store, &[("b", Some(6))], &[6, 7, 7]);
        assert_eq!(
            store.bucket_items_len().unwrap(),
            4,
            "6 is not stored twice"
        );
        assert_eq!(seqs(&store, &["a", "b"]), vec![5, 6, 7, 9]);
        assert_eq!(seqs(&store, &["b"]), vec![6, 7, 9]);
        // a flushes: blocks 7 (7) and 9 (5, 6, 9) are kept for b, whose floor is 6.
        tick(&store, &[("a", None)], &[]);
        assert_eq!(seqs(&store, &["b"]), vec![6, 7, 9]);
        tick(&store, &[("b", Some(8))], &[]);
        assert_eq!(
            seqs(&store, &["b"]),
            vec![9],
            "block 7 went, block 9 holds 9"
        );
        assert_eq!(store.bucket_items_len().unwrap(), 3);
    }

    #[test]
    fn an_unreadable_block_is_left_out_and_the_rest_still_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        tick(&store, &[("a", Some(1))], &[1, 2]);
        tick(&store, &[("a", Some(1))], &[3]);
        store
            .with(|db| {
                let txn = durable(db)?;
                {
                    let mut t = txn.open_table(BLOCKS)?;
                    let mut v = t.get(2)?.unwrap().value().to_vec();
                    let n = v.len();
                    v[n - 4..].copy_from_slice(&[0xff; 4]);
                    t.insert(2, v.as_slice())?;
                }
                txn.commit()?;
                Ok(())
            })
            .unwrap();
        assert_eq!(seqs(&store, &["a"]), vec![3]);
        // Its index still reads: 1 and 2 count as stored, so a tick listing them adds nothing.
        tick(&store, &[("a", Some(1))], &[2, 4]);
        assert_eq!(seqs(&store, &["a"]), vec![3, 4]);
        assert!(decode_block(&[9, 0, 0, 0, 0]).is_err(), "unknown layout");
        assert!(
            decode_block(&[BLOCK_V1, 5, 0, 0, 0, 1]).is_err(),
            "cut short"
        );
    }

    #[test]
    fn the_upgrade_turns_rows_of_bucket_items_into_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        let old: Vec<(u64, Vec<u8>)> = (1..=(MIGRATED_PER_BLOCK as u64 + 5))
            .map(|s| (s, codec::encode(wordy(s, 5).as_ref())))
            .collect();
        store
            .with(|db| {
                let txn = durable(db)?;
                {
                    let mut t = txn.open_table(OLD_ITEMS)?;
                    for (k, v) in &old {
                        t.insert(*k, v.as_slice())?;
                    }
                    txn.open_table(BUCKET_ITEM_FLOORS)?.insert("a", 3)?;
                }
                migrate(&txn)?;
                txn.commit()?;
                Ok(())
            })
            .unwrap();
        let tables = store
            .with(|db| {
                let txn = redb::ReadableDatabase::begin_read(db)?;
                let names: Vec<String> = txn
                    .list_tables()?
                    .map(|h| redb::TableHandle::name(&h).to_string())
                    .collect();
                let keys: Vec<u64> = txn
                    .open_table(BLOCKS)?
                    .iter()?
                    .map(|r| r.map(|(k, _)| k.value()))
                    .collect::<Result<_, _>>()?;
                Ok((names, keys))
            })
            .unwrap();
        assert!(
            !tables.0.contains(&"bucket_items".to_string()),
            "{:?}",
            tables.0
        );
        assert_eq!(tables.1, vec![MIGRATED_PER_BLOCK as u64, old.len() as u64]);
        let items = store.load_seeds(&["a".to_string()]).unwrap().items;
        assert_eq!(
            items,
            old[2..].to_vec(),
            "the same bytes, from the floor on"
        );
    }
}
