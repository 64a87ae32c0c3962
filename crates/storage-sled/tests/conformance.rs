//! The storage conformance suite of `d-engine-core`, run against the sled adapter,
//! and the cross-adapter snapshot case with memory (sled with redb runs in d-engine-redb's
//! tests, which depend on both).
//!
//! A reopen drops the store without a sync (its unsynced writes live only in memory) and
//! opens the same directory again. Real process crashes are in `crash.rs`.

mod common;

use common::Sled;
use d_engine_core::testing::state_store::imports_and_exports_across_adapters;
use d_engine_core::{log_store_conformance_tests, state_store_conformance_tests};
use d_engine_memory::MemStateStore;
use d_engine_sled::{SledLogStore, SledStateStore};
use d_engine_storage_fs::testing::DirHarness;

log_store_conformance_tests!(DirHarness::<Sled>::new());
state_store_conformance_tests!(DirHarness::<Sled>::new());

#[test]
fn sled_imports_a_memory_export_and_memory_imports_a_sled_export() {
    imports_and_exports_across_adapters(&mut DirHarness::<Sled>::new(), &mut MemStateStore::new());
}

#[test]
fn stores_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<SledLogStore>();
    assert_send::<SledStateStore>();
}
