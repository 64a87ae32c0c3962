//! The directory a store lives in: created on first open, refused when it is a file,
//! unreachable, or holds the same kind of store made by another adapter.
//!
//! A log store keeps its sled database in `log.sled/` inside its directory and a state
//! store in `state.sled/`, so one data directory can hold both. d-engine-redb keeps
//! `log.redb` and `state.redb`; finding those where our database should be means the
//! directory belongs to redb.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use d_engine_core::storage::StorageError;

use crate::error::{corrupt, io};

/// Where a store's database is, and whether it existed before this open.
pub(crate) struct Location {
    /// The sled database directory.
    pub(crate) path: PathBuf,
    /// Whether the directory was there already: such a store must carry a format stamp.
    pub(crate) existed: bool,
}

/// Creates `dir` if needed and locates the sled database `name` in it.
/// `foreign` names what another adapter keeps there for the same kind of store.
pub(crate) fn prepare(dir: &Path, name: &str, foreign: &str) -> Result<Location, StorageError> {
    match std::fs::metadata(dir) {
        Ok(metadata) if !metadata.is_dir() => {
            return Err(io(
                dir,
                "open store directory",
                std::io::Error::new(ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|error| io(dir, "create store directory", error))?;
        }
        Err(error) => return Err(io(dir, "open store directory", error)),
    }
    let database = dir.join(name);
    let foreign_path = dir.join(foreign);
    let existed = exists(&database)?;
    if !existed && exists(&foreign_path)? {
        return Err(corrupt(
            &foreign_path,
            format!("the directory holds a d-engine-redb store ({foreign}), not a d-engine-sled one ({name})"),
        ));
    }
    match std::fs::metadata(&database) {
        Ok(metadata) if !metadata.is_dir() => Err(io(
            &database,
            "open sled database",
            std::io::Error::new(ErrorKind::NotADirectory, "a sled database is a directory, this is a file"),
        )),
        _ => Ok(Location { path: database, existed }),
    }
}

fn exists(path: &Path) -> Result<bool, StorageError> {
    path.try_exists().map_err(|error| io(path, "inspect store directory", error))
}
