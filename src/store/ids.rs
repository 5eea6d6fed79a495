//! Remembered client event ids: exact de-duplication within `ingest.dedup_window`, at one
//! sequential write per append on the ingest path and about 20 bytes per id on disk.
//!
//! A client id is remembered as the 128-bit key of [`id_key`] (a BLAKE3 prefix of workspace and
//! id; SHA-256 in files before schema 9, see [`super::id_key`]) with the time it was accepted. The layout is a small log-structured merge without merges:
//!
//! - **log** (`ingest_id_log`, u64 → accepted ms + packed keys): the ids an append accepted,
//!   written in the same durable transaction as its events under an increasing key, ≤ 254 ids a
//!   row (a row fills one 4 KiB page). Appending at the right edge of one B-tree dirties a page or
//!   two per commit, however many ids it holds. An acknowledged id therefore survives any crash.
//! - **unsealed sets** (memory): the log's ids in hash sets, for lookups. The *active* set takes
//!   new ids; it is *frozen* once it holds [`IdState::seal_size`] ids or spans an eighth of the
//!   window, and a new one starts.
//! - **runs** (`ingest_id_run.<n>`, first key → block): a frozen set sorted and written in bounded
//!   steps, by a background thread, as 4 KiB blocks of (key, time offset) pairs, 20 bytes an id;
//!   the last step records the run in `ingest_id_runs` and deletes its log rows, atomically.
//!   Writing sorted blocks into a fresh table writes each page once.
//! - **filters** (memory): a 16-bit binary fuse filter per run (≈ 2.3 bytes an id, 0.0015 %
//!   false positives), so looking up a new id almost never reads the disk. (8-bit filters, half
//!   the memory, sent 0.4 % of lookups per run to the disk: 2 % of the ingest CPU in the bench.)
//!   And an 8-bit one per eight runs, so a new id asks a few filters however many runs there
//!   are (see [`super::id_filter`]).
//! - **expiry**: a run goes whole, by dropping its table, once its newest id is older than the
//!   window, or early (oldest first) while more than `ingest.max_remembered_ids` are remembered.
//!
//! Memory: unsealed ids cost 21 bytes per hash-table slot (24–48 bytes per id), and sets are
//! capped at [`MAX_SET`] ids (2.75 MiB) with at most [`MAX_FROZEN`] frozen ones waiting, so
//! unsealed ids use at most ≈ 8.5 MiB (plus ≈ 3.5 MiB while a run is sorted, and the emptied
//! table of the last sealed set, kept for the next set while ids keep coming); sealed ids cost
//! their filters, ≈ 3.4 bytes each (34 MiB for the default cap of 10 million), and the newest
//! runs' ids 8 bytes each until their group is built (at most 8 runs, ≈ 7 MiB).

use super::id_filter::{self, Filter, Group, GROUP_RUNS};
use super::id_key::{id_key, old_key, sha_key, ShaIds};
use super::id_probe::{ClientId, Probe, Published, Snapshot};
use super::{Store, StoreError};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
    WriteTransaction,
};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

/// Log key → accepted ms (8 bytes, big-endian) followed by 16-byte id keys.
pub(super) const ID_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("ingest_id_log");
/// Run number → (oldest accepted ms, newest accepted ms, ids): the complete runs. A run table
/// without a row here is a partly written one and is deleted at open.
const ID_RUNS: TableDefinition<u64, (i64, i64, u64)> = TableDefinition::new("ingest_id_runs");
/// The runs whose keys are SHA-256 ones (written before schema 9; see [`super::id_key`]).
const ID_SHA_RUNS: TableDefinition<u64, ()> = TableDefinition::new("ingest_id_sha_runs");
/// `log_through` → the log rows numbered up to this hold SHA-256 keys.
const ID_SHA: TableDefinition<&str, u64> = TableDefinition::new("ingest_id_sha");
const SHA_LOG: &str = "log_through";
/// Run tables are `ingest_id_run.<n>`: a block's first key → the block.
const RUN_PREFIX: &str = "ingest_id_run.";

/// Ids per log row: 8 + 254 × 16 = 4,072 bytes, one row to a 4 KiB leaf.
const LOG_ROW_IDS: usize = 254;
/// Bytes of one id in a run block: key (16) and offset from the run's oldest time in ms (4).
const BLOCK_ENTRY: usize = 20;
/// Ids per run block: 203 × 20 = 4,060 bytes, one block (with its 16-byte key) to a 4 KiB leaf.
const BLOCK_IDS: usize = 203;
/// Ids written per sealing step (48 blocks, 195 KB), so one step holds the single writer for
/// about a millisecond and ingest commits interleave.
const SEAL_STEP_IDS: usize = BLOCK_IDS * 48;
/// The most ids an unsealed set holds: 2^17 × 7/8, the most a 2^17-slot hash table takes
/// (2^17 × 21 bytes = 2.75 MiB); sorting one for sealing takes about 10 ms on the sealing thread.
///
/// Sealing a set ends in one step that holds the single writer while it deletes the set's log
/// rows (one per 254 ids), and the next append's durable commit writes the set's run pages:
/// with sets of 2^18 slots that step took 6–8 ms, and ingest with a client id on every event
/// had a p99 of 29–38 ms. Sets half that size: p99 22–26 ms and 30–35 MiB less RSS, at the
/// same throughput (interleaved `bench load --mode batch-ids` runs, 10 s and 30 s; the 30 s
/// ones reach the 10 M cap, where twice as many runs are probed).
pub const MAX_SET: usize = 114_688;
/// Frozen sets allowed to wait for sealing; past this, an append seals before it returns.
pub const MAX_FROZEN: usize = 2;

