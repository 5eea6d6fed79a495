//! The supervisor: root of the actor tree, owner of the running configuration, and home of the
//! scheduler's tick.
//!
//! It spawns the router, the journal, the delivery dispatcher and a fixed set of alert shard
//! actors (see `alert::actor` for why shards rather than one actor per alert), all linked to it.
//! A crashed shard is restarted and its alerts rebuilt from their checkpoints plus inbox replay; a
//! crash of the router, journal or dispatcher stops the daemon (systemd restarts it and recovery
//! takes over). Ticks, reloads and restarts are all messages in this one mailbox, so a
//! tick never races a reload.

use crate::alert::actor::{
    load_seed, registration, AlertActor, AlertMsg, AlertSeed, AlertView, ShardArgs,
};
use crate::clock::now_ms;
use crate::config::{AlertSpec, Config};
use crate::delivery::dispatcher::{Dispatcher, DispatcherArgs, DispatcherMsg};
use crate::journal::{Journal, JournalArgs, JournalMsg};
use crate::router::{Router, RouterArgs, RouterMsg};
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

/// One configured alert; `live` when it runs in its shard (false when disabled).
pub struct AlertEntry {
    pub spec: Arc<AlertSpec>,
    pub live: bool,
}

/// Number of alert shards: enough to use every core at a tick, few enough that their fixed
/// per-actor cost does not matter.
const SHARDS: usize = 8;

/// The shard an alert lives in: a stable hash of its id.
fn shard_index(id: &str) -> usize {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    (h % SHARDS as u64) as usize
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
    shards: Vec<ActorRef<AlertMsg>>,
    removed: Vec<String>,
    stopping: bool,
}

/// The supervisor actor.
pub struct Supervisor;

async fn spawn_shard(
    sup: &ActorCell,
    store: &Store,
    router: &ActorRef<RouterMsg>,
) -> Result<ActorRef<AlertMsg>, ActorProcessingErr> {
    let (actor, _) = Actor::spawn_linked(
        None,
        AlertActor,
        ShardArgs {
            store: store.clone(),
            router: router.clone(),
        },
        sup.clone(),
    )
    .await?;
    Ok(actor)
}

/// Puts an alert into its shard (replies once it is there).
async fn add_to_shard(
    shard: &ActorRef<AlertMsg>,
    seed: AlertSeed,
) -> Result<(), ActorProcessingErr> {
    ractor::call!(shard, AlertMsg::Add, Box::new(seed))?;
    Ok(())
}

impl SupervisorState {
    fn shard_of(&self, id: &str) -> &ActorRef<AlertMsg> {
        &self.shards[shard_index(id)]
    }

