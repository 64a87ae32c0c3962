//! The input rules of the storage traits, as pure functions over the bounds of a store.
//!
//! Every [`LogStore`](super::LogStore) and [`StateStore`](super::StateStore) must refuse
//! the same inputs with the same errors, whatever it keeps its data in. An adapter calls
//! these checks before it changes anything, so that a refused write changes nothing, and
//! the answers at the edges (index 0, the purged entry, an empty range) are the same in
//! every adapter. No function here reads or writes storage: each takes the bounds the
//! store already knows (`last_purged`, `last_log_id`, the applied id).

use std::ops::RangeInclusive;

use super::StorageError;
use crate::types::{Entry, LogId, LogIndex, Term};

/// Checks that `entries` may be appended to a log whose last entry is `last`.
///
/// The first entry must have index `last.index + 1`, indices must be consecutive and
/// terms must never decrease (starting from `last.term`). An empty slice passes.
///
/// Errors: `Misuse`, naming the first rule broken, in that order: no index after
/// `u64::MAX`, the first index, non-decreasing terms, consecutive indices.
pub fn check_append(last: LogId, entries: &[Entry]) -> Result<(), StorageError> {
    let Some(first) = entries.first() else {
        return Ok(());
    };
    let Some(expected) = last.index.0.checked_add(1).map(LogIndex) else {
        return Err(StorageError::Misuse(format!("cannot append after the largest index {}", last.index)));
    };
    if first.log_id.index != expected {
        return Err(StorageError::Misuse(format!("append must start at {expected}, not {}", first.log_id.index)));
    }
    let mut previous_term = last.term;
    for entry in entries {
        if entry.log_id.term < previous_term {
            return Err(StorageError::Misuse(format!(
                "terms never decrease along a log: {} follows term {previous_term}",
                entry.log_id
            )));
        }
        previous_term = entry.log_id.term;
    }
    for pair in entries.windows(2) {
        let (before, after) = (pair[0].log_id.index, pair[1].log_id.index);
        if before.0.checked_add(1) != Some(after.0) {
            return Err(StorageError::Misuse(format!(
                "appended indices must be consecutive: {before} is followed by {after}"
            )));
        }
    }
    Ok(())
}

/// Checks that a truncation from `from` spares the purged prefix ending at `last_purged`:
/// purged entries are committed and can never be truncated.
///
/// Errors: `Misuse` when `from <= last_purged.index`. A `from` past the last entry
/// passes; the truncation is then a no-op.
pub fn check_truncate(from: LogIndex, last_purged: LogId) -> Result<(), StorageError> {
    if from <= last_purged.index {
        return Err(StorageError::Misuse(format!(
            "cannot truncate from {from}: entries up to {last_purged} are purged and committed"
        )));
    }
    Ok(())
}

/// Whether a purge up to `upto` changes a log purged up to `last_purged`: a purge at or
/// below the current `last_purged` is a no-op.
pub fn purge_advances(upto: LogId, last_purged: LogId) -> bool {
    upto.index > last_purged.index
}

/// The last log id after a purge up to `upto` of a log ending at `last`: a purge past
/// the last entry empties the log, which then continues after `upto`.
pub fn last_log_id_after_purge(upto: LogId, last: LogId) -> LogId {
    if upto.index >= last.index { upto } else { last }
}

/// Answers `term_of(index)` from the bounds of a log when they suffice.
///
/// `Ok(Some(term))` for index 0 (always `Term(0)`), the purged entry and the last entry;
/// `Ok(None)` when `index` is a held entry strictly inside the log, which the store
/// must read. Errors: `Compacted` below the purged entry, `Unavailable` past the last.
pub fn term_from_bounds(index: LogIndex, last_purged: LogId, last: LogId) -> Result<Option<Term>, StorageError> {
    if index == LogIndex(0) {
        return Ok(Some(Term(0)));
    }
    if index == last_purged.index {
        return Ok(Some(last_purged.term));
    }
    if index < last_purged.index {
        return Err(compacted(index, last_purged));
    }
    if index > last.index {
        return Err(unavailable(index, last));
    }
    if index == last.index {
        return Ok(Some(last.term));
    }
    Ok(None)
}