/// The 16-byte key of a client id (see [`super::id_key`]).
pub(super) type Key = [u8; 16];

pub(super) fn hi64(k: &Key) -> u64 {
    u64::from_be_bytes(k[..8].try_into().expect("a key has 16 bytes"))
}

fn run_name(run: u64) -> String {
    format!("{RUN_PREFIX}{run}")
}

fn run_def(name: &str) -> TableDefinition<'_, u128, &'static [u8]> {
    TableDefinition::new(name)
}

/// Keys are already uniform hashes: the hash table uses 8 of their bytes as they are.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // A key hashes as its 16 bytes (after a length prefix, ignored below).
        for (i, b) in bytes.iter().rev().take(8).enumerate() {
            self.0 ^= (*b as u64) << (8 * i);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

type KeyMap = HashMap<Key, u32, BuildHasherDefault<Prehashed>>;

/// Ids not yet in a run, with their acceptance time as an offset from `base_ms`.
#[derive(Default)]
struct Pending {
    ids: KeyMap,
    /// Its keys are SHA-256 ones (log rows written before schema 9).
    sha: bool,
    base_ms: i64,
    max_ms: i64,
    /// The last log row holding its ids (its rows are the ones after the previous set's).
    through_log: u64,
    /// Once frozen and sorted for sealing: its filter, checked before the (much larger) hash
    /// table so that looking up a new id touches less memory.
    filter: OnceLock<Arc<Filter>>,
}

impl Pending {
    fn at(&self, key: &Key) -> Option<i64> {
        self.ids.get(key).map(|off| self.base_ms + *off as i64)
    }

    /// Whether an id accepted at `now_ms` has an offset in this set.
    fn fits(&self, now_ms: i64) -> bool {
        self.ids.is_empty() || (now_ms >= self.base_ms && now_ms - self.base_ms <= u32::MAX as i64)
    }

    fn insert(&mut self, key: Key, at_ms: i64) {
        if self.ids.is_empty() {
            self.base_ms = at_ms;
            self.max_ms = at_ms;
        }
        self.max_ms = self.max_ms.max(at_ms);
        self.ids.insert(key, (at_ms - self.base_ms) as u32);
    }
}

/// A sealed run: ids on disk in `ingest_id_run.<id>`, times within [`min_ms`, `max_ms`].
struct Run {
    id: u64,
    min_ms: i64,
    max_ms: i64,
    len: u64,
    filter: Arc<Filter>,
    /// Its keys are SHA-256 ones: searched by an id's old key, and in no group.
    sha: bool,
}

/// Everything in memory about remembered ids; the file is the truth, this is its index.
pub(super) struct IdState {
    active: Pending,
    /// Oldest first; sealed in this order, each covering the log rows after the previous one.
    frozen: VecDeque<Arc<Pending>>,
    /// Oldest first.
    runs: Vec<Run>,
    /// Filters over groups of runs, oldest first; a group goes when its last run does.
    groups: Vec<Arc<Group>>,
    /// The key halves of the newest runs, not yet in a group, oldest first.
    ungrouped: Vec<(u64, Arc<[u64]>)>,
    /// The filters of `runs` and `groups` as last published.
    filters: Arc<Snapshot>,
    /// Counted while a run or set holds SHA-256 keys.
    sha: ShaIds,
    next_log: u64,
    next_run: u64,
    /// Bumped when the state is reloaded from the file, so a sealing step started before knows
    /// its work is stale.
    generation: u64,
    /// The last `ingest.max_remembered_ids` prune was given (sets are an eighth of it).
    max_ids: u64,
    /// The emptied hash table of the last set sealed, for the next active set: a fresh table of
    /// [`MAX_SET`] ids is 2.75 MiB of new pages, and faulting them in on the commit thread took a
    /// tenth of that thread's time under ingest with ids. Dropped when ingest of ids stops.
    spare: Option<KeyMap>,
}

impl IdState {
    /// Ids per unsealed set: an eighth of the cap, so dropping the oldest run over the cap
    /// forgets at most an eighth of the ids, and at most [`MAX_SET`] for memory.
    fn seal_size(&self) -> usize {
        ((self.max_ids / 8).max(16) as usize).min(MAX_SET)
    }

    /// Publishes the sealed runs' filters, for [`Store::probe_ids`](super::Store::probe_ids)
    /// and for ids an append probes itself; after every change to `runs` or `groups`.
    fn publish(&mut self, published: &Published) {
        self.filters = Arc::new(Snapshot {
            generation: self.generation,
            // Probes hold new keys: the old-keyed runs are searched by the append itself.
            runs: (self.runs.iter())
                .filter(|r| !r.sha)
                .map(|r| (r.id, r.filter.clone()))
                .collect(),
            groups: self.groups.clone(),
        });
        published.set(self.filters.clone());
    }

    /// Groups the oldest ungrouped runs while [`GROUP_RUNS`] of them wait (at open).
    fn group_all(&mut self) {
        while self.ungrouped.len() >= GROUP_RUNS {
            let members: Vec<_> = self.ungrouped.drain(..GROUP_RUNS).collect();
            self.groups.push(Arc::new(Group::build(&members)));
        }
    }

    /// A run was dropped: its key halves, and a group all of whose runs are gone, go too.
    fn forget_run(&mut self, run: u64) {
        self.ungrouped.retain(|(r, _)| *r != run);
        let oldest = self.runs.first().map_or(u64::MAX, |r| r.id);
        self.groups.retain(|g| g.last >= oldest);
        self.count_sha();
    }

    /// Whether ids need their old key too: while any run or set holds SHA-256 keys.
    fn count_sha(&mut self) {
        let holds = self.runs.iter().any(|r| r.sha) || self.frozen.iter().any(|f| f.sha);
        self.sha.set(holds);
    }

    fn remembered(&self) -> u64 {
        self.active.ids.len() as u64
            + self.frozen.iter().map(|f| f.ids.len() as u64).sum::<u64>()
            + self.runs.iter().map(|r| r.len).sum::<u64>()
    }

    fn freeze(&mut self) {
        if !self.active.ids.is_empty() {
            // The next set is sized like this one: under a steady load it fills as much, and
            // growing a large table on the ingest path would stall an append.
            let size = self.active.ids.len().min(self.seal_size());
            let ids = match self.spare.take() {
                // Not much larger than needed: a spare kept from a heavier load is let go.
                Some(t) if t.capacity() >= size && t.capacity() <= 2 * size.max(1024) => t,
                _ => KeyMap::with_capacity_and_hasher(size, Default::default()),
            };
            let next = Pending {
                ids,
                ..Pending::default()
            };
            let set = std::mem::replace(&mut self.active, next);
            self.frozen.push_back(Arc::new(set));
        }
    }
}

/// The shared handle: state, the run being written, and the sealing thread's wake-up.
pub(super) struct Ids {
    state: Mutex<IdState>,
    /// The runs as of their last change (taken with `state` held, so it never goes back).
    pub(super) published: Published,
    build: Mutex<Option<Build>>,
    signal: Arc<Signal>,
}

#[derive(Default)]
struct Signal {
    flags: Mutex<(bool, bool)>, // (work, stop)
    cond: Condvar,
}

impl Signal {
    fn wake(&self) {
        self.flags.lock().expect("signal lock is never poisoned").0 = true;
        self.cond.notify_one();
    }
}

fn lock(state: &Mutex<IdState>) -> MutexGuard<'_, IdState> {
    state.lock().expect("id state lock is never poisoned")
}

