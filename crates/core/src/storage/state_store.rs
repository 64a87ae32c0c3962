use bytes::Bytes;

use super::StorageError;
use super::codec::{bulk_checksum, checksum};
use crate::types::LogId;

/// One change in a [`StateStore::write_batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateWrite {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
    },
    /// Remove `key`; removing an absent key is not an error.
    Delete {
        /// The key.
        key: Bytes,
    },
}

/// A durable ordered key-value backend for state machines.
///
/// Adapters implement it; they know nothing of any application. A state machine
/// writes the effects of applied entries together with the applied log id in one
/// atomic batch, so that data and applied index can never disagree after a crash.
pub trait StateStore {
    /// Applies `writes` in order and records `applied`, atomically. Durable when it
    /// returns `Ok`: after a crash either the whole batch and `applied` are present or
    /// none of it is. `applied` must not be below `applied()`, else `Misuse`.
    fn write_batch(&mut self, writes: &[StateWrite], applied: LogId) -> Result<(), StorageError>;

    /// Like [`write_batch`](Self::write_batch), but durable only at the next
    /// [`sync`](Self::sync) or durable batch. Readers see it at once. After a crash the store
    /// holds the state of some earlier batch, data and applied id together — never part of a
    /// batch — and the runtime re-applies the log from that applied id. A state machine uses
    /// it to keep an fsync off every apply; the log still holds the entries it covers.
    /// The default is the durable `write_batch`.
    fn write_batch_deferred(&mut self, writes: &[StateWrite], applied: LogId) -> Result<(), StorageError> {
        self.write_batch(writes, applied)
    }

    /// Makes every deferred batch durable. The default does nothing: a store whose batches
    /// are always durable has nothing to sync.
    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Starts making every deferred batch durable, and returns without waiting for the disk
    /// (nor for the store's own work of writing the batches out, where it can do that on
    /// another thread). Reads see every batch throughout, and a later `sync`, durable
    /// batch, export job or import first waits for it; dropping the store waits for it too.
    /// A failure of that sync is returned by a later call, and the store then refuses every
    /// call as after a failed `sync`. While one is still in flight, a call may start none
    /// and leave the batches since for the next. The default is `sync`, here and now.
    fn sync_in_background(&mut self) -> Result<(), StorageError> {
        self.sync()
    }

    /// The log id recorded by the last batch (deferred or not), `LogId::default()` for a new
    /// store; after a reopen, that of the last durable batch.
    fn applied(&self) -> Result<LogId, StorageError>;

    /// The value of `key`, `None` if absent.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError>;

    /// Up to `limit` pairs with `start <= key < end` (no upper bound when `end` is `None`),
    /// in key order. `limit == 0` means no limit.
    fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Bytes, Bytes)>, StorageError>;

    /// Every pair and the applied id in the portable format of [`encode_export`], for a snapshot.
    fn export(&self) -> Result<Bytes, StorageError>;

    /// A job that returns [`export`](Self::export) as of this call, and may run on another
    /// thread while the store keeps taking writes (so that building a snapshot does not stop
    /// applying). The default exports here and now and the job only hands the bytes over; a
    /// store with consistent read views (redb's transactions) returns a job that reads one.
    fn export_job(&mut self) -> Result<ExportJob, StorageError> {
        let data = self.export()?;
        Ok(Box::new(move || Ok(data)))
    }

    /// Replaces the whole content with an `export` of any adapter's store (decode it with
    /// [`decode_export`]), atomically and durably. Malformed data gives `Corrupt` and leaves
    /// the current content intact.
    fn import(&mut self, data: &[u8]) -> Result<(), StorageError>;
}

/// A boxed store is a store, so a runtime can pick the adapter at run time
/// (`Box<dyn StateStore + Send + Sync>`) and still hand it to code generic over `StateStore`.
impl<T: StateStore + ?Sized> StateStore for Box<T> {
    fn write_batch(&mut self, writes: &[StateWrite], applied: LogId) -> Result<(), StorageError> {
        (**self).write_batch(writes, applied)
    }

    fn write_batch_deferred(&mut self, writes: &[StateWrite], applied: LogId) -> Result<(), StorageError> {
        (**self).write_batch_deferred(writes, applied)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        (**self).sync()
    }

    fn sync_in_background(&mut self) -> Result<(), StorageError> {
        (**self).sync_in_background()
    }

    fn applied(&self) -> Result<LogId, StorageError> {
        (**self).applied()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        (**self).get(key)
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        (**self).range(start, end, limit)
    }

    fn export(&self) -> Result<Bytes, StorageError> {
        (**self).export()
    }

    fn export_job(&mut self) -> Result<ExportJob, StorageError> {
        (**self).export_job()
    }

    fn import(&mut self, data: &[u8]) -> Result<(), StorageError> {
        (**self).import(data)
    }
}

/// An export to run later, possibly on another thread (see [`StateStore::export_job`]).
pub type ExportJob = Box<dyn FnOnce() -> Result<Bytes, StorageError> + Send>;

/// The export format: magic, applied id, pair count, pairs, [`bulk_checksum`].
const EXPORT_MAGIC: &[u8; 8] = b"DENGST02";
/// The first format: the same layout with the FNV-1a [`checksum`]; still read.
const EXPORT_MAGIC_FNV: &[u8; 8] = b"DENGST01";
/// Where the pair count sits: after the magic and the applied id.
const EXPORT_COUNT_AT: usize = 8 + 16;

