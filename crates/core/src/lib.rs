//! # d-engine-core
//!
//! The Raft protocol as a pure, deterministic state machine.
//!
//! This crate does no I/O, reads no clock and spawns nothing: a runtime feeds it
//! inputs (ticks, peer messages, proposals, completions) and carries out the typed
//! outputs it returns. The same core runs under the tokio runtime of the `d-engine`
//! crate and under the deterministic simulator, which is what lets every behaviour
//! be replayed from a seed.
//!
//! ## Driving a core
//!
//! A runtime loops: feed one input, drain the outputs, carry them out, report
//! completions back. Here a single-node cluster elects itself and commits a command;
//! the "storage" is a vector that is durable as soon as it is written.
//!
//! ```
//! use d_engine_core::storage::RecoveredLog;
//! use d_engine_core::{Config, Entry, LogIndex, Membership, NodeId, Output, Raft, Role};
//!
//! let membership = Membership::with_voters([1]).unwrap();
//! let mut raft = Raft::new(NodeId(1), Config::default(), membership, &RecoveredLog::default(), LogIndex(0), 7)
//!     .unwrap();
//! let mut log: Vec<Entry> = Vec::new();
//! let mut applied = Vec::new();
//!
//! // Carries out outputs until the core is quiet: persist (then report durability),
//! // apply committed entries (then report them applied). A real runtime also sends
//! // `Output::Send` messages to peers.
//! let mut run = |raft: &mut Raft, log: &mut Vec<Entry>, applied: &mut Vec<LogIndex>| loop {
//!     let outputs = raft.take_outputs();
//!     if outputs.is_empty() {
//!         break;
//!     }
//!     for output in outputs {
//!         match output {
//!             Output::Persist(write) => {
//!                 if let Some(from) = write.truncate_from {
//!                     log.truncate(from.0 as usize - 1);
//!                 }
//!                 log.extend(write.entries);
//!                 raft.persisted(write.id);
//!             }
//!             Output::Apply { first, last } => {
//!                 applied.extend((first.0..=last.0).map(LogIndex));
//!                 raft.applied(last);
//!             }
//!             _ => {}
//!         }
//!     }
//! };
//!
//! while raft.role() != Role::Leader {
//!     raft.tick();
//!     run(&mut raft, &mut log, &mut applied);
//! }
//! let id = raft.propose(bytes::Bytes::from_static(b"set x = 1")).unwrap();
//! run(&mut raft, &mut log, &mut applied);
//! assert_eq!(raft.status().commit, id.index, "a single node commits once its write is durable");
//! assert_eq!(applied.last(), Some(&id.index));
//! ```

pub mod config;
mod durability;
mod log;
pub mod membership;
mod membership_log;
pub mod message;
pub mod output;
pub mod quorum;
mod raft;
mod read;
mod replication;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;
pub mod types;

pub use config::{Config, ConfigError, LeaseReadConfig, SnapshotPolicy};
pub use membership::{Membership, MembershipError};
pub use message::{AppendOutcome, ConflictHint, Envelope, Message, SnapshotOutcome};
pub use output::{
    MembershipChange, MembershipChangeError, Output, PersistRequest, ProposeError, ReadError, ReadId, ReadPolicy, Role,
    SnapshotError, TransferError, WriteId,
};
pub use raft::{PeerReplication, Raft, ReplicationState, Status};
pub use types::{Entry, EntryPayload, HardState, LogId, LogIndex, NodeId, Term};
