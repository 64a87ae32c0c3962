//! The redb state store.
//!
//! # Layout
//! One file, `state.redb`, with two tables: `pairs` maps the state machine's keys to
//! its values, byte for byte, and `meta` holds the format stamp and the applied log id
//! (in the core's checksummed codec). The applied id is also kept in memory.
//!
//! # Durability
//! Every `write_batch` and `import` is one redb write transaction committed with
//! `Durability::Immediate`: when it returns, the writes and the applied id are durable
//! together; a crash before that leaves none of them.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use d_engine_core::LogId;
use d_engine_core::storage::{StateStore, StateWrite, StorageError, codec, decode_export, encode_export, rules};
use d_engine_storage_fs::FailClosed;
use d_engine_storage_fs::error::corrupt;
use d_engine_storage_fs::format::StoreKind;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::database::{self, META};
use crate::{directory, error};

pub(crate) const PAIRS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pairs");
const APPLIED_KEY: &str = "applied";

/// A [`StateStore`] in a redb database file, `state.redb`, inside a directory of its own.
///
/// Each batch and each import is one durable redb transaction.
pub struct RedbStateStore {
    db: Database,
    path: PathBuf,
    applied: LogId,
    /// Whether a deferred (`Durability::None`) batch awaits a durable commit.
    deferred: bool,
    failure: FailClosed,
}

impl RedbStateStore {
    /// Opens the state store in directory `dir`, creating the directory and an empty
    /// store if there is none.
    ///
    /// Errors, each naming the path: `Io` when `dir` is a file or cannot be created or
    /// read, or the database is open in another process; `Corrupt` when the file is
    /// damaged, is not a redb database, holds another adapter's or kind's store or a
    /// format version this build does not know, or the applied id fails its checksum.
    pub fn open(dir: impl AsRef<Path>) -> Result<RedbStateStore, StorageError> {
        let location = directory::prepare(dir.as_ref(), StoreKind::State)?;
        let path = location.path;
        let db = database::open(&path)?;
        let txn = db.begin_write().map_err(|error| error::database(&path, "begin open", error))?;
        let stamped = database::stamp_or_check(&txn, &path, StoreKind::State, PAIRS, location.existed)?;
        let applied = match database::meta_record(&txn, &path, APPLIED_KEY)? {
            Some(bytes) => {
                codec::decode_log_id(&bytes).map_err(|error| corrupt(&path, format!("applied id: {error}")))?
            }
            None => LogId::default(),
        };
        if stamped {
            txn.commit().map_err(|error| error::database(&path, "stamp a new store", error))?;
        } else {
            txn.abort().map_err(|error| error::database(&path, "finish open", error))?;
        }
        Ok(RedbStateStore { db, path, applied, deferred: false, failure: FailClosed::default() })
    }

