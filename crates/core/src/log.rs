//! The core's in-memory view of its log.
//!
//! The core does not own the log's entries: storage does. It keeps what it needs to
//! run the protocol without I/O: the id of the last purged entry, the first log id of
//! every term (which answers "term of index i" for any index), the last log id, and a
//! bounded cache of recent entries to replicate without a load.
//!
//! The view always reflects every write the core has issued, durable or not.
//! Invariants: `term_starts` is strictly increasing in both term and index and lies in
//! `(last_purged.index, last.index]`; the cache is contiguous and ends at `last`.

use std::collections::VecDeque;

use crate::message::ConflictHint;
use crate::storage::RecoveredLog;
use crate::types::{Entry, LogId, LogIndex, Term};

#[derive(Debug)]
pub(crate) struct LogView {
    last_purged: LogId,
    term_starts: Vec<LogId>,
    last: LogId,
    cache: VecDeque<Entry>,
    cache_capacity: usize,
    /// Payload bytes of each entry after `last_purged` whose size is known (entries that
    /// were in the log when the node started count as 0 until compacted away).
    sizes: VecDeque<u64>,
    bytes: u64,
}

impl LogView {
    pub(crate) fn new(recovered: &RecoveredLog, cache_capacity: usize) -> LogView {
        LogView {
            last_purged: recovered.last_purged,
            term_starts: recovered
                .term_starts
                .iter()
                .copied()
                .filter(|id| id.index > recovered.last_purged.index)
                .collect(),
            last: recovered.last_log_id,
            cache: VecDeque::new(),
            cache_capacity,
            sizes: std::iter::repeat_n(0, (recovered.last_log_id.index.0 - recovered.last_purged.index.0) as usize)
                .collect(),
            bytes: 0,
        }
    }

    pub(crate) fn last_purged(&self) -> LogId {
        self.last_purged
    }

    /// Payload bytes in the log (of the entries this node appended or received).
    pub(crate) fn payload_bytes(&self) -> u64 {
        self.bytes
    }

    /// Drops every entry up to `upto` (covered by a snapshot). Past the last entry, the log
    /// becomes empty and continues after `upto`.
    pub(crate) fn purge(&mut self, upto: LogId) {
        if upto.index <= self.last_purged.index {
            return;
        }
        if upto.index >= self.last.index {
            self.term_starts.clear();
            self.cache.clear();
            self.sizes.clear();
            self.bytes = 0;
            self.last = upto;
            self.last_purged = upto;
            return;
        }
        assert_eq!(self.term_at(upto.index), Some(upto.term), "a purge point is an entry of the log");
        let first_kept = upto.index.next();
        let term_of_first_kept = self.term_at(first_kept).expect("kept entries are in the log");
        self.term_starts.retain(|start| start.index > first_kept);
        self.term_starts.insert(0, LogId { term: term_of_first_kept, index: first_kept });
        while self.cache.front().is_some_and(|entry| entry.log_id.index <= upto.index) {
            self.cache.pop_front();
        }
        for _ in self.last_purged.index.0..upto.index.0 {
            self.bytes -= self.sizes.pop_front().unwrap_or(0);
        }
        self.last_purged = upto;
    }

    pub(crate) fn last(&self) -> LogId {
        self.last
    }

