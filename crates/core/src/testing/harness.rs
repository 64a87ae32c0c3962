//! What an adapter provides so that the suite can run against it.

use crate::storage::{LogStore, StateStore, StorageError};

/// Opens log stores of one adapter for the conformance suite.
///
/// A harness owns one location (a directory, a file, or for memory nothing at all);
/// each case gets a harness of its own.
pub trait LogStoreHarness {
    /// The store under test.
    type Store: LogStore;

    /// Opens a new, empty store at the harness's location.
    fn open(&mut self) -> Result<Self::Store, StorageError>;

    /// Ends `store` without syncing it and opens the same location again.
    ///
    /// The suite expects exactly the synced state afterwards: every write before the
    /// last successful `sync`, and none after it. Durable adapters get this by closing
    /// the store (unsynced writes live only in the process); the memory adapter by
    /// `MemLogStore::crash`.
    fn reopen(&mut self, store: Self::Store) -> Result<Self::Store, StorageError>;
}

/// Opens state stores of one adapter for the conformance suite.
pub trait StateStoreHarness {
    /// The store under test.
    type Store: StateStore;

    /// Opens a new, empty store at the harness's location.
    fn open(&mut self) -> Result<Self::Store, StorageError>;

    /// Closes `store` and opens the same location again. Every batch and import that
    /// returned `Ok` must be there.
    fn reopen(&mut self, store: Self::Store) -> Result<Self::Store, StorageError>;
}
