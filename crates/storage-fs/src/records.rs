//! Decoding the core's codec records read from a store's file, with the file and the
//! record named in every error, and the checks a log store makes of what it reads.

use std::path::Path;

use d_engine_core::storage::{StorageError, codec};
use d_engine_core::{Entry, LogId, LogIndex};

use crate::error::corrupt;

/// Puts the file `path` and the `record` into a codec error's location; other errors
/// pass unchanged.
pub fn locate(path: &Path, record: &str, error: StorageError) -> StorageError {
    match error {
        StorageError::Corrupt { reason, .. } => corrupt(path, format!("{record}: {reason}")),
        other => other,
    }
}

/// Decodes the entry stored under `index` in the file at `path` and checks it belongs
/// there.
///
/// Errors: `Corrupt`, naming `path` and the entry, when the record fails its checksum
/// or decode, or holds an entry of another index.
pub fn decode_entry_at(path: &Path, index: u64, bytes: &[u8]) -> Result<Entry, StorageError> {
    let entry = codec::decode_entry(bytes).map_err(|error| locate(path, &format!("entry {index}"), error))?;
    if entry.log_id.index != LogIndex(index) {
        return Err(corrupt(path, format!("the entry stored at index {index} is {}", entry.log_id)));
    }
    Ok(entry)
}

/// Checks that the first stored entry, `first`, follows the purged prefix ending at
/// `last_purged`. Errors: `Corrupt` naming `path` when it does not.
pub fn check_first_entry(path: &Path, first: LogId, last_purged: LogId) -> Result<(), StorageError> {
    if first.index != last_purged.index.next() {
        return Err(corrupt(path, format!("the first entry is {first} but the log was purged up to {last_purged}")));
    }
    Ok(())
}
