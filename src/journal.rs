//! The journal actor: durable, group-committed appends to the inbox.
//!
//! HTTP handlers send validated batches. While one commit (one fsync: of the append log for a
//! small commit, of the data file for a large one; see `store::wal`) runs on a blocking thread,
//! newly arriving batches wait; when it ends they are all committed together in the next
//! transaction. The wait is what makes commits large: a build that started the next commit
//! during the previous one's fsync made twice as many commits of half the size, and each
//! commit's fixed CPU (≈ 110–150 µs) then cost single-event ingest 8–23 % of its throughput
//! on 2 cores (README, "single-event ingest, where its CPU goes"). Each request is answered only after its commit, and the stored events are then
//! forwarded to the router in sequence order.
//!
//! Whatever reached the inbox is routed, and answers are truthful: when a commit reports an
//! error, the journal checks the store; if the rows are there after all (the error came after
//! the data was durable), the requests are answered as accepted and the rows routed. Before
//! routing a commit, any gap since the last routed sequence (rows committed by a commit whose
//! outcome could not be checked) is read back from the inbox and routed first.

use crate::clock::now_ms;
use crate::event::{Event, EventBody};
use crate::metrics;
use crate::router::RouterMsg;
use crate::store::{AppendOutcome, KeyedRequest, NewEvent, Store};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What a successful append answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub accepted: usize,
    pub duplicates: usize,
}

type Reply = RpcReplyPort<Result<Appended, String>>;

/// Messages the journal understands.
pub enum JournalMsg {
    Append(Vec<NewEvent>, Reply),
    /// A group of events stored whole and de-duplicated by one id (a NATS message), committed
    /// with the other pending requests (see [`Store::append_keyed`]).
    AppendKeyed(String, Vec<NewEvent>, Reply),
    Committed(Result<Vec<AppendOutcome>, String>, Vec<(usize, Reply)>),
    /// Replies when nothing is pending or being committed.
    Flush(RpcReplyPort<()>),
}

/// Start-up arguments.
pub struct JournalArgs {
    pub store: Store,
    pub router: ActorRef<RouterMsg>,
    /// The running config: the de-duplication window is read at each commit, so a reload
    /// applies to ingest and to expiry at the same moment.
    pub config: crate::config::LiveConfig,
    /// Events accepted by handlers but not yet committed; ingest refuses with 503 above a limit.
    pub queued: Arc<AtomicUsize>,
    /// The last sequence number in the inbox at start (everything up to it is replayed).
    pub last_seq: u64,
}

pub struct JournalState {
    args: JournalArgs,
    /// The highest sequence number handed to the router.
    routed: u64,
    /// Requests waiting for the next commit, with their group key (`AppendKeyed`).
    pending: Vec<(Option<String>, Vec<NewEvent>, Reply)>,
    committing: bool,
    flushes: Vec<RpcReplyPort<()>>,
}

/// The journal actor.
pub struct Journal;

/// The ingest kind name of an event, for metrics.
pub fn kind_name(e: &Event) -> &'static str {
    match &e.body {
        EventBody::Trace { .. } => "trace",
        EventBody::FeedbackScore { .. } => "feedback_score",
        EventBody::Guardrail { .. } => "guardrail",
        EventBody::Object { event_type, .. } => match event_type.as_str() {
            "prompt:created" => "prompt_created",
            "prompt:committed" => "prompt_committed",
            "prompt:deleted" => "prompt_deleted",
            _ => "experiment_finished",
        },
    }
}

fn start_commit(myself: &ActorRef<JournalMsg>, state: &mut JournalState) {
    if state.committing || state.pending.is_empty() {
        return;
    }
    state.committing = true;
    let batch = std::mem::take(&mut state.pending);
    let mut replies = Vec::with_capacity(batch.len());
    let mut requests = Vec::with_capacity(batch.len());
    let mut keys = Vec::with_capacity(batch.len());
    for (key, events, reply) in batch {
        replies.push((events.len(), reply));
        requests.push(events);
        keys.push(key);
    }
    let store = state.args.store.clone();
    let window = state.args.config.borrow().ingest.dedup_window.as_millis() as i64;
    let me = myself.clone();
    let known = state.routed;
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let n: usize = requests.iter().map(Vec::len).sum();
        let shape = shapes(&requests, &keys);
        let r = if keys.iter().all(Option::is_none) {
            store.append(requests, now_ms(), window)
        } else {
            let keyed = keys
                .into_iter()
                .zip(requests)
                .map(|(key, events)| KeyedRequest { key, events })
                .collect();
            store.append_keyed(keyed, now_ms(), window)
        };
        let r = r
            .or_else(|e| {
                verify(&store, known, &shape).map_err(|checked| {
                    if checked {
                        format!("the events were not stored: {e}")
                    } else {
                        format!("the store failed ({e}) and could not be checked: the events may or may not be stored; a retry with client ids is counted once")
                    }
                })
            });
        metrics::journal_commit(started.elapsed().as_secs_f64(), n);
        let _ = me.cast(JournalMsg::Committed(r, replies));
    });
}

