//! Counts the bytes redb writes to the data file (`alertd_store_bytes_written_total`).
//!
//! On an edge host with flash that wears, the write volume matters as much as the file's size;
//! the kernel's per-process counters mix in logs and are not always readable, so the store
//! counts what it hands to the file itself. Everything else is the file backend redb would
//! use anyway (locking included).

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
use std::cell::Cell;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

thread_local! {
    /// What the commit running on this thread is for (see [`attribute`]).
    static COMMIT: Cell<&'static str> = const { Cell::new("other") };
}

/// Names what the writes made on this thread are for until the guard drops
/// (`alertd_store_commit_bytes_total{commit}`). redb writes a transaction's pages in its commit,
/// on the committing thread, so this tells which kind of commit wears the disk, which the
/// per-table value counts cannot (they miss redb's page and tree overhead).
pub(super) fn attribute(commit: &'static str) -> Attributed {
    Attributed(COMMIT.replace(commit))
}

/// Restores the previous name when dropped.
pub(super) struct Attributed(&'static str);

impl Drop for Attributed {
    fn drop(&mut self) {
        COMMIT.set(self.0);
    }
}

/// Counts bytes written to a file of the store, for the commit running on this thread.
pub(super) fn count(n: u64) {
    crate::metrics::store_bytes_written(n, COMMIT.get());
}

/// redb's file backend with a write counter.
#[derive(Debug)]
pub(super) struct CountingFile(FileBackend, Arc<AtomicU64>);

impl StorageBackend for CountingFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.0.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.0.write(offset, data)?;
        self.1.fetch_add(data.len() as u64, Ordering::Relaxed);
        count(data.len() as u64);
        Ok(())
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.0.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.0.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.query_lock_range(start, end)
    }
}

impl CountingFile {
    /// The bytes written through this backend so far (the metric sums every file's, the append
    /// log's included), for tests that measure what one commit writes.
    pub(super) fn counter(&self) -> Arc<AtomicU64> {
        self.1.clone()
    }

    /// Opens (or creates) the data file the way `redb::Builder::create` does.
    pub(super) fn open(path: &std::path::Path) -> Result<CountingFile, super::StoreError> {
        let open = || -> Result<CountingFile, redb::DatabaseError> {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            Ok(CountingFile(FileBackend::new(file)?, Arc::default()))
        };
        open().map_err(|e| super::StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}
