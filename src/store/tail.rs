//! Small commits that skip redb: their rows are made durable by the append log alone and kept in
//! memory (the *tail*) until the next redb write transaction takes them.
//!
//! Under single-event ingest a commit holds about 13 requests, and redb's own work for it
//! (`begin_write`, opening two tables, the insert and the non-durable commit) was 3.2 µs of CPU
//! per request and about 40 µs of each 264 µs commit cycle (issue 17). The append log already
//! makes such a commit durable (see [`super::wal`]), so redb need not see the rows until
//! something reads or writes the tables. A commit takes this path when it is logged (small), has
//! no client ids or group keys (de-duplication looks ids up inside a redb transaction), and the
//! tail is under [`MAX_ROWS`] and [`MAX_BYTES`]; otherwise it is an ordinary commit, which takes
//! the tail into its own transaction first.
//!
//! Every other store operation first *flushes* the tail (one non-durable transaction inserting
//! its rows and writing their last LSN to `meta.wal_lsn`), so reads see every acknowledged event
//! and writes go after them. What keeps it crash-safe is unchanged: the log restarts only when a
//! durable commit's `meta.wal_lsn` covers every record written, and a tail's LSN reaches
//! `meta.wal_lsn` only in the transaction that inserts its rows. A crash, or a reopen after a
//! storage error, loses the tail from memory and the replay of the log puts it back.

use super::wal::{Body, Table, Wal};
use super::{AppendOutcome, Prepared, Store, StoreError, INBOX, META, META_WAL_LSN};
use redb::{Database, Durability, ReadableTable};
use std::cell::Cell;
use std::sync::atomic::Ordering;

/// Rows (inbox chunks) the tail holds before a commit takes the ordinary path and empties it.
pub(super) const MAX_ROWS: usize = 64;
/// Bytes the tail holds before the same.
pub(super) const MAX_BYTES: usize = 2 * 1024 * 1024;
/// Events in a commit that may go to the tail. Whether a commit fits the log is known only once
/// its rows are cut into chunks, and one that does not is cut again by the ordinary path: 256
/// events of ~150 bytes are well under the log's 64 KiB, and batched ingest (1,000-event
/// requests), which never fits, is not cut twice (when cutting included encoding, that cost it
/// 2–6 %).
const MAX_EVENTS: usize = 256;

/// Inbox rows logged but not yet in redb, with the LSN of the last record holding them.
#[derive(Debug, Default)]
pub(super) struct Tail {
    rows: Vec<(u64, Vec<u8>)>,
    bytes: usize,
    through_lsn: u64,
}

impl Tail {
    pub(super) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn has_room(&self) -> bool {
        self.rows.len() < MAX_ROWS && self.bytes < MAX_BYTES
    }

    /// Inserts the tail's rows into an open transaction and notes their LSN; the caller empties
    /// the tail once that transaction has committed.
    pub(super) fn insert_into(
        &self,
        inbox: &mut redb::Table<u64, &'static [u8]>,
        meta: &mut redb::Table<&'static str, u64>,
    ) -> Result<(), StoreError> {
        for (key, value) in &self.rows {
            inbox.insert(*key, super::counted("inbox", value))?;
        }
        if !self.rows.is_empty() {
            let held = meta.get(META_WAL_LSN)?.map(|v| v.value()).unwrap_or(0);
            meta.insert(META_WAL_LSN, held.max(self.through_lsn))?;
        }
        Ok(())
    }

    pub(super) fn clear(&mut self) {
        self.rows.clear();
        self.bytes = 0;
    }
}

