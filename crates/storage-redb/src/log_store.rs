//! The redb log store.
//!
//! # Layout
//! One file, `log.redb`, with two tables: `entries` maps a log index (`u64`) to the
//! entry in the core's checksummed codec, and `meta` holds the format stamp, the hard
//! state and the last purged log id (codec records too). The hard state, the purged id
//! and the last log id are also kept in memory, so only entry reads touch the file.
//!
//! # Durability
//! Writes go into one open redb write transaction, which reads also go through, so they
//! see every write at once. `sync` commits that transaction with
//! `Durability::Immediate`: every write since the last sync becomes durable together,
//! in one commit and one fsync (group commit), or not at all. Dropping the store
//! aborts the open transaction, which is what a crash does to unsynced writes.
//!
//! A write or commit that fails leaves what is durable unknown, so the store then
//! refuses every call until it is reopened (fail closed).

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use d_engine_core::storage::{LogStore, StorageError, codec, rules};
use d_engine_core::{Entry, HardState, LogId, LogIndex, Term};
use d_engine_storage_fs::FailClosed;
use d_engine_storage_fs::error::corrupt;
use d_engine_storage_fs::format::StoreKind;
use d_engine_storage_fs::records::{check_first_entry, decode_entry_at, locate};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::database::{self, META};
use crate::{directory, error};

pub(crate) const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
const HARD_STATE_KEY: &str = "hard_state";
const LAST_PURGED_KEY: &str = "last_purged";

/// A [`LogStore`] in a redb database file, `log.redb`, inside a directory of its own.
///
/// Reads see every write at once; writes become durable together at
/// [`sync`](LogStore::sync), which commits one redb transaction with
/// `Durability::Immediate`. Dropping the store without a sync discards unsynced writes.
pub struct RedbLogStore {
    // Declared before `db` so that an open transaction is dropped (aborted) first.
    pending: Option<WriteTransaction>,
    db: Database,
    path: PathBuf,
    hard_state: HardState,
    last_purged: LogId,
    last_log_id: LogId,
    failure: FailClosed,
}

impl RedbLogStore {
    /// Opens the log store in directory `dir`, creating the directory and an empty store
    /// if there is none.
    ///
    /// Errors, each naming the path: `Io` when `dir` is a file or cannot be created or
    /// read, or the database is open in another process; `Corrupt` when the file is
    /// damaged, is not a redb database, holds another adapter's or kind's store or a
    /// format version this build does not know, or when its records fail their checksums.
    pub fn open(dir: impl AsRef<Path>) -> Result<RedbLogStore, StorageError> {
        let location = directory::prepare(dir.as_ref(), StoreKind::Log)?;
        let path = location.path;
        let db = database::open(&path)?;
        let txn = db.begin_write().map_err(|error| error::database(&path, "begin open", error))?;
        let stamped = database::stamp_or_check(&txn, &path, StoreKind::Log, ENTRIES, location.existed)?;
        let hard_state = match database::meta_record(&txn, &path, HARD_STATE_KEY)? {
            Some(bytes) => codec::decode_hard_state(&bytes).map_err(|error| locate(&path, "hard state", error))?,
            None => HardState::default(),
        };
        let last_purged = match database::meta_record(&txn, &path, LAST_PURGED_KEY)? {
            Some(bytes) => codec::decode_log_id(&bytes).map_err(|error| locate(&path, "last purged id", error))?,
            None => LogId::default(),
        };
        let entries = txn.open_table(ENTRIES).map_err(|error| error::database(&path, "open entries table", error))?;
        let last_log_id = log_bounds(&path, &entries, last_purged)?;
        drop(entries);
        if stamped {
            txn.commit().map_err(|error| error::database(&path, "stamp a new store", error))?;
        } else {
            txn.abort().map_err(|error| error::database(&path, "finish open", error))?;
        }
        Ok(RedbLogStore {
            pending: None,
            db,
            path,
            hard_state,
            last_purged,
            last_log_id,
            failure: FailClosed::default(),
        })
    }

    /// The database file, `<dir>/log.redb`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn usable(&self) -> Result<(), StorageError> {
        self.failure.check(&self.path)
    }

    /// Runs `write` in the open write transaction (beginning one if needed). A failure
    /// aborts the transaction and poisons the store.
    fn write(
        &mut self,
        write: impl FnOnce(&WriteTransaction, &Path) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let txn = match self.pending.take() {
            Some(txn) => txn,
            None => self.begin().inspect_err(|error| self.failure.fail(error))?,
        };
        match write(&txn, &self.path) {
            Ok(()) => {
                self.pending = Some(txn);
                Ok(())
            }
            Err(error) => {
                self.failure.fail(&error);
                Err(error)
            }
        }
    }

    fn begin(&self) -> Result<WriteTransaction, StorageError> {
        let mut txn = self.db.begin_write().map_err(|error| error::database(&self.path, "begin write", error))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|error| error::database(&self.path, "set durability", error))?;
        Ok(txn)
    }

    /// Entries `start..=end`, all of which the log holds.
    fn read(&self, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        match &self.pending {
            Some(txn) => collect(
                &self.path,
                &txn.open_table(ENTRIES).map_err(|error| error::database(&self.path, "read entries", error))?,
                start,
                end,
            ),
            None => {
                let txn = self.db.begin_read().map_err(|error| error::database(&self.path, "read entries", error))?;
                collect(
                    &self.path,
                    &txn.open_table(ENTRIES).map_err(|error| error::database(&self.path, "read entries", error))?,
                    start,
                    end,
                )
            }
        }
    }
}

