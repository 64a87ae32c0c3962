use bytes::Bytes;

use super::StorageError;
use crate::membership::Membership;
use crate::types::{Entry, LogId};

/// What a snapshot covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last entry whose effect the snapshot contains.
    pub last_included: LogId,
    /// The membership in force at `last_included`.
    pub membership: Membership,
}

/// A point-in-time image of a state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// What it covers.
    pub meta: SnapshotMeta,
    /// The state machine's own encoding of its state.
    pub data: Bytes,
}

/// A snapshot build to run later, possibly on another thread (see
/// [`StateMachine::snapshot_job`]): the last included id and the state's encoding.
pub type SnapshotJob = Box<dyn FnOnce() -> Result<(LogId, Bytes), StorageError> + Send>;

/// The user's deterministic state machine.
///
/// The runtime calls `apply` with committed entries only, in log order, each
/// exactly once per state-machine lifetime; determinism means every replica that
/// applies the same entries reaches the same state and returns the same outputs.
///
/// # Durability
/// A state machine either persists its state and `last_applied` atomically
/// together (so that after a crash `last_applied` names exactly the entries whose
/// effects survived), or keeps both in memory and starts from `LogId::default()`
/// after a restart, in which case the runtime re-applies the log from the start.
/// Applying the same entry twice must never be the consequence of a crash.
pub trait StateMachine {
    /// Applies `entries` (consecutive, starting right after `last_applied()`) and returns
    /// one output per entry, in order (empty bytes for no-op and membership entries).
    /// An error stops the node; entries may not be skipped.
    fn apply(&mut self, entries: &[Entry]) -> Result<Vec<Bytes>, StorageError>;

    /// The id of the last applied entry, `LogId::default()` if none.
    fn last_applied(&self) -> LogId;

    /// Captures the state as of `last_applied()` and returns that id with the state's
    /// encoding. The state machine stays usable. The runtime pairs it with the membership
    /// in force at that id to form a [`Snapshot`].
    fn build_snapshot(&mut self) -> Result<(LogId, Bytes), StorageError>;

    /// A job that returns [`build_snapshot`](Self::build_snapshot)'s result as of this call,
    /// and that the runtime runs on another thread while it goes on applying entries. The
    /// default builds the snapshot here and now (the job only hands it over); a state machine
    /// over a store with consistent read views defers the work to the job
    /// ([`StateStore::export_job`](super::StateStore::export_job)).
    fn snapshot_job(&mut self) -> Result<SnapshotJob, StorageError> {
        let built = self.build_snapshot()?;
        Ok(Box::new(move || Ok(built)))
    }

    /// Replaces the whole state with `snapshot`; afterwards `last_applied()` returns
    /// `snapshot.meta.last_included`. Installing a snapshot older than `last_applied()`
    /// is `Misuse`: the core never asks for it.
    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError>;

    /// Makes the state as of `last_applied()` durable now, for a state machine that defers
    /// its writes (and so, after a crash, restarts from an earlier `last_applied()` and has
    /// the log re-applied). The runtime calls it when the node stops gracefully; an error is
    /// reported and changes nothing else (the log is still there to re-apply). The default
    /// does nothing: right for a state machine whose `apply` is durable or kept in memory.
    fn flush(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}
