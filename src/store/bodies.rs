//! Notification bodies, stored apart from their rows and shared within a tick (schema 7).
//!
//! A notification's body is most of its bytes (a per-event alert's body lists its events'
//! objects), and it never changes (DESIGN §9). Stored inline, it was written into the outbox when
//! the notification was decided and again into the delivery log when it was delivered: on the
//! 2,000-alert per-event bench the two copies were 94 % of all value bytes. So `outbox`,
//! `dead_letters` and `delivery_log` rows hold the delivery without its body, and
//! `delivery_bodies` holds the body under the same key from the decision until the row leaves the
//! last of those tables: moving a notification between them rewrites only its small row.
//!
//! The bodies a tick decides are stored together, as one deflated *pack*: every event object
//! the bodies embed verbatim ([`Delivery::listed`]) is kept once in the pack, however many
//! bodies list it (an event that reaches 20 alerts was written 20 times), and each body is the
//! text around those objects. Its `delivery_bodies` row then only names the pack and its place
//! in it. A pack lives while any of its bodies does (`delivery_body_pack_refs` counts them). A
//! body moved to the dead letters is copied out of its pack first, so a dead letter kept for
//! days holds no pack. A lone body is stored by itself, deflated when that saves space.

use super::{counted, Delivery, StoreError, DEAD_LETTERS, DELIVERY_LOG, OUTBOX};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::rc::Rc;

/// Notification key (as in `outbox`) → tag byte + the body ([`RAW`], [`DEFLATE`]) or where it
/// sits in a pack ([`PACKED`]: pack id and index, big-endian).
pub(super) const BODIES: TableDefinition<u128, &[u8]> = TableDefinition::new("delivery_bodies");
/// Pack id (the key of one of its bodies, so unique) → the deflated [`Pack`].
const PACKS: TableDefinition<u128, &[u8]> = TableDefinition::new("delivery_body_packs");
/// Pack id → how many `delivery_bodies` rows still point into it.
const PACK_REFS: TableDefinition<u128, u64> = TableDefinition::new("delivery_body_pack_refs");

/// The body as written.
const RAW: u8 = 0;
/// The body deflated.
const DEFLATE: u8 = 1;
/// The body is in a pack.
const PACKED: u8 = 2;

/// Bodies shorter than this are stored raw: deflate saves little on them.
const DEFLATE_FROM: usize = 256;
/// Event objects shorter than this stay in the text around them: a reference would save little.
const SHARE_FROM: usize = 16;
/// A tick's bodies go into packs of at most about this much text (before deflate), so reading
/// one body never inflates more than this, and a pack stays far below the codec's limit.
const PACK_MAX: usize = 8 * 1024 * 1024;

/// Nothing stored is ever inflated beyond this, so a corrupt row cannot exhaust memory.
const MAX_INFLATED: u64 = 256 * 1024 * 1024;

/// The bodies of one tick: the event objects they share, once each, and every body as the text
/// around its objects.
#[derive(Serialize, Deserialize)]
pub(super) struct Pack<S> {
    objects: Vec<S>,
    bodies: Vec<Vec<Piece<S>>>,
}

#[derive(Serialize, Deserialize)]
pub(super) enum Piece<S> {
    Text(S),
    Object(u32),
}

/// The body tables of a write transaction.
pub(super) struct Bodies<'t> {
    bodies: redb::Table<'t, u128, &'static [u8]>,
    packs: redb::Table<'t, u128, &'static [u8]>,
    refs: redb::Table<'t, u128, u64>,
}

