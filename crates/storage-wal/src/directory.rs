//! The log's directory, `<dir>/log.wal/`: created whole (format stamp and first segment)
//! or not at all, locked by one open store at a time, and checked at every open.
//!
//! `<dir>` may also hold a state store of another adapter. Finding d-engine-redb's or
//! d-engine-sled's log (`log.redb`, `log.sled`) where ours should be means the directory
//! belongs to that adapter, and it is refused by name.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use d_engine_core::storage::StorageError;
use d_engine_storage_fs::directory::{self, StoreName, exists};
use d_engine_storage_fs::error::{corrupt, io};
use d_engine_storage_fs::format::{self, Format, StoreKind};

use crate::FORMAT_VERSION;
use crate::batch::{self, Batch, RecordKind, Shape};
use crate::segment;

/// The log's directory inside a store directory.
pub(crate) const LOG_DIR: &str = "log.wal";
/// The file holding the format stamp, inside the log's directory.
pub(crate) const FORMAT_FILE: &str = "FORMAT";
/// The format stamp of this adapter's logs.
pub(crate) const FORMAT: Format = Format { adapter: "d-engine-wal", version: FORMAT_VERSION };

/// The log stores of the other durable adapters.
const FOREIGN: [StoreName; 2] = [
    StoreName { adapter: "d-engine-redb", name: "log.redb" },
    StoreName { adapter: "d-engine-sled", name: "log.sled" },
];

/// Creates `dir` if needed, refuses it when it holds another adapter's log, creates a
/// new log in it when there is none, and returns the log's directory.
pub(crate) fn prepare(dir: &Path) -> Result<PathBuf, StorageError> {
    let own = StoreName { adapter: FORMAT.adapter, name: LOG_DIR };
    let location = directory::prepare(dir, own, FOREIGN[0])?;
    if !location.existed {
        for foreign in &FOREIGN[1..] {
            let path = dir.join(foreign.name);
            if exists(&path)? {
                return Err(corrupt(
                    &path,
                    format!(
                        "the directory holds a {} store ({}), not a {} one ({})",
                        foreign.adapter, foreign.name, own.adapter, own.name
                    ),
                ));
            }
        }
        directory::create_atomically(&location.path, create)?;
    }
    Ok(location.path)
}

/// Makes a new log at `path`: the stamp and a first segment that starts an empty log,
/// each synced, and the directory synced.
fn create(path: &Path) -> Result<(), StorageError> {
    std::fs::create_dir(path).map_err(|error| io(path, "create the log directory", error))?;
    let stamp = path.join(FORMAT_FILE);
    File::create_new(&stamp)
        .and_then(|mut file| {
            file.write_all(FORMAT.stamp(StoreKind::Log).as_bytes())?;
            file.sync_all()
        })
        .map_err(|error| io(&stamp, "write the format stamp", error))?;
    let first = path.join(segment::file_name(1, 1));
    let mut start = Batch::new();
    start.push(RecordKind::Start, &batch::encode_start(1, &Shape::default()));
    File::create_new(&first)
        .and_then(|file| {
            file.write_all_at(start.seal(), 0)?;
            file.sync_all()
        })
        .map_err(|error| io(&first, "write the first segment", error))?;
    sync_directory(path)
}

/// Fsyncs directory `path`, so that files created or removed in it stay so.
pub(crate) fn sync_directory(path: &Path) -> Result<(), StorageError> {
    File::open(path).and_then(|dir| dir.sync_all()).map_err(|error| io(path, "sync the log directory", error))
}

/// Opens and locks the log directory `path` and checks its format stamp. The returned
/// handle holds the lock (an exclusive `flock`) until it is dropped.
///
/// Errors: `Io` naming `path` when it is locked by another handle or process or cannot be
/// read; `Corrupt` naming `path` when it is not a directory, or its stamp is missing or
/// not this adapter's log format.
pub(crate) fn open_locked(path: &Path) -> Result<File, StorageError> {
    let metadata = std::fs::metadata(path).map_err(|error| io(path, "open the log directory", error))?;
    if !metadata.is_dir() {
        return Err(corrupt(path, "not a directory: a d-engine-wal log is a directory of segment files"));
    }
    let handle = File::open(path).map_err(|error| io(path, "open the log directory", error))?;
    match handle.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(io(
                path,
                "lock the log directory",
                std::io::Error::new(ErrorKind::WouldBlock, "the log is open in another handle or process"),
            ));
        }
        Err(std::fs::TryLockError::Error(error)) => return Err(io(path, "lock the log directory", error)),
    }
    let stamp = match std::fs::read(path.join(FORMAT_FILE)) {
        Ok(stamp) => stamp,
        Err(error) if error.kind() == ErrorKind::NotFound => return Err(format::missing_stamp(path)),
        Err(error) => return Err(io(&path.join(FORMAT_FILE), "read the format stamp", error)),
    };
    FORMAT.check(path, &stamp, StoreKind::Log)?;
    Ok(handle)
}

/// Opens a segment file for reading and writing.
pub(crate) fn open_segment(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new().read(true).write(true).open(path).map_err(|error| io(path, "open a segment", error))
}
