//! The directory a store lives in (checked by `d_engine_storage_fs::directory`).
//!
//! A log store keeps its sled database in `log.sled/` inside its directory and a state
//! store in `state.sled/`, so one data directory can hold both. d-engine-redb keeps
//! `log.redb` and `state.redb`; finding those where our database should be means the
//! directory belongs to redb.

use std::io::ErrorKind;
use std::path::Path;

use d_engine_core::storage::StorageError;
use d_engine_storage_fs::directory::{self, Location, StoreName};
use d_engine_storage_fs::error::io;
use d_engine_storage_fs::format::StoreKind;

use crate::database::{self, FORMAT};

/// Creates `dir` if needed and locates the sled database of a `kind` store in it.
pub(crate) fn prepare(dir: &Path, kind: StoreKind) -> Result<Location, StorageError> {
    let (own, foreign) = match kind {
        StoreKind::Log => ("log.sled", "log.redb"),
        StoreKind::State => ("state.sled", "state.redb"),
    };
    let location = directory::prepare(
        dir,
        StoreName { adapter: FORMAT.adapter, name: own },
        StoreName { adapter: "d-engine-redb", name: foreign },
    )?;
    match std::fs::metadata(&location.path) {
        Ok(metadata) if !metadata.is_dir() => Err(io(
            &location.path,
            "open sled database",
            std::io::Error::new(ErrorKind::NotADirectory, "a sled database is a directory, this is a file"),
        )),
        _ if !location.existed => {
            directory::create_atomically(&location.path, |path| database::create_stamped(path, kind))?;
            Ok(location)
        }
        _ => Ok(location),
    }
}
