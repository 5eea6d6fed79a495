//! The alert shard actor: a thin shell that owns the [`AlertState`]s of a share of the alerts.
//!
//! DESIGN §2 describes one actor per alert. At 10,000 alerts that costs ~6 KiB of ractor/tokio
//! bookkeeping per alert (each actor's channels pre-allocate their blocks), more than the alert
//! state itself, so alerts are spread by id over a fixed set of shard actors instead. What the
//! design wants from "one actor per alert" is kept: each alert's logic runs in isolation — a panic
//! while applying or evaluating one alert is caught, only that alert is rebuilt from its
//! checkpoint plus inbox replay, and the shard's other alerts are untouched. A panic outside that
//! (a bug in the shard itself) kills the shard, and the supervisor restarts it with its alerts
//! the same way.

use super::{AlertState, Suppressed, TriggerView};
use crate::codec;
use crate::config::AlertSpec;
use crate::metrics;
use crate::notification::Notification;
use crate::router::{Registration, RouterMsg, ShardBatch};
use crate::store::Store;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// What an alert returns at a tick.
pub struct TickOutput {
    pub spec: Arc<AlertSpec>,
    pub checkpoint: Option<Vec<u8>>,
    pub notifications: Vec<Notification>,
    /// Silences (DESIGN §12): decided but muted; recorded, not sent.
    pub suppressed: Vec<Suppressed>,
    pub firing: usize,
}

/// What a shard returns at a tick.
pub struct ShardTick {
    pub outputs: Vec<TickOutput>,
    /// An alert panicked and is being rebuilt: the inbox must not be pruned this tick.
    pub incomplete: bool,
}

/// The alert's state as `GET /v1/alerts` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub triggers: Vec<TriggerView>,
    pub last_notified_ms: Option<i64>,
    pub applied_seq: u64,
}

/// An alert joining a shard: its spec, its stored checkpoint and where replay starts.
pub struct AlertSeed {
    pub spec: Arc<AlertSpec>,
    pub checkpoint: Option<Vec<u8>>,
    /// Events at or below this sequence number were applied by every alert before the crash or
    /// stop (or, for a new alert, predate it).
    pub applied_through: u64,
}

/// Messages a shard understands.
pub enum AlertMsg {
    /// Events for alerts of this shard.
    Events(ShardBatch),
    /// Evaluate at `now`; everything routed through `through` is already applied.
    Tick {
        now_ms: i64,
        through: u64,
        /// Silences (DESIGN §12): the snapshot every alert matches against at this tick.
        silences: Arc<crate::silence::SilenceSet>,
        reply: RpcReplyPort<ShardTick>,
    },
    /// Adds (or replaces) an alert; replies once it is in place.
    Add(Box<AlertSeed>, RpcReplyPort<()>),
    Remove(String),
    Reconfigure(Arc<AlertSpec>),
    View(String, RpcReplyPort<Option<AlertView>>),
}

/// Start-up arguments.
pub struct ShardArgs {
    pub store: Store,
    pub router: ActorRef<RouterMsg>,
}

/// The shard's state.
pub struct ShardState {
    store: Store,
    router: ActorRef<RouterMsg>,
    alerts: HashMap<String, AlertState>,
}

/// The alert shard actor.
pub struct AlertActor;

/// Builds an alert's state from its seed; an unreadable checkpoint is reported and replaced.
pub fn state_from_seed(seed: AlertSeed) -> AlertState {
    let mut state = match seed.checkpoint {
        None => AlertState::new(seed.spec.clone(), seed.applied_through),
        Some(bytes) => match AlertState::decode_checkpoint(&seed.spec.id, &bytes) {
            Ok(cp) => AlertState::restore(seed.spec.clone(), cp),
            Err(message) => {
                tracing::error!(alert = %seed.spec.id, "{message}");
                AlertState::new(seed.spec.clone(), seed.applied_through)
            }
        },
    };
    state.applied_through(seed.applied_through);
    state
}

/// The router registration of an alert living in `shard`.
pub fn registration(
    spec: &AlertSpec,
    shard: &ActorRef<AlertMsg>,
    replay_after: Option<u64>,
) -> Registration {
    Registration {
        alert_id: spec.id.clone(),
        actor: shard.clone(),
        workspace: spec.workspace.clone(),
        scopes: AlertState::event_types(spec)
            .into_iter()
            .map(|t| {
                let everywhere = !t.is_project_scoped()
                    || spec
                        .triggers
                        .iter()
                        .any(|tr| tr.event == t && tr.projects.is_empty());
                let scope = (!everywhere).then(|| {
                    let mut ps: Vec<String> = spec
                        .triggers
                        .iter()
                        .filter(|tr| tr.event == t)
                        .flat_map(|tr| tr.projects.clone())
                        .collect();
                    ps.sort();
                    ps.dedup();
                    ps
                });
                (t, scope)
            })
            .collect(),
        replay_after,
    }
}

