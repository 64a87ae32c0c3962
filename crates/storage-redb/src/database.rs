//! Opening a redb database file the way both stores need it.

use std::path::Path;

use d_engine_core::storage::StorageError;
use d_engine_storage_fs::format::{self, Format, StoreKind};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use crate::FORMAT_VERSION;
use crate::error::database;

/// The format stamp of this adapter's stores.
pub(crate) const FORMAT: Format = Format { adapter: "d-engine-redb", version: FORMAT_VERSION };

/// Store-level records (format stamp, hard state, last purged id, applied id), each in
/// the codec of `d-engine-core` where one exists.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The key of the format stamp in [`META`].
pub(crate) const FORMAT_KEY: &str = "format";

/// Opens (creating when absent or empty) the database at `path`.
///
/// The whole file is checked against redb's page checksums at every open, so a damaged
/// file is refused with `Corrupt` instead of being trusted: redb documents that a plain
/// open of an altered file may panic. The check reads the whole file, which costs one
/// sequential read of the log at start-up.
pub(crate) fn open(path: &Path) -> Result<Database, StorageError> {
    redb::Builder::new().set_check_integrity_on_open(true).create(path).map_err(|error| database(path, "open", error))
}

/// Creates a database at `path` holding the format stamp of a `kind` store and its empty
/// data table, committed durably (see `d_engine_storage_fs::directory::create_atomically`).
pub(crate) fn create_stamped(path: &Path, kind: StoreKind) -> Result<(), StorageError> {
    let db = open(path)?;
    let txn = db.begin_write().map_err(|error| database(path, "begin creation", error))?;
    {
        let mut meta = txn.open_table(META).map_err(|error| database(path, "open meta table", error))?;
        meta.insert(FORMAT_KEY, FORMAT.stamp(kind).as_bytes())
            .map_err(|error| database(path, "write format stamp", error))?;
        let data = match kind {
            StoreKind::Log => txn.open_table(crate::log_store::ENTRIES).map(drop),
            StoreKind::State => txn.open_table(crate::state_store::PAIRS).map(drop),
        };
        data.map_err(|error| database(path, "create the data table", error))?;
    }
    txn.commit().map_err(|error| database(path, "stamp a new store", error))
}

/// Checks the format stamp of the store at `path`, or stamps it when the store is new:
/// this open created the file (`existed` is false) and `data` (the store's own table)
/// and [`META`] are empty. Returns whether it stamped, in which case `txn` must be
/// committed.
pub(crate) fn stamp_or_check<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &WriteTransaction,
    path: &Path,
    kind: StoreKind,
    data: TableDefinition<K, V>,
    existed: bool,
) -> Result<bool, StorageError> {
    let data_is_empty = txn
        .open_table(data)
        .and_then(|table| Ok(table.is_empty()?))
        .map_err(|error| database(path, "inspect store", error))?;
    let mut meta = txn.open_table(META).map_err(|error| database(path, "open meta table", error))?;
    let found = meta
        .get(FORMAT_KEY)
        .map_err(|error| database(path, "read format stamp", error))?
        .map(|stamp| stamp.value().to_vec());
    match found {
        Some(found) => FORMAT.check(path, &found, kind).map(|()| false),
        None if !existed
            && data_is_empty
            && meta.is_empty().map_err(|error| database(path, "inspect meta", error))? =>
        {
            meta.insert(FORMAT_KEY, FORMAT.stamp(kind).as_bytes())
                .map_err(|error| database(path, "write format stamp", error))?;
            Ok(true)
        }
        None => Err(format::missing_stamp(path)),
    }
}

/// Reads a record of [`META`], as stored.
pub(crate) fn meta_record(txn: &WriteTransaction, path: &Path, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
    let meta = txn.open_table(META).map_err(|error| database(path, "open meta table", error))?;
    let value = meta.get(key).map_err(|error| database(path, "read meta", error))?;
    Ok(value.map(|value| value.value().to_vec()))
}