impl<'t> Bodies<'t> {
    pub(super) fn open(txn: &'t redb::WriteTransaction) -> Result<Bodies<'t>, StoreError> {
        Ok(Bodies {
            bodies: txn.open_table(BODIES)?,
            packs: txn.open_table(PACKS)?,
            refs: txn.open_table(PACK_REFS)?,
        })
    }

    /// Stores the bodies of the deliveries a tick decided (those not stored yet): two or more
    /// as one pack, a lone one by itself.
    pub(super) fn store_tick(&mut self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        let mut new = Vec::new();
        for d in deliveries {
            if !d.body.is_empty() && self.bodies.get(d.key())?.is_none() {
                new.push(d);
            }
        }
        // Notifications that list the same events (the alerts of one project) side by side:
        // the text around the objects repeats their event ids, user names and metadata, and
        // deflate only finds a repeat within 32 KiB of it. In the order alerts are configured
        // they can be hundreds of bodies apart.
        new.sort_by(|a, b| a.listed.first().cmp(&b.listed.first()));
        let mut pack = PackBuilder::default();
        for d in new {
            pack.add(d);
            if pack.bytes >= PACK_MAX {
                self.store_pack(std::mem::take(&mut pack))?;
            }
        }
        self.store_pack(pack)
    }

    fn store_pack(&mut self, pack: PackBuilder) -> Result<(), StoreError> {
        match pack.members.as_slice() {
            [] => return Ok(()),
            [d] => return self.store_one(d),
            _ => {}
        }
        let id = pack.members[0].key();
        let stored = deflated(&super::codec::encode(&pack.pack));
        self.packs.insert(id, counted("delivery_bodies", &stored))?;
        self.refs.insert(id, pack.members.len() as u64)?;
        for (i, d) in pack.members.iter().enumerate() {
            let mut row = Vec::with_capacity(21);
            row.push(PACKED);
            row.extend_from_slice(&id.to_be_bytes());
            row.extend_from_slice(&(i as u32).to_be_bytes());
            self.bodies
                .insert(d.key(), counted("delivery_bodies", &row))?;
        }
        Ok(())
    }

    fn store_one(&mut self, d: &Delivery) -> Result<(), StoreError> {
        self.bodies
            .insert(d.key(), counted("delivery_bodies", &single(&d.body)))?;
        Ok(())
    }

    /// The row to store for `d` in `outbox` or `delivery_log`: `d` without its body. The body
    /// is stored unless it already is (a move between tables rewrites only the row).
    pub(super) fn row(&mut self, d: &Delivery) -> Result<Vec<u8>, StoreError> {
        if !d.body.is_empty() && self.bodies.get(d.key())?.is_none() {
            self.store_one(d)?;
        }
        Ok(super::codec::encode(&WithoutBody(d)))
    }

    /// The row for `d` in `dead_letters`: like [`Bodies::row`], but a body in a pack is copied
    /// out of it first, so a dead letter kept for days does not keep its tick's pack.
    pub(super) fn dead_row(&mut self, d: &Delivery) -> Result<Vec<u8>, StoreError> {
        let packed = self
            .bodies
            .get(d.key())?
            .is_some_and(|v| v.value().first() == Some(&PACKED));
        if packed && !d.body.is_empty() {
            self.forget(d.key())?;
            self.store_one(d)?;
        }
        self.row(d)
    }

    /// Deletes the body of a notification that left every table for good.
    pub(super) fn forget(&mut self, key: u128) -> Result<(), StoreError> {
        let pack = match self.bodies.remove(key)? {
            Some(v) => pack_ref(v.value()),
            None => None,
        };
        if let Some((id, _)) = pack {
            self.release(id)?;
        }
        Ok(())
    }

    /// One body of pack `id` is gone: the pack goes with its last.
    fn release(&mut self, id: u128) -> Result<(), StoreError> {
        let left = self
            .refs
            .get(id)?
            .map_or(0, |v| v.value())
            .saturating_sub(1);
        if left == 0 {
            self.refs.remove(id)?;
            self.packs.remove(id)?;
        } else {
            self.refs.insert(id, left)?;
        }
        Ok(())
    }

    /// Puts the stored body back into `d` (see [`fill`]).
    pub(super) fn fill(&self, cache: &mut PackCache, d: &mut Delivery) -> Result<(), StoreError> {
        fill(&self.bodies, &self.packs, cache, d)
    }
}

/// The body tables of a read transaction.
pub(super) struct Reader {
    bodies: redb::ReadOnlyTable<u128, &'static [u8]>,
    packs: redb::ReadOnlyTable<u128, &'static [u8]>,
    refs: redb::ReadOnlyTable<u128, u64>,
    cache: PackCache,
}

impl Reader {
    pub(super) fn open(txn: &redb::ReadTransaction) -> Result<Reader, StoreError> {
        Ok(Reader {
            bodies: txn.open_table(BODIES)?,
            packs: txn.open_table(PACKS)?,
            refs: txn.open_table(PACK_REFS)?,
            cache: PackCache::new(),
        })
    }

