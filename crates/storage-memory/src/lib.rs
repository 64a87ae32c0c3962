//! # d-engine-memory
//!
//! In-memory implementations of the storage traits of `d-engine-core`, for the
//! deterministic simulator, for tests and for examples. Nothing here survives the
//! end of the process; use a disk adapter for a real deployment.
//!
//! - [`MemLogStore`] implements [`LogStore`](d_engine_core::storage::LogStore).
//! - [`MemStateStore`] implements [`StateStore`](d_engine_core::storage::StateStore).
//!
//! # Durability model
//!
//! The log store models a disk with a write cache honestly, because the core's
//! safety rests on it: every write is visible to reads at once, but becomes durable
//! only when [`sync`](d_engine_core::storage::LogStore::sync) returns. A simulated
//! power loss, [`MemLogStore::crash`], forgets every write since the last sync and
//! nothing before it, so a core that acknowledges an entry or a vote before syncing
//! it is caught by the simulator instead of in production.
//!
//! The state store promises that a batch is durable when `write_batch` returns, and
//! in memory that is trivially true: a simulated crash keeps a `MemStateStore` as it
//! is. Only the end of the process loses it.
//!
//! ```
//! use bytes::Bytes;
//! use d_engine_core::storage::LogStore;
//! use d_engine_core::{Entry, EntryPayload, LogId};
//! use d_engine_memory::MemLogStore;
//!
//! let entry = |index| Entry { log_id: LogId::new(1, index), payload: EntryPayload::Command(Bytes::new()) };
//! let mut log = MemLogStore::new();
//! log.append(&[entry(1), entry(2)])?;
//! log.sync()?;
//! log.append(&[entry(3)])?;
//! assert_eq!(log.last_log_id()?, LogId::new(1, 3));
//!
//! log.crash(); // entry 3 was never synced
//! assert_eq!(log.last_log_id()?, LogId::new(1, 2));
//! # Ok::<(), d_engine_core::storage::StorageError>(())
//! ```

mod log_store;
mod state_store;

pub use log_store::MemLogStore;
pub use state_store::MemStateStore;
