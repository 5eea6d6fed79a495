//! Data files written by earlier releases (`tests/fixtures/`, see the README there) open with
//! this one: nothing they hold is lost, they are upgraded to the current schema, and the tables
//! added since work in them. Schema 1: the first release (before silences). Schema 3 (two
//! files): remembered client ids in time buckets, per-event inbox rows, and a per-event alert's
//! open bucket inside its checkpoint. Schema 6: the release's file before the append log.
//! Schema 7: bucket items stored apart, one row per inbox sequence, and bodies apart from
//! delivery rows. Schema 8: client ids under SHA-256 keys. Schema 9: threshold windows stored
//! dense in checkpoints.

mod common;

use alertd::alert::AlertState;
use alertd::delivery::DeliveryStatus;
use alertd::store::Store;
use common::Daemon;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

const T0: i64 = 1_780_000_000_000;

/// A private copy of the schema-1 fixture in `dir`, named as the test daemon's config expects.
fn copy_fixture(dir: &Path) -> PathBuf {
    copy_named(dir, "store-schema1.redb")
}

fn copy_named(dir: &Path, fixture: &str) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture);
    let to = dir.join("alertd.redb");
    std::fs::copy(from, &to).unwrap();
    to
}

fn schema_of(path: &Path) -> u64 {
    let db = redb::Database::open(path).unwrap();
    let t = redb::ReadableDatabase::begin_read(&db).unwrap();
    let def: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
    t.open_table(def)
        .unwrap()
        .get("schema_version")
        .unwrap()
        .unwrap()
        .value()
}

#[test]
fn a_schema_1_file_keeps_its_events_state_and_history_and_takes_silences() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path());
    assert_eq!(schema_of(&path), 1, "the fixture is a first-release file");
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.last_seq().unwrap(), 2);
        assert_eq!(store.applied_through().unwrap(), 1);
        let inbox = store.read_inbox(0, 10).unwrap();
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].1.id, "e2");
        let cps = store.load_checkpoints().unwrap();
        let cp = AlertState::decode_checkpoint("legacy", &cps["legacy"]).unwrap();
        assert_eq!(cp.applied_seq, 1);
        let episode = cp.triggers[0].1.episode.expect("the episode was firing");
        assert_eq!(episode.start_ms, T0 + 1_000);
        assert!(episode.marks.delivered && !episode.marks.owed);
        let delivered = store
            .list_deliveries(DeliveryStatus::Delivered, 10)
            .unwrap();
        assert_eq!(delivered.len(), 1);
        assert_eq!(delivered[0].last_status, Some(200));
        assert!(store.load_outbox().unwrap().is_empty());
        assert_eq!(
            store.list_quarantine(10).unwrap().1,
            0,
            "every row of the old file reads; the quarantine tables are new and empty"
        );
        assert!(store.silences().is_empty());
        assert!(store.list_suppressed(10).unwrap().is_empty());
        let s = store
            .create_silence(T0, |_| {
                alertd::silence::SilenceRequest {
                    alert: "legacy".into(),
                    duration: Some("1h".into()),
                    ..Default::default()
                }
                .validate(
                    uuid::Uuid::now_v7().to_string(),
                    T0,
                    &|_| Some(vec![alertd::event::EventType::TraceErrors]),
                    0,
                )
            })
            .unwrap()
            .unwrap();
        assert_eq!(store.silences().all(), &[s]);
        // The remembered client id "c1" (accepted at T0) still de-duplicates after the move
        // to hashed ids (schema 3, then 4); a new id does not.
        let ev = |cid: &str| {
            let mut e = store.read_inbox(0, 1).unwrap()[0].1.clone();
            e.id = uuid::Uuid::now_v7().to_string();
            alertd::store::NewEvent {
                client_id: Some(alertd::store::ClientId::new(&e.workspace, cid)),
                event: e,
            }
        };
        let out = store
            .append(vec![vec![ev("c1"), ev("c2")]], T0 + 5_000, 600_000)
            .unwrap();
        assert_eq!(out[0].duplicates, 1, "c1 is remembered across the upgrade");
        assert_eq!(out[0].stored.len(), 1);
    }
    assert_eq!(schema_of(&path), alertd::store::SCHEMA_VERSION);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.silences().all().len(), 1, "the silence was stored");
}