    /// Puts the stored body back into `d` (see [`fill`]).
    pub(super) fn fill(&mut self, d: &mut Delivery) -> Result<(), StoreError> {
        fill(&self.bodies, &self.packs, &mut self.cache, d)
    }

    /// What a body takes on disk (for byte-bounded retention): its row, plus its share of its
    /// pack; 0 when there is none.
    pub(super) fn stored_len(&self, key: u128) -> Result<usize, StoreError> {
        let Some(v) = self.bodies.get(key)? else {
            return Ok(0);
        };
        let row = v.value();
        Ok(match pack_ref(row) {
            None => row.len(),
            Some((id, _)) => {
                let pack = self.packs.get(id)?.map_or(0, |p| p.value().len());
                let share = self.refs.get(id)?.map_or(1, |r| r.value().max(1)) as usize;
                row.len() + pack / share
            }
        })
    }
}

/// Packs already inflated while reading many rows (e.g. the outbox at start, which holds the
/// bodies of a few ticks): each is inflated once per read.
pub(super) type PackCache = HashMap<u128, Rc<Pack<String>>>;

/// Puts the stored body back into `d`, read from a row. A body still inline (a row an older
/// alertd wrote and the migration could not read) is kept as it is.
fn fill(
    bodies: &impl ReadableTable<u128, &'static [u8]>,
    packs: &impl ReadableTable<u128, &'static [u8]>,
    cache: &mut PackCache,
    d: &mut Delivery,
) -> Result<(), StoreError> {
    if !d.body.is_empty() {
        return Ok(());
    }
    let Some(row) = bodies.get(d.key())? else {
        tracing::error!(id = %d.id, "a delivery's stored body is missing; it is sent empty");
        return Ok(());
    };
    let row = row.value();
    let Some((id, index)) = pack_ref(row) else {
        d.body = unpack(row)?;
        return Ok(());
    };
    let pack = match cache.get(&id) {
        Some(p) => p.clone(),
        None => {
            let stored = packs
                .get(id)?
                .ok_or_else(|| bad("a body's pack is missing".into()))?;
            let raw = inflate(stored.value())?;
            let p: Rc<Pack<String>> =
                Rc::new(super::codec::decode(&raw).map_err(|e| bad(e.to_string()))?);
            cache.insert(id, p.clone());
            p
        }
    };
    let pieces = pack
        .bodies
        .get(index as usize)
        .ok_or_else(|| bad(format!("no body {index} in its pack")))?;
    let mut body = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => body.push_str(t),
            Piece::Object(i) => body.push_str(
                pack.objects
                    .get(*i as usize)
                    .ok_or_else(|| bad(format!("no object {i} in a pack")))?,
            ),
        }
    }
    d.body = body;
    Ok(())
}

/// Creates the tables (at open).
pub(super) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(BODIES)?;
    txn.open_table(PACKS)?;
    txn.open_table(PACK_REFS)?;
    Ok(())
}

/// 6 → 7: moves every readable delivery's body out of its row. Unreadable rows are left for the
/// quarantine sweep that follows.
pub(super) fn migrate(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut bodies = Bodies::open(txn)?;
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
            table.insert(k, bodies.row(&d)?.as_slice())?;
        }
    }
    Ok(())
}