impl Ids {
    /// Reads the remembered ids of an open file: filters of every run, unsealed sets from the log.
    pub(super) fn load(db: &Database) -> Result<Ids, StoreError> {
        let mut state = load_state(db, 0)?;
        let published = Published::default();
        state.publish(&published);
        let ids = Ids {
            state: Mutex::new(state),
            published,
            build: Mutex::new(None),
            signal: Arc::default(),
        };
        ids.signal.wake();
        Ok(ids)
    }

    /// After the file was reopened: the state is read again, as the last commits may or may not
    /// have happened.
    pub(super) fn reload(&self, db: &Database) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        let fresh = load_state(db, st.generation + 1)?;
        let max_ids = st.max_ids;
        *st = fresh;
        st.max_ids = max_ids;
        st.publish(&self.published);
        drop(st);
        // A run being written is now stale: the sealing step sees the new generation.
        self.signal.wake();
        Ok(())
    }

    /// Starts the de-duplication of one append, inside its transaction.
    pub(super) fn batch<'t, 's>(
        &'s self,
        txn: &'t WriteTransaction,
        now_ms: i64,
        window_ms: i64,
    ) -> IdBatch<'t, 's> {
        let mut st = lock(&self.state);
        let span = (window_ms / 8).clamp(50, 60_000);
        if !st.active.ids.is_empty()
            && (!st.active.fits(now_ms) || now_ms - st.active.base_ms >= span)
        {
            st.freeze();
            self.signal.wake();
        }
        let log_before = st.next_log;
        IdBatch {
            state: Some(st),
            txn,
            runs: HashMap::new(),
            new: Vec::new(),
            now_ms,
            window_ms,
            log_before,
            signal: &self.signal,
        }
    }

    fn backlog(&self) -> usize {
        lock(&self.state).frozen.len()
    }
}

/// One append's de-duplication: holds the id state from the first lookup to the commit. New ids
/// go into the active set at once (so a repeat within the same append is found); if the append
/// does not commit, they are taken out again.
pub(super) struct IdBatch<'t, 's> {
    state: Option<MutexGuard<'s, IdState>>,
    txn: &'t WriteTransaction,
    runs: HashMap<u64, redb::Table<'t, u128, &'static [u8]>>,
    new: Vec<Key>,
    now_ms: i64,
    window_ms: i64,
    log_before: u64,
    signal: &'s Signal,
}

impl<'t, 's> IdBatch<'t, 's> {
    /// Whether this client id was accepted within the window; if not, it is remembered now.
    pub(super) fn is_duplicate(&mut self, workspace: &str, id: &str) -> Result<bool, StoreError> {
        let sha = sha_key(workspace, id);
        self.check(id_key(workspace, id), sha, true, None)
    }

    /// [`Self::is_duplicate`] for an event's client id, using what its probe already knows.
    pub(super) fn is_duplicate_id(&mut self, id: &ClientId) -> Result<bool, StoreError> {
        self.check(id.key, id.sha, true, id.probe.as_ref())
    }

