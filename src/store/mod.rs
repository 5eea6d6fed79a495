//! The redb store: every table definition and every transaction alertd runs.
//!
//! Nothing else in the crate opens a transaction. Each public method is durable when it returns
//! (a durable redb commit, or for small appends a non-durable one plus an fsynced record in the
//! append log, see the `wal` module) or is one read transaction, and is synchronous: callers
//! run it on a blocking thread, never on the async workers. Keys are big-endian integers or UUIDv7 values
//! as `u128`, so ranges scan in time order.

mod bodies;
mod deflate;
mod id_filter;
mod id_key;
mod id_probe;
mod ids;
mod prepared;
mod tail;
pub use id_probe::ClientId;
pub use prepared::Prepared;

use crate::codec::{self, CodecError};
use inbox::INBOX;

mod inbox;
use crate::delivery::{Delivery, DeliveryStatus};
use crate::event::Event;
use crate::silence::engine::SuppressedDelivery;
use crate::silence::{Silence, SilenceSet};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

// Appends with one de-duplication id per group of events (the NATS source's messages).
mod keyed;
pub use keyed::KeyedRequest;
pub mod items;
mod wal;
#[cfg(test)]
mod wal_tests;
mod written;

/// redb page cache size.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// The schema this build writes. A file with a larger number is refused; a smaller one is
/// migrated at open (see [`migrate`]).
///
/// 1: the first release. 2: silences — the `silences` and `suppressed_log` tables, and alert
/// checkpoints that carry silence marks after their trigger states (the alert module reads both
/// checkpoint layouts, so upgrading rewrites nothing; the number keeps an older alertd, which
/// would not understand new checkpoints, from opening the file). 3: client ids hashed into
/// time-bucketed tables. 4: client ids in a log and sorted runs ([`ids`]). 5: the inbox holds
/// one row per journal commit (`inbox_chunks`, see [`inbox`]). 6: per-event alerts' bucket items
/// stored once (`bucket_items`, `bucket_item_floors`, see [`items`]) and checkpoints that
/// reference them (older checkpoints, with their items inline, are read as they are). 7:
/// notification bodies stored once, deflated, apart from the outbox, dead-letter and delivery-log
/// rows ([`bodies`]); the upgrade moves every stored body out of its row. 8: bucket items
/// stored as one deflated block per tick (`bucket_item_blocks`, see [`items`]); the upgrade
/// regroups the rows of `bucket_items` into blocks and deletes that table. 9: client id keys
/// hashed with BLAKE3 instead of SHA-256; the upgrade marks the ids remembered so far as
/// SHA-256 ones (`ingest_id_sha_runs`, `ingest_id_sha`), looked up by their old key
/// until they expire (see [`id_key`]). 10: alert checkpoints store only the window slots in
/// use (`alert::window::SparseRing`); as with 2, the alert module reads both layouts, so the
/// upgrade rewrites nothing, and an alert's next checkpoint is written in the new layout.
pub const SCHEMA_VERSION: u64 = 10;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const ALERT_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("alert_state");
const OUTBOX: TableDefinition<u128, &[u8]> = TableDefinition::new("outbox");
const DEAD_LETTERS: TableDefinition<u128, &[u8]> = TableDefinition::new("dead_letters");
const DELIVERY_LOG: TableDefinition<u128, &[u8]> = TableDefinition::new("delivery_log");
/// Silence id (UUIDv7 as `u128`) → [`Silence`]; expired ones are deleted a day after their end.
const SILENCES: TableDefinition<u128, &[u8]> = TableDefinition::new("silences");
/// Notification id → [`SuppressedDelivery`]: what silences kept from being sent, newest N.
const SUPPRESSED_LOG: TableDefinition<u128, &[u8]> = TableDefinition::new("suppressed_log");

/// Quarantine id (UUIDv7 as `u128`) → [`QuarantinedRow`]: stored rows that could not be read
/// (corrupt, or too large for the codec's limit), set aside at open so alertd still starts.
const QUARANTINE: TableDefinition<u128, &[u8]> = TableDefinition::new("quarantine");
/// Quarantine id → the row's original bytes, never decoded, kept for inspection or repair.
const QUARANTINE_BYTES: TableDefinition<u128, &[u8]> = TableDefinition::new("quarantine_bytes");

const META_SCHEMA: &str = "schema_version";
const META_LAST_SEQ: &str = "last_seq";
const META_APPLIED: &str = "applied_through";
/// A random id given to the data file at creation: the append log names it in every record, so
/// a log is never replayed into another file (see the `wal` module).
const META_FILE_ID: &str = "file_id";
/// The LSN of the last append-log record this file holds (see the `wal` module).
const META_WAL_LSN: &str = "wal_lsn";

/// A store failure, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: the data file is in use by another running alertd (or another program); stop it or choose another storage.path")]
    Locked { path: PathBuf },
    #[error("{path}: cannot open the data file: {message}")]
    Open { path: PathBuf, message: String },
    #[error("{path}: the data file has schema version {found}, but this alertd supports up to {supported}; run a newer alertd or restore a backup")]
    SchemaTooNew {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("storage error: {0}")]
    Db(String),
    #[error("stored value in {table} is unreadable: {source}")]
    Codec {
        table: &'static str,
        source: CodecError,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// An event to append, with its client id for de-duplication.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub client_id: Option<ClientId>,
    pub event: Event,
}

/// What one append request produced.
#[derive(Debug, Clone, Default)]
pub struct AppendOutcome {
    /// Shared with the router, which hands each event to the alerts that want it.
    pub stored: Vec<(u64, Arc<Event>)>,
    pub duplicates: usize,
}

/// What one scheduler tick commits atomically.
#[derive(Debug, Default)]
pub struct TickCommit {
    pub checkpoints: Vec<(String, Vec<u8>)>,
    pub deliveries: Vec<Delivery>,
    /// Notifications silences suppressed at this tick, for the delivery history.
    pub suppressed: Vec<SuppressedDelivery>,
    /// How many suppressed rows the history keeps (the newest); applied when rows are added.
    pub suppressed_log_size: usize,
    /// Events listed in open buckets, once each, by inbox sequence (see [`items`]).
    pub items: Vec<(u64, Arc<Event>)>,
    /// For each checkpoint written: the lowest item sequence it references (`None`: none).
    pub item_floors: Vec<(String, Option<u64>)>,
    /// Every alert has applied the inbox through this once the tick is committed: up to
    /// `prune_rows` rows at or below it are deleted in the same transaction.
    pub prune_through: Option<u64>,
    pub prune_rows: usize,
}

