//! The messages Raft peers exchange. Transports carry them; the core never sees a socket.

use bytes::Bytes;

use crate::storage::SnapshotMeta;
use crate::types::{Entry, LogId, LogIndex, NodeId, Term};

/// A message with its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The sender.
    pub from: NodeId,
    /// The receiver; never equal to `from`.
    pub to: NodeId,
    /// The content.
    pub message: Message,
}

/// Where a follower's log may still agree with the leader's after a rejected append,
/// so the leader skips a whole term per round trip instead of one entry.
///
/// `index` is the largest index, at or below the rejected one and the follower's last,
/// whose term is at most the term the leader sent; `term` is the follower's term there.
/// The leader resumes after the largest index of its own log, at or below `index`, whose
/// term is at most `term` (etcd-raft's `findConflictByTerm`, run on both sides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConflictHint {
    /// The follower's candidate match point.
    pub index: LogIndex,
    /// The follower's term at `index`.
    pub term: Term,
}

/// The outcome of an append request on the follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The follower's log matches the leader's up to `matched`, durably.
    Success {
        /// The last index known to match (prev + number of entries).
        matched: LogIndex,
    },
    /// The consistency check failed at `rejected` (the request's previous index).
    Conflict {
        /// The previous index of the rejected request.
        rejected: LogIndex,
        /// Where to retry from.
        hint: ConflictHint,
    },
    /// The request came from a stale term; the response's term tells the sender.
    StaleTerm,
}

/// The answer to a snapshot chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// Send from this byte offset next (a resume point after a lost or stale chunk, too).
    Continue {
        /// The next offset the follower expects.
        next_offset: u64,
    },
    /// The follower holds everything up to the snapshot's last entry, durably (installed
    /// now, or already covered by its committed log).
    Done,
}

/// Every peer message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Ask for a vote (or, with `pre_vote`, whether a vote would be granted).
    VoteRequest {
        /// The term the candidate runs in (for a pre-vote: the term it would run in).
        term: Term,
        /// The candidate's last log id.
        last_log_id: LogId,
        /// A pre-vote changes no term and no vote on the receiver.
        pre_vote: bool,
        /// Sent on a leader's `TimeoutNow`: receivers must not ignore it for having a leader.
        leadership_transfer: bool,
    },
    /// The answer to a vote request.
    VoteResponse {
        /// The receiver's term, or the requested term for a granted pre-vote.
        term: Term,
        /// Whether the vote was granted.
        granted: bool,
        /// Answers a pre-vote.
        pre_vote: bool,
    },
    /// Replicate entries after `prev_log_id`; an empty `entries` probes the consistency check.
    AppendRequest {
        /// The leader's term.
        term: Term,
        /// The entry just before `entries`.
        prev_log_id: LogId,
        /// Consecutive entries starting at `prev_log_id.index + 1`.
        entries: Vec<Entry>,
        /// The leader's commit index.
        leader_commit: LogIndex,
    },
    /// The answer to an append request, sent only once the entries are durable.
    AppendResponse {
        /// The follower's term.
        term: Term,
        /// What happened.
        outcome: AppendOutcome,
    },
    /// Leader liveness, commit propagation and read-index confirmation rounds.
    Heartbeat {
        /// The leader's term.
        term: Term,
        /// `min(commit, the follower's match)`: safe to adopt without a consistency check.
        commit: LogIndex,
        /// The latest read-index round; echoed back to confirm leadership.
        read_round: u64,
    },
    /// The answer to a heartbeat.
    HeartbeatResponse {
        /// The follower's term.
        term: Term,
        /// The echoed read round.
        read_round: u64,
    },
    /// Leadership transfer: start an election now, without a pre-vote.
    TimeoutNow {
        /// The leader's term.
        term: Term,
    },
    /// One chunk of a snapshot for a follower whose next entry was purged.
    InstallSnapshot {
        /// The leader's term.
        term: Term,
        /// What the snapshot covers.
        meta: SnapshotMeta,
        /// Where `data` starts in the snapshot.
        offset: u64,
        /// The chunk.
        data: Bytes,
        /// The snapshot's total size; the last chunk ends there.
        total_bytes: u64,
        /// FNV-1a checksum of the whole snapshot, verified before it is installed.
        checksum: u64,
    },
    /// The answer to a snapshot chunk.
    InstallSnapshotResponse {
        /// The follower's term.
        term: Term,
        /// The snapshot the answer is about.
        last_included: LogId,
        /// What happened.
        outcome: SnapshotOutcome,
    },
}

impl Message {
    /// The term the message was sent in.
    pub fn term(&self) -> Term {
        match self {
            Message::VoteRequest { term, .. }
            | Message::VoteResponse { term, .. }
            | Message::AppendRequest { term, .. }
            | Message::AppendResponse { term, .. }
            | Message::Heartbeat { term, .. }
            | Message::HeartbeatResponse { term, .. }
            | Message::TimeoutNow { term }
            | Message::InstallSnapshot { term, .. }
            | Message::InstallSnapshotResponse { term, .. } => *term,
        }
    }

    /// A short name for logs and message counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::VoteRequest { pre_vote: true, .. } => "pre_vote_request",
            Message::VoteRequest { .. } => "vote_request",
            Message::VoteResponse { pre_vote: true, .. } => "pre_vote_response",
            Message::VoteResponse { .. } => "vote_response",
            Message::AppendRequest { .. } => "append_request",
            Message::AppendResponse { .. } => "append_response",
            Message::Heartbeat { .. } => "heartbeat",
            Message::HeartbeatResponse { .. } => "heartbeat_response",
            Message::TimeoutNow { .. } => "timeout_now",
            Message::InstallSnapshot { .. } => "install_snapshot",
            Message::InstallSnapshotResponse { .. } => "install_snapshot_response",
        }
    }
}
