//! The node's errors: why it could not start or stopped ([`NodeError`]), and why one
//! request through the [`Node`](crate::Node) handle failed ([`RequestError`]).

use std::net::SocketAddr;

use d_engine_core::storage::StorageError;
use d_engine_core::{ConfigError, NodeId};

use crate::settings::SettingsError;

/// Why a node could not start, or why it stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The settings are not valid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The core refused the configuration (e.g. this node is not a member).
    #[error("the protocol configuration is refused: {0}")]
    Config(#[from] ConfigError),
    /// Storage failed; the node stops rather than risk its log (fail closed).
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    /// The listen address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory holds state that does not fit together.
    #[error("inconsistent data directory: {0}")]
    Inconsistent(String),
    /// A peer belongs to another cluster: the settings are wrong.
    #[error("wrong cluster: {0}")]
    WrongCluster(String),
    /// The metrics recorder could not be installed (the application installed another one).
    #[error("metrics unavailable: {0}")]
    Metrics(String),
    /// A task of the node ended unexpectedly.
    #[error("node task failed: {0}")]
    Task(String),
}

/// Why one request through the node handle failed. Each variant says whether the request
/// may have taken effect.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not done: only the leader serves this; try the hinted leader.
    #[error("not the leader{}", leader_hint(*leader, address.as_deref()))]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
        /// Its peer address, when known.
        address: Option<String>,
    },
    /// Not done: the request is malformed (empty or too large command, unknown member).
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// Not done: the command is larger than `transport.max_command_bytes`.
    #[error("the command has {bytes} bytes, more than the {max_bytes} bytes allowed (transport.max_command_bytes)")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
    /// Not done: the cluster refused (a change in progress, a learner not caught up, ...).
    #[error("refused: {0}")]
    Refused(String),
    /// Not done: a new leader overwrote the proposal's log slot; it will never apply.
    #[error("the proposal was overwritten by a new leader and not applied")]
    Aborted,
    /// May or may not be done: the outcome was not observed (covered by a snapshot
    /// installed from the leader, or the node stopped after accepting the proposal).
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// Not done: the node is shutting down or has stopped.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The state machine refused the query.
    #[error("query failed: {0}")]
    Query(String),
}

fn leader_hint(leader: Option<NodeId>, address: Option<&str>) -> String {
    match (leader, address) {
        (Some(id), Some(address)) => format!("; the leader is node {} at {address}", id.0),
        (Some(id), None) => format!("; the leader is node {}", id.0),
        _ => "; no leader is known".to_owned(),
    }
}
