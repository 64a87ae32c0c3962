//! The storage conformance suite of `d-engine-core`, run against the WAL log store twice:
//! with its default 64 MiB segments, and with 4 KiB segments, so that every case also
//! crosses segment boundaries, starts new segments and removes purged ones.
//!
//! A reopen drops the store without a sync (discarding its pending batch) and opens the
//! same directory again. Real process crashes are in `crash.rs`.

mod common;

use common::{SmallSegments, Wal};
use d_engine_core::log_store_conformance_tests;
use d_engine_storage_fs::testing::DirHarness;
use d_engine_wal::WalLogStore;

log_store_conformance_tests!(DirHarness::<Wal>::new());

mod small_segments {
    use super::*;

    log_store_conformance_tests!(DirHarness::<SmallSegments>::new());
}

#[test]
fn the_store_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<WalLogStore>();
}
