//! The Raft node: one state machine that takes one input at a time and returns
//! typed outputs. The public methods are the inputs; `take_outputs` drains what the
//! runtime must do. Each concern lives in its own file: `election`, `replication`,
//! `reads`, `transfer`; this file holds the state and the input dispatch.
//!
//! Protocol rules enforced here and documented in docs/protocol.md:
//! - term and vote are durable before a message that depends on them leaves
//!   (see `durability`);
//! - a follower acknowledges entries only once they are durable;
//! - the leader counts itself toward a commit only up to its durable index;
//! - only entries of the current term are committed by counting replicas;
//! - entries are applied only when both committed and durable locally.

mod election;
mod membership;
mod reads;
mod replication;
mod snapshot;
mod transfer;

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{Config, ConfigError};
use crate::durability::{Dependency, Durability};
use crate::log::LogView;
use crate::membership::Membership;
use crate::membership_log::MembershipLog;
use crate::message::{Envelope, Message};
use crate::output::{
    MembershipChange, MembershipChangeError, Output, ProposeError, ReadError, ReadId, ReadPolicy, Role, SnapshotError,
    TransferError,
};
use crate::read::ReadIndexQueue;
use crate::replication::Progress;
use crate::storage::{RecoveredLog, Snapshot, SnapshotMeta};
use crate::types::{Entry, EntryPayload, HardState, LogId, LogIndex, NodeId, Term};

/// How far one peer's log is replicated, as the leader sees it (for metrics and status pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerReplication {
    /// The peer.
    pub peer: NodeId,
    /// The highest index known to match the leader's log (0 before the first answer).
    pub matched: LogIndex,
    /// How the leader replicates to it now.
    pub state: ReplicationState,
    /// Append messages sent and not yet acknowledged (bounded by `Config::max_inflight_messages`).
    pub inflight_messages: usize,
    /// Entry payload bytes in those messages.
    pub inflight_bytes: u64,
}

/// How the leader replicates to one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// Where the logs match is not known yet: one message at a time.
    Probe,
    /// Matched: messages are streamed, bounded by the in-flight window.
    Replicate,
    /// The peer needs a snapshot (the entries it lacks are purged).
    Snapshot,
}

/// A snapshot of a node's protocol state, for status pages, tests and the simulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// Whom it voted for in `term`.
    pub vote: Option<NodeId>,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// The highest index it knows to be committed.
    pub commit: LogIndex,
    /// The highest index the runtime reported applied.
    pub applied: LogIndex,
    /// The last entry of its log (durable or not).
    pub last_log_id: LogId,
    /// The last index that is durable and agrees with its log.
    pub durable_index: LogIndex,
}

enum RoleState {
    Follower,
    PreCandidate { votes: BTreeMap<NodeId, bool> },
    Candidate { votes: BTreeMap<NodeId, bool> },
    Leader(Box<LeaderState>),
}

struct LeaderState {
    progress: BTreeMap<NodeId, Progress>,
    heartbeat_elapsed: u64,
    reads: ReadIndexQueue,
    /// Reads that arrived before an entry of this term was committed.
    reads_before_term_commit: Vec<(ReadId, ReadPolicy)>,
    transfer: Option<transfer::Transfer>,
    /// A transfer was started in this term; lease reads stay off until the term ends.
    transfer_attempted: bool,
    /// Peers that should be sent entries when outputs are drained.
    needs_append: Vec<NodeId>,
}

/// One Raft node's protocol state.
pub struct Raft {
    id: NodeId,
    config: Config,
    membership: MembershipLog,
    /// The latest durable snapshot.
    snapshot: Option<SnapshotMeta>,
    /// A `BuildSnapshot` is out and not yet answered.
    snapshot_requested: bool,
    /// A snapshot being received from the leader, or handed to the runtime to install.
    incoming_snapshot: Option<snapshot::Incoming>,
    rng: ChaCha8Rng,
    term: Term,
    vote: Option<NodeId>,
    commit: LogIndex,
    log: LogView,
    role: RoleState,
    leader: Option<NodeId>,
    /// Ticks since the last election timer reset (for a leader: since the last CheckQuorum round).
    election_elapsed: u64,
    randomized_election_timeout: u64,
    /// Ticks since start; the core's only notion of time.
    now: u64,
    durability: Durability,
    outbox: Vec<(Envelope, Dependency)>,
    apply_requested: LogIndex,
    applied: LogIndex,
    reported_role: Option<(Role, Term, Option<NodeId>)>,
    outputs: Vec<Output>,
}

