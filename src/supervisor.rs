//! The supervisor: root of the actor tree, owner of the running configuration, and home of the
//! scheduler's tick.
//!
//! It spawns the router, the journal, the delivery dispatcher and one alert actor per enabled
//! alert, all linked to it. A crashed alert actor is restarted from its checkpoint plus inbox
//! replay; a crash of the router, journal or dispatcher stops the daemon (systemd restarts it and
//! recovery takes over). Ticks, reloads and restarts are all messages in this one mailbox, so a
//! tick never races a reload.

use crate::alert::actor::{AlertActor, AlertArgs, AlertMsg, AlertView};
use crate::alert::AlertState;
use crate::clock::now_ms;
use crate::config::{AlertSpec, Config};
use crate::delivery::dispatcher::{Dispatcher, DispatcherArgs, DispatcherMsg};
use crate::journal::{Journal, JournalArgs, JournalMsg};
use crate::router::{Registration, Router, RouterArgs, RouterMsg};
use crate::scheduler::{self, TickInputs};
use crate::store::Store;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

/// What a reload changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: usize,
    /// Settings that only take effect after a restart; filled in by the API layer, which knows
    /// the old and the new file.
    pub restart_required: Vec<String>,
}

/// One configured alert and its actor (none when disabled).
pub struct AlertEntry {
    pub spec: Arc<AlertSpec>,
    pub actor: Option<ActorRef<AlertMsg>>,
}

/// Messages the supervisor understands.
pub enum SupervisorMsg {
    Tick,
    Reload(Box<Config>, RpcReplyPort<ReloadReport>),
    /// Every alert with its live view (None for disabled alerts).
    Alerts(RpcReplyPort<Vec<(Arc<AlertSpec>, Option<AlertView>)>>),
    /// Re-queues a dead letter.
    Requeue(Box<crate::delivery::Delivery>),
    /// The journal's handle, for the HTTP layer.
    Journal(RpcReplyPort<ActorRef<JournalMsg>>),
    /// Graceful stop: flush the journal, final tick, drain deliveries.
    Shutdown(RpcReplyPort<()>),
}

/// Start-up arguments.
pub struct SupervisorArgs {
    pub config: Arc<Config>,
    pub store: Store,
    pub queued: Arc<AtomicUsize>,
}

pub struct SupervisorState {
    config: Arc<Config>,
    store: Store,
    router: ActorRef<RouterMsg>,
    journal: ActorRef<JournalMsg>,
    dispatcher: ActorRef<DispatcherMsg>,
    alerts: BTreeMap<String, AlertEntry>,
    removed: Vec<String>,
    stopping: bool,
}

/// The supervisor actor.
pub struct Supervisor;

async fn spawn_alert(
    sup: &ActorCell,
    spec: Arc<AlertSpec>,
    store: &Store,
    applied_through: u64,
) -> Result<ActorRef<AlertMsg>, ActorProcessingErr> {
    let (actor, _) = Actor::spawn_linked(
        None,
        AlertActor,
        AlertArgs {
            spec,
            store: store.clone(),
            applied_through,
        },
        sup.clone(),
    )
    .await?;
    Ok(actor)
}

