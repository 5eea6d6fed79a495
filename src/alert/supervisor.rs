//! The alert supervisor: owns one [`AlertActor`] per enabled alert and restarts the ones that die.
//!
//! Restart intensity follows OTP: an alert that dies more than [`MAX_RESTARTS`] times within
//! [`RESTART_PERIOD`] is marked `failed` (shown by `GET /v1/alerts`, counted by
//! `alertd_alerts_failed`) and left stopped until the next reload retries it. A failed alert
//! does not hold back inbox pruning; when retried it replays what is left.
//!
//! The [`Registry`] it shares with the scheduler is also the fence between restarts and tick
//! commits: the scheduler holds its lock while it filters and commits a tick, and a restart
//! holds it while it retires the old incarnation (new generation number) and reads the seed. So a
//! new incarnation starts either after a commit that includes its predecessor's last decisions,
//! or from a state those decisions never reached the store from — never both, which would send a
//! notification twice.

use super::actor::{
    state_from_seed, AlertActor, AlertArgs, AlertMsg, AlertSeed, AlertView, TickReply,
};
use super::AlertState;
use crate::config::{AlertSpec, Config};
use crate::metrics;
use crate::router::{Registration, RouterMsg};
use crate::store::Store;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// More restarts than this within [`RESTART_PERIOD`] mark an alert failed.
pub const MAX_RESTARTS: usize = 5;
/// The window of the restart intensity check.
pub const RESTART_PERIOD: Duration = Duration::from_secs(60);

/// One running alert as the scheduler sees it.
pub struct Member {
    pub spec: Arc<AlertSpec>,
    /// `None` while a new incarnation is being started.
    pub actor: Option<ActorRef<AlertMsg>>,
    /// Incarnation number; answers from any other generation are discarded.
    pub generation: u64,
    /// Every inbox event at or below this is reflected in the alert's committed state.
    pub durable_seq: u64,
}

/// The running alerts, shared by the alert supervisor (writes membership) and the scheduler
/// (reads actors, advances durable points). Its lock is the restart/commit fence.
#[derive(Default)]
pub struct Registry {
    pub members: HashMap<String, Member>,
    next_generation: u64,
}

impl Registry {
    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// Inbox events at or below this are reflected in every running alert's committed state.
    pub fn prune_point(&self) -> Option<u64> {
        self.members.values().map(|m| m.durable_seq).min()
    }
}

/// The registry handle.
pub type SharedRegistry = Arc<tokio::sync::Mutex<Registry>>;

/// How an alert is doing, for `GET /v1/alerts` and the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Disabled,
    /// Too many restarts; retried at the next reload.
    Failed,
}

/// One configured alert with its live view.
pub struct AlertInfo {
    pub spec: Arc<AlertSpec>,
    pub state: RunState,
    pub view: Option<AlertView>,
    pub restarts: u64,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: usize,
    /// Failed alerts started again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retried: Vec<String>,
    /// Settings that only take effect after a restart; filled in by the reload module, which
    /// knows the old and the new file.
    pub restart_required: Vec<String>,
}

/// Messages the alert supervisor understands.
pub enum AlertSupervisorMsg {
    /// Brings the running alerts in line with this config (at start and on reload).
    Apply(Arc<Config>, RpcReplyPort<ReloadReport>),
    Alerts(RpcReplyPort<Vec<AlertInfo>>),
}

/// Start-up arguments.
pub struct AlertSupervisorArgs {
    /// The scheduler's reply channel: a death is reported there so a tick stops waiting.
    pub tick_replies: tokio::sync::mpsc::UnboundedSender<TickReply>,
    /// Handed to every alert actor, to ask for early evaluation of a threshold crossing.
    pub early: Arc<crate::scheduler::EarlyFire>,
    pub store: Store,
    pub router: ActorRef<RouterMsg>,
    pub registry: SharedRegistry,
}

pub struct AlertSupervisorState {
    tick_replies: tokio::sync::mpsc::UnboundedSender<TickReply>,
    early: Arc<crate::scheduler::EarlyFire>,
    store: Store,
    router: ActorRef<RouterMsg>,
    registry: SharedRegistry,
    /// Every configured alert, enabled or not.
    configured: BTreeMap<String, Arc<AlertSpec>>,
    /// Running actors: alert id and generation.
    by_actor: HashMap<ActorId, (String, u64)>,
    restarts: HashMap<String, VecDeque<Instant>>,
    restart_totals: HashMap<String, u64>,
    failed: HashMap<String, String>,
    started: bool,
}

