//! The tests both durable adapters run, written once over an [`Adapter`]; each adapter's
//! test files are thin instantiations that keep their own test names.
//!
//! Enabled by the `testing` feature.
//!
//! - [`DirHarness`] runs the core's conformance suite (`d_engine_core::testing`) on
//!   stores in a temporary directory;
//! - [`crash`] kills a child process that writes the crash workload and checks what
//!   survives;
//! - [`open_errors`] gives an adapter bad input at open (a damaged file, a path that
//!   cannot hold a store, another adapter's or kind's store) and expects a typed
//!   `StorageError` naming the path, never a panic and never an entry that differs from
//!   what was written.
//!
//! Cases that depend on how an adapter lays out its files (a cut file, a stamp written
//! with the raw database) stay in the adapter's own tests.
//!
//! The log-only cases need only a [`LogAdapter`], which every [`Adapter`] is; an adapter
//! with a log store and no state store (d-engine-wal) implements [`LogAdapter`] alone.

pub mod crash;
pub mod open_errors;

use std::path::Path;

use d_engine_core::storage::{LogStore, StateStore, StorageError};
use d_engine_core::testing::{LogStoreHarness, StateStoreHarness};
use tempfile::TempDir;

/// A durable log store under test: how to open it and where it keeps it. Every
/// [`Adapter`] is one (through the blanket implementation below); an adapter without a
/// state store implements this trait alone.
pub trait LogAdapter {
    /// Its log store.
    type Log: LogStore + std::fmt::Debug;

    /// The name of the log database inside a store directory (`log.redb`, `log.sled`):
    /// what its errors name.
    const LOG: &'static str;
    /// The file, relative to a store directory, that holds the log's entries (the one a
    /// damage test flips bits in).
    const LOG_FILE: &'static str;

    /// Opens the log store in directory `dir`.
    fn open_log(dir: &Path) -> Result<Self::Log, StorageError>;
}

impl<A: Adapter> LogAdapter for A {
    type Log = <A as Adapter>::Log;

    const LOG: &'static str = <A as Adapter>::LOG;
    const LOG_FILE: &'static str = <A as Adapter>::LOG_FILE;

    fn open_log(dir: &Path) -> Result<Self::Log, StorageError> {
        <A as Adapter>::open_log(dir)
    }
}

/// A durable adapter under test: how to open its stores and where it keeps them.
pub trait Adapter {
    /// Its log store.
    type Log: LogStore + std::fmt::Debug;
    /// Its state store.
    type State: StateStore + std::fmt::Debug;

    /// The name of the log database inside a store directory (`log.redb`, `log.sled`):
    /// what its errors name.
    const LOG: &'static str;
    /// The name of the state database inside a store directory.
    const STATE: &'static str;
    /// The file, relative to a store directory, that holds the log's entries (the one a
    /// damage test flips bits in).
    const LOG_FILE: &'static str;

    /// Opens the log store in directory `dir`.
    fn open_log(dir: &Path) -> Result<Self::Log, StorageError>;

    /// Opens the state store in directory `dir`.
    fn open_state(dir: &Path) -> Result<Self::State, StorageError>;
}

/// Stores of adapter `A` in a temporary directory of their own, for the conformance
/// suite. A reopen drops the store without a sync and opens the same directory again.
pub struct DirHarness<A> {
    dir: TempDir,
    adapter: std::marker::PhantomData<A>,
}

impl<A> DirHarness<A> {
    /// A harness over a new, empty temporary directory.
    pub fn new() -> DirHarness<A> {
        DirHarness { dir: tempfile::tempdir().expect("a temporary directory"), adapter: std::marker::PhantomData }
    }
}

impl<A> Default for DirHarness<A> {
    fn default() -> DirHarness<A> {
        DirHarness::new()
    }
}

impl<A: LogAdapter> LogStoreHarness for DirHarness<A> {
    type Store = A::Log;

    fn open(&mut self) -> Result<A::Log, StorageError> {
        A::open_log(self.dir.path())
    }

    fn reopen(&mut self, store: A::Log) -> Result<A::Log, StorageError> {
        drop(store);
        A::open_log(self.dir.path())
    }
}

impl<A: Adapter> StateStoreHarness for DirHarness<A> {
    type Store = A::State;

    fn open(&mut self) -> Result<A::State, StorageError> {
        A::open_state(self.dir.path())
    }

    fn reopen(&mut self, store: A::State) -> Result<A::State, StorageError> {
        drop(store);
        A::open_state(self.dir.path())
    }
}
