//! The router actor: sends each committed event to the alerts that could use it.
//!
//! The index maps (workspace, event type, project) to alert actors, so an event reaches only the
//! alerts whose scope could include it — with thousands of project-scoped alerts, routing stays
//! proportional to the alerts that match. Each alert gets one message per batch holding its
//! share of the batch (events are `Arc`s, never copied). The alert re-checks its scope itself.
//!
//! The router is also the one place that replays the inbox to alerts that (re)start, so replay
//! and live traffic never interleave out of order: a registration is handled between two `Route`
//! messages, replays everything routed so far into the new actor's mailbox, sends it
//! [`AlertMsg::Replayed`], and only then joins the index. A (re)started alert therefore sees
//! replay, then the marker, then live events, in sequence order with nothing skipped.

use crate::alert::actor::AlertMsg;
use crate::alert::summary::PointBatch;
use crate::event::{Event, EventType, Point};
use crate::store::Store;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::HashMap;
use std::sync::Arc;

/// The maps an event is looked up in, several times per event: SipHash, std's default, was
/// 5.2 % of alertd's CPU under batched ingest (`bench/profile.sh batch`). `foldhash` is
/// hashbrown's own default, still seeded per process; the maps' keys come from the config, and
/// events only look them up, so no sender can fill them with colliding keys.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Events with their inbox sequence numbers.
pub type Routed = Vec<(u64, Arc<Event>)>;

/// An alert's share of a batch: its own list, or — for the common alert that takes every
/// project, or one project, of one event type — the list shared by all such alerts, so a batch
/// reaching thousands of them costs one list, not one per alert.
#[derive(Clone)]
pub enum Batch {
    Own(Routed),
    Shared(Arc<SharedBatch>),
}

/// A list shared by many alerts, with the packed [`Point`]s of its events when they are all
/// traces (alerts with only trace thresholds read those, or the summaries built from them,
/// instead of the events).
pub struct SharedBatch {
    pub events: Routed,
    /// The project the list is of (as the alerts name it); `None`: every project.
    pub project: Option<String>,
    pub points: Option<PointBatch>,
}

impl Batch {
    /// The events, in sequence order.
    pub fn events(&self) -> &[(u64, Arc<Event>)] {
        match self {
            Batch::Own(v) => v,
            Batch::Shared(v) => &v.events,
        }
    }

    /// The events as points, when the batch has them, with the project the list is of
    /// (`None`: every project). An alert reads them only if that is its own scope
    /// ([`crate::alert::AlertState::points_scope`]): after a reload changed its scope, lists
    /// of the old one can still be on their way.
    pub fn points(&self) -> Option<(Option<&str>, &PointBatch)> {
        match self {
            Batch::Own(_) => None,
            Batch::Shared(v) => v.points.as_ref().map(|p| (v.project.as_deref(), p)),
        }
    }
}

/// An alert joining the index, with its actor.
pub struct Registration {
    pub alert_id: String,
    pub actor: ActorRef<AlertMsg>,
    pub workspace: String,
    /// Per event type: `None` takes every project, `Some` only events of these projects (names
    /// or ids).
    pub scopes: Vec<(EventType, Option<Vec<String>>)>,
    /// Replay inbox events after this sequence number, then send [`AlertMsg::Replayed`];
    /// `None` (a re-registration of a running actor after a reload) joins live only.
    pub replay_after: Option<u64>,
}

/// Messages the router understands.
pub enum RouterMsg {
    Route(Routed),
    Register(Vec<Registration>, RpcReplyPort<()>),
    Unregister(String),
    /// The highest sequence number routed so far: every alert has it in its mailbox.
    Watermark(RpcReplyPort<u64>),
}

/// Start-up arguments: the store and the sequence number already committed before start.
pub struct RouterArgs {
    pub store: Store,
    pub routed_through: u64,
}

/// An alert's dense slot number: batches are gathered in a `Vec` indexed by it, not a map.
type Target = usize;

/// The alerts of one (workspace, event type).
#[derive(Default)]
struct Table {
    /// Alerts taking every project that are sent their own list.
    all_projects: Vec<Target>,
    /// Alerts taking every project of only this type: sent the shared list. Kept apart so
    /// routing an event costs nothing per such alert.
    shared: Vec<Target>,
    by_project: Map<String, Vec<Target>>,
    /// Alerts taking one project (name or id) of only this type: sent the shared list of
    /// that project.
    shared_in: Map<String, Vec<Target>>,
}