/// The data file's size and how much of it is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub file_bytes: u64,
    pub live_bytes: u64,
}

/// What (re)starting alerts begin from, read in one transaction.
#[derive(Debug, Default)]
pub struct Seeds {
    /// Raw checkpoints, in the order asked.
    pub checkpoints: Vec<Option<Vec<u8>>>,
    /// The point every alert has applied the inbox through.
    pub applied: u64,
    /// The stored bucket items those checkpoints reference (see [`items`]).
    pub items: items::StoredItems,
}

/// The result of one delivery attempt, to be recorded.
#[derive(Debug, Clone)]
pub enum DeliveryResult {
    Delivered(Delivery),
    Retry(Delivery),
    Dead(Delivery),
}

/// Handle to the open data file; cheap to clone.
///
/// After an I/O error (disk full, file unwritable) redb refuses every further operation, so the
/// handle marks itself failed and the next operation reopens the file, which runs redb's repair
/// and resumes from the last committed transaction. Until that works, every operation returns an
/// error: ingest answers 503, ticks and delivery results are retried.
#[derive(Clone)]
pub struct Store {
    /// Stops the id sealing thread when the last handle goes (declared first: dropped first).
    _sealer: Option<Arc<ids::Sealer>>,
    inner: Arc<Inner>,
}

struct Inner {
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    failed: AtomicBool,
    /// When events were last appended (epoch ms): compaction waits for a quiet store.
    last_append_ms: std::sync::atomic::AtomicI64,
    /// The `silences` table as of the last commit that changed it: every tick matches against
    /// it, so it is read from memory, not from the file.
    silences: RwLock<Arc<SilenceSet>>,
    /// Serializes silence changes, so a check against the snapshot (e.g. the live limit) and the
    /// write it allows are one step.
    silence_writes: Mutex<()>,
    /// Remembered client ids' in-memory index (see [`ids`]).
    ids: ids::Ids,
    /// The append log of small journal commits (see the `wal` module); replaced when the file
    /// is reopened.
    wal: Mutex<wal::Wal>,
    /// The highest append-log LSN a durable redb commit is known to hold: the log starts over
    /// once it covers every record written.
    durable_lsn: std::sync::atomic::AtomicU64,
    /// The append log's tail holds rows not yet in redb (see [`tail`]): checked without the
    /// log's lock by every operation, which flushes them first.
    tail_pending: std::sync::atomic::AtomicBool,
    /// The bytes redb wrote to the data file since it was (re)opened.
    redb_written: Mutex<Arc<std::sync::atomic::AtomicU64>>,
}

fn durable(db: &Database) -> Result<redb::WriteTransaction, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    Ok(txn)
}

impl Store {
    /// Commits a durable transaction and notes the append-log records it holds, so the log can
    /// start over (see the `wal` module). Used by the commits that come regularly (ticks, delivery
    /// results); any other durable commit holds them too, it is just not noted.
    fn commit_durable(&self, txn: redb::WriteTransaction) -> Result<(), StoreError> {
        let lsn = txn
            .open_table(META)?
            .get(META_WAL_LSN)?
            .map(|v| v.value())
            .unwrap_or(0);
        txn.commit()?;
        self.inner.durable_lsn.fetch_max(lsn, Ordering::AcqRel);
        Ok(())
    }
}

/// Counts a value about to be inserted into `table` (`alertd_store_row_bytes_total`), so the
/// disk writes can be traced to the data behind them.
fn counted<'a>(table: &'static str, bytes: &'a [u8]) -> &'a [u8] {
    crate::metrics::store_row_bytes(table, bytes.len() as u64);
    bytes
}

fn decode<T: serde::de::DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(|source| StoreError::Codec { table, source })
}

impl Store {
    /// Opens or creates the data file, creating tables and checking the schema version.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let Opened {
            db,
            wal,
            held: durable_lsn,
            written,
        } = open_db(path)?;
        let silences = load_silences(&db)?;
        let ids = ids::Ids::load(&db)?;
        let inner = Arc::new(Inner {
            wal: Mutex::new(wal),
            durable_lsn: durable_lsn.into(),
            tail_pending: false.into(),
            redb_written: Mutex::new(written),
            db: RwLock::new(Some(Arc::new(db))),
            path: path.to_path_buf(),
            failed: AtomicBool::new(false),
            last_append_ms: std::sync::atomic::AtomicI64::new(0),
            silences: RwLock::new(Arc::new(silences)),
            silence_writes: Mutex::new(()),
            ids,
        });
        let sealer = ids::Sealer::spawn(&inner);
        Ok(Store {
            _sealer: Some(Arc::new(sealer)),
            inner,
        })
    }

    /// A handle for the id sealing thread itself, which must not keep itself alive.
    fn without_sealer(inner: Arc<Inner>) -> Store {
        Store {
            _sealer: None,
            inner,
        }
    }

    /// The database, reopened first if an earlier I/O error poisoned it.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        if !self.inner.failed.load(Ordering::Acquire) {
            if let Some(db) = self
                .inner
                .db
                .read()
                .expect("store lock is never poisoned")
                .as_ref()
            {
                return Ok(db.clone());
            }
        }
        let mut slot = self.inner.db.write().expect("store lock is never poisoned");
        if !self.inner.failed.load(Ordering::Acquire) {
            if let Some(db) = slot.as_ref() {
                return Ok(db.clone());
            }
        }
        // Drop our handle; operations still holding one finish first, so retry until free.
        slot.take();
        let Opened {
            db,
            wal,
            held: durable_lsn,
            written,
        } = open_db(&self.inner.path).map_err(|e| match e {
            StoreError::Locked { .. } => {
                StoreError::Db("the data file is being reopened after a storage error".into())
            }
            other => other,
        })?;
        let db = Arc::new(db);
        tracing::warn!(path = %self.inner.path.display(), "data file reopened after a storage error");
        *self.inner.wal.lock().expect("wal lock is never poisoned") = wal;
        *self
            .inner
            .redb_written
            .lock()
            .expect("counter lock is never poisoned") = written;
        self.inner
            .durable_lsn
            .fetch_max(durable_lsn, Ordering::AcqRel);
        self.inner.ids.reload(&db)?;
        *slot = Some(db.clone());
        self.inner.failed.store(false, Ordering::Release);
        Ok(db)
    }

    /// Runs `f` on the database, after the append log's tail is in it (see [`tail`]); a storage
    /// error marks the handle for reopening.
    fn with<T>(&self, f: impl FnOnce(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let (_nested, outer) = tail::Nested::enter();
        self.with_db(|db| {
            if outer {
                self.flush_tail(db)?;
            }
            f(db)
        })
    }

    /// [`Self::with`] without flushing the tail: for the appends, which handle it themselves.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.db()?;
        let r = f(&db);
        if let Err(StoreError::Db(e)) = &r {
            if !self.inner.failed.swap(true, Ordering::AcqRel) {
                tracing::error!(error = %e, "storage error; the data file will be reopened");
            }
        }
        r
    }
}

