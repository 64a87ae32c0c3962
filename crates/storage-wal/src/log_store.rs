//! The write-ahead-log store: writes gather in one batch in memory; `sync` writes it at
//! the end of the current segment and makes it durable: one direct synchronous write
//! (`O_DIRECT | O_DSYNC`, see [`crate::direct`]) or, where the file system has no direct
//! I/O or [`WalOptions::direct_io`] is off, a `pwrite` and an `fdatasync` of that one file.
//!
//! # Invariants
//! - `state` answers every read: it holds every write, synced or not; `synced` is the
//!   shape as of the last successful sync, which the segment files hold.
//! - Every held entry's [`Location`] is in a segment file or, while unsynced, in the
//!   pending batch (same segment, offset at or past the batch's start).
//! - `segments` are consecutive in sequence; the last is the one `current` writes to,
//!   and the pending batch goes to its end or, when it is full, starts the next one.
//! - Nothing is reported durable before the direct write or the `fdatasync` of the segment
//!   (and, when the batch created it, the directory's fsync) returned.
//! - `direct`, when set, writes to the last segment and holds its last partial block.

use std::collections::VecDeque;
use std::fs::File;
use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use d_engine_core::storage::{LogStore, StorageError, codec, rules};
use d_engine_core::{Entry, HardState, LogId, LogIndex, Term};
use d_engine_storage_fs::FailClosed;
use d_engine_storage_fs::error::{corrupt, io};

use crate::WalOptions;
use crate::batch::{self, Batch, RecordKind, Shape};
use crate::direct::{BLOCK_BYTES, DirectWriter};
use crate::directory::{self, open_segment, sync_directory};
use crate::replay::{self, Repair};
use crate::segment;
use crate::state::{Location, LogState};

/// Reads of neighbouring entries in one segment are merged into one `pread` while the
/// bytes between them (truncated entries, other records) stay below this.
const READ_GAP_BYTES_MAX: u64 = 64 << 10;
/// One merged read covers at most this many bytes.
const READ_SPAN_BYTES_MAX: u64 = 8 << 20;
/// Zeros written ahead of need end on a page boundary (which is a direct write's block).
const PAGE_BYTES: u64 = BLOCK_BYTES;

/// A [`LogStore`] in append-only segment files, `<dir>/log.wal/<seq>-<first index>.wal`.
///
/// Writes are visible at once and gather in one batch in memory;
/// [`sync`](LogStore::sync) writes the batch at the end of the current segment with one
/// direct synchronous write (`O_DIRECT | O_DSYNC`), or one `pwrite` and one `fdatasync`
/// where direct I/O is off or refused (plus an fsync of the directory when the batch
/// started a new segment or a purge removed old ones). Dropping the store
/// without a sync discards the batch. The file format and the recovery rules are in the
/// [crate documentation](crate).
pub struct WalLogStore {
    path: PathBuf,
    /// The locked log directory.
    directory: File,
    options: WalOptions,
    segments: VecDeque<Segment>,
    /// The last segment, open for reading and writing (buffered).
    current: File,
    /// The last segment's direct write handle, unless direct I/O is off or refused.
    direct: Option<DirectWriter>,
    pending: Option<Pending>,
    state: LogState,
    synced: Shape,
    failure: FailClosed,
}

/// A segment file.
#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    /// The last log id when the segment was started: every entry in this segment and the
    /// ones before it that is still held has an index at or below it.
    start_last: LogId,
    /// The end of the last synced batch.
    data_end: u64,
    /// The file's length: data, then zeros written ahead of need.
    file_len: u64,
}

/// The unsynced writes: one batch, bound for `segment` at offset `at`.
#[derive(Debug)]
struct Pending {
    batch: Batch,
    segment: u64,
    at: u64,
    /// Whether the batch starts segment `segment` (which does not exist yet).
    starts_segment: bool,
}

impl WalLogStore {
    /// Opens the log store in directory `dir` with the default [`WalOptions`], creating
    /// the directory and an empty log if there is none.
    ///
    /// Errors: see [`open_with`](WalLogStore::open_with).
    pub fn open(dir: impl AsRef<Path>) -> Result<WalLogStore, StorageError> {
        WalLogStore::open_with(dir, WalOptions::default())
    }