/// Which shared list an alert with these scopes is sent: `None` when it is sent lists of its
/// own, else the project it takes (`Some(None)`: every project).
fn shared_scope(scopes: &[(EventType, Option<Vec<String>>)]) -> Option<Option<&str>> {
    match scopes {
        [(_, None)] => Some(None),
        [(_, Some(projects))] if projects.len() == 1 => Some(Some(projects[0].as_str())),
        _ => None,
    }
}

pub struct RouterState {
    store: Store,
    routed_through: u64,
    /// workspace → event type → alerts.
    index: Map<String, Map<EventType, Table>>,
    /// alert id → (workspace, event types, slot).
    members: HashMap<String, (String, Vec<EventType>, usize)>,
    /// The actor in each slot; `None` for a free slot.
    slots: Vec<Option<ActorRef<AlertMsg>>>,
    free: Vec<usize>,
    scratch: Vec<Routed>,
}

/// The router actor.
pub struct Router;

/// How many inbox rows a replay reads per step.
const REPLAY_CHUNK: usize = 4096;

impl RouterState {
    fn unregister(&mut self, id: &str) {
        let Some((ws, types, slot)) = self.members.remove(id) else {
            return;
        };
        self.slots[slot] = None;
        self.free.push(slot);
        let Some(by_type) = self.index.get_mut(&ws) else {
            return;
        };
        for t in types {
            if let Some(table) = by_type.get_mut(&t) {
                table.all_projects.retain(|s| *s != slot);
                table.shared.retain(|s| *s != slot);
                for v in table.by_project.values_mut() {
                    v.retain(|s| *s != slot);
                }
                table.by_project.retain(|_, v| !v.is_empty());
                for v in table.shared_in.values_mut() {
                    v.retain(|s| *s != slot);
                }
                table.shared_in.retain(|_, v| !v.is_empty());
            }
        }
    }

    fn register(&mut self, r: Registration) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some(r.actor.clone());
                s
            }
            None => {
                self.slots.push(Some(r.actor.clone()));
                self.slots.len() - 1
            }
        };
        // An alert of exactly one event type, taking every project or one, is sent the shared
        // list of that (workspace, event type, project).
        let by_type = self.index.entry(r.workspace.clone()).or_default();
        if let (Some(scope), [(t, _)]) = (shared_scope(&r.scopes), r.scopes.as_slice()) {
            let table = by_type.entry(*t).or_default();
            match scope {
                None => table.shared.push(slot),
                Some(p) => table.shared_in.entry(p.to_owned()).or_default().push(slot),
            }
            let types = vec![*t];
            self.members.insert(r.alert_id, (r.workspace, types, slot));
            return;
        }
        for (t, scope) in &r.scopes {
            let table = by_type.entry(*t).or_default();
            match scope {
                None => table.all_projects.push(slot),
                Some(projects) => {
                    for p in projects {
                        table.by_project.entry(p.clone()).or_default().push(slot);
                    }
                }
            }
        }
        let types = r.scopes.iter().map(|(t, _)| *t).collect();
        self.members.insert(r.alert_id, (r.workspace, types, slot));
    }

    fn route(&mut self, events: Routed) {
        // A reusable per-slot scratch, so a batch costs what it touches, not one entry per alert.
        let mut batches = std::mem::take(&mut self.scratch);
        batches.resize_with(self.slots.len(), Vec::new);
        let mut touched: Vec<usize> = Vec::new();
        // Per (workspace, event type, project or every project) with alerts sent a shared list:
        // that list.
        let mut shared: Map<(&str, EventType, Option<&str>), Routed> = Map::default();
        for (seq, e) in &events {
            let Some((ws, by_type)) = self.index.get_key_value(&e.workspace) else {
                continue;
            };
            for t in e.feeds().iter() {
                let Some(table) = by_type.get(&t) else {
                    continue;
                };
                let scoped = [e.project.as_deref(), e.project_id.as_deref()]
                    .into_iter()
                    .flatten()
                    .filter_map(|p| table.by_project.get(p))
                    .flatten();
                for &slot in table.all_projects.iter().chain(scoped) {
                    let batch = &mut batches[slot];
                    if batch.is_empty() {
                        touched.push(slot);
                    }
                    if batch.last().map(|(s, _)| *s) != Some(*seq) {
                        batch.push((*seq, e.clone()));
                    }
                }
                if !table.shared.is_empty() {
                    shared
                        .entry((ws.as_str(), t, None))
                        .or_default()
                        .push((*seq, e.clone()));
                }
                if !table.shared_in.is_empty() {
                    let (name, id) = (e.project.as_deref(), e.project_id.as_deref());
                    // An event whose id equals its name is in that project's list once.
                    let id = id.filter(|id| Some(*id) != name);
                    for p in [name, id].into_iter().flatten() {
                        if let Some((p, _)) = table.shared_in.get_key_value(p) {
                            shared
                                .entry((ws.as_str(), t, Some(p.as_str())))
                                .or_default()
                                .push((*seq, e.clone()));
                        }
                    }
                }
            }
        }
        // One message per alert per batch, whatever the batch size.
        for slot in touched {
            let evs = std::mem::take(&mut batches[slot]);
            if let Some(actor) = &self.slots[slot] {
                let _ = actor.cast(AlertMsg::Events(Batch::Own(evs)));
            }
        }
        for ((ws, t, project), evs) in shared {
            let points: Option<Vec<Point>> = evs.iter().map(|(s, e)| Point::of(*s, e)).collect();
            let evs = Arc::new(SharedBatch {
                events: evs,
                project: project.map(str::to_owned),
                points: points.map(PointBatch::new),
            });
            let table = &self.index[ws][&t];
            let slots = match project {
                None => &table.shared,
                Some(p) => &table.shared_in[p],
            };
            for &slot in slots {
                if let Some(actor) = &self.slots[slot] {
                    let _ = actor.cast(AlertMsg::Events(Batch::Shared(evs.clone())));
                }
            }
        }
        self.scratch = batches;
    }
}

