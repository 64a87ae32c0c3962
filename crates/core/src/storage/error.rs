use crate::types::LogIndex;

/// What a storage operation can fail with.
///
/// `Compacted` and `Unavailable` are range errors the caller can act on; every
/// other variant is fatal for the node.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The index was purged into a snapshot; entries start at `first_available`.
    #[error("log index {index} was purged: the log starts at {first_available}")]
    Compacted {
        /// The index asked for.
        index: LogIndex,
        /// The first index still in the log.
        first_available: LogIndex,
    },
    /// The index is past the end of the log.
    #[error("log index {index} is past the last entry {last}")]
    Unavailable {
        /// The index asked for.
        index: LogIndex,
        /// The last index in the log.
        last: LogIndex,
    },
    /// The caller broke the contract (a gap in an append, truncating purged entries, ...).
    /// The runtime treats it as a bug and stops.
    #[error("storage contract violated: {0}")]
    Misuse(String),
    /// The stored data cannot be trusted: a checksum, a decode or a format version failed.
    #[error("corrupt storage at {location}: {reason}")]
    Corrupt {
        /// The file or table, so an operator knows where to look.
        location: String,
        /// What was wrong.
        reason: String,
    },
    /// The underlying device or database failed.
    #[error("storage I/O failed during {operation}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
