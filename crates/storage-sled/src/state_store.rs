//! The sled state store.
//!
//! # Layout
//! One sled database in `state.sled/`, one tree: key `k` + the state machine's key holds
//! its value byte for byte; `mformat` and `mapplied` hold the format stamp and the
//! applied log id (in the core's checksummed codec).
//!
//! # Durability
//! Every `write_batch` and `import` is one sled `Batch` (applied atomically, across
//! crashes too) followed by `flush`, which fsyncs: when it returns, the writes and the
//! applied id are durable together.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use d_engine_core::LogId;
use d_engine_core::storage::{StateStore, StateWrite, StorageError, codec, decode_export, encode_export, rules};
use d_engine_storage_fs::FailClosed;
use d_engine_storage_fs::error::corrupt;
use d_engine_storage_fs::format::StoreKind;

use crate::{database, directory, error};

const PAIR_PREFIX: u8 = b'k';
const APPLIED_KEY: &[u8] = b"mapplied";

fn pair_key(key: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(1 + key.len());
    stored.push(PAIR_PREFIX);
    stored.extend_from_slice(key);
    stored
}

/// A [`StateStore`] in a sled database, `state.sled/`, inside a directory of its own.
///
/// Each batch and each import is one atomic sled batch, flushed before it returns.
pub struct SledStateStore {
    db: sled::Db,
    path: PathBuf,
    applied: LogId,
    failure: FailClosed,
}

impl SledStateStore {
    /// Opens the state store in directory `dir`, creating the directory and an empty
    /// store if there is none.
    ///
    /// Errors, each naming the path: `Io` when `dir` is a file or cannot be created or
    /// read, or the database is open in another process; `Corrupt` when sled finds its
    /// files damaged, or the store belongs to another adapter or kind, has a format
    /// version this build does not know, or the applied id fails its checksum.
    pub fn open(dir: impl AsRef<Path>) -> Result<SledStateStore, StorageError> {
        let location = directory::prepare(dir.as_ref(), StoreKind::State)?;
        let path = location.path;
        let db = database::open(&path)?;
        database::stamp_or_check(&db, &path, StoreKind::State, location.existed)?;
        let applied = match db.get(APPLIED_KEY).map_err(|error| error::database(&path, "read applied id", error))? {
            Some(bytes) => {
                codec::decode_log_id(&bytes).map_err(|error| corrupt(&path, format!("applied id: {error}")))?
            }
            None => LogId::default(),
        };
        Ok(SledStateStore { db, path, applied, failure: FailClosed::default() })
    }

    /// The sled database directory, `<dir>/state.sled`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn usable(&self) -> Result<(), StorageError> {
        self.failure.check(&self.path)
    }

    /// Applies `batch` with the applied id, atomically, and flushes when `durable` (else the
    /// next `sync` or durable batch flushes it). A failure poisons the store.
    fn commit(&mut self, mut batch: sled::Batch, applied: LogId, durable: bool) -> Result<(), StorageError> {
        batch.insert(APPLIED_KEY, &codec::encode_log_id(applied)[..]);
        let result = self
            .db
            .apply_batch(batch)
            .and_then(|()| if durable { self.db.flush().map(drop) } else { Ok(()) })
            .map_err(|error| error::database(&self.path, "commit batch", error));
        match result {
            Ok(_) => {
                self.applied = applied;
                Ok(())
            }
            Err(error) => {
                self.failure.fail(&error);
                Err(error)
            }
        }
    }

    /// One batch with the applied id; flushed when `durable`.
    fn write(&mut self, writes: &[StateWrite], applied: LogId, durable: bool) -> Result<(), StorageError> {
        self.usable()?;
        rules::check_applied(applied, self.applied)?;
        // A sled batch keeps the last change of each key, which is "in order".
        let mut batch = sled::Batch::default();
        for write in writes {
            match write {
                StateWrite::Put { key, value } => batch.insert(pair_key(key), &value[..]),
                StateWrite::Delete { key } => batch.remove(pair_key(key)),
            }
        }
        self.commit(batch, applied, durable)
    }

    /// Every stored pair key (with its prefix).
    fn pair_keys(&self) -> Result<Vec<sled::IVec>, StorageError> {
        self.db
            .scan_prefix([PAIR_PREFIX])
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|error| error::database(&self.path, "scan", error))
    }
}

impl StateStore for SledStateStore {
    fn write_batch(&mut self, writes: &[StateWrite], applied: LogId) -> Result<(), StorageError> {
        self.write(writes, applied, true)
    }

    fn write_batch_deferred(&mut self, writes: &[StateWrite], applied: LogId) -> Result<(), StorageError> {
        self.write(writes, applied, false)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.usable()?;
        let flushed = self.db.flush().map_err(|error| error::database(&self.path, "sync", error));
        flushed.map(drop).inspect_err(|error| self.failure.fail(error))
    }

    fn applied(&self) -> Result<LogId, StorageError> {
        self.usable()?;
        Ok(self.applied)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        self.usable()?;
        let value = self.db.get(pair_key(key)).map_err(|error| error::database(&self.path, "get", error))?;
        Ok(value.map(|value| Bytes::copy_from_slice(&value)))
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        self.usable()?;
        if rules::key_range_is_empty(start, end) {
            return Ok(Vec::new());
        }
        let limit = rules::range_limit(limit);
        let upper = end.map_or(Bound::Excluded(vec![PAIR_PREFIX + 1]), |end| Bound::Excluded(pair_key(end)));
        let mut found = Vec::new();
        for item in self.db.range::<Vec<u8>, _>((Bound::Included(pair_key(start)), upper)).take(limit) {
            let (key, value) = item.map_err(|error| error::database(&self.path, "range", error))?;
            found.push((Bytes::copy_from_slice(&key[1..]), Bytes::copy_from_slice(&value)));
        }
        Ok(found)
    }

    fn export(&self) -> Result<Bytes, StorageError> {
        let pairs = self.range(b"", None, 0)?;
        Ok(encode_export(self.applied, &pairs))
    }

    fn import(&mut self, data: &[u8]) -> Result<(), StorageError> {
        self.usable()?;
        // Decode fully first: malformed data must change nothing.
        let (applied, pairs) = decode_export(data)?;
        let mut batch = sled::Batch::default();
        for key in self.pair_keys()? {
            batch.remove(key);
        }
        for (key, value) in &pairs {
            batch.insert(pair_key(key), &value[..]);
        }
        self.commit(batch, applied, true)
    }
}

impl std::fmt::Debug for SledStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStateStore").field("path", &self.path).field("applied", &self.applied).finish()
    }
}
