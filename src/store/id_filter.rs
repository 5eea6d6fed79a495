//! What tells sealed runs of client ids apart without reading them: a filter for each run, and
//! one for each group of [`GROUP_RUNS`] consecutive runs.
//!
//! A new id (the common case) has to be ruled out by every run sealed within the window. With a
//! filter per run only, that is one filter per run: 26–33 runs after ten seconds of a flood of
//! ids, 87 at the default cap of 10 million, and asking them was 10 % of alertd's CPU in the
//! ids benchmark, the largest single cost of ids (issue 21). A group's filter answers for eight
//! runs at once, so a lookup asks the groups and the few runs not yet grouped — about
//! runs / 8 + 7 filters — and a run's own filter only when its group says "maybe". Group filters
//! are 8-bit (≈ 1.13 bytes an id, "maybe" wrongly for 0.4 % of ids, which then ask the eight
//! run filters): half the memory of 16-bit ones, for a pre-filter whose mistakes cost little.
//! The run filters stay, so a group's "maybe" reads the disk only for the run that has the id.
//!
//! Groups are built by the sealing thread from the first 8 key bytes of each run, kept in
//! memory from sealing until their group is built (at most eight runs' worth, ≈ 7 MiB at the
//! largest sets); at open, from the blocks read for the run filters. Nothing of this is on disk.

use std::sync::Arc;
use xorf::{BinaryFuse16, BinaryFuse8, Filter as _};

/// Runs per group filter.
pub(super) const GROUP_RUNS: usize = 8;
/// Runs smaller than this keep their first 8 key bytes sorted instead of a filter (exact, and
/// the filter's fixed overhead would dominate).
const EXACT_FILTER_IDS: usize = 256;

/// A set of ids, as the first 8 bytes of their keys.
pub(super) enum Filter {
    /// 0.0015 % false positives, ≈ 2.3 bytes an id: a run's own filter.
    Fuse16(BinaryFuse16),
    /// 0.4 % false positives, ≈ 1.13 bytes an id: a group's.
    Fuse8(BinaryFuse8),
    /// Sorted (small sets, or a filter that could not be built).
    Exact(Box<[u64]>),
}

impl Filter {
    /// A run's filter, from its sorted and deduplicated key halves (see [`his`]).
    pub(super) fn run(his: &[u64]) -> Filter {
        if his.len() >= EXACT_FILTER_IDS {
            if let Ok(f) = BinaryFuse16::try_from(his) {
                return Filter::Fuse16(f);
            }
        }
        Filter::Exact(his.into())
    }

    pub(super) fn may_contain(&self, hi: u64) -> bool {
        match self {
            Filter::Fuse16(f) => f.contains(&hi),
            Filter::Fuse8(f) => f.contains(&hi),
            Filter::Exact(v) => v.binary_search(&hi).is_ok(),
        }
    }
}

/// Sorted and deduplicated, as filters are built from them (a binary fuse filter cannot be
/// built over repeated keys).
pub(super) fn his(mut his: Vec<u64>) -> Arc<[u64]> {
    his.sort_unstable();
    his.dedup();
    his.into()
}

/// One filter for the runs numbered `first..=last`, answering "maybe" for every id of each.
pub(super) struct Group {
    pub(super) first: u64,
    pub(super) last: u64,
    pub(super) filter: Filter,
}

impl Group {
    /// Over consecutive runs, oldest first: (run number, its key halves).
    pub(super) fn build(members: &[(u64, Arc<[u64]>)]) -> Group {
        let mut all: Vec<u64> = Vec::with_capacity(members.iter().map(|m| m.1.len()).sum());
        for (_, his) in members {
            all.extend_from_slice(his);
        }
        // An id accepted again after its window, or two keys alike in their first 8 bytes.
        all.sort_unstable();
        all.dedup();
        let filter = match all.len() >= EXACT_FILTER_IDS {
            true => BinaryFuse8::try_from(&all).map(Filter::Fuse8).ok(),
            false => None,
        }
        .unwrap_or_else(|| Filter::run(&all));
        Group {
            first: members.first().map_or(0, |m| m.0),
            last: members.last().map_or(0, |m| m.0),
            filter,
        }
    }
}