/// The alert supervisor actor.
pub struct AlertSupervisor;

/// The router registration of an alert.
pub fn registration(
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

/// Runs a store call on a blocking thread, retrying while the store fails: a storage error while
/// (re)starting alerts or replaying must not stop the daemon; the store reopens itself.
pub async fn retrying<T: Send + 'static>(
    what: &'static str,
    store: &Store,
    f: impl Fn(&Store) -> Result<T, crate::store::StoreError> + Send + Sync + Clone + 'static,
) -> T {
    let mut wait = Duration::from_millis(100);
    loop {
        let s = store.clone();
        let g = f.clone();
        match tokio::task::spawn_blocking(move || g(&s)).await {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) => tracing::error!(error = %e, "{what}: storage error; retrying"),
            Err(e) => tracing::error!(error = %e, "{what}: task failed; retrying"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Rewrites a stopped alert's checkpoint with its bucket items inside (see
/// [`Store::inline_bucket_items`]).
async fn inline_bucket_items(store: &Store, spec: Arc<AlertSpec>) {
    retrying("keeping a stopped alert's bucket items", store, move |s| {
        let spec = spec.clone();
        s.inline_bucket_items(&spec.id.clone(), move |cp, raw| {
            let items = crate::store::items::decode_items(raw);
            AlertState::inline_checkpoint(spec.clone(), cp, &items)
        })
    })
    .await;
}

impl AlertSupervisorState {
    /// Starts (or restarts) alerts: retires old incarnations and reads the seeds under the fence,
    /// spawns the actors, and registers them with the router, which replays the inbox to them.
    /// `floor`: replay starts no earlier than this (alerts added by a reload start at the
    /// router's watermark; restarts start from their checkpoint and the store's prune point).
    async fn start_alerts(
        &mut self,
        cell: &ActorCell,
        specs: Vec<Arc<AlertSpec>>,
        floor: Option<u64>,
    ) -> Result<(), ActorProcessingErr> {
        if specs.is_empty() {
            return Ok(());
        }
        let mut regs = Vec::with_capacity(specs.len());
        let mut guard = self.registry.clone().lock_owned().await;
        let ids: Vec<String> = specs.iter().map(|s| s.id.clone()).collect();
        let seeds = retrying("reading alert checkpoints", &self.store, move |s| {
            s.load_seeds(&ids)
        })
        .await;
        let applied = seeds.applied;
        let stored_items = Arc::new(crate::store::items::decode_items(&seeds.items));
        let mut states = Vec::with_capacity(specs.len());
        for (spec, checkpoint) in specs.into_iter().zip(seeds.checkpoints) {
            let state = state_from_seed(AlertSeed {
                spec: spec.clone(),
                checkpoint,
                applied_through: floor.unwrap_or(applied).max(applied),
                stored_items: stored_items.clone(),
            });
            let generation = guard.generation();
            let start = state.applied_seq();
            guard.members.insert(
                spec.id.clone(),
                Member {
                    spec: spec.clone(),
                    actor: None,
                    generation,
                    durable_seq: start,
                },
            );
            states.push((spec, state, generation, start));
        }
        drop(guard);
        let mut spawned = Vec::with_capacity(states.len());
        for (spec, state, generation, start) in states {
            let (actor, _) = Actor::spawn_linked(
                None,
                AlertActor,
                AlertArgs {
                    state,
                    generation,
                    early: self.early.clone(),
                },
                cell.clone(),
            )
            .await?;
            self.by_actor
                .insert(actor.get_id(), (spec.id.clone(), generation));
            regs.push(registration(&spec, &actor, Some(start)));
            spawned.push((spec.id.clone(), generation, actor));
        }
        {
            let mut reg = self.registry.lock().await;
            for (id, generation, actor) in spawned {
                if let Some(m) = reg
                    .members
                    .get_mut(&id)
                    .filter(|m| m.generation == generation)
                {
                    m.actor = Some(actor);
                }
            }
            metrics::set_actors("alert", reg.members.len());
        }
        ractor::call!(self.router, RouterMsg::Register, regs)?;
        Ok(())
    }

    /// Stops an alert's actor on purpose (removed or disabled); `forget` also deletes its
    /// checkpoint, under the fence so no tick commit writes it back.
    async fn stop_alert(&mut self, id: &str, forget: bool) {
        let mut reg = self.registry.lock().await;
        let stopped = reg.members.remove(id);
        if let Some(m) = &stopped {
            if let Some(actor) = &m.actor {
                self.by_actor.remove(&actor.get_id());
                actor.stop(Some("removed from the config".into()));
            }
        }
        // Kept, not running (disabled, failed): its bucket items move into its checkpoint, so
        // the stored items are not kept for it (no tick commits it any more: it left the fence).
        if let (Some(m), false) = (stopped, forget) {
            inline_bucket_items(&self.store, m.spec).await;
        }
        let _ = self.router.cast(RouterMsg::Unregister(id.to_string()));
        if forget {
            let id = id.to_string();
            retrying("removing an alert's checkpoint", &self.store, move |s| {
                s.remove_checkpoints(std::slice::from_ref(&id))
            })
            .await;
        }
        metrics::set_actors("alert", reg.members.len());
    }

    /// Applies a config: the first call starts every enabled alert, later calls diff by id.
    async fn apply(
        &mut self,
        myself: &ActorRef<AlertSupervisorMsg>,
        config: Arc<Config>,
    ) -> Result<ReloadReport, ActorProcessingErr> {
        let cell = myself.get_cell();
        let mut report = ReloadReport::default();
        if !self.started {
            self.started = true;
            // Checkpoints of alerts removed from the config while alertd was down.
            let keep: Vec<String> = config.alerts.iter().map(|a| a.id.clone()).collect();
            retrying("dropping state of removed alerts", &self.store, move |s| {
                s.retain_checkpoints(&keep)
            })
            .await;
            // Disabled alerts keep their bucket items in their checkpoints (see stop_alert).
            let with_items = retrying("reading bucket item floors", &self.store, |s| {
                s.alerts_with_bucket_items()
            })
            .await;
            for spec in config.alerts.iter().filter(|a| !a.enabled) {
                if with_items.contains(&spec.id) {
                    inline_bucket_items(&self.store, spec.clone()).await;
                }
            }
            for spec in &config.alerts {
                self.configured.insert(spec.id.clone(), spec.clone());
            }
            let live = config
                .alerts
                .iter()
                .filter(|a| a.enabled)
                .cloned()
                .collect();
            self.start_alerts(&cell, live, None).await?;
            report.added = config.alerts.iter().map(|a| a.id.clone()).collect();
            return Ok(report);
        }
        let watermark = ractor::call!(self.router, RouterMsg::Watermark)?;
        let old_ids: Vec<String> = self.configured.keys().cloned().collect();
        for id in old_ids {
            if config.alert(&id).is_none() {
                self.configured.remove(&id);
                self.failed.remove(&id);
                self.restarts.remove(&id);
                self.stop_alert(&id, true).await;
                metrics::forget_alert(&id);
                report.removed.push(id);
            }
        }
        let mut start_fresh = Vec::new();
        let mut retry = Vec::new();
        let mut regs = Vec::new();
        for spec in &config.alerts {
            let old = self.configured.insert(spec.id.clone(), spec.clone());
            let failed = self.failed.remove(&spec.id).is_some();
            if failed {
                self.restarts.remove(&spec.id);
                if spec.enabled {
                    retry.push(spec.clone());
                    report.retried.push(spec.id.clone());
                }
                if old.as_ref() != Some(spec) {
                    report.changed.push(spec.id.clone());
                }
                continue;
            }
            let was_live = old.as_ref().map(|o| o.enabled);
            if old.as_ref() == Some(spec) {
                report.unchanged += 1;
                continue;
            }
            match (was_live, spec.enabled) {
                (Some(true), true) => {
                    let mut reg = self.registry.lock().await;
                    if let Some(m) = reg.members.get_mut(&spec.id) {
                        m.spec = spec.clone();
                        if let Some(actor) = &m.actor {
                            actor.cast(AlertMsg::Reconfigure(spec.clone()))?;
                            regs.push(registration(spec, actor, None));
                        }
                    }
                }
                (Some(true), false) => self.stop_alert(&spec.id, false).await,
                (_, true) => start_fresh.push(spec.clone()),
                (_, false) => {}
            }
            if old.is_some() {
                report.changed.push(spec.id.clone());
            } else {
                report.added.push(spec.id.clone());
            }
        }
        if !regs.is_empty() {
            ractor::call!(self.router, RouterMsg::Register, regs)?;
        }
        self.start_alerts(&cell, start_fresh, Some(watermark))
            .await?;
        self.start_alerts(&cell, retry, None).await?;
        metrics::set_alerts_failed(self.failed.len());
        Ok(report)
    }

    /// An alert actor died: restart it, or mark it failed past the restart intensity.
    async fn on_death(
        &mut self,
        myself: &ActorRef<AlertSupervisorMsg>,
        id: String,
        reason: String,
    ) -> Result<(), ActorProcessingErr> {
        let Some(spec) = self.configured.get(&id).cloned() else {
            return Ok(());
        };
        *self.restart_totals.entry(id.clone()).or_default() += 1;
        metrics::alert_restart(&id);
        let now = Instant::now();
        let recent = self.restarts.entry(id.clone()).or_default();
        recent.push_back(now);
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > RESTART_PERIOD)
        {
            recent.pop_front();
        }
        if recent.len() > MAX_RESTARTS {
            tracing::error!(alert = %id, reason = %reason, restarts = recent.len(),
                "alert keeps dying; marked failed until the next reload");
            self.stop_alert(&id, false).await;
            self.failed.insert(id, reason);
            metrics::set_alerts_failed(self.failed.len());
            return Ok(());
        }
        tracing::error!(alert = %id, reason = %reason, "alert actor died; restarting it from its checkpoint");
        self.start_alerts(&myself.get_cell(), vec![spec], None)
            .await
    }

    async fn infos(&self) -> Vec<AlertInfo> {
        let actors: HashMap<String, ActorRef<AlertMsg>> = {
            let reg = self.registry.lock().await;
            reg.members
                .iter()
                .filter_map(|(id, m)| m.actor.clone().map(|a| (id.clone(), a)))
                .collect()
        };
        // Ask every alert at once, then collect: one slow alert costs its timeout once.
        let mut waiting = HashMap::with_capacity(actors.len());
        for (id, actor) in actors {
            let (tx, rx) = ractor::concurrency::oneshot();
            if actor.cast(AlertMsg::View(tx.into())).is_ok() {
                waiting.insert(id, rx);
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut out = Vec::with_capacity(self.configured.len());
        for (id, spec) in &self.configured {
            let state = if self.failed.contains_key(id) {
                RunState::Failed
            } else if spec.enabled {
                RunState::Running
            } else {
                RunState::Disabled
            };
            let view = match waiting.remove(id) {
                Some(rx) => tokio::time::timeout_at(deadline, rx)
                    .await
                    .ok()
                    .and_then(Result::ok),
                None => None,
            };
            out.push(AlertInfo {
                spec: spec.clone(),
                state,
                view,
                restarts: self.restart_totals.get(id).copied().unwrap_or(0),
            });
        }
        out
    }
}

impl Actor for AlertSupervisor {
    type Msg = AlertSupervisorMsg;
    type State = AlertSupervisorState;
    type Arguments = AlertSupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: AlertSupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(AlertSupervisorState {
            tick_replies: args.tick_replies,
            early: args.early,
            store: args.store,
            router: args.router,
            registry: args.registry,
            configured: BTreeMap::new(),
            by_actor: HashMap::new(),
            restarts: HashMap::new(),
            restart_totals: HashMap::new(),
            failed: HashMap::new(),
            started: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AlertSupervisorMsg::Apply(config, reply) => {
                let report = state.apply(&myself, config).await?;
                let _ = reply.send(report);
            }
            AlertSupervisorMsg::Alerts(reply) => {
                let _ = reply.send(state.infos().await);
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
        if let Some((id, generation)) = state.by_actor.remove(&cell.get_id()) {
            let _ = state.tick_replies.send(TickReply {
                alert_id: Arc::from(id.as_str()),
                generation,
                tick_no: 0,
                output: None,
                died: true,
            });
            state.on_death(&myself, id, reason).await?;
        }
        Ok(())
    }
}