    /// Looks up a request's ids in the active set once, before they are checked one by one:
    /// the table is megabytes, so each lookup misses the cache, and the misses of independent
    /// lookups in a tight loop overlap, where the checks between them (each one a branch on
    /// the last) take them one at a time. The checks then find the table's lines cached.
    pub(super) fn warm<'a>(&self, ids: impl Iterator<Item = &'a ClientId>) {
        let st = self
            .state
            .as_ref()
            .expect("a batch holds the state until it is written");
        let found = ids.filter(|id| st.active.ids.contains_key(&id.key)).count();
        std::hint::black_box(found);
    }

    /// Whether this client id was accepted within the window, remembering nothing.
    pub(super) fn was_seen(&mut self, workspace: &str, id: &str) -> Result<bool, StoreError> {
        let sha = sha_key(workspace, id);
        self.check(id_key(workspace, id), sha, false, None)
    }

    /// `sha`: the id's old key, needed while runs or sets hold such keys (see `id_key`).
    fn check(
        &mut self,
        key: Key,
        sha: Option<Key>,
        remember: bool,
        probe: Option<&Probe>,
    ) -> Result<bool, StoreError> {
        use std::collections::hash_map::Entry;
        let now = self.now_ms;
        let horizon = now - self.window_ms;
        let live = |at: i64| at > horizon;
        let st = &mut **self
            .state
            .as_mut()
            .expect("a batch holds the state until it is written");
        if !st.active.fits(now) {
            st.freeze();
            self.signal.wake();
        }
        if st.active.ids.is_empty() {
            st.active.base_ms = now;
            st.active.max_ms = now;
        }
        let IdState {
            active,
            frozen,
            runs,
            generation,
            filters,
            sha: old_keys,
            ..
        } = st;
        let offset = (now - active.base_ms) as u32;
        // One probe of the active set: found, or the slot a new id goes into.
        let slot = match active.ids.entry(key) {
            Entry::Occupied(e) if live(active.base_ms + *e.get() as i64) => return Ok(true),
            Entry::Occupied(_) if !remember => return Ok(false),
            // Seen here but longer ago than the window: older sets hold nothing newer.
            Entry::Occupied(mut e) => {
                *e.get_mut() = offset;
                None
            }
            Entry::Vacant(v) => Some(v),
        };
        if let Some(slot) = slot {
            // The key a set or run knows the id by.
            let key_in = |old: bool| if old { sha } else { Some(key) };
            for f in frozen.iter().rev() {
                let Some(k) = key_in(f.sha) else { continue };
                if f.max_ms <= horizon || (f.filter.get()).is_some_and(|f| !f.may_contain(hi64(&k)))
                {
                    continue;
                }
                if f.at(&k).is_some_and(live) {
                    return Ok(true);
                }
            }
            // Not probed on its way in (an idempotency key, a source's id): probed here, so the
            // group filters spare asking every run's.
            let own;
            let probe = match probe {
                None if runs.len() > 1 => {
                    own = filters.probe(&key);
                    Some(&own)
                }
                p => p,
            };
            // Old-keyed runs are never probed, so the walk goes on to them.
            let old_keys = old_keys.get();
            for run in runs.iter().rev() {
                if !old_keys && probe.is_some_and(|p| p.rules_out_through(*generation, run.id)) {
                    break;
                }
                let Some(k) = key_in(run.sha) else { continue };
                if run.max_ms <= horizon
                    || (!run.sha && probe.is_some_and(|p| p.rules_out(*generation, run.id)))
                    || !run.filter.may_contain(hi64(&k))
                {
                    continue;
                }
                let table = match self.runs.entry(run.id) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => e.insert(self.txn.open_table(run_def(&run_name(run.id)))?),
                };
                if let Some(off) = find_in_run(table, &k)? {
                    if live(run.min_ms + off as i64) {
                        return Ok(true);
                    }
                }
            }
            if !remember {
                return Ok(false);
            }
            slot.insert(offset);
        }
        active.max_ms = active.max_ms.max(now);
        if self.new.capacity() == 0 {
            self.new.reserve(1024);
        }
        self.new.push(key);
        Ok(false)
    }

    /// Writes the new ids to the log (in the append's transaction); the append commits next.
    pub(super) fn write_log(
        mut self,
        wal: &mut super::wal::Body,
    ) -> Result<IdCommit<'s>, StoreError> {
        self.runs.clear();
        let mut st = self.state.take().expect("a batch is written once");
        let new = std::mem::take(&mut self.new);
        let mut commit = IdCommit {
            log_before: self.log_before,
            new,
            state: None,
            signal: self.signal,
        };
        if !commit.new.is_empty() {
            let mut log = self.txn.open_table(ID_LOG)?;
            let mut row = Vec::with_capacity(8 + LOG_ROW_IDS * 16);
            for chunk in commit.new.chunks(LOG_ROW_IDS) {
                row.clear();
                row.extend_from_slice(&self.now_ms.to_be_bytes());
                for k in chunk {
                    row.extend_from_slice(k);
                }
                log.insert(st.next_log, super::counted("id_log", &row))?;
                wal.row(super::wal::Table::IdLog, st.next_log, &row);
                st.active.through_log = st.next_log;
                st.next_log += 1;
            }
        }
        commit.state = Some(st);
        Ok(commit)
    }
}

impl Drop for IdBatch<'_, '_> {
    fn drop(&mut self) {
        if let Some(st) = self.state.as_mut() {
            undo(st, &self.new, self.log_before);
        }
    }
}

