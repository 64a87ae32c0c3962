//! # d-engine-redb
//!
//! Durable log and state stores for d-engine on [redb](https://www.redb.org), an
//! embedded, crash-safe B-tree database in pure Rust. This is the default storage of a
//! d-engine node.
//!
//! - [`RedbLogStore`] implements [`LogStore`](d_engine_core::storage::LogStore): the
//!   replicated log and the hard state, in `<dir>/log.redb`.
//! - [`RedbStateStore`] implements [`StateStore`](d_engine_core::storage::StateStore):
//!   a durable ordered key-value store for state machines, in `<dir>/state.redb`.
//!
//! Both may share one data directory. Every record of the log is stored in the
//! checksummed codec of `d-engine-core` ([`codec`](d_engine_core::storage::codec)), and
//! every store carries a format stamp checked at open ([`FORMAT_VERSION`]).
//!
//! # Durability
//! Log writes are visible at once and become durable together at
//! [`sync`](d_engine_core::storage::LogStore::sync): one redb transaction committed with
//! `Durability::Immediate` (one fsync) for everything written since the last sync. A
//! state-store batch is durable when `write_batch` returns; a `write_batch_deferred` batch
//! stays in memory, visible to reads, until the next `sync` or `write_batch` commits every
//! deferred batch in one such transaction. Errors are fatal: a store whose write failed
//! refuses every later call until it is reopened.
//!
//! ```
//! use bytes::Bytes;
//! use d_engine_core::storage::LogStore;
//! use d_engine_core::{Entry, EntryPayload, LogId};
//! use d_engine_redb::RedbLogStore;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let entry = |index| Entry { log_id: LogId::new(1, index), payload: EntryPayload::Command(Bytes::new()) };
//!
//! let mut log = RedbLogStore::open(dir.path())?;
//! log.append(&[entry(1), entry(2)])?;
//! log.sync()?; // entries 1 and 2 are durable, in one commit
//! log.append(&[entry(3)])?;
//! drop(log); // entry 3 was never synced
//!
//! let log = RedbLogStore::open(dir.path())?;
//! assert_eq!(log.last_log_id()?, LogId::new(1, 2));
//! # Ok::<(), d_engine_core::storage::StorageError>(())
//! ```

mod database;
mod directory;
mod error;
mod log_store;
mod state_store;

pub use d_engine_storage_fs::AtPath;
pub use log_store::RedbLogStore;
pub use state_store::RedbStateStore;

/// The layout version of the stores this build writes and reads, in every store's
/// format stamp (`d-engine-redb <kind> <version>`).
pub const FORMAT_VERSION: u32 = 1;
