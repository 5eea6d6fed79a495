//! The scheduler actor: every `engine.tick` it has every alert evaluate, and commits what they
//! decided in one transaction before anything is sent.
//!
//! One tick: ask the router for its watermark (every event up to it is in the alerts' mailboxes),
//! cast `Tick` to every alert actor at once — they evaluate in parallel and answer into one
//! channel the scheduler owns — gather the answers until all are in or [`tick_wait`] passes, then
//! commit the checkpoints and the new outbox rows in one durable transaction, and only then hand
//! the deliveries to the dispatcher. So a notification is in the outbox before its first attempt.
//!
//! What is never lost:
//! - An answer that misses the deadline stays in the channel and is committed with the next tick
//!   (the alert already moved on from it); until then that alert's durable point does not move,
//!   so the inbox is not pruned past it.
//! - A commit that fails keeps its outputs and commits them with the next tick (the outbox rows
//!   are keyed by notification id, so rewriting one that did reach the disk is harmless).
//! - Answers of an incarnation that died, or of an alert removed by a reload, are discarded under
//!   the registry lock (see [`crate::alert::supervisor`]): the new incarnation re-derives them.
//!
//! Pruning runs after the commit, in small unsynced steps (`Store::prune_step`), up to the
//! lowest durable point of the running alerts, so a tick never holds the single redb writer for
//! long while the journal waits.
//!
//! Ticks and reloads: a reload reaches alerts as messages in their own mailboxes (ordered with
//! ticks there) and removes alerts under the registry lock (ordered with commits there); the
//! scheduler never waits for the alert supervisor, so the two cannot deadlock.

use crate::alert::actor::{AlertMsg, TickOutput, TickReply, TickRequest};
use crate::alert::supervisor::SharedRegistry;
use crate::clock::now_ms;
use crate::config::LiveConfig;
use crate::delivery::dispatcher::DispatcherMsg;
use crate::destination::{self, Context};
use crate::metrics;
use crate::router::RouterMsg;
use crate::silence;
use crate::store::{Store, TickCommit};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a tick waits for the alerts' answers before it commits those it has: two ticks,
/// within [1 s, 10 s]. Late answers are committed with the next tick, so waiting longer only
/// delays everyone else's notifications.
pub fn tick_wait(tick: Duration) -> Duration {
    (tick * 2).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// Inbox rows (and expired client ids) deleted per housekeeping step.
const PRUNE_STEP_ROWS: usize = 20_000;

/// How alerts ask for an early evaluation (DESIGN §1, early firing): an alert whose threshold
/// trigger crosses while applying events puts its id here and wakes the scheduler. Requests
/// are coalesced: one early round takes every id queued so far, and at most one runs at a time
/// (it runs in the scheduler's mailbox, between ticks).
pub struct EarlyFire {
    tx: mpsc::UnboundedSender<Arc<str>>,
    rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Arc<str>>>>,
    scheduler: std::sync::OnceLock<ActorRef<SchedulerMsg>>,
}

impl Default for EarlyFire {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        EarlyFire {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            scheduler: std::sync::OnceLock::new(),
        }
    }
}

impl EarlyFire {
    /// Asks for an early evaluation of `alert`.
    pub fn request(&self, alert: &Arc<str>) {
        let _ = self.tx.send(alert.clone());
        if let Some(s) = self.scheduler.get() {
            let _ = s.cast(SchedulerMsg::Early);
        }
    }
}

/// Messages the scheduler understands.
pub enum SchedulerMsg {
    /// The periodic tick.
    Tick,
    /// Alerts asked for an early evaluation (see [`EarlyFire`]).
    Early,
    /// A last tick at shutdown; replies when it is committed. No tick runs after it.
    Final(RpcReplyPort<()>),
    /// The housekeeping task finished.
    Pruned,
}