#[tokio::test]
async fn the_daemon_runs_on_a_schema_1_file() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path());
    let cfg = "[engine]\ntick = \"200ms\"\n[[alert]]\nid = \"legacy\"\nurl = \"http://127.0.0.1:9/hook\"\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 0\nwindow = \"1h\"\n";
    let d = Daemon::start(dir.path(), cfg).await;
    let (s, v) = d.get("/v1/deliveries?status=delivered").await;
    assert_eq!(s, 200);
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["deliveries"][0]["alert_id"], "legacy");
    let (s, v) = d
        .post(
            "/v1/silences",
            Some(json!({"alert": "legacy", "duration": "1h"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = d.get("/v1/silences").await;
    assert_eq!(v["silences"][0]["state"], "active");
}

/// The tables of a redb file, by name.
fn tables_of(path: &Path) -> Vec<String> {
    let db = redb::Database::open(path).unwrap();
    let t = redb::ReadableDatabase::begin_read(&db).unwrap();
    t.list_tables()
        .unwrap()
        .map(|h| redb::TableHandle::name(&h).to_string())
        .collect()
}

/// What the schema-3 fixture holds besides its events and ids (and every file made from it):
/// the first release's checkpoint of `legacy`, one delivered, one pending (2 attempts, last
/// 503) and one dead delivery (HTTP 500).
fn assert_schema_3_history(store: &Store) {
    let cps = store.load_checkpoints().unwrap();
    let cp = AlertState::decode_checkpoint("legacy", &cps["legacy"]).unwrap();
    assert_eq!(cp.applied_seq, 1);
    let delivered = store
        .list_deliveries(DeliveryStatus::Delivered, 10)
        .unwrap();
    assert_eq!(delivered.len(), 1);
    let pending = store.load_outbox().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].attempts, pending[0].last_status),
        (2, Some(503))
    );
    let dead = store.list_deliveries(DeliveryStatus::Dead, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 500"));
}

#[test]
fn a_schema_3_file_keeps_its_remembered_ids_deliveries_checkpoints_and_dead_letters() {
    const WINDOW: i64 = 600_000;
    let dir = tempfile::tempdir().unwrap();
    let path = copy_named(dir.path(), "store-schema3.redb");
    assert_eq!(schema_of(&path), 3, "the fixture is a schema-3 file");
    assert!(tables_of(&path)
        .iter()
        .any(|t| t.starts_with("ingest_ids.")));
    {
        let store = Store::open(&path).unwrap();
        // Events, the alert's checkpoint, the delivered, pending and dead deliveries.
        assert_eq!(store.last_seq().unwrap(), 6);
        assert_eq!(store.applied_through().unwrap(), 1);
        let inbox = store.read_inbox(0, 10).unwrap();
        assert_eq!(inbox.len(), 5);
        assert_eq!(inbox[4].1.id, "fixture-default-r3");
        assert_schema_3_history(&store);
        assert_eq!(store.list_quarantine(10).unwrap().1, 0);
        // Every remembered id (in two bucket widths: "c1" from schema 1, the rest from
        // schema 3, one in another workspace) is still a duplicate; a new id is not.
        assert_eq!(store.remembered_ids(), 5);
        let ev = |cid: &str, ws: &str| {
            let mut e = inbox[0].1.clone();
            e.id = uuid::Uuid::now_v7().to_string();
            e.workspace = ws.into();
            alertd::store::NewEvent {
                client_id: Some(alertd::store::ClientId::new(&e.workspace, cid)),
                event: e,
            }
        };
        let retry = vec![
            ev("c1", "default"),
            ev("r1", "default"),
            ev("r2", "default"),
            ev("r1", "ws2"),
            ev("r3", "default"),
            ev("r9", "default"),
            ev("r2", "ws2"),
        ];
        let out = store.append(vec![retry], T0 + 400_000, WINDOW).unwrap();
        assert_eq!(out[0].duplicates, 5, "every remembered id");
        assert_eq!(out[0].stored.len(), 2, "r9 and ws2's r2 are new");
        // Each id keeps its own time: "c1" (accepted at T0) is over at T0 + window, "r3"
        // (T0 + 310 s) is not.
        let out = store
            .append(
                vec![vec![ev("c1", "default"), ev("r3", "default")]],
                T0 + WINDOW,
                WINDOW,
            )
            .unwrap();
        assert_eq!(out[0].duplicates, 1);
    }
    assert_eq!(schema_of(&path), alertd::store::SCHEMA_VERSION);
    let tables = tables_of(&path);
    assert!(
        !tables.iter().any(|t| t.starts_with("ingest_ids.")),
        "the bucket tables are converted: {tables:?}"
    );
    // And again after reopening the upgraded file.
    let store = Store::open(&path).unwrap();
    let mut e = store.read_inbox(0, 1).unwrap()[0].1.clone();
    e.id = uuid::Uuid::now_v7().to_string();
    let out = store
        .append(
            vec![vec![alertd::store::NewEvent {
                client_id: Some(alertd::store::ClientId::new(&e.workspace, "r9")),
                event: e,
            }]],
            T0 + 400_001,
            WINDOW,
        )
        .unwrap();
    assert_eq!(out[0].duplicates, 1);
}

/// The previous release's file (schema 6, no append log, bodies inside delivery rows): everything
/// it holds is intact, it is upgraded to schema 7 (bodies moved apart, unchanged), and appends
/// made durable by the new append log survive a restart of the store opened on it.
#[test]
fn a_schema_6_file_of_the_previous_release_keeps_everything_and_takes_the_append_log() {
    const WINDOW: i64 = 600_000;
    let dir = tempfile::tempdir().unwrap();
    let path = copy_named(dir.path(), "store-schema6.redb");
    assert_eq!(schema_of(&path), 6, "the fixture is a schema-6 file");
    let bodies_before = delivery_bodies_inline(&path);
    assert_eq!(bodies_before.len(), 3, "pending, dead and delivered");
    assert!(bodies_before.iter().all(|(_, b)| !b.is_empty()));
    let ev = |store: &Store, cid: &str| {
        let mut e = store.read_inbox(0, 1).unwrap()[0].1.clone();
        e.id = uuid::Uuid::now_v7().to_string();
        alertd::store::NewEvent {
            client_id: Some(alertd::store::ClientId::new("default", cid)),
            event: e,
        }
    };
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.last_seq().unwrap(), 8);
        assert_eq!(store.applied_through().unwrap(), 1);
        let inbox = store.read_inbox(0, 10).unwrap();
        assert_eq!(inbox.len(), 7);
        assert_eq!(inbox[6].1.id, "fixture-s6-b");
        assert_schema_3_history(&store);
        let mut bodies_after: Vec<(String, String)> =
            [DeliveryStatus::Dead, DeliveryStatus::Delivered]
                .into_iter()
                .flat_map(|s| store.list_deliveries(s, 10).unwrap())
                .chain(store.load_outbox().unwrap())
                .map(|d| (d.id, d.body))
                .collect();
        bodies_after.sort();
        assert_eq!(bodies_after, bodies_before, "every body survives the move");
        // Ids in runs (from schema 3) and in the id log (the previous release's last append).
        assert_eq!(store.remembered_ids(), 7);
        let retry = vec![ev(&store, "s6a"), ev(&store, "r1"), ev(&store, "new-1")];
        let out = store.append(vec![retry], T0 + 401_000, WINDOW).unwrap();
        assert_eq!((out[0].duplicates, out[0].stored.len()), (2, 1));
    }
    assert!(
        path.with_extension("redb.wal").exists(),
        "the small append went through the append log"
    );
    assert_eq!(schema_of(&path), alertd::store::SCHEMA_VERSION);
    assert!(tables_of(&path).contains(&"delivery_bodies".to_string()));
    assert!(
        delivery_bodies_inline(&path)
            .iter()
            .all(|(_, b)| b.is_empty()),
        "the rows no longer hold their bodies"
    );
    // Reopened: the appended event and its id are there.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.last_seq().unwrap(), 9);
    let out = store
        .append(vec![vec![ev(&store, "new-1")]], T0 + 402_000, WINDOW)
        .unwrap();
    assert_eq!(out[0].duplicates, 1);
}