fn undo(st: &mut IdState, new: &[Key], log_before: u64) {
    for k in new {
        st.active.ids.remove(k);
    }
    st.next_log = log_before;
}

/// The ids of an append between writing its log rows and its commit.
pub(super) struct IdCommit<'s> {
    state: Option<MutexGuard<'s, IdState>>,
    new: Vec<Key>,
    log_before: u64,
    signal: &'s Signal,
}

impl IdCommit<'_> {
    /// The append committed: its ids stay remembered.
    pub(super) fn committed(mut self) {
        let mut st = self.state.take().expect("committed once");
        if st.active.ids.len() >= st.seal_size() {
            st.freeze();
            self.signal.wake();
        }
    }
}

impl Drop for IdCommit<'_> {
    fn drop(&mut self) {
        if let Some(st) = self.state.as_mut() {
            undo(st, &self.new, self.log_before);
        }
    }
}

/// Looks a key up in a run: the block that may hold it is the last one starting at or before it.
fn find_in_run(
    table: &impl ReadableTable<u128, &'static [u8]>,
    key: &Key,
) -> Result<Option<u32>, StoreError> {
    let Some(row) = table.range(..=u128::from_be_bytes(*key))?.next_back() else {
        return Ok(None);
    };
    let (_, block) = row?;
    Ok(search_block(block.value(), key))
}

fn search_block(block: &[u8], key: &Key) -> Option<u32> {
    let n = block.len() / BLOCK_ENTRY;
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let e = &block[mid * BLOCK_ENTRY..(mid + 1) * BLOCK_ENTRY];
        match e[..16].cmp(&key[..]) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => {
                return Some(u32::from_be_bytes(
                    e[16..].try_into().expect("an entry has 20 bytes"),
                ))
            }
        }
    }
    None
}

/// Writes sorted (key, accepted ms) pairs as blocks of a run whose oldest time is `min_ms`.
fn write_blocks(
    table: &mut redb::Table<'_, u128, &'static [u8]>,
    sorted: &[(Key, i64)],
    min_ms: i64,
) -> Result<(), StoreError> {
    let mut block = Vec::with_capacity(BLOCK_IDS * BLOCK_ENTRY);
    for chunk in sorted.chunks(BLOCK_IDS) {
        block.clear();
        for (k, at) in chunk {
            block.extend_from_slice(k);
            let off = (at - min_ms).clamp(0, u32::MAX as i64) as u32;
            block.extend_from_slice(&off.to_be_bytes());
        }
        table.insert(
            u128::from_be_bytes(chunk[0].0),
            super::counted("id_runs", &block),
        )?;
    }
    Ok(())
}

/// A frozen set being written as a run, sorted once, written over several steps.
struct Build {
    set: Arc<Pending>,
    generation: u64,
    run: u64,
    sorted: Vec<(Key, i64)>,
    min_ms: i64,
    max_ms: i64,
    written: usize,
    filter: Arc<Filter>,
    /// Its keys' first halves, for its group's filter.
    his: Arc<[u64]>,
}

impl Build {
    fn new(set: Arc<Pending>, generation: u64, run: u64) -> Build {
        let mut sorted: Vec<(Key, i64)> = set
            .ids
            .iter()
            .map(|(k, off)| (*k, set.base_ms + *off as i64))
            .collect();
        // As one 128-bit number (the same order as the bytes): a compare instead of a memcmp.
        sorted.sort_unstable_by_key(|e| u128::from_be_bytes(e.0));
        let min_ms = sorted.iter().map(|e| e.1).min().unwrap_or(set.base_ms);
        let max_ms = sorted.iter().map(|e| e.1).max().unwrap_or(set.max_ms);
        let his = id_filter::his(sorted.iter().map(|(k, _)| hi64(k)).collect());
        let filter = Arc::new(Filter::run(&his));
        let _ = set.filter.set(filter.clone());
        Build {
            set,
            generation,
            run,
            sorted,
            min_ms,
            max_ms,
            written: 0,
            filter,
            his,
        }
    }
}

