//! The redb state store.
//!
//! # Layout
//! One file, `state.redb`, with two tables: `pairs` maps the state machine's keys to
//! its values, byte for byte, and `meta` holds the format stamp and the applied log id
//! (in the core's checksummed codec). In memory the store keeps the applied id and an
//! overlay of deferred writes not yet in the file: the last write of each key, a delete
//! as a tombstone that hides the key in the file. Every read (`get`, `range`, `export`)
//! merges the overlay over the file, so readers see deferred batches exactly as if they
//! had been written. The file is read through one kept read transaction (`view`), begun at
//! the first read after a commit and dropped at every commit of this store and when a
//! background sync is found done; an export job takes that same view.
//!
//! # Durability
//! `write_batch_deferred` only records its writes and applied id in the overlay: no redb
//! transaction, no page copy, no fsync. `sync` writes the whole overlay and the applied id
//! in one redb transaction committed with `Durability::Immediate` and clears the overlay
//! once that commit succeeded. `write_batch` commits the overlay and then its own batch in
//! one such transaction, so every deferred batch before it becomes durable with it, in
//! order. `import` discards the overlay and replaces everything in one durable transaction.
//!
//! `sync_in_background` moves the overlay aside and has a thread of its own write it out
//! in one such durable transaction; reads merge the overlay over the batches being written
//! out over the file, and every later transaction of this store (a durable batch, a flush,
//! `sync`, an export job, an import) first waits for that thread, so a background commit of
//! older batches can never land after a newer one. Dropping the store waits for it too.
//!
//! An overlay past [`OVERLAY_BYTES_MAX`] is flushed: written to the file, with the applied
//! id, in a `Durability::None` commit, and cleared. That bounds memory without making
//! anything durable: redb makes such a commit durable only with the next durable one.
//!
//! A crash loses every deferred batch since the last durable commit (`sync`, `write_batch`
//! or `import`), flushed or not: the file then holds that commit's data and applied id, and
//! the runtime re-applies the log from there. It never holds part of a batch: the overlay
//! is only ever written whole, after a whole batch, with the applied id of that batch.
//! Dropping the store without a sync discards the overlay; redb writes its last commit
//! when it closes the file cleanly, so a reopen after a drop may also find the batches of
//! the last flush (whole, with their applied id).
//!
//! A write or commit that fails leaves what is durable unknown, so the store then refuses
//! every call until it is reopened (fail closed).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use d_engine_core::LogId;
use d_engine_core::storage::{
    ExportJob, ExportWriter, StateStore, StateWrite, StorageError, codec, decode_export, encode_export, rules,
};
use d_engine_storage_fs::FailClosed;
use d_engine_storage_fs::error::corrupt;
use d_engine_storage_fs::format::StoreKind;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::database::{self, META};
use crate::{directory, error};

pub(crate) const PAIRS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pairs");
const APPLIED_KEY: &str = "applied";

/// The pairs table as one read transaction sees it.
type PairsView = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// The approximate memory of the overlay (keys, values and [`OVERLAY_KEY_OVERHEAD_BYTES`]
/// per key) past which deferred writes are flushed to redb with `Durability::None`.
const OVERLAY_BYTES_MAX: usize = 64 << 20;

/// What the overlay counts per key besides the key and value bytes: the map entry and
/// the two allocations, so that many tiny writes cannot outgrow the bound unseen.
const OVERLAY_KEY_OVERHEAD_BYTES: usize = 64;

/// A [`StateStore`] in a redb database file, `state.redb`, inside a directory of its own.
///
/// Durable batches and imports are each one durable redb transaction; deferred batches
/// stay in memory, visible to every read, until the next `sync` or durable batch writes
/// them all in one transaction.
pub struct RedbStateStore {
    /// The pairs table of a read transaction begun after the last commit this store saw
    /// end, kept for the reads that follow (a read transaction and the table's lookup cost
    /// more than a point read itself); dropped at every commit and when a background sync
    /// is found done. Declared before `db` so that it is dropped first.
    view: Mutex<Option<Arc<PairsView>>>,
    /// Shared with the background sync's thread while one runs.
    db: Arc<Database>,
    path: PathBuf,
    /// The applied id of the last batch, deferred or not.
    applied: LogId,
    overlay: Overlay,
    /// The batches the background sync is writing out (older than `overlay`'s), readable
    /// until that sync is found done.
    flushing: Option<Arc<Overlay>>,
    /// The background sync in flight, if any.
    background: Option<JoinHandle<Result<(), StorageError>>>,
    /// The overlay size that triggers a flush: [`OVERLAY_BYTES_MAX`], smaller in tests.
    overlay_bytes_max: usize,
    /// Whether deferred batches (in the overlay or flushed with `Durability::None`) await
    /// a durable commit not yet begun.
    unsynced: bool,
    failure: FailClosed,
}

