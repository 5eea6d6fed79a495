//! The journal actor: durable, group-committed appends to the inbox.
//!
//! HTTP handlers and sources hand validated batches to the journal's [`Intake`]. While one
//! commit (one fsync: of the append log for a small commit, of the data file for a large one;
//! see `store::wal`) runs on a blocking thread, newly arriving batches wait; when it ends they
//! are all committed together in the next transaction, on the same thread. Each request is
//! answered only after its commit, and the stored events are then forwarded to the router in
//! sequence order.
//!
//! A request costs no message to the actor and a commit no hand-over between threads: under
//! single-event ingest, where the CPU is the limit, those hops were a measurable share of it.
//! The actor owns the intake, answers `Flush`, and stops (stopping alertd) if the commit loop
//! panics.
//!
//! The wait is what makes commits large. A build that started the next commit during the
//! previous one's fsync made twice as many commits of half the size, and each commit's fixed
//! CPU (≈ 110–150 µs) then cost single-event ingest 4–23 % of its throughput on 2 cores
//! (README, "single-event ingest, fewer hand-offs, where its CPU goes"). Under load the loop
//! waits a little longer still, for the clients it just answered (bounded, and backing off when
//! they do not come back; see [`pace`]).
//!
//! Whatever reached the inbox is routed, and answers are truthful: when a commit reports an
//! error, the journal checks the store; if the rows are there after all (the error came after
//! the data was durable), the requests are answered as accepted and the rows routed. Before
//! routing a commit, any gap since the last routed sequence (rows committed by a commit whose
//! outcome could not be checked) is read back from the inbox and routed first.

use crate::clock::now_ms;
use crate::event::{id_print, kind_index, KIND_NAMES};
use crate::metrics;
use crate::router::RouterMsg;
use crate::store::{AppendOutcome, NewEvent, Prepared, Store};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

mod pace;

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
    /// Replies when nothing is pending or being committed.
    Flush(RpcReplyPort<()>),
    /// The intake, for callers that append without a message per request (the HTTP handlers).
    Intake(RpcReplyPort<Intake>),
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

/// Where requests wait for the next commit. Cloned into every HTTP handler; the first request
/// that finds no commit running starts the commit loop.
#[derive(Clone)]
pub struct Intake(Arc<Shared>);

struct Shared {
    queue: std::sync::Mutex<Queue>,
    /// Signalled when the pending requests reach the waiting commit loop's target.
    filled: std::sync::Condvar,
    /// The commit loop's state; held by the one loop running.
    committer: std::sync::Mutex<Committer>,
    /// Stopped when the commit loop panics.
    journal: ActorRef<JournalMsg>,
}

#[derive(Default)]
struct Queue {
    /// Requests waiting for the next commit, with their group key (`AppendKeyed`).
    pending: Vec<(Prepared, Reply)>,
    /// The commit loop is running (it stops when it finds nothing pending).
    committing: bool,
    /// While the commit loop waits (see [`pace`]): the number of pending requests that ends the
    /// wait; 0 otherwise.
    target: usize,
    flushes: Vec<RpcReplyPort<()>>,
    /// The commit loop panicked: requests are refused (their reply dropped, which the caller
    /// reports as an unknown outcome) while alertd stops.
    broken: bool,
}

struct Committer {
    args: JournalArgs,
    /// The highest sequence number handed to the router.
    routed: u64,
}

pub struct JournalState {
    intake: Intake,
}

/// The journal actor.
pub struct Journal;

pub use crate::event::kind_name;

/// What is needed to attribute rows to requests after an uncertain commit: each request's size,
/// and its events' [`id_print`]s when it may hold duplicates (client ids given).
type Shape = Vec<(usize, Option<Arc<[u128]>>)>;

