//! d-engine-kv: the reference application of d-engine, a replicated key-value store whose
//! client API is etcd's v3 gRPC API (a subset, wire compatible: etcdctl and etcd client
//! libraries work against it).
//!
//! Three pieces, each usable alone:
//! - [`KvStateMachine`]: etcd's KV semantics (a cluster-wide revision, per-key create/mod
//!   revisions and versions, Txn with compares) as a d-engine [`StateMachine`] over any
//!   [`StateStore`] (redb, sled, memory);
//! - [`Replica`]: the seam to the consensus layer (replicate a command, run a read once it
//!   is safe, report cluster facts), implemented by the d-engine node and, for tests and
//!   trials, by the single-process [`LocalReplica`];
//! - [`routes`] / [`serve`]: the etcd gRPC services over a `Replica`.
//!
//! A node's binary opens a state store, wraps it in a `KvStateMachine`, hands that to the
//! node runtime, and serves `routes(node, KvServiceConfig::default())` on its client address.
//!
//! `KvStateMachine` is a d-engine `Application` (a d-engine client query is an encoded
//! etcd `RangeRequest`). Programs that drive a node directly, like the examples, encode
//! writes with [`put_command`] / [`delete_command`] for `Node::propose`, decode its output
//! with [`output_revision`], and read a key with [`get`] inside `Node::read`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use d_engine_kv::{ClusterView, KvServiceConfig, KvStateMachine, LocalReplica};
//! use d_engine_memory::MemStateStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let state_machine = KvStateMachine::open(MemStateStore::new())?;
//! let replica = Arc::new(LocalReplica::new(state_machine, ClusterView { member_id: 1, ..ClusterView::default() }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:2379").await?;
//! d_engine_kv::serve(listener, replica, KvServiceConfig::default(), std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! What differs from etcd: no history (a Range at an older revision is answered as
//! compacted), no Watch, Lease, Auth, Compact or cluster reconfiguration through this API
//! (UNIMPLEMENTED), and an oversize request is RESOURCE_EXHAUSTED.
//!
//! [`StateMachine`]: d_engine_core::storage::StateMachine
//! [`StateStore`]: d_engine_core::storage::StateStore

mod application;
pub mod codec;
mod commands;
mod error;
mod node_replica;
pub mod otlp_sink;
pub mod proto;
mod replica;
mod service;
mod state_machine;

pub use commands::{delete_command, get, output_revision, put_command};
pub use error::KvError;
pub use node_replica::{NodeReplica, etcd_cluster_id};
pub use replica::{ClusterView, HeaderFacts, LocalReplica, MemberView, Replica, ReplicaError};
pub use service::{DEFAULT_MAX_REQUEST_BYTES, KvServiceConfig, SERVER_VERSION, routes, serve};
pub use state_machine::{KvStateMachine, MAX_TXN_OPS, validate_delete, validate_put, validate_range, validate_txn};
