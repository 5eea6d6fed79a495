//! Notification bodies, stored once per notification and compressed (schema 7).
//!
//! A notification's body is most of its bytes (a per-event alert's body lists its events'
//! details), and it never changes (DESIGN §9). Stored inline, it was written into the outbox when
//! the notification was decided and again into the delivery log when it was delivered: on the
//! 2,000-alert per-event bench the two copies were 94 % of all value bytes. So `outbox`,
//! `dead_letters` and `delivery_log` rows hold the delivery without its body, and the body sits in
//! `delivery_bodies` under the same key from the decision until the row leaves the last of those
//! tables. Moving a notification between them rewrites only its small row. Bodies are deflated
//! (JSON text shrinks several times) when that saves space.

use super::{counted, Delivery, StoreError, DEAD_LETTERS, DELIVERY_LOG, OUTBOX};
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use redb::{ReadableTable, TableDefinition};
use std::io::{Read, Write};

/// Notification key (as in `outbox`) → tag byte + body ([`RAW`] or [`DEFLATE`]).
pub(super) const BODIES: TableDefinition<u128, &[u8]> = TableDefinition::new("delivery_bodies");

/// The body as written.
const RAW: u8 = 0;
/// The body deflated.
const DEFLATE: u8 = 1;

/// Bodies shorter than this are stored raw: deflate saves little on them.
const DEFLATE_FROM: usize = 256;

/// A stored body is never inflated beyond this, so a corrupt row cannot exhaust memory.
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// The bodies table, open for writing.
pub(super) type Bodies<'t> = redb::Table<'t, u128, &'static [u8]>;

/// Creates the table (at open).
pub(super) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(BODIES)?;
    Ok(())
}

/// The row to store for `d` in `outbox`, `dead_letters` or `delivery_log`: `d` without its body.
/// The body is stored in `bodies` unless it already is (a move between tables rewrites only the
/// row).
pub(super) fn row(bodies: &mut Bodies, d: &Delivery) -> Result<Vec<u8>, StoreError> {
    if !d.body.is_empty() && bodies.get(d.key())?.is_none() {
        bodies.insert(d.key(), counted("delivery_bodies", &pack(&d.body)))?;
    }
    Ok(super::codec::encode(&WithoutBody(d)))
}

/// Puts the stored body back into `d`, read from a row. A body still inline (a row an older
/// alertd wrote and the migration could not read) is kept as it is.
pub(super) fn fill(
    bodies: &impl ReadableTable<u128, &'static [u8]>,
    d: &mut Delivery,
) -> Result<(), StoreError> {
    if !d.body.is_empty() {
        return Ok(());
    }
    match bodies.get(d.key())? {
        Some(v) => d.body = unpack(v.value())?,
        None => {
            tracing::error!(id = %d.id, "a delivery's stored body is missing; it is sent empty")
        }
    }
    Ok(())
}

/// Deletes the body of a notification that left every table for good.
pub(super) fn forget(bodies: &mut Bodies, key: u128) -> Result<(), StoreError> {
    bodies.remove(key)?;
    Ok(())
}

/// The stored size of a body (for byte-bounded retention), 0 when there is none.
pub(super) fn stored_len(
    bodies: &impl ReadableTable<u128, &'static [u8]>,
    key: u128,
) -> Result<usize, StoreError> {
    Ok(bodies.get(key)?.map_or(0, |v| v.value().len()))
}

/// 6 → 7: moves every readable delivery's body out of its row. Unreadable rows are left for the
/// quarantine sweep that follows.
pub(super) fn migrate(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut bodies = txn.open_table(BODIES)?;
    for def in [OUTBOX, DEAD_LETTERS, DELIVERY_LOG] {
        let mut table = txn.open_table(def)?;
        let mut moved = Vec::new();
        for r in table.iter()? {
            let (k, v) = r?;
            if let Ok(d) = super::codec::decode::<Delivery>(v.value()) {
                moved.push((k.value(), d));
            }
        }
        for (k, d) in moved {
            table.insert(k, row(&mut bodies, &d)?.as_slice())?;
        }
    }
    Ok(())
}