/// Deferred writes not yet in the file: the last write of each key, `None` for a delete.
#[derive(Default)]
struct Overlay {
    writes: BTreeMap<Bytes, Option<Bytes>>,
    /// Keys, values and [`OVERLAY_KEY_OVERHEAD_BYTES`] per key.
    bytes: usize,
}

impl Overlay {
    /// Records `writes` in order, over any earlier write of the same keys. Keys and values
    /// are copied, so the overlay never holds on to a caller's larger buffer.
    fn record(&mut self, writes: &[StateWrite]) {
        for write in writes {
            let (key, value) = match write {
                StateWrite::Put { key, value } => (key, Some(Bytes::copy_from_slice(value))),
                StateWrite::Delete { key } => (key, None),
            };
            let value_bytes = value.as_ref().map_or(0, Bytes::len);
            match self.writes.get_mut(&key[..]) {
                Some(slot) => {
                    self.bytes -= slot.as_ref().map_or(0, Bytes::len);
                    *slot = value;
                }
                None => {
                    self.bytes += key.len() + OVERLAY_KEY_OVERHEAD_BYTES;
                    self.writes.insert(Bytes::copy_from_slice(key), value);
                }
            }
            self.bytes += value_bytes;
        }
    }

    fn clear(&mut self) {
        self.writes.clear();
        self.bytes = 0;
    }
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
        Ok(RedbStateStore {
            view: Mutex::new(None),
            db: Arc::new(db),
            path,
            applied,
            overlay: Overlay::default(),
            flushing: None,
            background: None,
            overlay_bytes_max: OVERLAY_BYTES_MAX,
            unsynced: false,
            failure: FailClosed::default(),
        })
    }

    /// The database file, `<dir>/state.redb`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn usable(&self) -> Result<(), StorageError> {
        self.failure.check(&self.path)
    }

    /// Runs `write` in a new write transaction, records `applied` and commits with
    /// `durability`, after the background sync in flight (if any) has ended. Changes
    /// nothing in memory; a failure poisons the store.
    fn transact(
        &mut self,
        applied: LogId,
        durability: Durability,
        write: impl FnOnce(&WriteTransaction, &Path, &Overlay) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.wait_for_background()?;
        let result = transact(&self.db, &self.path, applied, durability, |txn| write(txn, &self.path, &self.overlay));
        self.forget_view();
        result.inspect_err(|error| self.failure.fail(error))
    }

    /// Drops the kept read view: the file changed, or the batches only it lacked are no
    /// longer read from memory.
    fn forget_view(&mut self) {
        *self.view.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// Waits for the background sync in flight, if any: a failure poisons the store.
    fn wait_for_background(&mut self) -> Result<(), StorageError> {
        let Some(background) = self.background.take() else { return Ok(()) };
        let result = background
            .join()
            .unwrap_or_else(|_| Err(StorageError::Misuse("the background sync's thread panicked".into())));
        self.flushing = None;
        self.forget_view();
        result.inspect_err(|error| self.failure.fail(error))
    }

    /// Writes the overlay and then `writes` with `applied` in one transaction committed
    /// with `durability`, and clears the overlay once the commit succeeded.
    fn commit_overlay_then(
        &mut self,
        writes: &[StateWrite],
        applied: LogId,
        durability: Durability,
    ) -> Result<(), StorageError> {
        self.transact(applied, durability, |txn, path, overlay| write_pairs(txn, path, overlay, writes))?;
        self.overlay.clear();
        self.applied = applied;
        self.unsynced = matches!(durability, Durability::None);
        Ok(())
    }

    /// The deferred writes within `bounds`, in key order, each key's newest: the overlay's
    /// over those of the batches the background sync is writing out.
    fn deferred<'a>(&'a self, bounds: (Bound<&[u8]>, Bound<&[u8]>)) -> Vec<(&'a Bytes, &'a Option<Bytes>)> {
        let mut newer = self.overlay.writes.range::<[u8], _>(bounds).peekable();
        let Some(flushing) = &self.flushing else { return newer.collect() };
        let mut older = flushing.writes.range::<[u8], _>(bounds).peekable();
        let mut merged = Vec::new();
        loop {
            let order = match (newer.peek(), older.peek()) {
                (None, None) => return merged,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((newer_key, _)), Some((older_key, _))) => newer_key.cmp(older_key),
            };
            if order.is_ge() {
                let older_write = older.next().expect("the peeked older write");
                if order.is_gt() {
                    merged.push(older_write);
                    continue;
                }
                // The same key in both: the newer write replaces the older.
            }
            merged.push(newer.next().expect("the peeked newer write"));
        }
    }

    /// The kept read view, begun now if there is none: the file as of its last commit.
    fn view(&self) -> Result<Arc<PairsView>, StorageError> {
        let mut view = self.view.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(table) = &*view {
            return Ok(Arc::clone(table));
        }
        let txn = self.db.begin_read().map_err(|error| error::database(&self.path, "begin read", error))?;
        let table = txn.open_table(PAIRS).map_err(|error| error::database(&self.path, "open pairs table", error))?;
        Ok(Arc::clone(view.insert(Arc::new(table))))
    }

    /// Runs `read` over the pairs table as the kept read view sees it.
    fn read<R>(&self, read: impl FnOnce(&PairsView) -> Result<R, redb::StorageError>) -> Result<R, StorageError> {
        self.usable()?;
        read(&*self.view()?).map_err(|error| error::database(&self.path, "read", error))
    }
}

