//! # d-engine-core
//!
//! The Raft protocol as a pure, deterministic state machine.
//!
//! This crate does no I/O, reads no clock and spawns nothing: a runtime feeds it
//! inputs (ticks, peer messages, proposals, completions) and carries out the typed
//! outputs it returns. The same core runs under the tokio runtime of the `d-engine`
//! crate and under the deterministic simulator, which is what lets every behaviour
//! be replayed from a seed.

pub mod config;
mod durability;
mod log;
pub mod membership;
pub mod message;
pub mod output;
pub mod quorum;
mod raft;
mod read;
mod replication;
pub mod storage;
pub mod types;

pub use config::{Config, ConfigError, LeaseReadConfig};
pub use membership::{Membership, MembershipError};
pub use message::{AppendOutcome, ConflictHint, Envelope, Message};
pub use output::{Output, PersistRequest, ProposeError, ReadError, ReadId, ReadPolicy, Role, TransferError, WriteId};
pub use raft::{Raft, Status};
pub use types::{Entry, EntryPayload, HardState, LogId, LogIndex, NodeId, Term};
