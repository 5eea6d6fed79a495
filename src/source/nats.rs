//! A JetStream source: a durable pull consumer whose messages are appended through the journal
//! and acknowledged only after the commit.
//!
//! One task per `[[source.nats]]` table. It connects (the client then reconnects by itself),
//! creates the stream with the configured subjects if it does not exist, creates or reuses the
//! durable pull consumer, and then loops: take the messages that are ready (up to `batch`),
//! validate each ([`super::message`]), terminate the invalid ones (`AckKind::Term`: never
//! redelivered, logged with their stream sequence, counted), send the valid ones to the journal,
//! and ack each once the journal answers that its commit is durable. Appends are sent in order
//! from this loop and up to [`MAX_IN_FLIGHT`] groups wait for their commit at once, so
//! validation of the next group overlaps the commit of the previous one and the journal's
//! group commit (one transaction, one fsync for every request it holds) sees several groups at
//! a time.
//!
//! Each valid message is one journal request ([`JournalMsg::AppendKeyed`]): its events are
//! committed together or not at all, under one de-duplication id, the `Nats-Msg-Id` header else
//! `<stream>:<sequence>`. A crash between commit and ack redelivers the message after
//! `ack_wait`, and that id makes the journal count it once. One id per message, not per event,
//! is what makes the source cheap: a 1,000-event message costs one id lookup and one id row.
//!
//! When the journal queue is full the loop stops pulling until there is room: messages wait in
//! JetStream, not in alertd's memory, and nothing is nacked in a loop. Any failure to set up or
//! a lost consumer ends the session, which is retried with exponential backoff.

use super::{message, JournalHandle, NatsSpec, SourceStatus};
use crate::clock::now_ms;
use crate::delivery::backoff;
use crate::journal::{Appended, JournalMsg};
use crate::metrics;
use crate::store::NewEvent;
use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::{self, stream, AckKind};
use futures_util::{FutureExt as _, StreamExt as _};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Appends waiting for their commit at once, per source.
pub const MAX_IN_FLIGHT: usize = 4;
/// A group stops growing at this many payload bytes, whatever `batch` says: about 7,000 events
/// of 140 bytes, a commit size where redb is efficient and a commit stays in the milliseconds.
const GROUP_BYTES: usize = 1 << 20;
/// Bytes one pull request may bring: bounds what waits in the client's buffer (the prefetch).
const PULL_BYTES: usize = 16 << 20;
/// Groups larger than this are validated on a blocking thread, like large HTTP bodies.
const INLINE_BYTES: usize = 64 << 10;
/// Session retry schedule (set-up failures, lost consumer).
const RETRY_INITIAL: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// The client's own reconnect schedule.
const RECONNECT_INITIAL: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How often a paused source looks at the journal queue again.
const PAUSE_POLL: Duration = Duration::from_millis(20);
/// Idle heartbeat asked of the server on pull requests; two missed ones are reported.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Lifetime of one pull request.
const EXPIRES: Duration = Duration::from_secs(30);
/// How long a commit may take before the messages are left for redelivery.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Redelivery delay asked for messages whose commit failed (store unavailable).
const RETRY_COMMIT_DELAY: Duration = Duration::from_secs(5);