/// Deletes bodies no row names any more (their row was quarantined, or a crash fell between
/// two steps that an older build did not make atomic). Runs at open.
pub(super) fn sweep_orphans(txn: &redb::WriteTransaction) -> Result<u64, StoreError> {
    let mut bodies = txn.open_table(BODIES)?;
    let (outbox, dead, log) = (
        txn.open_table(OUTBOX)?,
        txn.open_table(DEAD_LETTERS)?,
        txn.open_table(DELIVERY_LOG)?,
    );
    let mut orphans = Vec::new();
    for r in bodies.iter()? {
        let k = r?.0.value();
        if outbox.get(k)?.is_none() && dead.get(k)?.is_none() && log.get(k)?.is_none() {
            orphans.push(k);
        }
    }
    for k in &orphans {
        bodies.remove(*k)?;
    }
    Ok(orphans.len() as u64)
}

/// Serializes a delivery with an empty body without cloning it: the same layout as
/// [`Delivery`], so every row decodes as one.
struct WithoutBody<'a>(&'a Delivery);

impl serde::Serialize for WithoutBody<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::delivery::serialize_without_body(self.0, s)
    }
}

fn pack(body: &str) -> Vec<u8> {
    if body.len() >= DEFLATE_FROM {
        let mut e = DeflateEncoder::new(vec![DEFLATE], Compression::fast());
        if e.write_all(body.as_bytes()).is_ok() {
            if let Ok(out) = e.finish() {
                if out.len() < body.len() {
                    return out;
                }
            }
        }
    }
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(RAW);
    out.extend_from_slice(body.as_bytes());
    out
}

