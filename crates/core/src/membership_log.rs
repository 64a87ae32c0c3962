//! Which membership is in force, at every index of the log.
//!
//! A membership entry takes effect as soon as it is appended, committed or not (Raft
//! §6); truncating it reverts to the one before. Below the log's membership entries sits
//! a base: the membership of the latest snapshot, or the one the node was started with.
//! Invariant: `entries` is ordered by index and every index is above `base.0`.

use crate::membership::Membership;
use crate::types::{Entry, EntryPayload, LogId, LogIndex};

#[derive(Debug)]
pub(crate) struct MembershipLog {
    base: (LogIndex, Membership),
    entries: Vec<(LogId, Membership)>,
}

impl MembershipLog {
    pub(crate) fn new(base_index: LogIndex, base: Membership, entries: Vec<(LogId, Membership)>) -> MembershipLog {
        let entries = entries.into_iter().filter(|(id, _)| id.index > base_index).collect();
        MembershipLog { base: (base_index, base), entries }
    }

    /// The membership in force now.
    pub(crate) fn effective(&self) -> &Membership {
        self.entries.last().map_or(&self.base.1, |(_, membership)| membership)
    }

    /// The index of the entry that set the membership in force (the base index if none).
    pub(crate) fn effective_index(&self) -> LogIndex {
        self.entries.last().map_or(self.base.0, |(id, _)| id.index)
    }

    /// The membership in force at `index`.
    pub(crate) fn at(&self, index: LogIndex) -> &Membership {
        self.entries.iter().rev().find(|(id, _)| id.index <= index).map_or(&self.base.1, |(_, membership)| membership)
    }

    pub(crate) fn on_append(&mut self, entries: &[Entry]) {
        for entry in entries {
            if let EntryPayload::Membership(membership) = &entry.payload {
                self.entries.push((entry.log_id, membership.clone()));
            }
        }
    }

    pub(crate) fn on_truncate(&mut self, from: LogIndex) {
        self.entries.retain(|(id, _)| id.index < from);
    }

    /// A snapshot at `index` now carries the membership in force there.
    pub(crate) fn on_snapshot(&mut self, index: LogIndex, membership: Membership) {
        self.entries.retain(|(id, _)| id.index > index);
        self.base = (index, membership);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NodeId;

    fn config(ids: &[u64]) -> Membership {
        Membership::with_voters(ids.iter().copied()).unwrap()
    }

    fn entry(index: u64, membership: Membership) -> Entry {
        Entry { log_id: LogId::new(1, index), payload: EntryPayload::Membership(membership) }
    }

    #[test]
    fn a_membership_entry_takes_effect_when_appended_and_is_undone_by_truncation() {
        let mut log = MembershipLog::new(LogIndex(0), config(&[1, 2, 3]), Vec::new());
        log.on_append(&[entry(5, config(&[1, 2, 3, 4]))]);
        assert!(log.effective().is_voter(NodeId(4)));
        assert_eq!(log.at(LogIndex(4)), &config(&[1, 2, 3]));
        log.on_truncate(LogIndex(5));
        assert_eq!(log.effective(), &config(&[1, 2, 3]));
    }

    #[test]
    fn a_snapshot_becomes_the_new_base() {
        let mut log = MembershipLog::new(LogIndex(0), config(&[1]), Vec::new());
        log.on_append(&[entry(3, config(&[1, 2])), entry(8, config(&[1, 2, 3]))]);
        log.on_snapshot(LogIndex(5), config(&[1, 2]));
        assert_eq!(log.at(LogIndex(5)), &config(&[1, 2]));
        assert_eq!(log.effective(), &config(&[1, 2, 3]));
        assert_eq!(log.effective_index(), LogIndex(8));
    }
}
