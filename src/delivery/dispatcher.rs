//! The delivery dispatcher actor: a due-time queue over the outbox, supervising the sender pool.
//!
//! At most `delivery.workers` attempts run at once (one per sender actor, see [`super::pool`]),
//! and at most `per_endpoint_in_flight` of them to one endpoint, so a receiver that hangs holds
//! only its own share while the rest keep flowing. Each attempt is sent to the alert's current
//! destination ([`crate::destination::current`]). Results are committed to the store in groups:
//! while one commit runs, the next results accumulate.

use super::backoff;
use super::outcome::Outcome;
use super::pool::{SendWorker, SendWorkerMsg};
use super::sender::{Attempt, Sender};
use super::Delivery;
use crate::clock::now_ms;
use crate::config::{DeliveryConfig, DestinationKind, LiveConfig};
use crate::metrics;
use crate::store::{DeliveryResult, Store};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Messages the dispatcher understands.
pub enum DispatcherMsg {
    /// New deliveries, already committed to the outbox.
    Enqueue(Vec<Delivery>),
    /// A timer fired: look for due deliveries.
    Wake,
    /// A sender finished an attempt.
    Done {
        worker: ActorId,
        delivery: Box<Delivery>,
        attempt: Attempt,
    },
    /// A group of results reached the store, or failed to and is handed back.
    Committed(Result<(), (String, Vec<DeliveryResult>)>),
    /// Replies once no attempt is in flight and every result is committed, or at the deadline.
    Drain(RpcReplyPort<()>),
    /// Pending count, for metrics and readiness.
    Pending(RpcReplyPort<usize>),
    /// The running config changed: re-read `[delivery]`.
    Reconfigure,
}

/// Start-up arguments.
pub struct DispatcherArgs {
    pub store: Store,
    pub config: LiveConfig,
}

pub struct DispatcherState {
    store: Store,
    live: LiveConfig,
    config: DeliveryConfig,
    sender: Sender,
    /// Senders waiting for work.
    idle: Vec<ActorRef<SendWorkerMsg>>,
    /// Senders in an attempt, with the outbox key and endpoint of their delivery.
    busy: HashMap<ActorId, (ActorRef<SendWorkerMsg>, u128, String)>,
    /// Due-time queues per endpoint: choosing the next attempt costs one look per endpoint,
    /// however many deliveries wait behind a busy one.
    queues: HashMap<String, BTreeSet<(i64, u128)>>,
    rows: HashMap<u128, Delivery>,
    in_flight: usize,
    per_endpoint: HashMap<String, usize>,
    /// When the last attempt to a paced endpoint (Slack) started.
    last_start: HashMap<String, i64>,
    results: Vec<DeliveryResult>,
    committing: bool,
    wake_at: Option<i64>,
    /// The next result commit waits until this time: a second after a failed one, and
    /// [`RESULT_COMMIT_GAP`] after a successful one.
    next_commit_at: i64,
    /// The last result commit failed (a drain waits for the retry time too).
    commit_failed: bool,
    drains: Vec<RpcReplyPort<()>>,
}

/// The dispatcher actor.
pub struct Dispatcher;

impl DispatcherState {
    fn push(&mut self, d: Delivery) {
        let key = d.key();
        let endpoint = d.endpoint();
        let due = d.next_attempt_ms;
        if let Some(old) = self.rows.insert(key, d) {
            if let Some(q) = self.queues.get_mut(&old.endpoint()) {
                q.remove(&(old.next_attempt_ms, key));
            }
        }
        self.queues.entry(endpoint).or_default().insert((due, key));
    }

    fn pending(&self) -> usize {
        self.rows.len()
    }

    fn pool_size(&self) -> usize {
        self.idle.len() + self.busy.len()
    }

    /// Grows the pool to `delivery.workers`; extra senders retire when they next become idle.
    async fn fill_pool(
        &mut self,
        myself: &ActorRef<DispatcherMsg>,
    ) -> Result<(), ActorProcessingErr> {
        while self.pool_size() < self.config.workers {
            let (w, _) = Actor::spawn_linked(None, SendWorker, (), myself.get_cell()).await?;
            self.idle.push(w);
        }
        while self.pool_size() > self.config.workers {
            let Some(w) = self.idle.pop() else { break };
            w.unlink(myself.get_cell());
            w.stop(None);
        }
        metrics::set_actors("sender", self.pool_size());
        Ok(())
    }

    /// An attempt is over (answered or its sender died): free the sender's slot.
    fn release(&mut self, worker: &ActorId) -> Option<(ActorRef<SendWorkerMsg>, u128, String)> {
        let (w, key, endpoint) = self.busy.remove(worker)?;
        self.in_flight -= 1;
        if let Some(n) = self.per_endpoint.get_mut(&endpoint) {
            *n -= 1;
            if *n == 0 {
                self.per_endpoint.remove(&endpoint);
            }
        }
        Some((w, key, endpoint))
    }
}