fn shapes(requests: &[Prepared]) -> Shape {
    requests
        .iter()
        .map(|r| (r.len(), r.prints().cloned()))
        .collect()
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
            None => o
                .stored
                .extend(rows.by_ref().take(*len).map(|(s, e)| (s, Arc::new(e)))),
            Some(ids) => {
                for id in ids.iter() {
                    if rows.peek().is_some_and(|(_, e)| id_print(&e.id) == *id) {
                        o.stored.extend(rows.next().map(|(s, e)| (s, Arc::new(e))));
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

impl Intake {
    /// Queues a request for the next commit; `reply` is answered after it. Prepare it on the
    /// caller's thread (see [`Prepared`]): the commit thread is shared by every request.
    pub fn append(&self, request: Prepared, reply: Reply) {
        let start = {
            let mut q = self
                .0
                .queue
                .lock()
                .expect("journal queue lock is never poisoned");
            if q.broken {
                return;
            }
            q.pending.push((request, reply));
            if q.pending.len() == q.target {
                self.0.filled.notify_one();
            }
            !std::mem::replace(&mut q.committing, true)
        };
        if start {
            let shared = self.0.clone();
            tokio::task::spawn_blocking(move || commit_loop(&shared));
        }
    }

    /// Answers `reply` once nothing is pending or being committed.
    fn flush(&self, reply: RpcReplyPort<()>) {
        let mut q = self
            .0
            .queue
            .lock()
            .expect("journal queue lock is never poisoned");
        if q.committing && !q.broken {
            q.flushes.push(reply);
        } else {
            let _ = reply.send(());
        }
    }
}

/// Waits until `wait.target` requests are pending or `wait.limit` has passed; whether the target
/// was reached.
fn wait_for<'a>(
    shared: &'a Shared,
    mut q: std::sync::MutexGuard<'a, Queue>,
    wait: pace::Wait,
) -> (std::sync::MutexGuard<'a, Queue>, bool) {
    let deadline = Instant::now() + wait.limit;
    q.target = wait.target;
    while q.pending.len() < wait.target {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        q = shared
            .filled
            .wait_timeout(q, left)
            .expect("journal queue lock is never poisoned")
            .0;
    }
    q.target = 0;
    let filled = q.pending.len() >= wait.target;
    (q, filled)
}

/// Commits what is pending, then what arrived meanwhile (waiting for it under load, see
/// [`pace`]), until nothing is.
fn commit_loop(shared: &Shared) {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut committer = shared
            .committer
            .lock()
            .expect("the commit loop does not panic while holding it");
        let mut pace = pace::Pace::default();
        let mut last = pace::Last::default();
        loop {
            let batch = {
                let mut q = shared
                    .queue
                    .lock()
                    .expect("journal queue lock is never poisoned");
                if let Some(wait) = pace.plan(q.pending.len(), last) {
                    let filled;
                    (q, filled) = wait_for(shared, q, wait);
                    pace.waited(filled);
                }
                if q.pending.is_empty() {
                    q.committing = false;
                    for f in q.flushes.drain(..) {
                        let _ = f.send(());
                    }
                    return;
                }
                std::mem::take(&mut q.pending)
            };
            let started = Instant::now();
            last.answered = batch.len();
            last.events = batch.iter().map(|(request, _)| request.len()).sum();
            committer.commit(batch);
            last.took = started.elapsed();
        }
    }));
    if run.is_err() {
        tracing::error!("the journal's commit loop panicked");
        let (pending, flushes) = {
            let mut q = shared
                .queue
                .lock()
                .expect("journal queue lock is never poisoned");
            q.broken = true;
            (
                std::mem::take(&mut q.pending),
                std::mem::take(&mut q.flushes),
            )
        };
        drop(pending);
        for f in flushes {
            let _ = f.send(());
        }
        shared
            .journal
            .stop(Some("the journal's commit loop panicked".into()));
    }
}

