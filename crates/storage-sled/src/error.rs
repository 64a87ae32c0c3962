//! Turning sled's errors into `StorageError`s that name the path (the filesystem's own
//! errors are mapped by `d_engine_storage_fs::error`).

use std::path::Path;

use d_engine_core::storage::StorageError;
use d_engine_storage_fs::error::{at_path, corrupt, io};

/// Maps a sled error met during `operation` on the database at `path`. sled's own
/// corruption reports become `Corrupt`; everything else is `Io`.
pub(crate) fn database(path: &Path, operation: &'static str, error: sled::Error) -> StorageError {
    match error {
        sled::Error::Corruption { at, .. } => corrupt(path, format!("sled reports corruption at {at:?}")),
        sled::Error::Io(source) => io(path, operation, source),
        other => at_path(path, operation, other),
    }
}