fn registration(
    spec: &AlertSpec,
    actor: &ActorRef<AlertMsg>,
    replay_after: Option<u64>,
) -> Registration {
    Registration {
        alert_id: spec.id.clone(),
        actor: actor.clone(),
        workspace: spec.workspace.clone(),
        scopes: AlertState::event_types(spec)
            .into_iter()
            .map(|t| {
                let triggers = spec.triggers.iter().filter(|tr| tr.event == t);
                let everywhere = !t.is_project_scoped()
                    || spec
                        .triggers
                        .iter()
                        .any(|tr| tr.event == t && tr.projects.is_empty());
                let scope = (!everywhere).then(|| {
                    let mut ps: Vec<String> = triggers.flat_map(|tr| tr.projects.clone()).collect();
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
        let (last_seq, applied, stored_ids) = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::store::StoreError>((
                store.last_seq()?,
                store.applied_through()?,
                store.load_checkpoints()?.into_keys().collect::<Vec<_>>(),
            ))
        })
        .await??;
        // State of alerts removed from the config while alertd was down: dropped at the first tick.
        let removed: Vec<String> = stored_ids
            .into_iter()
            .filter(|id| args.config.alert(id).is_none())
            .collect();
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
                config: args.config.delivery.clone(),
            },
            cell.clone(),
        )
        .await?;
        for spec in args.config.alerts.iter().filter(|a| a.tls_insecure) {
            tracing::warn!(alert = %spec.id, "TLS CERTIFICATE VERIFICATION IS OFF for this alert (tls_insecure = true): its notifications can be read and forged by anyone on the network path");
        }
        let mut alerts = BTreeMap::new();
        let mut regs = Vec::new();
        for spec in &args.config.alerts {
            let actor = if spec.enabled {
                let a = spawn_alert(&cell, spec.clone(), &args.store, applied).await?;
                regs.push(registration(spec, &a, Some(applied)));
                Some(a)
            } else {
                None
            };
            alerts.insert(
                spec.id.clone(),
                AlertEntry {
                    spec: spec.clone(),
                    actor,
                },
            );
        }
        if last_seq > applied {
            tracing::info!(
                events = last_seq - applied,
                "replaying inbox events after restart"
            );
        }
        ractor::call!(router, RouterMsg::Register, regs)?;
        let (journal, _) = Actor::spawn_linked(
            None,
            Journal,
            JournalArgs {
                store: args.store.clone(),
                router: router.clone(),
                dedup_window_ms: args.config.ingest.dedup_window.as_millis() as i64,
                queued: args.queued.clone(),
            },
            cell.clone(),
        )
        .await?;
        myself.send_after(args.config.engine.tick, || SupervisorMsg::Tick);
        Ok(SupervisorState {
            config: args.config,
            store: args.store,
            router,
            journal,
            dispatcher,
            alerts,
            removed,
            stopping: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Tick => {
                if state.stopping {
                    return Ok(());
                }
                run_tick(&myself, state).await?;
                crate::daemon::watchdog_ping();
                myself.send_after(state.config.engine.tick, || SupervisorMsg::Tick);
            }
            SupervisorMsg::Reload(config, reply) => {
                let report = reload(&myself, state, Arc::new(*config)).await?;
                let _ = reply.send(report);
            }
            SupervisorMsg::Alerts(reply) => {
                let mut out = Vec::with_capacity(state.alerts.len());
                for entry in state.alerts.values() {
                    let view = match &entry.actor {
                        Some(a) => ractor::call_t!(a, AlertMsg::View, 2000).ok(),
                        None => None,
                    };
                    out.push((entry.spec.clone(), view));
                }
                let _ = reply.send(out);
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
                if let Err(e) = run_tick(&myself, state).await {
                    tracing::error!(error = %e, "final tick failed; state will be recovered at next start");
                }
                let drain = state.config.delivery.drain_timeout;
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
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        let id = cell.get_id();
        let failed_alert = state
            .alerts
            .values()
            .find(|e| e.actor.as_ref().is_some_and(|a| a.get_id() == id))
            .map(|e| e.spec.clone());
        match failed_alert {
            Some(spec) if !state.stopping => {
                tracing::error!(alert = %spec.id, reason = %reason, "alert actor died; restarting it from its checkpoint");
                let store = state.store.clone();
                let applied =
                    tokio::task::spawn_blocking(move || store.applied_through()).await??;
                let actor =
                    spawn_alert(&myself.get_cell(), spec.clone(), &state.store, applied).await?;
                ractor::call!(
                    state.router,
                    RouterMsg::Register,
                    vec![registration(&spec, &actor, Some(applied))]
                )?;
                if let Some(e) = state.alerts.get_mut(&spec.id) {
                    e.actor = Some(actor);
                }
            }
            Some(_) => {}
            None => {
                let name = if id == state.router.get_id() {
                    "router"
                } else if id == state.journal.get_id() {
                    "journal"
                } else if id == state.dispatcher.get_id() {
                    "dispatcher"
                } else {
                    return Ok(());
                };
                if !state.stopping {
                    tracing::error!(actor = %name, reason = %reason, "core actor died; stopping so the service manager restarts alertd");
                    myself.stop(Some(format!("{name} died: {reason}")));
                }
            }
        }
        Ok(())
    }
}

async fn run_tick(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
) -> Result<(), ActorProcessingErr> {
    let live: Vec<(String, ActorRef<AlertMsg>)> = state
        .alerts
        .values()
        .filter_map(|e| e.actor.as_ref().map(|a| (e.spec.id.clone(), a.clone())))
        .collect();
    let removed = std::mem::take(&mut state.removed);
    let inputs = TickInputs {
        store: &state.store,
        router: &state.router,
        dispatcher: &state.dispatcher,
        alerts: &live,
        config: &state.config,
        removed: removed.clone(),
    };
    match scheduler::tick(inputs, now_ms()).await {
        Ok(_) => {}
        Err(e) => {
            // The alerts' memory is now ahead of the store: rebuild them from it so that the
            // notifications decided in this tick are decided again once the store works.
            tracing::error!(error = %e, "tick commit failed; reloading alert state from the store");
            state.removed = removed;
            restart_all_alerts(myself, state).await?;
        }
    }
    refresh_gauges(&state.store).await;
    Ok(())
}

async fn refresh_gauges(store: &Store) {
    let store = store.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Ok(n) = store.inbox_len() {
            crate::metrics::set_inbox_size(n);
        }
        if let Ok((_, dead)) = store.delivery_counts() {
            crate::metrics::set_dead_letters(dead);
        }
    })
    .await;
}

async fn restart_all_alerts(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
) -> Result<(), ActorProcessingErr> {
    let store = state.store.clone();
    let applied = tokio::task::spawn_blocking(move || store.applied_through()).await??;
    let mut regs = Vec::new();
    for entry in state.alerts.values_mut() {
        if let Some(old) = entry.actor.take() {
            old.unlink(myself.get_cell());
            old.stop(Some("reloading state from the store".into()));
            let actor = spawn_alert(
                &myself.get_cell(),
                entry.spec.clone(),
                &state.store,
                applied,
            )
            .await?;
            regs.push(registration(&entry.spec, &actor, Some(applied)));
            entry.actor = Some(actor);
        }
    }
    ractor::call!(state.router, RouterMsg::Register, regs)?;
    Ok(())
}

async fn reload(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    new: Arc<Config>,
) -> Result<ReloadReport, ActorProcessingErr> {
    let mut report = ReloadReport::default();
    if new.delivery != state.config.delivery {
        state
            .dispatcher
            .cast(DispatcherMsg::Reconfigure(new.delivery.clone()))?;
    }
    let watermark = ractor::call!(state.router, RouterMsg::Watermark)?;
    let mut regs = Vec::new();
    let old_ids: Vec<String> = state.alerts.keys().cloned().collect();
    for id in old_ids {
        if new.alert(&id).is_none() {
            if let Some(entry) = state.alerts.remove(&id) {
                if let Some(a) = entry.actor {
                    a.unlink(myself.get_cell());
                    a.stop(Some("removed from the config".into()));
                }
            }
            state.router.cast(RouterMsg::Unregister(id.clone()))?;
            state.removed.push(id.clone());
            report.removed.push(id);
        }
    }
    for spec in &new.alerts {
        match state.alerts.get_mut(&spec.id) {
            Some(entry) if entry.spec == *spec => report.unchanged += 1,
            Some(entry) => {
                report.changed.push(spec.id.clone());
                match (&entry.actor, spec.enabled) {
                    (Some(a), true) => {
                        a.cast(AlertMsg::Reconfigure(spec.clone()))?;
                        regs.push(registration(spec, a, None));
                    }
                    (Some(a), false) => {
                        a.unlink(myself.get_cell());
                        a.stop(Some("disabled".into()));
                        state.router.cast(RouterMsg::Unregister(spec.id.clone()))?;
                        entry.actor = None;
                    }
                    (None, true) => {
                        let a =
                            spawn_alert(&myself.get_cell(), spec.clone(), &state.store, watermark)
                                .await?;
                        regs.push(registration(spec, &a, None));
                        entry.actor = Some(a);
                    }
                    (None, false) => {}
                }
                entry.spec = spec.clone();
            }
            None => {
                report.added.push(spec.id.clone());
                let actor = if spec.enabled {
                    let a = spawn_alert(&myself.get_cell(), spec.clone(), &state.store, watermark)
                        .await?;
                    regs.push(registration(spec, &a, None));
                    Some(a)
                } else {
                    None
                };
                state.removed.retain(|r| r != &spec.id);
                state.alerts.insert(
                    spec.id.clone(),
                    AlertEntry {
                        spec: spec.clone(),
                        actor,
                    },
                );
            }
        }
    }
    if !regs.is_empty() {
        ractor::call!(state.router, RouterMsg::Register, regs)?;
    }
    state.config = new;
    Ok(report)
}

/// How long `Shutdown` may take at most, beyond the drain timeout.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