/// An open data file with its append log.
struct Opened {
    db: Database,
    /// Emptied: what it held is in the data file.
    wal: wal::Wal,
    /// The append-log LSN the data file holds.
    held: u64,
    written: Arc<std::sync::atomic::AtomicU64>,
}

/// Opens the data file, brings its schema up to date and replays the append log into it.
fn open_db(path: &Path) -> Result<Opened, StoreError> {
    {
        crate::permissions::private_data_file(path).map_err(|message| StoreError::Open {
            path: path.to_path_buf(),
            message,
        })?;
        // redb caches up to 1 GiB by default; alertd's hot set (recent inbox, outbox, checkpoints)
        // is small, and an edge host's memory is not.
        let file = written::CountingFile::open(path)?;
        let written = file.counter();
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(file)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                    path: path.to_path_buf(),
                },
                redb::DatabaseError::Storage(redb::StorageError::Io(io))
                    if io.kind() == std::io::ErrorKind::WouldBlock =>
                {
                    StoreError::Locked {
                        path: path.to_path_buf(),
                    }
                }
                other => StoreError::Open {
                    path: path.to_path_buf(),
                    message: other.to_string(),
                },
            })?;
        let txn = durable(&db)?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(META_SCHEMA)?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::SchemaTooNew {
                        path: path.to_path_buf(),
                        found: v,
                        supported: SCHEMA_VERSION,
                    })
                }
                Some(v) if v < SCHEMA_VERSION => {
                    bodies::create_tables(&txn)?;
                    migrate(&txn, v)?;
                    meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
                    tracing::info!(path = %path.display(), from = v, to = SCHEMA_VERSION, "data file schema upgraded");
                }
                Some(_) => {}
                None => {
                    meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
                }
            }
            txn.open_table(INBOX)?;
            txn.open_table(ALERT_STATE)?;
            txn.open_table(OUTBOX)?;
            txn.open_table(DEAD_LETTERS)?;
            txn.open_table(DELIVERY_LOG)?;
            txn.open_table(SILENCES)?;
            txn.open_table(SUPPRESSED_LOG)?;
            txn.open_table(QUARANTINE)?;
            txn.open_table(QUARANTINE_BYTES)?;
            bodies::create_tables(&txn)?;
            ids::prepare(&txn)?;
            items::create_tables(&txn)?;
            crate::quarantine::sweep(&txn)?;
            let (orphans, packs) = bodies::sweep_orphans(&txn)?;
            if orphans + packs > 0 {
                tracing::warn!(
                    bodies = orphans,
                    packs,
                    "deleted notification bodies no delivery row names"
                );
            }
            if meta.get(META_FILE_ID)?.is_none() {
                meta.insert(META_FILE_ID, rand::random::<u64>())?;
            }
        }
        txn.commit()?;
        let (wal, held) = replay(path, &db)?;
        Ok(Opened {
            db,
            wal,
            held,
            written,
        })
    }
}

/// Records that every alert has applied the inbox through `through` and deletes up to
/// `max_rows` rows at or below it; true when none is left.
fn applied_and_prune(
    txn: &redb::WriteTransaction,
    through: u64,
    max_rows: usize,
) -> Result<bool, StoreError> {
    let mut meta = txn.open_table(META)?;
    let applied = meta.get(META_APPLIED)?.map(|v| v.value()).unwrap_or(0);
    if through > applied {
        meta.insert(META_APPLIED, through)?;
    }
    drop(meta);
    inbox::prune(txn, through, max_rows)
}

/// Inserts again the append-log records the data file lacks (see the `wal` module), durably,
/// and empties the log; returns it with the LSN the file now holds.
fn replay(path: &Path, db: &Database) -> Result<(wal::Wal, u64), StoreError> {
    let log = wal::path_for(path);
    let txn = durable(db)?;
    let (file_id, held) = {
        let meta = txn.open_table(META)?;
        let id = meta.get(META_FILE_ID)?.map(|v| v.value()).unwrap_or(0);
        let held = meta.get(META_WAL_LSN)?.map(|v| v.value()).unwrap_or(0);
        (id, held)
    };
    let mut records: Vec<wal::Record> = wal::read(&log, file_id)?
        .into_iter()
        .filter(|r| r.lsn > held)
        .collect();
    if records.first().is_some_and(|r| r.lsn != held + 1) {
        tracing::warn!(log = %log.display(), held, first = records[0].lsn,
            "the append log does not continue the data file (restored from a backup?); ignored");
        records.clear();
    }
    // Its first event must be the file's next one too: an older alertd that ignores the log may
    // have appended meanwhile (a downgrade after a crash).
    let first_seq = records
        .iter()
        .flat_map(|r| &r.rows)
        .find(|row| row.table == wal::Table::Inbox)
        .and_then(|row| row.value.get(..8))
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    if let Some(first) = first_seq {
        let last = inbox::last_seq(&txn.open_table(META)?, &txn.open_table(INBOX)?)?;
        if first != last + 1 {
            tracing::warn!(log = %log.display(), last_seq = last, first_seq = first,
                "the append log's events do not follow the data file's; ignored");
            records.clear();
        }
    }
    let mut lsn = held;
    if let Some(last) = records.last() {
        lsn = last.lsn;
        let rows: usize = records.iter().map(|r| r.rows.len()).sum();
        {
            let mut inbox = txn.open_table(INBOX)?;
            let mut id_log = txn.open_table(ids::ID_LOG)?;
            for row in records.iter().flat_map(|r| &r.rows) {
                match row.table {
                    wal::Table::Inbox => inbox.insert(row.key, row.value.as_slice())?,
                    wal::Table::IdLog => id_log.insert(row.key, row.value.as_slice())?,
                };
            }
            txn.open_table(META)?.insert(META_WAL_LSN, lsn)?;
        }
        tracing::info!(log = %log.display(), records = records.len(), rows,
            "appends acknowledged before a crash restored from the append log");
    }
    txn.commit()?;
    Ok((wal::Wal::create(&log, file_id, lsn)?, lsn))
}

