//! The storage contracts the runtime and the adapters implement.
//!
//! The core never calls these traits while it steps: it emits `Output::Persist`,
//! `Output::Apply` and `Output::LoadEntries`, and the runtime carries them out
//! against these traits and reports completion. Every method documents its valid
//! range, its errors at the edges and the exact point at which data is durable.
//!
//! Storage errors are fatal to the node: a runtime that gets one stops the node
//! (fail closed) rather than retrying into a possibly corrupt log.

pub mod codec;
mod error;
mod log_store;
pub mod rules;
mod state_machine;
mod state_store;

pub use error::StorageError;
pub use log_store::{LogStore, RecoveredLog};
pub use state_machine::{Snapshot, SnapshotJob, SnapshotMeta, StateMachine};
pub use state_store::{ExportJob, ExportWriter, StateStore, StateWrite, decode_export, encode_export};
