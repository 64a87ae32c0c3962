//! The log's write rules, checked before anything is written so that a refused write
//! changes nothing.

use d_engine_core::storage::StorageError;
use d_engine_core::{Entry, LogId, LogIndex};

/// Checks that `entries` (non-empty) continue a log ending at `last`: the first has
/// index `last.index + 1`, indices are consecutive and terms never decrease.
pub(crate) fn append_continues(last: LogId, entries: &[Entry]) -> Result<(), StorageError> {
    let Some(expected) = last.index.0.checked_add(1).map(LogIndex) else {
        return Err(StorageError::Misuse(format!("cannot append after the largest index {}", last.index)));
    };
    if entries[0].log_id.index != expected {
        return Err(StorageError::Misuse(format!("append must start at {expected}, not {}", entries[0].log_id.index)));
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

/// Checks that a truncation from `from` spares the purged prefix ending at `last_purged`.
pub(crate) fn truncation_spares_purged(from: LogIndex, last_purged: LogId) -> Result<(), StorageError> {
    if from <= last_purged.index {
        return Err(StorageError::Misuse(format!(
            "cannot truncate from {from}: entries up to {last_purged} are purged and committed"
        )));
    }
    Ok(())
}
