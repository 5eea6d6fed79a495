//! Quarantine: stored rows that cannot be read are set aside, not fatal.
//!
//! A row can become unreadable through disk corruption, or because an older alertd wrote a value
//! larger than the codec's read limit (a release without byte budgets let 20 large prompt events
//! make an 80 MiB outbox row, and the daemon then refused to start — a crash loop under
//! systemd). Every time the data file is opened, [`sweep`] reads each row of the outbox, dead
//! letters, delivered log, suppressed log and silences; one that does not decode is moved, in
//! the opening transaction, to the `quarantine` table (what, why, when) with its original bytes
//! in `quarantine_bytes`, and logged. `GET /v1/quarantine` lists them and the
//! `alertd_quarantined_rows` gauge counts them. Nothing is deleted: the bytes stay for a repair.
//!
//! Alert checkpoints have their own recovery (an unreadable one starts its alert fresh, named in
//! the log); inbox rows are bounded by `server.max_body` and are read by the journal's owner.

use crate::store::tables::{self, Swept};
use crate::store::StoreError;
use serde::{Deserialize, Serialize};

/// One row set aside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantinedRow {
    /// UUIDv7 of the quarantine entry.
    pub id: String,
    /// The table the row was in.
    pub table: String,
    /// The row's key there (a delivery or silence id).
    pub key: String,
    /// Why it could not be read.
    pub reason: String,
    /// Size of the row's value in bytes.
    pub bytes: u64,
    pub quarantined_ms: i64,
}

/// Moves every unreadable row of the swept tables into the quarantine, inside the transaction
/// that opens the file, and publishes the count.
pub fn sweep(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let now = crate::clock::now_ms();
    for which in Swept::ALL {
        let moved = tables::quarantine_unreadable(txn, &which, |key, reason, size| {
            let id = uuid::Uuid::now_v7();
            let row = QuarantinedRow {
                id: id.to_string(),
                table: which.name().to_string(),
                key: uuid::Uuid::from_u128(key).to_string(),
                reason: reason.to_string(),
                bytes: size as u64,
                quarantined_ms: now,
            };
            (id.as_u128(), crate::codec::encode(&row))
        })?;
        for (key, reason, size) in moved {
            tracing::error!(
                table = which.name(),
                key = %uuid::Uuid::from_u128(key),
                bytes = size,
                reason = %reason,
                "an unreadable stored row was moved to quarantine (GET /v1/quarantine); alertd starts without it"
            );
        }
    }
    crate::metrics::set_quarantined(tables::quarantined(txn)?);
    Ok(())
}
