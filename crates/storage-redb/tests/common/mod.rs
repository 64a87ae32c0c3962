//! The redb adapter as the shared durable-adapter tests of `d_engine_storage_fs::testing`
//! see it.

use std::path::Path;

use d_engine_core::storage::StorageError;
use d_engine_redb::{RedbLogStore, RedbStateStore};
use d_engine_storage_fs::testing::Adapter;

/// d-engine-redb: `log.redb` and `state.redb`, one file each.
pub struct Redb;

impl Adapter for Redb {
    type Log = RedbLogStore;
    type State = RedbStateStore;

    const LOG: &'static str = "log.redb";
    const STATE: &'static str = "state.redb";
    const LOG_FILE: &'static str = "log.redb";

    fn open_log(dir: &Path) -> Result<RedbLogStore, StorageError> {
        RedbLogStore::open(dir)
    }

    fn open_state(dir: &Path) -> Result<RedbStateStore, StorageError> {
        RedbStateStore::open(dir)
    }
}
