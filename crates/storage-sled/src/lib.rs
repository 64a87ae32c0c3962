//! # d-engine-sled
//!
//! Durable log and state stores for d-engine on [sled](https://github.com/spacejam/sled)
//! 0.34, an embedded log-structured database in pure Rust.
//!
//! - [`SledLogStore`] implements [`LogStore`](d_engine_core::storage::LogStore): the
//!   replicated log and the hard state, in `<dir>/log.sled/`.
//! - [`SledStateStore`] implements [`StateStore`](d_engine_core::storage::StateStore):
//!   a durable ordered key-value store for state machines, in `<dir>/state.sled/`.
//!
//! Both may share one data directory. Every record of the log is stored in the
//! checksummed codec of `d-engine-core` ([`codec`](d_engine_core::storage::codec)), and
//! every store carries a format stamp checked at open ([`FORMAT_VERSION`]).
//!
//! # Durability
//! Log writes are visible at once and become durable together at
//! [`sync`](d_engine_core::storage::LogStore::sync): one atomic sled batch and one
//! `flush` (fsync) for everything written since the last sync. A state-store batch is
//! durable when `write_batch` returns. Errors are fatal: a store whose write failed
//! refuses every later call until it is reopened.
//!
//! ```
//! use bytes::Bytes;
//! use d_engine_core::storage::LogStore;
//! use d_engine_core::{Entry, EntryPayload, LogId};
//! use d_engine_sled::SledLogStore;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let entry = |index| Entry { log_id: LogId::new(1, index), payload: EntryPayload::Command(Bytes::new()) };
//!
//! let mut log = SledLogStore::open(dir.path())?;
//! log.append(&[entry(1), entry(2)])?;
//! log.sync()?; // entries 1 and 2 are durable, in one batch and one flush
//! log.append(&[entry(3)])?;
//! drop(log); // entry 3 was never synced
//!
//! let log = SledLogStore::open(dir.path())?;
//! assert_eq!(log.last_log_id()?, LogId::new(1, 2));
//! # Ok::<(), d_engine_core::storage::StorageError>(())
//! ```

mod database;
mod directory;
mod error;
mod log_store;
mod pending;
mod state_store;

pub use d_engine_storage_fs::AtPath;
pub use log_store::SledLogStore;
pub use state_store::SledStateStore;

/// The layout version of the stores this build writes and reads, in every store's
/// format stamp (`d-engine-sled <kind> <version>`).
pub const FORMAT_VERSION: u32 = 1;