impl Actor for Dispatcher {
    type Msg = DispatcherMsg;
    type State = DispatcherState;
    type Arguments = DispatcherArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: DispatcherArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let config = args.config.borrow().delivery.clone();
        let sender = Sender::new(&config)?;
        let store = args.store.clone();
        let rows = tokio::task::spawn_blocking(move || store.load_outbox()).await??;
        let mut state = DispatcherState {
            store: args.store,
            live: args.config,
            config,
            sender,
            idle: Vec::new(),
            busy: HashMap::new(),
            queues: HashMap::new(),
            rows: HashMap::new(),
            in_flight: 0,
            per_endpoint: HashMap::new(),
            last_start: HashMap::new(),
            results: Vec::new(),
            committing: false,
            wake_at: None,
            next_commit_at: 0,
            commit_failed: false,
            drains: Vec::new(),
        };
        if !rows.is_empty() {
            tracing::info!(
                pending = rows.len(),
                "resuming pending deliveries from the outbox"
            );
        }
        // Due times come from an earlier run's clock: if the clock was stepped back since, none
        // waits longer than a full backoff.
        let latest = now_ms() + state.config.max_backoff.as_millis() as i64;
        for mut d in rows {
            d.next_attempt_ms = d.next_attempt_ms.min(latest);
            state.push(d);
        }
        metrics::set_outbox_depth(state.pending());
        state.fill_pool(&myself).await?;
        let _ = myself.cast(DispatcherMsg::Wake);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DispatcherMsg::Enqueue(ds) => {
                for d in ds {
                    state.push(d);
                }
            }
            DispatcherMsg::Wake => {
                state.wake_at = None;
            }
            DispatcherMsg::Done {
                worker,
                delivery,
                attempt,
            } => {
                if let Some((w, key, _)) = state.release(&worker) {
                    state.idle.push(w);
                    // The row as decided (the attempt may have used a newer destination).
                    let d = state.rows.get(&key).cloned().unwrap_or(*delivery);
                    finish(state, d, attempt.outcome, attempt.status, attempt.error);
                    state.fill_pool(&myself).await?;
                }
                start_commit(&myself, state);
            }
            DispatcherMsg::Committed(r) => {
                state.committing = false;
                state.commit_failed = r.is_err();
                let wait = match r {
                    Ok(()) => RESULT_COMMIT_GAP,
                    Err((e, batch)) => {
                        tracing::error!(error = %e, "could not record delivery results; will retry");
                        state.results.splice(0..0, batch);
                        Duration::from_secs(1)
                    }
                };
                state.next_commit_at = now_ms() + wait.as_millis() as i64;
                myself.send_after(wait, || DispatcherMsg::Wake);
            }
            DispatcherMsg::Drain(reply) => state.drains.push(reply),
            DispatcherMsg::Pending(reply) => {
                let _ = reply.send(state.pending());
            }
            DispatcherMsg::Reconfigure => {
                let cfg = state.live.borrow().delivery.clone();
                if cfg != state.config {
                    state.sender = Sender::new(&cfg)?;
                    state.config = cfg;
                    state.fill_pool(&myself).await?;
                }
            }
        }
        start_commit(&myself, state);
        pump(&myself, state);
        metrics::set_outbox_depth(state.pending());
        if state.in_flight == 0 && state.results.is_empty() && !state.committing {
            for r in state.drains.drain(..) {
                let _ = r.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let Some((cell, reason)) = crate::supervisor::death(event) else {
            return Ok(());
        };
        let id = cell.get_id();
        state.idle.retain(|w| w.get_id() != id);
        if let Some((_, key, _)) = state.release(&id) {
            // The delivery never left the outbox: reschedule it like a failed attempt.
            if let Some(d) = state.rows.get(&key).cloned() {
                tracing::error!(delivery = %d.id, reason = %reason, "sender crashed during an attempt; the delivery will be retried");
                let error = format!("sender crashed: {reason}");
                finish(state, d, Outcome::Retry { after: None }, None, Some(error));
            }
        }
        state.fill_pool(&myself).await?;
        start_commit(&myself, state);
        pump(&myself, state);
        Ok(())
    }
}