/// Checks the range of an `entries` call against the bounds of a log.
///
/// `Ok(None)` for an empty range (`start > end`), which returns no entry;
/// `Ok(Some(range))` when every index of `range` is held. Errors: `Compacted` when the
/// range starts at or below `last_purged.index` (this wins when both apply),
/// `Unavailable` when it ends past the last entry.
pub fn check_entries_range(
    range: RangeInclusive<LogIndex>,
    last_purged: LogId,
    last: LogId,
) -> Result<Option<RangeInclusive<LogIndex>>, StorageError> {
    let (start, end) = (*range.start(), *range.end());
    if start > end {
        return Ok(None);
    }
    if start <= last_purged.index {
        return Err(compacted(start, last_purged));
    }
    if end > last.index {
        return Err(unavailable(end, last));
    }
    Ok(Some(range))
}

/// The `Compacted` error for `index` in a log purged up to `last_purged`.
pub fn compacted(index: LogIndex, last_purged: LogId) -> StorageError {
    StorageError::Compacted { index, first_available: LogIndex(last_purged.index.0.saturating_add(1)) }
}

/// The `Unavailable` error for `index` in a log ending at `last`.
pub fn unavailable(index: LogIndex, last: LogId) -> StorageError {
    StorageError::Unavailable { index, last: last.index }
}

/// Checks that a state-store batch applied at `applied` may follow one applied at
/// `current`: applied ids never go back, in the order the core uses for log ids (term
/// first, then index). An equal id passes.
///
/// Errors: `Misuse` when `applied` is below `current`.
pub fn check_applied(applied: LogId, current: LogId) -> Result<(), StorageError> {
    if !applied.is_at_least_as_up_to_date_as(&current) {
        return Err(StorageError::Misuse(format!(
            "a batch applied at {applied} cannot follow one applied at {current}"
        )));
    }
    Ok(())
}

/// Whether the key range `start..end` of a state-store `range` call holds no key at
/// all (`end <= start`): such a call returns nothing, whatever the store holds.
pub fn key_range_is_empty(start: &[u8], end: Option<&[u8]>) -> bool {
    end.is_some_and(|end| end <= start)
}

