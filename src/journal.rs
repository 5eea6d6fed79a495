//! The journal actor: durable, group-committed appends to the inbox.
//!
//! HTTP handlers send validated batches. While one commit (one fsync) runs on a blocking thread,
//! newly arriving batches wait; when it ends they are all committed together in the next
//! transaction. Each request is answered only after its commit, and the stored events are then
//! forwarded to the router in sequence order.

use crate::clock::now_ms;
use crate::event::{Event, EventBody};
use crate::metrics;
use crate::router::RouterMsg;
use crate::store::{AppendOutcome, NewEvent, Store};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What a successful append answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub accepted: usize,
    pub duplicates: usize,
}

type Reply = RpcReplyPort<Result<Appended, String>>;

/// Messages the journal understands.
pub enum JournalMsg {
    Append(Vec<NewEvent>, Reply),
    Committed(Result<Vec<AppendOutcome>, String>, Vec<(usize, Reply)>),
    /// Replies when nothing is pending or being committed.
    Flush(RpcReplyPort<()>),
}

/// Start-up arguments.
pub struct JournalArgs {
    pub store: Store,
    pub router: ActorRef<RouterMsg>,
    /// The running config: the de-duplication window is read at each commit, so a reload
    /// applies to ingest and to expiry at the same moment.
    pub config: crate::config::LiveConfig,
    /// Events accepted by handlers but not yet committed; ingest refuses with 503 above a limit.
    pub queued: Arc<AtomicUsize>,
}

pub struct JournalState {
    args: JournalArgs,
    pending: Vec<(Vec<NewEvent>, Reply)>,
    committing: bool,
    flushes: Vec<RpcReplyPort<()>>,
}

/// The journal actor.
pub struct Journal;

/// The ingest kind name of an event, for metrics.
pub fn kind_name(e: &Event) -> &'static str {
    match &e.body {
        EventBody::Trace { .. } => "trace",
        EventBody::FeedbackScore { .. } => "feedback_score",
        EventBody::Guardrail { .. } => "guardrail",
        EventBody::Object { event_type, .. } => match event_type.as_str() {
            "prompt:created" => "prompt_created",
            "prompt:committed" => "prompt_committed",
            "prompt:deleted" => "prompt_deleted",
            _ => "experiment_finished",
        },
    }
}

fn start_commit(myself: &ActorRef<JournalMsg>, state: &mut JournalState) {
    if state.committing || state.pending.is_empty() {
        return;
    }
    state.committing = true;
    let batch = std::mem::take(&mut state.pending);
    let mut replies = Vec::with_capacity(batch.len());
    let mut requests = Vec::with_capacity(batch.len());
    for (events, reply) in batch {
        replies.push((events.len(), reply));
        requests.push(events);
    }
    let store = state.args.store.clone();
    let window = state.args.config.borrow().ingest.dedup_window.as_millis() as i64;
    let me = myself.clone();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let n: usize = requests.iter().map(Vec::len).sum();
        let r = store
            .append(requests, now_ms(), window)
            .map_err(|e| e.to_string());
        metrics::journal_commit(started.elapsed().as_secs_f64(), n);
        let _ = me.cast(JournalMsg::Committed(r, replies));
    });
}

impl Actor for Journal {
    type Msg = JournalMsg;
    type State = JournalState;
    type Arguments = JournalArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: JournalArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(JournalState {
            args,
            pending: Vec::new(),
            committing: false,
            flushes: Vec::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            JournalMsg::Append(events, reply) => state.pending.push((events, reply)),
            JournalMsg::Committed(result, replies) => {
                state.committing = false;
                let total: usize = replies.iter().map(|(n, _)| n).sum();
                state.args.queued.fetch_sub(total, Ordering::AcqRel);
                match result {
                    Ok(outcomes) => {
                        let mut routed = Vec::new();
                        let mut by_kind: HashMap<&'static str, u64> = HashMap::new();
                        for ((_, reply), outcome) in replies.into_iter().zip(outcomes) {
                            for (_, e) in &outcome.stored {
                                *by_kind.entry(kind_name(e)).or_default() += 1;
                            }
                            let _ = reply.send(Ok(Appended {
                                accepted: outcome.stored.len(),
                                duplicates: outcome.duplicates,
                            }));
                            routed
                                .extend(outcome.stored.into_iter().map(|(s, e)| (s, Arc::new(e))));
                        }
                        for (kind, n) in by_kind {
                            metrics::events(kind, "accepted", n);
                        }
                        if !routed.is_empty() {
                            state.args.router.cast(RouterMsg::Route(routed))?;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "journal commit failed; answering 503");
                        for (_, reply) in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
            JournalMsg::Flush(reply) => state.flushes.push(reply),
        }
        start_commit(&myself, state);
        if !state.committing && state.pending.is_empty() {
            for f in state.flushes.drain(..) {
                let _ = f.send(());
            }
        }
        Ok(())
    }
}
