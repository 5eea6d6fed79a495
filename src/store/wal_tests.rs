//! The append log through the store: a real crash (the test process re-runs itself and aborts
//! with the store open) and the replay rules at open.

use super::*;
use crate::event::EventBody;

const NOW: i64 = 1_780_000_000_000;
const WINDOW: i64 = 600_000;
const CHILD: &str = "ALERTD_WAL_CRASH_CHILD";

fn event(n: usize, detail: usize, client_id: Option<String>) -> NewEvent {
    NewEvent {
        client_id: client_id.map(|id| ClientId::new("default", &id)),
        event: Event {
            id: format!("e{n}"),
            workspace: "default".into(),
            project: Some("p".into()),
            project_id: None,
            timestamp_ms: NOW,
            received_ms: NOW,
            user: "system".into(),
            body: EventBody::Guardrail {
                trace_id: None,
                failed: true,
                object: format!("{{\"details\":\"{}\"}}", "x".repeat(detail)),
            },
        },
    }
}

/// What the raw file holds without replay: redb's own recovery, as after a power cut.
fn durable_inbox_len(path: &Path) -> u64 {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    inbox::len(&txn.open_table(INBOX).unwrap()).unwrap()
}

/// Row `i` is event `e<i>` with sequence number `i + 1`: every event back, in order.
fn assert_numbered_in_order(rows: &[(u64, Event)]) {
    for (i, (seq, e)) in rows.iter().enumerate() {
        assert_eq!(
            (*seq, e.id.as_str()),
            (i as u64 + 1, format!("e{i}").as_str())
        );
    }
}

/// In the child (its `env` set to a data file): `child` does its appends and aborts. In the
/// test: runs the test `name` again as that child, on a fresh data file, checks that it died,
/// and returns the file it left (with the directory that holds it).
fn crashed(name: &str, env: &str, child: fn(&Path) -> !) -> (tempfile::TempDir, PathBuf) {
    if let Ok(path) = std::env::var(env) {
        child(Path::new(&path));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &format!("store::wal_tests::{name}"),
            "--nocapture",
        ])
        .env(env, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child aborts");
    (dir, path)
}

/// The child: small appends (logged), one large one (a durable redb commit, which covers the
/// log), small ones again, ids on the last; then it dies with the store open.
fn child(path: &Path) -> ! {
    let store = Store::open(path).unwrap();
    for r in 0..5 {
        let req = (0..15).map(|i| event(r * 15 + i, 500, None)).collect();
        store.append(vec![req], NOW, WINDOW).unwrap();
    }
    let big = (75..275).map(|i| event(i, 500, None)).collect();
    store.append(vec![big], NOW, WINDOW).unwrap();
    for r in 0..3 {
        let req = (0..15)
            .map(|i| {
                let n = 275 + r * 15 + i;
                event(n, 500, Some(format!("id{n}")))
            })
            .collect();
        store.append(vec![req], NOW, WINDOW).unwrap();
    }
    std::process::abort();
}

#[test]
fn acknowledged_appends_survive_a_crash_through_the_log() {
    let (_dir, path) = crashed(
        "acknowledged_appends_survive_a_crash_through_the_log",
        CHILD,
        child,
    );
    // redb alone kept what its durable commit held: the first 5 requests and the large one.
    assert_eq!(durable_inbox_len(&path), 275);
    let store = Store::open(&path).unwrap();
    let rows = store.read_inbox(0, 1_000).unwrap();
    assert_eq!(rows.len(), 320, "the 3 logged requests are back");
    assert_numbered_in_order(&rows);
    // Their client ids are remembered again.
    let again = (275..320)
        .map(|n| event(n, 10, Some(format!("id{n}"))))
        .collect();
    let out = store.append(vec![again], NOW + 1, WINDOW).unwrap();
    assert_eq!((out[0].stored.len(), out[0].duplicates), (0, 45));
    // Numbering goes on after the replayed rows, and the new append is logged again.
    let out = store
        .append(vec![vec![event(999, 10, None)]], NOW + 1, WINDOW)
        .unwrap();
    assert_eq!(out[0].stored[0].0, 321);
}

/// Writes a log for the data file at `path` (closed) holding LSNs after `held`.
fn write_log(path: &Path, held: u64, keys: &[u64]) {
    let id = {
        let db = redb::Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        meta.get(META_FILE_ID).unwrap().unwrap().value()
    };
    let mut w = wal::Wal::create(&wal::path_for(path), id, held).unwrap();
    for k in keys {
        let stored = [(*k, event(*k as usize, 10, None).event)];
        let mut body = wal::Body::default();
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        let txn = db.begin_write().unwrap();
        inbox::insert_events(&mut txn.open_table(INBOX).unwrap(), &stored, &mut body).unwrap();
        w.append(&body).unwrap();
    }
}