/// What is needed to attribute rows to requests after an uncertain commit: each request's size,
/// and its events' [`id_print`]s when it may hold duplicates (client ids given).
type Shape = Vec<(usize, Option<Vec<u128>>)>;

fn shapes(requests: &[Vec<NewEvent>], keys: &[Option<String>]) -> Shape {
    requests
        .iter()
        .zip(keys)
        .map(|(r, key)| {
            let ids = (key.is_some() || r.iter().any(|e| e.client_id.is_some()))
                .then(|| r.iter().map(|e| id_print(&e.event.id)).collect());
            (r.len(), ids)
        })
        .collect()
}

/// An event id as a number: its UUID (every id alertd makes is one), else a hash of the text.
/// Taken for every event of a commit with client ids, on the commit thread, and read only after
/// a failed commit: copying the id strings instead was 6 % of that thread's time.
fn id_print(id: &str) -> u128 {
    match uuid::Uuid::try_parse(id) {
        Ok(u) => u.as_u128(),
        Err(_) => {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            id.hash(&mut h);
            h.finish() as u128
        }
    }
}

/// After a commit reported an error: if the rows are in the inbox anyway, the outcomes they
/// represent; otherwise `Err(true)` when the store says they are not there, `Err(false)` when it
/// cannot tell yet.
fn verify(store: &Store, known: u64, shape: &Shape) -> Result<Vec<AppendOutcome>, bool> {
    let last = store.last_seq().map_err(|_| false)?;
    if last <= known {
        return Err(true);
    }
    let rows = store
        .read_inbox(known, (last - known) as usize)
        .map_err(|_| false)?;
    let mut rows = rows.into_iter().peekable();
    let mut out = Vec::with_capacity(shape.len());
    for (len, ids) in shape {
        let mut o = AppendOutcome::default();
        match ids {
            None => o.stored.extend(rows.by_ref().take(*len)),
            Some(ids) => {
                for id in ids {
                    if rows.peek().is_some_and(|(_, e)| id_print(&e.id) == *id) {
                        o.stored.extend(rows.next());
                    } else {
                        o.duplicates += 1;
                    }
                }
            }
        }
        out.push(o);
    }
    tracing::warn!(
        rows = last - known,
        "a journal commit reported an error but its rows are durable; answered as accepted"
    );
    Ok(out)
}

/// Routes inbox rows `(after, through]` that were committed without being routed.
async fn route_gap(args: &JournalArgs, after: u64, through: u64) {
    let store = args.store.clone();
    let limit = (through - after) as usize;
    match tokio::task::spawn_blocking(move || store.read_inbox(after, limit)).await {
        Ok(Ok(rows)) => {
            tracing::warn!(
                rows = rows.len(),
                "routing rows of an earlier commit whose outcome was unknown"
            );
            let rows: crate::router::Routed =
                rows.into_iter().map(|(s, e)| (s, Arc::new(e))).collect();
            let _ = args.router.cast(RouterMsg::Route(rows));
        }
        // They are replayed at the next start.
        _ => tracing::error!(
            "cannot read back unrouted inbox rows; they are counted after a restart"
        ),
    }
}

