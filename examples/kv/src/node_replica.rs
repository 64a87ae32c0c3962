//! The d-engine node as the etcd service's [`Replica`]: writes go through the Raft log,
//! linearizable reads through a ReadIndex round, serializable reads straight to the local
//! state machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use d_engine::core::NodeId;
use d_engine::core::storage::StateStore;
use d_engine::{Node, ReadConsistency, RequestError};

use crate::replica::{ClusterView, HeaderFacts, MemberView, Replica, ReplicaError};
use crate::state_machine::KvStateMachine;

/// A running node serving the etcd API.
pub struct NodeReplica<S> {
    node: Node<KvStateMachine<S>>,
    /// Read for every response header: a borrow, not a clone of the whole status.
    status: tokio::sync::watch::Receiver<d_engine::NodeStatus>,
    cluster_id: u64,
    data_dir: Option<PathBuf>,
    request_timeout: Duration,
}

impl<S: StateStore + Send + Sync + 'static> NodeReplica<S> {
    /// Serves through `node`. `data_dir` (if on disk) is measured for `db_size`; a request
    /// that has not completed after `request_timeout` is answered DEADLINE_EXCEEDED (a
    /// write's outcome is then unknown, as with etcd).
    pub fn new(node: Node<KvStateMachine<S>>, data_dir: Option<&Path>, request_timeout: Duration) -> NodeReplica<S> {
        let cluster_id = etcd_cluster_id(node.cluster_id());
        let status = node.watch_status();
        NodeReplica { node, status, cluster_id, data_dir: data_dir.map(Path::to_path_buf), request_timeout }
    }

    fn to_replica_error(&self, error: RequestError) -> ReplicaError {
        match error {
            RequestError::NotLeader { leader, .. } => ReplicaError::NotLeader {
                leader_client_address: leader
                    .and_then(|id| self.node.addresses().get(id))
                    .and_then(|addresses| addresses.client_url.clone()),
            },
            RequestError::Aborted => ReplicaError::Aborted(error.to_string()),
            RequestError::OutcomeUnknown(_) => ReplicaError::Timeout,
            RequestError::ShuttingDown | RequestError::Refused(_) => ReplicaError::Unavailable(error.to_string()),
            RequestError::InvalidArgument(_) | RequestError::TooLarge { .. } | RequestError::Query(_) => {
                ReplicaError::Internal(error.to_string())
            }
        }
    }
}

impl<S: StateStore + Send + Sync + 'static> Replica for NodeReplica<S> {
    type Store = S;

    async fn write(&self, command: Bytes) -> Result<Bytes, ReplicaError> {
        match tokio::time::timeout(self.request_timeout, self.node.propose(command)).await {
            Ok(Ok(applied)) => Ok(applied.output),
            Ok(Err(error)) => Err(self.to_replica_error(error)),
            Err(_) => Err(ReplicaError::Timeout),
        }
    }

    async fn read<R: Send + 'static>(
        &self,
        linearizable: bool,
        read: impl FnOnce(&KvStateMachine<S>) -> R + Send + 'static,
    ) -> Result<R, ReplicaError> {
        let consistency = if linearizable { ReadConsistency::Linearizable } else { ReadConsistency::Serializable };
        match tokio::time::timeout(self.request_timeout, self.node.read(consistency, read)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.to_replica_error(error)),
            Err(_) => Err(ReplicaError::Timeout),
        }
    }

    fn header_facts(&self) -> HeaderFacts {
        let status = self.status.borrow();
        HeaderFacts { cluster_id: self.cluster_id, member_id: status.id.0, raft_term: status.term.0 }
    }

    /// Walks the data directory for `db_size`: fine for Status and MemberList, which is
    /// why headers use [`header_facts`](Replica::header_facts) instead.
    fn cluster(&self) -> ClusterView {
        let status = self.node.status();
        let membership = &status.membership;
        let member = |id: NodeId| {
            let addresses = self.node.addresses().get(id);
            MemberView {
                id: id.0,
                name: format!("node-{}", id.0),
                peer_urls: addresses.map(|a| vec![a.peer_url.clone()]).unwrap_or_default(),
                client_urls: addresses.and_then(|a| a.client_url.clone()).into_iter().collect(),
                is_learner: membership.learners().contains(&id),
            }
        };
        ClusterView {
            cluster_id: self.cluster_id,
            member_id: status.id.0,
            leader_id: status.leader.map(|id| id.0),
            raft_term: status.term.0,
            raft_index: status.commit.0,
            raft_applied_index: status.applied.0,
            members: membership.voter_ids().chain(membership.learners().iter().copied()).map(member).collect(),
            db_size_bytes: self.data_dir.as_deref().map_or(0, directory_bytes),
            is_learner: membership.learners().contains(&status.id),
        }
    }
}

/// etcd's numeric cluster id for our textual one: FNV-1a of its bytes.
pub fn etcd_cluster_id(cluster_id: &str) -> u64 {
    d_engine::core::storage::codec::checksum(cluster_id.as_bytes())
}

/// The bytes of the files under `dir`, recursively (0 where unreadable).
fn directory_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
