//! The sled log store.
//!
//! # Layout
//! One sled database in `log.sled/`, one tree: key `e` + the index as 8 big-endian bytes
//! holds the entry in the core's checksummed codec (big-endian, so sled's key order is
//! log order); `mformat`, `mhard_state` and `mlast_purged` hold the format stamp, the
//! hard state and the last purged log id (codec records too).
//!
//! # Durability
//! Writes are kept in memory ([`Pending`]) and reads see them at once. `sync` turns all
//! of them into one sled `Batch` (removals for truncated and purged entries, then the
//! new entries and records), applies it — sled recovers a batch atomically — and calls
//! `flush`, which writes sled's buffers and fsyncs. So every write since the last sync
//! becomes durable together, or none does. Dropping the store discards unsynced writes.
//!
//! A failed sync leaves what is durable unknown, so the store then refuses every call
//! until it is reopened (fail closed).

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use d_engine_core::storage::{LogStore, StorageError, codec, rules};
use d_engine_core::{Entry, HardState, LogId, LogIndex, Term};
use d_engine_storage_fs::FailClosed;
use d_engine_storage_fs::error::corrupt;
use d_engine_storage_fs::format::StoreKind;
use d_engine_storage_fs::records::{check_first_entry, decode_entry_at, locate};

use crate::database::{self, META_PREFIX};
use crate::pending::Pending;
use crate::{directory, error};

const ENTRY_PREFIX: u8 = b'e';
const HARD_STATE_KEY: &[u8] = b"mhard_state";
const LAST_PURGED_KEY: &[u8] = b"mlast_purged";

fn entry_key(index: u64) -> [u8; 9] {
    let mut key = [ENTRY_PREFIX; 9];
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

/// A [`LogStore`] in a sled database, `log.sled/`, inside a directory of its own.
///
/// Reads see every write at once; writes become durable together at
/// [`sync`](LogStore::sync): one atomic sled batch and one `flush`. Dropping the store
/// without a sync discards unsynced writes.
pub struct SledLogStore {
    db: sled::Db,
    path: PathBuf,
    hard_state: HardState,
    last_purged: LogId,
    last_log_id: LogId,
    pending: Pending,
    failure: FailClosed,
}

impl SledLogStore {
    /// Opens the log store in directory `dir`, creating the directory and an empty store
    /// if there is none.
    ///
    /// Errors, each naming the path: `Io` when `dir` is a file or cannot be created or
    /// read, or the database is open in another process; `Corrupt` when sled finds its
    /// files damaged, or the store belongs to another adapter or kind, has a format
    /// version this build does not know, or its records fail their checksums.
    pub fn open(dir: impl AsRef<Path>) -> Result<SledLogStore, StorageError> {
        let location = directory::prepare(dir.as_ref(), StoreKind::Log)?;
        let path = location.path;
        let db = database::open(&path)?;
        database::stamp_or_check(&db, &path, StoreKind::Log, location.existed)?;
        let record = |key: &[u8]| db.get(key).map_err(|error| error::database(&path, "read meta", error));
        let hard_state = match record(HARD_STATE_KEY)? {
            Some(bytes) => codec::decode_hard_state(&bytes).map_err(|error| locate(&path, "hard state", error))?,
            None => HardState::default(),
        };
        let last_purged = match record(LAST_PURGED_KEY)? {
            Some(bytes) => codec::decode_log_id(&bytes).map_err(|error| locate(&path, "last purged id", error))?,
            None => LogId::default(),
        };
        let last_log_id = log_bounds(&db, &path, last_purged)?;
        Ok(SledLogStore {
            db,
            path,
            hard_state,
            last_purged,
            last_log_id,
            pending: Pending::default(),
            failure: FailClosed::default(),
        })
    }

    /// The sled database directory, `<dir>/log.sled`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn usable(&self) -> Result<(), StorageError> {
        self.failure.check(&self.path)
    }

    /// Durable entries `start..=end`, read from the tree.
    fn read_durable(&self, start: u64, end: u64, into: &mut Vec<Entry>) -> Result<(), StorageError> {
        let first = into.len();
        for item in self.db.range(entry_key(start)..=entry_key(end)) {
            let (key, value) = item.map_err(|error| error::database(&self.path, "read entries", error))?;
            let expected = start + (into.len() - first) as u64;
            if key[..] != entry_key(expected) {
                return Err(corrupt(&self.path, format!("entry {expected} is missing")));
            }
            into.push(decode_entry_at(&self.path, expected, &value)?);
        }
        if (into.len() - first) as u64 != end - start + 1 {
            return Err(corrupt(&self.path, format!("entry {} is missing", start + (into.len() - first) as u64)));
        }
        Ok(())
    }

    /// Entries `start..=end`, all of which the log holds: durable ones from the tree,
    /// unsynced ones from memory.
    fn read(&self, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        let mut entries = Vec::with_capacity((end - start + 1).min(4096) as usize);
        let durable_end = self.pending.first_index().map_or(end, |first| end.min(first - 1));
        if start <= durable_end {
            self.read_durable(start, durable_end, &mut entries)?;
        }
        if end > durable_end {
            entries
                .extend(self.pending.entries.range(start.max(durable_end + 1)..=end).map(|(_, entry)| entry.clone()));
        }
        if entries.len() as u64 != end - start + 1 {
            return Err(corrupt(&self.path, format!("entries {start}..={end} are not all held")));
        }
        Ok(entries)
    }

    /// One batch with every change since the last sync.
    fn batch(&self) -> Result<sled::Batch, StorageError> {
        let mut batch = sled::Batch::default();
        let scan_error = |error| error::database(&self.path, "prepare sync", error);
        if self.pending.hidden_from != u64::MAX {
            for key in self.db.range(entry_key(self.pending.hidden_from)..=entry_key(u64::MAX)).keys() {
                batch.remove(key.map_err(scan_error)?);
            }
        }
        if self.pending.purged {
            for key in self.db.range(entry_key(0)..=entry_key(self.last_purged.index.0)).keys() {
                batch.remove(key.map_err(scan_error)?);
            }
            batch.insert(LAST_PURGED_KEY, &codec::encode_log_id(self.last_purged)[..]);
        }
        // Inserts after removals: a batch keeps the last change of each key.
        for (index, entry) in &self.pending.entries {
            batch.insert(&entry_key(*index)[..], &codec::encode_entry(entry)[..]);
        }
        if self.pending.hard_state {
            batch.insert(HARD_STATE_KEY, &codec::encode_hard_state(&self.hard_state)[..]);
        }
        Ok(batch)
    }
}

