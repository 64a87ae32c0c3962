//! The durability contract, in one place.
//!
//! Changes to the hard state and the log are staged while an input is handled and
//! leave the core as one `PersistRequest` when outputs are drained. Messages whose
//! truth depends on a staged or unsynced write are held here and released only when
//! the runtime reports that write durable:
//! - `Dependency::HardState`: the message relies on the current term and vote
//!   (vote requests and grants, responses that carry our term);
//! - `Dependency::Log`: the message acknowledges entries (append responses).
//!
//! The leader's own appends and heartbeats, and pre-vote traffic, depend on nothing
//! unsynced and leave at once, so the leader replicates while its own write is in flight.
//!
//! `durable_index` is the last index known to be both durable and identical to the
//! core's view of the log: a write with a truncation lowers it at once, because the
//! durable entries past the truncation point are no longer the ones the core holds.

use std::collections::VecDeque;

use crate::message::Envelope;
use crate::output::{PersistRequest, WriteId};
use crate::types::{Entry, HardState, LogId, LogIndex};

/// What a message needs to be durable before it may leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dependency {
    None,
    HardState,
    Log,
}

#[derive(Debug)]
struct PendingWrite {
    id: WriteId,
    last_index: LogIndex,
    truncate_from: Option<LogIndex>,
}

#[derive(Debug, Default)]
struct Staged {
    hard_state: bool,
    truncate_from: Option<LogIndex>,
    entries: Vec<Entry>,
    purge_upto: Option<LogId>,
}

#[derive(Debug)]
pub(crate) struct Durability {
    next_write: u64,
    staged: Staged,
    pending: VecDeque<PendingWrite>,
    /// The latest write that carried a term or vote change.
    last_hard_state_write: Option<WriteId>,
    acked: Option<WriteId>,
    durable_index: LogIndex,
    /// Everything up to here is durable in a snapshot.
    snapshot_floor: LogIndex,
    held: VecDeque<(WriteId, Envelope)>,
}

impl Durability {
    pub(crate) fn new(durable_index: LogIndex) -> Durability {
        Durability {
            next_write: 1,
            staged: Staged::default(),
            pending: VecDeque::new(),
            last_hard_state_write: None,
            acked: None,
            durable_index,
            snapshot_floor: LogIndex(0),
            held: VecDeque::new(),
        }
    }

    pub(crate) fn durable_index(&self) -> LogIndex {
        self.durable_index
    }

    /// Term or vote changed: the next write must carry the hard state.
    pub(crate) fn stage_hard_state(&mut self) {
        self.staged.hard_state = true;
    }

    pub(crate) fn stage_truncate(&mut self, from: LogIndex) {
        let staged = &mut self.staged;
        match staged.entries.first().map(|entry| entry.log_id.index) {
            Some(first) if from >= first => staged.entries.retain(|entry| entry.log_id.index < from),
            _ => {
                staged.entries.clear();
                staged.truncate_from = Some(staged.truncate_from.map_or(from, |earlier| earlier.min(from)));
            }
        }
        self.durable_index = self.durable_index.min(from.prev());
    }

    pub(crate) fn stage_append(&mut self, entries: &[Entry]) {
        self.staged.entries.extend_from_slice(entries);
    }

    /// The log up to `upto` is covered by a durable snapshot and may go.
    pub(crate) fn stage_purge(&mut self, upto: LogId) {
        if self.staged.purge_upto.is_none_or(|earlier| earlier.index < upto.index) {
            self.staged.purge_upto = Some(upto);
        }
    }

    /// Everything up to `index` is durable in a snapshot the runtime saved.
    pub(crate) fn covered_by_snapshot(&mut self, index: LogIndex) {
        self.snapshot_floor = self.snapshot_floor.max(index);
        self.durable_index = self.durable_index.max(index);
    }

    /// Whether the current term and vote are durable.
    pub(crate) fn hard_state_is_durable(&self) -> bool {
        !self.staged.hard_state && self.last_hard_state_write.is_none_or(|write| Some(write) <= self.acked)
    }

    /// Turns what was staged into one write. `hard_state` is the core's current one and
    /// `last_index` its last log index once this write is applied.
    pub(crate) fn take_write(&mut self, hard_state: HardState, last_index: LogIndex) -> Option<PersistRequest> {
        let staged = std::mem::take(&mut self.staged);
        if !staged.hard_state
            && staged.truncate_from.is_none()
            && staged.entries.is_empty()
            && staged.purge_upto.is_none()
        {
            return None;
        }
        let id = WriteId(self.next_write);
        self.next_write += 1;
        if staged.hard_state {
            self.last_hard_state_write = Some(id);
        }
        self.pending.push_back(PendingWrite { id, last_index, truncate_from: staged.truncate_from });
        Some(PersistRequest {
            id,
            // The commit index rides along with every write; it alone never causes one.
            hard_state: Some(hard_state),
            truncate_from: staged.truncate_from,
            entries: staged.entries,
            purge_upto: staged.purge_upto,
        })
    }