/// Start-up arguments.
pub struct SchedulerArgs {
    /// The channel every alert answers ticks into (the alert supervisor reports deaths there).
    pub reply_to: mpsc::UnboundedSender<TickReply>,
    pub replies: mpsc::UnboundedReceiver<TickReply>,
    pub store: Store,
    pub router: ActorRef<RouterMsg>,
    pub dispatcher: ActorRef<DispatcherMsg>,
    pub registry: SharedRegistry,
    pub config: LiveConfig,
    pub early: Arc<EarlyFire>,
}

pub struct SchedulerState {
    store: Store,
    router: ActorRef<RouterMsg>,
    dispatcher: ActorRef<DispatcherMsg>,
    registry: SharedRegistry,
    config: LiveConfig,
    tick_no: u64,
    /// When the current period's tick was due: ticks run on a fixed period, not period plus
    /// tick duration.
    next_due: Instant,
    early: mpsc::UnboundedReceiver<Arc<str>>,
    tx: mpsc::UnboundedSender<TickReply>,
    rx: mpsc::UnboundedReceiver<TickReply>,
    /// Outputs whose commit failed, committed with the next tick.
    uncommitted: Vec<(u64, TickOutput)>,
    /// Firing triggers per alert, as of each alert's last answer.
    firing: HashMap<String, usize>,
    pruning: bool,
    stopping: bool,
    started_ms: i64,
    last_housekeeping_ms: i64,
}

/// The scheduler actor.
pub struct Scheduler;

/// The outcome of a tick, for logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct TickReport {
    pub notifications: usize,
    pub late: usize,
    pub committed: bool,
}

impl SchedulerState {
    /// Casts the tick to every running alert and gathers the answers.
    async fn gather(
        &mut self,
        now: i64,
        through: u64,
        silences: Arc<silence::SilenceSet>,
        only: Option<&std::collections::HashSet<Arc<str>>>,
    ) -> (Vec<TickReply>, usize) {
        self.tick_no += 1;
        let actors: Vec<(ActorRef<AlertMsg>, String, u64)> = {
            let reg = self.registry.lock().await;
            reg.members
                .iter()
                .filter(|(id, _)| only.is_none_or(|o| o.contains(id.as_str())))
                .filter_map(|(id, m)| m.actor.clone().map(|a| (a, id.clone(), m.generation)))
                .collect()
        };
        let req = TickRequest {
            tick_no: self.tick_no,
            now_ms: now,
            through,
            silences,
            reply: self.tx.clone(),
        };
        let mut waiting: std::collections::HashSet<(String, u64)> = actors
            .into_iter()
            .filter(|(a, _, _)| a.cast(AlertMsg::Tick(req.clone())).is_ok())
            .map(|(_, id, g)| (id, g))
            .collect();
        drop(req);
        let mut replies = Vec::with_capacity(waiting.len());
        let wait = tick_wait(self.config.borrow().engine.tick);
        let deadline = tokio::time::Instant::now() + wait;
        while !waiting.is_empty() {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => {
                    if r.tick_no == self.tick_no || r.died {
                        waiting.remove(&(r.alert_id.to_string(), r.generation));
                    }
                    replies.push(r);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let missing = waiting.len();
        // Answers that arrived after an earlier deadline, or from alerts that died meanwhile.
        while let Ok(r) = self.rx.try_recv() {
            replies.push(r);
        }
        (replies, missing)
    }

    /// An early round: only the alerts that asked, evaluated on what they have applied (no
    /// watermark), committed like a tick. Nothing else (pruning, gauges) happens here.
    async fn early_round(&mut self, myself: &ActorRef<SchedulerMsg>) {
        let mut ids = std::collections::HashSet::new();
        while let Ok(id) = self.early.try_recv() {
            ids.insert(id);
        }
        if ids.is_empty() || !self.config.borrow().engine.early_fire {
            return;
        }
        let now = now_ms();
        let silences = self.store.silences();
        let (replies, _) = self.gather(now, 0, silences, Some(&ids)).await;
        self.commit(myself, replies, now, None).await;
    }

    async fn tick(&mut self, myself: &ActorRef<SchedulerMsg>) -> TickReport {
        crate::testhooks::hold_tick().await;
        let started = Instant::now();
        let now = now_ms();
        let through = match self
            .router
            .call(RouterMsg::Watermark, Some(Duration::from_secs(10)))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(w)) => w,
            other => {
                tracing::error!(result = ?other.map(|_| ()), "router did not answer; tick skipped");
                return TickReport::default();
            }
        };
        let watermarked = started.elapsed();
        // Silences (DESIGN §12): one snapshot for the whole tick.
        let silences = self.store.silences();
        let (replies, missing) = self.gather(now, through, silences.clone(), None).await;
        let gathered = started.elapsed();
        let answers = replies.len();
        if missing > 0 {
            tracing::warn!(
                alerts = missing,
                "alerts did not answer the tick in time; their answers are committed later"
            );
        }
        let mut report = self.commit(myself, replies, now, Some(through)).await;
        report.late = missing;
        silence::engine::gauge(&silences, now);
        metrics::set_alerts_firing(self.firing.values().sum());
        let took = started.elapsed();
        metrics::tick_seconds(took.as_secs_f64());
        // Where a slow tick's time went: waiting for the router to reach the tick (events queued
        // before it), the alerts' answers (their mailboxes), or the store.
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
        tracing::debug!(
            ms = ms(took),
            router_ms = ms(watermarked),
            gather_ms = ms(gathered - watermarked),
            commit_ms = ms(took - gathered),
            answers,
            notifications = report.notifications,
            "tick"
        );
        report
    }