fn unpack(stored: &[u8]) -> Result<String, StoreError> {
    let bad = |why: String| StoreError::Codec {
        table: "delivery_bodies",
        source: super::codec::CodecError::Decode(why),
    };
    let bytes = match stored.split_first() {
        Some((&RAW, rest)) => rest.to_vec(),
        Some((&DEFLATE, rest)) => {
            let mut out = Vec::new();
            DeflateDecoder::new(rest)
                .take(MAX_BODY)
                .read_to_end(&mut out)
                .map_err(|e| bad(e.to_string()))?;
            out
        }
        Some((tag, _)) => return Err(bad(format!("unknown body format {tag}"))),
        None => return Err(bad("empty body row".into())),
    };
    String::from_utf8(bytes).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DestinationKind;
    use crate::delivery::DeliveryStatus;
    use crate::store::{DeliveryResult, Store, TickCommit};

    fn delivery(n: u8) -> Delivery {
        let details = format!(r#"{{"excerpt":"match {n}: lorem ipsum dolor sit amet"}}"#);
        Delivery {
            id: format!("0197a000-0000-7000-8000-0000000000{n:02}"),
            alert_id: "g".into(),
            event_type: crate::event::EventType::GuardrailsTriggered,
            state: crate::notification::NotificationState::Firing,
            destination: DestinationKind::General,
            url: "http://127.0.0.1:9/hook".into(),
            headers: vec![("X-Team".into(), "sre".into())],
            signing_secret: String::new(),
            tls: Default::default(),
            body: format!("[{}]", vec![details; 60].join(",")),
            created_ms: 1_780_000_000_000 + n as i64,
            attempts: 0,
            max_retries: 3,
            next_attempt_ms: 1_780_000_000_000,
            last_status: None,
            last_error: None,
            finished_ms: None,
        }
    }

    fn bodies_len(store: &Store) -> u64 {
        store
            .with(|db| {
                let txn = redb::ReadableDatabase::begin_read(db)?;
                Ok(redb::ReadableTableMetadata::len(&txn.open_table(BODIES)?)?)
            })
            .unwrap()
    }

    fn bodies_of(store: &Store, status: DeliveryStatus) -> Vec<(String, String)> {
        let rows = match status {
            DeliveryStatus::Pending => store.load_outbox().unwrap(),
            s => store.list_deliveries(s, 100).unwrap(),
        };
        rows.into_iter().map(|d| (d.id, d.body)).collect()
    }

    #[test]
    fn a_body_is_stored_once_and_follows_its_notification_until_it_leaves_the_last_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        let (d1, d2, d3) = (delivery(1), delivery(2), delivery(3));
        {
            let store = Store::open(&path).unwrap();
            let tick = TickCommit {
                deliveries: vec![d1.clone(), d2.clone(), d3.clone()],
                ..Default::default()
            };
            store.commit_tick(&tick).unwrap();
            assert_eq!(bodies_len(&store), 3);
            let pending = store.load_outbox().unwrap();
            assert_eq!(pending, vec![d1.clone(), d2.clone(), d3.clone()]);
            // The rows themselves hold no body.
            let raw = store
                .with(|db| {
                    let txn = redb::ReadableDatabase::begin_read(db)?;
                    let t = txn.open_table(OUTBOX)?;
                    Ok(t.get(d1.key())?.unwrap().value().to_vec())
                })
                .unwrap();
            assert!(raw.len() < 200, "outbox row of {} bytes", raw.len());

            let mut tried = d3.clone();
            tried.attempts = 1;
            tried.last_status = Some(503);
            let results = [
                DeliveryResult::Delivered(d1.clone()),
                DeliveryResult::Dead(d2.clone()),
                DeliveryResult::Retry(tried.clone()),
            ];
            store.record_results(&results, 10).unwrap();
            assert_eq!(bodies_len(&store), 3, "moves rewrite rows, not bodies");
            let ok = |d: &Delivery| (d.id.clone(), d.body.clone());
            assert_eq!(bodies_of(&store, DeliveryStatus::Delivered), vec![ok(&d1)]);
            assert_eq!(bodies_of(&store, DeliveryStatus::Dead), vec![ok(&d2)]);
            assert_eq!(store.load_outbox().unwrap(), vec![tried.clone()]);
            let requeued = store.requeue_dead(d2.key(), 5).unwrap().unwrap();
            assert_eq!(requeued.body, d2.body);
        }
        // Reopened: the bodies are all there, and the sweep keeps every one a row names.
        let store = Store::open(&path).unwrap();
        assert_eq!(bodies_len(&store), 3);
        let mut pending = bodies_of(&store, DeliveryStatus::Pending);
        pending.sort();
        assert_eq!(
            pending,
            vec![
                (d2.id.clone(), d2.body.clone()),
                (d3.id.clone(), d3.body.clone())
            ]
        );
        // The history keeps one row: the oldest delivered row's body goes with it.
        store
            .record_results(&[DeliveryResult::Delivered(d3.clone())], 1)
            .unwrap();
        assert_eq!(
            bodies_of(&store, DeliveryStatus::Delivered),
            vec![(d3.id.clone(), d3.body.clone())]
        );
        assert_eq!(bodies_len(&store), 2, "d2 pending, d3 delivered");
        // Retention takes the body with the row.
        let rule = crate::retention::Retention {
            table: "delivery_log",
            max_age: None,
            max_bytes: Some(1),
        };
        let done = store.apply_retention(&[rule], 1_790_000_000_000).unwrap();
        assert_eq!(done, vec![("delivery_log", "bytes", 1)]);
        assert_eq!(bodies_len(&store), 1);
    }

    #[test]
    fn a_body_no_row_names_is_deleted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        {
            let store = Store::open(&path).unwrap();
            let d = delivery(1);
            store
                .commit_tick(&TickCommit {
                    deliveries: vec![d.clone()],
                    ..Default::default()
                })
                .unwrap();
            store
                .with(|db| {
                    let txn = super::super::durable(db)?;
                    txn.open_table(BODIES)?
                        .insert(7u128, pack("lost").as_slice())?;
                    txn.commit()?;
                    Ok(())
                })
                .unwrap();
            assert_eq!(bodies_len(&store), 2);
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(bodies_len(&store), 1);
        assert_eq!(store.load_outbox().unwrap(), vec![delivery(1)]);
    }

    #[test]
    fn bodies_come_back_as_they_went_in_raw_or_deflated() {
        let long = r#"{"excerpt":"match 7: lorem ipsum dolor sit amet"}"#.repeat(40);
        for body in ["", "{}", long.as_str(), "é".repeat(300).as_str()] {
            let packed = pack(body);
            assert_eq!(unpack(&packed).unwrap(), body);
        }
        assert_eq!(pack(&long)[0], DEFLATE);
        assert!(pack(&long).len() < long.len() / 4, "{}", pack(&long).len());
        assert_eq!(pack("{}")[0], RAW);
    }

    #[test]
    fn a_corrupt_body_is_an_error_not_a_panic() {
        assert!(unpack(&[DEFLATE, 0xff, 0x00, 0x13]).is_err());
        assert!(unpack(&[9, 1, 2]).is_err());
        assert!(unpack(&[]).is_err());
        assert!(unpack(&[RAW, 0xff, 0xfe]).is_err());
    }
}
