//! Remembered client ids (issue 21): exact de-duplication within `ingest.dedup_window`, ids in a
//! log and sorted runs (about 20 bytes each once sealed), kept across reopening, expiry by
//! dropping whole runs, and a cap that forgets the oldest first.

use alertd::event::{Event, EventBody};
use alertd::store::{ClientId, NewEvent, Store};

const WINDOW: i64 = 600_000;
const T0: i64 = 1_800_000_000_000;

fn event(cid: &str) -> NewEvent {
    NewEvent {
        client_id: Some(ClientId::new("default", cid)),
        event: Event {
            id: uuid::Uuid::now_v7().to_string(),
            workspace: "default".into(),
            project: Some("p".into()),
            project_id: None,
            timestamp_ms: T0,
            received_ms: T0,
            user: "u".into(),
            body: EventBody::Trace {
                trace_id: None,
                duration_s: None,
                cost: None,
                error: true,
            },
        },
    }
}

fn duplicates(store: &Store, ids: &[&str], now: i64) -> usize {
    let out = store
        .append(vec![ids.iter().map(|i| event(i)).collect()], now, WINDOW)
        .unwrap();
    out[0].duplicates
}

#[test]
fn a_repeat_within_the_window_is_a_duplicate_and_after_it_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.redb")).unwrap();
    assert_eq!(duplicates(&store, &["a", "b"], T0), 0);
    assert_eq!(
        duplicates(&store, &["a", "c", "c"], T0 + 1_000),
        2,
        "a again, c twice"
    );
    // Just inside the window (found in an older bucket), then just past it.
    assert_eq!(duplicates(&store, &["b"], T0 + WINDOW - 1), 1);
    assert_eq!(
        duplicates(&store, &["a"], T0 + WINDOW),
        0,
        "the window is over"
    );
    // Another workspace's "b" is another id.
    let other = event_in("other", "b");
    let out = store.append(vec![vec![other]], T0 + 2_000, WINDOW).unwrap();
    assert_eq!(out[0].duplicates, 0);
}

fn event_in(workspace: &str, cid: &str) -> NewEvent {
    let mut e = event(cid);
    e.event.workspace = workspace.into();
    e.client_id = Some(ClientId::new(workspace, cid));
    e
}

/// Appends `ids` in batches of 1,000 at `now`.
fn accept_all(store: &Store, ids: &[String], now: i64) {
    for chunk in ids.chunks(1000) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        assert_eq!(duplicates(store, &refs, now), 0);
    }
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:08}")).collect()
}

fn prune_all(store: &Store, expire_before: i64, max_ids: u64) {
    let last = store.last_seq().unwrap();
    while !store
        .prune_step(last, expire_before, max_ids, 100_000)
        .unwrap()
    {}
}

#[test]
fn sealed_runs_remember_exactly_and_expire_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.redb")).unwrap();
    let early = names("early", 50_000);
    accept_all(&store, &early, T0);
    // A later append starts a new set; the first is sealed into a run on disk.
    let later = names("later", 2_000);
    accept_all(&store, &later, T0 + WINDOW / 2);
    store.seal_ids().unwrap();
    assert_eq!(store.remembered_ids(), 52_000);
    // Every sealed id is found (through the filter and the run's blocks), with its own time.
    for chunk in early.chunks(5_000) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        assert_eq!(duplicates(&store, &refs, T0 + WINDOW - 1), refs.len());
    }
    assert_eq!(duplicates(&store, &["early-00000007"], T0 + WINDOW), 0);
    // Pruning at T0 + WINDOW (ids accepted at or before T0 are over) drops the first run
    // whole; the later ids stay.
    prune_all(&store, T0, u64::MAX);
    assert_eq!(store.remembered_ids(), 2_001, "the run of 50,000 is gone");
    assert_eq!(
        duplicates(
            &store,
            &["early-00000008", "later-00000001"],
            T0 + WINDOW + 1
        ),
        1
    );
}