/// Brings a data file of schema `from` up to [`SCHEMA_VERSION`] inside the opening
/// transaction (new tables are created by the caller).
fn migrate(txn: &redb::WriteTransaction, from: u64) -> Result<(), StoreError> {
    // 1 → 2 and 9 → 10: nothing to rewrite. New tables start empty and alert checkpoints of
    // the older layout are read as they are (`AlertState::decode_checkpoint`) and rewritten in
    // the new one at their alert's next change.
    debug_assert!(from < SCHEMA_VERSION);
    // 2 → 3 → 4: remembered client ids change layout (see [`ids::migrate`]).
    ids::migrate(txn, from)?;
    if from < 5 {
        inbox::migrate(txn)?;
    }
    if from < 7 {
        bodies::migrate(txn)?;
    }
    if from < 8 {
        items::migrate(txn)?;
    }
    Ok(())
}

/// Every stored silence; an unreadable row is logged and left out rather than stopping alertd.
fn load_silences(db: &Database) -> Result<SilenceSet, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(SILENCES)?;
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        match decode::<Silence>("silences", v.value()) {
            Ok(s) => out.push(s),
            Err(e) => {
                tracing::error!(key = k.value(), error = %e, "skipping an unreadable silence")
            }
        }
    }
    Ok(SilenceSet::new(out))
}

impl Store {
    /// The data file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Appends several requests' events in one transaction, durable when this returns (see
    /// the `wal` module), assigning sequence numbers and dropping client ids seen within the
    /// de-duplication window.
    pub fn append(
        &self,
        requests: Vec<Vec<NewEvent>>,
        now_ms: i64,
        dedup_window_ms: i64,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let requests = requests
            .into_iter()
            .map(|events| KeyedRequest { key: None, events })
            .collect();
        self.append_keyed(requests, now_ms, dedup_window_ms)
    }