    /// Filters the answers under the fence, commits them in one transaction, hands the new
    /// deliveries over; after a periodic tick (`through` given) also starts pruning.
    async fn commit(
        &mut self,
        myself: &ActorRef<SchedulerMsg>,
        replies: Vec<TickReply>,
        now: i64,
        through: Option<u64>,
    ) -> TickReport {
        let mut report = TickReport::default();
        let config = self.config.borrow().clone();
        let ctx = Context::for_host(config.delivery.max_retries);
        // The fence: no restart or removal between filtering and committing.
        let mut registry = self.registry.clone().lock_owned().await;
        let mut outputs = std::mem::take(&mut self.uncommitted);
        outputs.extend(
            replies
                .into_iter()
                .filter_map(|r| r.output.map(|o| (r.generation, o))),
        );
        outputs.retain(|(g, o)| {
            registry
                .members
                .get(&o.spec.id)
                .is_some_and(|m| m.generation == *g)
        });
        let mut checkpoints: HashMap<&str, &Vec<u8>> = HashMap::new();
        // Bucket items (see crate::store::items): each event once, however many alerts list it;
        // the floor of each checkpoint written, the last one of an alert winning like its
        // checkpoint.
        let mut items: std::collections::BTreeMap<u64, &Arc<crate::event::Event>> =
            std::collections::BTreeMap::new();
        let mut floors: HashMap<&str, Option<u64>> = HashMap::new();
        let mut commit = TickCommit::default();
        self.firing
            .retain(|id, _| registry.members.contains_key(id));
        for (_, o) in &outputs {
            self.firing.insert(o.spec.id.clone(), o.firing);
            if let Some(cp) = &o.checkpoint {
                checkpoints.insert(&o.spec.id, cp);
                floors.insert(&o.spec.id, o.item_floor);
            }
            items.extend(o.items.iter().map(|(seq, e)| (*seq, e)));
            for n in &o.notifications {
                tracing::info!(alert = %n.alert_id, delivery = %n.id, event_type = %n.event_type,
                    state = n.state.as_str(), events = n.event_count, "notification decided");
                metrics::notification(&n.alert_id, n.state.as_str());
                commit
                    .deliveries
                    .push(destination::prepare(n, &o.spec, &ctx));
            }
            silence::engine::record(&o.spec, &o.suppressed, &ctx, &config, &mut commit);
        }
        commit.checkpoints = checkpoints
            .into_iter()
            .map(|(id, cp)| (id.to_string(), cp.clone()))
            .collect();
        commit.items = items.into_iter().map(|(s, e)| (s, e.clone())).collect();
        commit.item_floors = floors
            .into_iter()
            .map(|(id, f)| (id.to_string(), f))
            .collect();
        // A periodic tick also deletes the inbox rows every alert has applied once this commit
        // is durable, in the same transaction: rows appended since the last tick are then never
        // written to the data file at all (the append log made them durable; see
        // crate::store::wal).
        if through.is_some() {
            let mut applied: HashMap<&str, u64> = HashMap::new();
            for (_, o) in &outputs {
                let a = applied.entry(o.spec.id.as_str()).or_default();
                *a = (*a).max(o.applied_seq);
            }
            commit.prune_through = registry
                .members
                .iter()
                .map(|(id, m)| {
                    m.durable_seq
                        .max(applied.get(id.as_str()).copied().unwrap_or(0))
                })
                .min();
            commit.prune_rows = PRUNE_STEP_ROWS;
        }
        let committed = if commit.checkpoints.is_empty()
            && commit.deliveries.is_empty()
            && commit.suppressed.is_empty()
        {
            Ok(commit)
        } else {
            let store = self.store.clone();
            match tokio::task::spawn_blocking(move || store.commit_tick(&commit).map(|_| commit))
                .await
            {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        match committed {
            Ok(commit) => {
                report.committed = true;
                report.notifications = commit.deliveries.len();
                for (g, o) in &outputs {
                    if let Some(m) = registry.members.get_mut(&o.spec.id) {
                        if m.generation == *g {
                            m.durable_seq = m.durable_seq.max(o.applied_seq);
                        }
                    }
                }
                let prune_to = through.map(|t| registry.prune_point().unwrap_or(t));
                drop(registry);
                if !commit.deliveries.is_empty() {
                    let mut deliveries = commit.deliveries;
                    for d in &mut deliveries {
                        d.listed = Vec::new();
                    }
                    let _ = self.dispatcher.cast(DispatcherMsg::Enqueue(deliveries));
                }
                if let Some(p) = prune_to {
                    self.start_pruning(myself, p, now, &config);
                }
            }
            Err(e) => {
                drop(registry);
                tracing::error!(error = %e, outputs = outputs.len(),
                    "tick commit failed; its decisions are kept and committed with the next tick");
                self.uncommitted = outputs;
            }
        }
        report
    }

    fn start_pruning(
        &mut self,
        myself: &ActorRef<SchedulerMsg>,
        through: u64,
        now: i64,
        config: &crate::config::Config,
    ) {
        if self.pruning {
            return;
        }
        self.pruning = true;
        let store = self.store.clone();
        let expire_before = now - config.ingest.dedup_window.as_millis() as i64;
        let max_ids = config.ingest.max_remembered_ids;
        let me = myself.clone();
        // Housekeeping after pruning, at most once a minute (or once per
        // `storage.compact_when_idle` when that is shorter, so a quiet store is compacted within
        // about two of those periods): space gauges, and compaction once the store has been
        // quiet for `storage.compact_when_idle`.
        let idle = config.storage.compact_when_idle;
        let period = if idle.is_zero() {
            60_000
        } else {
            (idle.as_millis() as i64).clamp(1_000, 60_000)
        };
        let housekeeping = now - self.last_housekeeping_ms >= period;
        let compact = housekeeping
            && !idle.is_zero()
            && now - self.store.last_append_ms().max(self.started_ms) >= idle.as_millis() as i64;
        if housekeeping {
            self.last_housekeeping_ms = now;
        }
        tokio::spawn(async move {
            loop {
                let s = store.clone();
                let step = tokio::task::spawn_blocking(move || {
                    s.prune_step(through, expire_before, max_ids, PRUNE_STEP_ROWS)
                })
                .await;
                match step {
                    Ok(Ok(false)) => tokio::task::yield_now().await,
                    Ok(Ok(true)) => break,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "inbox pruning failed; retried next tick");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "inbox pruning task failed");
                        break;
                    }
                }
            }
            refresh_gauges(&store).await;
            if housekeeping {
                let s = store.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let r = if compact {
                        s.compact_if_worthwhile().map(|_| ())
                    } else {
                        s.space().map(|_| ())
                    };
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "store housekeeping failed");
                    }
                })
                .await;
            }
            let _ = me.cast(SchedulerMsg::Pruned);
        });
    }
}

