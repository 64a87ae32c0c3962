//! Turning sled's and the filesystem's errors into `StorageError`s that name the path.
//!
//! The core's `StorageError::Io` carries an operation and a cause but no location, so
//! the cause is wrapped in [`AtPath`], whose message starts with the path.

use std::fmt;
use std::path::Path;

use d_engine_core::storage::StorageError;

/// A cause of failure and the file or directory it happened at.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct AtPath {
    /// The file or directory.
    pub path: String,
    /// What went wrong there.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Maps a sled error met during `operation` on the database at `path`. sled's own
/// corruption reports become `Corrupt`; everything else is `Io`.
pub(crate) fn database(path: &Path, operation: &'static str, error: sled::Error) -> StorageError {
    match error {
        sled::Error::Corruption { at, .. } => corrupt(path, format!("sled reports corruption at {at:?}")),
        sled::Error::Io(source) => io(path, operation, source),
        other => StorageError::Io {
            operation,
            source: Box::new(AtPath { path: path.display().to_string(), source: Box::new(other) }),
        },
    }
}

/// A filesystem error met during `operation` at `path`.
pub(crate) fn io(path: &Path, operation: &'static str, source: std::io::Error) -> StorageError {
    StorageError::Io {
        operation,
        source: Box::new(AtPath { path: path.display().to_string(), source: Box::new(source) }),
    }
}

/// Data at `path` that cannot be trusted or is not ours.
pub(crate) fn corrupt(path: &Path, reason: impl fmt::Display) -> StorageError {
    StorageError::Corrupt { location: path.display().to_string(), reason: reason.to_string() }
}

/// A store whose write failed refuses further use: what is durable is unknown until
/// it is reopened (fail closed).
pub(crate) fn poisoned(path: &Path, cause: &str) -> StorageError {
    StorageError::Io {
        operation: "use after a failed write",
        source: Box::new(AtPath {
            path: path.display().to_string(),
            source: format!("an earlier write failed ({cause}); reopen the store").into(),
        }),
    }
}
