//! The storage conformance suite of `d-engine-core`, run against the sled adapter,
//! and the cross-adapter snapshot case with memory (sled with redb runs in d-engine-redb's
//! tests, which depend on both).
//!
//! A reopen drops the store without a sync (its unsynced writes live only in memory) and
//! opens the same directory again. Real process crashes are in `crash.rs`.

use d_engine_core::storage::StorageError;
use d_engine_core::testing::state_store::imports_and_exports_across_adapters;
use d_engine_core::testing::{LogStoreHarness, StateStoreHarness};
use d_engine_core::{log_store_conformance_tests, state_store_conformance_tests};
use d_engine_memory::MemStateStore;
use d_engine_sled::{SledLogStore, SledStateStore};
use tempfile::TempDir;

/// sled stores in a temporary directory of their own.
struct SledHarness {
    dir: TempDir,
}

impl SledHarness {
    fn new() -> SledHarness {
        SledHarness { dir: tempfile::tempdir().expect("a temporary directory") }
    }
}

impl LogStoreHarness for SledHarness {
    type Store = SledLogStore;

    fn open(&mut self) -> Result<SledLogStore, StorageError> {
        SledLogStore::open(self.dir.path())
    }

    fn reopen(&mut self, store: SledLogStore) -> Result<SledLogStore, StorageError> {
        drop(store);
        SledLogStore::open(self.dir.path())
    }
}

impl StateStoreHarness for SledHarness {
    type Store = SledStateStore;

    fn open(&mut self) -> Result<SledStateStore, StorageError> {
        SledStateStore::open(self.dir.path())
    }

    fn reopen(&mut self, store: SledStateStore) -> Result<SledStateStore, StorageError> {
        drop(store);
        SledStateStore::open(self.dir.path())
    }
}

log_store_conformance_tests!(SledHarness::new());
state_store_conformance_tests!(SledHarness::new());

#[test]
fn sled_imports_a_memory_export_and_memory_imports_a_sled_export() {
    imports_and_exports_across_adapters(&mut SledHarness::new(), &mut MemStateStore::new());
}

#[test]
fn stores_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<SledLogStore>();
    assert_send::<SledStateStore>();
}