/// Fixed-period scheduling: from the tick that was due at `*due`, the wait until the next due
/// time after `now` and how many due times were skipped because the tick overran.
pub fn next_tick(due: &mut Instant, every: Duration, now: Instant) -> (Duration, u64) {
    let every = every.max(Duration::from_millis(1));
    let mut next = *due + every;
    let mut missed = 0;
    while next <= now {
        next += every;
        missed += 1;
    }
    *due = next;
    (next - now, missed)
}

async fn refresh_gauges(store: &Store) {
    let store = store.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Ok(n) = store.inbox_len() {
            metrics::set_inbox_size(n);
        }
        if let Ok((_, dead)) = store.delivery_counts() {
            metrics::set_dead_letters(dead);
        }
    })
    .await;
}

impl Actor for Scheduler {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = SchedulerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SchedulerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let every = args.config.borrow().engine.tick;
        myself.send_after(every, || SchedulerMsg::Tick);
        metrics::set_actors("scheduler", 1);
        let early = args
            .early
            .rx
            .lock()
            .expect("early-fire lock is never poisoned")
            .take()
            .ok_or("the scheduler was started twice")?;
        let _ = args.early.scheduler.set(myself.clone());
        Ok(SchedulerState {
            store: args.store,
            router: args.router,
            dispatcher: args.dispatcher,
            registry: args.registry,
            config: args.config,
            tx: args.reply_to,
            rx: args.replies,
            tick_no: 0,
            next_due: Instant::now() + every,
            early,
            uncommitted: Vec::new(),
            firing: HashMap::new(),
            pruning: false,
            stopping: false,
            started_ms: now_ms(),
            last_housekeeping_ms: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMsg::Tick => {
                if state.stopping {
                    return Ok(());
                }
                state.tick(&myself).await;
                crate::daemon::watchdog_ping();
                crate::memory::release_free_memory_now_and_then(now_ms());
                let every = state.config.borrow().engine.tick;
                let (wait, missed) = next_tick(&mut state.next_due, every, Instant::now());
                if missed > 0 {
                    metrics::ticks_missed(missed);
                    tracing::warn!(missed, "a tick overran engine.tick; skipped periods");
                }
                myself.send_after(wait, || SchedulerMsg::Tick);
            }
            SchedulerMsg::Final(reply) => {
                state.stopping = true;
                let r = state.tick(&myself).await;
                if !r.committed {
                    tracing::error!(
                        "final tick not committed; state will be recovered at next start"
                    );
                }
                let _ = reply.send(());
            }
            SchedulerMsg::Pruned => state.pruning = false,
            SchedulerMsg::Early => {
                if !state.stopping {
                    state.early_round(&myself).await;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_keep_a_fixed_period_and_count_skipped_ones() {
        let t0 = Instant::now();
        let every = Duration::from_secs(5);
        let mut due = t0;
        // A 200 ms tick: the next is 4.8 s later, not 5 s.
        let (wait, missed) = next_tick(&mut due, every, t0 + Duration::from_millis(200));
        assert_eq!((wait, missed), (Duration::from_millis(4800), 0));
        // A tick that overran two periods skips them and keeps the phase.
        let (wait, missed) = next_tick(&mut due, every, t0 + Duration::from_millis(16_000));
        assert_eq!((wait, missed), (Duration::from_secs(4), 2));
        assert_eq!(due, t0 + Duration::from_secs(20));
    }
}