    /// Sends `envelope` now, or holds it until what it depends on is durable.
    /// Call after `take_write`, so a dependency on this round's write is seen.
    pub(crate) fn release_or_hold(&mut self, envelope: Envelope, dependency: Dependency) -> Option<Envelope> {
        let blocking = match dependency {
            Dependency::None => None,
            Dependency::HardState => self.last_hard_state_write.filter(|write| Some(*write) > self.acked),
            Dependency::Log => self.pending.back().map(|write| write.id),
        };
        match blocking {
            None => Some(envelope),
            Some(write) => {
                self.held.push_back((write, envelope));
                None
            }
        }
    }

    /// The runtime made `id` (and so every earlier write) durable. Returns the messages
    /// that may leave now.
    pub(crate) fn on_persisted(&mut self, id: WriteId) -> Vec<Envelope> {
        if self.acked.is_some_and(|acked| acked >= id) {
            return Vec::new();
        }
        assert!(id.0 < self.next_write, "persisted() reported write {id:?} that was never issued");
        self.acked = Some(id);
        let mut last_done = None;
        while self.pending.front().is_some_and(|write| write.id <= id) {
            last_done = self.pending.pop_front();
        }
        if let Some(done) = last_done {
            let mut durable = done.last_index;
            for later in &self.pending {
                if let Some(from) = later.truncate_from {
                    durable = durable.min(from.prev());
                }
            }
            if let Some(from) = self.staged.truncate_from {
                durable = durable.min(from.prev());
            }
            self.durable_index = durable.max(self.snapshot_floor);
        }
        // Held messages are released in order; one queued behind a later write waits for it
        // too, which only delays it (and keeps this linear in what is released).
        let mut released = Vec::new();
        while self.held.front().is_some_and(|(write, _)| *write <= id) {
            released.push(self.held.pop_front().expect("checked non-empty").1);
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::types::{EntryPayload, LogId, NodeId, Term};

    fn entries(term: u64, indices: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        indices.map(|i| Entry { log_id: LogId::new(term, i), payload: EntryPayload::Noop }).collect()
    }

    fn ack_message() -> Envelope {
        Envelope {
            from: NodeId(2),
            to: NodeId(1),
            message: Message::HeartbeatResponse { term: Term(1), read_round: 0 },
        }
    }

    #[test]
    fn acknowledgement_waits_for_the_write_it_depends_on() {
        let mut d = Durability::new(LogIndex(0));
        d.stage_append(&entries(1, 1..=3));
        let write = d.take_write(HardState::default(), LogIndex(3)).unwrap();
        assert!(d.release_or_hold(ack_message(), Dependency::Log).is_none(), "held until the entries are durable");
        assert_eq!(d.durable_index(), LogIndex(0));
        assert_eq!(d.on_persisted(write.id), vec![ack_message()]);
        assert_eq!(d.durable_index(), LogIndex(3));
    }

    #[test]
    fn messages_without_dependency_leave_at_once() {
        let mut d = Durability::new(LogIndex(0));
        d.stage_append(&entries(1, 1..=3));
        d.take_write(HardState::default(), LogIndex(3));
        assert!(d.release_or_hold(ack_message(), Dependency::None).is_some());
        assert!(d.release_or_hold(ack_message(), Dependency::HardState).is_some(), "no term or vote is pending");
    }

    #[test]
    fn truncation_lowers_the_durable_index_until_the_new_suffix_is_synced() {
        let mut d = Durability::new(LogIndex(0));
        d.stage_append(&entries(1, 1..=5));
        let first = d.take_write(HardState::default(), LogIndex(5)).unwrap();
        d.stage_truncate(LogIndex(4));
        d.stage_append(&entries(2, 4..=4));
        let second = d.take_write(HardState::default(), LogIndex(4)).unwrap();
        assert_eq!(second.truncate_from, Some(LogIndex(4)));
        d.on_persisted(first.id);
        assert_eq!(d.durable_index(), LogIndex(3), "entries 4-5 of term 1 are durable but no longer ours");
        d.on_persisted(second.id);
        assert_eq!(d.durable_index(), LogIndex(4));
    }

    #[test]
    fn truncating_staged_entries_never_reaches_storage() {
        let mut d = Durability::new(LogIndex(0));
        d.stage_append(&entries(1, 1..=5));
        d.stage_truncate(LogIndex(3));
        d.stage_append(&entries(2, 3..=3));
        let write = d.take_write(HardState::default(), LogIndex(3)).unwrap();
        assert_eq!(write.truncate_from, None);
        let indices: Vec<u64> = write.entries.iter().map(|e| e.log_id.index.0).collect();
        assert_eq!(indices, vec![1, 2, 3]);
    }

    #[test]
    fn vote_is_durable_only_after_its_write() {
        let mut d = Durability::new(LogIndex(0));
        d.stage_hard_state();
        assert!(!d.hard_state_is_durable());
        let write = d.take_write(HardState::default(), LogIndex(0)).unwrap();
        assert!(!d.hard_state_is_durable());
        d.on_persisted(write.id);
        assert!(d.hard_state_is_durable());
    }
}
