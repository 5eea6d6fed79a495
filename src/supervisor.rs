//! The root supervisor: starts the actor tree, owns the running configuration, and stops the
//! daemon when a core actor dies.
//!
//! ```text
//! Supervisor (root)
//! ├── Router            index + replay
//! ├── Dispatcher        due-time queue over the outbox
//! │   └── Sender × delivery.workers   (supervised pool, restarted on a crash)
//! ├── AlertSupervisor
//! │   └── AlertActor × enabled alerts (restarted from checkpoint + replay, OTP intensity)
//! ├── Scheduler         tick → one commit → hand-off
//! └── Journal           group commit to the inbox
//! ```
//!
//! Alerts and senders are restarted by their own supervisors. A crash of the router, journal,
//! dispatcher, alert supervisor or scheduler stops the daemon: those hold the ordering the
//! guarantees rest on, and a fresh start (systemd restarts it) rebuilds them from the store.

use crate::alert::supervisor::{
    AlertInfo, AlertSupervisor, AlertSupervisorArgs, AlertSupervisorMsg, SharedRegistry,
};
use crate::config::Config;
use crate::delivery::dispatcher::{Dispatcher, DispatcherArgs, DispatcherMsg};
use crate::journal::{Journal, JournalArgs, JournalMsg};
use crate::router::{Router, RouterArgs, RouterMsg};
use crate::scheduler::{Scheduler, SchedulerArgs, SchedulerMsg};
use crate::store::Store;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub use crate::alert::supervisor::ReloadReport;

/// Messages the supervisor understands.
pub enum SupervisorMsg {
    Reload(Box<Config>, RpcReplyPort<ReloadReport>),
    /// Every configured alert with its state and live view.
    Alerts(RpcReplyPort<Vec<AlertInfo>>),
    /// Re-queues a dead letter.
    Requeue(Box<crate::delivery::Delivery>),
    /// The journal's handle, for the HTTP layer.
    Journal(RpcReplyPort<ActorRef<JournalMsg>>),
    /// Graceful stop: flush the journal, final tick, drain deliveries.
    Shutdown(RpcReplyPort<()>),
}

/// Start-up arguments.
pub struct SupervisorArgs {
    /// The running config; the supervisor publishes every applied reload here.
    pub config: watch::Sender<Arc<Config>>,
    pub store: Store,
    pub queued: Arc<AtomicUsize>,
}

pub struct SupervisorState {
    config: watch::Sender<Arc<Config>>,
    router: ActorRef<RouterMsg>,
    journal: ActorRef<JournalMsg>,
    dispatcher: ActorRef<DispatcherMsg>,
    alerts: ActorRef<AlertSupervisorMsg>,
    scheduler: ActorRef<SchedulerMsg>,
    stopping: bool,
}