impl Raft {
    /// Starts a node from its recovered log and the index its state machine has applied.
    ///
    /// `seed` drives the only randomness (election timeouts); the same seed and the same
    /// inputs produce the same outputs. Fails if the configuration is invalid or the node
    /// is not a member.
    pub fn new(
        id: NodeId,
        config: Config,
        membership: Membership,
        recovered: &RecoveredLog,
        applied: LogIndex,
        seed: u64,
    ) -> Result<Raft, ConfigError> {
        config.validate()?;
        let snapshot = recovered.snapshot.clone();
        let snapshot_index = snapshot.as_ref().map_or(LogIndex(0), |meta| meta.last_included.index);
        let (base_index, base) = match &snapshot {
            Some(meta) => (meta.last_included.index, meta.membership.clone()),
            None => (LogIndex(0), membership),
        };
        let membership = MembershipLog::new(base_index, base, recovered.memberships.clone());
        if !membership.effective().contains(id) && recovered.last_log_id.index == LogIndex(0) && snapshot.is_none() {
            return Err(ConfigError::NotAMember(id));
        }
        let last = recovered.last_log_id;
        let applied = applied.max(snapshot_index);
        assert!(
            applied <= last.index.max(snapshot_index),
            "the state machine applied {applied} beyond the log's last entry {last} and the snapshot"
        );
        let commit = recovered.hard_state.commit.max(applied).min(last.index.max(snapshot_index));
        let mut raft = Raft {
            id,
            log: LogView::new(recovered, config.entry_cache_entries),
            config,
            membership,
            snapshot,
            snapshot_requested: false,
            incoming_snapshot: None,
            rng: ChaCha8Rng::seed_from_u64(seed),
            term: recovered.hard_state.term,
            vote: recovered.hard_state.vote,
            commit,
            role: RoleState::Follower,
            leader: None,
            election_elapsed: 0,
            randomized_election_timeout: 0,
            now: 0,
            durability: Durability::new(last.index),
            outbox: Vec::new(),
            apply_requested: applied,
            applied,
            reported_role: None,
            outputs: Vec::new(),
        };
        raft.reconcile_log_with_snapshot();
        raft.reset_election_timer();
        Ok(raft)
    }

    /// Advances time by one tick: drives election timeouts, heartbeats, CheckQuorum and
    /// the leadership-transfer deadline.
    pub fn tick(&mut self) {
        self.now += 1;
        if self.is_leader() { self.tick_leader() } else { self.tick_election() }
    }

    /// Handles a message from a peer. Messages not addressed to this node, from non-members
    /// or from itself are ignored.
    pub fn step(&mut self, envelope: Envelope) {
        let Envelope { from, to, message } = envelope;
        // Messages from non-members are not ignored: a removed leader must still be able to
        // commit the configuration that removes it. Disruption by removed nodes is prevented
        // by PreVote and leader stickiness instead.
        if to != self.id || from == self.id {
            return;
        }
        if !self.reconcile_term(from, &message) {
            return;
        }
        match message {
            Message::VoteRequest { term, last_log_id, pre_vote, .. } => {
                self.handle_vote_request(from, term, last_log_id, pre_vote)
            }
            Message::VoteResponse { granted, pre_vote, term } => {
                self.handle_vote_response(from, term, granted, pre_vote)
            }
            Message::AppendRequest { prev_log_id, entries, leader_commit, .. } => {
                self.handle_append_request(from, prev_log_id, entries, leader_commit)
            }
            Message::AppendResponse { outcome, .. } => self.handle_append_response(from, outcome),
            Message::Heartbeat { commit, read_round, .. } => self.handle_heartbeat(from, commit, read_round),
            Message::HeartbeatResponse { read_round, .. } => self.handle_heartbeat_response(from, read_round),
            Message::TimeoutNow { .. } => self.handle_timeout_now(from),
            Message::InstallSnapshot { meta, offset, data, total_bytes, checksum, .. } => {
                self.handle_install_snapshot(from, meta, offset, data, total_bytes, checksum)
            }
            Message::InstallSnapshotResponse { last_included, outcome, .. } => {
                self.handle_install_snapshot_response(from, last_included, outcome)
            }
        }
    }

