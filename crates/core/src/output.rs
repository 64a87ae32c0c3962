//! What the core asks its runtime to do, and the errors it answers requests with.

use crate::membership::MembershipError;
use crate::message::Envelope;
use crate::storage::Snapshot;
use crate::types::{Entry, HardState, LogId, LogIndex, NodeId, Term};

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
/// Apply in this order: `hard_state`, `truncate_from`, `entries`, `purge_upto`; then sync
/// and call `Raft::persisted(id)`. Writes must reach the store in the order they are emitted.
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
    /// Purge the log up to and including this entry (`LogStore::purge_prefix`): it is
    /// covered by a durable snapshot.
    pub purge_upto: Option<LogId>,
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
    /// Build a snapshot of the state machine at its applied index, save it durably, and
    /// report it with `Raft::snapshot_built`.
    BuildSnapshot,
    /// Hand the latest durable snapshot to `Raft::snapshot_loaded(peer, term, snapshot)`,
    /// for a peer whose next entry was purged.
    LoadSnapshot {
        /// The peer it is for.
        peer: NodeId,
        /// The leader term that asked; stale answers are ignored.
        term: Term,
    },
    /// A snapshot arrived from the leader, complete and verified: install it into the state
    /// machine, save it durably (it replaces any older one), then call
    /// `Raft::snapshot_installed(meta)`. Until then apply nothing.
    InstallSnapshot(Snapshot),
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

/// Why a snapshot report was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The snapshot covers entries that were not applied, or is not newer than the current one.
    #[error("snapshot at {last_included} is not usable: {reason}")]
    Unusable {
        /// The snapshot's last entry.
        last_included: LogId,
        /// Why.
        reason: &'static str,
    },
}

/// A change of the cluster's membership, proposed on the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a node that receives the log but does not vote.
    AddLearner(NodeId),
    /// Make a caught-up learner a voter (joint consensus).
    Promote(NodeId),
    /// Remove a learner, or a voter (joint consensus); the leader may remove itself.
    Remove(NodeId),
    /// Replace voter `remove` by caught-up learner `add` in one joint change.
    Replace {
        /// The voter leaving.
        remove: NodeId,
        /// The learner joining the voters.
        add: NodeId,
    },
    /// Make exactly these nodes the voters; new ones must be caught-up learners, removed
    /// voters leave the cluster.
    ChangeVoters(std::collections::BTreeSet<NodeId>),
}

/// Why a membership change was refused. Nothing was appended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipChangeError {
    /// Only the leader changes the membership; try the hinted leader.
    #[error("not the leader; leader hint: {leader:?}")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// A new leader must first commit an entry of its own term (the single-server change bug).
    #[error("the leader has not committed an entry of its term yet; retry shortly")]
    LeaderNotReady,
    /// Another change is still being committed (or the joint configuration not yet left).
    #[error("another membership change is in progress")]
    ChangeInProgress,
    /// A leadership transfer is under way.
    #[error("a leadership transfer is in progress")]
    TransferInProgress,
    /// The node is already what the change would make it.
    #[error("node {0} is already a member in that role")]
    AlreadyMember(NodeId),
    /// The node is not a member (or not in the role the change needs).
    #[error("node {0} is not a member in the role this change needs")]
    NotAMember(NodeId),
    /// A learner must catch up before it may vote.
    #[error("learner {id} is {lag} entries behind the leader (at most {allowed} allowed)")]
    LearnerBehind {
        /// The learner.
        id: NodeId,
        /// How far behind it is.
        lag: u64,
        /// The configured allowance.
        allowed: u64,
    },
    /// The resulting membership would be invalid (for example without voters).
    #[error("the resulting membership is invalid: {0}")]
    Invalid(#[from] MembershipError),
}

/// How a linearizable read is confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPolicy {
    /// Confirm leadership with a heartbeat round (ReadIndex).
    ReadIndex,
    /// Use the leader lease when one is configured and valid, else fall back to ReadIndex.
    Lease,
}
