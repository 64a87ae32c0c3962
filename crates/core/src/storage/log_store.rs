use std::ops::RangeInclusive;

use super::{SnapshotMeta, StorageError};
use crate::membership::Membership;
use crate::types::{Entry, EntryPayload, HardState, LogId, LogIndex, Term};

/// The replicated log and the hard state of one node.
///
/// # Layout
/// The store holds a contiguous run of entries `first_index()..=last_log_id().index`
/// after an optional purged prefix that ends at `last_purged()`. An empty store has
/// `last_purged() == last_log_id() == LogId::default()` and `first_index() == 1`.
///
/// # Durability
/// Writes (`save_hard_state`, `append`, `truncate_suffix`, `purge_prefix`) change
/// what reads return immediately, but become durable only when `sync` returns `Ok`.
/// A crash keeps every write up to the last successful `sync`; the writes of a `sync`
/// still in progress survive all together or not at all; later writes are lost. Writes
/// are applied in call order. Dropping a store discards its unsynced writes, so a runtime
/// syncs before it closes. A store that reports durability before its data would survive
/// a crash is broken, because the core sends acknowledgements and votes on the strength
/// of `sync`.
pub trait LogStore {
    /// The last saved hard state; the default (term 0, no vote, commit 0) for a new store.
    fn hard_state(&self) -> Result<HardState, StorageError>;

    /// The id of the last purged entry, or `LogId::default()` if nothing was purged.
    fn last_purged(&self) -> Result<LogId, StorageError>;

    /// The id of the last entry, or `last_purged()` if the log holds no entry.
    fn last_log_id(&self) -> Result<LogId, StorageError>;

    /// The term of the entry at `index`.
    ///
    /// `index == last_purged().index` answers the purged entry's term (needed for the
    /// consistency check right after a snapshot); `index == 0` always answers `Term(0)`.
    /// Errors: `Compacted` for `0 < index < last_purged().index` (with `first_available =
    /// last_purged().index + 1`), `Unavailable` past the last entry.
    fn term_of(&self, index: LogIndex) -> Result<Term, StorageError>;

    /// The entries in `range`, in order, all of them.
    ///
    /// Errors: `Compacted` if the range starts at or below `last_purged().index` (this wins
    /// when both apply), `Unavailable` if it ends past the last entry. An empty range
    /// (`start > end`) returns an empty vector.
    fn entries(&self, range: RangeInclusive<LogIndex>) -> Result<Vec<Entry>, StorageError>;

    /// Records term, vote and commit. Durable at the next `sync`.
    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError>;

    /// Appends entries. The first must have index `last_log_id().index + 1`, indices must be
    /// consecutive and terms must not decrease, else `Misuse`. An empty slice is a no-op. Durable at the
    /// next `sync`.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;

    /// Removes every entry with index `>= from`. `from` must be above `last_purged().index`
    /// (purged entries are committed and can never be truncated), else `Misuse`; `from` past
    /// the last entry is a no-op. Durable at the next `sync`.
    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError>;

    /// Removes every entry up to and including `upto.index`, remembering `upto` as
    /// `last_purged()`. Purging past the last entry empties the log and leaves it to
    /// continue at `upto.index + 1` (used after installing a snapshot); purging at or
    /// below the current `last_purged()` is a no-op. The caller guarantees that the kept
    /// entries follow `upto` (when the stored entry at `upto.index` has another term, it
    /// truncates the whole log first). Durable at the next `sync`.
    fn purge_prefix(&mut self, upto: LogId) -> Result<(), StorageError>;

    /// Makes every write before this call durable. This is the durability point.
    fn sync(&mut self) -> Result<(), StorageError>;

    /// The space the log takes, in bytes, when the engine can tell cheaply (a file's size,
    /// say), else `None`. Only for metrics: the protocol never reads it, and it may lag
    /// unsynced writes.
    fn size_bytes(&self) -> Option<u64> {
        None
    }
}

/// What the core needs from the log to start: the hard state and the shape of
/// the log. Read once at start with [`RecoveredLog::read`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveredLog {
    /// The durable hard state.
    pub hard_state: HardState,
    /// The last purged entry (or the default).
    pub last_purged: LogId,
    /// The first log id of each term present in the log after `last_purged`, in order.
    pub term_starts: Vec<LogId>,
    /// The last log id.
    pub last_log_id: LogId,
    /// Every membership entry in the log, in order (the latest one is in force).
    pub memberships: Vec<(LogId, Membership)>,
    /// The latest durable snapshot's metadata; `read` leaves it `None`: the runtime, which
    /// stores snapshots, fills it in.
    pub snapshot: Option<SnapshotMeta>,
}

impl RecoveredLog {
    /// Reads the shape of a log: one `term_of` probe per term boundary (binary search), and
    /// one pass over the entries for membership entries (the log is bounded by compaction).
    pub fn read(store: &(impl LogStore + ?Sized)) -> Result<RecoveredLog, StorageError> {
        let hard_state = store.hard_state()?;
        let last_purged = store.last_purged()?;
        let last_log_id = store.last_log_id()?;
        let mut term_starts = Vec::new();
        let mut start = last_purged.index.next();
        while start <= last_log_id.index {
            let term = store.term_of(start)?;
            term_starts.push(LogId { term, index: start });
            // Binary search the last index of `term` in [start, last].
            let (mut low, mut high) = (start.0, last_log_id.index.0);
            while low < high {
                let mid = low + (high - low).div_ceil(2);
                if store.term_of(LogIndex(mid))? == term {
                    low = mid;
                } else {
                    high = mid - 1;
                }
            }
            start = LogIndex(low + 1);
        }
        let mut memberships = Vec::new();
        let mut next = last_purged.index.next();
        while next <= last_log_id.index {
            let last = LogIndex(next.0.saturating_add(1023).min(last_log_id.index.0));
            for entry in store.entries(next..=last)? {
                if let EntryPayload::Membership(membership) = entry.payload {
                    memberships.push((entry.log_id, membership));
                }
            }
            next = last.next();
        }
        let commit = hard_state.commit.min(last_log_id.index);
        Ok(RecoveredLog {
            hard_state: HardState { commit, ..hard_state },
            last_purged,
            term_starts,
            last_log_id,
            memberships,
            snapshot: None,
        })
    }
}