impl Store {
    /// One bounded step of sealing the oldest frozen set into a run (see the module doc).
    /// Returns whether more sealing work is waiting. Not fsynced on its own: the next append's
    /// commit makes it durable, and if it is lost in a crash the log rows are still there.
    pub(super) fn seal_step(&self) -> Result<bool, StoreError> {
        let _w = super::written::attribute("ids");
        let ids = &self.inner.ids;
        let mut slot = ids.build.lock().expect("build lock is never poisoned");
        let generation = lock(&ids.state).generation;
        if slot.as_ref().is_some_and(|b| b.generation != generation) {
            *slot = None;
        }
        if slot.is_none() {
            let (set, generation, run) = {
                let mut st = lock(&ids.state);
                let Some(set) = st.frozen.front().cloned() else {
                    return Ok(false);
                };
                st.next_run += 1;
                (set, st.generation, st.next_run - 1)
            };
            // Sorting and the filter are built without holding the state: appends go on.
            *slot = Some(Build::new(set, generation, run));
        }
        let b = slot.as_mut().expect("a build was just started");
        let end = (b.written + SEAL_STEP_IDS).min(b.sorted.len());
        let last = end == b.sorted.len();
        let name = run_name(b.run);
        let finished = self.with(|db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::None)?;
            {
                let mut table = txn.open_table(run_def(&name))?;
                write_blocks(&mut table, &b.sorted[b.written..end], b.min_ms)?;
            }
            if !last {
                txn.commit()?;
                return Ok(false);
            }
            txn.open_table(ID_RUNS)?
                .insert(b.run, (b.min_ms, b.max_ms, b.sorted.len() as u64))?;
            if b.set.sha {
                txn.open_table(ID_SHA_RUNS)?.insert(b.run, ())?;
            }
            txn.open_table(ID_LOG)?
                .retain_in(..=b.set.through_log, |_, _| false)?;
            // Held across the commit, so no append sees the run on disk but not in memory.
            let mut st = lock(&ids.state);
            if st.generation != b.generation {
                txn.abort()?;
                return Ok(true);
            }
            txn.commit()?;
            if st.frozen.front().is_some_and(|f| Arc::ptr_eq(f, &b.set)) {
                st.frozen.pop_front();
            }
            st.runs.push(Run {
                id: b.run,
                min_ms: b.min_ms,
                max_ms: b.max_ms,
                len: b.sorted.len() as u64,
                filter: b.filter.clone(),
                sha: b.set.sha,
            });
            if !b.set.sha {
                st.ungrouped.push((b.run, b.his.clone()));
            }
            st.publish(&ids.published);
            Ok(true)
        })?;
        if finished {
            let build = slot.take().expect("the finished build is in the slot");
            // The sealed set's table, emptied outside the state lock, serves the next set.
            if let Ok(set) = Arc::try_unwrap(build.set) {
                let mut table = set.ids;
                table.clear();
                lock(&ids.state).spare = Some(table);
            }
            self.group_step();
            return Ok(ids.backlog() > 0);
        }
        b.written = end;
        Ok(true)
    }

    /// Builds the filter of the oldest [`GROUP_RUNS`] ungrouped runs, if that many wait; the
    /// state is not held while it is built (≈ 50 ms for eight full runs).
    fn group_step(&self) {
        let ids = &self.inner.ids;
        let (generation, members) = {
            let st = lock(&ids.state);
            if st.ungrouped.len() < GROUP_RUNS {
                return;
            }
            (st.generation, st.ungrouped[..GROUP_RUNS].to_vec())
        };
        let group = Arc::new(Group::build(&members));
        let mut st = lock(&ids.state);
        // Unless the file was reloaded, or one of the runs dropped, meanwhile.
        let same = st.generation == generation
            && st.ungrouped.len() >= GROUP_RUNS
            && st.ungrouped.iter().zip(&members).all(|(a, b)| a.0 == b.0);
        if same {
            st.ungrouped.drain(..GROUP_RUNS);
            st.groups.push(group);
            st.publish(&ids.published);
        }
    }

    /// Seals every frozen set now rather than in the background, so the file's layout is
    /// settled (tools, tests). Ids still in the active set stay in the log.
    pub fn seal_ids(&self) -> Result<(), StoreError> {
        self.seal_until(0)
    }

    /// How many client ids are remembered (sealed or not, expired ones not yet dropped included).
    pub fn remembered_ids(&self) -> u64 {
        lock(&self.inner.ids.state).remembered()
    }

    /// Whether some remembered ids have their pre-schema-9 keys, so every id is hashed twice.
    pub fn ids_under_old_keys(&self) -> bool {
        lock(&self.inner.ids.state).sha.get()
    }

    /// Sealed runs and the group filters over them (tests, tools: whether lookups are grouped).
    pub fn id_filters(&self) -> (usize, usize) {
        let st = lock(&self.inner.ids.state);
        (st.runs.len(), st.groups.len())
    }

    /// Seals until at most `frozen` sets wait.
    pub(super) fn seal_until(&self, frozen: usize) -> Result<(), StoreError> {
        while self.inner.ids.backlog() > frozen {
            self.seal_step()?;
        }
        Ok(())
    }
}

/// One expiry step inside prune's transaction. Holds the id state until the commit.
pub(super) struct Expiry<'s> {
    state: MutexGuard<'s, IdState>,
    published: &'s Published,
    dropped: Option<(u64, bool)>,
    /// More to do: a run was dropped (another may follow), or the cap needs a run sealed first.
    pub(super) more: bool,
}

impl Ids {
    /// Drops the oldest run if all its ids are older than `expire_before_ms` (accepted at or
    /// before it), or if more than `max_ids` ids are remembered; over the cap with nothing sealed,
    /// freezes the active set so the next steps can seal and drop it.
    pub(super) fn expire<'s>(
        &'s self,
        txn: &WriteTransaction,
        expire_before_ms: i64,
        max_ids: u64,
    ) -> Result<Expiry<'s>, StoreError> {
        let mut st = lock(&self.state);
        st.max_ids = max_ids;
        if st.active.ids.is_empty() {
            // No ids arrived since the last set was frozen: keep no table for the next.
            st.spare = None;
        }
        let over = st.remembered() > max_ids;
        let mut out = Expiry {
            dropped: None,
            more: false,
            state: st,
            published: &self.published,
        };
        if let Some(run) = out.state.runs.first() {
            let expired = run.max_ms <= expire_before_ms;
            if expired || over {
                txn.delete_table(run_def(&run_name(run.id)))?;
                txn.open_table(ID_RUNS)?.remove(run.id)?;
                if run.sha {
                    txn.open_table(ID_SHA_RUNS)?.remove(run.id)?;
                }
                out.dropped = Some((run.id, !expired));
                out.more = true;
            }
        } else if over {
            // Nothing sealed to drop: seal the oldest unsealed ids first.
            if out.state.frozen.is_empty() {
                out.state.freeze();
            }
            out.more = true;
        }
        Ok(out)
    }
}