    /// Opens the log store in directory `dir`, creating the directory and an empty log
    /// if there is none, and recovers it: every segment is replayed, the remains of an
    /// interrupted write at the end of the last segment are cut off, segments wholly
    /// below the purged entry are removed, and the last segment is fsynced (what this
    /// store reports was written before a crash must be durable before it is relied on).
    ///
    /// Errors, each naming the path: `Io` when `dir` is a file or cannot be created or
    /// read, or the log is open in another handle or process; `Corrupt` when the
    /// directory holds another adapter's log, a stamp of another adapter, kind or format
    /// version, no stamp, or a segment whose data is damaged (naming the file and the
    /// offset), or when segments are missing.
    pub fn open_with(dir: impl AsRef<Path>, options: WalOptions) -> Result<WalLogStore, StorageError> {
        let path = directory::prepare(dir.as_ref())?;
        let locked = directory::open_locked(&path)?;
        let files = segment::list(&path)?;
        let replayed = replay::replay(&path, &files)?;
        let mut segments: VecDeque<Segment> = replayed
            .segments
            .into_iter()
            .map(|found| Segment {
                seq: found.seq,
                path: found.path,
                start_last: found.start_last,
                data_end: found.data_end,
                file_len: found.file_len,
            })
            .collect();
        if let Some(removed) = &replayed.removed {
            std::fs::remove_file(removed).map_err(|error| io(removed, "remove an unwritten segment", error))?;
        }
        let last = segments.back_mut().expect("replay keeps at least one segment");
        let current = open_segment(&last.path)?;
        if let Some(Repair::CutTail(at)) = replayed.repair {
            current.set_len(at).map_err(|error| io(&last.path, "cut off an interrupted write", error))?;
            last.file_len = at;
        }
        current.sync_all().map_err(|error| io(&last.path, "sync the last segment", error))?;
        let direct = open_direct(&options, &last.path, last.data_end, &current)?;
        sync_directory(&path)?;
        let synced = replayed.state.shape;
        let mut store = WalLogStore {
            path,
            directory: locked,
            options,
            segments,
            current,
            direct,
            pending: None,
            state: replayed.state,
            synced,
            failure: FailClosed::default(),
        };
        store.remove_purged_segments()?;
        Ok(store)
    }

    /// The log's directory, `<dir>/log.wal`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Whether syncs are direct synchronous writes (`O_DIRECT | O_DSYNC`): false when
    /// [`WalOptions::direct_io`] is off or the file system refused direct I/O.
    pub fn writes_directly(&self) -> bool {
        self.direct.is_some()
    }

    fn usable(&self) -> Result<(), StorageError> {
        self.failure.check(&self.path)
    }

    /// The pending batch, begun if there is none: at the end of the current segment, or
    /// as the start of the next one when the current one is full.
    fn pending(&mut self) -> &mut Pending {
        let current = self.segments.back().expect("a log has a segment");
        let (segment_bytes, shape) = (self.options.segment_bytes, self.state.shape);
        debug_assert!(self.pending.is_some() || shape == self.synced, "with nothing pending, all is synced");
        self.pending.get_or_insert_with(|| {
            if current.data_end < segment_bytes {
                return Pending {
                    batch: Batch::new(),
                    segment: current.seq,
                    at: current.data_end,
                    starts_segment: false,
                };
            }
            // Nothing is pending, so the shape is the synced one that the new segment's
            // start record must repeat.
            let seq = current.seq + 1;
            let mut batch = Batch::new();
            batch.push(RecordKind::Start, &batch::encode_start(seq, &shape));
            Pending { batch, segment: seq, at: 0, starts_segment: true }
        })
    }

    /// Adds a record to the pending batch and returns its payload's file offset.
    fn record(&mut self, kind: RecordKind, payload: &[u8]) -> (u64, u64) {
        let pending = self.pending();
        let at = pending.batch.push(kind, payload);
        (pending.segment, pending.at + at as u64)
    }