/// Loads an alert's seed from the store: its checkpoint and the global applied point.
pub async fn load_seed(
    store: &Store,
    spec: Arc<AlertSpec>,
    applied_through: Option<u64>,
) -> Result<AlertSeed, ActorProcessingErr> {
    let store = store.clone();
    let id = spec.id.clone();
    let (checkpoint, applied) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::store::StoreError>((store.load_checkpoint(&id)?, store.applied_through()?))
    })
    .await??;
    Ok(AlertSeed {
        spec,
        checkpoint,
        applied_through: applied_through.unwrap_or(applied),
    })
}

impl ShardState {
    /// Rebuilds one alert after a caught panic: checkpoint plus replay of the inbox after the
    /// point every alert had applied.
    async fn rebuild(
        &mut self,
        myself: &ActorRef<AlertMsg>,
        spec: Arc<AlertSpec>,
    ) -> Result<(), ActorProcessingErr> {
        tracing::error!(alert = %spec.id, "alert actor died; restarting it from its checkpoint");
        self.alerts.remove(&spec.id);
        let seed = load_seed(&self.store, spec.clone(), None).await?;
        let applied = seed.applied_through;
        self.alerts.insert(spec.id.clone(), state_from_seed(seed));
        let reg = registration(&spec, myself, Some(applied));
        ractor::call!(self.router, RouterMsg::Register, vec![reg])?;
        Ok(())
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

impl Actor for AlertActor {
    type Msg = AlertMsg;
    type State = ShardState;
    type Arguments = ShardArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ShardArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ShardState {
            store: args.store,
            router: args.router,
            alerts: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AlertMsg::Events(batch) => {
                for (id, events) in batch {
                    let Some(alert) = state.alerts.get_mut(&*id) else {
                        continue;
                    };
                    let applied = catch_unwind(AssertUnwindSafe(|| {
                        for (seq, e) in &events {
                            if alert.apply(*seq, e).late {
                                metrics::events(crate::journal::kind_name(e), "late", 1);
                            }
                        }
                    }));
                    if let Err(p) = applied {
                        let spec = alert.spec().clone();
                        tracing::error!(alert = %spec.id, panic = %panic_message(&*p), "alert panicked applying events");
                        state.rebuild(&myself, spec).await?;
                    }
                }
            }
            AlertMsg::Tick {
                now_ms,
                through,
                silences,
                reply,
            } => {
                let mut out = ShardTick {
                    outputs: Vec::with_capacity(state.alerts.len()),
                    incomplete: false,
                };
                let mut broken = Vec::new();
                for alert in state.alerts.values_mut() {
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        if crate::testhooks::should_panic(&alert.spec().id) {
                            panic!("test hook: alert {} panics at tick", alert.spec().id);
                        }
                        alert.applied_through(through);
                        let mut new_id = || uuid::Uuid::now_v7().to_string();
                        let decided = alert.tick_silenced(now_ms, &mut new_id, &silences);
                        let checkpoint = alert
                            .take_checkpoint_if_dirty()
                            .map(|cp| codec::encode(&cp));
                        let firing = alert.view().iter().filter(|t| t.firing).count();
                        TickOutput {
                            spec: alert.spec().clone(),
                            checkpoint,
                            notifications: decided.send,
                            suppressed: decided.suppressed,
                            firing,
                        }
                    }));
                    match r {
                        Ok(o) => out.outputs.push(o),
                        Err(p) => {
                            tracing::error!(alert = %alert.spec().id, panic = %panic_message(&*p), "alert panicked at tick");
                            broken.push(alert.spec().clone());
                        }
                    }
                }
                out.incomplete = !broken.is_empty();
                for spec in broken {
                    state.rebuild(&myself, spec).await?;
                }
                let _ = reply.send(out);
            }
            AlertMsg::Add(seed, reply) => {
                let id = seed.spec.id.clone();
                state.alerts.insert(id, state_from_seed(*seed));
                let _ = reply.send(());
            }
            AlertMsg::Remove(id) => {
                state.alerts.remove(&id);
            }
            AlertMsg::Reconfigure(spec) => {
                if let Some(a) = state.alerts.get_mut(&spec.id) {
                    a.reconfigure(spec);
                }
            }
            AlertMsg::View(id, reply) => {
                let _ = reply.send(state.alerts.get(&id).map(|a| AlertView {
                    triggers: a.view(),
                    last_notified_ms: a.last_notified_ms(),
                    applied_seq: a.applied_seq(),
                }));
            }
        }
        Ok(())
    }
}