impl Expiry<'_> {
    /// The prune step committed.
    pub(super) fn committed(mut self) {
        if let Some((run, early)) = self.dropped {
            if let Some(i) = self.state.runs.iter().position(|r| r.id == run) {
                let r = self.state.runs.remove(i);
                if early {
                    crate::metrics::ids_forgotten_early(r.len);
                }
                self.state.forget_run(run);
                self.state.publish(self.published);
            }
        }
        crate::metrics::set_ids_remembered(self.state.remembered());
    }
}

/// Creates the id tables and deletes partly written runs; in the opening transaction.
pub(super) fn prepare(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(ID_LOG)?;
    txn.open_table(ID_SHA_RUNS)?;
    let complete: std::collections::HashSet<u64> = txn
        .open_table(ID_RUNS)?
        .iter()?
        .map(|r| r.map(|(k, _)| k.value()))
        .collect::<Result<_, _>>()?;
    let partial: Vec<String> = txn
        .list_tables()?
        .map(|t| t.name().to_string())
        .filter(|n| {
            n.strip_prefix(RUN_PREFIX)
                .and_then(|i| i.parse::<u64>().ok())
                .is_some_and(|i| !complete.contains(&i))
        })
        .collect();
    for name in partial {
        txn.delete_table(run_def(&name))?;
    }
    Ok(())
}