/// Runs the source until `stop` turns true.
pub async fn run(
    spec: NatsSpec,
    journal: JournalHandle,
    status: Arc<SourceStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut attempt = 0u32;
    while !stopped(&stop) {
        let outcome = session(&spec, &journal, &status, &mut stop, &mut attempt).await;
        status.set_consuming(false);
        status.set_paused(false);
        match outcome {
            Ok(()) => break,
            Err(e) => {
                attempt = attempt.saturating_add(1);
                let wait = backoff::delay(attempt, RETRY_INITIAL, RETRY_MAX, rand::random());
                tracing::warn!(source = %spec.name, error = %e, retry_in = ?wait, "source cannot consume; retrying");
                status.error(e);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
    status.set_connected(false);
    tracing::info!(source = %spec.name, "source stopped");
}

/// True once the daemon asked to stop (or is gone, so nobody will ever ask).
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// One connection's life: connect, set up, consume until stopped or broken.
async fn session(
    spec: &NatsSpec,
    journal: &JournalHandle,
    status: &Arc<SourceStatus>,
    stop: &mut watch::Receiver<bool>,
    attempt: &mut u32,
) -> Result<(), String> {
    let client = connect(spec, status).await?;
    status.set_connected(true);
    let result = consume(&client, spec, journal, status, stop, attempt).await;
    // Acks are buffered by the client: send them before the connection goes away.
    if tokio::time::timeout(Duration::from_secs(5), client.flush())
        .await
        .is_err()
    {
        tracing::warn!(source = %spec.name, "acks not flushed in time; those messages will be redelivered");
    }
    result
}

async fn connect(
    spec: &NatsSpec,
    status: &Arc<SourceStatus>,
) -> Result<async_nats::Client, String> {
    let mut options = async_nats::ConnectOptions::new();
    if let Some(f) = &spec.credentials_file {
        options = options
            .credentials_file(f)
            .await
            .map_err(|e| format!("credentials_file {}: {e}", f.display()))?;
    }
    let events_status = status.clone();
    let name = spec.name.clone();
    options = options
        .name(format!("alertd {}", spec.name))
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| {
            backoff::delay(
                attempts.min(32) as u32,
                RECONNECT_INITIAL,
                RECONNECT_MAX,
                rand::random(),
            )
        })
        .event_callback(move |event| {
            let status = events_status.clone();
            let name = name.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!(source = %name, "reconnected");
                        status.set_connected(true);
                    }
                    async_nats::Event::Disconnected | async_nats::Event::Closed => {
                        tracing::warn!(source = %name, "connection lost; reconnecting");
                        status.set_connected(false);
                        status.error("connection lost");
                    }
                    other => tracing::warn!(source = %name, event = %other, "NATS client event"),
                }
            }
        });
    let addrs: Vec<async_nats::ServerAddr> = spec
        .urls
        .iter()
        .map(|u| u.parse().map_err(|e| format!("url {u:?}: {e}")))
        .collect::<Result<_, _>>()?;
    options
        .connect(addrs)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", spec.urls.join(",")))
}