/// Runs `write` in a new write transaction of `db`, records `applied` and commits with
/// `durability`.
fn transact(
    db: &Database,
    path: &Path,
    applied: LogId,
    durability: Durability,
    write: impl FnOnce(&WriteTransaction) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let mut txn = db.begin_write().map_err(|error| error::database(path, "begin write", error))?;
    txn.set_durability(durability).map_err(|error| error::database(path, "set durability", error))?;
    write(&txn)?;
    {
        let mut meta = txn.open_table(META).map_err(|error| error::database(path, "write applied id", error))?;
        meta.insert(APPLIED_KEY, &codec::encode_log_id(applied)[..])
            .map_err(|error| error::database(path, "write applied id", error))?;
    }
    txn.commit().map_err(|error| error::database(path, "commit", error))
}

/// Writes `overlay` and then `writes` into the pairs table.
fn write_pairs(
    txn: &WriteTransaction,
    path: &Path,
    overlay: &Overlay,
    writes: &[StateWrite],
) -> Result<(), StorageError> {
    let mut pairs = txn.open_table(PAIRS).map_err(|error| error::database(path, "write batch", error))?;
    let overlay = overlay.writes.iter().map(|(key, value)| (&key[..], value.as_deref()));
    let batch = writes.iter().map(|write| match write {
        StateWrite::Put { key, value } => (&key[..], Some(&value[..])),
        StateWrite::Delete { key } => (&key[..], None),
    });
    for (key, value) in overlay.chain(batch) {
        match value {
            Some(value) => pairs.insert(key, value).map(drop),
            None => pairs.remove(key).map(drop),
        }
        .map_err(|error| error::database(path, "write a pair", error))?;
    }
    Ok(())
}

fn pair(key: &[u8], value: &[u8]) -> (Bytes, Bytes) {
    (Bytes::copy_from_slice(key), Bytes::copy_from_slice(value))
}

/// Up to `limit` pairs of `stored` (pairs of the file, in key order) with `overlay` (writes
/// in key order) merged over them: an overlay value replaces the stored one, an overlay
/// delete hides it.
fn merge<'a, E>(
    mut stored: impl Iterator<Item = Result<(Bytes, Bytes), E>>,
    overlay: impl Iterator<Item = (&'a Bytes, &'a Option<Bytes>)>,
    limit: usize,
) -> Result<Vec<(Bytes, Bytes)>, E> {
    let mut found = Vec::new();
    let mut next_stored = stored.next().transpose()?;
    let mut overlay = overlay.peekable();
    while found.len() < limit {
        let order = match (&next_stored, overlay.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((stored_key, _)), Some((overlay_key, _))) => stored_key.cmp(overlay_key),
        };
        if order.is_le() {
            let stored_pair = next_stored.take().expect("a stored pair to take");
            next_stored = stored.next().transpose()?;
            if order.is_lt() {
                found.push(stored_pair);
                continue;
            }
            // Equal keys: the overlay's write replaces the stored pair.
        }
        let (key, value) = overlay.next().expect("the peeked overlay write");
        if let Some(value) = value {
            found.push((key.clone(), value.clone()));
        }
    }
    Ok(found)
}