fn load_state(db: &Database, generation: u64) -> Result<IdState, StoreError> {
    let txn = db.begin_read()?;
    let mut st = IdState {
        spare: None,
        active: Pending::default(),
        frozen: VecDeque::new(),
        runs: Vec::new(),
        groups: Vec::new(),
        ungrouped: Vec::new(),
        filters: Arc::default(),
        sha: ShaIds::default(),
        next_log: 1,
        next_run: 1,
        generation,
        max_ids: 10_000_000,
    };
    let sha_runs: std::collections::HashSet<u64> = match txn.open_table(ID_SHA_RUNS) {
        Ok(t) => t
            .iter()?
            .map(|r| r.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()?,
        Err(redb::TableError::TableDoesNotExist(_)) => Default::default(),
        Err(e) => return Err(e.into()),
    };
    let sha_log = match txn.open_table(ID_SHA) {
        Ok(t) => t.get(SHA_LOG)?.map_or(0, |v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(e.into()),
    };
    let meta: Vec<(u64, (i64, i64, u64))> = txn
        .open_table(ID_RUNS)?
        .iter()?
        .map(|r| r.map(|(k, v)| (k.value(), v.value())))
        .collect::<Result<_, _>>()?;
    for (id, (min_ms, max_ms, len)) in meta {
        let table = txn.open_table(run_def(&run_name(id)))?;
        let mut his: Vec<u64> = Vec::with_capacity(len as usize);
        for row in table.iter()? {
            let (_, block) = row?;
            his.extend(
                block
                    .value()
                    .chunks_exact(BLOCK_ENTRY)
                    .map(|e| u64::from_be_bytes(e[..8].try_into().expect("8 bytes"))),
            );
        }
        let his = id_filter::his(his);
        let sha = sha_runs.contains(&id);
        st.runs.push(Run {
            id,
            min_ms,
            max_ms,
            len,
            filter: Arc::new(Filter::run(&his)),
            sha,
        });
        if !sha {
            st.ungrouped.push((id, his));
            st.group_all();
        }
        st.next_run = id + 1;
    }
    // Unsealed ids: consecutive log rows make sets of at most MAX_SET ids, all frozen (they are
    // sealed first; new ids start a new active set).
    let mut set = Pending::default();
    for row in txn.open_table(ID_LOG)?.iter()? {
        let (k, v) = row?;
        let v = v.value();
        if v.len() < 8 {
            continue;
        }
        let at = i64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
        // Rows of old keys and of new ones go to separate sets.
        let sha = k.value() <= sha_log;
        if set.ids.len() >= MAX_SET || !set.fits(at) || (!set.ids.is_empty() && set.sha != sha) {
            st.frozen.push_back(Arc::new(std::mem::take(&mut set)));
        }
        set.sha = sha;
        for key in v[8..].chunks_exact(16) {
            let key: Key = key.try_into().expect("16 bytes");
            // A repeat accepted again after its window: the later time counts.
            if set.at(&key).is_none_or(|t| t < at) {
                set.insert(key, at);
            }
        }
        set.through_log = k.value();
        st.next_log = k.value() + 1;
    }
    if !set.ids.is_empty() {
        st.frozen.push_back(Arc::new(set));
    }
    // Once the old rows are sealed the log may be empty: new rows still number past them.
    st.next_log = st.next_log.max(sha_log + 1);
    st.count_sha();
    Ok(st)
}

/// The background thread that seals frozen sets into runs, so neither ingest nor the tick waits
/// for it. It holds the store only while it works; dropping the last [`Store`] handle stops it
/// and waits for its step to end, so the file is closed when the drop returns.
pub(super) struct Sealer {
    signal: Arc<Signal>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sealer {
    pub(super) fn spawn(inner: &Arc<super::Inner>) -> Sealer {
        let signal = inner.ids.signal.clone();
        let (s, store) = (signal.clone(), Arc::downgrade(inner));
        let thread = std::thread::Builder::new()
            .name("alertd-id-sealer".into())
            .spawn(move || seal_loop(store, s))
            .ok();
        if thread.is_none() {
            tracing::warn!("cannot start the id sealing thread; ids are sealed at pruning and when appends back up");
        }
        Sealer { signal, thread }
    }
}

fn seal_loop(store: Weak<super::Inner>, signal: Arc<Signal>) {
    let mut backoff = false;
    loop {
        {
            let mut flags = signal.flags.lock().expect("signal lock is never poisoned");
            let wait = if backoff {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(3600)
            };
            while !flags.0 && !flags.1 {
                let (f, timeout) = signal
                    .cond
                    .wait_timeout(flags, wait)
                    .expect("signal lock is never poisoned");
                flags = f;
                if timeout.timed_out() {
                    break;
                }
            }
            if flags.1 {
                return;
            }
            flags.0 = false;
        }
        let Some(inner) = store.upgrade() else {
            return;
        };
        let store = Store::without_sealer(inner);
        backoff = false;
        loop {
            if signal
                .flags
                .lock()
                .expect("signal lock is never poisoned")
                .1
            {
                return;
            }
            match store.seal_step() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "sealing remembered client ids failed; retried in a second");
                    backoff = true;
                    break;
                }
            }
        }
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.signal
            .flags
            .lock()
            .expect("signal lock is never poisoned")
            .1 = true;
        self.signal.cond.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Schema 3 kept ids in time-bucketed tables `ingest_ids.<width>.<index>` (key → accepted ms);
/// schema ≤ 2 in two string-keyed tables.
mod legacy {
    use super::*;

    pub(super) const OLD_INGEST_IDS: TableDefinition<&str, i64> =
        TableDefinition::new("ingest_ids");
    pub(super) const OLD_INGEST_ID_TIMES: TableDefinition<(i64, &str), ()> =
        TableDefinition::new("ingest_id_times");
    pub(super) const BUCKET_PREFIX: &str = "ingest_ids.";

    pub(super) fn bucket_def(name: &str) -> TableDefinition<'_, u128, i64> {
        TableDefinition::new(name)
    }

    pub(super) fn bucket_of(name: &str) -> Option<(i64, i64)> {
        let (w, i) = name.strip_prefix(BUCKET_PREFIX)?.split_once('.')?;
        Some((w.parse().ok()?, i.parse().ok()?))
    }
}

/// Brings remembered ids of a schema-`from` file to this layout, in the opening transaction.
pub(super) fn migrate(txn: &WriteTransaction, from: u64) -> Result<(), StoreError> {
    use legacy::*;
    if from < 3 {
        // ≤ 2 → 3: string-keyed ids into one-minute buckets (converted to runs below).
        let old: Vec<(i64, String)> = {
            let times = txn.open_table(OLD_INGEST_ID_TIMES)?;
            let rows = times
                .iter()?
                .map(|r| r.map(|(k, _)| (k.value().0, k.value().1.to_string())))
                .collect::<Result<_, _>>()?;
            rows
        };
        for (at, key) in &old {
            let (ws, id) = key.split_once('\u{0}').unwrap_or(("default", key.as_str()));
            let name = format!("{BUCKET_PREFIX}60000.{}", at.div_euclid(60_000));
            txn.open_table(bucket_def(&name))?
                .insert(u128::from_be_bytes(old_key(ws, id)), *at)?;
        }
        txn.delete_table(OLD_INGEST_IDS)?;
        txn.delete_table(OLD_INGEST_ID_TIMES)?;
    }
    if from < 4 {
        // 3 → 4: each bucket (keys in order) becomes one run.
        let mut buckets: Vec<(String, i64, i64)> = txn
            .list_tables()?
            .filter_map(|t| {
                let name = t.name().to_string();
                bucket_of(&name).map(|(w, i)| (name, w, i))
            })
            .collect();
        buckets.sort_by_key(|(_, w, i)| (w * i, *w));
        let mut runs = txn.open_table(ID_RUNS)?;
        let mut next = runs.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
        for (name, _, _) in buckets {
            let rows: Vec<(Key, i64)> = txn
                .open_table(bucket_def(&name))?
                .iter()?
                .map(|r| r.map(|(k, v)| (k.value().to_be_bytes(), v.value())))
                .collect::<Result<_, _>>()?;
            if !rows.is_empty() {
                let min = rows.iter().map(|r| r.1).min().expect("not empty");
                let max = rows.iter().map(|r| r.1).max().expect("not empty");
                let rname = run_name(next);
                write_blocks(&mut txn.open_table(run_def(&rname))?, &rows, min)?;
                runs.insert(next, (min, max, rows.len() as u64))?;
                next += 1;
            }
            txn.delete_table(bucket_def(&name))?;
        }
    }
    if from < 9 {
        // 8 → 9: keys become BLAKE3 ones; those remembered so far are marked as SHA-256 ones.
        let runs: Vec<u64> = (txn.open_table(ID_RUNS)?.iter()?)
            .map(|r| r.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()?;
        let mut sha = txn.open_table(ID_SHA_RUNS)?;
        for run in runs {
            sha.insert(run, ())?;
        }
        let last = txn
            .open_table(ID_LOG)?
            .last()?
            .map_or(0, |(k, _)| k.value());
        txn.open_table(ID_SHA)?.insert(SHA_LOG, last)?;
    }
    Ok(())
}