    /// The term of the entry at `index`, if this node still knows it.
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.last_purged.index {
            return Some(self.last_purged.term);
        }
        if index < self.last_purged.index || index > self.last.index {
            return None;
        }
        let position = self.term_starts.partition_point(|start| start.index <= index);
        debug_assert!(position > 0, "an index inside the log lies in some term");
        Some(self.term_starts[position - 1].term)
    }

    /// Whether the log holds `id`.
    pub(crate) fn contains(&self, id: LogId) -> bool {
        self.term_at(id.index) == Some(id.term)
    }

    /// The largest index `<= index` whose term is `<= term` (`index` must not exceed the
    /// last index). Because terms never decrease along a log, this is `index` itself when
    /// the term there is already low enough, else the end of the last low-enough term.
    pub(crate) fn find_conflict_by_term(&self, index: LogIndex, term: Term) -> LogIndex {
        debug_assert!(index <= self.last.index);
        let low_enough = self.term_starts.partition_point(|start| start.term <= term);
        if low_enough == 0 {
            return index.min(self.last_purged.index);
        }
        let end_of_term = self.term_starts.get(low_enough).map_or(self.last.index, |next| next.index.prev());
        index.min(end_of_term)
    }

    /// The hint a follower returns when the consistency check failed at `prev`.
    pub(crate) fn conflict_hint(&self, prev: LogId) -> ConflictHint {
        let index = self.find_conflict_by_term(prev.index.min(self.last.index), prev.term).max(self.last_purged.index);
        let term = self.term_at(index).expect("a hint index lies inside the log");
        ConflictHint { index, term }
    }

    /// Appends entries that continue the log exactly.
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        for entry in entries {
            assert_eq!(entry.log_id.index, self.last.index.next(), "appended entries must be consecutive");
            assert!(entry.log_id.term >= self.last.term, "terms in a log never decrease");
            if self.term_starts.last().is_none_or(|start| start.term != entry.log_id.term) {
                self.term_starts.push(entry.log_id);
            }
            self.last = entry.log_id;
            self.cache.push_back(entry.clone());
            self.sizes.push_back(entry.payload_bytes());
            self.bytes += entry.payload_bytes();
        }
        while self.cache.len() > self.cache_capacity {
            self.cache.pop_front();
        }
    }

    /// Removes every entry with index `>= from`.
    pub(crate) fn truncate(&mut self, from: LogIndex) {
        assert!(from > self.last_purged.index, "purged entries are committed and can never be truncated");
        if from > self.last.index {
            return;
        }
        let new_last_index = from.prev();
        let new_last_term = self.term_at(new_last_index).expect("the entry before a truncation point is known");
        self.term_starts.retain(|start| start.index < from);
        self.last = LogId { term: new_last_term, index: new_last_index };
        while self.cache.back().is_some_and(|entry| entry.log_id.index >= from) {
            self.cache.pop_back();
        }
        let keep = (new_last_index.0 - self.last_purged.index.0) as usize;
        while self.sizes.len() > keep {
            self.bytes -= self.sizes.pop_back().unwrap_or(0);
        }
    }

    /// The cached entries `first..=last`, or `None` if any of them is not cached.
    pub(crate) fn cached(&self, first: LogIndex, last: LogIndex) -> Option<Vec<Entry>> {
        let cache_first = self.cache.front()?.log_id.index;
        if first < cache_first || last > self.last.index || first > last {
            return None;
        }
        let start = (first.0 - cache_first.0) as usize;
        let end = (last.0 - cache_first.0) as usize;
        Some(self.cache.range(start..=end).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryPayload;

    fn entry(term: u64, index: u64) -> Entry {
        Entry { log_id: LogId::new(term, index), payload: EntryPayload::Noop }
    }

    fn log_of(terms: &[u64]) -> LogView {
        let mut log = LogView::new(&RecoveredLog::default(), 100);
        let entries: Vec<Entry> = terms.iter().enumerate().map(|(i, t)| entry(*t, i as u64 + 1)).collect();
        log.append(&entries);
        log
    }

    #[test]
    fn term_at_answers_for_every_index_from_term_boundaries() {
        let log = log_of(&[1, 1, 2, 2, 2, 5]);
        let terms: Vec<Option<u64>> = (0..8).map(|i| log.term_at(LogIndex(i)).map(|t| t.0)).collect();
        assert_eq!(terms, vec![Some(0), Some(1), Some(1), Some(2), Some(2), Some(2), Some(5), None]);
    }

    #[test]
    fn conflict_hint_skips_the_whole_conflicting_term() {
        // Follower: ten entries of term 1, then fifty of term 2 that the new leader never had.
        let follower = log_of(&[[1; 10].as_slice(), [2; 50].as_slice()].concat());
        let hint = follower.conflict_hint(LogId::new(3, 100));
        assert_eq!(hint, ConflictHint { index: LogIndex(60), term: Term(2) }, "log shorter than prev: answer its end");
        // Leader: ten entries of term 1, then ninety of term 3.
        let leader = log_of(&[[1; 10].as_slice(), [3; 90].as_slice()].concat());
        assert_eq!(leader.find_conflict_by_term(hint.index, hint.term), LogIndex(10), "one round trip skips term 2");
        assert_eq!(follower.conflict_hint(LogId::new(3, 12)), ConflictHint { index: LogIndex(12), term: Term(2) });
    }

    #[test]
    fn truncate_drops_terms_and_cache_after_the_point() {
        let mut log = log_of(&[1, 1, 2, 3]);
        log.truncate(LogIndex(3));
        assert_eq!(log.last(), LogId::new(1, 2));
        assert_eq!(log.term_at(LogIndex(3)), None);
        assert!(log.cached(LogIndex(1), LogIndex(3)).is_none());
        log.append(&[entry(4, 3)]);
        assert_eq!(log.cached(LogIndex(2), LogIndex(3)).unwrap(), vec![entry(1, 2), entry(4, 3)]);
    }

    #[test]
    fn purge_keeps_the_terms_of_the_remaining_entries() {
        let mut log = log_of(&[1, 1, 2, 2, 3]);
        log.purge(LogId::new(2, 3));
        assert_eq!(log.term_at(LogIndex(3)), Some(Term(2)), "the purge point still answers its term");
        assert_eq!(log.term_at(LogIndex(2)), None);
        assert_eq!(log.term_at(LogIndex(4)), Some(Term(2)));
        assert_eq!(log.term_at(LogIndex(5)), Some(Term(3)));
        log.purge(LogId::new(7, 9));
        assert_eq!(log.last(), LogId::new(7, 9), "purging past the end empties the log after the snapshot");
        assert_eq!(log.payload_bytes(), 0);
    }

    #[test]
    fn cache_is_bounded_and_misses_are_reported() {
        let mut log = LogView::new(&RecoveredLog::default(), 2);
        log.append(&[entry(1, 1), entry(1, 2), entry(1, 3)]);
        assert!(log.cached(LogIndex(1), LogIndex(3)).is_none());
        assert_eq!(log.cached(LogIndex(2), LogIndex(3)).unwrap().len(), 2);
    }
}