    /// Makes every commit so far durable in the data file itself, so the append log holds
    /// nothing it lacks (see the `wal` module): at a clean stop.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.with(|db| self.commit_durable(durable(db)?))
    }

    /// The bytes redb wrote to the data file since it was (re)opened (the append log's not
    /// included), for tests that measure what an operation writes.
    #[cfg(test)]
    fn redb_bytes_written(&self) -> u64 {
        self.inner
            .redb_written
            .lock()
            .expect("counter lock is never poisoned")
            .load(Ordering::Relaxed)
    }

    /// When events were last appended (epoch ms; 0 = not since start).
    pub fn last_append_ms(&self) -> i64 {
        self.inner.last_append_ms.load(Ordering::Acquire)
    }

    /// How much of the file holds data: the file's size and the bytes of its live pages.
    pub fn space(&self) -> Result<Space, StoreError> {
        let file_bytes = std::fs::metadata(&self.inner.path)
            .map(|m| m.len())
            .map_err(|e| StoreError::Db(e.to_string()))?;
        let live_bytes = self.with(|db| {
            let txn = db.begin_write()?;
            let st = txn.stats()?;
            let live =
                (st.leaf_pages() + st.branch_pages()) * st.page_size() as u64 + st.metadata_bytes();
            txn.abort()?;
            Ok(live)
        })?;
        crate::metrics::set_store_space(file_bytes, live_bytes);
        Ok(Space {
            file_bytes,
            live_bytes,
        })
    }

    /// Compacts the file when at least half of it (and at least 4 MiB) is free space, giving
    /// the space back to the file system. Needs the database to itself: new operations wait
    /// while it runs (so it is run at start-up or when the store is idle), and it gives up if
    /// operations in flight do not finish within a second. Returns the space before and after.
    pub fn compact_if_worthwhile(&self) -> Result<Option<(Space, Space)>, StoreError> {
        let _w = written::attribute("housekeeping");
        let before = self.space()?;
        if before.file_bytes < 2 * before.live_bytes
            || before.file_bytes - before.live_bytes < 4 * 1024 * 1024
        {
            return Ok(None);
        }
        {
            let mut slot = self.inner.db.write().expect("store lock is never poisoned");
            let Some(mut shared) = slot.take() else {
                return Ok(None);
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            let db = loop {
                match Arc::try_unwrap(shared) {
                    Ok(db) => break Some(db),
                    Err(back) if std::time::Instant::now() < deadline => {
                        shared = back;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(back) => {
                        *slot = Some(back);
                        break None;
                    }
                }
            };
            let Some(mut db) = db else {
                return Ok(None);
            };
            let result = (|| {
                while db
                    .compact()
                    .map_err(|e| StoreError::Db(format!("compaction: {e}")))?
                {}
                Ok::<(), StoreError>(())
            })();
            *slot = Some(Arc::new(db));
            result?;
        }
        let after = self.space()?;
        tracing::info!(
            before_bytes = before.file_bytes,
            after_bytes = after.file_bytes,
            live_bytes = after.live_bytes,
            "data file compacted"
        );
        Ok(Some((before, after)))
    }

    /// The highest sequence number ever assigned.
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        self.with(|db| {
            let txn = db.begin_read()?;
            inbox::last_seq(&txn.open_table(META)?, &txn.open_table(INBOX)?)
        })
    }

    /// Every event at or below this sequence number has been applied by every alert.
    pub fn applied_through(&self) -> Result<u64, StoreError> {
        self.with(|db| {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            Ok(meta.get(META_APPLIED)?.map(|v| v.value()).unwrap_or(0))
        })
    }

    /// Up to `limit` inbox events with a sequence number above `after`, in order.
    pub fn read_inbox(&self, after: u64, limit: usize) -> Result<Vec<(u64, Event)>, StoreError> {
        self.with(|db| {
            let txn = db.begin_read()?;
            inbox::read(&txn.open_table(INBOX)?, after, limit)
        })
    }

    /// Number of events in the inbox (not yet applied by every alert).
    pub fn inbox_len(&self) -> Result<u64, StoreError> {
        self.with(|db| {
            let txn = db.begin_read()?;
            inbox::len(&txn.open_table(INBOX)?)
        })
    }

    /// One alert's raw checkpoint.
    pub fn load_checkpoint(&self, alert_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(ALERT_STATE)?;
            Ok(table.get(alert_id)?.map(|v| v.value().to_vec()))
        })
    }

    /// Every alert's raw checkpoint; decoding is the alert module's business.
    pub fn load_checkpoints(&self) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        self.with(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(ALERT_STATE)?;
            let mut out = HashMap::new();
            for row in table.iter()? {
                let (k, v) = row?;
                out.insert(k.value().to_string(), v.value().to_vec());
            }
            Ok(out)
        })
    }

    /// Commits one tick: checkpoints and new outbox rows, atomically and durably, with one
    /// bounded step of pruning up to the point those checkpoints make every alert durable at
    /// (the rest: [`Store::prune_step`]).
    ///
    /// It is three commits: the tick's writes without durability, an empty one (redb releases
    /// pages a non-durable commit freed at the next one), and an empty durable one. Inbox rows
    /// appended since the last tick (durable in the append log, see the `wal` module) are thus
    /// freed before the durable commit and never written to the data file; deleted *in* the
    /// durable commit, redb would write them first. Any durable commit holds the first one whole, so
    /// the rows never go without the checkpoints that applied them.
    pub fn commit_tick(&self, tick: &TickCommit) -> Result<(), StoreError> {
        let _w = written::attribute("tick");
        self.with(|db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::None)?;
            {
                let mut state = txn.open_table(ALERT_STATE)?;
                for (id, bytes) in &tick.checkpoints {
                    state.insert(id.as_str(), counted("alert_state", bytes))?;
                }
                let mut outbox = txn.open_table(OUTBOX)?;
                let mut bodies = bodies::Bodies::open(&txn)?;
                bodies.store_tick(&tick.deliveries)?;
                for d in &tick.deliveries {
                    outbox.insert(d.key(), counted("outbox", &bodies.row(d)?))?;
                }
                items::commit(&txn, tick)?;
                if !tick.suppressed.is_empty() {
                    let mut log = txn.open_table(SUPPRESSED_LOG)?;
                    for s in &tick.suppressed {
                        log.insert(
                            s.delivery.key(),
                            counted("suppressed_log", &codec::encode(s)),
                        )?;
                    }
                    let excess = log.len()?.saturating_sub(tick.suppressed_log_size as u64);
                    for _ in 0..excess {
                        log.pop_first()?;
                    }
                }
            }
            if let Some(through) = tick.prune_through {
                applied_and_prune(&txn, through, tick.prune_rows)?;
            }
            txn.commit()?;
            let mut release = db.begin_write()?;
            release.set_durability(Durability::None)?;
            release.commit()?;
            self.commit_durable(durable(db)?)?;
            Ok(())
        })
    }

    /// One bounded step of housekeeping: records that every alert has applied the inbox through
    /// `through`, deletes at most `max_rows` inbox rows at or below it, and drops one run of
    /// client ids all accepted at or before `expire_ids_before_ms` (or the oldest one while more
    /// than `max_ids` are remembered, sealing one first if needed). Returns true when nothing is
    /// left to do. The step is not fsynced on its own: if it is lost in a crash, the rows are
    /// replayed and skipped (alerts ignore sequences they applied) and deleted again; the next
    /// journal commit makes it durable. Small steps keep the journal's wait for the single redb
    /// writer short, however far behind pruning is.
    pub fn prune_step(
        &self,
        through: u64,
        expire_ids_before_ms: i64,
        max_ids: u64,
        max_rows: usize,
    ) -> Result<bool, StoreError> {
        let _w = written::attribute("housekeeping");
        let done = self.with(|db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::None)?;
            let done;
            let expiry = {
                let rows_done = applied_and_prune(&txn, through, max_rows)?;
                // Whole runs of client ids expire; over the cap, the oldest go early.
                let expiry = self.inner.ids.expire(&txn, expire_ids_before_ms, max_ids)?;
                done = rows_done && !expiry.more;
                expiry
            };
            txn.commit()?;
            expiry.committed();
            Ok(done)
        })?;
        // Over the cap with nothing sealed yet: seal here, so the next step can drop a run.
        if !done {
            self.seal_step()?;
        }
        Ok(done)
    }

    /// The seeds of several alerts, read in one transaction: their checkpoints and the point
    /// every alert has applied through. One transaction, so no prune can fall between the two.
    pub fn load_seeds(&self, ids: &[String]) -> Result<Seeds, StoreError> {
        self.with(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(ALERT_STATE)?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push(table.get(id.as_str())?.map(|v| v.value().to_vec()));
            }
            let applied = txn
                .open_table(META)?
                .get(META_APPLIED)?
                .map(|v| v.value())
                .unwrap_or(0);
            Ok(Seeds {
                checkpoints: out,
                applied,
                items: items::for_alerts(&txn, ids)?,
            })
        })
    }

    /// Deletes the checkpoints of these alerts.
    pub fn remove_checkpoints(&self, ids: &[String]) -> Result<(), StoreError> {
        self.with(|db| {
            let txn = durable(db)?;
            {
                let mut state = txn.open_table(ALERT_STATE)?;
                for id in ids {
                    state.remove(id.as_str())?;
                }
                items::forget(&txn, ids)?;
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// Deletes every checkpoint whose alert is not in `keep` (alerts removed while alertd was
    /// down).
    pub fn retain_checkpoints(&self, keep: &[String]) -> Result<(), StoreError> {
        let keep: std::collections::HashSet<&str> = keep.iter().map(String::as_str).collect();
        let stale: Vec<String> = self
            .load_checkpoints()?
            .into_keys()
            .filter(|id| !keep.contains(id.as_str()))
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        self.remove_checkpoints(&stale)
    }

    /// Every pending delivery, for the dispatcher's queue at start.
    pub fn load_outbox(&self) -> Result<Vec<Delivery>, StoreError> {
        self.with(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(OUTBOX)?;
            let mut bodies = bodies::Reader::open(&txn)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                // Unreadable rows were quarantined at open; one corrupted since is skipped
                // (and quarantined at the next start) rather than stopping the engine.
                match decode::<Delivery>("outbox", v.value()) {
                    Ok(mut d) => match bodies.fill(&mut d) {
                        Ok(()) => out.push(d),
                        // Left pending (the API lists it) rather than sent with a wrong body or
                        // keeping the engine from starting.
                        Err(e) => tracing::error!(key = k.value(), error = %e, "skipping a delivery whose stored body cannot be read"),
                    },
                    Err(e) => tracing::error!(key = k.value(), error = %e, "skipping an unreadable outbox row"),
                }
            }
            Ok(out)
        })
    }

    /// Records a group of attempt results in one transaction; the delivered log keeps the newest
    /// `log_size` rows.
    pub fn record_results(
        &self,
        results: &[DeliveryResult],
        log_size: usize,
    ) -> Result<(), StoreError> {
        let _w = written::attribute("delivery_results");
        self.with(|db| {
            let txn = durable(db)?;
            {
                let mut outbox = txn.open_table(OUTBOX)?;
                let mut dead = txn.open_table(DEAD_LETTERS)?;
                let mut log = txn.open_table(DELIVERY_LOG)?;
                let mut bodies = bodies::Bodies::open(&txn)?;
                for r in results {
                    match r {
                        DeliveryResult::Delivered(d) => {
                            outbox.remove(d.key())?;
                            let row = bodies.row(d)?;
                            log.insert(d.key(), counted("delivery_log", &row))?;
                        }
                        DeliveryResult::Retry(d) => {
                            // A row that left the outbox meanwhile (e.g. purged) stays gone.
                            if outbox.get(d.key())?.is_some() {
                                let row = bodies.row(d)?;
                                outbox.insert(d.key(), counted("outbox", &row))?;
                            }
                        }
                        DeliveryResult::Dead(d) => {
                            outbox.remove(d.key())?;
                            let row = bodies.dead_row(d)?;
                            dead.insert(d.key(), counted("dead_letters", &row))?;
                        }
                    }
                }
                let excess = log.len()?.saturating_sub(log_size as u64);
                for _ in 0..excess {
                    if let Some((k, _)) = log.pop_first()? {
                        bodies.forget(k.value())?;
                    }
                }
            }
            self.commit_durable(txn)?;
            Ok(())
        })
    }

    /// Newest-first listing of one status, at most `limit` rows.
    pub fn list_deliveries(
        &self,
        status: DeliveryStatus,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.with(|db| {
            let txn = db.begin_read()?;
            let (name, def) = match status {
                DeliveryStatus::Pending => ("outbox", OUTBOX),
                DeliveryStatus::Dead => ("dead_letters", DEAD_LETTERS),
                DeliveryStatus::Delivered => ("delivery_log", DELIVERY_LOG),
            };
            let table = txn.open_table(def)?;
            let mut bodies = bodies::Reader::open(&txn)?;
            let mut out = Vec::new();
            for row in table.iter()?.rev().take(limit) {
                let (k, v) = row?;
                match decode::<Delivery>(name, v.value()) {
                    Ok(mut d) => {
                        if let Err(e) = bodies.fill(&mut d) {
                            tracing::error!(table = name, key = k.value(), error = %e, "a delivery's stored body cannot be read; listed without it");
                        }
                        out.push(d)
                    }
                    Err(e) => {
                        tracing::error!(table = name, key = k.value(), error = %e, "skipping an unreadable row; it is quarantined at the next start")
                    }
                }
            }
            Ok(out)
        })
    }

    /// Counts of pending and dead deliveries, for metrics.
    pub fn delivery_counts(&self) -> Result<(u64, u64), StoreError> {
        self.with(|db| {
            let txn = db.begin_read()?;
            Ok((
                txn.open_table(OUTBOX)?.len()?,
                txn.open_table(DEAD_LETTERS)?.len()?,
            ))
        })
    }

    /// Moves a dead letter back to the outbox with its original id and body, due now.
    pub fn requeue_dead(&self, id: u128, now_ms: i64) -> Result<Option<Delivery>, StoreError> {
        self.with(|db| {
            let txn = durable(db)?;
            let requeued = {
                let mut dead = txn.open_table(DEAD_LETTERS)?;
                let row = dead.remove(id)?.map(|v| v.value().to_vec());
                match row {
                    None => None,
                    Some(bytes) => {
                        let mut d: Delivery = decode("dead_letters", &bytes)?;
                        d.attempts = 0;
                        d.next_attempt_ms = now_ms;
                        d.last_error = None;
                        d.last_status = None;
                        let mut bodies = bodies::Bodies::open(&txn)?;
                        bodies.fill(&mut bodies::PackCache::new(), &mut d)?;
                        let row = bodies.row(&d)?;
                        let mut outbox = txn.open_table(OUTBOX)?;
                        outbox.insert(d.key(), counted("outbox", &row))?;
                        Some(d)
                    }
                }
            };
            txn.commit()?;
            Ok(requeued)
        })
    }
}

/// Quarantine and retention: what keeps the file startable and bounded.
impl Store {
    /// Newest-first quarantined rows, at most `limit`, and how many there are in all.
    pub fn list_quarantine(
        &self,
        limit: usize,
    ) -> Result<(Vec<crate::quarantine::QuarantinedRow>, u64), StoreError> {
        self.with(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(QUARANTINE)?;
            let mut out = Vec::new();
            for row in table.iter()?.rev().take(limit) {
                let (_, v) = row?;
                out.push(decode("quarantine", v.value())?);
            }
            Ok((out, table.len()?))
        })
    }

    /// Applies delivery retention at `now_ms` to the dead letters and the delivered log: rows
    /// older than the age limit go, then the oldest rows while the table is over its byte
    /// limit. Ages come from the keys (UUIDv7 notification ids carry their creation time), so
    /// nothing is decoded. Returns (table, reason, rows deleted) for what was deleted.
    pub fn apply_retention(
        &self,
        rules: &[crate::retention::Retention],
        now_ms: i64,
    ) -> Result<Vec<(&'static str, &'static str, u64)>, StoreError> {
        let _w = written::attribute("housekeeping");
        self.with(|db| {
            let mut plan = Vec::new();
            {
                let txn = db.begin_read()?;
                for rule in rules {
                    let def = match rule.table {
                        "dead_letters" => DEAD_LETTERS,
                        _ => DELIVERY_LOG,
                    };
                    let table = txn.open_table(def)?;
                    let bodies = bodies::Reader::open(&txn)?;
                    let mut rows: Vec<(u128, usize)> = Vec::new();
                    for r in table.iter()? {
                        let (k, v) = r?;
                        let k = k.value();
                        rows.push((k, v.value().len() + bodies.stored_len(k)?));
                    }
                    plan.push((rule, crate::retention::plan(&rows, rule, now_ms)));
                }
            }
            if plan.iter().all(|(_, p)| p.is_empty()) {
                return Ok(Vec::new());
            }
            let txn = durable(db)?;
            let mut done = Vec::new();
            {
                for (rule, p) in &plan {
                    let def = match rule.table {
                        "dead_letters" => DEAD_LETTERS,
                        _ => DELIVERY_LOG,
                    };
                    let mut table = txn.open_table(def)?;
                    let mut bodies = bodies::Bodies::open(&txn)?;
                    let (mut age, mut bytes) = (0, 0);
                    for (key, reason) in p {
                        if table.remove(*key)?.is_some() {
                            bodies.forget(*key)?;
                            if *reason == "age" {
                                age += 1
                            } else {
                                bytes += 1
                            }
                        }
                    }
                    if age > 0 {
                        done.push((rule.table, "age", age));
                    }
                    if bytes > 0 {
                        done.push((rule.table, "bytes", bytes));
                    }
                }
            }
            txn.commit()?;
            Ok(done)
        })
    }
}

