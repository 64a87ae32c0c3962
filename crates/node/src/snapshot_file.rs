//! Where a node keeps its latest snapshot: one file, replaced atomically.
//!
//! Format: `magic(8) header_len(8) header data_len(8) data checksum(8)`. The header is the
//! snapshot's metadata written as the log codec's membership entry at `last_included`
//! (so the one membership encoding is reused), the checksum is the codec's
//! `bulk_checksum` (CRC-32) over everything before it; a file of the first format
//! (`DENGSNP1`, FNV-1a) is still read. The data is written and read without a copy of it.
//! A save writes `snapshot.tmp`, syncs it, renames it over `snapshot` and syncs the
//! directory: after a crash either the old or the new snapshot is there, whole.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use d_engine_core::storage::codec::{BulkChecksum, bulk_checksum, checksum, decode_entry, encode_entry};
use d_engine_core::storage::{Snapshot, SnapshotMeta, StorageError};
use d_engine_core::{Entry, EntryPayload};

const MAGIC: &[u8; 8] = b"DENGSNP2";
/// The first format: the same layout, sealed with the FNV-1a `checksum`.
const MAGIC_FNV: &[u8; 8] = b"DENGSNP1";
const FILE_NAME: &str = "snapshot";
const TEMP_NAME: &str = "snapshot.tmp";

/// The latest snapshot of a node: in a directory, or in memory for memory storage.
#[derive(Debug)]
pub(crate) struct SnapshotStore {
    dir: Option<PathBuf>,
    latest: Option<Snapshot>,
}

impl SnapshotStore {
    /// A store in memory: snapshots die with the process, like the memory log.
    pub(crate) fn in_memory() -> SnapshotStore {
        SnapshotStore { dir: None, latest: None }
    }

    /// Opens (creating the directory if needed) and reads the saved snapshot, if any.
    pub(crate) fn open(dir: &Path) -> Result<SnapshotStore, StorageError> {
        fs::create_dir_all(dir).map_err(|source| io("create the snapshot directory", source))?;
        let path = dir.join(FILE_NAME);
        let latest = match fs::read(&path) {
            Ok(data) => Some(
                decode(Bytes::from(data))
                    .map_err(|reason| StorageError::Corrupt { location: path.display().to_string(), reason })?,
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(io("read the snapshot", source)),
        };
        Ok(SnapshotStore { dir: Some(dir.to_path_buf()), latest })
    }

    /// The latest saved snapshot.
    pub(crate) fn latest(&self) -> Option<&Snapshot> {
        self.latest.as_ref()
    }

    /// Saves `snapshot` durably, replacing the older one. Durable when it returns `Ok`.
    pub(crate) fn save(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        if let Some(dir) = &self.dir {
            let temp = dir.join(TEMP_NAME);
            let mut file = fs::File::create(&temp).map_err(|source| io("create the snapshot file", source))?;
            let (head, tail) = frame(&snapshot);
            for piece in [&head[..], &snapshot.data, &tail] {
                file.write_all(piece).map_err(|source| io("write the snapshot", source))?;
            }
            file.sync_all().map_err(|source| io("sync the snapshot", source))?;
            fs::rename(&temp, dir.join(FILE_NAME)).map_err(|source| io("rename the snapshot", source))?;
            fs::File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(|source| io("sync the snapshot directory", source))?;
        }
        self.latest = Some(snapshot);
        Ok(())
    }
}

fn io(operation: &'static str, source: std::io::Error) -> StorageError {
    StorageError::Io { operation, source: Box::new(source) }
}

/// What goes before and after the snapshot's data in the file.
fn frame(snapshot: &Snapshot) -> (Vec<u8>, [u8; 8]) {
    let header = encode_entry(&Entry {
        log_id: snapshot.meta.last_included,
        payload: EntryPayload::Membership(snapshot.meta.membership.clone()),
    });
    let mut head = Vec::with_capacity(8 + 8 + header.len() + 8);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&(header.len() as u64).to_le_bytes());
    head.extend_from_slice(&header);
    head.extend_from_slice(&(snapshot.data.len() as u64).to_le_bytes());
    let mut sum = BulkChecksum::default();
    sum.update(&head);
    sum.update(&snapshot.data);
    (head, sum.finish().to_le_bytes())
}

/// Reads a file's bytes; the snapshot's data is a slice of them.
fn decode(file: Bytes) -> Result<Snapshot, String> {
    let body_len = file.len().checked_sub(8).ok_or("shorter than its checksum")?;
    let (body, sum) = file.split_at(body_len);
    let seal: fn(&[u8]) -> u64 = match body.get(..8) {
        Some(magic) if magic == MAGIC => bulk_checksum,
        Some(magic) if magic == MAGIC_FNV => checksum,
        _ => return Err("not a d-engine snapshot (bad magic)".into()),
    };
    if seal(body).to_le_bytes() != sum {
        return Err("checksum mismatch (torn or damaged file)".into());
    }
    let (header, rest) = length_prefixed(&body[8..])?;
    let (snapshot_data, rest) = length_prefixed(rest)?;
    if !rest.is_empty() {
        return Err("trailing bytes".into());
    }
    let entry = decode_entry(header).map_err(|error| error.to_string())?;
    let EntryPayload::Membership(membership) = entry.payload else {
        return Err("the header is not a membership record".into());
    };
    let meta = SnapshotMeta { last_included: entry.log_id, membership };
    Ok(Snapshot { meta, data: file.slice_ref(snapshot_data) })
}

fn length_prefixed(data: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let (len, rest) = data.split_first_chunk::<8>().ok_or("truncated length")?;
    let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| "length overflows")?;
    if rest.len() < len {
        return Err("truncated section".into());
    }
    Ok(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use d_engine_core::{LogId, LogIndex, Membership, Term};

    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            meta: SnapshotMeta {
                last_included: LogId { term: Term(3), index: LogIndex(42) },
                membership: Membership::with_voters([1, 2, 3]).unwrap(),
            },
            data: Bytes::from_static(b"state at 42"),
        }
    }

    #[test]
    fn a_saved_snapshot_is_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SnapshotStore::open(dir.path()).unwrap();
        assert!(store.latest().is_none(), "a new directory holds no snapshot");
        store.save(snapshot()).unwrap();
        let reopened = SnapshotStore::open(dir.path()).unwrap();
        assert_eq!(reopened.latest(), Some(&snapshot()));
    }

    #[test]
    fn a_snapshot_file_of_the_first_format_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        SnapshotStore::open(dir.path()).unwrap().save(snapshot()).unwrap();
        let path = dir.path().join(FILE_NAME);
        let current = fs::read(&path).unwrap();
        // The first format: the same bytes under its own magic, sealed with FNV-1a.
        let mut first = current[..current.len() - 8].to_vec();
        first[..8].copy_from_slice(MAGIC_FNV);
        let sum = checksum(&first);
        first.extend_from_slice(&sum.to_le_bytes());
        fs::write(&path, first).unwrap();
        assert_eq!(SnapshotStore::open(dir.path()).unwrap().latest(), Some(&snapshot()));
    }

    #[test]
    fn a_damaged_snapshot_file_is_corrupt_and_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        SnapshotStore::open(dir.path()).unwrap().save(snapshot()).unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        fs::write(&path, bytes).unwrap();
        match SnapshotStore::open(dir.path()) {
            Err(StorageError::Corrupt { location, reason }) => {
                assert!(location.ends_with("snapshot"), "{location}");
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("a flipped bit must be Corrupt, got {other:?}"),
        }
    }
}