    /// The database file, `<dir>/state.redb`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn usable(&self) -> Result<(), StorageError> {
        self.failure.check(&self.path)
    }

    /// Runs `write` in a new write transaction, records `applied` and commits durably.
    /// A failure after the transaction began poisons the store.
    fn commit(
        &mut self,
        applied: LogId,
        durability: Durability,
        write: impl FnOnce(&WriteTransaction, &Path) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let result = (|| {
            let mut txn = self.db.begin_write().map_err(|error| error::database(&self.path, "begin write", error))?;
            txn.set_durability(durability).map_err(|error| error::database(&self.path, "set durability", error))?;
            write(&txn, &self.path)?;
            {
                let mut meta =
                    txn.open_table(META).map_err(|error| error::database(&self.path, "write applied id", error))?;
                meta.insert(APPLIED_KEY, &codec::encode_log_id(applied)[..])
                    .map_err(|error| error::database(&self.path, "write applied id", error))?;
            }
            txn.commit().map_err(|error| error::database(&self.path, "commit", error))
        })();
        match result {
            Ok(()) => {
                self.applied = applied;
                self.deferred = matches!(durability, Durability::None);
                Ok(())
            }
            Err(error) => {
                self.failure.fail(&error);
                Err(error)
            }
        }
    }

    /// One batch with the applied id, committed with `durability`.
    fn write(&mut self, writes: &[StateWrite], applied: LogId, durability: Durability) -> Result<(), StorageError> {
        self.usable()?;
        rules::check_applied(applied, self.applied)?;
        self.commit(applied, durability, |txn, path| {
            let mut pairs = txn.open_table(PAIRS).map_err(|error| error::database(path, "write batch", error))?;
            for write in writes {
                match write {
                    StateWrite::Put { key, value } => {
                        pairs.insert(&key[..], &value[..]).map_err(|error| error::database(path, "put", error))?;
                    }
                    StateWrite::Delete { key } => {
                        pairs.remove(&key[..]).map_err(|error| error::database(path, "delete", error))?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Runs `read` over the pairs table of a fresh read transaction.
    fn read<R>(
        &self,
        read: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<R, redb::StorageError>,
    ) -> Result<R, StorageError> {
        self.usable()?;
        let txn = self.db.begin_read().map_err(|error| error::database(&self.path, "begin read", error))?;
        let table = txn.open_table(PAIRS).map_err(|error| error::database(&self.path, "open pairs table", error))?;
        read(&table).map_err(|error| error::database(&self.path, "read", error))
    }
}

fn pair(key: &[u8], value: &[u8]) -> (Bytes, Bytes) {
    (Bytes::copy_from_slice(key), Bytes::copy_from_slice(value))
}

impl StateStore for RedbStateStore {
    fn write_batch(&mut self, writes: &[StateWrite], applied: LogId) -> Result<(), StorageError> {
        self.write(writes, applied, Durability::Immediate)
    }

    fn write_batch_deferred(&mut self, writes: &[StateWrite], applied: LogId) -> Result<(), StorageError> {
        self.write(writes, applied, Durability::None)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.usable()?;
        if !self.deferred {
            return Ok(());
        }
        // An empty durable commit makes every earlier `Durability::None` commit durable.
        self.commit(self.applied, Durability::Immediate, |_, _| Ok(()))
    }

    fn applied(&self) -> Result<LogId, StorageError> {
        self.usable()?;
        Ok(self.applied)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        self.read(|pairs| Ok(pairs.get(key)?.map(|value| Bytes::copy_from_slice(value.value()))))
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        if rules::key_range_is_empty(start, end) {
            return Ok(Vec::new());
        }
        let limit = rules::range_limit(limit);
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        self.read(|pairs| {
            let mut found = Vec::new();
            for item in pairs.range::<&[u8]>((Bound::Included(start), upper))?.take(limit) {
                let (key, value) = item?;
                found.push(pair(key.value(), value.value()));
            }
            Ok(found)
        })
    }

    fn export(&self) -> Result<Bytes, StorageError> {
        let pairs = self.read(|pairs| {
            pairs
                .iter()?
                .map(|item| item.map(|(key, value)| pair(key.value(), value.value())))
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(encode_export(self.applied, &pairs))
    }

    fn import(&mut self, data: &[u8]) -> Result<(), StorageError> {
        self.usable()?;
        // Decode fully first: malformed data must change nothing.
        let (applied, pairs) = decode_export(data)?;
        self.commit(applied, Durability::Immediate, |txn, path| {
            txn.delete_table(PAIRS).map_err(|error| error::database(path, "clear pairs", error))?;
            let mut table = txn.open_table(PAIRS).map_err(|error| error::database(path, "import", error))?;
            for (key, value) in &pairs {
                table.insert(&key[..], &value[..]).map_err(|error| error::database(path, "import", error))?;
            }
            Ok(())
        })
    }
}

impl std::fmt::Debug for RedbStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStateStore").field("path", &self.path).field("applied", &self.applied).finish()
    }
}