    /// Writes the pending batch and makes it durable.
    fn write(&mut self, mut pending: Pending) -> Result<(), StorageError> {
        if pending.starts_segment {
            let path = self.path.join(segment::file_name(pending.segment, self.synced.last.index.0 + 1));
            let file = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|error| io(&path, "create a segment", error))?;
            let direct = open_direct(&self.options, &path, 0, &file)?;
            self.segments.push_back(Segment {
                seq: pending.segment,
                path,
                start_last: self.synced.last,
                data_end: 0,
                file_len: 0,
            });
            self.direct = direct;
            self.current = file;
        }
        let segment = self.segments.back_mut().expect("a log has a segment");
        debug_assert_eq!((segment.seq, segment.data_end), (pending.segment, pending.at));
        let bytes = pending.batch.seal();
        let end = pending.at + bytes.len() as u64;
        let ahead = if end > segment.file_len { preallocation_end(end, &self.options) } else { end };
        let written = match &mut self.direct {
            Some(direct) => match direct.write(pending.at, bytes, ahead) {
                Ok(written_end) => Some(written_end),
                // Refused before any I/O (an alignment this device does not take): buffered from now on.
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => None,
                Err(error) => return Err(io(&segment.path, "write a batch (direct)", error)),
            },
            None => None,
        };
        match written {
            Some(written_end) => segment.file_len = segment.file_len.max(written_end),
            None => {
                self.direct = None;
                write_buffered(&self.current, segment, pending.at, bytes, ahead)?;
            }
        }
        if pending.starts_segment {
            self.directory.sync_all().map_err(|error| io(&self.path, "sync the log directory", error))?;
        }
        segment.data_end = end;
        Ok(())
    }

    /// Removes the segments before the first one that may hold an entry after the synced
    /// purged entry, and fsyncs the directory. The last segment always stays.
    fn remove_purged_segments(&mut self) -> Result<(), StorageError> {
        let mut removed = false;
        while self.segments.len() > 1 && self.segments[1].start_last.index <= self.synced.last_purged.index {
            let segment = self.segments.pop_front().expect("two segments");
            std::fs::remove_file(&segment.path).map_err(|error| io(&segment.path, "remove a purged segment", error))?;
            removed = true;
        }
        if removed {
            self.directory.sync_all().map_err(|error| io(&self.path, "sync the log directory", error))?;
        }
        Ok(())
    }

    fn segment(&self, seq: u64) -> &Segment {
        let first = self.segments.front().expect("a log has a segment").seq;
        &self.segments[(seq - first) as usize]
    }

    /// Entries `start..=end`, all of which the log holds.
    fn read(&self, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        let mut entries = Vec::with_capacity((end - start + 1).min(4096) as usize);
        let mut opened: Option<(u64, File)> = None;
        let mut index = start;
        while index <= end {
            let first = self.located(index);
            if let Some(bytes) = self.unsynced(first) {
                entries.push(decode(&self.segment_path(first.segment), index, first.offset, bytes)?);
                index += 1;
                continue;
            }
            // Merge the following entries of the same segment into one read.
            let mut last_index = index;
            let mut span_end = first.offset + u64::from(first.len);
            while last_index < end {
                let next = self.located(last_index + 1);
                let next_end = next.offset + u64::from(next.len);
                if next.segment != first.segment
                    || next.offset < span_end
                    || next.offset - span_end > READ_GAP_BYTES_MAX
                    || next_end - first.offset > READ_SPAN_BYTES_MAX
                    || self.unsynced(next).is_some()
                {
                    break;
                }
                last_index += 1;
                span_end = next_end;
            }
            let segment = self.segment(first.segment);
            let file = if first.segment == self.segments.back().expect("a segment").seq {
                &self.current
            } else {
                if opened.as_ref().is_none_or(|(seq, _)| *seq != first.segment) {
                    let file = File::open(&segment.path).map_err(|error| io(&segment.path, "open a segment", error))?;
                    opened = Some((first.segment, file));
                }
                &opened.as_ref().expect("just opened").1
            };
            let mut span = vec![0; (span_end - first.offset) as usize];
            file.read_exact_at(&mut span, first.offset).map_err(|error| io(&segment.path, "read entries", error))?;
            for at in index..=last_index {
                let location = self.located(at);
                let from = (location.offset - first.offset) as usize;
                entries.push(decode(&segment.path, at, location.offset, &span[from..from + location.len as usize])?);
            }
            index = last_index + 1;
        }
        Ok(entries)
    }

    fn located(&self, index: u64) -> &Location {
        self.state.location(LogIndex(index)).expect("the range is checked against the log's bounds")
    }

    /// The bytes of an entry that is still in the pending batch.
    fn unsynced(&self, location: &Location) -> Option<&[u8]> {
        let pending = self.pending.as_ref()?;
        (location.segment == pending.segment && location.offset >= pending.at)
            .then(|| pending.batch.slice((location.offset - pending.at) as usize, location.len as usize))
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        match self.segments.back() {
            Some(last) if seq > last.seq => self.path.join(segment::file_name(seq, self.synced.last.index.0 + 1)),
            _ => self.segment(seq).path.clone(),
        }
    }
}

/// Opens `path`'s direct write handle when `options` ask for direct I/O and the file system
/// takes it.
fn open_direct(
    options: &WalOptions,
    path: &Path,
    data_end: u64,
    reader: &File,
) -> Result<Option<DirectWriter>, StorageError> {
    if !options.direct_io {
        return Ok(None);
    }
    DirectWriter::open(path, data_end, reader).map_err(|error| io(path, "open a segment for direct writes", error))
}

/// Writes `bytes` at `at` of `segment` through the page cache, then zeros up to `ahead`
/// when that is past the segment's length, and `fdatasync`s the file.
fn write_buffered(file: &File, segment: &mut Segment, at: u64, bytes: &[u8], ahead: u64) -> Result<(), StorageError> {
    file.write_all_at(bytes, at).map_err(|error| io(&segment.path, "write a batch", error))?;
    let end = at + bytes.len() as u64;
    if end > segment.file_len {
        if ahead > end {
            let zeros = vec![0; (ahead - end) as usize];
            file.write_all_at(&zeros, end).map_err(|error| io(&segment.path, "write zeros ahead of need", error))?;
        }
        segment.file_len = ahead;
    }
    file.sync_data().map_err(|error| io(&segment.path, "fdatasync a segment", error))
}