thread_local! {
    /// Store operations running on this thread: only the outermost flushes (a nested one would
    /// wait for the write lock its caller holds).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Marks a store operation running on this thread for as long as it lives.
pub(super) struct Nested(());

impl Nested {
    /// Enters an operation; `true` when it is the outermost one.
    pub(super) fn enter() -> (Nested, bool) {
        let outer = DEPTH.with(|d| {
            let n = d.get();
            d.set(n + 1);
            n == 0
        });
        (Nested(()), outer)
    }
}

impl Drop for Nested {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

impl Store {
    /// Moves the tail into redb (see the module doc); nothing to do when it is empty.
    pub(super) fn flush_tail(&self, db: &Database) -> Result<(), StoreError> {
        if !self.inner.tail_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut wal = self.inner.wal.lock().expect("wal lock is never poisoned");
        if wal.tail.is_empty() {
            // Emptied by a commit, or the log was reopened (and its tail dropped) since.
            self.inner.tail_pending.store(false, Ordering::Release);
            return Ok(());
        }
        let _w = super::written::attribute("append");
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::None)?;
        {
            let mut inbox = txn.open_table(INBOX)?;
            let mut meta = txn.open_table(META)?;
            wal.tail.insert_into(&mut inbox, &mut meta)?;
        }
        txn.commit()?;
        wal.tail.clear();
        self.inner.tail_pending.store(false, Ordering::Release);
        Ok(())
    }

    /// Appends `requests` to the log and the tail instead of redb, when they may (see the module
    /// doc); gives them back untouched otherwise. Called with the log locked, before any
    /// transaction.
    pub(super) fn append_to_tail(
        &self,
        db: &Database,
        wal: &mut Wal,
        mut requests: Vec<Prepared>,
    ) -> Result<Result<Vec<AppendOutcome>, Vec<Prepared>>, StoreError> {
        let eligible = wal.tail.has_room()
            && requests.iter().map(|r| r.events.len()).sum::<usize>() <= MAX_EVENTS
            && requests.iter().all(|r| !r.has_ids());
        let Some(first) = wal.last_seq.filter(|_| eligible).map(|s| s + 1) else {
            return Ok(Err(requests));
        };
        for r in &mut requests {
            r.encode();
        }
        let mut seq = first - 1;
        let encoded: Vec<(u64, &[u8])> = requests
            .iter()
            .flat_map(|r| (0..r.len()).map(move |i| r.encoded(i)))
            .map(|bytes| {
                seq += 1;
                (seq, bytes)
            })
            .collect();
        let mut log = Body::default();
        let mut rows = Vec::new();
        super::inbox::chunk_rows(&encoded, |key, value| {
            log.row(Table::Inbox, key, value);
            rows.push((key, value.to_vec()));
            Ok(())
        })?;
        // Too large for the log, or the log is full: an ordinary commit (which is durable).
        if rows.is_empty() || !wal.fits(&log) {
            return Ok(Err(requests));
        }
        let lsn = wal.next_lsn();
        if let Err(e) = wal.append(&log) {
            // Not durable: a durable redb commit of the tail and these rows makes them so.
            tracing::warn!(error = %e, "append log write failed; committing durably instead");
            let txn = super::durable(db)?;
            {
                let mut inbox = txn.open_table(INBOX)?;
                let mut meta = txn.open_table(META)?;
                wal.tail.insert_into(&mut inbox, &mut meta)?;
                for (key, value) in &rows {
                    inbox.insert(*key, super::counted("inbox", value))?;
                }
                meta.insert(META_WAL_LSN, lsn)?;
            }
            txn.commit()?;
            self.inner.durable_lsn.fetch_max(lsn, Ordering::AcqRel);
            wal.committed_durably(true);
            wal.tail.clear();
            self.inner.tail_pending.store(false, Ordering::Release);
        } else {
            wal.tail.bytes += rows.iter().map(|(_, v)| v.len()).sum::<usize>();
            wal.tail.rows.extend(rows);
            wal.tail.through_lsn = lsn;
            self.inner.tail_pending.store(true, Ordering::Release);
        }
        let mut seq = first - 1;
        let outcomes = requests
            .into_iter()
            .map(|r| AppendOutcome {
                stored: r
                    .events
                    .into_iter()
                    .map(|event| {
                        seq += 1;
                        (seq, event)
                    })
                    .collect(),
                duplicates: 0,
            })
            .collect();
        wal.last_seq = Some(seq);
        Ok(Ok(outcomes))
    }
}

impl Store {
    /// Rows in the tail, for tests.
    #[cfg(test)]
    pub(super) fn tail_rows(&self) -> usize {
        self.inner
            .wal
            .lock()
            .expect("wal lock is never poisoned")
            .tail
            .rows
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewEvent;
    use redb::ReadableDatabase;

    const NOW: i64 = 1_780_000_000_000;
    const WINDOW: i64 = 600_000;

    /// Event `e<n>` of workspace `w`.
    fn event(n: u64, client_id: Option<&str>) -> NewEvent {
        let mut e = super::super::keyed::tests::event("w", client_id);
        e.event.id = format!("e{n}");
        e
    }

    /// What redb itself holds, read without going through the store (which would flush).
    fn in_redb(store: &Store) -> u64 {
        let db = store.db().unwrap();
        let txn = db.begin_read().unwrap();
        super::super::inbox::len(&txn.open_table(INBOX).unwrap()).unwrap()
    }

    fn append(store: &Store, events: Vec<NewEvent>) -> Vec<u64> {
        store.append(vec![events], NOW, WINDOW).unwrap()[0]
            .stored
            .iter()
            .map(|r| r.0)
            .collect()
    }

    #[test]
    fn small_appends_wait_in_the_tail_until_an_operation_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb")).unwrap();
        // The first append after opening reads the last sequence number in a transaction.
        assert_eq!(append(&store, vec![event(1, None)]), vec![1]);
        assert_eq!((store.tail_rows(), in_redb(&store)), (0, 1));
        assert_eq!(
            append(&store, vec![event(2, None), event(3, None)]),
            vec![2, 3]
        );
        assert_eq!(append(&store, vec![event(4, None)]), vec![4]);
        assert_eq!(
            (store.tail_rows(), in_redb(&store)),
            (2, 1),
            "not in redb yet"
        );
        // Any other operation flushes first: the reader sees every acknowledged event.
        let ids: Vec<String> = store
            .read_inbox(0, 10)
            .unwrap()
            .into_iter()
            .map(|(s, e)| format!("{s}:{}", e.id))
            .collect();
        assert_eq!(ids, ["1:e1", "2:e2", "3:e3", "4:e4"]);
        assert_eq!((store.tail_rows(), in_redb(&store)), (0, 4));
        assert_eq!(store.last_seq().unwrap(), 4);
    }

    #[test]
    fn an_append_with_client_ids_takes_the_tail_into_its_own_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb")).unwrap();
        append(&store, vec![event(1, None)]);
        append(&store, vec![event(2, None)]);
        assert_eq!(store.tail_rows(), 1);
        // De-duplication needs a transaction: the ordinary path, after the tail's rows.
        assert_eq!(append(&store, vec![event(3, Some("a"))]), vec![3]);
        assert_eq!((store.tail_rows(), in_redb(&store)), (0, 3));
        assert_eq!(append(&store, vec![event(4, None)]), vec![4]);
        assert_eq!(append(&store, vec![event(5, Some("a"))]), Vec::<u64>::new());
        assert_eq!(append(&store, vec![event(6, None)]), vec![5]);
        let seqs: Vec<u64> = store
            .read_inbox(0, 10)
            .unwrap()
            .iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_full_tail_is_emptied_by_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb")).unwrap();
        for n in 1..=MAX_ROWS as u64 + 1 {
            append(&store, vec![event(n, None)]);
        }
        assert_eq!(store.tail_rows(), MAX_ROWS);
        append(&store, vec![event(MAX_ROWS as u64 + 2, None)]);
        assert_eq!(store.tail_rows(), 0, "an ordinary commit took the tail");
        assert_eq!(in_redb(&store), MAX_ROWS as u64 + 2);
    }

    #[test]
    fn an_operation_inside_another_does_not_flush() {
        let (_outer_guard, outer) = Nested::enter();
        let (_inner_guard, inner) = Nested::enter();
        assert!(outer && !inner);
        drop(_inner_guard);
        drop(_outer_guard);
        assert!(Nested::enter().1, "outermost again once both ended");
    }
}