/// Creates the stream if missing and the durable consumer if missing.
async fn set_up(client: &async_nats::Client, spec: &NatsSpec) -> Result<PullConsumer, String> {
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(stream::Config {
            name: spec.stream.clone(),
            subjects: spec.subjects.clone(),
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("stream {:?}: {e}", spec.stream))?;
    let mut config = pull::Config {
        durable_name: Some(spec.consumer.clone()),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: spec.ack_wait,
        max_ack_pending: (spec.batch * (MAX_IN_FLIGHT + 1)) as i64,
        ..Default::default()
    };
    // One subject goes in `filter_subject`, which every JetStream server understands; several
    // need `filter_subjects` (nats-server 2.10 or later).
    if let [one] = spec.subjects.as_slice() {
        config.filter_subject = one.clone();
    } else {
        // An older server ignores `filter_subjects` and would deliver every subject.
        let version = client.server_info().version;
        if !server_at_least(&version, 2, 10) {
            return Err(format!(
                "several subjects need nats-server 2.10 or later to filter the consumer; \
                 this server is {version}. Use one subject (a wildcard) or upgrade the server"
            ));
        }
        config.filter_subjects = spec.subjects.clone();
    }
    let consumer: PullConsumer = stream
        .get_or_create_consumer(&spec.consumer, config)
        .await
        .map_err(|e| {
            format!(
                "consumer {:?} on stream {:?}: {e}",
                spec.consumer, spec.stream
            )
        })?;
    let existing = &consumer.cached_info().config;
    let mut filters = existing.filter_subjects.clone();
    if !existing.filter_subject.is_empty() {
        filters.push(existing.filter_subject.clone());
    }
    if !filters.is_empty() && filters != spec.subjects {
        tracing::warn!(
            source = %spec.name,
            consumer_filters = ?filters,
            configured = ?spec.subjects,
            "the existing consumer filters other subjects than configured; it keeps its own. \
             Delete the consumer or use a new consumer name to apply the configured subjects"
        );
    }
    Ok(consumer)
}

async fn consume(
    client: &async_nats::Client,
    spec: &NatsSpec,
    journal: &JournalHandle,
    status: &Arc<SourceStatus>,
    stop: &mut watch::Receiver<bool>,
    attempt: &mut u32,
) -> Result<(), String> {
    let consumer = set_up(client, spec).await?;
    status.set_pending(consumer.cached_info().num_pending);
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(spec.batch)
        .max_bytes_per_batch(PULL_BYTES)
        .heartbeat(HEARTBEAT)
        .expires(EXPIRES)
        .messages()
        .await
        .map_err(|e| format!("cannot pull from consumer {:?}: {e}", spec.consumer))?;
    status.set_consuming(true);
    *attempt = 0;
    tracing::info!(source = %spec.name, pending = consumer.cached_info().num_pending, "consuming");

    let mut in_flight: JoinSet<()> = JoinSet::new();
    let result = loop {
        if stopped(stop) {
            break Ok(());
        }
        while in_flight.try_join_next().is_some() {}
        if in_flight.len() >= MAX_IN_FLIGHT {
            in_flight.join_next().await;
            continue;
        }
        // Backpressure: leave the messages in JetStream while the journal is full.
        if journal.full() {
            status.set_paused(true);
            tokio::select! {
                _ = tokio::time::sleep(PAUSE_POLL) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        status.set_paused(false);
        let first = tokio::select! {
            _ = stop.changed() => continue,
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
            m = messages.next() => m,
        };
        let mut group = Vec::new();
        match first {
            None => break Err("the consumer's message stream ended".to_string()),
            Some(Err(e)) => match e.kind() {
                MessagesErrorKind::ConsumerDeleted
                | MessagesErrorKind::NoResponders
                | MessagesErrorKind::PushBasedConsumer => {
                    break Err(format!("consumer {:?}: {e}", spec.consumer))
                }
                _ => {
                    tracing::warn!(source = %spec.name, error = %e, "pulling failed; the client retries");
                    status.error(e.to_string());
                    continue;
                }
            },
            Some(Ok(m)) => group.push(m),
        }
        let mut bytes = group[0].payload.len();
        while group.len() < spec.batch && bytes < GROUP_BYTES {
            match messages.next().now_or_never() {
                Some(Some(Ok(m))) => {
                    bytes += m.payload.len();
                    group.push(m);
                }
                _ => break,
            }
        }
        if let Some(waiting) = handle_group(group, bytes, spec, journal, status).await {
            in_flight.spawn(waiting);
        }
    };
    // Let appends already sent finish and be acked (or left for redelivery).
    while in_flight.join_next().await.is_some() {}
    result
}

/// A valid message, ready to append: its events, its de-duplication key and its acker.
struct Valid {
    acker: Acker,
    sequence: u64,
    key: String,
    events: Vec<NewEvent>,
}

/// A message sent to the journal, waiting for its commit before its ack.
struct Sent {
    acker: Acker,
    sequence: u64,
    kind: &'static str,
    answer: ractor::concurrency::OneshotReceiver<Result<Appended, String>>,
}

/// Validates a group, terminates the invalid messages and sends each valid message to the
/// journal as one keyed request (stored whole, de-duplicated by the message's id). Returns the
/// future that waits for the commits and acks.
async fn handle_group(
    group: Vec<jetstream::Message>,
    bytes: usize,
    spec: &NatsSpec,
    journal: &JournalHandle,
    status: &Arc<SourceStatus>,
) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    metrics::source_messages(&spec.name, "delivered", group.len() as u64);
    let now = now_ms();
    let mut parts = Vec::with_capacity(group.len());
    for m in group {
        let meta = m.info().map(|i| {
            (
                i.stream_sequence,
                i.pending,
                (i.published.unix_timestamp_nanos() / 1_000_000) as i64,
            )
        });
        let msg_id = m
            .headers
            .as_ref()
            // The constant, not the string: received headers are parsed into the standard name,
            // which a `&str` lookup (a custom name) never matches.
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str().to_string());
        let subject = m.subject.to_string();
        let (message, acker) = m.split();
        parts.push((meta, msg_id, subject, message.payload, acker));
    }
    if let Some((Ok((_, pending, _)), ..)) = parts.last() {
        status.set_pending(*pending);
    }
    let stream = spec.stream.clone();
    let limits = journal.limits;
    let max_object = journal.max_object;
    let decode_all = move || {
        parts
            .into_iter()
            .map(|(meta, msg_id, subject, payload, acker)| {
                let sequence = meta.as_ref().ok().map(|m| m.0);
                let decoded = meta
                    .map_err(|e| format!("not a JetStream message: {e}"))
                    .and_then(|(seq, _, published)| {
                        let key = message::dedup_id(msg_id.as_deref(), &stream, seq)?;
                        let events = message::decode(&payload, published, now, limits)?;
                        Ok((key, crate::ingest::fit_objects(events, max_object)))
                    });
                (sequence, decoded, subject, acker)
            })
            .collect::<Vec<_>>()
    };
    let decoded = if bytes > INLINE_BYTES {
        match tokio::task::spawn_blocking(decode_all).await {
            Ok(d) => d,
            Err(e) => {
                // Nothing acked: every message of the group comes back after ack_wait.
                status.error(format!("validation task failed: {e}"));
                return None;
            }
        }
    } else {
        decode_all()
    };

    let mut valid = Vec::with_capacity(decoded.len());
    for (sequence, d, subject, acker) in decoded {
        match d {
            Ok((key, events)) => valid.push(Valid {
                acker,
                sequence: sequence.unwrap_or_default(),
                key,
                events,
            }),
            Err(error) => {
                tracing::warn!(source = %spec.name, sequence = sequence.unwrap_or_default(), %subject, error = %error, "invalid message terminated (not redelivered)");
                metrics::source_messages(&spec.name, "invalid", 1);
                metrics::events("unknown", "rejected", 1);
                if let Err(e) = acker.ack_with(AckKind::Term).await {
                    tracing::warn!(source = %spec.name, error = %e, "could not terminate the invalid message; it will be redelivered and terminated again");
                }
            }
        }
    }
    if valid.is_empty() {
        return None;
    }

    // Sent from the loop, so the journal sees this source's messages in stream order; the
    // journal commits all the requests it holds together (one fsync for the group).
    let mut sent = Vec::with_capacity(valid.len());
    for v in valid {
        let n = v.events.len();
        let kind = single_kind(&v.events);
        journal.queued.fetch_add(n, Ordering::AcqRel);
        let (tx, rx) = ractor::concurrency::oneshot();
        if let Err(e) = journal
            .journal
            .cast(JournalMsg::AppendKeyed(v.key, v.events, tx.into()))
        {
            // Not acked: it comes back after ack_wait.
            journal.queued.fetch_sub(n, Ordering::AcqRel);
            status.error(format!("the journal is not running: {e}"));
            break;
        }
        sent.push(Sent {
            acker: v.acker,
            sequence: v.sequence,
            kind,
            answer: rx,
        });
    }
    if sent.is_empty() {
        return None;
    }
    let name = spec.name.clone();
    let status = status.clone();
    Some(async move {
        let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
        let mut acked = 0;
        for s in sent {
            let committed: Result<Appended, String> =
                match tokio::time::timeout_at(deadline, s.answer).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Err("the journal stopped before answering".into()),
                    Err(_) => Err(format!("no commit within {COMMIT_TIMEOUT:?}")),
                };
            match committed {
                Ok(a) => {
                    if crate::testhooks::hold_source_acks() {
                        tracing::warn!(source = %name, sequence = s.sequence, "testhook: committed, holding the acks");
                        std::future::pending::<()>().await;
                    }
                    if a.duplicates > 0 {
                        metrics::events(s.kind, "duplicate", a.duplicates as u64);
                    }
                    match s.acker.ack().await {
                        Ok(()) => acked += 1,
                        Err(e) => {
                            tracing::warn!(source = %name, sequence = s.sequence, error = %e, "ack failed; the message will be redelivered and counted once")
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(source = %name, sequence = s.sequence, error = %e, "journal commit failed; the message will be redelivered");
                    status.error(format!("journal commit failed: {e}"));
                    let _ = s
                        .acker
                        .ack_with(AckKind::Nak(Some(RETRY_COMMIT_DELAY)))
                        .await;
                }
            }
        }
        metrics::source_messages(&name, "acked", acked);
    })
}

/// Whether a `major.minor.patch` server version is at least `major.minor`.
fn server_at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// The kind shared by every event, or `mixed`, for the duplicate counter.
fn single_kind(events: &[NewEvent]) -> &'static str {
    let mut kinds = events.iter().map(|e| crate::journal::kind_name(&e.event));
    match kinds.next() {
        Some(first) if kinds.all(|k| k == first) => first,
        _ => "mixed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_compare_by_major_and_minor() {
        assert!(server_at_least("2.10.0", 2, 10));
        assert!(server_at_least("v2.11.3-beta", 2, 10));
        assert!(server_at_least("3.0.0", 2, 10));
        assert!(!server_at_least("2.9.10", 2, 10));
        assert!(!server_at_least("garbage", 2, 10));
    }
}
