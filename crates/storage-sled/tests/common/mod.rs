//! The sled adapter as the shared durable-adapter tests of `d_engine_storage_fs::testing`
//! see it.

use std::path::Path;

use d_engine_core::storage::StorageError;
use d_engine_sled::{SledLogStore, SledStateStore};
use d_engine_storage_fs::testing::Adapter;

/// d-engine-sled: the sled databases `log.sled/` and `state.sled/`, whose data sits in
/// their `db` files.
pub struct Sled;

impl Adapter for Sled {
    type Log = SledLogStore;
    type State = SledStateStore;

    const LOG: &'static str = "log.sled";
    const STATE: &'static str = "state.sled";
    const LOG_FILE: &'static str = "log.sled/db";

    fn open_log(dir: &Path) -> Result<SledLogStore, StorageError> {
        SledLogStore::open(dir)
    }

    fn open_state(dir: &Path) -> Result<SledStateStore, StorageError> {
        SledStateStore::open(dir)
    }
}
