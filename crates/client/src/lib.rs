//! A remote client for d-engine clusters: the `dengine.client.v1` API
//! (`proto/client.proto`) over gRPC, with leader discovery, redirects, safe retries and one
//! deadline per call.
//!
//! # Usage
//! ```no_run
//! use d_engine_client::{Client, ClientConfig, ClientError, Consistency};
//!
//! # async fn example() -> Result<(), ClientError> {
//! let config = ClientConfig::new(["http://127.0.0.1:9081", "http://127.0.0.1:9082", "http://127.0.0.1:9083"]);
//! let client = Client::connect(config).await?;
//!
//! let proposed = client.propose(&b"set x 1"[..]).await?;
//! println!("applied at index {}: {:?}", proposed.index, proposed.output);
//!
//! let value = client.query(&b"get x"[..], Consistency::Linearizable).await?;
//! let status = client.status().await?;
//! println!("{value:?}; leader {:?} in term {}", status.leader_id, status.term);
//! # Ok(())
//! # }
//! ```
//!
//! # Finding the leader
//! A call goes first to the node believed to lead ([`Client::leader`]), else to the
//! endpoints in turn. A node that is not the leader refuses with a hint naming the leader's
//! address (see `d_engine_grpc::client_status`); the client follows it at once, even to an
//! address not among its endpoints. Once every known node has failed in a round, the client
//! pauses (exponential backoff) before the next round.
//!
//! # What is retried
//! - Queries and status: any failure another node or a later attempt may not have
//!   (unreachable node, broken connection, `UNAVAILABLE`, not-leader).
//! - Proposals: only failures that prove the command was not executed: a not-leader
//!   refusal, or a node that could not be connected to at all.
//!
//! A proposal whose request may have reached a node is never sent again. If its connection
//! breaks after sending, or the deadline passes while it is in flight, the call returns
//! [`ClientError::Unavailable`] or [`ClientError::Timeout`] and **the outcome is unknown**:
//! the command may be applied or not. Every other error means it was not applied.
//!
//! # Deadlines
//! `request_timeout` bounds a whole call, redirects, retries and pauses included; an
//! attempt still in flight at the deadline is abandoned. `max_retries` bounds the number of
//! attempts after the first.
//!
//! # Connections
//! One lazily connected tonic channel per address (endpoints and redirect targets), kept
//! and shared by every call and every clone of the client.

mod client;
mod config;
mod error;
mod types;

pub use client::Client;
pub use config::ClientConfig;
pub use error::ClientError;
pub use types::{ClusterStatus, Consistency, Member, Proposed, Role};