impl StateStore for RedbStateStore {
    fn write_batch(&mut self, writes: &[StateWrite], applied: LogId) -> Result<(), StorageError> {
        self.usable()?;
        rules::check_applied(applied, self.applied)?;
        self.commit_overlay_then(writes, applied, Durability::Immediate)
    }

    fn write_batch_deferred(&mut self, writes: &[StateWrite], applied: LogId) -> Result<(), StorageError> {
        self.usable()?;
        rules::check_applied(applied, self.applied)?;
        self.overlay.record(writes);
        self.applied = applied;
        self.unsynced = true;
        if self.overlay.bytes > self.overlay_bytes_max {
            // Bounds memory only: a `Durability::None` commit is as volatile as the overlay.
            self.commit_overlay_then(&[], applied, Durability::None)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.usable()?;
        self.wait_for_background()?;
        if !self.unsynced {
            return Ok(());
        }
        // Also makes every earlier `Durability::None` flush durable.
        self.commit_overlay_then(&[], self.applied, Durability::Immediate)
    }

    /// Moves the overlay aside (still read) and starts a thread that writes it out in one
    /// durable transaction, as `sync` would; returns at once. While the previous one is
    /// still writing, starts nothing: the batches since wait for the next call.
    fn sync_in_background(&mut self) -> Result<(), StorageError> {
        self.usable()?;
        if self.background.as_ref().is_some_and(|background| !background.is_finished()) {
            return Ok(());
        }
        self.wait_for_background()?;
        if !self.unsynced {
            return Ok(());
        }
        let overlay = Arc::new(std::mem::take(&mut self.overlay));
        let (db, path, applied, flushing) =
            (Arc::clone(&self.db), self.path.clone(), self.applied, Arc::clone(&overlay));
        let spawned = std::thread::Builder::new().name("d-engine-state-sync".into()).spawn(move || {
            // Also makes every earlier `Durability::None` flush durable.
            transact(&db, &path, applied, Durability::Immediate, |txn| write_pairs(txn, &path, &flushing, &[]))
        });
        match spawned {
            Ok(background) => {
                self.background = Some(background);
                self.flushing = Some(overlay);
                self.unsynced = false;
                Ok(())
            }
            Err(error) => {
                // The thread was never started: its copy of the overlay is gone with it.
                self.overlay = Arc::into_inner(overlay).expect("the unstarted thread dropped its overlay");
                Err(d_engine_storage_fs::error::io(&self.path, "start the background sync", error))
            }
        }
    }

    fn applied(&self) -> Result<LogId, StorageError> {
        self.usable()?;
        Ok(self.applied)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        self.usable()?;
        if let Some(value) = self.overlay.writes.get(key) {
            return Ok(value.clone());
        }
        if let Some(value) = self.flushing.as_ref().and_then(|flushing| flushing.writes.get(key)) {
            return Ok(value.clone());
        }
        self.read(|pairs| Ok(pairs.get(key)?.map(|value| Bytes::copy_from_slice(value.value()))))
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        // `BTreeMap::range` panics on an inverted range; the contract makes it empty.
        if rules::key_range_is_empty(start, end) {
            return Ok(Vec::new());
        }
        let bounds = (Bound::Included(start), end.map_or(Bound::Unbounded, Bound::Excluded));
        let overlay = self.deferred(bounds).into_iter();
        self.read(|pairs| {
            let stored =
                pairs.range::<&[u8]>(bounds)?.map(|item| item.map(|(key, value)| pair(key.value(), value.value())));
            merge(stored, overlay, rules::range_limit(limit))
        })
    }

    fn export(&self) -> Result<Bytes, StorageError> {
        let pairs = self.read(|pairs| {
            let stored = pairs.iter()?.map(|item| item.map(|(key, value)| pair(key.value(), value.value())));
            merge(stored, self.deferred((Bound::Unbounded, Bound::Unbounded)).into_iter(), usize::MAX)
        })?;
        Ok(encode_export(self.applied, &pairs))
    }

    /// Writes the overlay out (`Durability::None`: still durable only at the next `sync`)
    /// and returns a job that exports from the kept read view, which is then the whole
    /// state: a consistent view that later writes do not change (they drop the store's
    /// hold on it, not the job's), read on whatever thread runs the job.
    fn export_job(&mut self) -> Result<ExportJob, StorageError> {
        self.usable()?;
        // The read transaction below must see what a background sync is writing out.
        self.wait_for_background()?;
        if !self.overlay.writes.is_empty() {
            self.commit_overlay_then(&[], self.applied, Durability::None)?;
        }
        // No background sync and no overlay: the file as of its last commit is the state.
        let table = self.view()?;
        let (path, applied) = (self.path.clone(), self.applied);
        Ok(Box::new(move || {
            let export = |error| error::database(&path, "export", error);
            let mut writer = ExportWriter::new(applied);
            for item in table.iter().map_err(export)? {
                let (key, value) = item.map_err(export)?;
                writer.push(key.value(), value.value());
            }
            Ok(writer.finish())
        }))
    }

    fn import(&mut self, data: &[u8]) -> Result<(), StorageError> {
        self.usable()?;
        // Decode fully first: malformed data must change nothing. (The import's transaction
        // waits for a background sync; the overlay it writes out is replaced right after.)
        let (applied, pairs) = decode_export(data)?;
        // The import replaces everything, the overlay included: it is not written.
        self.transact(applied, Durability::Immediate, |txn, path, _| {
            txn.delete_table(PAIRS).map_err(|error| error::database(path, "clear pairs", error))?;
            let mut table = txn.open_table(PAIRS).map_err(|error| error::database(path, "import", error))?;
            for (key, value) in &pairs {
                table.insert(&key[..], &value[..]).map_err(|error| error::database(path, "import", error))?;
            }
            Ok(())
        })?;
        self.overlay.clear();
        self.applied = applied;
        self.unsynced = false;
        Ok(())
    }
}

impl Drop for RedbStateStore {
    /// Waits for the background sync in flight: it holds the database, which must be closed
    /// before the file can be opened again.
    fn drop(&mut self) {
        self.forget_view();
        if let Some(background) = self.background.take() {
            let _ = background.join();
        }
    }
}

impl std::fmt::Debug for RedbStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStateStore")
            .field("path", &self.path)
            .field("applied", &self.applied)
            .field("overlay_keys", &self.overlay.writes.len())
            .field("unsynced", &self.unsynced)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use d_engine_memory::MemStateStore;
    use proptest::prelude::*;