/// Reads the first and last entries and returns the last log id; the first must follow
/// the purged prefix and both must decode.
fn log_bounds(
    path: &Path,
    entries: &impl ReadableTable<u64, &'static [u8]>,
    last_purged: LogId,
) -> Result<LogId, StorageError> {
    let at = |error: redb::StorageError| error::database(path, "read log bounds", error);
    let Some((first_key, first_value)) = entries.first().map_err(at)? else {
        return Ok(last_purged);
    };
    let first = decode_entry_at(path, first_key.value(), first_value.value())?;
    check_first_entry(path, first.log_id, last_purged)?;
    let (last_key, last_value) =
        entries.last().map_err(at)?.ok_or_else(|| corrupt(path, "entries vanished while opening"))?;
    Ok(decode_entry_at(path, last_key.value(), last_value.value())?.log_id)
}

/// Reads entries `start..=end` from `table`, each decoded and at its own index.
fn collect(
    path: &Path,
    table: &impl ReadableTable<u64, &'static [u8]>,
    start: u64,
    end: u64,
) -> Result<Vec<Entry>, StorageError> {
    let at = |error: redb::StorageError| error::database(path, "read entries", error);
    let mut entries = Vec::with_capacity((end - start + 1).min(4096) as usize);
    for item in table.range(start..=end).map_err(at)? {
        let (key, value) = item.map_err(at)?;
        let expected = start + entries.len() as u64;
        if key.value() != expected {
            return Err(corrupt(path, format!("entry {expected} is missing")));
        }
        entries.push(decode_entry_at(path, key.value(), value.value())?);
    }
    if entries.len() as u64 != end - start + 1 {
        return Err(corrupt(path, format!("entry {} is missing", start + entries.len() as u64)));
    }
    Ok(entries)
}

impl LogStore for RedbLogStore {
    fn hard_state(&self) -> Result<HardState, StorageError> {
        self.usable()?;
        Ok(self.hard_state)
    }

    fn last_purged(&self) -> Result<LogId, StorageError> {
        self.usable()?;
        Ok(self.last_purged)
    }

    fn last_log_id(&self) -> Result<LogId, StorageError> {
        self.usable()?;
        Ok(self.last_log_id)
    }

    fn term_of(&self, index: LogIndex) -> Result<Term, StorageError> {
        self.usable()?;
        if let Some(term) = rules::term_from_bounds(index, self.last_purged, self.last_log_id)? {
            return Ok(term);
        }
        Ok(self.read(index.0, index.0)?[0].log_id.term)
    }

    fn entries(&self, range: RangeInclusive<LogIndex>) -> Result<Vec<Entry>, StorageError> {
        self.usable()?;
        match rules::check_entries_range(range, self.last_purged, self.last_log_id)? {
            Some(range) => self.read(range.start().0, range.end().0),
            None => Ok(Vec::new()),
        }
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.usable()?;
        let record = codec::encode_hard_state(hard_state);
        self.write(|txn, path| {
            let mut meta = txn.open_table(META).map_err(|error| error::database(path, "write hard state", error))?;
            meta.insert(HARD_STATE_KEY, &record[..])
                .map_err(|error| error::database(path, "write hard state", error))?;
            Ok(())
        })?;
        self.hard_state = *hard_state;
        Ok(())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.usable()?;
        let Some(last) = entries.last() else {
            return Ok(());
        };
        rules::check_append(self.last_log_id, entries)?;
        self.write(|txn, path| {
            let mut table = txn.open_table(ENTRIES).map_err(|error| error::database(path, "append", error))?;
            for entry in entries {
                table
                    .insert(entry.log_id.index.0, &codec::encode_entry(entry)[..])
                    .map_err(|error| error::database(path, "append", error))?;
            }
            Ok(())
        })?;
        self.last_log_id = last.log_id;
        Ok(())
    }

    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.usable()?;
        rules::check_truncate(from, self.last_purged)?;
        if from > self.last_log_id.index {
            return Ok(());
        }
        let new_last = LogId { term: self.term_of(from.prev())?, index: from.prev() };
        self.write(|txn, path| {
            let mut table = txn.open_table(ENTRIES).map_err(|error| error::database(path, "truncate", error))?;
            table.retain_in(from.0.., |_, _| false).map_err(|error| error::database(path, "truncate", error))
        })?;
        self.last_log_id = new_last;
        Ok(())
    }

    fn purge_prefix(&mut self, upto: LogId) -> Result<(), StorageError> {
        self.usable()?;
        if !rules::purge_advances(upto, self.last_purged) {
            return Ok(());
        }
        let record = codec::encode_log_id(upto);
        self.write(|txn, path| {
            let mut table = txn.open_table(ENTRIES).map_err(|error| error::database(path, "purge", error))?;
            table.retain_in(..=upto.index.0, |_, _| false).map_err(|error| error::database(path, "purge", error))?;
            let mut meta = txn.open_table(META).map_err(|error| error::database(path, "purge", error))?;
            meta.insert(LAST_PURGED_KEY, &record[..]).map_err(|error| error::database(path, "purge", error))?;
            Ok(())
        })?;
        self.last_purged = upto;
        self.last_log_id = rules::last_log_id_after_purge(upto, self.last_log_id);
        Ok(())
    }

    fn size_bytes(&self) -> Option<u64> {
        std::fs::metadata(&self.path).ok().map(|metadata| metadata.len())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.usable()?;
        let Some(txn) = self.pending.take() else {
            return Ok(());
        };
        txn.commit().map_err(|error| {
            let error = error::database(&self.path, "commit", error);
            self.failure.fail(&error);
            error
        })
    }
}

impl std::fmt::Debug for RedbLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbLogStore")
            .field("path", &self.path)
            .field("hard_state", &self.hard_state)
            .field("last_purged", &self.last_purged)
            .field("last_log_id", &self.last_log_id)
            .field("unsynced", &self.pending.is_some())
            .finish()
    }
}