/// Every delivery row's id and body as stored in the row itself (bodies inline before schema 7),
/// sorted by id; read with redb directly, not through the store.
fn delivery_bodies_inline(path: &Path) -> Vec<(String, String)> {
    let db = redb::Database::open(path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let mut out = Vec::new();
    for name in ["outbox", "dead_letters", "delivery_log"] {
        let def: redb::TableDefinition<u128, &[u8]> = redb::TableDefinition::new(name);
        let t = txn.open_table(def).unwrap();
        for r in redb::ReadableTable::iter(&t).unwrap() {
            let (_, v) = r.unwrap();
            let d: alertd::delivery::Delivery = alertd::codec::decode(v.value()).unwrap();
            out.push((d.id, d.body));
        }
    }
    out.sort();
    out
}

/// The schema-3 fixture's delivery ids (minted in order by the tool that wrote it).
const DEAD_ID: &str = "0197a000-0000-7000-8000-000000000001";
const PENDING_ID: &str = "0197a000-0000-7000-8000-000000000002";

#[test]
fn a_schema_3_file_keeps_its_open_bucket_pending_delivery_and_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_named(dir.path(), "store-schema3-buckets.redb");
    assert_eq!(schema_of(&path), 3, "the fixture is a schema-3 file");
    let store = Store::open(&path).unwrap();
    assert_eq!(
        (store.last_seq().unwrap(), store.applied_through().unwrap()),
        (5, 4)
    );
    let seeds = store.load_seeds(&["guard".to_string()]).unwrap();
    assert!(seeds.items.is_empty(), "nothing was stored apart before");
    let cp = AlertState::decode_checkpoint("guard", seeds.checkpoints[0].as_ref().unwrap())
        .expect("a checkpoint with its items inline still reads");
    assert_eq!(cp.applied_seq, 4);
    let (_, bucket) = &cp.buckets[0];
    assert_eq!(bucket.count, 2);
    let ids: Vec<&str> = bucket.inline.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["g3", "g4"]);
    assert_eq!(bucket.stored_from, None);
    let pending: Vec<String> = store
        .load_outbox()
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(pending, [PENDING_ID]);
    let dead = store.list_deliveries(DeliveryStatus::Dead, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].id.as_str(), dead[0].last_status),
        (DEAD_ID, Some(400))
    );
    assert_eq!(store.list_quarantine(10).unwrap().1, 0, "every row reads");
    drop(store);
    assert_eq!(schema_of(&path), alertd::store::SCHEMA_VERSION);
}