    use super::*;

    fn put(key: &[u8], value: &[u8]) -> StateWrite {
        StateWrite::Put { key: Bytes::copy_from_slice(key), value: Bytes::copy_from_slice(value) }
    }

    fn delete(key: &[u8]) -> StateWrite {
        StateWrite::Delete { key: Bytes::copy_from_slice(key) }
    }

    fn pairs(expected: &[(&[u8], &[u8])]) -> Vec<(Bytes, Bytes)> {
        expected.iter().map(|(key, value)| pair(key, value)).collect()
    }

    fn everything(store: &RedbStateStore) -> Vec<(Bytes, Bytes)> {
        store.range(b"", None, 0).unwrap()
    }

    /// The file holds a..e; the overlay deletes b and d, overwrites c, adds bb and f.
    fn store_with_overlay(dir: &Path) -> RedbStateStore {
        let mut store = RedbStateStore::open(dir).unwrap();
        let stored = [put(b"a", b"1"), put(b"b", b"2"), put(b"c", b"3"), put(b"d", b"4"), put(b"e", b"5")];
        store.write_batch(&stored, LogId::new(1, 1)).unwrap();
        store.write_batch_deferred(&[delete(b"b"), put(b"c", b"30"), put(b"bb", b"new")], LogId::new(1, 2)).unwrap();
        store.write_batch_deferred(&[delete(b"d"), put(b"f", b"6")], LogId::new(1, 3)).unwrap();
        store
    }

    #[test]
    fn a_range_merges_overlay_deletes_overwrites_and_new_keys_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_overlay(dir.path());