#[test]
fn ids_in_runs_under_group_filters_are_found_before_and_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    // An hour's window: a set spans at most a minute, so appends a minute apart make a run each.
    let window = 3_600_000;
    let at = |i: usize| T0 + i as i64 * 61_000;
    let batches: Vec<Vec<String>> = (0..21).map(|i| names(&format!("b{i}"), 300)).collect();
    {
        let store = Store::open(&path).unwrap();
        for (i, ids) in batches.iter().enumerate() {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let out = store.append(vec![refs.iter().map(|i| event(i)).collect()], at(i), window);
            assert_eq!(out.unwrap()[0].duplicates, 0);
        }
        store.seal_ids().unwrap();
        assert_eq!(
            store.id_filters(),
            (20, 2),
            "20 runs, 16 of them in 2 groups"
        );
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.id_filters(), (20, 2), "grouped again at open");
    // Every id of every run (grouped or not) and of the log is still a duplicate; new ones not.
    let later = at(22);
    for (i, ids) in batches.iter().enumerate() {
        let new = format!("new-{i}");
        let mut refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        refs.push(&new);
        let out = store.append(vec![refs.iter().map(|i| event(i)).collect()], later, window);
        assert_eq!(out.unwrap()[0].duplicates, ids.len());
    }
    // The oldest runs expire one by one; a group goes with its last run, and the rest of a
    // group whose first runs went still answers for its own.
    store.seal_ids().unwrap(); // the last batch, read from the log at open, is a run too
    assert_eq!(store.id_filters(), (21, 2));
    for (dropped, expect) in [(3, (18, 2)), (8, (13, 1)), (16, (5, 0))] {
        prune_all(&store, at(dropped - 1), u64::MAX);
        assert_eq!(store.id_filters(), expect, "after {dropped} runs dropped");
        let ids: Vec<&str> = batches[dropped].iter().map(String::as_str).collect();
        let gone: Vec<&str> = batches[dropped - 1].iter().map(String::as_str).collect();
        let out = store.append(vec![ids.iter().map(|i| event(i)).collect()], later, window);
        assert_eq!(out.unwrap()[0].duplicates, ids.len());
        let out = store.append(vec![gone.iter().map(|i| event(i)).collect()], later, window);
        assert_eq!(out.unwrap()[0].duplicates, 0, "run {dropped} expired");
    }
}

#[test]
fn ids_are_small_on_disk_once_sealed() {
    let n = 40_600; // 200 blocks of 203 ids
    let ids = names("client-id", n);
    // Live pages of two files with the same events, with and without ids, ids sealed.
    let size_with = |with_ids: bool| {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("s.redb")).unwrap();
        for chunk in ids.chunks(1000) {
            let batch: Vec<NewEvent> = chunk
                .iter()
                .map(|i| NewEvent {
                    client_id: with_ids.then(|| ClientId::new("default", i)),
                    ..event(i)
                })
                .collect();
            s.append(vec![batch], T0, WINDOW).unwrap();
        }
        // An empty append a while later freezes the set; seal it.
        s.append(vec![vec![event("next")]], T0 + WINDOW / 2, WINDOW)
            .unwrap();
        s.seal_ids().unwrap();
        s.space().unwrap().live_bytes
    };
    let per_id = (size_with(true) as f64 - size_with(false) as f64) / n as f64;
    eprintln!("disk per remembered id: {per_id:.1} bytes");
    assert!(per_id <= 24.0, "{per_id} bytes per id");
}

#[test]
fn ids_are_remembered_across_reopening_whether_sealed_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let (sealed, frozen, active) = (names("s", 3_000), names("f", 3_000), names("a", 3_000));
    {
        let store = Store::open(&path).unwrap();
        accept_all(&store, &sealed, T0);
        accept_all(&store, &frozen, T0 + 100_000);
        store.seal_ids().unwrap(); // the first set; the second is only in the log
        accept_all(&store, &active, T0 + 200_000);
    }
    // A run table left half-written (a crash while sealing) is discarded at open.
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let def: redb::TableDefinition<u128, &[u8]> =
            redb::TableDefinition::new("ingest_id_run.999");
        txn.open_table(def)
            .unwrap()
            .insert(1, [0u8; 20].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.remembered_ids(), 9_000);
    for set in [&sealed, &frozen, &active] {
        let refs: Vec<&str> = set.iter().map(String::as_str).collect();
        assert_eq!(duplicates(&store, &refs, T0 + 300_000), refs.len());
    }
    assert_eq!(duplicates(&store, &["new"], T0 + 300_000), 0);
    let db_tables = {
        drop(store);
        let db = redb::Database::open(&path).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        txn.list_tables()
            .unwrap()
            .map(|t| redb::TableHandle::name(&t).to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        !db_tables.iter().any(|t| t == "ingest_id_run.999"),
        "{db_tables:?}"
    );
}

#[test]
fn over_the_cap_the_oldest_ids_are_forgotten_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.redb")).unwrap();
    assert_eq!(duplicates(&store, &["old-1", "old-2"], T0), 0);
    // A later set (half a window later).
    assert_eq!(duplicates(&store, &["new-1", "new-2"], T0 + WINDOW / 2), 0);
    // Cap of 2 ids: the oldest go although their window is not over.
    prune_all(&store, T0, 2);
    assert_eq!(store.remembered_ids(), 2);
    assert_eq!(
        duplicates(&store, &["old-1"], T0 + WINDOW / 2 + 1),
        0,
        "forgotten early"
    );
    assert_eq!(
        duplicates(&store, &["new-1"], T0 + WINDOW / 2 + 1),
        1,
        "still remembered"
    );
}

#[test]
fn the_cap_bounds_many_ids_in_sets_of_an_eighth_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.redb")).unwrap();
    let cap = 16_000;
    prune_all(&store, T0 - WINDOW, cap); // the store learns the cap: sets of 2,000 ids
    let ids = names("id", 40_000);
    for (i, chunk) in ids.chunks(1000).enumerate() {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        assert_eq!(duplicates(&store, &refs, T0 + i as i64), 0);
        prune_all(&store, T0 - WINDOW, cap);
        assert!(store.remembered_ids() <= cap, "{}", store.remembered_ids());
    }
    // At most an eighth of the cap was forgotten beyond what the cap requires.
    assert!(
        store.remembered_ids() >= cap - cap / 8,
        "{}",
        store.remembered_ids()
    );
    let newest: Vec<&str> = ids[40_000 - 12_000..].iter().map(String::as_str).collect();
    assert_eq!(duplicates(&store, &newest, T0 + 100), newest.len());
    let oldest: Vec<&str> = ids[..20_000].iter().map(String::as_str).collect();
    assert_eq!(duplicates(&store, &oldest, T0 + 100), 0, "forgotten early");
}