impl Committer {
    /// One commit of these requests: stored, answered and routed.
    fn commit(&mut self, batch: Vec<(Prepared, Reply)>) {
        let mut replies = Vec::with_capacity(batch.len());
        let mut requests = Vec::with_capacity(batch.len());
        for (request, reply) in batch {
            replies.push((request.kind_counts(), reply));
            requests.push(request);
        }
        let store = &self.args.store;
        let window = self.args.config.borrow().ingest.dedup_window.as_millis() as i64;
        let started = std::time::Instant::now();
        let n: usize = requests.iter().map(Prepared::len).sum();
        let shape = shapes(&requests);
        #[cfg(test)]
        if requests
            .iter()
            .any(|r| r.events().iter().any(|e| e.id == "test: panic"))
        {
            panic!("test: the commit panics");
        }
        let result = store
            .append_prepared(requests, now_ms(), window)
            .or_else(|e| {
                verify(store, self.routed, &shape).map_err(|checked| {
                    if checked {
                        format!("the events were not stored: {e}")
                    } else {
                        format!("the store failed ({e}) and could not be checked: the events may or may not be stored; a retry with client ids is counted once")
                    }
                })
            });
        metrics::journal_commit(started.elapsed().as_secs_f64(), n);
        self.args.queued.fetch_sub(n, Ordering::AcqRel);
        let outcomes = match result {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::error!(error = %e, "journal commit failed; answering 503");
                for (_, reply) in replies {
                    let _ = reply.send(Err(e.clone()));
                }
                return;
            }
        };
        let mut routed = Vec::with_capacity(n);
        let mut by_kind = [0u64; KIND_NAMES.len()];
        for ((kinds, reply), outcome) in replies.into_iter().zip(outcomes) {
            if outcome.duplicates == 0 {
                // Tallied when the request was prepared; every event was stored.
                for (sum, n) in by_kind.iter_mut().zip(kinds) {
                    *sum += n;
                }
            } else {
                for (_, e) in &outcome.stored {
                    by_kind[kind_index(e)] += 1;
                }
            }
            let _ = reply.send(Ok(Appended {
                accepted: outcome.stored.len(),
                duplicates: outcome.duplicates,
            }));
            routed.extend(outcome.stored);
        }
        for (kind, n) in KIND_NAMES.iter().zip(by_kind) {
            if n > 0 {
                metrics::events(kind, "accepted", n);
            }
        }
        // Rows of an earlier commit whose outcome was unknown are routed first.
        if let Some(first) = routed.first().map(|r| r.0) {
            if first > self.routed + 1 {
                self.route_gap(first - 1);
            }
        }
        if let Some((last, _)) = routed.last() {
            self.routed = *last;
            // The router stops only with alertd; rows it did not take are replayed at start.
            let _ = self.args.router.cast(RouterMsg::Route(routed));
        }
    }

    /// Routes inbox rows `(routed, through]` that were committed without being routed.
    fn route_gap(&mut self, through: u64) {
        let limit = (through - self.routed) as usize;
        match self.args.store.read_inbox(self.routed, limit) {
            Ok(rows) => {
                tracing::warn!(
                    rows = rows.len(),
                    "routing rows of an earlier commit whose outcome was unknown"
                );
                let rows: crate::router::Routed =
                    rows.into_iter().map(|(s, e)| (s, Arc::new(e))).collect();
                let _ = self.args.router.cast(RouterMsg::Route(rows));
            }
            // They are replayed at the next start.
            Err(_) => tracing::error!(
                "cannot read back unrouted inbox rows; they are counted after a restart"
            ),
        }
    }
}

impl Actor for Journal {
    type Msg = JournalMsg;
    type State = JournalState;
    type Arguments = JournalArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: JournalArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let intake = Intake(Arc::new(Shared {
            queue: std::sync::Mutex::new(Queue::default()),
            filled: std::sync::Condvar::new(),
            committer: std::sync::Mutex::new(Committer {
                routed: args.last_seq,
                args,
            }),
            journal: myself,
        }));
        Ok(JournalState { intake })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            JournalMsg::Append(events, reply) => {
                state.intake.append(Prepared::new(None, events), reply)
            }
            JournalMsg::AppendKeyed(key, events, reply) => {
                state.intake.append(Prepared::new(Some(key), events), reply)
            }
            JournalMsg::Flush(reply) => state.intake.flush(reply),
            JournalMsg::Intake(reply) => {
                let _ = reply.send(state.intake.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventBody};
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
        let prepared: Vec<Prepared> = requests
            .iter()
            .map(|events| Prepared::new(None, events.clone()))
            .collect();
        let shape = shapes(&prepared);
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

    /// Records what the journal routes.
    struct Recorder(Arc<std::sync::Mutex<Vec<u64>>>);

    impl Actor for Recorder {
        type Msg = RouterMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _myself: ActorRef<RouterMsg>,
            _args: (),
        ) -> Result<(), ActorProcessingErr> {
            Ok(())
        }

        async fn handle(
            &self,
            _myself: ActorRef<RouterMsg>,
            msg: RouterMsg,
            _state: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            if let RouterMsg::Route(rows) = msg {
                self.0.lock().unwrap().extend(rows.iter().map(|r| r.0));
            }
            Ok(())
        }
    }

