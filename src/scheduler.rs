//! The scheduler: every `engine.tick` it evaluates all alerts and commits the result atomically.
//!
//! One tick is: ask the router how far it has routed, ask every alert to evaluate (they have all
//! events up to that point in their mailboxes), then commit in one transaction the changed
//! checkpoints, the new outbox rows and the pruning of inbox events every alert has applied. Only
//! after the commit are the deliveries handed to the dispatcher, so a notification is durable
//! before its first attempt.

use crate::alert::actor::{AlertMsg, ShardTick, TickOutput};
use crate::config::Config;
use crate::delivery::dispatcher::DispatcherMsg;
use crate::destination::{self, Context};
use crate::metrics;
use crate::router::RouterMsg;
use crate::store::{Store, TickCommit};
use ractor::{ActorRef, RpcReplyPort};
use std::time::Duration;

/// How long one alert may take to answer a tick before the tick goes on without it.
const TICK_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The parts of the system a tick talks to.
pub struct TickInputs<'a> {
    pub store: &'a Store,
    pub router: &'a ActorRef<RouterMsg>,
    pub dispatcher: &'a ActorRef<DispatcherMsg>,
    /// The alert shards.
    pub shards: &'a [ActorRef<AlertMsg>],
    pub config: &'a Config,
    pub removed: Vec<String>,
}

/// The outcome of a tick, for logging and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct TickReport {
    pub notifications: usize,
    pub committed: bool,
    /// Some alert did not answer; the inbox was not pruned past it.
    pub incomplete: bool,
}

/// Runs one tick at `now`. A failed commit is returned as an error: the alerts' in-memory state
/// is then ahead of the store and must be reloaded.
pub async fn tick(inputs: TickInputs<'_>, now: i64) -> Result<TickReport, String> {
    crate::testhooks::hold_tick().await;
    let through =
        ractor::call!(inputs.router, RouterMsg::Watermark).map_err(|e| format!("router: {e}"))?;
    let mut outputs: Vec<TickOutput> = Vec::new();
    let mut incomplete = false;
    // Send every tick first, then collect: shards evaluate in parallel.
    let mut waiting = Vec::with_capacity(inputs.shards.len());
    for (n, shard) in inputs.shards.iter().enumerate() {
        let (tx, rx) = ractor::concurrency::oneshot::<ShardTick>();
        let msg = AlertMsg::Tick {
            now_ms: now,
            through,
            reply: RpcReplyPort::from(tx),
        };
        if shard.cast(msg).is_ok() {
            waiting.push((n, rx));
        } else {
            incomplete = true;
        }
    }
    let deadline = tokio::time::Instant::now() + TICK_CALL_TIMEOUT;
    for (n, rx) in waiting {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(t)) => {
                incomplete |= t.incomplete;
                outputs.extend(t.outputs);
            }
            _ => {
                incomplete = true;
                tracing::warn!(shard = n, "alert shard did not answer the tick");
            }
        }
    }
    let ctx = Context::for_host(inputs.config.delivery.max_retries);
    let mut commit = TickCommit {
        prune_through: (!incomplete).then_some(through),
        expire_ids_before_ms: now - inputs.config.ingest.dedup_window.as_millis() as i64,
        remove_checkpoints: inputs.removed,
        ..TickCommit::default()
    };
    let mut firing = 0;
    for o in &outputs {
        firing += o.firing;
        if let Some(cp) = &o.checkpoint {
            commit.checkpoints.push((o.spec.id.clone(), cp.clone()));
        }
        for n in &o.notifications {
            tracing::info!(alert = %n.alert_id, delivery = %n.id, event_type = %n.event_type,
                state = n.state.as_str(), events = n.event_count, "notification decided");
            metrics::notification(&n.alert_id, n.state.as_str());
            commit
                .deliveries
                .push(destination::prepare(n, &o.spec, &ctx));
        }
    }
    metrics::set_alerts_firing(firing);
    let report = TickReport {
        notifications: commit.deliveries.len(),
        committed: true,
        incomplete,
    };
    if commit.checkpoints.is_empty()
        && commit.deliveries.is_empty()
        && commit.remove_checkpoints.is_empty()
        && commit.prune_through.is_none()
    {
        return Ok(report);
    }
    let store = inputs.store.clone();
    let commit = tokio::task::spawn_blocking(move || store.commit_tick(&commit).map(|_| commit))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if !commit.deliveries.is_empty() {
        inputs
            .dispatcher
            .cast(DispatcherMsg::Enqueue(commit.deliveries))
            .map_err(|e| format!("dispatcher: {e}"))?;
    }
    Ok(report)
}
