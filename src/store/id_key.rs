//! The 16-byte key a client id is remembered by, and the keys of files written before it.
//!
//! A key is the first half of a cryptographic hash of workspace, a zero byte and the id, so no
//! client can make another's id collide with its own. It is BLAKE3 since schema 9: SHA-256,
//! before, cost 394 ns an id on a Xeon without SHA instructions, 8 % of alertd's CPU under a
//! flood of ids, and BLAKE3 118 ns (`cargo run --release` of a loop over a million 36-byte ids,
//! 2026-11-26; issue 21).
//!
//! **Ids remembered before the upgrade** keep their SHA-256 keys: the ids themselves are not
//! stored, so they cannot be hashed again. The upgrade marks them (the runs in
//! `ingest_id_sha_runs`, the log rows up to `ingest_id_sha.log_through`), and while a store
//! holds any, every client id is hashed both ways ([`sha_key`]) and a marked run or set is
//! searched by the old key. They expire with their window like any id, and then ids are hashed
//! once again: the cost of an upgrade is a dedup window of double hashing.

use super::ids::Key;
use std::sync::atomic::{AtomicUsize, Ordering};

pub(super) fn id_key(workspace: &str, id: &str) -> Key {
    // One call over a stack buffer: the incremental hasher's set-up and three updates cost
    // 150 ns an id against 100 ns (a loop over a million 36-byte ids); the same bytes, the
    // same key.
    let mut buf = [0u8; ONE_SHOT];
    let len = workspace.len() + 1 + id.len();
    let hash = if len <= ONE_SHOT {
        buf[..workspace.len()].copy_from_slice(workspace.as_bytes());
        buf[workspace.len() + 1..len].copy_from_slice(id.as_bytes());
        blake3::hash(&buf[..len])
    } else {
        let mut h = blake3::Hasher::new();
        h.update(workspace.as_bytes());
        h.update(&[0]);
        h.update(id.as_bytes());
        h.finalize()
    };
    let mut key = [0; 16];
    key.copy_from_slice(&hash.as_bytes()[..16]);
    key
}

/// Workspace, separator and id up to this many bytes are hashed from a stack buffer.
const ONE_SHOT: usize = 256;

/// The key the same id had before schema 9, while some open store still remembers such ids.
pub(super) fn sha_key(workspace: &str, id: &str) -> Option<Key> {
    (SHA_STORES.load(Ordering::Relaxed) > 0).then(|| old_key(workspace, id))
}

/// The first half of SHA-256 over workspace, a zero byte and the id (schemas ≤ 8).
pub(super) fn old_key(workspace: &str, id: &str) -> Key {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(workspace.as_bytes());
    h.update([0u8]);
    h.update(id.as_bytes());
    let d = h.finalize();
    d[..16].try_into().expect("a SHA-256 digest has 32 bytes")
}

/// Open stores that remember ids keyed by SHA-256 (a process usually has one store; tests many).
static SHA_STORES: AtomicUsize = AtomicUsize::new(0);

/// One store's share of [`SHA_STORES`]: counted while it lives and its ids need the old key.
#[derive(Default)]
pub(super) struct ShaIds(bool);

impl ShaIds {
    pub(super) fn get(&self) -> bool {
        self.0
    }

    pub(super) fn set(&mut self, holds: bool) {
        if holds != self.0 {
            self.0 = holds;
            if holds {
                SHA_STORES.fetch_add(1, Ordering::Relaxed);
            } else {
                SHA_STORES.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for ShaIds {
    fn drop(&mut self) {
        self.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_workspace_and_the_old_ones_differ() {
        assert_eq!(id_key("w", "x"), id_key("w", "x"));
        assert_ne!(id_key("w", "x"), id_key("v", "x"));
        assert_ne!(
            id_key("wx", ""),
            id_key("w", "x"),
            "the zero byte separates"
        );
        assert_ne!(id_key("w", "x"), old_key("w", "x"));
        // BLAKE3("w\0x"), as schema 9 stores it; a long id is hashed the same way.
        assert_eq!(id_key("w", "x")[..], blake3::hash(b"w\0x").as_bytes()[..16]);
        let long = "i".repeat(2 * ONE_SHOT);
        let whole = [b"w\0".as_slice(), long.as_bytes()].concat();
        assert_eq!(
            id_key("w", &long)[..],
            blake3::hash(&whole).as_bytes()[..16]
        );
        // SHA-256("w\0x"), as schemas ≤ 8 stored it.
        assert_eq!(old_key("w", "x")[..4], [0xf9, 0x8e, 0x0c, 0xf4]);
    }
}