/// Applies an attempt's outcome to the in-memory queue and queues the store update.
fn finish(
    state: &mut DispatcherState,
    mut d: Delivery,
    outcome: Outcome,
    status: Option<u16>,
    error: Option<String>,
) {
    let now = now_ms();
    d.attempts += 1;
    d.last_status = status;
    d.last_error = error;
    let key = d.key();
    let cfg = &state.config;
    let dest = d.destination.as_str();
    match outcome {
        Outcome::Delivered => {
            d.finished_ms = Some(now);
            metrics::delivery_attempt("delivered", dest);
            metrics::delivery_latency((now - d.created_ms).max(0) as f64 / 1000.0);
            tracing::info!(delivery = %d.id, alert = %d.alert_id, attempts = d.attempts, "delivered");
            state.rows.remove(&key);
            state.results.push(DeliveryResult::Delivered(d));
        }
        Outcome::Retry { after } if d.attempts <= d.max_retries => {
            let jitter: f64 = rand::random();
            let wait = match after {
                Some(a) => a.min(cfg.max_backoff),
                None => backoff::delay(d.attempts, cfg.initial_backoff, cfg.max_backoff, jitter),
            };
            d.next_attempt_ms = now + wait.as_millis() as i64;
            metrics::delivery_attempt("retry", dest);
            tracing::warn!(delivery = %d.id, alert = %d.alert_id, attempts = d.attempts,
                error = d.last_error.as_deref().unwrap_or(""), retry_in_ms = wait.as_millis() as u64, "delivery failed; will retry");
            state.results.push(DeliveryResult::Retry(d.clone()));
            state.push(d);
        }
        Outcome::Retry { .. } | Outcome::Permanent => {
            d.finished_ms = Some(now);
            metrics::delivery_attempt("dead", dest);
            tracing::error!(delivery = %d.id, alert = %d.alert_id, attempts = d.attempts,
                error = d.last_error.as_deref().unwrap_or(""), "delivery moved to dead letters");
            state.rows.remove(&key);
            state.results.push(DeliveryResult::Dead(d));
        }
    }
}

/// The least time between two durable result commits. Each durable commit costs redb about
/// 40 KiB of page writes whatever it holds; one per few results (a fast receiver answers
/// before the previous commit's fsync ends) wrote 20 times the bytes of the events behind them
/// on the per-event bench. Results wait at most this long; a crash meanwhile re-sends those
/// deliveries with the same id (at-least-once, DESIGN §9). A drain commits at once.
const RESULT_COMMIT_GAP: Duration = Duration::from_millis(100);

fn start_commit(myself: &ActorRef<DispatcherMsg>, state: &mut DispatcherState) {
    let waiting =
        now_ms() < state.next_commit_at && (state.drains.is_empty() || state.commit_failed);
    if state.committing || state.results.is_empty() || waiting {
        return;
    }
    state.committing = true;
    let batch = std::mem::take(&mut state.results);
    let store = state.store.clone();
    let log_size = state.config.log_size;
    let me = myself.clone();
    tokio::task::spawn_blocking(move || {
        let r = store
            .record_results(&batch, log_size)
            .map_err(|e| (e.to_string(), batch));
        let _ = me.cast(DispatcherMsg::Committed(r));
    });
}

/// Minimum time between attempts to one endpoint: Slack accepts about one message per second
/// per incoming webhook and answers 429 beyond that.
fn pacing(destination: DestinationKind) -> Option<i64> {
    (destination == DestinationKind::Slack).then_some(1000)
}

/// Starts every due attempt the limits allow and arms the timer for the next due one.
fn pump(myself: &ActorRef<DispatcherMsg>, state: &mut DispatcherState) {
    let now = now_ms();
    let mut next_due: Option<i64> = None;
    while !state.idle.is_empty() {
        // The endpoint with capacity whose first delivery is due earliest.
        let mut best: Option<(i64, &String)> = None;
        for (endpoint, q) in &state.queues {
            let Some(&(due, _)) = q.first() else { continue };
            if state.per_endpoint.get(endpoint).copied().unwrap_or(0)
                >= state.config.per_endpoint_in_flight
            {
                continue;
            }
            let mut ready_at = due;
            if let Some(gap) = pacing(state.rows[&q.first().expect("non-empty").1].destination) {
                if let Some(&last) = state.last_start.get(endpoint) {
                    ready_at = ready_at.max(last + gap);
                }
            }
            if ready_at > now {
                next_due = Some(next_due.map_or(ready_at, |n| n.min(ready_at)));
                continue;
            }
            if best.is_none_or(|(b, _)| due < b) {
                best = Some((due, endpoint));
            }
        }
        let Some((_, endpoint)) = best else { break };
        let endpoint = endpoint.clone();
        let q = state
            .queues
            .get_mut(&endpoint)
            .expect("chosen endpoint has a queue");
        let (_, key) = q.pop_first().expect("chosen queue is non-empty");
        if q.is_empty() {
            state.queues.remove(&endpoint);
        }
        let d = state.rows.get(&key).expect("queued row exists").clone();
        if pacing(d.destination).is_some() {
            state.last_start.insert(endpoint.clone(), now);
        }
        *state.per_endpoint.entry(endpoint.clone()).or_insert(0) += 1;
        state.in_flight += 1;
        let worker = state.idle.pop().expect("loop runs while a sender is idle");
        let current = crate::destination::current(&d, &state.live.borrow());
        let msg = SendWorkerMsg::Attempt {
            delivery: Box::new(current),
            client: state.sender.clone(),
            reply: myself.clone(),
        };
        state
            .busy
            .insert(worker.get_id(), (worker.clone(), key, endpoint));
        if worker.cast(msg).is_err() {
            // Dead already: its supervision event reschedules the delivery.
            continue;
        }
    }
    if let Some(due) = next_due {
        if state.wake_at.is_none_or(|w| due < w) {
            state.wake_at = Some(due);
            let wait = Duration::from_millis((due - now).max(1) as u64);
            myself.send_after(wait, || DispatcherMsg::Wake);
        }
    }
}
