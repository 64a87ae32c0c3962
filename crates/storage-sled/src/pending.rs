//! The log writes made since the last sync, which reads must see and a sync turns into
//! one sled batch.
//!
//! Invariant: the log that reads see is the durable tree's entries with index in
//! `(last_purged, hidden_from)` followed by `entries`; `entries` holds consecutive
//! indices, and every durable entry at or above `hidden_from` was truncated since the
//! last sync.

use std::collections::BTreeMap;

use d_engine_core::{Entry, LogIndex};

/// What changed since the last sync.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Appended entries still in the log, by index.
    pub(crate) entries: BTreeMap<u64, Entry>,
    /// The lowest truncation point since the last sync (`u64::MAX`: none).
    pub(crate) hidden_from: u64,
    /// Whether the hard state was saved.
    pub(crate) hard_state: bool,
    /// Whether the log was purged.
    pub(crate) purged: bool,
}

impl Default for Pending {
    fn default() -> Pending {
        Pending { entries: BTreeMap::new(), hidden_from: u64::MAX, hard_state: false, purged: false }
    }
}

impl Pending {
    /// Whether there is anything to sync.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.hidden_from == u64::MAX && !self.hard_state && !self.purged
    }

    /// Records appended entries.
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        self.entries.extend(entries.iter().map(|entry| (entry.log_id.index.0, entry.clone())));
    }

    /// Records a truncation from `from`: unsynced entries there go, durable ones are hidden.
    pub(crate) fn truncate(&mut self, from: LogIndex) {
        drop(self.entries.split_off(&from.0));
        self.hidden_from = self.hidden_from.min(from.0);
    }

    /// Records a purge up to `upto` (inclusive).
    pub(crate) fn purge(&mut self, upto: LogIndex) {
        self.entries = self.entries.split_off(&upto.0.saturating_add(1));
        self.purged = true;
    }

    /// The first unsynced entry's index, if any: every entry before it is durable.
    pub(crate) fn first_index(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }
}
