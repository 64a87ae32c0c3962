//! The seam between the etcd service and the consensus layer.
//!
//! The service knows nothing of Raft: it hands write commands to a [`Replica`], asks it to
//! run reads once they are safe, and reads cluster facts from it. The d-engine node
//! implements the trait; [`LocalReplica`] is a single-process stand-in that applies every
//! command at once, for tests and for trying the API without a cluster.

use std::future::Future;
use std::sync::Mutex;

use bytes::Bytes;
use d_engine_core::storage::{StateMachine, StateStore};
use d_engine_core::{Entry, EntryPayload, LogId};

use crate::state_machine::KvStateMachine;

/// What the etcd service needs from the consensus layer.
pub trait Replica: Send + Sync + 'static {
    /// The state store under the KV state machine.
    type Store: StateStore + Send + Sync + 'static;

    /// Replicates `command` (an encoded `KvCommand`) through the log and returns the state
    /// machine's output for it (an encoded `KvOutput`) once it is applied on this node.
    fn write(&self, command: Bytes) -> impl Future<Output = Result<Bytes, ReplicaError>> + Send;

    /// Runs `read` on the local state machine once a read at this consistency is safe:
    /// linearizable after a ReadIndex round (or a valid lease), serializable right away
    /// (possibly stale).
    fn read<R: Send + 'static>(
        &self,
        linearizable: bool,
        read: impl FnOnce(&KvStateMachine<Self::Store>) -> R + Send + 'static,
    ) -> impl Future<Output = Result<R, ReplicaError>> + Send;

    /// What this node knows of the cluster now, for Status and MemberList.
    fn cluster(&self) -> ClusterView;

    /// The facts every response header carries. Called for every request, so a replica
    /// with an expensive [`cluster`](Replica::cluster) should answer it cheaply; the
    /// default takes them from `cluster()`.
    fn header_facts(&self) -> HeaderFacts {
        let view = self.cluster();
        HeaderFacts { cluster_id: view.cluster_id, member_id: view.member_id, raft_term: view.raft_term }
    }
}

/// The cluster fields of an etcd response header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderFacts {
    /// The cluster's id.
    pub cluster_id: u64,
    /// This node's id.
    pub member_id: u64,
    /// This node's current term.
    pub raft_term: u64,
}

/// Why a [`Replica`] could not serve a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// This node is not the leader; the service forwards to the leader's client address
    /// when it is known, else answers UNAVAILABLE "etcdserver: no leader".
    #[error("not the leader (leader client address: {leader_client_address:?})")]
    NotLeader {
        /// Where the leader serves the etcd API, as `host:port` or a URL.
        leader_client_address: Option<String>,
    },
    /// The node is starting, stopping or cannot reach a quorum. Answered UNAVAILABLE.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The node gave up waiting; the outcome of a write is unknown. Answered DEADLINE_EXCEEDED.
    #[error("timed out; the outcome is unknown")]
    Timeout,
    /// The command lost its place in the log (a leader change): not applied. Answered ABORTED.
    #[error("aborted: {0}")]
    Aborted(String),
    /// The state machine or storage failed. Answered INTERNAL.
    #[error("internal: {0}")]
    Internal(String),
}

/// Cluster facts, as one node sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The cluster's id (etcd's `header.cluster_id`).
    pub cluster_id: u64,
    /// This node's id.
    pub member_id: u64,
    /// The leader this node follows, if it knows one.
    pub leader_id: Option<u64>,
    /// This node's current term.
    pub raft_term: u64,
    /// This node's commit index.
    pub raft_index: u64,
    /// This node's applied index.
    pub raft_applied_index: u64,
    /// Every member, voters and learners.
    pub members: Vec<MemberView>,
    /// The size of the state store on disk, 0 if unknown.
    pub db_size_bytes: u64,
    /// Whether this node is a learner.
    pub is_learner: bool,
}

/// One member of the cluster, as etcd's MemberList shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberView {
    /// The member's id.
    pub id: u64,
    /// Its human-readable name.
    pub name: String,
    /// The URLs peers reach it at.
    pub peer_urls: Vec<String>,
    /// The URLs clients reach its etcd API at.
    pub client_urls: Vec<String>,
    /// Whether it is a learner.
    pub is_learner: bool,
}

/// A single-process [`Replica`]: a one-member "cluster" that is always the leader and applies
/// each command as its own log entry at once, in term 1. Not replicated and not fault
/// tolerant; for tests and for trying the API.
pub struct LocalReplica<S> {
    state_machine: Mutex<KvStateMachine<S>>,
    view: ClusterView,
}

impl<S: StateStore + Send + Sync + 'static> LocalReplica<S> {
    /// Wraps `state_machine`; `view` supplies the member facts (ids, names, URLs); the
    /// leader, term and indexes are kept up to date by the replica itself.
    pub fn new(state_machine: KvStateMachine<S>, view: ClusterView) -> LocalReplica<S> {
        LocalReplica { state_machine: Mutex::new(state_machine), view }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, KvStateMachine<S>>, ReplicaError> {
        self.state_machine.lock().map_err(|_| ReplicaError::Internal("a previous apply panicked".into()))
    }

    fn apply(&self, command: Bytes) -> Result<Bytes, ReplicaError> {
        let mut state_machine = self.lock()?;
        let index = state_machine.last_applied().index.next();
        let entry = Entry { log_id: LogId::new(1, index.0), payload: EntryPayload::Command(command) };
        let mut outputs = state_machine.apply(&[entry]).map_err(|error| ReplicaError::Internal(error.to_string()))?;
        outputs.pop().ok_or_else(|| ReplicaError::Internal("apply returned no output".into()))
    }
}

impl<S: StateStore + Send + Sync + 'static> Replica for LocalReplica<S> {
    type Store = S;

    fn write(&self, command: Bytes) -> impl Future<Output = Result<Bytes, ReplicaError>> + Send {
        let result = self.apply(command);
        async move { result }
    }

    fn read<R: Send + 'static>(
        &self,
        _linearizable: bool,
        read: impl FnOnce(&KvStateMachine<S>) -> R + Send + 'static,
    ) -> impl Future<Output = Result<R, ReplicaError>> + Send {
        let result = self.lock().map(|state_machine| read(&state_machine));
        async move { result }
    }

    fn cluster(&self) -> ClusterView {
        let applied = self.lock().map(|state_machine| state_machine.last_applied().index.0).unwrap_or(0);
        ClusterView {
            leader_id: Some(self.view.member_id),
            raft_term: 1,
            raft_index: applied,
            raft_applied_index: applied,
            ..self.view.clone()
        }
    }
}