    /// Replaces shard `n` by a fresh one and rebuilds its live alerts from the store.
    async fn rebuild_shard(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        n: usize,
    ) -> Result<(), ActorProcessingErr> {
        let old = self.shards[n].clone();
        old.unlink(myself.get_cell());
        old.stop(Some("rebuilding from the store".into()));
        let shard = spawn_shard(&myself.get_cell(), &self.store, &self.router).await?;
        self.shards[n] = shard.clone();
        let mut regs = Vec::new();
        let specs: Vec<Arc<AlertSpec>> = self
            .alerts
            .values()
            .filter(|e| e.live && shard_index(&e.spec.id) == n)
            .map(|e| e.spec.clone())
            .collect();
        for spec in specs {
            let seed = load_seed(&self.store, spec.clone(), None).await?;
            let applied = seed.applied_through;
            add_to_shard(&shard, seed).await?;
            regs.push(registration(&spec, &shard, Some(applied)));
        }
        ractor::call!(self.router, RouterMsg::Register, regs)?;
        Ok(())
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
        let (last_seq, applied, mut checkpoints) = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::store::StoreError>((
                store.last_seq()?,
                store.applied_through()?,
                store.load_checkpoints()?,
            ))
        })
        .await??;
        // State of alerts removed from the config while alertd was down: dropped at the first tick.
        let removed: Vec<String> = checkpoints
            .keys()
            .filter(|id| args.config.alert(id).is_none())
            .cloned()
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
        let mut shards = Vec::with_capacity(SHARDS);
        for _ in 0..SHARDS {
            shards.push(spawn_shard(&cell, &args.store, &router).await?);
        }
        let mut alerts = BTreeMap::new();
        let mut regs = Vec::new();
        for spec in &args.config.alerts {
            if spec.enabled {
                let shard = &shards[shard_index(&spec.id)];
                let seed = AlertSeed {
                    spec: spec.clone(),
                    checkpoint: checkpoints.remove(&spec.id),
                    applied_through: applied,
                };
                add_to_shard(shard, seed).await?;
                regs.push(registration(spec, shard, Some(applied)));
            }
            alerts.insert(
                spec.id.clone(),
                AlertEntry {
                    spec: spec.clone(),
                    live: spec.enabled,
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
        crate::memory::release_free_memory();
        Ok(SupervisorState {
            config: args.config,
            store: args.store,
            router,
            journal,
            dispatcher,
            alerts,
            shards,
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
                let report = reload(state, Arc::new(*config)).await?;
                crate::memory::release_free_memory();
                let _ = reply.send(report);
            }
            SupervisorMsg::Alerts(reply) => {
                let mut out = Vec::with_capacity(state.alerts.len());
                for entry in state.alerts.values() {
                    let view = if entry.live {
                        let shard = state.shard_of(&entry.spec.id);
                        ractor::call_t!(shard, AlertMsg::View, 2000, entry.spec.id.clone())
                            .ok()
                            .flatten()
                    } else {
                        None
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
        let failed_shard = state.shards.iter().position(|a| a.get_id() == id);
        match failed_shard {
            Some(n) if !state.stopping => {
                tracing::error!(shard = n, reason = %reason, "alert shard died; restarting its alerts from their checkpoints");
                state.rebuild_shard(&myself, n).await?;
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
    let shards = state.shards.clone();
    let removed = std::mem::take(&mut state.removed);
    let inputs = TickInputs {
        store: &state.store,
        router: &state.router,
        dispatcher: &state.dispatcher,
        shards: &shards,
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
    crate::memory::release_free_memory_now_and_then(now_ms());
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
    for n in 0..state.shards.len() {
        state.rebuild_shard(myself, n).await?;
    }
    Ok(())
}

async fn reload(
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
                if entry.live {
                    state.shard_of(&id).cast(AlertMsg::Remove(id.clone()))?;
                }
            }
            state.router.cast(RouterMsg::Unregister(id.clone()))?;
            state.removed.push(id.clone());
            report.removed.push(id);
        }
    }
    for spec in &new.alerts {
        let shard = state.shard_of(&spec.id).clone();
        let (was_live, unchanged) = match state.alerts.get(&spec.id) {
            Some(e) => (Some(e.live), e.spec == *spec),
            None => (None, false),
        };
        if unchanged {
            report.unchanged += 1;
            continue;
        }
        match (was_live, spec.enabled) {
            (Some(true), true) => {
                shard.cast(AlertMsg::Reconfigure(spec.clone()))?;
                regs.push(registration(spec, &shard, None));
            }
            (Some(true), false) => {
                shard.cast(AlertMsg::Remove(spec.id.clone()))?;
                state.router.cast(RouterMsg::Unregister(spec.id.clone()))?;
            }
            (_, true) => {
                let seed = load_seed(&state.store, spec.clone(), Some(watermark)).await?;
                add_to_shard(&shard, seed).await?;
                regs.push(registration(spec, &shard, None));
            }
            (_, false) => {}
        }
        if was_live.is_some() {
            report.changed.push(spec.id.clone());
        } else {
            report.added.push(spec.id.clone());
            state.removed.retain(|r| r != &spec.id);
        }
        state.alerts.insert(
            spec.id.clone(),
            AlertEntry {
                spec: spec.clone(),
                live: spec.enabled,
            },
        );
    }
    if !regs.is_empty() {
        ractor::call!(state.router, RouterMsg::Register, regs)?;
    }
    state.config = new;
    Ok(report)
}

/// How long `Shutdown` may take at most, beyond the drain timeout.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
