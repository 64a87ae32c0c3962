//! The directory a store lives in: created on first open, refused when it is a file,
//! unreachable, or holds the same kind of store made by another adapter.
//!
//! Each adapter keeps a store's database under a name of its own inside the directory
//! (`log.redb`, `log.sled/`, ...), so one data directory can hold a log store and a state
//! store, and finding the other adapter's name where ours should be means the directory
//! belongs to that adapter.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use d_engine_core::storage::StorageError;

use crate::error::{corrupt, io};

/// Where an adapter keeps one kind of store inside a store directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreName {
    /// The adapter's crate name, such as `d-engine-redb`.
    pub adapter: &'static str,
    /// The database's file or directory name inside the store directory.
    pub name: &'static str,
}

/// Where a store's database is, and whether it existed before this open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The database (a file or a directory, as the adapter keeps it).
    pub path: PathBuf,
    /// Whether the database was there already: such a store must carry a format stamp.
    pub existed: bool,
}

/// Creates `dir` if needed and locates the database `own.name` in it.
///
/// Errors: `Io` naming `dir` when it is not a directory or cannot be created or read;
/// `Corrupt` naming the foreign database when `dir` holds `foreign` (the same kind of
/// store made by another adapter) and not ours.
pub fn prepare(dir: &Path, own: StoreName, foreign: StoreName) -> Result<Location, StorageError> {
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
    let database = dir.join(own.name);
    let foreign_path = dir.join(foreign.name);
    let existed = exists(&database)?;
    if !existed && exists(&foreign_path)? {
        return Err(corrupt(
            &foreign_path,
            format!(
                "the directory holds a {} store ({}), not a {} one ({})",
                foreign.adapter, foreign.name, own.adapter, own.name
            ),
        ));
    }
    Ok(Location { path: database, existed })
}

/// Whether `path` exists. Errors: `Io` naming `path` when that cannot be found out.
pub fn exists(path: &Path) -> Result<bool, StorageError> {
    path.try_exists().map_err(|error| io(path, "inspect store directory", error))
}

/// Creates a new database at `path` so that a crash can never leave a half-made one there:
/// `create` builds and stamps it at a temporary sibling (`<path>.creating`), which is then
/// renamed into place, and the directory is synced. A crash before the rename leaves only
/// the temporary, which the next creation removes; after it, a complete stamped store.
///
/// Without this, a process killed while creating a store left an unstamped database that
/// every later open refuses (it cannot tell "never written" from "data lost").
pub fn create_atomically(
    path: &Path,
    create: impl FnOnce(&Path) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".creating");
    let temporary = PathBuf::from(temporary);
    let leftover = std::fs::symlink_metadata(&temporary);
    match leftover {
        Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(&temporary),
        Ok(_) => std::fs::remove_file(&temporary),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
    .map_err(|error| io(&temporary, "remove an interrupted creation", error))?;
    create(&temporary)?;
    std::fs::rename(&temporary, path).map_err(|error| io(path, "move the new store into place", error))?;
    let parent = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| io(parent, "sync the store directory", error))
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_creation_is_cleared_and_a_store_appears_only_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        // A crash during an earlier creation left its temporary behind.
        std::fs::create_dir(dir.path().join("log.db.creating")).unwrap();
        std::fs::write(dir.path().join("log.db.creating/half"), b"half-made").unwrap();

        let failed = create_atomically(&path, |temporary| {
            std::fs::write(temporary, b"partial").unwrap();
            Err(StorageError::Misuse("creation failed midway".into()))
        });
        assert!(failed.is_err());
        assert!(!path.exists(), "a failed creation leaves no store at the final path");

        create_atomically(&path, |temporary| {
            assert!(!path.exists(), "nothing is at the final path while the store is being made");
            std::fs::write(temporary, b"stamped").map_err(|error| io(temporary, "write", error))
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"stamped");
        assert!(!dir.path().join("log.db.creating").exists());
    }
}