/// The number of pairs a state-store `range` call returns at most: `limit`, where
/// 0 means no limit.
pub fn range_limit(limit: usize) -> usize {
    if limit == 0 { usize::MAX } else { limit }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::types::EntryPayload;

    fn entry(term: u64, index: u64) -> Entry {
        Entry { log_id: LogId::new(term, index), payload: EntryPayload::Command(Bytes::new()) }
    }

    fn is_misuse<T: std::fmt::Debug>(result: Result<T, StorageError>) -> bool {
        matches!(result, Err(StorageError::Misuse(_)))
    }

    #[test]
    fn append_accepts_a_continuation_and_refuses_every_broken_rule() {
        let last = LogId::new(2, 5);
        assert!(check_append(last, &[]).is_ok());
        assert!(check_append(last, &[entry(2, 6), entry(3, 7)]).is_ok());
        assert!(is_misuse(check_append(last, &[entry(2, 7)])), "a gap after the last entry");
        assert!(is_misuse(check_append(last, &[entry(2, 5)])), "an overlap");
        assert!(is_misuse(check_append(last, &[entry(1, 6)])), "a term below the last");
        assert!(is_misuse(check_append(last, &[entry(3, 6), entry(2, 7)])), "a decreasing term");
        assert!(is_misuse(check_append(last, &[entry(2, 6), entry(2, 8)])), "a gap inside");
        assert!(is_misuse(check_append(LogId::new(1, u64::MAX), &[entry(1, 0)])), "past the largest index");
    }

    #[test]
    fn truncation_of_purged_entries_is_refused() {
        let purged = LogId::new(1, 4);
        assert!(is_misuse(check_truncate(LogIndex(4), purged)));
        assert!(is_misuse(check_truncate(LogIndex(1), purged)));
        assert!(check_truncate(LogIndex(5), purged).is_ok());
        assert!(check_truncate(LogIndex(100), purged).is_ok());
    }

    #[test]
    fn purge_moves_only_forward_and_past_the_end_empties_the_log() {
        let purged = LogId::new(1, 4);
        assert!(!purge_advances(LogId::new(1, 4), purged));
        assert!(!purge_advances(LogId::new(1, 3), purged));
        assert!(purge_advances(LogId::new(1, 5), purged));
        let last = LogId::new(2, 10);
        assert_eq!(last_log_id_after_purge(LogId::new(1, 6), last), last);
        assert_eq!(last_log_id_after_purge(LogId::new(2, 10), last), LogId::new(2, 10));
        assert_eq!(last_log_id_after_purge(LogId::new(3, 20), last), LogId::new(3, 20));
    }

    #[test]
    fn term_of_is_answered_at_the_edges_and_read_inside() {
        let (purged, last) = (LogId::new(1, 4), LogId::new(3, 9));
        assert_eq!(term_from_bounds(LogIndex(0), purged, last).unwrap(), Some(Term(0)));
        assert_eq!(term_from_bounds(LogIndex(4), purged, last).unwrap(), Some(Term(1)));
        assert_eq!(term_from_bounds(LogIndex(9), purged, last).unwrap(), Some(Term(3)));
        assert_eq!(term_from_bounds(LogIndex(5), purged, last).unwrap(), None);
        assert!(matches!(
            term_from_bounds(LogIndex(3), purged, last),
            Err(StorageError::Compacted { index: LogIndex(3), first_available: LogIndex(5) })
        ));
        assert!(matches!(
            term_from_bounds(LogIndex(10), purged, last),
            Err(StorageError::Unavailable { index: LogIndex(10), last: LogIndex(9) })
        ));
    }

    #[test]
    fn entries_ranges_are_empty_held_compacted_or_unavailable() {
        let (purged, last) = (LogId::new(1, 4), LogId::new(3, 9));
        assert!(check_entries_range(LogIndex(7)..=LogIndex(6), purged, last).unwrap().is_none());
        assert_eq!(
            check_entries_range(LogIndex(5)..=LogIndex(9), purged, last).unwrap(),
            Some(LogIndex(5)..=LogIndex(9))
        );
        assert!(matches!(
            check_entries_range(LogIndex(4)..=LogIndex(20), purged, last),
            Err(StorageError::Compacted { index: LogIndex(4), .. })
        ));
        assert!(matches!(
            check_entries_range(LogIndex(5)..=LogIndex(10), purged, last),
            Err(StorageError::Unavailable { index: LogIndex(10), .. })
        ));
    }

    #[test]
    fn applied_ids_never_go_back() {
        let current = LogId::new(2, 5);
        assert!(check_applied(LogId::new(2, 5), current).is_ok());
        assert!(check_applied(LogId::new(3, 1), current).is_ok());
        assert!(is_misuse(check_applied(LogId::new(2, 4), current)));
        assert!(is_misuse(check_applied(LogId::new(1, 9), current)));
    }

    #[test]
    fn key_ranges_and_limits() {
        assert!(key_range_is_empty(b"b", Some(b"b")));
        assert!(key_range_is_empty(b"b", Some(b"a")));
        assert!(!key_range_is_empty(b"a", Some(b"b")));
        assert!(!key_range_is_empty(b"a", None));
        assert_eq!(range_limit(0), usize::MAX);
        assert_eq!(range_limit(3), 3);
    }
}
