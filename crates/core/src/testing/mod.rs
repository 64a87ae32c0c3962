//! The storage conformance suite: one set of cases that every adapter runs, so that
//! memory, sled and redb keep the same contract.
//!
//! Enabled by the `testing` feature. An adapter implements [`LogStoreHarness`] and
//! [`StateStoreHarness`] (open a new store, reopen the same store after a close) and
//! calls the two macros in an integration test; each case becomes one `#[test]`
//! named after its story:
//!
//! ```text
//! d_engine_core::log_store_conformance_tests!(MyHarness::new());
//! d_engine_core::state_store_conformance_tests!(MyHarness::new());
//! ```
//!
//! The cases use no filesystem, thread, process or clock: all I/O is the adapter's.
//! A "reopen" ends the store without a `sync`, the way a crash ends it for everything
//! unsynced, and opens the same location again. The process-crash tests of the durable
//! adapters drive the deterministic workload of [`crash`] from a child process that
//! is killed at random moments, and check what survives with [`crash::verify`].
//!
//! Cross-adapter snapshot tests call [`state_store::imports_and_exports_across_adapters`]
//! with a store of another adapter.

pub mod crash;
pub mod fixtures;
mod harness;
pub mod log_durability;
pub mod log_payloads;
pub mod log_ranges;
pub mod log_writes;
mod macros;
pub mod state_store;

pub use harness::{LogStoreHarness, StateStoreHarness};
