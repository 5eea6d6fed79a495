//! The alert actor: one ractor actor per enabled alert, a thin shell around its [`AlertState`].
//!
//! It owns the alert's window rings and debounce buckets and nothing else. It is spawned linked
//! to the [`AlertSupervisor`](super::supervisor::AlertSupervisor); a panic while applying events
//! or evaluating kills only this actor, and the supervisor starts a new one from the alert's last
//! committed checkpoint plus inbox replay.
//!
//! Ordering contract (what makes restarts lose nothing): a new actor is *not ready* until the
//! router has replayed the inbox into its mailbox and sent [`AlertMsg::Replayed`]. Until then it
//! answers ticks with "not ready", which keeps its durable point (and so the inbox pruning) where
//! its checkpoint left it. Once ready, everything the router routed before a tick's watermark is
//! in the mailbox ahead of the tick.

use super::{AlertState, Suppressed, TriggerView};
use crate::codec;
use crate::config::AlertSpec;
use crate::event::Event;
use crate::metrics;
use crate::notification::Notification;
use crate::router::Batch;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// What an alert decided at a tick, to be committed by the scheduler.
pub struct TickOutput {
    pub spec: Arc<AlertSpec>,
    pub checkpoint: Option<Vec<u8>>,
    pub notifications: Vec<Notification>,
    /// Silences (DESIGN §12): decided but muted; recorded, not sent.
    pub suppressed: Vec<Suppressed>,
    pub firing: usize,
    /// Every inbox event at or below this sequence is reflected in the alert's state.
    pub applied_seq: u64,
    /// Events listed in open buckets since the last answer, for the `bucket_items` table; they
    /// come with a checkpoint that references them.
    pub items: Vec<(u64, Arc<Event>)>,
    /// The lowest sequence of stored items the checkpoint references (see
    /// [`AlertState::item_floor`]).
    pub item_floor: Option<u64>,
}

/// One alert's answer to one tick, sent into the scheduler's reply channel.
pub struct TickReply {
    pub alert_id: Arc<str>,
    /// The incarnation that answered; answers of a dead incarnation are never committed.
    pub generation: u64,
    pub tick_no: u64,
    /// `None`: the actor is still receiving its replay and decided nothing.
    pub output: Option<TickOutput>,
    /// Sent by the alert supervisor when this incarnation died: stop waiting for its answer.
    pub died: bool,
}

/// A tick as the scheduler sends it to every alert.
#[derive(Clone)]
pub struct TickRequest {
    pub tick_no: u64,
    pub now_ms: i64,
    /// The router's watermark when the tick started: every event up to it is in the mailbox.
    pub through: u64,
    /// Silences (DESIGN §12): the snapshot every alert matches against at this tick.
    pub silences: Arc<crate::silence::SilenceSet>,
    pub reply: UnboundedSender<TickReply>,
}

/// The alert's state as `GET /v1/alerts` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub triggers: Vec<TriggerView>,
    pub last_notified_ms: Option<i64>,
    pub applied_seq: u64,
}

/// Where a (re)starting alert begins: its last committed checkpoint and the replay point.
pub struct AlertSeed {
    pub spec: Arc<AlertSpec>,
    pub checkpoint: Option<Vec<u8>>,
    /// Events at or below this sequence number are already reflected (or predate the alert).
    pub applied_through: u64,
    /// Stored bucket items its checkpoint may reference (shared by the alerts started together).
    pub stored_items: Arc<Vec<(u64, Event)>>,
}

/// Messages an alert actor understands.
pub enum AlertMsg {
    /// Its share of a routed batch (or of a replay chunk), in sequence order.
    Events(Batch),
    /// The router finished replaying the inbox through this sequence; live events follow.
    Replayed(u64),
    Tick(TickRequest),
    /// The alert's config changed; unchanged triggers keep their state.
    Reconfigure(Arc<AlertSpec>),
    View(RpcReplyPort<AlertView>),
}

/// Start-up arguments: the state built from the seed, and the incarnation number.
pub struct AlertArgs {
    pub state: AlertState,
    pub generation: u64,
    pub early: Arc<crate::scheduler::EarlyFire>,
}

/// The actor's state.
pub struct AlertActorState {
    alert: AlertState,
    id: Arc<str>,
    generation: u64,
    ready: bool,
    early: Arc<crate::scheduler::EarlyFire>,
    /// An early evaluation was asked for and no tick has answered since.
    early_asked: bool,
    /// Whether the alert has threshold triggers at all (only those fire early).
    has_thresholds: bool,
    /// The shared batches the alert reads as packed points ([`AlertState::points_scope`]).
    points_scope: Option<Option<String>>,
    /// Events listed in buckets since the last tick, stored with the next checkpoint.
    listed: Vec<(u64, Arc<Event>)>,
}

/// The alert actor.
pub struct AlertActor;

/// [`AlertState::points_scope`], kept by the actor.
fn owned_scope(alert: &AlertState) -> Option<Option<String>> {
    alert.points_scope().map(|p| p.map(str::to_owned))
}

