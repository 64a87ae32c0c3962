//! What a KV request can fail with, in etcd's words.

use d_engine_core::storage::StorageError;

/// Why a KV request was refused or failed.
///
/// Every variant except [`KvError::Storage`] is the client's doing and is answered with a
/// gRPC status (see [`KvError::code`]); the messages are etcd's, so that clients that match
/// on them keep working. `Storage` is fatal to the node.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// A Range, Put or DeleteRange with an empty key.
    #[error("etcdserver: key is not provided")]
    KeyNotProvided,
    /// A Put with `ignore_value` that also carries a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// A Put with `ignore_value` or `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A Put that names a lease: d-engine-kv has no leases, so every lease id is unknown.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A Txn with more than the allowed operations in one branch.
    #[error("etcdserver: too many operations in txn request")]
    TooManyTxnOps,
    /// A Txn branch that writes the same key twice.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A Range with an unknown sort order or target.
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// A Txn compare with an unknown result or target, or an op with no request.
    #[error("d-engine-kv: malformed request: {0}")]
    Malformed(String),
    /// A Range at an older revision: d-engine-kv keeps no history, only the current revision.
    #[error("mvcc: required revision has been compacted")]
    RevisionCompacted,
    /// A Range at a revision the store has not reached.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// A request larger than the configured maximum.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// The state store failed; the node stops.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl KvError {
    /// The gRPC status code etcd answers this error with (`RESOURCE_EXHAUSTED` for an
    /// oversize request, where etcd says `INVALID_ARGUMENT`).
    pub fn code(&self) -> tonic::Code {
        match self {
            KvError::KeyNotProvided
            | KvError::ValueProvided
            | KvError::KeyNotFound
            | KvError::TooManyTxnOps
            | KvError::DuplicateKey
            | KvError::InvalidSortOption
            | KvError::Malformed(_) => tonic::Code::InvalidArgument,
            KvError::LeaseNotFound => tonic::Code::NotFound,
            KvError::RevisionCompacted | KvError::FutureRevision => tonic::Code::OutOfRange,
            KvError::RequestTooLarge => tonic::Code::ResourceExhausted,
            KvError::Storage(_) => tonic::Code::Internal,
        }
    }
}

impl From<KvError> for tonic::Status {
    fn from(error: KvError) -> tonic::Status {
        tonic::Status::new(error.code(), error.to_string())
    }
}