/// Where the zeros written ahead of data ending at `end` stop: `preallocate_bytes` past
/// it, but not past the segment size (unless the data already is), on a page boundary.
fn preallocation_end(end: u64, options: &WalOptions) -> u64 {
    if options.preallocate_bytes == 0 {
        return end;
    }
    let wanted = end.saturating_add(options.preallocate_bytes).min(options.segment_bytes.max(end));
    wanted.div_ceil(PAGE_BYTES).saturating_mul(PAGE_BYTES).max(end)
}

/// Decodes the codec entry read for `index` from offset `offset` of the segment `path`.
fn decode(path: &Path, index: u64, offset: u64, bytes: &[u8]) -> Result<Entry, StorageError> {
    let located = |reason: String| corrupt(path, format!("entry {index} at offset {offset}: {reason}"));
    let entry = codec::decode_entry(bytes).map_err(|error| located(error.to_string()))?;
    if entry.log_id.index != LogIndex(index) {
        return Err(located(format!("the record holds entry {}", entry.log_id)));
    }
    Ok(entry)
}

impl LogStore for WalLogStore {
    fn hard_state(&self) -> Result<HardState, StorageError> {
        self.usable()?;
        Ok(self.state.shape.hard_state)
    }

    fn last_purged(&self) -> Result<LogId, StorageError> {
        self.usable()?;
        Ok(self.state.shape.last_purged)
    }

    fn last_log_id(&self) -> Result<LogId, StorageError> {
        self.usable()?;
        Ok(self.state.shape.last)
    }

    fn term_of(&self, index: LogIndex) -> Result<Term, StorageError> {
        self.usable()?;
        let shape = &self.state.shape;
        if let Some(term) = rules::term_from_bounds(index, shape.last_purged, shape.last)? {
            return Ok(term);
        }
        Ok(self.located(index.0).term)
    }

    fn entries(&self, range: RangeInclusive<LogIndex>) -> Result<Vec<Entry>, StorageError> {
        self.usable()?;
        match rules::check_entries_range(range, self.state.shape.last_purged, self.state.shape.last)? {
            Some(range) => self.read(range.start().0, range.end().0),
            None => Ok(Vec::new()),
        }
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.usable()?;
        self.record(RecordKind::HardState, &codec::encode_hard_state(hard_state));
        self.state.shape.hard_state = *hard_state;
        Ok(())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.usable()?;
        rules::check_append(self.state.shape.last, entries)?;
        let encoded: Vec<_> = entries.iter().map(codec::encode_entry).collect();
        if let Some(too_large) = encoded.iter().position(|record| !batch::payload_fits(record.len())) {
            return Err(StorageError::Misuse(format!(
                "entry {} does not fit a log record ({} bytes)",
                entries[too_large].log_id,
                encoded[too_large].len()
            )));
        }
        for (entry, record) in entries.iter().zip(&encoded) {
            let (segment, offset) = self.record(RecordKind::Entry, record);
            let location = Location { segment, offset, len: record.len() as u32, term: entry.log_id.term };
            self.state.append(entry.log_id, location).expect("appends are checked by the storage rules");
        }
        Ok(())
    }

    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.usable()?;
        rules::check_truncate(from, self.state.shape.last_purged)?;
        if from > self.state.shape.last.index {
            return Ok(());
        }
        let new_last = LogId { term: self.term_of(from.prev())?, index: from.prev() };
        self.record(RecordKind::Truncate, &codec::encode_log_id(new_last));
        self.state.truncate(new_last).expect("truncations are checked by the storage rules");
        Ok(())
    }

    fn purge_prefix(&mut self, upto: LogId) -> Result<(), StorageError> {
        self.usable()?;
        if !rules::purge_advances(upto, self.state.shape.last_purged) {
            return Ok(());
        }
        self.record(RecordKind::Purge, &codec::encode_log_id(upto));
        self.state.purge(upto).expect("purges are checked by the storage rules");
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.usable()?;
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let written = self.write(pending).and_then(|()| {
            self.synced = self.state.shape;
            self.remove_purged_segments()
        });
        written.inspect_err(|error| self.failure.fail(error))
    }

    fn size_bytes(&self) -> Option<u64> {
        Some(self.segments.iter().map(|segment| segment.file_len).sum())
    }
}

impl std::fmt::Debug for WalLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalLogStore")
            .field("path", &self.path)
            .field("shape", &self.state.shape)
            .field("held", &self.state.held())
            .field("segments", &self.segments.len())
            .field("unsynced_bytes", &self.pending.as_ref().map_or(0, |pending| pending.batch.len()))
            .finish()
    }
}