#[test]
fn a_log_replays_only_when_it_continues_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    drop(Store::open(&path).unwrap());
    // LSNs 3 and 4 after a file that holds none: a gap, as after restoring a backup.
    write_log(&path, 2, &[1, 2]);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.inbox_len().unwrap(), 0, "a log with a gap is ignored");
    drop(store);
    // LSNs 1 and 2: they continue it.
    write_log(&path, 0, &[1, 2]);
    let store = Store::open(&path).unwrap();
    let ids: Vec<String> = store
        .read_inbox(0, 10)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.id)
        .collect();
    assert_eq!(ids, ["e1", "e2"]);
    drop(store);
    // Replayed once: the log was emptied, and the file says it holds LSN 2.
    assert_eq!(std::fs::metadata(wal::path_for(&path)).unwrap().len(), 0);
    write_log(&path, 1, &[9]);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.inbox_len().unwrap(),
        2,
        "LSN 2 is held already: not replayed"
    );
    drop(store);
    // LSN 3 continues the file, but its event 2 does not follow the file's last one.
    write_log(&path, 2, &[2]);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.last_seq().unwrap(), 2);
    assert_eq!(store.read_inbox(0, 10).unwrap()[1].1.id, "e2");
    drop(store);
    write_log(&path, 2, &[3]);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.last_seq().unwrap(), 3, "event 3 follows: replayed");
}

#[test]
fn another_files_log_is_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.redb");
    let b = dir.path().join("b.redb");
    drop(Store::open(&a).unwrap());
    write_log(&a, 0, &[1]);
    drop(Store::open(&b).unwrap());
    std::fs::rename(wal::path_for(&a), wal::path_for(&b)).unwrap();
    let store = Store::open(&b).unwrap();
    assert_eq!(store.inbox_len().unwrap(), 0);
}

/// The small-disk promise (issue 21): rows appended between ticks are durable in the log and
/// pruned before the tick's durable commit, so the data file never gets them.
#[test]
fn rows_applied_by_a_tick_are_never_written_to_the_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.redb")).unwrap();
    // A first tick so the tables have their pages.
    store
        .append(vec![vec![event(0, 500, None)]], NOW, WINDOW)
        .unwrap();
    let tick = |through: u64| TickCommit {
        checkpoints: vec![("a".into(), vec![1; 30])],
        prune_through: Some(through),
        prune_rows: 20_000,
        ..Default::default()
    };
    store.commit_tick(&tick(1)).unwrap();
    let log_before = std::fs::metadata(wal::path_for(store.path()))
        .unwrap()
        .len();
    let before = store.redb_bytes_written();
    // 20 requests of 15 events with 500-byte details: about 200 KB of rows.
    for r in 0..20 {
        let req = (0..15).map(|i| event(1 + r * 15 + i, 500, None)).collect();
        store.append(vec![req], NOW, WINDOW).unwrap();
    }
    assert_eq!(
        store.redb_bytes_written(),
        before,
        "appends write only the log"
    );
    store.commit_tick(&tick(301)).unwrap();
    let tick_bytes = store.redb_bytes_written() - before;
    assert_eq!(store.inbox_len().unwrap(), 0);
    // redb's own pages and the checkpoint: far below the rows' 200 KB.
    assert!(tick_bytes < 48 * 1024, "the tick wrote {tick_bytes} bytes");
    assert!(
        log_before < 4096 * 4,
        "the log started over at the first tick"
    );
    // And a crash now loses nothing: the file durably holds the pruned state and the log's
    // records are all covered (the next append starts it over).
    drop(store);
    let store = Store::open(&dir.path().join("a.redb")).unwrap();
    assert_eq!(store.inbox_len().unwrap(), 0);
    assert_eq!(store.last_seq().unwrap(), 301);
    assert_eq!(store.load_checkpoint("a").unwrap(), Some(vec![1; 30]));
}

const TAIL_CHILD: &str = "ALERTD_TAIL_CRASH_CHILD";

/// The child: single-event appends without ids (into the tail, past one flush by the tail's
/// cap), a durable commit through another operation (`sync`, which flushes the tail first and
/// lets the log start over), more of them; then it dies with the store open.
fn tail_child(path: &Path) -> ! {
    let store = Store::open(path).unwrap();
    let one = |n: usize| {
        store
            .append(vec![vec![event(n, 10, None)]], NOW, WINDOW)
            .unwrap()
    };
    for n in 0..100 {
        one(n);
    }
    store.sync().unwrap();
    for n in 100..150 {
        one(n);
    }
    assert!(store.tail_rows() > 0, "the last appends are in the tail");
    std::process::abort();
}

#[test]
fn appends_kept_only_in_the_log_and_the_tail_survive_a_crash() {
    let (_dir, path) = crashed(
        "appends_kept_only_in_the_log_and_the_tail_survive_a_crash",
        TAIL_CHILD,
        tail_child,
    );
    // redb alone holds what `sync` made durable, not the appends after it.
    assert_eq!(durable_inbox_len(&path), 100);
    let store = Store::open(&path).unwrap();
    let rows = store.read_inbox(0, 1_000).unwrap();
    assert_eq!(
        rows.len(),
        150,
        "the appends after the sync are back from the log"
    );
    assert_numbered_in_order(&rows);
}
