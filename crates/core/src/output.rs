//! What the core asks its runtime to do, and the errors it answers requests with.

use crate::message::Envelope;
use crate::types::{Entry, HardState, LogIndex, NodeId, Term};

/// Identifies one `Output::Persist`; the runtime reports it back through `Raft::persisted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

/// Identifies a read request; chosen by the runtime, echoed back by the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadId(pub u64);

/// The role of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks whether it could win before bumping its term.
    PreCandidate,
    /// Runs an election in its term.
    Candidate,
    /// Leads its term.
    Leader,
}

/// One write to the log store, to be made durable as a unit.
///
/// Apply in this order: `hard_state`, `truncate_from`, `entries`; then sync and call
/// `Raft::persisted(id)`. Writes must reach the store in the order they are emitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistRequest {
    /// Report this id once the write is durable.
    pub id: WriteId,
    /// Save this hard state, if present.
    pub hard_state: Option<HardState>,
    /// Remove every entry with index `>=` this, if present (a conflicting suffix).
    pub truncate_from: Option<LogIndex>,
    /// Append these entries after the (possibly truncated) log.
    pub entries: Vec<Entry>,
}

/// A command for the runtime, drained with `Raft::take_outputs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write to the log store, sync, then report `persisted(id)`.
    Persist(PersistRequest),
    /// Send a message to a peer. Dropping it is always safe (the network may).
    Send(Envelope),
    /// Apply the committed, durable entries `first..=last` (read them from the log store)
    /// to the state machine, then report `applied(last)`.
    Apply {
        /// The first entry to apply.
        first: LogIndex,
        /// The last entry to apply.
        last: LogIndex,
    },
    /// Read `first..=last` from the log store for a lagging peer and hand them back with
    /// `entries_loaded(peer, term, entries)`.
    LoadEntries {
        /// The peer they are for.
        peer: NodeId,
        /// The leader term that asked; stale answers are ignored.
        term: Term,
        /// The first index to load.
        first: LogIndex,
        /// The last index to load.
        last: LogIndex,
    },
    /// A linearizable read may be served once the state machine has applied `index`.
    ReadReady {
        /// The read's id.
        id: ReadId,
        /// Serve the read from a state that includes at least this index.
        index: LogIndex,
    },
    /// A read could not be confirmed.
    ReadFailed {
        /// The read's id.
        id: ReadId,
        /// Why.
        error: ReadError,
    },
    /// The role, term or known leader changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The current term.
        term: Term,
        /// The known leader, if any.
        leader: Option<NodeId>,
    },
}

/// Why a proposal was refused. A refused proposal was not appended anywhere.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader accepts proposals; try the hinted leader.
    #[error("not the leader; leader hint: {leader:?}")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// A leadership transfer is under way; retry on the new leader.
    #[error("leadership is being transferred to {target}")]
    TransferInProgress {
        /// The node taking over.
        target: NodeId,
    },
}

/// Why a read was refused or failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Only the leader confirms reads; try the hinted leader.
    #[error("not the leader; leader hint: {leader:?}")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
}

/// Why a leadership transfer was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// Only the leader can transfer leadership.
    #[error("not the leader; leader hint: {leader:?}")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// The target cannot lead.
    #[error("node {0} is not a voter")]
    NotAVoter(NodeId),
}

/// How a linearizable read is confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPolicy {
    /// Confirm leadership with a heartbeat round (ReadIndex).
    ReadIndex,
    /// Use the leader lease when one is configured and valid, else fall back to ReadIndex.
    Lease,
}
