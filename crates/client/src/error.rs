//! What can go wrong with a call, in the terms a caller acts on.

/// Why a call failed.
///
/// For a proposal, [`Timeout`](ClientError::Timeout) and
/// [`Unavailable`](ClientError::Unavailable) mean the outcome is unknown: the command may
/// or may not be applied (a request may have reached the leader before its answer was
/// lost). Every other error means it was not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The node answered that it is not the leader, and retries ran out.
    #[error("not the leader (leader id {leader_id:?}, address {leader_address:?})")]
    NotLeader {
        /// The leader's id, when the node knew it.
        leader_id: Option<u64>,
        /// The leader's client address, when the node knew it.
        leader_address: Option<String>,
    },
    /// The call's `request_timeout` passed while a request was in flight: the outcome of a
    /// proposal is unknown.
    #[error("timed out (a proposal's outcome is unknown)")]
    Timeout,
    /// No node could be reached, a node reported itself unavailable, or a connection broke
    /// after the request was sent (a proposal's outcome is then unknown).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request or the configuration is malformed; retrying will not help.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The proposal lost its place in the log (a leader change): it was not applied and may
    /// be proposed again.
    #[error("aborted, not applied: {0}")]
    Aborted(String),
    /// The request is larger than the node accepts.
    #[error("too large: {0}")]
    ResourceExhausted(String),
    /// The node's state machine or storage failed.
    #[error("internal: {0}")]
    Internal(String),
    /// Any other status the node answered with.
    #[error("{code:?}: {message}")]
    Rejected {
        /// The gRPC status code.
        code: tonic::Code,
        /// The node's message.
        message: String,
    },
}