#[tokio::test]
async fn the_open_bucket_of_a_schema_3_file_is_delivered_once_with_the_events_replayed() {
    let dir = tempfile::tempdir().unwrap();
    copy_named(dir.path(), "store-schema3-buckets.redb");
    let rx = common::Receiver::start().await;
    let cfg = format!(
        "[engine]\ntick = \"200ms\"\n[delivery]\ndead_letter_max_age = \"100000d\"\n[[alert]]\nid = \"guard\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:guardrails_triggered\"\n",
        rx.url("/hook")
    );
    let mut d = Daemon::start(dir.path(), &cfg).await;
    // Two webhooks: the old file's pending delivery (g2; sent to the alert's current URL), and
    // the bucket (g3, g4 in the checkpoint; g5 replayed from the inbox), due long ago.
    let got = rx.wait_for("/hook", 2, Duration::from_secs(20)).await;
    let bodies: Vec<serde_json::Value> = got.iter().map(|r| r.json()).collect();
    let (old, new): (Vec<_>, Vec<_>) = bodies.iter().partition(|b| b["id"] == PENDING_ID);
    assert_eq!((old.len(), new.len()), (1, 1), "{bodies:?}");
    assert_eq!(old[0]["payload"]["eventIds"], json!(["g2"]));
    let p = &new[0]["payload"];
    assert_eq!(p["eventCount"], 3, "{p}");
    assert_eq!(p["eventIds"], json!(["g3", "g4", "g5"]));
    let listed: Vec<i64> = p["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["details"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, [3, 4, 5]);
    assert_eq!(p["userNames"], json!(["user3", "user4", "user5"]));
    // The dead letter is still there (kept by age: it is from 2026-05).
    let (_, dead) = d.get("/v1/deliveries?status=dead").await;
    assert_eq!(dead["deliveries"][0]["id"], DEAD_ID, "{dead}");
    // Once: not again at later ticks, nor after a restart.
    wait_ticks(&d, 5).await;
    d.terminate();
    d.spawn().await;
    wait_ticks(&d, 5).await;
    assert_eq!(rx.requests_to("/hook").len(), 2, "each was delivered once");
}

/// Waits until the daemon has run `n` more ticks.
async fn wait_ticks(d: &Daemon, n: u64) {
    let count = || async {
        let m = d.metrics().await;
        m.lines()
            .find_map(|l| l.strip_prefix("alertd_tick_seconds_count "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let start = count().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count().await < start + n {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon stopped ticking"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The alerts of the schema-7 fixture, as the tool that wrote it configured them.
const S7_CONFIG: &str = "[[alert]]\nid = \"guard-fast\"\nurl = \"http://127.0.0.1:9/hook\"\ndebounce = \"10s\"\n[[alert.trigger]]\nevent = \"trace:guardrails_triggered\"\n[[alert]]\nid = \"guard-slow\"\nurl = \"http://127.0.0.1:9/hook\"\ndebounce = \"5m\"\n[[alert.trigger]]\nevent = \"trace:guardrails_triggered\"\n";

/// The schema-7 fixture's deliveries (ids minted in order by the tool that wrote it): `g1`
/// delivered, `g2` dead, `g3` pending, all sent by `guard-fast`.
const S7_DELIVERED_ID: &str = "0197a000-0000-7000-8000-000000000701";
const S7_DEAD_ID: &str = "0197a000-0000-7000-8000-000000000702";
const S7_PENDING_ID: &str = "0197a000-0000-7000-8000-000000000703";

/// The failed guardrail `g<n>` of the schema-7 fixture, as it was appended.
fn s7_event(n: i64) -> alertd::event::Event {
    let at = [
        T0,
        T0 + 20_000,
        T0 + 40_000,
        T0 + 60_000,
        T0 + 60_000,
        T0 + 62_000,
    ][n as usize - 1];
    alertd::event::Event {
        id: format!("g{n}"),
        workspace: "default".into(),
        project: None,
        project_id: None,
        timestamp_ms: at,
        received_ms: at,
        user: format!("user{n}"),
        body: alertd::event::EventBody::Guardrail {
            trace_id: None,
            failed: true,
            object: s7_object(n),
        },
    }
}

fn s7_object(n: i64) -> String {
    format!("{{\"name\":\"pii\",\"result\":\"failed\",\"details\":{{\"n\":{n}}}}}")
}

/// The stored items `load_seeds` gives back for these alerts, decoded.
fn s7_items(store: &Store, ids: &[&str]) -> Vec<(u64, alertd::event::Event)> {
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    alertd::store::items::decode_items(&store.load_seeds(&ids).unwrap().items)
}

/// Checks a delivery of the schema-7 fixture and its body: sent by `guard-fast` for `g<n>`.
fn assert_s7_delivery(d: &alertd::delivery::Delivery, id: &str, n: i64, status: u16) {
    assert_eq!(
        (
            d.id.as_str(),
            d.alert_id.as_str(),
            d.attempts,
            d.last_status
        ),
        (id, "guard-fast", 1, Some(status))
    );
    let body: serde_json::Value = serde_json::from_str(&d.body).expect("the body is whole");
    assert_eq!(body["id"], id, "{body}");
    assert_eq!(body["alert_id"], "guard-fast");
    let p = &body["payload"];
    assert_eq!(p["eventIds"], json!([format!("g{n}")]), "{body}");
    assert_eq!(p["userNames"], json!([format!("user{n}")]));
    assert_eq!(p["eventCount"], 1);
    let object: serde_json::Value = serde_json::from_str(&s7_object(n)).unwrap();
    assert_eq!(p["metadata"], json!([object]), "{body}");
}

/// What the schema-7 fixture holds: two per-event alerts' open buckets referencing stored items
/// (`guard-slow` from sequence 1, `guard-fast` from 4; 4 and 6 are both alerts'), the inbox
/// after them, and a delivered, a dead and a pending delivery with their bodies.
fn assert_schema_7_contents(store: &Store) {
    assert_eq!(
        (store.last_seq().unwrap(), store.applied_through().unwrap()),
        (7, 6)
    );
    let inbox = store.read_inbox(0, 10).unwrap();
    assert_eq!(inbox, [(7, s7_event(6))], "only g6 was not applied yet");
    assert_schema_7_history(store);
}

/// The schema-7 fixture's stored items, checkpoints and deliveries (and every file made from it).
fn assert_schema_7_history(store: &Store) {
    let mut alerts = store.alerts_with_bucket_items().unwrap();
    alerts.sort();
    assert_eq!(alerts, ["guard-fast", "guard-slow"]);
    assert_eq!(
        store.bucket_items_len().unwrap(),
        5,
        "sequences 1, 2, 3, 4, 6"
    );
    // Each alert gets the items from its own floor on (5, the passed guardrail, is no one's),
    // the events whole.
    let g = |ns: &[i64]| -> Vec<alertd::event::Event> { ns.iter().map(|n| s7_event(*n)).collect() };
    let fast = s7_items(store, &["guard-fast"]);
    assert_eq!(fast.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [4, 6]);
    assert_eq!(
        fast.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        g(&[4, 5])
    );
    let slow = s7_items(store, &["guard-slow"]);
    assert_eq!(
        slow.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [1, 2, 3, 4, 6]
    );
    assert_eq!(
        slow.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        g(&[1, 2, 3, 4, 5])
    );
    assert_eq!(
        s7_items(store, &["guard-fast", "guard-slow"]).len(),
        5,
        "shared items come once"
    );
    // The checkpoints reference them, and alerts restored from checkpoint and items list every
    // event again: each open bucket, once due, is sent whole.
    let cfg = alertd::config::Config::from_toml(Path::new("fixture.toml"), S7_CONFIG, false)
        .expect("the fixture's config");
    let ids: Vec<String> = cfg.alerts.iter().map(|a| a.id.clone()).collect();
    assert_eq!(ids, ["guard-fast", "guard-slow"]);
    let seeds = store.load_seeds(&ids).unwrap();
    assert_eq!(seeds.applied, 6);
    let stored = alertd::store::items::decode_items(&seeds.items);
    let expected = [
        ("guard-fast", T0 + 60_000, 2, Some(4), vec!["g4", "g5"]),
        (
            "guard-slow",
            T0,
            5,
            Some(1),
            vec!["g1", "g2", "g3", "g4", "g5"],
        ),
    ];
    for ((spec, cp), (id, opened, count, from, listed)) in
        cfg.alerts.iter().zip(&seeds.checkpoints).zip(expected)
    {
        let cp = AlertState::decode_checkpoint(id, cp.as_ref().expect("a checkpoint")).unwrap();
        assert_eq!(cp.applied_seq, 6, "{id}");
        assert_eq!(cp.buckets.len(), 1, "{id}");
        let (event, bucket) = &cp.buckets[0];
        assert_eq!(*event, alertd::event::EventType::GuardrailsTriggered);
        assert_eq!(
            (bucket.opened_ms, bucket.count, bucket.stored_from),
            (opened, count, from),
            "{id}"
        );
        assert!(bucket.inline.is_empty(), "{id}: every item is stored apart");
        let mut alert = AlertState::restore(spec.clone(), cp, &stored);
        let mut n = 0;
        let sent = alert.tick(T0 + 400_000, &mut || {
            n += 1;
            format!("n{n}")
        });
        assert_eq!(sent.len(), 1, "{id}");
        assert_eq!(sent[0].event_ids, listed, "{id}");
        assert_eq!(sent[0].event_count, count);
        let objects: Vec<String> = listed
            .iter()
            .map(|g| s7_object(g[1..].parse().unwrap()))
            .collect();
        assert_eq!(sent[0].items, objects, "{id}");
    }
    // The deliveries, with their bodies.
    let pending = store.load_outbox().unwrap();
    assert_eq!(pending.len(), 1);
    assert_s7_delivery(&pending[0], S7_PENDING_ID, 3, 503);
    assert_eq!(pending[0].next_attempt_ms, T0 + 54_000);
    let dead = store.list_deliveries(DeliveryStatus::Dead, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_s7_delivery(&dead[0], S7_DEAD_ID, 2, 400);
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 400"));
    let delivered = store
        .list_deliveries(DeliveryStatus::Delivered, 10)
        .unwrap();
    assert_eq!(delivered.len(), 1);
    assert_s7_delivery(&delivered[0], S7_DELIVERED_ID, 1, 200);
    assert_eq!(delivered[0].finished_ms, Some(T0 + 12_000));
    assert_eq!(store.list_quarantine(10).unwrap().1, 0, "every row reads");
}

/// The file of the release before per-tick item blocks (schema 7, bucket items one row per
/// inbox sequence): the stored items both alerts' checkpoints reference, the inbox and the
/// deliveries with their bodies are intact after it is opened, and again after reopening.
#[test]
fn a_schema_7_file_keeps_its_stored_bucket_items_and_delivery_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_named(dir.path(), "store-schema7.redb");
    assert_eq!(schema_of(&path), 7, "the fixture is a schema-7 file");
    let bodies = |store: &Store| -> Vec<String> {
        [DeliveryStatus::Dead, DeliveryStatus::Delivered]
            .into_iter()
            .flat_map(|s| store.list_deliveries(s, 10).unwrap())
            .chain(store.load_outbox().unwrap())
            .map(|d| d.body)
            .collect()
    };
    let before = {
        let store = Store::open(&path).unwrap();
        assert_schema_7_contents(&store);
        bodies(&store)
    };
    assert_eq!(schema_of(&path), alertd::store::SCHEMA_VERSION);
    let tables = tables_of(&path);
    assert!(
        tables.contains(&"bucket_item_blocks".to_string())
            && !tables.contains(&"bucket_items".to_string()),
        "the items were regrouped into blocks and the old table deleted: {tables:?}"
    );
    let store = Store::open(&path).unwrap();
    assert_schema_7_contents(&store);
    assert_eq!(
        bodies(&store),
        before,
        "the bodies read the same after reopening"
    );
}

/// The previous release's file (schema 8, `tests/fixtures/store-schema8.redb`): the schema-7
/// fixture with 302 more client ids: 307 ids sealed in 3 runs and 2 in the log, all keyed by
/// SHA-256.
/// After the upgrade to BLAKE3 keys (schema 9) every one is still a duplicate, before and after
/// reopening, until its window ends; then ids are hashed one way only. The items, checkpoints
/// and deliveries of schema 7 are intact.
#[test]
fn a_schema_8_file_keeps_its_ids_under_their_old_keys_until_they_expire() {
    use alertd::store::{ClientId, NewEvent};
    const WINDOW: i64 = 600_000;
    let dir = tempfile::tempdir().unwrap();
    let path = copy_named(dir.path(), "store-schema8.redb");
    assert_eq!(schema_of(&path), 8, "the fixture is a schema-8 file");
    let ev = |cid: &str| {
        let mut e = s7_event(1);
        e.id = uuid::Uuid::now_v7().to_string();
        NewEvent {
            client_id: Some(ClientId::new(&e.workspace, cid)),
            event: e,
        }
    };
    let old: Vec<String> = (0..300)
        .map(|i| format!("s8-run-{i:03}"))
        .chain(["s8-log-a".into(), "s8-log-b".into()])
        .chain((1..=6).map(|n| format!("c-g{n}")))
        .collect();
    let at = T0 + 200_000;
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.last_seq().unwrap(), 309);
        assert_schema_7_history(&store);
        assert!(store.ids_under_old_keys());
        assert_eq!(store.remembered_ids(), 309);
        let mut retry: Vec<NewEvent> = old.iter().map(|c| ev(c)).collect();
        retry.push(ev("s9-new"));
        let out = store.append(vec![retry], at, WINDOW).unwrap();
        assert_eq!(out[0].duplicates, old.len(), "every id of the old release");
        assert_eq!(out[0].stored.len(), 1);
    }
    assert_eq!(schema_of(&path), alertd::store::SCHEMA_VERSION);
    let store = Store::open(&path).unwrap();
    assert!(store.ids_under_old_keys());
    store.seal_ids().unwrap();
    for cid in ["s8-run-000", "s8-run-299", "s8-log-b", "c-g6", "s9-new"] {
        let out = store.append(vec![vec![ev(cid)]], at + 1, WINDOW).unwrap();
        assert_eq!(out[0].duplicates, 1, "{cid} after reopening");
    }
    // The old ids' window ends (the last were accepted at T0 + 146 s): they are dropped, and
    // the id accepted after the upgrade is still remembered, by its new key alone.
    let applied = store.applied_through().unwrap();
    while !store
        .prune_step(applied, T0 + 146_000, u64::MAX, 100_000)
        .unwrap()
    {}
    assert!(!store.ids_under_old_keys(), "no id has an old key any more");
    assert_eq!(store.remembered_ids(), 1);
    let out = store
        .append(vec![vec![ev("s9-new"), ev("s8-run-000")]], at + 2, WINDOW)
        .unwrap();
    assert_eq!(out[0].duplicates, 1, "s9-new is; s8-run-000 expired");
    assert_schema_7_history(&store);
}

/// The schema-9 fixture's firing notification of `errors`, pending (never attempted).
const S9_FIRING_ID: &str = "0197a000-0000-7000-8000-000000000901";

#[test]
fn a_schema_9_file_keeps_its_dense_window_firing_delivery_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_named(dir.path(), "store-schema9.redb");
    assert_eq!(schema_of(&path), 9, "the fixture is a schema-9 file");
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.last_seq().unwrap(), 312);
        let mut alerts = store.alerts_with_bucket_items().unwrap();
        alerts.sort();
        assert_eq!(
            alerts,
            ["guard-fast", "guard-slow"],
            "schema 7's stored items"
        );
        let dead = store.list_deliveries(DeliveryStatus::Dead, 10).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].id, S7_DEAD_ID);
        let mut pending: Vec<String> = store
            .load_outbox()
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        pending.sort();
        assert_eq!(pending, [S7_PENDING_ID, S9_FIRING_ID]);
        let raw = &store.load_checkpoints().unwrap()["errors"];
        assert_eq!(
            raw[1],
            alertd::alert::STORED_ITEMS_LAYOUT,
            "read as it was written"
        );
        let cp = AlertState::decode_checkpoint("errors", raw).unwrap();
        assert_eq!(cp.applied_seq, 312);
        let episode = cp.triggers[0].1.episode.expect("the trigger was firing");
        assert_eq!(episode.start_ms, T0 + 400_000);
        let firing: Vec<_> = store
            .load_outbox()
            .unwrap()
            .into_iter()
            .filter(|d| d.alert_id == "errors")
            .collect();
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].id, S9_FIRING_ID);
        assert_eq!(firing[0].attempts, 0);
    }
    assert_eq!(schema_of(&path), alertd::store::SCHEMA_VERSION);
}

