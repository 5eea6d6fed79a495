//! Client ids hashed, and checked against the sealed runs' filters, on the request's own thread.
//!
//! Every append runs on one commit thread, so whatever it does per event limits ingest for the
//! whole daemon. With a client id on every event, hashing the id and asking each sealed run's
//! filter "may this id be yours?" was a third of that thread's time (issue 21: ingest with ids
//! at 60 % of the rate without). Both depend only on the id and on runs that never change once
//! sealed, so the HTTP and source tasks do them in parallel, before handing the events over:
//! [`ClientId::new`] hashes, [`Store::probe_ids`] asks the filters of the runs sealed so far and
//! records which may hold the id. The commit thread then asks only runs sealed since, and reads
//! a run only when its filter said "maybe" — the same answers it would have got itself.

use super::id_filter::{maybe_runs, Filter, Group};
use super::id_key::{id_key, sha_key};
use super::ids::Key;
use super::{NewEvent, Store};
use std::sync::{Arc, Mutex};

/// A client event id as de-duplication sees it: the hash of workspace and id, and what the
/// sealed runs' filters said about it when it was probed.
#[derive(Clone)]
pub struct ClientId {
    pub(super) key: Key,
    /// Its key before schema 9, while ids remembered by it may be live (see `id_key`).
    pub(super) sha: Option<Key>,
    pub(super) probe: Option<Probe>,
}

impl ClientId {
    /// The id `id` of workspace `workspace` (ids are per workspace).
    pub fn new(workspace: &str, id: &str) -> ClientId {
        ClientId {
            key: id_key(workspace, id),
            sha: sha_key(workspace, id),
            probe: None,
        }
    }
}

/// Two client ids are the same id, whatever was probed.
impl PartialEq for ClientId {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for ClientId {}

impl std::fmt::Debug for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientId(")?;
        for b in &self.key[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Which sealed runs may hold an id, as their filters answered for the runs up to `through`.
#[derive(Clone, Debug)]
pub(super) struct Probe {
    generation: u64,
    through: u64,
    /// Almost always empty (a filter answers "maybe" wrongly for 0.0015 % of ids).
    maybe: Vec<u64>,
}

impl Probe {
    /// Whether the probe already knows run `run` does not hold the id. Runs are sealed in the
    /// order of their numbers, so every run numbered up to `through` that still exists was in
    /// the snapshot probed; a reload of the file (new generation) voids the probe.
    pub(super) fn rules_out(&self, generation: u64, run: u64) -> bool {
        self.generation == generation && run <= self.through && !self.maybe.contains(&run)
    }

    /// Whether the probe rules out run `run` and every run before it: then an append looking
    /// from the newest run back can stop here instead of passing every run of the window
    /// (tens of them under a flood of ids) for each id.
    pub(super) fn rules_out_through(&self, generation: u64, run: u64) -> bool {
        self.generation == generation && run <= self.through && self.maybe.iter().all(|m| *m > run)
    }
}

/// The sealed runs' filters as of their last change, for probing without the id state's lock
/// (which an append holds until its commit).
#[derive(Default)]
pub(super) struct Published(Mutex<Arc<Snapshot>>);

#[derive(Default)]
pub(super) struct Snapshot {
    pub(super) generation: u64,
    /// (run number, filter), in the order of their numbers.
    pub(super) runs: Vec<(u64, Arc<Filter>)>,
    /// Filters over groups of those runs, likewise in order.
    pub(super) groups: Vec<Arc<Group>>,
}

impl Snapshot {
    /// What the filters say about one id (an id the append has to probe itself).
    pub(super) fn probe(&self, key: &Key) -> Probe {
        let hi = super::ids::hi64(key);
        Probe {
            generation: self.generation,
            through: self.runs.last().map_or(0, |r| r.0),
            maybe: maybe_runs(&self.runs, &self.groups, &[hi]).swap_remove(0),
        }
    }
}

impl Published {
    pub(super) fn set(&self, snapshot: Arc<Snapshot>) {
        *self
            .0
            .lock()
            .expect("published runs lock is never poisoned") = snapshot;
    }

    fn get(&self) -> Arc<Snapshot> {
        self.0
            .lock()
            .expect("published runs lock is never poisoned")
            .clone()
    }
}

impl Store {
    /// Probes the client ids of events about to be appended against the sealed runs (see the
    /// module doc). Optional: an id not probed is probed by the append itself.
    pub fn probe_ids(&self, events: &mut [NewEvent]) {
        if events.iter().all(|e| e.client_id.is_none()) {
            return;
        }
        let snapshot = self.inner.ids.published.get();
        let Some(&(through, _)) = snapshot.runs.last() else {
            return;
        };
        let mut ids: Vec<&mut ClientId> = events
            .iter_mut()
            .filter_map(|e| e.client_id.as_mut())
            .collect();
        let his: Vec<u64> = ids.iter().map(|id| super::ids::hi64(&id.key)).collect();
        let maybe = maybe_runs(&snapshot.runs, &snapshot.groups, &his);
        for (id, maybe) in ids.iter_mut().zip(maybe) {
            id.probe = Some(Probe {
                generation: snapshot.generation,
                through,
                maybe,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_rules_out_only_runs_it_saw_say_no_in_its_generation() {
        let p = Probe {
            generation: 2,
            through: 7,
            maybe: vec![5],
        };
        assert!(p.rules_out(2, 3));
        assert!(p.rules_out(2, 7));
        assert!(!p.rules_out(2, 5), "the filter said maybe");
        assert!(!p.rules_out(2, 8), "sealed after the probe");
        assert!(!p.rules_out(3, 3), "the file was reloaded since");
        assert!(p.rules_out_through(2, 4) && p.rules_out_through(2, 1));
        assert!(!p.rules_out_through(2, 5), "run 5 may hold it");
        assert!(!p.rules_out_through(2, 6), "run 5, before it, may hold it");
        assert!(!p.rules_out_through(2, 8) && !p.rules_out_through(3, 1));
    }

    #[test]
    fn client_ids_are_per_workspace_and_equal_whatever_was_probed() {
        let a = ClientId::new("w", "x");
        let mut b = ClientId::new("w", "x");
        b.probe = Some(Probe {
            generation: 0,
            through: 1,
            maybe: vec![],
        });
        assert_eq!(a, b);
        assert_ne!(a, ClientId::new("v", "x"));
        assert_ne!(ClientId::new("w", "x"), ClientId::new("w", "y"));
    }
}
