//! The in-memory log store and its write-cache model of durability.
//!
//! The store keeps two images of the log: `current`, which reads see, and `durable`,
//! which is what a crash leaves behind. Every accepted write changes `current` at once
//! and joins a queue of unsynced writes; `sync` replays the queue onto `durable`, so
//! it costs what was written since the last sync, not the length of the log.
//! Invariant: replaying `unsynced` onto `durable`, in order, yields `current`.

use std::collections::VecDeque;
use std::ops::RangeInclusive;

use d_engine_core::storage::{LogStore, StorageError, rules};
use d_engine_core::{Entry, HardState, LogId, LogIndex, Term};

/// An in-memory [`LogStore`] with an explicit durability point.
///
/// Writes are visible to reads immediately and become durable at
/// [`sync`](LogStore::sync); [`crash`](MemLogStore::crash) forgets every write since
/// the last sync, as a power loss would. Errors are returned for every input that
/// breaks the trait's contract; no input makes the store panic.
#[derive(Clone, Debug, Default)]
pub struct MemLogStore {
    current: LogImage,
    durable: LogImage,
    unsynced: Vec<Write>,
}

/// One image of the log: what reads see, or what survived the last sync.
#[derive(Clone, Debug, Default)]
struct LogImage {
    hard_state: HardState,
    last_purged: LogId,
    /// Invariant: `entries[i]` has index `last_purged.index + 1 + i`.
    entries: VecDeque<Entry>,
}

/// A write accepted by the store and not yet synced. Only valid writes are queued,
/// so replaying one can never fail.
#[derive(Clone, Debug)]
enum Write {
    HardState(HardState),
    Append(Vec<Entry>),
    TruncateSuffix(LogIndex),
    PurgePrefix(LogId),
}

impl MemLogStore {
    /// An empty store: default hard state, no entry, nothing purged, nothing to sync.
    pub fn new() -> MemLogStore {
        MemLogStore::default()
    }

    /// Simulates a power loss: every write since the last successful `sync` is
    /// forgotten and reads return exactly the durable state.
    ///
    /// Costs a copy of the durable log (entries share their payload buffers).
    pub fn crash(&mut self) {
        self.unsynced.clear();
        self.current = self.durable.clone();
    }

    /// The hard state a crash would leave behind.
    pub fn durable_hard_state(&self) -> HardState {
        self.durable.hard_state
    }

    /// The last log id a crash would leave behind (the durable `last_purged` when
    /// no durable entry remains).
    pub fn durable_last_log_id(&self) -> LogId {
        self.durable.last_log_id()
    }

    /// The id of the durable entry at `index`, if a crash would leave one there.
    pub fn durable_log_id(&self, index: LogIndex) -> Option<LogId> {
        self.durable.position(index).map(|position| self.durable.entries[position].log_id)
    }

    /// The entries a crash would leave behind, in order. Copies the whole durable log.
    pub fn durable_entries(&self) -> Vec<Entry> {
        self.durable.entries.iter().cloned().collect()
    }

    /// Applies a validated write to what reads see and queues it for the next sync.
    fn accept(&mut self, write: Write) {
        self.current.apply(write.clone());
        self.unsynced.push(write);
    }
}

impl LogImage {
    fn last_log_id(&self) -> LogId {
        self.entries.back().map_or(self.last_purged, |entry| entry.log_id)
    }

    /// The position of `index` in `entries`, if the entry is held.
    fn position(&self, index: LogIndex) -> Option<usize> {
        if index <= self.last_purged.index || index > self.last_log_id().index {
            return None;
        }
        // In range, so the offset is below `entries.len()` and fits a usize.
        Some((index.0 - self.last_purged.index.0 - 1) as usize)
    }

    fn apply(&mut self, write: Write) {
        match write {
            Write::HardState(hard_state) => self.hard_state = hard_state,
            Write::Append(entries) => self.entries.extend(entries),
            Write::TruncateSuffix(from) => {
                if let Some(position) = self.position(from) {
                    self.entries.truncate(position);
                }
            }
            Write::PurgePrefix(upto) => {
                match self.position(upto.index) {
                    Some(position) => drop(self.entries.drain(..=position)),
                    None => self.entries.clear(),
                }
                self.last_purged = upto;
            }
        }
        debug_assert!(
            self.entries.front().is_none_or(|first| first.log_id.index == self.last_purged.index.next()),
            "the first entry must follow the purged prefix",
        );
    }
}

impl LogStore for MemLogStore {
    fn hard_state(&self) -> Result<HardState, StorageError> {
        Ok(self.current.hard_state)
    }

    fn last_purged(&self) -> Result<LogId, StorageError> {
        Ok(self.current.last_purged)
    }

    fn last_log_id(&self) -> Result<LogId, StorageError> {
        Ok(self.current.last_log_id())
    }

    fn term_of(&self, index: LogIndex) -> Result<Term, StorageError> {
        let log = &self.current;
        if let Some(term) = rules::term_from_bounds(index, log.last_purged, log.last_log_id())? {
            return Ok(term);
        }
        match log.position(index) {
            Some(position) => Ok(log.entries[position].log_id.term),
            None => Err(rules::unavailable(index, log.last_log_id())),
        }
    }

    fn entries(&self, range: RangeInclusive<LogIndex>) -> Result<Vec<Entry>, StorageError> {
        let log = &self.current;
        let Some(range) = rules::check_entries_range(range, log.last_purged, log.last_log_id())? else {
            return Ok(Vec::new());
        };
        match (log.position(*range.start()), log.position(*range.end())) {
            (Some(first), Some(last)) => Ok(log.entries.range(first..=last).cloned().collect()),
            _ => Err(rules::unavailable(*range.end(), log.last_log_id())),
        }
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.accept(Write::HardState(*hard_state));
        Ok(())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        rules::check_append(self.current.last_log_id(), entries)?;
        self.accept(Write::Append(entries.to_vec()));
        Ok(())
    }

    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        rules::check_truncate(from, self.current.last_purged)?;
        if from <= self.current.last_log_id().index {
            self.accept(Write::TruncateSuffix(from));
        }
        Ok(())
    }

    fn purge_prefix(&mut self, upto: LogId) -> Result<(), StorageError> {
        if rules::purge_advances(upto, self.current.last_purged) {
            self.accept(Write::PurgePrefix(upto));
        }
        Ok(())
    }

    /// The payload bytes of the entries held (memory has no files).
    fn size_bytes(&self) -> Option<u64> {
        Some(self.current.entries.iter().map(Entry::payload_bytes).sum())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        for write in self.unsynced.drain(..) {
            self.durable.apply(write);
        }
        Ok(())
    }
}