/// The supervisor actor.
pub struct Supervisor;

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let store = args.store.clone();
        let last_seq = tokio::task::spawn_blocking(move || store.last_seq()).await??;
        let config_tx = args.config;
        let live = config_tx.subscribe();
        let config = config_tx.borrow().clone();
        let cell = myself.get_cell();
        let (router, _) = Actor::spawn_linked(
            None,
            Router,
            RouterArgs {
                store: args.store.clone(),
                routed_through: last_seq,
            },
            cell.clone(),
        )
        .await?;
        let (dispatcher, _) = Actor::spawn_linked(
            None,
            Dispatcher,
            DispatcherArgs {
                store: args.store.clone(),
                config: live.clone(),
            },
            cell.clone(),
        )
        .await?;
        for spec in config.alerts.iter().filter(|a| a.tls_insecure) {
            tracing::warn!(alert = %spec.id, "TLS CERTIFICATE VERIFICATION IS OFF for this alert (tls_insecure = true): its notifications can be read and forged by anyone on the network path");
        }
        let registry = SharedRegistry::default();
        let early = Arc::new(crate::scheduler::EarlyFire::default());
        let (reply_to, replies) = tokio::sync::mpsc::unbounded_channel();
        let (alerts, _) = Actor::spawn_linked(
            None,
            AlertSupervisor,
            AlertSupervisorArgs {
                tick_replies: reply_to.clone(),
                early: early.clone(),
                store: args.store.clone(),
                router: router.clone(),
                registry: registry.clone(),
            },
            cell.clone(),
        )
        .await?;
        let applied = tokio::task::spawn_blocking({
            let s = args.store.clone();
            move || s.load_seeds(&[])
        })
        .await??
        .applied;
        if last_seq > applied {
            tracing::info!(
                events = last_seq - applied,
                "replaying inbox events after restart"
            );
        }
        ractor::call!(alerts, AlertSupervisorMsg::Apply, config.clone())?;
        let (scheduler, _) = Actor::spawn_linked(
            None,
            Scheduler,
            SchedulerArgs {
                reply_to,
                replies,
                early,
                store: args.store.clone(),
                router: router.clone(),
                dispatcher: dispatcher.clone(),
                registry,
                config: live.clone(),
            },
            cell.clone(),
        )
        .await?;
        let (journal, _) = Actor::spawn_linked(
            None,
            Journal,
            JournalArgs {
                store: args.store.clone(),
                router: router.clone(),
                config: live,
                queued: args.queued.clone(),
                last_seq,
            },
            cell.clone(),
        )
        .await?;
        crate::memory::release_free_memory();
        Ok(SupervisorState {
            config: config_tx,
            router,
            journal,
            dispatcher,
            alerts,
            scheduler,
            stopping: false,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Reload(config, reply) => {
                let config = Arc::new(*config);
                // Settings first (journal, scheduler, dispatcher read them live), then alerts.
                state.config.send_replace(config.clone());
                state.dispatcher.cast(DispatcherMsg::Reconfigure)?;
                let report = ractor::call!(state.alerts, AlertSupervisorMsg::Apply, config)?;
                crate::memory::release_free_memory();
                let _ = reply.send(report);
            }
            SupervisorMsg::Alerts(reply) => {
                // Answered by the alert supervisor directly, so a slow view never blocks a reload.
                let alerts = state.alerts.clone();
                tokio::spawn(async move {
                    if let Ok(v) = ractor::call!(alerts, AlertSupervisorMsg::Alerts) {
                        let _ = reply.send(v);
                    }
                });
            }
            SupervisorMsg::Journal(reply) => {
                let _ = reply.send(state.journal.clone());
            }
            SupervisorMsg::Requeue(d) => {
                state.dispatcher.cast(DispatcherMsg::Enqueue(vec![*d]))?;
            }
            SupervisorMsg::Shutdown(reply) => {
                state.stopping = true;
                let _ = ractor::call_t!(state.journal, JournalMsg::Flush, 30_000);
                if ractor::call_t!(state.scheduler, SchedulerMsg::Final, 30_000).is_err() {
                    tracing::error!(
                        "final tick did not finish; state will be recovered at next start"
                    );
                }
                let drain = state.config.borrow().delivery.drain_timeout;
                let drained = state
                    .dispatcher
                    .call(DispatcherMsg::Drain, Some(drain))
                    .await;
                if !matches!(drained, Ok(ractor::rpc::CallResult::Success(()))) {
                    tracing::warn!(timeout = ?drain, "deliveries still in flight at the drain timeout; they resume at next start");
                }
                let _ = reply.send(());
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
        let name = [
            (state.router.get_id(), "router"),
            (state.journal.get_id(), "journal"),
            (state.dispatcher.get_id(), "dispatcher"),
            (state.alerts.get_id(), "alert supervisor"),
            (state.scheduler.get_id(), "scheduler"),
        ]
        .into_iter()
        .find(|(a, _)| *a == id)
        .map(|(_, n)| n);
        if let Some(name) = name {
            if !state.stopping {
                tracing::error!(actor = %name, reason = %reason, "core actor died; stopping so the service manager restarts alertd");
                myself.stop(Some(format!("{name} died: {reason}")));
            }
        }
        Ok(())
    }
}

/// The child and the reason when a supervision event says a child died (panicked, returned an
/// error, or stopped); `None` for events that are not deaths. Every supervisor in the tree reads
/// its events through this one place.
pub fn death(event: SupervisionEvent) -> Option<(ractor::ActorCell, String)> {
    match event {
        SupervisionEvent::ActorFailed(cell, err) => Some((cell, err.to_string())),
        SupervisionEvent::ActorTerminated(cell, _, reason) => {
            Some((cell, reason.unwrap_or_else(|| "stopped".into())))
        }
        _ => None,
    }
}

/// How long `Shutdown` may take at most, beyond the drain timeout.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