/// Builds an alert's state from its seed; an unreadable checkpoint is reported and replaced.
pub fn state_from_seed(seed: AlertSeed) -> AlertState {
    let mut state = match seed.checkpoint {
        None => AlertState::new(seed.spec.clone(), seed.applied_through),
        Some(bytes) => match AlertState::decode_checkpoint(&seed.spec.id, &bytes) {
            Ok(cp) => AlertState::restore(seed.spec.clone(), cp, &seed.stored_items),
            Err(message) => {
                tracing::error!(alert = %seed.spec.id, "{message}");
                AlertState::new(seed.spec.clone(), seed.applied_through)
            }
        },
    };
    state.applied_through(seed.applied_through);
    state
}

impl AlertActorState {
    fn tick(
        &mut self,
        now_ms: i64,
        through: u64,
        silences: &crate::silence::SilenceSet,
    ) -> TickOutput {
        if crate::testhooks::should_panic(&self.id) {
            panic!("test hook: alert {} panics at tick", self.id);
        }
        self.alert.applied_through(through);
        let mut new_id = || uuid::Uuid::now_v7().to_string();
        let decided = self.alert.tick_silenced(now_ms, &mut new_id, silences);
        let checkpoint = self
            .alert
            .take_checkpoint_if_dirty()
            .map(|cp| codec::encode(&cp));
        let firing = self.alert.view().iter().filter(|t| t.firing).count();
        // Listed events whose bucket was flushed meanwhile are not stored.
        let item_floor = self.alert.item_floor();
        let mut items = std::mem::take(&mut self.listed);
        items.retain(|(seq, _)| item_floor.is_some_and(|f| *seq >= f));
        TickOutput {
            spec: self.alert.spec().clone(),
            checkpoint,
            notifications: decided.send,
            suppressed: decided.suppressed,
            firing,
            applied_seq: self.alert.applied_seq(),
            items,
            item_floor,
        }
    }
}

impl Actor for AlertActor {
    type Msg = AlertMsg;
    type State = AlertActorState;
    type Arguments = AlertArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: AlertArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let id: Arc<str> = Arc::from(args.state.spec().id.as_str());
        let has_thresholds = args
            .state
            .spec()
            .triggers
            .iter()
            .any(|t| t.threshold.is_some());
        let points_scope = owned_scope(&args.state);
        Ok(AlertActorState {
            alert: args.state,
            points_scope,
            id,
            generation: args.generation,
            ready: false,
            early: args.early,
            early_asked: false,
            has_thresholds,
            listed: Vec::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AlertMsg::Events(events) => {
                let mut counted = false;
                match events.points() {
                    Some((scope, points))
                        if state.points_scope.as_ref().map(Option::as_deref) == Some(scope) =>
                    {
                        if crate::testhooks::panics_on_apply(&state.id) {
                            for p in &points.points {
                                crate::testhooks::maybe_panic_on_apply(&state.id);
                                let applied = state.alert.apply_point(p);
                                counted |= applied.counted;
                                if applied.late {
                                    metrics::events("trace", "late", 1);
                                }
                            }
                        } else {
                            let applied = state.alert.apply_points(points);
                            counted = applied.counted;
                            if applied.late > 0 {
                                metrics::events("trace", "late", applied.late);
                            }
                        }
                    }
                    _ => {
                        for (seq, e) in events.events() {
                            crate::testhooks::maybe_panic_on_apply(&state.id);
                            let applied = state.alert.apply(*seq, e);
                            counted |= applied.counted;
                            if applied.listed {
                                state.listed.push((*seq, e.clone()));
                            }
                            if applied.late {
                                metrics::events(crate::journal::kind_name(e), "late", 1);
                            }
                        }
                    }
                }
                // Early firing: a crossing is evaluated and committed now, not at the next tick.
                // Only live events count (a replay catches up on crossings the tick will see).
                if counted
                    && state.ready
                    && state.has_thresholds
                    && !state.early_asked
                    && state.alert.crossed(crate::clock::now_ms())
                {
                    state.early_asked = true;
                    state.early.request(&state.id);
                }
            }
            AlertMsg::Replayed(through) => {
                state.alert.applied_through(through);
                state.ready = true;
            }
            AlertMsg::Tick(req) => {
                state.early_asked = false;
                let output = state
                    .ready
                    .then(|| state.tick(req.now_ms, req.through, &req.silences));
                if let Some(delay) = crate::testhooks::tick_delay(&state.id) {
                    tokio::time::sleep(delay).await;
                }
                let _ = req.reply.send(TickReply {
                    alert_id: state.id.clone(),
                    generation: state.generation,
                    tick_no: req.tick_no,
                    output,
                    died: false,
                });
            }
            AlertMsg::Reconfigure(spec) => {
                state.has_thresholds = spec.triggers.iter().any(|t| t.threshold.is_some());
                state.alert.reconfigure(spec);
                state.points_scope = owned_scope(&state.alert);
            }
            AlertMsg::View(reply) => {
                let _ = reply.send(AlertView {
                    triggers: state.alert.view(),
                    last_notified_ms: state.alert.last_notified_ms(),
                    applied_seq: state.alert.applied_seq(),
                });
            }
        }
        Ok(())
    }
}
