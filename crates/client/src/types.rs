//! The values calls take and return, free of protobuf types.

use bytes::Bytes;
use d_engine_grpc::client_proto as proto;

/// The answer to a proposal: the state machine's output and where the command sits in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposed {
    /// The state machine's output for the command.
    pub output: Bytes,
    /// The term of the command's log entry.
    pub term: u64,
    /// The index of the command's log entry.
    pub index: u64,
}

/// How fresh a query's answer must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// Reflects every write committed before the query started (a ReadIndex round
    /// through the leader).
    #[default]
    Linearizable,
    /// The leader's lease, no round trip; linearizable only while clock drift stays bounded.
    Lease,
    /// Whatever the answering node has applied: possibly stale, served by any node.
    Serializable,
}

impl From<Consistency> for proto::Consistency {
    fn from(consistency: Consistency) -> proto::Consistency {
        match consistency {
            Consistency::Linearizable => proto::Consistency::Linearizable,
            Consistency::Lease => proto::Consistency::Lease,
            Consistency::Serializable => proto::Consistency::Serializable,
        }
    }
}

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader.
    Follower,
    /// Checks whether it could win an election.
    PreCandidate,
    /// Runs for election.
    Candidate,
    /// Leads.
    Leader,
    /// Replicates without voting.
    Learner,
    /// A role this client does not know (a newer node).
    Unknown,
}

impl From<i32> for Role {
    fn from(wire: i32) -> Role {
        match proto::Role::try_from(wire) {
            Ok(proto::Role::Follower) => Role::Follower,
            Ok(proto::Role::PreCandidate) => Role::PreCandidate,
            Ok(proto::Role::Candidate) => Role::Candidate,
            Ok(proto::Role::Leader) => Role::Leader,
            Ok(proto::Role::Learner) => Role::Learner,
            Ok(proto::Role::Unspecified) | Err(_) => Role::Unknown,
        }
    }
}

/// One member of the cluster, as a node knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node's id.
    pub id: u64,
    /// Where peers reach it, e.g. `http://127.0.0.1:9081`.
    pub peer_address: String,
    /// The application's client endpoint, when it has one apart from the peer address.
    pub client_address: Option<String>,
    /// Whether it replicates without voting.
    pub learner: bool,
}

/// What one node knows of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The answering node.
    pub node_id: u64,
    /// The cluster's id.
    pub cluster_id: String,
    /// The answering node's role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader_id: Option<u64>,
    /// The leader's client address, when known.
    pub leader_address: Option<String>,
    /// Its commit index.
    pub commit_index: u64,
    /// Its applied index.
    pub applied_index: u64,
    /// The index of its last log entry.
    pub last_log_index: u64,
    /// The members it knows of.
    pub members: Vec<Member>,
}

fn non_empty(text: String) -> Option<String> {
    if text.is_empty() { None } else { Some(text) }
}

impl From<proto::StatusReply> for ClusterStatus {
    fn from(reply: proto::StatusReply) -> ClusterStatus {
        ClusterStatus {
            node_id: reply.node_id,
            cluster_id: reply.cluster_id,
            role: Role::from(reply.role),
            term: reply.term,
            leader_id: (reply.leader_id != 0).then_some(reply.leader_id),
            leader_address: non_empty(reply.leader_address),
            commit_index: reply.commit_index,
            applied_index: reply.applied_index,
            last_log_index: reply.last_log_index,
            members: reply
                .members
                .into_iter()
                .map(|member| Member {
                    id: member.id,
                    peer_address: member.peer_address,
                    client_address: non_empty(member.client_address),
                    learner: member.learner,
                })
                .collect(),
        }
    }
}