/// Encodes a state-store export: magic, applied id, pairs, and a trailing checksum, so
/// that any adapter can import what any other exported. [`ExportWriter`] builds the same
/// bytes pair by pair, without the list.
pub fn encode_export(applied: LogId, pairs: &[(Bytes, Bytes)]) -> Bytes {
    let payload: usize = pairs.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut writer = ExportWriter::with_capacity(applied, payload);
    for (key, value) in pairs {
        writer.push(key, value);
    }
    writer.finish()
}

/// Builds an export ([`encode_export`]'s format) one pair at a time, in key order, straight
/// from a store's iterator: the pairs are copied once, into the export.
#[derive(Debug)]
pub struct ExportWriter {
    out: Vec<u8>,
    pairs: u64,
}

impl ExportWriter {
    /// An export of the state at `applied`, growing as pairs come.
    pub fn new(applied: LogId) -> ExportWriter {
        ExportWriter::with_capacity(applied, 0)
    }

    /// An export of the state at `applied`, with room for `payload_bytes` of pairs (8 bytes
    /// of lengths per pair, plus keys and values) before it grows.
    pub fn with_capacity(applied: LogId, payload_bytes: usize) -> ExportWriter {
        let mut out = Vec::with_capacity(EXPORT_COUNT_AT + 8 + payload_bytes + 8);
        out.extend_from_slice(EXPORT_MAGIC);
        out.extend_from_slice(&applied.term.0.to_le_bytes());
        out.extend_from_slice(&applied.index.0.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // the pair count, set by `finish`
        ExportWriter { out, pairs: 0 }
    }

    /// Appends one pair; keys come in ascending order, each once.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        self.out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.out.extend_from_slice(key);
        self.out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.out.extend_from_slice(value);
        self.pairs += 1;
    }

    /// The export: the pair count written in, the checksum appended.
    pub fn finish(mut self) -> Bytes {
        self.out[EXPORT_COUNT_AT..EXPORT_COUNT_AT + 8].copy_from_slice(&self.pairs.to_le_bytes());
        let sum = bulk_checksum(&self.out);
        self.out.extend_from_slice(&sum.to_le_bytes());
        Bytes::from(self.out)
    }
}

/// Decodes [`encode_export`]'s format; any truncation, bad magic or checksum mismatch is `Corrupt`.
pub fn decode_export(data: &[u8]) -> Result<(LogId, Vec<(Bytes, Bytes)>), StorageError> {
    let corrupt = |reason: &str| StorageError::Corrupt { location: "state export".into(), reason: reason.into() };
    if data.len() < EXPORT_MAGIC.len() + 32 {
        return Err(corrupt("missing header"));
    }
    let sum: fn(&[u8]) -> u64 = match &data[..8] {
        magic if magic == EXPORT_MAGIC => bulk_checksum,
        magic if magic == EXPORT_MAGIC_FNV => checksum,
        _ => return Err(corrupt("unknown format")),
    };
    let (body, tail) = data.split_at(data.len() - 8);
    if sum(body).to_le_bytes() != tail {
        return Err(corrupt("checksum mismatch"));
    }
    let mut reader = Reader { data: &body[8..] };
    let term = reader.u64().ok_or_else(|| corrupt("truncated header"))?;
    let index = reader.u64().ok_or_else(|| corrupt("truncated header"))?;
    let count = reader.u64().ok_or_else(|| corrupt("truncated header"))?;
    let mut pairs = Vec::new();
    for _ in 0..count {
        let key = reader.chunk().ok_or_else(|| corrupt("truncated pair"))?;
        let value = reader.chunk().ok_or_else(|| corrupt("truncated pair"))?;
        pairs.push((Bytes::copy_from_slice(key), Bytes::copy_from_slice(value)));
    }
    if !reader.data.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    Ok((LogId::new(term, index), pairs))
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.data.len() < n {
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn chunk(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
        self.take(len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_round_trips_and_detects_a_flipped_bit() {
        let pairs = vec![(Bytes::from_static(b"a"), Bytes::from_static(b"1")), (Bytes::from_static(b""), Bytes::new())];
        let encoded = encode_export(LogId::new(3, 9), &pairs);
        assert_eq!(decode_export(&encoded).unwrap(), (LogId::new(3, 9), pairs));
        let mut flipped = encoded.to_vec();
        flipped[20] ^= 1;
        assert!(matches!(decode_export(&flipped), Err(StorageError::Corrupt { .. })));
        assert!(matches!(decode_export(&encoded[..encoded.len() - 3]), Err(StorageError::Corrupt { .. })));
    }

    #[test]
    fn an_export_in_the_first_format_still_decodes_and_an_unknown_one_is_refused() {
        let pairs = vec![(Bytes::from_static(b"k"), Bytes::from_static(b"v"))];
        let current = encode_export(LogId::new(2, 5), &pairs);
        // The first format: the same bytes under its own magic, sealed with FNV-1a.
        let mut first = current[..current.len() - 8].to_vec();
        first[..8].copy_from_slice(EXPORT_MAGIC_FNV);
        let sum = checksum(&first);
        first.extend_from_slice(&sum.to_le_bytes());
        assert_eq!(decode_export(&first).unwrap(), (LogId::new(2, 5), pairs));

        let mut unknown = current.to_vec();
        unknown[7] = b'9';
        let Err(StorageError::Corrupt { reason, .. }) = decode_export(&unknown) else { panic!("an unknown magic") };
        assert!(reason.contains("unknown format"), "{reason}");
    }
}