impl Actor for Router {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = RouterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: RouterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(RouterState {
            store: args.store,
            routed_through: args.routed_through,
            index: Map::default(),
            members: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            scratch: Vec::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RouterMsg::Route(events) => {
                if let Some((last, _)) = events.last() {
                    state.routed_through = state.routed_through.max(*last);
                }
                state.route(events);
            }
            RouterMsg::Register(regs, reply) => {
                for r in &regs {
                    state.unregister(&r.alert_id);
                }
                // Replay (min replay_after, routed_through] to the registrations that want it.
                let replaying: Vec<&Registration> =
                    regs.iter().filter(|r| r.replay_after.is_some()).collect();
                if let Some(from) = replaying.iter().filter_map(|r| r.replay_after).min() {
                    let mut after = from;
                    while after < state.routed_through {
                        let chunk = crate::alert::supervisor::retrying(
                            "replaying the inbox",
                            &state.store,
                            move |s| s.read_inbox(after, REPLAY_CHUNK),
                        )
                        .await;
                        if chunk.is_empty() {
                            break;
                        }
                        after = chunk.last().map(|(s, _)| *s).unwrap_or(after);
                        let mut per: Vec<Routed> = vec![Vec::new(); replaying.len()];
                        for (seq, e) in chunk {
                            if seq > state.routed_through {
                                break;
                            }
                            let e = Arc::new(e);
                            let feeds = e.feeds();
                            for (i, r) in replaying.iter().enumerate() {
                                if r.replay_after.is_some_and(|a| seq > a)
                                    && r.workspace == e.workspace
                                    && feeds.iter().any(|t| r.scopes.iter().any(|(s, _)| *s == t))
                                {
                                    per[i].push((seq, e.clone()));
                                }
                            }
                        }
                        for (r, evs) in replaying.iter().zip(per) {
                            if !evs.is_empty() {
                                let _ = r.actor.cast(AlertMsg::Events(Batch::Own(evs)));
                            }
                        }
                    }
                }
                for r in &replaying {
                    let _ = r.actor.cast(AlertMsg::Replayed(state.routed_through));
                }
                for r in regs {
                    state.register(r);
                }
                let _ = reply.send(());
            }
            RouterMsg::Unregister(id) => state.unregister(&id),
            RouterMsg::Watermark(reply) => {
                let _ = reply.send(state.routed_through);
            }
        }
        Ok(())
    }
}
