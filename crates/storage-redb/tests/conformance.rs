//! The storage conformance suite of `d-engine-core`, run against the redb adapter,
//! and the cross-adapter snapshot cases (redb with memory, redb with sled).
//!
//! A reopen drops the store without a sync (aborting its open write transaction) and
//! opens the same directory again. Real process crashes are in `crash.rs`.

use d_engine_core::storage::StorageError;
use d_engine_core::testing::state_store::imports_and_exports_across_adapters;
use d_engine_core::testing::{LogStoreHarness, StateStoreHarness};
use d_engine_core::{log_store_conformance_tests, state_store_conformance_tests};
use d_engine_memory::MemStateStore;
use d_engine_redb::{RedbLogStore, RedbStateStore};
use d_engine_sled::SledStateStore;
use tempfile::TempDir;

/// redb stores in a temporary directory of their own.
struct RedbHarness {
    dir: TempDir,
}

impl RedbHarness {
    fn new() -> RedbHarness {
        RedbHarness { dir: tempfile::tempdir().expect("a temporary directory") }
    }
}

impl LogStoreHarness for RedbHarness {
    type Store = RedbLogStore;

    fn open(&mut self) -> Result<RedbLogStore, StorageError> {
        RedbLogStore::open(self.dir.path())
    }

    fn reopen(&mut self, store: RedbLogStore) -> Result<RedbLogStore, StorageError> {
        drop(store);
        RedbLogStore::open(self.dir.path())
    }
}

impl StateStoreHarness for RedbHarness {
    type Store = RedbStateStore;

    fn open(&mut self) -> Result<RedbStateStore, StorageError> {
        RedbStateStore::open(self.dir.path())
    }

    fn reopen(&mut self, store: RedbStateStore) -> Result<RedbStateStore, StorageError> {
        drop(store);
        RedbStateStore::open(self.dir.path())
    }
}

log_store_conformance_tests!(RedbHarness::new());
state_store_conformance_tests!(RedbHarness::new());

#[test]
fn redb_imports_a_memory_export_and_memory_imports_a_redb_export() {
    imports_and_exports_across_adapters(&mut RedbHarness::new(), &mut MemStateStore::new());
}

#[test]
fn redb_imports_a_sled_export_and_sled_imports_a_redb_export() {
    let sled_dir = tempfile::tempdir().unwrap();
    let mut sled = SledStateStore::open(sled_dir.path()).unwrap();
    imports_and_exports_across_adapters(&mut RedbHarness::new(), &mut sled);
}

#[test]
fn stores_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<RedbLogStore>();
    assert_send::<RedbStateStore>();
}
