//! Opening a sled database the way both stores need it, and its key layout.
//!
//! Each store is one sled tree (the default one), so that one `Batch` covers every
//! change of a sync and sled applies it atomically, across crashes too. Keys start
//! with a one-byte prefix: [`META_PREFIX`] for store-level records, and a prefix of the
//! store's own for its data.

use std::path::Path;
use std::time::{Duration, Instant};

use d_engine_core::storage::StorageError;
use d_engine_storage_fs::format::{self, Format, StoreKind};

use crate::FORMAT_VERSION;
use crate::error::database;

/// The format stamp of this adapter's stores.
pub(crate) const FORMAT: Format = Format { adapter: "d-engine-sled", version: FORMAT_VERSION };

/// The prefix of store-level records (format stamp, hard state, purged id, applied id).
pub(crate) const META_PREFIX: u8 = b'm';

/// The key of the format stamp.
pub(crate) const FORMAT_KEY: &[u8] = b"mformat";

/// How long an open waits for the file lock of a database that was just closed.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Opens (creating when absent) the sled database in directory `path`.
///
/// sled's periodic background flush is off: data reaches the disk at the stores' own
/// `flush` calls, which are their durability points.
///
/// sled releases its file lock when the last of its background I/O threads lets go of
/// the database, which can be a few hundred milliseconds after the store was dropped
/// (measured under test load); so an open that finds the lock taken retries for up to
/// [`LOCK_WAIT`] before it reports the database as in use.
pub(crate) fn open(path: &Path) -> Result<sled::Db, StorageError> {
    let started = Instant::now();
    loop {
        match sled::Config::new().path(path).flush_every_ms(None).open() {
            Err(sled::Error::Io(error)) if is_lock_conflict(&error) && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result.map_err(|error| database(path, "open", error)),
        }
    }
}

/// sled reports a taken file lock as an `Other` I/O error with this message.
fn is_lock_conflict(error: &std::io::Error) -> bool {
    error.to_string().starts_with("could not acquire lock")
}

/// Creates a database at `path` holding only the format stamp of a `kind` store, flushed
/// and closed (see `d_engine_storage_fs::directory::create_atomically`).
pub(crate) fn create_stamped(path: &Path, kind: StoreKind) -> Result<(), StorageError> {
    let db = open(path)?;
    db.insert(FORMAT_KEY, FORMAT.stamp(kind).as_bytes())
        .map_err(|error| database(path, "write format stamp", error))?;
    db.flush().map_err(|error| database(path, "write format stamp", error))?;
    Ok(())
}

/// Checks the stamp of the store at `path`, or stamps it if the store is new: this open
/// created it (`existed` is false) and it is empty.
pub(crate) fn stamp_or_check(db: &sled::Db, path: &Path, kind: StoreKind, existed: bool) -> Result<(), StorageError> {
    let at = |operation| move |error| database(path, operation, error);
    match db.get(FORMAT_KEY).map_err(at("read format stamp"))? {
        Some(found) => FORMAT.check(path, &found, kind),
        None if !existed && db.is_empty() => {
            db.insert(FORMAT_KEY, FORMAT.stamp(kind).as_bytes()).map_err(at("write format stamp"))?;
            db.flush().map_err(at("write format stamp"))?;
            Ok(())
        }
        None => Err(format::missing_stamp(path)),
    }
}
