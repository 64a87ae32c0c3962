//! # d-engine-storage-fs
//!
//! What the durable storage adapters of d-engine (`d-engine-redb`, `d-engine-sled`)
//! share about living in a data directory, whatever database they keep there:
//!
//! - [`format`](mod@format): the format stamp written into every new store and checked at every
//!   open, so that another adapter's store, another kind of store or an unknown layout
//!   version is refused by name instead of being misread;
//! - [`directory`]: creating the store directory, and refusing a path that is a file,
//!   cannot be reached, or holds the other adapter's store;
//! - [`error`]: `StorageError`s that name the file or directory ([`AtPath`]), and the
//!   fail-closed state of a store whose write failed ([`FailClosed`]);
//! - [`records`]: decoding the core's codec records read from a file, with the path in
//!   every error.
//!
//! The input rules every store applies (append, truncate, purge, ranges) are not here:
//! they are pure and live in [`d_engine_core::storage::rules`].
//!
//! With the `testing` feature, `testing` holds the tests both durable adapters run:
//! a harness for the core's conformance suite, the process-crash test and the
//! bad-input-at-open cases.
//!
//! ```
//! use d_engine_storage_fs::format::{Format, StoreKind};
//!
//! let format = Format { adapter: "d-engine-example", version: 1 };
//! let stamp = format.stamp(StoreKind::Log);
//! assert_eq!(stamp, "d-engine-example log 1");
//! assert!(format.check("store".as_ref(), stamp.as_bytes(), StoreKind::Log).is_ok());
//! assert!(format.check("store".as_ref(), stamp.as_bytes(), StoreKind::State).is_err());
//! ```

pub mod directory;
pub mod error;
pub mod format;
pub mod records;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{AtPath, FailClosed};