/// For each key half in `his`, the runs whose filters may hold it, asking group filters first.
/// `runs` are (number, filter) in increasing numbers, `groups` likewise and disjoint. Group by
/// group and run by run rather than id by id, so one filter stays in the cache for all the ids.
pub(super) fn maybe_runs(
    runs: &[(u64, Arc<Filter>)],
    groups: &[Arc<Group>],
    his: &[u64],
) -> Vec<Vec<u64>> {
    let mut maybe: Vec<Vec<u64>> = vec![Vec::new(); his.len()];
    let mut groups = groups.iter().peekable();
    let mut i = 0;
    while i < runs.len() {
        let run = runs[i].0;
        while groups.next_if(|g| g.last < run).is_some() {}
        match groups.peek() {
            Some(g) if g.first <= run => {
                let members = runs[i..].iter().take_while(|(r, _)| *r <= g.last).count();
                let members = &runs[i..i + members];
                for (hi, maybe) in his.iter().zip(&mut maybe) {
                    if g.filter.may_contain(*hi) {
                        maybe.extend(
                            members
                                .iter()
                                .filter(|(_, f)| f.may_contain(*hi))
                                .map(|(r, _)| *r),
                        );
                    }
                }
                i += members.len();
            }
            _ => {
                let filter = &runs[i].1;
                for (hi, maybe) in his.iter().zip(&mut maybe) {
                    if filter.may_contain(*hi) {
                        maybe.push(run);
                    }
                }
                i += 1;
            }
        }
    }
    maybe
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key halves of `n` ids from `seed`, spread like hashes.
    fn keys(seed: u64, n: usize) -> Vec<u64> {
        (0..n as u64)
            .map(|i| {
                (seed << 32 | i)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .rotate_left(17)
            })
            .collect()
    }

    /// Runs 1..=n of 1,000 ids each (run 5 small: an exact filter), the first `grouped` of them
    /// in groups of eight.
    type Runs = Vec<(u64, Arc<Filter>)>;

    fn sealed(n: u64, grouped: usize) -> (Runs, Vec<Arc<Group>>, Vec<Vec<u64>>) {
        let members: Vec<(u64, Arc<[u64]>)> = (1..=n)
            .map(|r| (r, his(keys(r, if r == 5 { 100 } else { 1_000 }))))
            .collect();
        let runs = members
            .iter()
            .map(|(r, h)| (*r, Arc::new(Filter::run(h))))
            .collect();
        let groups = members[..grouped]
            .chunks(GROUP_RUNS)
            .map(|c| Arc::new(Group::build(c)))
            .collect();
        let ids = members.iter().map(|(_, h)| h.to_vec()).collect();
        (runs, groups, ids)
    }

    #[test]
    fn every_run_holding_an_id_is_a_maybe_whether_grouped_or_not() {
        let (runs, groups, ids) = sealed(21, 16);
        assert_eq!(groups.len(), 2);
        for (r, his) in ids.iter().enumerate() {
            let run = r as u64 + 1;
            for maybe in maybe_runs(&runs, &groups, his) {
                assert!(maybe.contains(&run), "run {run} lost one of its ids");
            }
        }
    }

    #[test]
    fn groups_answer_as_the_runs_do_but_rule_out_more() {
        let (runs, groups, _) = sealed(21, 16);
        let new = keys(99, 20_000);
        let alone = maybe_runs(&runs, &[], &new);
        let grouped = maybe_runs(&runs, &groups, &new);
        let mut wrong = 0;
        for (a, g) in alone.iter().zip(&grouped) {
            assert!(
                g.iter().all(|r| a.contains(r)),
                "a group added a run: {g:?} {a:?}"
            );
            wrong += g.len();
        }
        // 20,000 new ids × 21 runs at 0.0015 %: a handful at most.
        assert!(wrong < 20, "{wrong}");
    }

    #[test]
    fn a_group_whose_first_runs_expired_still_answers_for_the_rest() {
        let (mut runs, groups, ids) = sealed(16, 16);
        runs.drain(..3); // runs 1–3 dropped; the first group covers 4–8
        for (r, his) in ids.iter().enumerate().skip(3) {
            for maybe in maybe_runs(&runs, &groups, his) {
                assert!(maybe.contains(&(r as u64 + 1)));
            }
        }
        assert!(maybe_runs(&runs, &groups, &ids[0])
            .iter()
            .all(|m| m.iter().all(|r| *r > 3)));
    }
}
