//! A data file written by the previous release (schema 1, `tests/fixtures/store-schema1.redb`,
//! see the README there) opens with this one: nothing it holds is lost, it is upgraded to the
//! current schema, and the tables added since (silences) work in it.

mod common;

use alertd::alert::AlertState;
use alertd::delivery::DeliveryStatus;
use alertd::store::Store;
use common::Daemon;
use serde_json::json;
use std::path::{Path, PathBuf};

const T0: i64 = 1_780_000_000_000;

/// A private copy of the fixture in `dir`, named as the test daemon's config expects.
fn copy_fixture(dir: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-schema1.redb");
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
        // to hashed, bucketed id tables (schema 3); a new id does not.
        let ev = |cid: &str| {
            let mut e = store.read_inbox(0, 1).unwrap()[0].1.clone();
            e.id = uuid::Uuid::now_v7().to_string();
            alertd::store::NewEvent {
                client_id: Some(cid.to_string()),
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
