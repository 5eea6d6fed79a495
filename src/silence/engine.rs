//! What a tick does with silences — kept in one place so it moves with the scheduler.
//!
//! 1. Once per tick the scheduler takes [`Store::silences`](crate::store::Store::silences), an
//!    `Arc` snapshot, and hands it to every alert with the tick.
//! 2. Each alert's pure [`AlertState::tick_silenced`](crate::alert::AlertState::tick_silenced)
//!    splits what it decided into notifications to send and [`Suppressed`] ones.
//! 3. [`record`] turns the suppressed ones into delivery-history rows that commit in the same
//!    transaction as the tick (so a crash cannot lose the record of a muted notification or
//!    keep one that was never decided), counts them and logs them; [`gauge`] publishes how many
//!    silences are active.

use crate::alert::Suppressed;
use crate::config::{AlertSpec, Config};
use crate::delivery::Delivery;
use crate::destination::{self, Context};
use crate::metrics;
use crate::silence::SilenceSet;
use crate::store::TickCommit;
use serde::{Deserialize, Serialize};

/// A notification a silence kept from being sent, as the delivery history lists it
/// (`GET /v1/deliveries?status=suppressed`): the delivery it would have been, never attempted,
/// and the silence that matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuppressedDelivery {
    pub delivery: Delivery,
    pub silence_id: String,
}

/// Adds one alert's suppressed notifications to the tick's commit, with the body they would
/// have had.
pub fn record(
    spec: &AlertSpec,
    suppressed: &[Suppressed],
    ctx: &Context,
    config: &Config,
    commit: &mut TickCommit,
) {
    for s in suppressed {
        let n = &s.notification;
        tracing::info!(alert = %n.alert_id, delivery = %n.id, event_type = %n.event_type,
            state = n.state.as_str(), silence = %s.silence_id, "notification suppressed by a silence");
        metrics::notification_suppressed(&n.alert_id);
        let mut delivery = destination::prepare(n, spec, ctx);
        delivery.finished_ms = Some(n.created_ms);
        commit.suppressed.push(SuppressedDelivery {
            delivery,
            silence_id: s.silence_id.clone(),
        });
    }
    commit.suppressed_log_size = config.delivery.log_size;
}

/// Publishes `alertd_silences_active` as of `now_ms`.
pub fn gauge(silences: &SilenceSet, now_ms: i64) {
    metrics::set_silences_active(silences.active_count(now_ms));
}