/// Makes the body tables agree with the rows, at open: deletes bodies no row names any more
/// (their row was quarantined), then recounts every pack's bodies and deletes packs none
/// points into. Returns how many bodies and packs were deleted.
pub(super) fn sweep_orphans(txn: &redb::WriteTransaction) -> Result<(u64, u64), StoreError> {
    let mut b = Bodies::open(txn)?;
    let (outbox, dead, log) = (
        txn.open_table(OUTBOX)?,
        txn.open_table(DEAD_LETTERS)?,
        txn.open_table(DELIVERY_LOG)?,
    );
    let mut orphans = Vec::new();
    let mut counts: HashMap<u128, u64> = HashMap::new();
    for r in b.bodies.iter()? {
        let (k, v) = r?;
        let k = k.value();
        if outbox.get(k)?.is_none() && dead.get(k)?.is_none() && log.get(k)?.is_none() {
            orphans.push(k);
        } else if let Some((id, _)) = pack_ref(v.value()) {
            *counts.entry(id).or_default() += 1;
        }
    }
    for k in &orphans {
        b.bodies.remove(*k)?;
    }
    let mut stale = Vec::new();
    for r in b.packs.iter()? {
        let id = r?.0.value();
        if !counts.contains_key(&id) {
            stale.push(id);
        }
    }
    for id in &stale {
        b.packs.remove(*id)?;
    }
    if b.refs.len()? > 0 || !counts.is_empty() {
        b.refs.retain(|_, _| false)?;
        for (id, n) in counts {
            b.refs.insert(id, n)?;
        }
    }
    Ok((orphans.len() as u64, stale.len() as u64))
}

/// The pack and index a [`PACKED`] row names.
fn pack_ref(row: &[u8]) -> Option<(u128, u32)> {
    if row.len() != 21 || row[0] != PACKED {
        return None;
    }
    let id = u128::from_be_bytes(row[1..17].try_into().ok()?);
    let index = u32::from_be_bytes(row[17..21].try_into().ok()?);
    Some((id, index))
}

/// A pack being built: each object its bodies list verbatim stored once, the text around them
/// as is.
#[derive(Default)]
struct PackBuilder<'a> {
    pack: Pack<&'a str>,
    members: Vec<&'a Delivery>,
    index: HashMap<&'a str, u32>,
    /// The pack's text so far (objects once, plus the text around them), before deflate.
    bytes: usize,
}

impl<'a> PackBuilder<'a> {
    fn add(&mut self, d: &'a Delivery) {
        let body = d.body.as_str();
        let mut pieces = Vec::new();
        let mut at = 0;
        let text = |pieces: &mut Vec<Piece<&'a str>>, t: &'a str, bytes: &mut usize| {
            if !t.is_empty() {
                *bytes += t.len();
                pieces.push(Piece::Text(t));
            }
        };
        for object in d.listed.iter().filter(|o| o.len() >= SHARE_FROM) {
            let Some(found) = body[at..].find(object.as_str()) else {
                continue;
            };
            let start = at + found;
            text(&mut pieces, &body[at..start], &mut self.bytes);
            let shared = &body[start..start + object.len()];
            let i = match self.index.get(shared) {
                Some(i) => *i,
                None => {
                    self.pack.objects.push(shared);
                    self.bytes += shared.len();
                    let i = (self.pack.objects.len() - 1) as u32;
                    self.index.insert(shared, i);
                    i
                }
            };
            pieces.push(Piece::Object(i));
            at = start + object.len();
        }
        text(&mut pieces, &body[at..], &mut self.bytes);
        self.pack.bodies.push(pieces);
        self.members.push(d);
    }
}

impl<S> Default for Pack<S> {
    fn default() -> Self {
        Pack {
            objects: Vec::new(),
            bodies: Vec::new(),
        }
    }
}

/// Serializes a delivery with an empty body without cloning it: the same layout as
/// [`Delivery`], so every row decodes as one.
struct WithoutBody<'a>(&'a Delivery);

impl serde::Serialize for WithoutBody<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::delivery::serialize_without_body(self.0, s)
    }
}

fn bad(why: String) -> StoreError {
    StoreError::Codec {
        table: "delivery_bodies",
        source: super::codec::CodecError::Decode(why),
    }
}

/// `bytes` deflated, after a [`DEFLATE`] tag.
fn deflated(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![DEFLATE];
    super::deflate::deflate_into(&mut out, bytes);
    out
}

fn inflate(stored: &[u8]) -> Result<Vec<u8>, StoreError> {
    match stored.split_first() {
        Some((&DEFLATE, rest)) => {
            super::deflate::inflate(rest, MAX_INFLATED).map_err(|e| bad(e.to_string()))
        }
        Some((&RAW, rest)) => Ok(rest.to_vec()),
        Some((tag, _)) => Err(bad(format!("unknown body format {tag}"))),
        None => Err(bad("empty body row".into())),
    }
}