    /// Appends a command if this node leads. The returned id is where the entry sits; the
    /// command took effect when an entry with exactly this id is applied. If another entry
    /// is applied at that index, the proposal was overwritten by a newer leader and never
    /// takes effect.
    pub fn propose(&mut self, command: Bytes) -> Result<LogId, ProposeError> {
        let RoleState::Leader(leader) = &self.role else {
            return Err(ProposeError::NotLeader { leader: self.leader });
        };
        if let Some(transfer) = &leader.transfer {
            return Err(ProposeError::TransferInProgress { target: transfer.target });
        }
        Ok(self.append_as_leader(EntryPayload::Command(command)))
    }

    /// Asks for a linearizable read. The answer comes as `Output::ReadReady` (serve from a
    /// state machine that applied at least the given index) or `Output::ReadFailed`.
    pub fn read(&mut self, id: ReadId, policy: ReadPolicy) -> Result<(), ReadError> {
        if !self.is_leader() {
            return Err(ReadError::NotLeader { leader: self.leader });
        }
        self.admit_read(id, policy);
        Ok(())
    }

    /// Hands leadership to `target`: the leader stops accepting proposals, brings the target
    /// up to date and tells it to campaign at once. Abandoned after an election timeout.
    pub fn transfer_leadership(&mut self, target: NodeId) -> Result<(), TransferError> {
        self.start_transfer(target)
    }

    /// Proposes a membership change (leader only). Voter changes go through a joint
    /// configuration that the leader leaves automatically once it is committed.
    pub fn change_membership(&mut self, change: MembershipChange) -> Result<LogId, MembershipChangeError> {
        self.propose_membership_change(change)
    }

    /// Asks for a snapshot now, whatever the policy says.
    pub fn trigger_snapshot(&mut self) {
        self.request_snapshot();
    }

    /// The runtime built a snapshot of the state machine at `last_included` (an applied
    /// entry). Returns the full metadata to save with the data: save the snapshot durably
    /// before carrying out any further output (the next `Persist` may purge the log it covers).
    pub fn snapshot_built(&mut self, last_included: LogId) -> Result<SnapshotMeta, SnapshotError> {
        self.record_built_snapshot(last_included)
    }

    /// The runtime's latest durable snapshot, asked for by `Output::LoadSnapshot`.
    pub fn snapshot_loaded(&mut self, peer: NodeId, term: Term, snapshot: Snapshot) {
        self.start_snapshot_send(peer, term, snapshot);
    }

    /// The runtime installed the snapshot of `Output::InstallSnapshot` and saved it durably.
    pub fn snapshot_installed(&mut self, meta: SnapshotMeta) {
        self.finish_snapshot_install(meta);
    }

    /// The runtime made write `id` durable (and with it every earlier write).
    pub fn persisted(&mut self, id: crate::output::WriteId) {
        for envelope in self.durability.on_persisted(id) {
            // A message held across a term change is dropped: its claims may no longer be
            // true (one sync can make a later truncation durable together with the entries
            // an old-term acknowledgement named), and its receiver has moved on anyway.
            if envelope.message.term() >= self.term {
                self.outputs.push(Output::Send(envelope));
            }
        }
        match &self.role {
            RoleState::Leader(_) => self.maybe_commit(),
            RoleState::Candidate { .. } => self.count_votes(),
            _ => {}
        }
    }

    /// The runtime loaded entries asked for by `Output::LoadEntries`.
    pub fn entries_loaded(&mut self, peer: NodeId, term: Term, entries: Vec<Entry>) {
        self.replicate_loaded(peer, term, entries);
    }

