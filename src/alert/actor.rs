//! The alert actor: a thin shell that owns one [`AlertState`] and answers ticks.
//!
//! It is linked to the supervisor; if it panics it is restarted from its last checkpoint and the
//! router replays the inbox after it, so no event is lost or counted twice.

use super::{AlertState, TriggerView};
use crate::codec;
use crate::config::AlertSpec;
use crate::metrics;
use crate::notification::Notification;
use crate::router::Routed;
use crate::store::Store;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use std::sync::Arc;

/// What an alert returns at a tick.
pub struct TickOutput {
    pub spec: Arc<AlertSpec>,
    pub checkpoint: Option<Vec<u8>>,
    pub notifications: Vec<Notification>,
    pub firing: usize,
}

/// The alert's state as `GET /v1/alerts` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub triggers: Vec<TriggerView>,
    pub last_notified_ms: Option<i64>,
    pub applied_seq: u64,
}

/// Messages an alert actor understands.
pub enum AlertMsg {
    Events(Routed),
    /// Evaluate at `now`; everything routed through `through` is already applied.
    Tick {
        now_ms: i64,
        through: u64,
        reply: RpcReplyPort<TickOutput>,
    },
    Reconfigure(Arc<AlertSpec>),
    View(RpcReplyPort<AlertView>),
}

/// Start-up arguments.
pub struct AlertArgs {
    pub spec: Arc<AlertSpec>,
    pub store: Store,
    /// Events at or below this sequence number were applied by every alert before the crash or
    /// stop (or, for a new alert, predate it).
    pub applied_through: u64,
}

/// The alert actor.
pub struct AlertActor;

impl Actor for AlertActor {
    type Msg = AlertMsg;
    type State = AlertState;
    type Arguments = AlertArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: AlertArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let id = args.spec.id.clone();
        let store = args.store.clone();
        let stored = tokio::task::spawn_blocking(move || store.load_checkpoint(&id)).await??;
        let mut state = match stored {
            None => AlertState::new(args.spec.clone(), args.applied_through),
            Some(bytes) => match AlertState::decode_checkpoint(&args.spec.id, &bytes) {
                Ok(cp) => AlertState::restore(args.spec.clone(), cp),
                Err(message) => {
                    tracing::error!(alert = %args.spec.id, "{message}");
                    AlertState::new(args.spec.clone(), args.applied_through)
                }
            },
        };
        state.applied_through(args.applied_through);
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AlertMsg::Events(events) => {
                for (seq, e) in events {
                    let a = state.apply(seq, &e);
                    if a.late {
                        metrics::events(crate::journal::kind_name(&e), "late", 1);
                    }
                }
            }
            AlertMsg::Tick {
                now_ms,
                through,
                reply,
            } => {
                if crate::testhooks::should_panic(&state.spec().id) {
                    panic!("test hook: alert {} panics at tick", state.spec().id);
                }
                state.applied_through(through);
                let mut new_id = || uuid::Uuid::now_v7().to_string();
                let notifications = state.tick(now_ms, &mut new_id);
                let checkpoint = state
                    .take_checkpoint_if_dirty()
                    .map(|cp| codec::encode(&cp));
                let firing = state.view().iter().filter(|t| t.firing).count();
                let _ = reply.send(TickOutput {
                    spec: state.spec().clone(),
                    checkpoint,
                    notifications,
                    firing,
                });
            }
            AlertMsg::Reconfigure(spec) => state.reconfigure(spec),
            AlertMsg::View(reply) => {
                let _ = reply.send(AlertView {
                    triggers: state.view(),
                    last_notified_ms: state.last_notified_ms(),
                    applied_seq: state.applied_seq(),
                });
            }
        }
        Ok(())
    }
}
