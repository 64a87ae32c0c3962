//! What a node publishes about itself through a `tokio::sync::watch`.

use d_engine_core::{LogIndex, Membership, NodeId, Role, Term};

/// A node's view of itself and the cluster, updated by the event loop after every batch of
/// inputs that changed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// The highest index known committed.
    pub commit: LogIndex,
    /// The highest index the state machine applied.
    pub applied: LogIndex,
    /// The last index in the log (durable or not).
    pub last_log_index: LogIndex,
    /// The membership in force (the latest appended).
    pub membership: Membership,
    /// Set once the node has stopped; the reason if it failed.
    pub stopped: Option<Result<(), String>>,
}

impl NodeStatus {
    /// Whether this node currently leads.
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
}