/// The tables the quarantine sweep reads, for [`crate::quarantine`].
pub(crate) mod tables {
    use super::*;

    /// A stored-value table, by name, with the type its rows decode to.
    pub enum Swept {
        Outbox,
        DeadLetters,
        DeliveryLog,
        SuppressedLog,
        Silences,
    }

    impl Swept {
        pub const ALL: [Swept; 5] = [
            Swept::Outbox,
            Swept::DeadLetters,
            Swept::DeliveryLog,
            Swept::SuppressedLog,
            Swept::Silences,
        ];

        pub fn name(&self) -> &'static str {
            match self {
                Swept::Outbox => "outbox",
                Swept::DeadLetters => "dead_letters",
                Swept::DeliveryLog => "delivery_log",
                Swept::SuppressedLog => "suppressed_log",
                Swept::Silences => "silences",
            }
        }

        fn def(&self) -> TableDefinition<'static, u128, &'static [u8]> {
            match self {
                Swept::Outbox => OUTBOX,
                Swept::DeadLetters => DEAD_LETTERS,
                Swept::DeliveryLog => DELIVERY_LOG,
                Swept::SuppressedLog => SUPPRESSED_LOG,
                Swept::Silences => SILENCES,
            }
        }

        /// Why a row of this table cannot be read, if it cannot.
        fn unreadable(&self, bytes: &[u8]) -> Option<String> {
            let r = match self {
                Swept::Outbox | Swept::DeadLetters | Swept::DeliveryLog => {
                    codec::decode::<Delivery>(bytes).map(|_| ())
                }
                Swept::SuppressedLog => codec::decode::<SuppressedDelivery>(bytes).map(|_| ()),
                Swept::Silences => codec::decode::<Silence>(bytes).map(|_| ()),
            };
            r.err().map(|e| e.to_string())
        }
    }

    /// Moves every unreadable row of `which` into the quarantine; returns what was moved as
    /// (key, reason, size).
    pub fn quarantine_unreadable(
        txn: &redb::WriteTransaction,
        which: &Swept,
        mut entry: impl FnMut(u128, &str, usize) -> (u128, Vec<u8>),
    ) -> Result<Vec<(u128, String, usize)>, StoreError> {
        let mut table = txn.open_table(which.def())?;
        let mut bad = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            if let Some(reason) = which.unreadable(v.value()) {
                bad.push((k.value(), reason, v.value().len()));
            }
        }
        if bad.is_empty() {
            return Ok(bad);
        }
        let mut q = txn.open_table(QUARANTINE)?;
        let mut qb = txn.open_table(QUARANTINE_BYTES)?;
        for (key, reason, size) in &bad {
            let raw = table
                .remove(*key)?
                .map(|v| v.value().to_vec())
                .unwrap_or_default();
            let (id, meta) = entry(*key, reason, *size);
            q.insert(id, meta.as_slice())?;
            qb.insert(id, raw.as_slice())?;
        }
        Ok(bad)
    }

    /// Rows in quarantine.
    pub fn quarantined(txn: &redb::WriteTransaction) -> Result<u64, StoreError> {
        Ok(txn.open_table(QUARANTINE)?.len()?)
    }
}