#[test]
fn compaction_gives_the_space_of_a_burst_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let store = Store::open(&path).unwrap();
    for _ in 0..60 {
        let batch: Vec<NewEvent> = (0..1000)
            .map(|_| NewEvent {
                client_id: None,
                ..event("x")
            })
            .collect();
        store.append(vec![batch], T0, WINDOW).unwrap();
    }
    let last = store.last_seq().unwrap();
    while !store.prune_step(last, T0, u64::MAX, 100_000).unwrap() {}
    // One durable commit so the pruning is on disk, then compact.
    store.append(vec![vec![]], T0, WINDOW).unwrap();
    let before = store.space().unwrap();
    let (b, after) = store.compact_if_worthwhile().unwrap().expect("worth it");
    assert_eq!(b.file_bytes, before.file_bytes);
    assert!(
        after.file_bytes * 4 < before.file_bytes,
        "{before:?} → {after:?}"
    );
    assert!(
        after.file_bytes <= 2 * after.live_bytes.max(1 << 20),
        "{after:?}"
    );
    // The store works on after compaction.
    assert_eq!(duplicates(&store, &["after"], T0), 0);
    assert_eq!(duplicates(&store, &["after"], T0 + 1), 1);
    assert!(
        store.compact_if_worthwhile().unwrap().is_none(),
        "nothing left to gain"
    );
}

#[derive(Debug, Clone)]
enum Op {
    /// (workspace, id) pairs from small alphabets, so repeats are common.
    Append(Vec<(u8, u8)>),
    /// A batch probed now ([`Store::probe_ids`]) and appended at the next append or reopen,
    /// so runs may be sealed or dropped in between.
    Probe(Vec<(u8, u8)>),
    Advance(i64),
    Seal,
    Prune,
    Reopen,
}

/// A probed batch waiting to be appended: its (workspace, id) pairs and its events.
type Held = (Vec<(u8, u8)>, Vec<NewEvent>);

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => proptest::collection::vec((0u8..2, 0u8..24), 0..12).prop_map(Op::Append),
        2 => proptest::collection::vec((0u8..2, 0u8..24), 0..12).prop_map(Op::Probe),
        3 => (0i64..4_000).prop_map(Op::Advance),
        1 => Just(Op::Seal),
        1 => Just(Op::Prune),
        1 => Just(Op::Reopen),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Whatever the interleaving of appends, sealing, pruning and reopening, an id is a
    /// duplicate exactly when the model (a map of id → last acceptance) says it was accepted
    /// within the window.
    #[test]
    fn dedup_matches_a_hash_map_model(ops in proptest::collection::vec(op(), 1..40)) {
        const W: i64 = 10_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let mut store = Some(Store::open(&path).unwrap());
        let mut model: std::collections::HashMap<(u8, u8), i64> = Default::default();
        let mut now = T0;
        let batch = |ids: &[(u8, u8)]| -> Vec<NewEvent> {
            ids.iter()
                .map(|(ws, id)| event_in(&format!("ws{ws}"), &format!("id{id}")))
                .collect()
        };
        let mut held: Option<Held> = None;
        let mut append = |s: &Store, ids: &[(u8, u8)], batch: Vec<NewEvent>, now: i64| {
            let mut expected = 0;
            for key in ids {
                match model.get(key) {
                    Some(at) if now - at < W => expected += 1,
                    _ => {
                        model.insert(*key, now);
                    }
                }
            }
            let out = s.append(vec![batch], now, W).unwrap();
            (out[0].duplicates, expected)
        };
        for op in ops {
            let s = store.as_ref().unwrap();
            if let (Op::Append(_) | Op::Probe(_) | Op::Reopen, Some((ids, b))) = (&op, held.take()) {
                let (got, expected) = append(s, &ids, b, now);
                proptest::prop_assert_eq!(got, expected, "probed batch at {}", now - T0);
            }
            match op {
                Op::Append(ids) => {
                    let (got, expected) = append(s, &ids, batch(&ids), now);
                    proptest::prop_assert_eq!(got, expected, "at {}", now - T0);
                }
                Op::Probe(ids) => {
                    let mut b = batch(&ids);
                    s.probe_ids(&mut b);
                    held = Some((ids, b));
                }
                Op::Advance(ms) => now += ms,
                Op::Seal => s.seal_ids().unwrap(),
                Op::Prune => prune_all(s, now - W, u64::MAX),
                Op::Reopen => {
                    drop(store.take()); // closes the file first
                    store = Some(Store::open(&path).unwrap());
                }
            }
        }
    }
}
