//! Bucket items: the events per-event alerts hold in their open debounce buckets, stored once.
//!
//! A per-event alert (guardrails, prompts, experiments) lists the events of its open bucket in
//! the notification it sends when the bucket is due. Those events must outlive inbox pruning,
//! but copying them into every alert's checkpoint rewrote whole buckets at every tick, once per
//! alert an event reached. Instead the tick commit stores each listed event once, keyed by its
//! inbox sequence number (`bucket_items`), and an alert's checkpoint names only the sequence its
//! stored items start from; the alert module rebuilds the list from these rows when the alert
//! (re)starts. An alert whose checkpoint references stored items has a row in
//! `bucket_item_floors` (alert id → first sequence it needs); rows below the lowest floor are
//! deleted in the same commit, so items live about one debounce period.

use super::{codec, decode, durable, Store, StoreError, TickCommit};
use redb::{ReadableTable, TableDefinition};

/// Inbox sequence → the event (as the inbox stores it) some alert listed in an open bucket.
const BUCKET_ITEMS: TableDefinition<u64, &[u8]> = TableDefinition::new("bucket_items");
/// Alert id → the lowest sequence of `bucket_items` its stored checkpoint still needs.
const BUCKET_ITEM_FLOORS: TableDefinition<&str, u64> = TableDefinition::new("bucket_item_floors");

/// Stored items, raw: (inbox sequence, encoded event), in sequence order.
pub type StoredItems = Vec<(u64, Vec<u8>)>;

/// Creates the tables (at open).
pub(super) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(BUCKET_ITEMS)?;
    txn.open_table(BUCKET_ITEM_FLOORS)?;
    Ok(())
}

/// The tick's share of items: new rows, floors of the checkpoints written, and deletion of
/// rows no checkpoint needs any more. Runs inside the tick's transaction, after the
/// checkpoints, so items and the checkpoints that reference them are durable together.
pub(super) fn commit(txn: &redb::WriteTransaction, tick: &TickCommit) -> Result<(), StoreError> {
    if tick.items.is_empty() && tick.item_floors.is_empty() {
        return Ok(());
    }
    let mut items = txn.open_table(BUCKET_ITEMS)?;
    for (seq, event) in &tick.items {
        // Another alert may have stored the same event already: a read is cheaper than
        // rewriting the page.
        if items.get(*seq)?.is_none() {
            items.insert(
                *seq,
                super::counted("bucket_items", &codec::encode(event.as_ref())),
            )?;
        }
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
    drop_below(&mut items, lowest)?;
    crate::metrics::set_bucket_items(redb::ReadableTableMetadata::len(&items)?);
    Ok(())
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

/// Deletes the rows below `lowest` (every row when nothing is referenced).
fn drop_below(
    items: &mut redb::Table<u64, &'static [u8]>,
    lowest: Option<u64>,
) -> Result<(), StoreError> {
    let first = items.first()?.map(|(k, _)| k.value());
    match (first, lowest) {
        (Some(first), Some(l)) if first < l => items.retain_in(..l, |_, _| false)?,
        (Some(_), None) => items.retain(|_, _| false)?,
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
        drop_below(&mut txn.open_table(BUCKET_ITEMS)?, lowest)?;
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
    let items = txn.open_table(BUCKET_ITEMS)?;
    let mut out = Vec::new();
    for row in items.range(from..)? {
        let (k, v) = row?;
        out.push((k.value(), v.value().to_vec()));
    }
    Ok(out)
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
                    let items: StoredItems = txn
                        .open_table(BUCKET_ITEMS)?
                        .range(floor..)?
                        .map(|r| r.map(|(k, v)| (k.value(), v.value().to_vec())))
                        .collect::<Result<_, _>>()?;
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
            Ok(redb::ReadableTableMetadata::len(
                &txn.open_table(BUCKET_ITEMS)?,
            )?)
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
            1,
            "1 and 2 were only a's"
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
}