    /// The state machine has applied every entry up to `index`.
    pub fn applied(&mut self, index: LogIndex) {
        assert!(index <= self.apply_requested, "applied {index} beyond what was handed out");
        self.applied = self.applied.max(index);
        self.maybe_request_snapshot();
    }

    /// Drains the outputs of every input since the last call. Call it after each input (or
    /// after a batch of inputs, to batch proposals into fewer writes and messages).
    pub fn take_outputs(&mut self) -> Vec<Output> {
        self.flush();
        std::mem::take(&mut self.outputs)
    }

    /// The node's protocol state.
    pub fn status(&self) -> Status {
        Status {
            id: self.id,
            role: self.role(),
            term: self.term,
            vote: self.vote,
            leader: self.leader,
            commit: self.commit,
            applied: self.applied,
            last_log_id: self.log.last(),
            durable_index: self.durability.durable_index(),
        }
    }

    /// The leader's view of every other member's replication, by peer id; empty unless leader.
    pub fn replication(&self) -> Vec<PeerReplication> {
        let RoleState::Leader(leader) = &self.role else { return Vec::new() };
        leader
            .progress
            .iter()
            .filter(|(peer, _)| **peer != self.id)
            .map(|(peer, progress)| PeerReplication {
                peer: *peer,
                matched: progress.matched,
                state: match progress.state {
                    crate::replication::ProgressState::Probe => ReplicationState::Probe,
                    crate::replication::ProgressState::Replicate => ReplicationState::Replicate,
                    crate::replication::ProgressState::Snapshot => ReplicationState::Snapshot,
                },
                inflight_messages: progress.inflights.len(),
                inflight_bytes: progress.inflights.bytes(),
            })
            .collect()
    }

    /// The membership in force (the latest appended, committed or not).
    pub fn membership(&self) -> &Membership {
        self.membership.effective()
    }

    /// The membership in force at the commit index (the last one known committed).
    pub fn committed_membership(&self) -> &Membership {
        self.membership.at(self.commit)
    }

    /// The latest snapshot's metadata.
    pub fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref()
    }

    /// The current role.
    pub fn role(&self) -> Role {
        match self.role {
            RoleState::Follower => Role::Follower,
            RoleState::PreCandidate { .. } => Role::PreCandidate,
            RoleState::Candidate { .. } => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }

    fn is_leader(&self) -> bool {
        matches!(self.role, RoleState::Leader(_))
    }

    fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.commit }
    }

    fn send(&mut self, to: NodeId, message: Message, dependency: Dependency) {
        debug_assert_ne!(to, self.id, "a node never sends to itself");
        self.outbox.push((Envelope { from: self.id, to, message }, dependency));
    }

    /// Turns everything staged by the inputs since the last drain into outputs, in the order
    /// the runtime must see them: the write, then the messages (released or held behind it),
    /// then applies, reads and role changes.
    fn flush(&mut self) {
        // The write goes first, so that a runtime loading entries for a peer (below) finds
        // every entry the core appended in its store.
        let last_index = self.log.last().index;
        if let Some(write) = self.durability.take_write(self.hard_state(), last_index) {
            self.outputs.push(Output::Persist(write));
        }
        self.flush_leader_sends();
        // Sending may have committed, and so appended (leaving a joint configuration).
        let last_index = self.log.last().index;
        if let Some(write) = self.durability.take_write(self.hard_state(), last_index) {
            self.outputs.push(Output::Persist(write));
        }
        for (envelope, dependency) in std::mem::take(&mut self.outbox) {
            if let Some(envelope) = self.durability.release_or_hold(envelope, dependency) {
                self.outputs.push(Output::Send(envelope));
            }
        }
        let applicable = self.commit.min(self.durability.durable_index());
        if applicable > self.apply_requested && self.incoming_snapshot.as_ref().is_none_or(|i| !i.handed_out) {
            self.outputs.push(Output::Apply { first: self.apply_requested.next(), last: applicable });
            self.apply_requested = applicable;
        }
        let role = (self.role(), self.term, self.leader);
        if self.reported_role != Some(role) {
            self.reported_role = Some(role);
            self.outputs.push(Output::RoleChanged { role: role.0, term: role.1, leader: role.2 });
        }
    }
}