        assert_eq!(
            store.range(b"a", Some(b"f"), 0).unwrap(),
            pairs(&[(b"a", b"1"), (b"bb", b"new"), (b"c", b"30"), (b"e", b"5")])
        );
        assert_eq!(
            store.range(b"a", None, 3).unwrap(),
            pairs(&[(b"a", b"1"), (b"bb", b"new"), (b"c", b"30")]),
            "the limit cuts at an overlay value, before the file's e"
        );
        assert_eq!(store.range(b"b", Some(b"e"), 1).unwrap(), pairs(&[(b"bb", b"new")]), "deleted b is skipped");
        assert_eq!(store.range(b"d", None, 0).unwrap(), pairs(&[(b"e", b"5"), (b"f", b"6")]));
        assert!(store.range(b"d", Some(b"e"), 0).unwrap().is_empty(), "only a deleted key in range");
    }

    #[test]
    fn batches_being_synced_in_the_background_stay_readable_under_newer_ones_and_never_win_over_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_overlay(dir.path());
        store.sync_in_background().unwrap();
        // Newer deferred writes over the layer being written out: c again, bb deleted, b back.
        store.write_batch_deferred(&[put(b"c", b"300"), delete(b"bb"), put(b"b", b"20")], LogId::new(1, 4)).unwrap();
        let expected = pairs(&[(b"a", b"1"), (b"b", b"20"), (b"c", b"300"), (b"e", b"5"), (b"f", b"6")]);
        assert_eq!(everything(&store), expected, "a range merges both layers over the file");
        assert_eq!(store.get(b"f").unwrap(), Some(Bytes::from_static(b"6")), "from the layer being written out");
        assert_eq!(store.get(b"bb").unwrap(), None, "deleted over the layer being written out");
        let (applied, exported) = decode_export(&store.export().unwrap()).unwrap();
        assert_eq!((applied, exported), (LogId::new(1, 4), expected.clone()));

        // A durable batch waits for the background commit, so the older value of c cannot
        // land after it.
        store.write_batch(&[put(b"c", b"3000")], LogId::new(1, 5)).unwrap();
        assert!(store.background.is_none() && store.flushing.is_none(), "the durable batch waited for it");
        drop(store);
        let reopened = RedbStateStore::open(dir.path()).unwrap();
        assert_eq!(reopened.applied().unwrap(), LogId::new(1, 5));
        let mut durable = expected;
        durable[2] = pair(b"c", b"3000");
        assert_eq!(everything(&reopened), durable);
    }

    #[test]
    fn an_export_job_waits_for_the_background_sync_so_its_view_holds_those_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_overlay(dir.path());
        let expected = store.export().unwrap();
        store.sync_in_background().unwrap();
        let job = store.export_job().unwrap();
        assert!(store.background.is_none() && store.flushing.is_none(), "the job's read began after the commit");
        assert_eq!(job().unwrap(), expected);
    }

    #[test]
    fn a_background_sync_is_durable_once_the_store_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_overlay(dir.path());
        store.sync_in_background().unwrap();
        drop(store);
        let reopened = RedbStateStore::open(dir.path()).unwrap();
        assert_eq!(reopened.applied().unwrap(), LogId::new(1, 3));
        assert_eq!(
            everything(&reopened),
            pairs(&[(b"a", b"1"), (b"bb", b"new"), (b"c", b"30"), (b"e", b"5"), (b"f", b"6")])
        );
    }

    #[test]
    fn get_of_a_key_deleted_in_the_overlay_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_overlay(dir.path());

        assert_eq!(store.get(b"b").unwrap(), None, "deleted in the overlay, still in the file");
        assert_eq!(store.get(b"c").unwrap(), Some(Bytes::from_static(b"30")));
        assert_eq!(store.get(b"e").unwrap(), Some(Bytes::from_static(b"5")), "only in the file");
    }

    #[test]
    fn an_export_job_sees_the_state_when_it_was_taken_whatever_is_written_before_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_overlay(dir.path());
        let expected = store.export().unwrap();
        let job = store.export_job().unwrap();
        store.write_batch_deferred(&[put(b"late", b"x"), delete(b"a")], LogId::new(1, 4)).unwrap();
        store.write_batch(&[put(b"later", b"y")], LogId::new(1, 5)).unwrap();
        let exported = std::thread::spawn(job).join().unwrap().unwrap();
        assert_eq!(exported, expected, "the job's view is the state at LogId 1/3");
        assert_eq!(store.get(b"late").unwrap(), Some(Bytes::from_static(b"x")), "the store went on");
        drop(store);
        let reopened = RedbStateStore::open(dir.path()).unwrap();
        assert_eq!(reopened.applied().unwrap(), LogId::new(1, 5), "the durable batch made everything before durable");
    }

    #[test]
    fn export_after_deferred_batches_equals_export_after_sync() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_overlay(dir.path());
        let deferred = store.export().unwrap();

        store.sync().unwrap();

        assert_eq!(store.export().unwrap(), deferred);
        assert_eq!(decode_export(&deferred).unwrap().0, LogId::new(1, 3));
    }

    #[test]
    fn a_reopen_without_sync_shows_the_last_synced_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RedbStateStore::open(dir.path()).unwrap();
        store.write_batch_deferred(&[put(b"a", b"1"), put(b"b", b"2")], LogId::new(1, 1)).unwrap();
        store.sync().unwrap();
        store.write_batch_deferred(&[delete(b"a"), put(b"b", b"20"), put(b"c", b"3")], LogId::new(1, 2)).unwrap();
        drop(store);

        let store = RedbStateStore::open(dir.path()).unwrap();

        assert_eq!(store.applied().unwrap(), LogId::new(1, 1));
        assert_eq!(everything(&store), pairs(&[(b"a", b"1"), (b"b", b"2")]));
    }

    #[test]
    fn a_durable_batch_after_deferred_batches_makes_both_durable_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RedbStateStore::open(dir.path()).unwrap();
        store.write_batch_deferred(&[put(b"a", b"deferred"), put(b"b", b"2")], LogId::new(1, 1)).unwrap();
        store.write_batch(&[put(b"a", b"durable"), put(b"c", b"3")], LogId::new(1, 2)).unwrap();
        drop(store);

        let store = RedbStateStore::open(dir.path()).unwrap();

        assert_eq!(store.applied().unwrap(), LogId::new(1, 2));
        assert_eq!(everything(&store), pairs(&[(b"a", b"durable"), (b"b", b"2"), (b"c", b"3")]));
    }

    #[test]
    fn an_import_discards_the_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_overlay(dir.path());

        store.import(&encode_export(LogId::new(1, 1), &pairs(&[(b"z", b"imported")]))).unwrap();
        store.sync().unwrap();
        drop(store);

        let store = RedbStateStore::open(dir.path()).unwrap();
        assert_eq!(store.applied().unwrap(), LogId::new(1, 1));
        assert_eq!(everything(&store), pairs(&[(b"z", b"imported")]));
    }

    #[test]
    fn an_overlay_past_its_bound_is_flushed_and_stays_readable_until_synced() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RedbStateStore::open(dir.path()).unwrap();
        store.overlay_bytes_max = 200;
        store.write_batch_deferred(&[put(b"a", &[1; 100])], LogId::new(1, 1)).unwrap();
        assert_eq!(store.overlay.writes.len(), 1, "under the bound");

        store.write_batch_deferred(&[put(b"b", &[2; 100]), delete(b"a")], LogId::new(1, 2)).unwrap();
        assert!(store.overlay.writes.is_empty(), "past the bound, flushed");
        store.write_batch_deferred(&[put(b"c", b"3")], LogId::new(1, 3)).unwrap();

        assert_eq!(everything(&store), pairs(&[(b"b", &[2; 100]), (b"c", b"3")]));
        store.sync().unwrap();
        drop(store);
        let store = RedbStateStore::open(dir.path()).unwrap();
        assert_eq!(store.applied().unwrap(), LogId::new(1, 3));
        assert_eq!(everything(&store), pairs(&[(b"b", &[2; 100]), (b"c", b"3")]));
    }

    #[test]
    fn the_overlay_counts_each_key_once_and_its_last_value() {
        let mut overlay = Overlay::default();
        overlay.record(&[put(b"key", b"12345"), put(b"key", b"1"), delete(b"gone")]);
        assert_eq!(overlay.bytes, 3 + 1 + 4 + 2 * OVERLAY_KEY_OVERHEAD_BYTES);
        overlay.record(&[delete(b"key")]);
        assert_eq!(overlay.bytes, 3 + 4 + 2 * OVERLAY_KEY_OVERHEAD_BYTES);
    }

    /// One step of the model test.
    #[derive(Clone, Debug)]
    enum Step {
        Deferred(Vec<StateWrite>),
        Durable(Vec<StateWrite>),
        Sync,
        /// `sync_in_background`, the batches read meanwhile from the layer moved aside.
        BackgroundSync,
        Get(Vec<u8>),
        Range {
            start: Vec<u8>,
            end: Option<Vec<u8>>,
            limit: usize,
        },
        Export,
        /// Drop without a sync and open again: back to the last durable state.
        Reopen,
    }

    /// Keys from a small alphabet, so that writes, deletes and reads meet.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'c']), 0..3)
    }

    fn write() -> impl Strategy<Value = StateWrite> {
        prop_oneof![
            (key(), prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(key, value)| put(&key, &value)),
            key().prop_map(|key| delete(&key)),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        let writes = || prop::collection::vec(write(), 0..5);
        prop_oneof![
            4 => writes().prop_map(Step::Deferred),
            1 => writes().prop_map(Step::Durable),
            1 => Just(Step::Sync),
            1 => Just(Step::BackgroundSync),
            2 => key().prop_map(Step::Get),
            2 => (key(), prop::option::of(key()), 0..4_usize).prop_map(|(start, end, limit)| Step::Range { start, end, limit }),
            1 => Just(Step::Export),
            1 => Just(Step::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Against the memory store, whose batches are all durable at once: every read
        /// agrees, and a reopen without a sync comes back to the state of the last durable
        /// commit, or of the last flush, which redb keeps when it closes the file cleanly.
        /// A small overlay bound makes some deferred batches go through a flush.
        #[test]
        fn the_store_reads_like_a_memory_store_and_reopens_at_the_last_durable_commit(
            steps in prop::collection::vec(step(), 1..40),
            overlay_bytes_max in prop::sample::select(vec![OVERLAY_BYTES_MAX, 100]),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let open = || {
                let mut store = RedbStateStore::open(dir.path()).unwrap();
                store.overlay_bytes_max = overlay_bytes_max;
                store
            };
            let mut store = open();
            let mut model = MemStateStore::new();
            let mut durable = model.export().unwrap();
            let mut flushed = durable.clone();
            for (index, step) in (1..).zip(steps) {
                let applied = LogId::new(1, index);
                match step {
                    Step::Deferred(writes) => {
                        store.write_batch_deferred(&writes, applied).unwrap();
                        model.write_batch(&writes, applied).unwrap();
                        // Every recorded write counts, so an empty overlay after one was a flush.
                        if !writes.is_empty() && store.overlay.writes.is_empty() {
                            flushed = model.export().unwrap();
                        }
                    }
                    Step::Durable(writes) => {
                        store.write_batch(&writes, applied).unwrap();
                        model.write_batch(&writes, applied).unwrap();
                        durable = model.export().unwrap();
                        flushed = durable.clone();
                    }
                    Step::Sync => {
                        store.sync().unwrap();
                        durable = model.export().unwrap();
                        flushed = durable.clone();
                    }
                    Step::BackgroundSync => {
                        store.sync_in_background().unwrap();
                        // Started (or nothing to start): a reopen, which waits for it, finds
                        // this state. Still writing the previous one: nothing changes.
                        if !store.unsynced {
                            durable = model.export().unwrap();
                            flushed = durable.clone();
                        }
                    }
                    Step::Get(key) => prop_assert_eq!(store.get(&key).unwrap(), model.get(&key).unwrap()),
                    Step::Range { start, end, limit } => prop_assert_eq!(
                        store.range(&start, end.as_deref(), limit).unwrap(),
                        model.range(&start, end.as_deref(), limit).unwrap()
                    ),
                    Step::Export => prop_assert_eq!(store.export().unwrap(), model.export().unwrap()),
                    Step::Reopen => {
                        drop(store);
                        store = open();
                        let reopened = store.export().unwrap();
                        prop_assert!(reopened == durable || reopened == flushed, "reopened at {:?}", reopened);
                        durable = reopened.clone();
                        flushed = reopened;
                        model = MemStateStore::new();
                        model.import(&durable).unwrap();
                    }
                }
                prop_assert_eq!(store.applied().unwrap(), model.applied().unwrap());
            }
        }
    }
}
