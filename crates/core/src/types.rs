//! Identifiers and the log's building blocks.
//!
//! Every id is a newtype so that a term can never be passed where an index is
//! expected. `LogIndex(0)` and `Term(0)` mean "nothing": the first real entry
//! has index 1 and is written in term 1 or later.

use std::fmt;

use bytes::Bytes;

use crate::membership::Membership;

/// The id of a node in the cluster. Ids are chosen by the operator and never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

/// A Raft term. Terms only grow, on every node, across restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(pub u64);

/// The position of an entry in the log, starting at 1. `LogIndex(0)` is "before the first entry".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogIndex(pub u64);

/// The identity of an entry: two entries with the same `LogId` are the same entry
/// (the Log Matching property), and so are all entries before them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LogId {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: LogIndex,
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i{}", self.0)
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.term, self.index)
    }
}

impl Term {
    /// The term after this one.
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl LogIndex {
    /// The index after this one.
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The index before this one; `LogIndex(0)` stays `LogIndex(0)`.
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

impl LogId {
    /// Builds a log id from raw numbers (tests and adapters).
    pub fn new(term: u64, index: u64) -> LogId {
        LogId { term: Term(term), index: LogIndex(index) }
    }

    /// The comparison Raft uses to decide whose log is more up to date:
    /// a higher last term wins, then a longer log.
    pub fn is_at_least_as_up_to_date_as(&self, other: &LogId) -> bool {
        (self.term, self.index) >= (other.term, other.index)
    }
}

/// What an entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryPayload {
    /// An opaque command for the user's state machine.
    Command(Bytes),
    /// Written by every new leader in its own term so that it can commit
    /// (and serve linearizable reads) without waiting for a client write.
    Noop,
    /// A cluster configuration. Today the core runs with the membership it was started
    /// with; acting on these entries (joint consensus, learners) is the membership issue's work.
    Membership(Membership),
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Where the entry sits and which leader created it.
    pub log_id: LogId,
    /// What it carries.
    pub payload: EntryPayload,
}

impl Entry {
    /// The number of payload bytes, used by the flow-control windows.
    pub fn payload_bytes(&self) -> u64 {
        match &self.payload {
            EntryPayload::Command(bytes) => bytes.len() as u64,
            EntryPayload::Noop => 0,
            EntryPayload::Membership(m) => 8 * (m.voter_ids().count() + m.learners().len()) as u64,
        }
    }
}

/// The state a node must keep durable before it acts on it.
///
/// `term` and `vote` protect election safety; `commit` is a hint that lets a
/// restarted node apply without waiting for a leader (it never exceeds the
/// durable log).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// Whom this node voted for in `term`, if anyone.
    pub vote: Option<NodeId>,
    /// The highest index this node knows to be committed.
    pub commit: LogIndex,
}
