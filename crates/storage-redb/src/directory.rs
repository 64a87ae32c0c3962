//! The directory a store lives in (checked by `d_engine_storage_fs::directory`).
//!
//! A log store keeps `log.redb` in its directory and a state store `state.redb`, so
//! one data directory can hold both. d-engine-sled keeps `log.sled/` and `state.sled/`;
//! finding those where our file should be means the directory belongs to sled.

use std::path::Path;

use d_engine_core::storage::StorageError;
use d_engine_storage_fs::directory::{self, Location, StoreName, exists};
use d_engine_storage_fs::error::corrupt;
use d_engine_storage_fs::format::StoreKind;

use crate::database::{self, FORMAT};

/// Creates `dir` if needed and locates the database file of a `kind` store in it.
pub(crate) fn prepare(dir: &Path, kind: StoreKind) -> Result<Location, StorageError> {
    let (own, foreign) = match kind {
        StoreKind::Log => ("log.redb", "log.sled"),
        StoreKind::State => ("state.redb", "state.sled"),
    };
    let location = directory::prepare(
        dir,
        StoreName { adapter: FORMAT.adapter, name: own },
        StoreName { adapter: "d-engine-sled", name: foreign },
    )?;
    if is_sled_database(dir)? {
        return Err(corrupt(dir, "the directory is a sled database; give d-engine-redb a directory of its own"));
    }
    if !location.existed {
        directory::create_atomically(&location.path, |path| database::create_stamped(path, kind))?;
    }
    Ok(location)
}

/// sled keeps a `conf` file and a `db` file at the top of its directory.
fn is_sled_database(dir: &Path) -> Result<bool, StorageError> {
    Ok(exists(&dir.join("conf"))? && exists(&dir.join("db"))?)
}
