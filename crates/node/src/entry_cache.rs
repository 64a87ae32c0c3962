//! Entries the event loop keeps between appending them and handing them to the apply
//! thread, so that applying a committed entry never waits behind the storage thread's
//! fsync (the storage thread would otherwise read it back from the log).
//!
//! Invariant: the cache mirrors the log's suffix above the applied index, as far as this
//! node appended it (plus what was in the log at start): every `Persist` updates it in the
//! order the storage thread carries the write out. A range that is not all here is read
//! from the log instead, so a miss costs latency, never correctness.

use std::collections::BTreeMap;

use d_engine_core::{Entry, LogIndex, PersistRequest};

/// Appended entries not yet handed to the apply thread.
#[derive(Debug, Default)]
pub(crate) struct EntryCache {
    entries: BTreeMap<LogIndex, Entry>,
}

impl EntryCache {
    /// A cache holding `entries` (the log's tail above the applied index, read at start).
    pub(crate) fn with(entries: Vec<Entry>) -> EntryCache {
        EntryCache { entries: entries.into_iter().map(|entry| (entry.log_id.index, entry)).collect() }
    }

    /// Mirrors one write of the core: truncation, append, purge.
    pub(crate) fn on_persist(&mut self, write: &PersistRequest) {
        if let Some(from) = write.truncate_from {
            self.entries.split_off(&from);
        }
        for entry in &write.entries {
            self.entries.insert(entry.log_id.index, entry.clone());
        }
        if let Some(upto) = write.purge_upto {
            self.discard_through(upto.index);
        }
    }

    /// Takes `first..=last` out of the cache if every entry of it is here.
    pub(crate) fn take(&mut self, first: LogIndex, last: LogIndex) -> Option<Vec<Entry>> {
        let count = last.0.checked_sub(first.0)? + 1;
        let held = self.entries.range(first..=last).count() as u64;
        if held != count {
            return None;
        }
        let taken: Vec<Entry> = self.entries.range(first..=last).map(|(_, entry)| entry.clone()).collect();
        self.discard_through(last);
        Some(taken)
    }

    /// Forgets every entry up to and including `index` (applied, or covered by a snapshot).
    pub(crate) fn discard_through(&mut self, index: LogIndex) {
        self.entries = self.entries.split_off(&index.next());
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use d_engine_core::{EntryPayload, LogId, WriteId};

    use super::*;

    fn entry(term: u64, index: u64) -> Entry {
        Entry { log_id: LogId::new(term, index), payload: EntryPayload::Command(Bytes::from_static(b"x")) }
    }

    fn write(truncate_from: Option<u64>, entries: Vec<Entry>) -> PersistRequest {
        PersistRequest {
            id: WriteId(1),
            hard_state: None,
            truncate_from: truncate_from.map(LogIndex),
            entries,
            purge_upto: None,
        }
    }

    #[test]
    fn a_truncated_suffix_is_replaced_and_ranges_are_taken_whole_or_not_at_all() {
        let mut cache = EntryCache::default();
        cache.on_persist(&write(None, vec![entry(1, 1), entry(1, 2), entry(1, 3)]));
        cache.on_persist(&write(Some(3), vec![entry(2, 3)]));
        assert_eq!(cache.take(LogIndex(1), LogIndex(4)), None, "index 4 was never appended");
        let taken = cache.take(LogIndex(1), LogIndex(3)).expect("all three are held");
        assert_eq!(
            taken.iter().map(|e| e.log_id).collect::<Vec<_>>(),
            [LogId::new(1, 1), LogId::new(1, 2), LogId::new(2, 3)]
        );
        assert_eq!(cache.take(LogIndex(3), LogIndex(3)), None, "taken entries are gone");
    }
}
