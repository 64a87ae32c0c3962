//! The directory a store lives in: created on first open, refused when it is a file,
//! unreachable, or holds the same kind of store made by another adapter.
//!
//! A log store keeps `log.redb` in its directory and a state store `state.redb`, so
//! one data directory can hold both. d-engine-sled keeps `log.sled/` and `state.sled/`;
//! finding those where our file should be means the directory belongs to sled.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use d_engine_core::storage::StorageError;

use crate::error::{corrupt, io};

/// Where a store's database is, and whether it existed before this open.
pub(crate) struct Location {
    /// The database file.
    pub(crate) path: PathBuf,
    /// Whether the file was there already: such a store must carry a format stamp.
    pub(crate) existed: bool,
}

/// Creates `dir` if needed and locates the database file `file_name` in it.
/// `foreign` names what another adapter keeps there for the same kind of store.
pub(crate) fn prepare(dir: &Path, file_name: &str, foreign: &str) -> Result<Location, StorageError> {
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
    let file = dir.join(file_name);
    let foreign_path = dir.join(foreign);
    let existed = exists(&file)?;
    if !existed && exists(&foreign_path)? {
        return Err(corrupt(
            &foreign_path,
            format!("the directory holds a d-engine-sled store ({foreign}), not a d-engine-redb one ({file_name})"),
        ));
    }
    if is_sled_database(dir)? {
        return Err(corrupt(dir, "the directory is a sled database; give d-engine-redb a directory of its own"));
    }
    Ok(Location { path: file, existed })
}

fn exists(path: &Path) -> Result<bool, StorageError> {
    path.try_exists().map_err(|error| io(path, "inspect store directory", error))
}

/// sled keeps a `conf` file and a `db` file at the top of its directory.
fn is_sled_database(dir: &Path) -> Result<bool, StorageError> {
    Ok(exists(&dir.join("conf"))? && exists(&dir.join("db"))?)
}