#[tokio::test]
async fn a_schema_9_alert_resumes_from_its_dense_window_and_is_stored_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_named(dir.path(), "store-schema9.redb");
    let old_len = Store::open(&path).unwrap().load_checkpoints().unwrap()["errors"].len();
    let rx = common::Receiver::start().await;
    let cfg = format!(
        "[engine]\ntick = \"200ms\"\n[delivery]\ndead_letter_max_age = \"100000d\"\n[[alert]]\nid = \"errors\"\nname = \"Errors\"\nurl = \"{}\"\nsend_resolved = true\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 1\nwindow = \"1h\"\n",
        rx.url("/hook")
    );
    let mut d = Daemon::start(dir.path(), &cfg).await;
    // The pending firing, then its resolve: the restored window holds the three errors of
    // 2026-05, which are outside the hour before now. A state that had lost the episode would
    // send no resolve.
    let got = rx.wait_for("/hook", 2, Duration::from_secs(20)).await;
    let bodies: Vec<serde_json::Value> = got.iter().map(|r| r.json()).collect();
    assert_eq!(bodies[0]["id"], S9_FIRING_ID, "{bodies:?}");
    let meta = |b: &serde_json::Value| b["payload"]["metadata"][0].clone();
    assert_eq!(meta(&bodies[0])["state"], "firing");
    assert_eq!(meta(&bodies[0])["metric_value"], "3");
    assert_eq!(meta(&bodies[1])["state"], "resolved", "{bodies:?}");
    wait_ticks(&d, 3).await;
    d.terminate();
    let store = Store::open(&path).unwrap();
    let raw = &store.load_checkpoints().unwrap()["errors"];
    assert_eq!(
        raw[1],
        alertd::alert::SPARSE_RINGS_LAYOUT,
        "rewritten at its next change"
    );
    assert!(
        raw.len() * 5 < old_len,
        "{} bytes against {old_len}",
        raw.len()
    );
    let cp = AlertState::decode_checkpoint("errors", raw).unwrap();
    assert!(cp.triggers[0].1.episode.is_none(), "resolved");
}
