//! Turning redb's errors into `StorageError`s that name the file (the filesystem's own
//! errors are mapped by `d_engine_storage_fs::error`).

use std::path::Path;

use d_engine_core::storage::StorageError;
use d_engine_storage_fs::error::{at_path, corrupt, io};

/// Maps a redb error met during `operation` on the database at `path`. redb's own
/// corruption reports become `Corrupt`; everything else is `Io`.
pub(crate) fn database(path: &Path, operation: &'static str, error: impl Into<redb::Error>) -> StorageError {
    match error.into() {
        redb::Error::Corrupted(reason) => corrupt(path, format!("redb reports corruption: {reason}")),
        redb::Error::Io(source) => io(path, operation, source),
        other => at_path(path, operation, other),
    }
}
