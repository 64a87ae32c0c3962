//! The in-memory state store: an ordered map and the applied log id.
//!
//! Every method either succeeds completely or changes nothing, so a batch is
//! atomic by construction: it is validated before the first change.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use d_engine_core::LogId;
use d_engine_core::storage::{StateStore, StateWrite, StorageError, decode_export, encode_export, rules};

/// An in-memory [`StateStore`] over a `BTreeMap`.
///
/// "Durable when it returns" holds for the life of the process: a simulated crash
/// keeps the store as it is, since every batch was complete when it returned. The
/// end of the process loses everything.
#[derive(Clone, Debug, Default)]
pub struct MemStateStore {
    pairs: BTreeMap<Bytes, Bytes>,
    applied: LogId,
}

impl MemStateStore {
    /// An empty store whose applied id is `LogId::default()`.
    pub fn new() -> MemStateStore {
        MemStateStore::default()
    }
}

impl StateStore for MemStateStore {
    fn write_batch(&mut self, writes: &[StateWrite], applied: LogId) -> Result<(), StorageError> {
        rules::check_applied(applied, self.applied)?;
        for write in writes {
            match write {
                StateWrite::Put { key, value } => {
                    self.pairs.insert(key.clone(), value.clone());
                }
                StateWrite::Delete { key } => {
                    self.pairs.remove(key);
                }
            }
        }
        self.applied = applied;
        Ok(())
    }

    fn applied(&self) -> Result<LogId, StorageError> {
        Ok(self.applied)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(self.pairs.get(key).cloned())
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        // `BTreeMap::range` panics on an inverted range; the contract makes it empty.
        if rules::key_range_is_empty(start, end) {
            return Ok(Vec::new());
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let pairs = self.pairs.range::<[u8], _>((Bound::Included(start), upper));
        Ok(pairs.take(rules::range_limit(limit)).map(|(key, value)| (key.clone(), value.clone())).collect())
    }

    fn export(&self) -> Result<Bytes, StorageError> {
        let pairs: Vec<(Bytes, Bytes)> = self.pairs.iter().map(|(key, value)| (key.clone(), value.clone())).collect();
        Ok(encode_export(self.applied, &pairs))
    }

    fn import(&mut self, data: &[u8]) -> Result<(), StorageError> {
        // Decode fully before touching the content, so that malformed data changes nothing.
        let (applied, pairs) = decode_export(data)?;
        self.pairs = pairs.into_iter().collect();
        self.applied = applied;
        Ok(())
    }
}