/// A lone body as stored: deflated when that saves space, else raw.
fn single(body: &str) -> Vec<u8> {
    if body.len() >= DEFLATE_FROM {
        let out = deflated(body.as_bytes());
        if out.len() < body.len() {
            return out;
        }
    }
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(RAW);
    out.extend_from_slice(body.as_bytes());
    out
}

fn unpack(stored: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(inflate(stored)?).map_err(|e| bad(e.to_string()))
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
            listed: Vec::new(),
        }
    }

    fn tick(store: &Store, deliveries: Vec<Delivery>) {
        store
            .commit_tick(&TickCommit {
                deliveries,
                ..Default::default()
            })
            .unwrap();
    }

    /// Changes the file behind the store's back, as damage or an older build would.
    fn raw_write(
        store: &Store,
        change: impl FnOnce(&redb::WriteTransaction) -> Result<(), StoreError>,
    ) {
        store
            .with(|db| {
                let txn = super::super::durable(db)?;
                change(&txn)?;
                txn.commit()?;
                Ok(())
            })
            .unwrap();
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

    /// Rows and packs as stored: (body rows that point into a pack, packs, pack refs).
    fn packed(store: &Store) -> (u64, u64, Vec<u64>) {
        store
            .with(|db| {
                let txn = redb::ReadableDatabase::begin_read(db)?;
                let mut rows = 0;
                for r in txn.open_table(BODIES)?.iter()? {
                    rows += pack_ref(r?.1.value()).is_some() as u64;
                }
                let packs = txn.open_table(PACKS)?.len()?;
                let refs = txn
                    .open_table(PACK_REFS)?
                    .iter()?
                    .map(|r| r.map(|(_, v)| v.value()))
                    .collect::<Result<_, _>>()?;
                Ok((rows, packs, refs))
            })
            .unwrap()
    }

    /// The stored size of the first pack.
    fn first_pack_len(store: &Store) -> usize {
        store
            .with(|db| {
                let txn = redb::ReadableDatabase::begin_read(db)?;
                let t = txn.open_table(PACKS)?;
                let len = t.iter()?.next().unwrap()?.1.value().len();
                Ok(len)
            })
            .unwrap()
    }

    /// A general webhook body of `objects`, each listed verbatim, as the destination writes it.
    fn listing(n: u8, objects: &[String]) -> Delivery {
        let mut d = delivery(n);
        d.body = format!(
            r#"{{"id":"{}","payload":{{"alert_name":"g-{n}","metadata":[{}]}}}}"#,
            d.id,
            objects.join(",")
        );
        d.listed = objects.to_vec();
        d
    }

    #[test]
    fn bodies_that_list_the_same_events_sit_side_by_side_in_their_pack() {
        // 80 projects with 3 alerts each, decided in the order alerts are configured: alert i
        // watches project i % 80, so two bodies of one project are 80 bodies (≈ 55 KB) apart,
        // beyond deflate's 32 KiB window. Each body repeats its project's 15 event ids, text
        // deflate cannot shrink much unless it meets it again close by.
        let id = |p: u64, k: u64| {
            let x = (p * 100 + k + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            format!(
                "\"{:016x}{:016x}\"",
                x,
                x.rotate_left(29) ^ 0xC2B2_AE3D_27D4_EB4F
            )
        };
        let mut ids_bytes = 0;
        let ds: Vec<Delivery> = (0..240u64)
            .map(|i| {
                let p = i % 80;
                let object = format!(r#"{{"kind":"guardrail","project":"p{p}"}}"#);
                let ids: Vec<String> = (0..15).map(|k| id(p, k)).collect();
                ids_bytes += ids.iter().map(String::len).sum::<usize>();
                let mut d = listing(1, &[object]);
                d.id = format!("0197a000-0000-7000-8000-{:012x}", 1000 + i);
                d.body = format!(
                    r#"{{"id":"{}","payload":{{"eventIds":[{}],"metadata":[{}]}}}}"#,
                    d.id,
                    ids.join(","),
                    d.listed[0]
                );
                d
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb")).unwrap();
        tick(&store, ds.clone());
        let pack = first_pack_len(&store);
        // Side by side, each project's ids are stored about once (≈ 1/3 of them, then
        // halved by deflate); 80 bodies apart, all three times.
        assert!(
            pack * 4 < ids_bytes,
            "a pack of {pack} bytes for {ids_bytes} bytes of event ids"
        );
        let mut got = bodies_of(&store, DeliveryStatus::Pending);
        got.sort();
        let want: Vec<(String, String)> =
            ds.iter().map(|d| (d.id.clone(), d.body.clone())).collect();
        assert_eq!(
            got, want,
            "each body reads back as it was, in its row's place"
        );
    }

    #[test]
    fn the_bodies_of_a_tick_share_one_pack_and_each_event_object_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        // 20 bodies, each listing 8 of 10 distinct objects of random-looking text (which
        // deflate cannot shrink much: only storing each once can).
        let objects: Vec<String> = (0..10u64)
            .map(|i| {
                let text: String = (0..40u64)
                    .map(|k| {
                        format!(
                            "{:016x}",
                            (i * 1000 + k).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        )
                    })
                    .collect();
                format!(r#"{{"kind":"guardrail","n":{i},"excerpt":"{text}"}}"#)
            })
            .collect();
        let ds: Vec<Delivery> = (1..=20u8)
            .map(|n| {
                let start = n as usize % 3;
                listing(n, &objects[start..start + 8])
            })
            .collect();
        let raw: usize = ds.iter().map(|d| d.body.len()).sum();
        let store = Store::open(&path).unwrap();
        tick(&store, ds.clone());
        assert_eq!(packed(&store), (20, 1, vec![20]));
        let pack = first_pack_len(&store);
        assert!(
            pack < raw / 8,
            "a pack of {pack} bytes for {raw} bytes of bodies"
        );
        let bodies = |s: &Store, st| -> Vec<(String, String)> {
            let mut v = bodies_of(s, st);
            v.sort();
            v
        };
        let want: Vec<(String, String)> =
            ds.iter().map(|d| (d.id.clone(), d.body.clone())).collect();
        assert_eq!(bodies(&store, DeliveryStatus::Pending), want);

        // Delivered rows keep their place in the pack; a dead letter takes its body out of it.
        let mut results: Vec<DeliveryResult> = ds[..19]
            .iter()
            .cloned()
            .map(DeliveryResult::Delivered)
            .collect();
        results.push(DeliveryResult::Dead(ds[19].clone()));
        store.record_results(&results, 100).unwrap();
        assert_eq!(packed(&store), (19, 1, vec![19]));
        assert_eq!(
            bodies(&store, DeliveryStatus::Delivered),
            want[..19].to_vec()
        );
        assert_eq!(bodies(&store, DeliveryStatus::Dead), want[19..].to_vec());
        drop(store);

        // Reopened: the counts agree with the rows; the pack goes with the last body in it.
        let store = Store::open(&path).unwrap();
        assert_eq!(packed(&store), (19, 1, vec![19]));
        store.record_results(&[], 0).unwrap();
        assert_eq!(packed(&store), (0, 0, vec![]));
        assert_eq!(bodies_len(&store), 1, "the dead letter's own body");
        let requeued = store.requeue_dead(ds[19].key(), 5).unwrap().unwrap();
        assert_eq!(requeued.body, ds[19].body);
    }

    #[test]
    fn a_large_tick_is_cut_into_packs_of_bounded_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb")).unwrap();
        let ds: Vec<Delivery> = (1..=5u8)
            .map(|n| {
                let mut d = delivery(n);
                d.body = format!("{n}{}", "a".repeat(3 * 1024 * 1024));
                d
            })
            .collect();
        tick(&store, ds.clone());
        // 3 MiB each against 8 MiB: the third fills the first pack, the last two share one.
        let (rows, packs, mut refs) = packed(&store);
        refs.sort();
        assert_eq!((rows, packs, refs), (5, 2, vec![2, 3]));
        let mut got = bodies_of(&store, DeliveryStatus::Pending);
        got.sort();
        let want: Vec<(String, String)> =
            ds.iter().map(|d| (d.id.clone(), d.body.clone())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_corrupt_pack_leaves_its_deliveries_pending_and_the_store_usable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb")).unwrap();
        let objects = vec!["x".repeat(100)];
        let (d1, d2, d3) = (listing(1, &objects), listing(2, &objects), delivery(3));
        tick(&store, vec![d1.clone(), d2.clone()]);
        tick(&store, vec![d3.clone()]);
        raw_write(&store, |txn| {
            txn.open_table(PACKS)?
                .insert(d1.key(), [DEFLATE, 0xff, 0x00, 0x13].as_slice())?;
            Ok(())
        });
        assert_eq!(
            store.load_outbox().unwrap(),
            vec![d3.clone()],
            "the readable one is sent"
        );
        let listed = store.list_deliveries(DeliveryStatus::Pending, 10).unwrap();
        assert_eq!(listed.len(), 3, "the others stay pending and listed");
    }

    #[test]
    fn a_pack_no_row_points_into_is_deleted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        let objects = vec!["x".repeat(100)];
        let ds = vec![listing(1, &objects), listing(2, &objects)];
        {
            let store = Store::open(&path).unwrap();
            tick(&store, ds.clone());
            // As if both rows had been quarantined: nothing names the bodies any more.
            raw_write(&store, |txn| {
                txn.open_table(OUTBOX)?.retain(|_, _| false)?;
                Ok(())
            });
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(packed(&store), (0, 0, vec![]));
        assert_eq!(bodies_len(&store), 0);
    }

    #[test]
    fn a_body_no_row_names_is_deleted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        {
            let store = Store::open(&path).unwrap();
            let d = delivery(1);
            tick(&store, vec![d.clone()]);
            raw_write(&store, |txn| {
                txn.open_table(BODIES)?
                    .insert(7u128, single("lost").as_slice())?;
                Ok(())
            });
            assert_eq!(bodies_len(&store), 2);
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(bodies_len(&store), 1);
        assert_eq!(store.load_outbox().unwrap(), vec![delivery(1)]);
    }

    #[test]
    fn a_row_without_its_body_decodes_as_the_delivery_it_was_made_from() {
        // Every field set to something other than its default: a field that
        // `serialize_without_body` writes out of order or with another type shows here.
        let mut d = delivery(9);
        d.signing_secret = "whsec_c2VjcmV0".into();
        d.tls = crate::delivery::TlsOptions {
            ca_file: Some("/etc/ca.pem".into()),
            insecure: true,
        };
        d.attempts = 2; // max_retries is 3
        d.last_status = Some(503);
        d.last_error = Some("HTTP 503".into());
        d.finished_ms = Some(1_780_000_009_000);
        d.listed = vec!["{}".into()];
        let row = super::super::codec::encode(&WithoutBody(&d));
        let back: Delivery = super::super::codec::decode(&row).unwrap();
        let mut want = d.clone();
        want.body = String::new();
        want.listed = Vec::new();
        assert_eq!(back, want);
    }

    #[test]
    fn bodies_come_back_as_they_went_in_raw_or_deflated() {
        let long = r#"{"excerpt":"match 7: lorem ipsum dolor sit amet"}"#.repeat(40);
        for body in ["", "{}", long.as_str(), "é".repeat(300).as_str()] {
            let packed = single(body);
            assert_eq!(unpack(&packed).unwrap(), body);
        }
        assert_eq!(single(&long)[0], DEFLATE);
        assert!(
            single(&long).len() < long.len() / 4,
            "{}",
            single(&long).len()
        );
        assert_eq!(single("{}")[0], RAW);
    }

    #[test]
    fn a_corrupt_body_is_an_error_not_a_panic() {
        assert!(unpack(&[DEFLATE, 0xff, 0x00, 0x13]).is_err());
        assert!(unpack(&[9, 1, 2]).is_err());
        assert!(unpack(&[]).is_err());
        assert!(unpack(&[RAW, 0xff, 0xfe]).is_err());
    }
}