    /// A journal on `store` whose router records what it is sent: the journal, its handle, its
    /// intake, its queue counter and the sequence numbers routed.
    async fn start(
        store: &Store,
    ) -> (
        ActorRef<JournalMsg>,
        ractor::concurrency::JoinHandle<()>,
        Intake,
        Arc<AtomicUsize>,
        Arc<std::sync::Mutex<Vec<u64>>>,
    ) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (router, _r) = Actor::spawn(None, Recorder(seen.clone()), ())
            .await
            .unwrap();
        let config =
            crate::config::Config::from_toml(std::path::Path::new("t.toml"), "", false).unwrap();
        let (_tx, live) = tokio::sync::watch::channel(Arc::new(config));
        let queued = Arc::new(AtomicUsize::new(0));
        let (journal, handle) = Actor::spawn(
            None,
            Journal,
            JournalArgs {
                store: store.clone(),
                router,
                config: live,
                queued: queued.clone(),
                last_seq: 0,
            },
        )
        .await
        .unwrap();
        let intake = ractor::call!(journal, JournalMsg::Intake).unwrap();
        (journal, handle, intake, queued, seen)
    }

    /// The sequence numbers routed, once `n` are (or after 10 s, whatever was).
    async fn routed(seen: &std::sync::Mutex<Vec<u64>>, n: usize) -> Vec<u64> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while seen.lock().unwrap().len() < n && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        seen.lock().unwrap().clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_are_each_answered_and_routed_once_in_sequence_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("alertd.redb")).unwrap();
        let (journal, _j, intake, queued, seen) = start(&store).await;
        let now = crate::clock::now_ms();
        // 300 requests of 1–3 events from concurrent tasks, every tenth one also through the
        // actor's message (as the sources send them), some repeating a client id.
        let mut tasks = Vec::new();
        for i in 0..300usize {
            let intake = intake.clone();
            let journal = journal.clone();
            let queued = queued.clone();
            tasks.push(tokio::spawn(async move {
                let events: Vec<NewEvent> = (0..1 + i % 3)
                    .map(|k| {
                        let id = (k == 0 && i % 7 == 0).then(|| format!("c{}", i % 14));
                        event(id.as_deref(), crate::ingest::new_event_id(now))
                    })
                    .collect();
                queued.fetch_add(events.len(), Ordering::AcqRel);
                let (tx, rx) = ractor::concurrency::oneshot();
                if i % 10 == 0 {
                    journal.cast(JournalMsg::Append(events, tx.into())).unwrap();
                } else {
                    intake.append(Prepared::new(None, events), tx.into());
                }
                rx.await.unwrap().unwrap()
            }));
        }
        let mut accepted = 0;
        let mut duplicates = 0;
        for t in tasks {
            let a = t.await.unwrap();
            accepted += a.accepted;
            duplicates += a.duplicates;
        }
        assert_eq!(
            accepted + duplicates,
            (0..300).map(|i| 1 + i % 3).sum::<usize>()
        );
        // Ids c0, c7 (i = 0, 7, 14, …): 300 / 7 → 43 requests with an id, 2 distinct ids.
        assert_eq!(duplicates, 41);
        ractor::call!(journal, JournalMsg::Flush).unwrap();
        assert_eq!(queued.load(Ordering::Acquire), 0);
        assert_eq!(
            routed(&seen, accepted).await,
            (1..=accepted as u64).collect::<Vec<_>>()
        );
        assert_eq!(store.last_seq().unwrap(), accepted as u64);
    }

    /// Clients that send their next request as soon as they are answered are what the commit
    /// loop waits for (see [`pace`]): waits that fill, and at the end waits that run out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clients_that_come_back_after_each_answer_are_all_answered_and_routed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("alertd.redb")).unwrap();
        let (journal, _stopped, intake, queued, seen) = start(&store).await;
        let now = crate::clock::now_ms();
        let (clients, each) = (16, 40);
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let intake = intake.clone();
            let queued = queued.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..each {
                    queued.fetch_add(1, Ordering::AcqRel);
                    let (tx, rx) = ractor::concurrency::oneshot();
                    let events = vec![event(None, crate::ingest::new_event_id(now))];
                    intake.append(Prepared::new(None, events), tx.into());
                    let answer = rx.await.unwrap().unwrap();
                    assert_eq!(answer.accepted, 1);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        ractor::call!(journal, JournalMsg::Flush).unwrap();
        assert_eq!(queued.load(Ordering::Acquire), 0);
        let total = (clients * each) as u64;
        assert_eq!(store.last_seq().unwrap(), total);
        assert_eq!(
            routed(&seen, total as usize).await,
            (1..=total).collect::<Vec<_>>()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_commit_stops_the_journal_and_leaves_no_request_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("alertd.redb")).unwrap();
        let (_journal, stopped, intake, _queued, _seen) = start(&store).await;
        let (tx, rx) = ractor::concurrency::oneshot();
        intake.append(
            Prepared::new(None, vec![event(None, "test: panic".into())]),
            tx.into(),
        );
        assert!(
            rx.await.is_err(),
            "the panicked commit's request is not answered as done"
        );
        tokio::time::timeout(std::time::Duration::from_secs(10), stopped)
            .await
            .expect("the journal stops")
            .unwrap();
        // Later requests are refused at once instead of waiting for a loop that is gone.
        let (tx, rx) = ractor::concurrency::oneshot();
        intake.append(
            Prepared::new(None, vec![event(None, "after".into())]),
            tx.into(),
        );
        let later = tokio::time::timeout(std::time::Duration::from_secs(10), rx)
            .await
            .expect("not left waiting");
        assert!(later.is_err());
        assert_eq!(store.last_seq().unwrap(), 0);
    }
}
