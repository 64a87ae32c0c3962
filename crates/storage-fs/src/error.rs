//! `StorageError`s that name the file or directory they happened at.
//!
//! The core's `StorageError::Io` carries an operation and a cause but no location, so
//! the cause is wrapped in [`AtPath`], whose message starts with the path. A store whose
//! write failed no longer knows what is durable: [`FailClosed`] makes it refuse every
//! later call until it is reopened.

use std::error::Error;
use std::fmt;
use std::path::Path;

use d_engine_core::storage::StorageError;

/// A cause of failure and the file or directory it happened at.
#[derive(Debug)]
pub struct AtPath {
    /// The file or directory.
    pub path: String,
    /// What went wrong there.
    pub source: Box<dyn Error + Send + Sync>,
}

impl fmt::Display for AtPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.source)
    }
}

impl Error for AtPath {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// An `Io` error: `source` met during `operation` at `path`.
pub fn at_path(path: &Path, operation: &'static str, source: impl Into<Box<dyn Error + Send + Sync>>) -> StorageError {
    StorageError::Io { operation, source: Box::new(AtPath { path: path.display().to_string(), source: source.into() }) }
}

/// A filesystem error met during `operation` at `path`.
pub fn io(path: &Path, operation: &'static str, source: std::io::Error) -> StorageError {
    at_path(path, operation, source)
}

/// Data at `path` that cannot be trusted or is not ours.
pub fn corrupt(path: &Path, reason: impl fmt::Display) -> StorageError {
    StorageError::Corrupt { location: path.display().to_string(), reason: reason.to_string() }
}

/// Whether a store may still be used: a store whose write failed refuses further use,
/// because what is durable is unknown until it is reopened (fail closed).
#[derive(Debug, Default)]
pub struct FailClosed {
    cause: Option<String>,
}

impl FailClosed {
    /// `Ok` while no write has failed; afterwards an `Io` error naming `path` and the
    /// first failure.
    pub fn check(&self, path: &Path) -> Result<(), StorageError> {
        match &self.cause {
            Some(cause) => Err(at_path(
                path,
                "use after a failed write",
                format!("an earlier write failed ({cause}); reopen the store"),
            )),
            None => Ok(()),
        }
    }

    /// Records a failed write: every later [`check`](FailClosed::check) fails.
    pub fn fail(&mut self, error: &StorageError) {
        self.cause = Some(error.to_string());
    }
}
