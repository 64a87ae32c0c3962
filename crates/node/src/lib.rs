//! # d-engine
//!
//! A running Raft node: the deterministic core of `d-engine-core`, driven by one event
//! loop, with durable storage (redb by default), gRPC between peers, and a handle for the
//! application. Add this crate, bring a state machine, get a replicated service.
//!
//! ## Tasks of a node
//! - the **event loop** ([`event_loop`](crate) module): one tokio task owns the core; it
//!   batches whatever inputs are ready and hands each output to the task that carries it out
//!   (except, while that thread is idle, a follower's write, which it syncs itself, and a
//!   leader's small committed batch, which it applies itself: two thread hand-offs fewer);
//! - the **storage thread**: every queued write in one batch, one sync (group commit);
//!   reads of the log and snapshot saves are ordered with the writes;
//! - the **apply thread**: committed entries into the state machine, answers proposals;
//! - one **sender per peer**: a long-lived gRPC stream, reconnecting with backoff;
//! - the **gRPC server**: peer messages in, the d-engine client API (`proto/client.proto`);
//! - a **ticker** that only calls `tick`;
//! - with `[metrics] listen_addr` set, a **`/metrics` endpoint** serving Prometheus metrics
//!   (`d_engine_*`, labelled by `node_id`; see the `metrics` module and docs/operations.md).
//!
//! Logs and traces: [`init_telemetry`] installs the process's `tracing` subscriber from
//! `[log]` and `[tracing]`; with the `otel` cargo feature and `tracing.otlp_endpoint` set,
//! spans go to an OpenTelemetry collector, one trace per sampled request across every node
//! it touches ([`telemetry`]).
//!
//! Serializable reads take the state machine's read lock directly; linearizable reads ask
//! the core for a ReadIndex, then wait until the state machine has applied that far.
//!
//! ## A single node
//! A counter: each command adds its bytes' count, a query returns the total.
//! ```
//! use bytes::Bytes;
//! use d_engine::{Application, NodeBuilder, ReadConsistency, Settings};
//! use d_engine_core::storage::{Snapshot, StateMachine, StorageError};
//! use d_engine_core::{Entry, EntryPayload, LogId};
//!
//! #[derive(Default)]
//! struct Counter { total: u64, applied: LogId }
//!
//! impl StateMachine for Counter {
//!     fn apply(&mut self, entries: &[Entry]) -> Result<Vec<Bytes>, StorageError> {
//!         let mut outputs = Vec::new();
//!         for entry in entries {
//!             if let EntryPayload::Command(command) = &entry.payload {
//!                 self.total += command.len() as u64;
//!             }
//!             self.applied = entry.log_id;
//!             outputs.push(Bytes::copy_from_slice(&self.total.to_le_bytes()));
//!         }
//!         Ok(outputs)
//!     }
//!     fn last_applied(&self) -> LogId { self.applied }
//!     fn build_snapshot(&mut self) -> Result<(LogId, Bytes), StorageError> {
//!         Ok((self.applied, Bytes::copy_from_slice(&self.total.to_le_bytes())))
//!     }
//!     fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
//!         let bytes: [u8; 8] = snapshot.data[..].try_into().map_err(|_| StorageError::Corrupt {
//!             location: "counter snapshot".into(), reason: "not 8 bytes".into() })?;
//!         self.total = u64::from_le_bytes(bytes);
//!         self.applied = snapshot.meta.last_included;
//!         Ok(())
//!     }
//! }
//!
//! impl Application for Counter {
//!     fn query(&self, _query: &[u8]) -> Result<Bytes, String> {
//!         Ok(Bytes::copy_from_slice(&self.total.to_le_bytes()))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = Settings::from_toml(r#"
//!     [node]
//!     id = 1
//!     data_dir = ""
//!     storage = "memory"
//!     [cluster]
//!     id = "doc"
//!     members = [{ id = 1, peer_addr = "127.0.0.1:0" }]
//!     [raft]
//!     tick_ms = 5
//! "#)?;
//! let node = NodeBuilder::new(settings, Counter::default()).start().await?;
//! // A single node elects itself within an election timeout; retry until it leads.
//! let applied = loop {
//!     match node.propose(&b"hello"[..]).await {
//!         Ok(applied) => break applied,
//!         Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
//!     }
//! };
//! assert_eq!(applied.output[..], 5u64.to_le_bytes());
//! let total = node.read(ReadConsistency::Linearizable, |counter| counter.total).await?;
//! assert_eq!(total, 5);
//! node.shutdown();
//! node.run().await?;
//! # Ok(())
//! # }
//! ```

mod application;
mod apply_task;
mod backlog;
mod builder;
mod entry_cache;
mod entry_traces;
mod error;
mod event_loop;
mod handle;
mod logging;
mod messages;
mod metrics;
mod server;
pub mod settings;
mod snapshot_file;
mod status;
mod storage_task;
pub mod telemetry;
mod term_span;
mod transport;

pub use application::Application;
pub use builder::{BoxedStateStore, NodeBuilder, open_log_store, open_state_store};
pub use error::{NodeError, RequestError};
pub use handle::{Node, ReadConsistency};
pub use logging::{LoggingError, init_logging, init_logging_to, init_telemetry};
pub use messages::Applied;
pub use server::to_status;
pub use settings::{LogFormat, LogSettings, LogStoreKind, Settings, SettingsError, StorageKind, TracingSettings};
pub use status::NodeStatus;
pub use storage_task::BoxedLogStore;
pub use telemetry::{TelemetryGuard, grpc_request_span};
pub use transport::{AddressBook, GrpcTransport, MemberAddresses, Transport};

pub use d_engine_core as core;
pub use d_engine_grpc::{NetworkFaults, incoming_nodelay};
