//! The storage conformance suite of `d-engine-core`, run against the redb adapter,
//! and the cross-adapter snapshot cases (redb with memory, redb with sled).
//!
//! A reopen drops the store without a sync (aborting its open write transaction) and
//! opens the same directory again. Real process crashes are in `crash.rs`.

mod common;

use common::Redb;
use d_engine_core::testing::state_store::imports_and_exports_across_adapters;
use d_engine_core::{log_store_conformance_tests, state_store_conformance_tests};
use d_engine_memory::MemStateStore;
use d_engine_redb::{RedbLogStore, RedbStateStore};
use d_engine_sled::SledStateStore;
use d_engine_storage_fs::testing::DirHarness;

log_store_conformance_tests!(DirHarness::<Redb>::new());
state_store_conformance_tests!(DirHarness::<Redb>::new());

#[test]
fn redb_imports_a_memory_export_and_memory_imports_a_redb_export() {
    imports_and_exports_across_adapters(&mut DirHarness::<Redb>::new(), &mut MemStateStore::new());
}

#[test]
fn redb_imports_a_sled_export_and_sled_imports_a_redb_export() {
    let sled_dir = tempfile::tempdir().unwrap();
    let mut sled = SledStateStore::open(sled_dir.path()).unwrap();
    imports_and_exports_across_adapters(&mut DirHarness::<Redb>::new(), &mut sled);
}

#[test]
fn stores_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<RedbLogStore>();
    assert_send::<RedbStateStore>();
}