/// Silences: the cached snapshot and the two changes the API makes.
impl Store {
    /// Every stored silence as of the last change; cheap (an `Arc`), called at every tick.
    pub fn silences(&self) -> Arc<SilenceSet> {
        self.inner
            .silences
            .read()
            .expect("silence cache lock is never poisoned")
            .clone()
    }

    fn publish(&self, set: SilenceSet) {
        *self
            .inner
            .silences
            .write()
            .expect("silence cache lock is never poisoned") = Arc::new(set);
    }

    /// Adds the silence `make` builds from the current set (or the error it returns), in one
    /// durable transaction that also deletes silences no longer kept at `now_ms`.
    pub fn create_silence<E>(
        &self,
        now_ms: i64,
        make: impl FnOnce(&SilenceSet) -> Result<Silence, E>,
    ) -> Result<Result<Silence, E>, StoreError> {
        let _one_at_a_time = self
            .inner
            .silence_writes
            .lock()
            .expect("silence write lock is never poisoned");
        let current = self.silences();
        let silence = match make(&current) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let mut next: Vec<Silence> = current
            .all()
            .iter()
            .filter(|s| s.is_kept(now_ms))
            .cloned()
            .collect();
        let gone: Vec<u128> = current
            .all()
            .iter()
            .filter(|s| !s.is_kept(now_ms))
            .map(Silence::key)
            .collect();
        self.with(|db| {
            let txn = durable(db)?;
            {
                let mut table = txn.open_table(SILENCES)?;
                for k in &gone {
                    table.remove(*k)?;
                }
                table.insert(silence.key(), codec::encode(&silence).as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })?;
        next.push(silence.clone());
        self.publish(SilenceSet::new(next));
        Ok(Ok(silence))
    }

    /// Ends silence `id` at `now_ms` (a pending one becomes an empty span at `now_ms`); one that
    /// already ended is returned unchanged. `None` when no such silence is stored.
    pub fn expire_silence(&self, id: u128, now_ms: i64) -> Result<Option<Silence>, StoreError> {
        let _one_at_a_time = self
            .inner
            .silence_writes
            .lock()
            .expect("silence write lock is never poisoned");
        let current = self.silences();
        let Some(found) = current
            .all()
            .iter()
            .find(|s| s.key() == id && s.is_kept(now_ms))
        else {
            return Ok(None);
        };
        if found.ends_ms <= now_ms {
            return Ok(Some(found.clone()));
        }
        let mut ended = found.clone();
        ended.ends_ms = now_ms;
        ended.starts_ms = ended.starts_ms.min(now_ms);
        self.with(|db| {
            let txn = durable(db)?;
            txn.open_table(SILENCES)?
                .insert(id, codec::encode(&ended).as_slice())?;
            txn.commit()?;
            Ok(())
        })?;
        let next: Vec<Silence> = current
            .all()
            .iter()
            .map(|s| {
                if s.key() == id {
                    ended.clone()
                } else {
                    s.clone()
                }
            })
            .collect();
        self.publish(SilenceSet::new(next));
        Ok(Some(ended))
    }

    /// Newest-first suppressed notifications, at most `limit`.
    pub fn list_suppressed(&self, limit: usize) -> Result<Vec<SuppressedDelivery>, StoreError> {
        self.with(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(SUPPRESSED_LOG)?;
            let mut out = Vec::new();
            for row in table.iter()?.rev().take(limit) {
                let (_, v) = row?;
                out.push(decode("suppressed_log", v.value())?);
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod silence_tests {
    use super::*;
    use crate::silence::{SilenceState, KEEP_EXPIRED_MS};

    const NOW: i64 = 1_780_000_000_000;
    const HOUR: i64 = 3_600_000;

    fn silence(n: u8, starts: i64, ends: i64) -> Silence {
        Silence {
            id: format!("0197a000-0000-7000-8000-0000000000{n:02x}"),
            alert: "a".into(),
            event_types: vec![],
            starts_ms: starts,
            ends_ms: ends,
            comment: "c".into(),
            created_by: "t".into(),
            created_ms: starts,
        }
    }

    fn add(store: &Store, now: i64, s: Silence) {
        store
            .create_silence(now, |_| Ok::<_, ()>(s))
            .unwrap()
            .unwrap();
    }

    #[test]
    fn silences_persist_and_a_refused_one_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            add(&store, NOW, silence(1, NOW, NOW + HOUR));
            let refused = store
                .create_silence(NOW, |set| Err(set.all().len()))
                .unwrap();
            assert_eq!(refused, Err(1), "the maker sees the current set");
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.silences().all(), &[silence(1, NOW, NOW + HOUR)]);
    }

    #[test]
    fn expiring_ends_a_silence_now_and_a_pending_one_becomes_an_empty_span() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let (active, pending) = (
            silence(1, NOW - HOUR, NOW + HOUR),
            silence(2, NOW + HOUR, NOW + 2 * HOUR),
        );
        add(&store, NOW, active.clone());
        add(&store, NOW, pending.clone());
        let ended = store.expire_silence(active.key(), NOW).unwrap().unwrap();
        assert_eq!((ended.starts_ms, ended.ends_ms), (NOW - HOUR, NOW));
        let ended = store.expire_silence(pending.key(), NOW).unwrap().unwrap();
        assert_eq!((ended.starts_ms, ended.ends_ms), (NOW, NOW));
        assert!(store
            .silences()
            .all()
            .iter()
            .all(|s| s.state(NOW) == SilenceState::Expired));
        let again = store
            .expire_silence(active.key(), NOW + 5)
            .unwrap()
            .unwrap();
        assert_eq!(again.ends_ms, NOW, "an ended silence is left as it is");
        assert!(store
            .expire_silence(silence(9, 0, 1).key(), NOW)
            .unwrap()
            .is_none());
    }

    #[test]
    fn silences_expired_for_a_day_are_deleted_at_the_next_creation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        add(&store, NOW, silence(1, NOW, NOW + HOUR));
        let later = NOW + HOUR + KEEP_EXPIRED_MS;
        assert!(
            store
                .expire_silence(silence(1, 0, 1).key(), later)
                .unwrap()
                .is_none(),
            "no longer listed"
        );
        add(&store, later, silence(2, later, later + HOUR));
        drop(store);
        let ids: Vec<u128> = Store::open(&path)
            .unwrap()
            .silences()
            .all()
            .iter()
            .map(|s| s.key() & 0xff)
            .collect();
        assert_eq!(ids, vec![2]);
    }
}
