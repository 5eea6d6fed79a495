//! Remembered client ids (issue 21): one hashed row per id in time-bucketed tables, exact
//! de-duplication within `ingest.dedup_window`, expiry by dropping whole buckets, and a cap.

use alertd::event::{Event, EventBody};
use alertd::store::{NewEvent, Store};

const WINDOW: i64 = 600_000;
const T0: i64 = 1_800_000_000_000;

fn event(cid: &str) -> NewEvent {
    NewEvent {
        client_id: Some(cid.to_string()),
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
    let mut other = event("b");
    other.event.workspace = "other".into();
    let out = store.append(vec![vec![other]], T0 + 2_000, WINDOW).unwrap();
    assert_eq!(out[0].duplicates, 0);
}

#[test]
fn expired_buckets_are_dropped_whole_and_ids_are_small_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let store = Store::open(&path).unwrap();
    let n = 20_000;
    let ids: Vec<String> = (0..n).map(|i| format!("client-id-{i:08}")).collect();
    for chunk in ids.chunks(1000) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        assert_eq!(duplicates(&store, &refs, T0), 0);
    }
    // Pruning after the window drops the bucket (one bucket per step).
    let last = store.last_seq().unwrap();
    while !store
        .prune_step(last, T0 + 2 * WINDOW, u64::MAX, 100_000)
        .unwrap()
    {}
    assert_eq!(
        duplicates(&store, &["client-id-00000001"], T0 + 2 * WINDOW),
        0
    );
    // Disk per id: live pages of two fresh files with the same events, with and without ids.
    let size_with = |with_ids: bool| {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.redb");
        let s = Store::open(&p).unwrap();
        for chunk in ids.chunks(1000) {
            let batch: Vec<NewEvent> = chunk
                .iter()
                .map(|i| NewEvent {
                    client_id: with_ids.then(|| i.clone()),
                    ..event(i)
                })
                .collect();
            s.append(vec![batch], T0, WINDOW).unwrap();
        }
        s.space().unwrap().live_bytes
    };
    let per_id = (size_with(true) as f64 - size_with(false) as f64) / n as f64;
    eprintln!("disk per remembered id: {per_id:.1} bytes");
    assert!(per_id <= 48.0, "{per_id} bytes per id");
}

#[test]
fn over_the_cap_the_oldest_ids_are_forgotten_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.redb")).unwrap();
    assert_eq!(duplicates(&store, &["old-1", "old-2"], T0), 0);
    // A later bucket (half a window later).
    assert_eq!(duplicates(&store, &["new-1", "new-2"], T0 + WINDOW / 2), 0);
    let last = store.last_seq().unwrap();
    // Cap of 2 ids: the oldest bucket goes although its window is not over.
    while !store.prune_step(last, T0, 2, 100_000).unwrap() {}
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