/// Reads the first and last durable entries and returns the last log id; the first
/// must follow the purged prefix and both must decode.
fn log_bounds(db: &sled::Db, path: &Path, last_purged: LogId) -> Result<LogId, StorageError> {
    let mut entries = db.scan_prefix([ENTRY_PREFIX]);
    let at = |error| error::database(path, "read log bounds", error);
    let Some(first) = entries.next() else {
        return Ok(last_purged);
    };
    let (key, value) = first.map_err(at)?;
    let first = decode_entry_at(path, key_index(path, &key)?, &value)?;
    check_first_entry(path, first.log_id, last_purged)?;
    match entries.next_back() {
        None => Ok(first.log_id),
        Some(last) => {
            let (key, value) = last.map_err(at)?;
            Ok(decode_entry_at(path, key_index(path, &key)?, &value)?.log_id)
        }
    }
}

fn key_index(path: &Path, key: &[u8]) -> Result<u64, StorageError> {
    match <[u8; 8]>::try_from(&key[1..]) {
        Ok(bytes) => Ok(u64::from_be_bytes(bytes)),
        Err(_) => Err(corrupt(path, format!("malformed entry key {key:?}"))),
    }
}

impl LogStore for SledLogStore {
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
        self.hard_state = *hard_state;
        self.pending.hard_state = true;
        Ok(())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.usable()?;
        let Some(last) = entries.last() else {
            return Ok(());
        };
        rules::check_append(self.last_log_id, entries)?;
        self.pending.append(entries);
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
        self.pending.truncate(from);
        self.last_log_id = new_last;
        Ok(())
    }

    fn purge_prefix(&mut self, upto: LogId) -> Result<(), StorageError> {
        self.usable()?;
        if !rules::purge_advances(upto, self.last_purged) {
            return Ok(());
        }
        self.pending.purge(upto.index);
        self.last_purged = upto;
        self.last_log_id = rules::last_log_id_after_purge(upto, self.last_log_id);
        Ok(())
    }

    fn size_bytes(&self) -> Option<u64> {
        self.db.size_on_disk().ok()
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.usable()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.batch().and_then(|batch| {
            self.db.apply_batch(batch).map_err(|error| error::database(&self.path, "apply batch", error))?;
            self.db.flush().map_err(|error| error::database(&self.path, "flush", error))
        });
        match result {
            Ok(_) => {
                self.pending = Pending::default();
                Ok(())
            }
            Err(error) => {
                self.failure.fail(&error);
                Err(error)
            }
        }
    }
}

impl std::fmt::Debug for SledLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledLogStore")
            .field("path", &self.path)
            .field("hard_state", &self.hard_state)
            .field("last_purged", &self.last_purged)
            .field("last_log_id", &self.last_log_id)
            .field("unsynced", &!self.pending.is_empty())
            .finish()
    }
}

const _: () = assert!(META_PREFIX != ENTRY_PREFIX);
