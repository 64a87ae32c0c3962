//! The gRPC transport of d-engine: the peer protocol (`proto/raft.proto`), the one
//! conversion between its messages and the core's ([`convert`]), the tonic server and
//! per-peer client ([`transport`]), the reconnecting per-peer sender a node sends through
//! ([`sender`]), a partition switch for tests ([`faults`]), and the client API
//! (`proto/client.proto`, [`client_proto`], with its not-leader convention in
//! [`client_status`]).
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
//! # Sending
//! A node keeps one [`PeerSender`] per peer. `send` never blocks: it queues the envelope on
//! the append-stream lane (appends, heartbeats, their responses; in order) or on the unary
//! lane (votes, `TimeoutNow`, snapshot chunks and their answers), or drops it and counts it
//! when the queue is full, the link is cut or the peer is unreachable: Raft retransmits.
//! The sender connects lazily, reconnects with exponential [`Backoff`] after a failure,
//! and writes each burst of queued envelopes back to back. [`PeerServer::close_streams`]
//! ends the peers' long-lived streams at shutdown, which a graceful tonic shutdown would
//! otherwise wait for forever.
//!
//! # Observability
//! Envelopes a sender drops and envelopes the server refuses are counted in
//! `d_engine_grpc_errors_total{node_id, peer, kind}` (the `metrics` facade: recorded when
//! the process installed a recorder). An append carries the W3C trace context of the
//! entries being traced ([`trace_context`]).
//!
//! The core never depends on this crate, tokio or protobuf.

pub mod client_status;
pub mod convert;
pub mod faults;
pub mod sender;
pub mod trace_context;
pub mod transport;

/// The generated protobuf types and tonic client / server of `dengine.raft.v1`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("dengine.raft.v1");
}

/// The generated protobuf types and tonic client / server of `dengine.client.v1`, the
/// client API every node serves (`client_client::ClientClient`, `client_server::ClientServer`).
#[allow(missing_docs, clippy::all)]
pub mod client_proto {
    tonic::include_proto!("dengine.client.v1");
}

pub use client_status::{is_not_leader, leader_hint, not_leader_status};
pub use convert::{ClusterEnvelope, ConvertError};
pub use faults::NetworkFaults;
pub use sender::{Backoff, PeerSender, PeerSenderStats};
pub use trace_context::{EntryTracer, SharedEntryTracer};
pub use transport::{PeerClient, PeerServer, TransportConfig, TransportError, incoming_nodelay};