impl Actor for Journal {
    type Msg = JournalMsg;
    type State = JournalState;
    type Arguments = JournalArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: JournalArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(JournalState {
            routed: args.last_seq,
            args,
            pending: Vec::new(),
            committing: false,
            flushes: Vec::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            JournalMsg::Append(events, reply) => state.pending.push((None, events, reply)),
            JournalMsg::AppendKeyed(key, events, reply) => {
                state.pending.push((Some(key), events, reply))
            }
            JournalMsg::Committed(result, replies) => {
                state.committing = false;
                let total: usize = replies.iter().map(|(n, _)| n).sum();
                state.args.queued.fetch_sub(total, Ordering::AcqRel);
                match result {
                    Ok(outcomes) => {
                        // The next commit starts before this one's answers and routing, so the
                        // single writer is not idle meanwhile; it needs `routed` (the rows it
                        // may verify after an error start past it), unless a gap must be
                        // routed first.
                        let first = outcomes.iter().find_map(|o| o.stored.first()).map(|r| r.0);
                        let gap = first.filter(|f| *f > state.routed + 1);
                        if let Some(last) = outcomes.iter().rev().find_map(|o| o.stored.last()) {
                            if gap.is_none() {
                                state.routed = last.0;
                                start_commit(&myself, state);
                            }
                        }
                        let mut routed = Vec::new();
                        let mut by_kind: HashMap<&'static str, u64> = HashMap::new();
                        for ((_, reply), outcome) in replies.into_iter().zip(outcomes) {
                            for (_, e) in &outcome.stored {
                                *by_kind.entry(kind_name(e)).or_default() += 1;
                            }
                            let _ = reply.send(Ok(Appended {
                                accepted: outcome.stored.len(),
                                duplicates: outcome.duplicates,
                            }));
                            routed
                                .extend(outcome.stored.into_iter().map(|(s, e)| (s, Arc::new(e))));
                        }
                        for (kind, n) in by_kind {
                            metrics::events(kind, "accepted", n);
                        }
                        if let Some(first) = gap {
                            route_gap(&state.args, state.routed, first - 1).await;
                        }
                        if let Some((last, _)) = routed.last() {
                            state.routed = *last;
                            state.args.router.cast(RouterMsg::Route(routed))?;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "journal commit failed; answering 503");
                        for (_, reply) in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
            JournalMsg::Flush(reply) => state.flushes.push(reply),
        }
        start_commit(&myself, state);
        if !state.committing && state.pending.is_empty() {
            for f in state.flushes.drain(..) {
                let _ = f.send(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::store::ClientId;

    fn event(client_id: Option<&str>, id: String) -> NewEvent {
        NewEvent {
            client_id: client_id.map(|c| ClientId::new("w", c)),
            event: Event {
                id,
                workspace: "w".into(),
                project: Some("p".into()),
                project_id: None,
                timestamp_ms: 1_780_000_000_000,
                received_ms: 1_780_000_000_000,
                user: "system".into(),
                body: EventBody::Trace {
                    trace_id: None,
                    duration_s: None,
                    cost: None,
                    error: false,
                },
            },
        }
    }

    fn counts(o: &[AppendOutcome]) -> Vec<(Vec<u64>, usize)> {
        o.iter()
            .map(|o| (o.stored.iter().map(|r| r.0).collect(), o.duplicates))
            .collect()
    }

    #[test]
    fn after_an_uncertain_commit_the_rows_found_give_the_outcomes_the_commit_had() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("alertd.redb")).unwrap();
        let now = 1_780_000_000_000;
        store
            .append(
                vec![vec![event(Some("seen"), crate::ingest::new_event_id(now))]],
                now,
                60_000,
            )
            .unwrap();
        let known = store.last_seq().unwrap();
        // UUIDs as alertd makes them, and an id that is no UUID (hashed instead).
        let requests = vec![
            vec![
                event(Some("a"), crate::ingest::new_event_id(now)),
                event(Some("seen"), crate::ingest::new_event_id(now)),
                event(None, "not-a-uuid".into()),
            ],
            vec![event(None, crate::ingest::new_event_id(now))],
            vec![
                event(Some("a"), crate::ingest::new_event_id(now)),
                event(Some("b"), crate::ingest::new_event_id(now)),
            ],
        ];
        let keys = vec![None; requests.len()];
        let shape = shapes(&requests, &keys);
        assert!(
            shape[1].1.is_none(),
            "a request without client ids has no duplicates"
        );
        let committed = store.append(requests, now, 60_000).unwrap();
        let found = verify(&store, known, &shape).expect("the rows are there");
        assert_eq!(counts(&found), counts(&committed));
        assert_eq!(
            counts(&found),
            vec![(vec![2, 3], 1), (vec![4], 0), (vec![5], 1)]
        );
        // Nothing past what was known: the commit is known not to have happened.
        let last = store.last_seq().unwrap();
        assert_eq!(verify(&store, last, &shape).err(), Some(true));
    }
}
