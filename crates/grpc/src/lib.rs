//! The gRPC transport of d-engine: the peer protocol (`proto/raft.proto`), the one
//! conversion between its messages and the core's ([`convert`]), and a minimal tonic
//! server and per-peer client ([`transport`]).
//!
//! # The cluster id rule
//! Every envelope on the wire carries the sender's `cluster_id`. A server accepts an
//! envelope only if that id equals its own; anything else is refused with
//! `FAILED_PRECONDITION` and a message naming both ids, so two clusters that share hosts
//! or reuse node ids can never mix their logs.
//!
//! # The stream model
//! Raft peers exchange one-way messages: a response is a message of its own, not the
//! reply of a call. So the service is message shaped, not request/response shaped:
//! - `AppendStream`: one long-lived client stream per ordered pair of peers (node A's
//!   client to B carries A's messages to B; B answers through its own stream to A).
//!   Appends, heartbeats and their responses travel on it, in order, batched by HTTP/2
//!   framing instead of one call per entry. The server writes nothing back today; the
//!   stream ends with the refusal status when an envelope is refused.
//! - `Send`: one unary call for one envelope outside the stream, so that a multi-megabyte
//!   snapshot chunk does not queue in front of heartbeats and a vote is not delayed by a
//!   backlog of appends.
//!
//! One generic `Send` instead of typed unary `Vote` / `InstallSnapshot` / `TimeoutNow`
//! calls: the core already decides what each message means, and typed calls would only
//! add reply messages that nothing reads plus one handler per kind to keep in step.
//!
//! # Limits
//! `TransportConfig::max_message_bytes` bounds every message on both sides: the server
//! refuses a larger one with `OUT_OF_RANGE`, and the client refuses to send one
//! (`TransportError::TooLarge`) so that it never resets a stream shared with other envelopes.
//!
//! # Not yet here
//! Reconnect with backoff: a client whose append stream ended reports why through
//! `PeerClient::closed`, and its owner connects again.
//!
//! The core never depends on this crate, tokio or protobuf.

pub mod convert;
pub mod transport;

/// The generated protobuf types and tonic client / server of `dengine.raft.v1`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("dengine.raft.v1");
}

pub use convert::{ClusterEnvelope, ConvertError};
pub use transport::{PeerClient, PeerServer, TransportConfig, TransportError};
