//! Recovery: replaying every segment in order to rebuild the hard state, the bounds of
//! the log and the location of every held entry, and deciding what the bytes after the
//! last intact batch are.
//!
//! Each `sync` writes one batch and the next batch is written only after that sync's
//! `fdatasync` returned, so at most one batch was in flight at a crash: the last one of
//! the last segment. What follows the last intact batch is therefore
//!
//! - nothing, or zeros (space written ahead of need): the clean end of the log;
//! - the remains of that interrupted write, which was never reported durable: it is cut
//!   off (the file is truncated there), or the whole segment removed when that write
//!   was the one that started it;
//! - or damage to data that was reported durable: `Corrupt`, naming the file and the
//!   offset, and the store refuses to open.
//!
//! Telling the second from the third: an interrupted write leaves whole 512-byte sectors
//! of the old content (zeros, or past the end of the file) inside the batch's extent,
//! because a killed process's `write` stops at a page boundary and a disk persists
//! whole sectors; it is also never followed by an intact batch. A damaged batch that is
//! followed by an intact one, or that sits in any segment but the last, or that has no
//! zero sector (a flipped bit) is corruption. The one case this cannot tell apart is
//! damage to the last batch whose extent holds a whole zero sector of its own (a run of
//! 1,024 zero bytes in its payloads): that batch is cut like an interrupted write.

use std::path::Path;

use d_engine_core::storage::{StorageError, codec};
use d_engine_storage_fs::error::{corrupt, io};

use crate::batch::{self, Damage, Found, HEADER_BYTES, MAGIC, RecordKind, Shape};
use crate::segment::SegmentFile;
use crate::state::{Location, LogState};

/// The unit a disk persists atomically, at least; a page is a whole number of them.
const SECTOR_BYTES: usize = 512;

/// A segment as replay found it.
#[derive(Debug)]
pub(crate) struct Segment {
    /// The sequence number.
    pub seq: u64,
    /// The file.
    pub path: std::path::PathBuf,
    /// The last log id when the segment was started (from its start record).
    pub start_last: d_engine_core::LogId,
    /// The end of the last intact batch.
    pub data_end: u64,
    /// The file's length (data and the zeros written ahead of it).
    pub file_len: u64,
}

/// What to do about the remains of an interrupted write at the end of the last segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repair {
    /// Truncate the last segment at this offset.
    CutTail(u64),
    /// The last segment holds no intact batch: its first write was interrupted. Remove it.
    RemoveLastSegment,
}

/// The log rebuilt from its segments.
#[derive(Debug)]
pub(crate) struct Replayed {
    /// The state after the last intact batch.
    pub state: LogState,
    /// The segments that hold data, in order (a segment to be removed is not among them).
    pub segments: Vec<Segment>,
    /// The repair the last segment needs, if any.
    pub repair: Option<Repair>,
    /// The segment to remove (with [`Repair::RemoveLastSegment`]).
    pub removed: Option<std::path::PathBuf>,
}

/// Replays `files` (every segment, in sequence order).
///
/// Errors: `Io` naming a file that cannot be read; `Corrupt` naming the file and the
/// offset of a damaged batch or record, or naming the log directory `dir` when the
/// segments do not add up to a log.
pub(crate) fn replay(dir: &Path, files: &[SegmentFile]) -> Result<Replayed, StorageError> {
    let mut state: Option<LogState> = None;
    let mut segments = Vec::with_capacity(files.len());
    let mut repair = None;
    let mut removed = None;
    for (position, file) in files.iter().enumerate() {
        let is_last = position + 1 == files.len();
        let data = std::fs::read(&file.path).map_err(|error| io(&file.path, "read a segment", error))?;
        let mut at = 0;
        let mut start_last = None;
        loop {
            match batch::read_at(&data, at) {
                Found::Batch { body, end } => {
                    let started = apply_batch(&mut state, file, at, body)?;
                    start_last = start_last.or(started);
                    at = end;
                }
                Found::End => break,
                Found::Damaged(damage) => {
                    judge_damage(&file.path, &data, at, damage, is_last)?;
                    repair = Some(if at == 0 { Repair::RemoveLastSegment } else { Repair::CutTail(at as u64) });
                    break;
                }
            }
        }
        let Some(start_last) = start_last else {
            // No intact batch at all: only the interrupted first write of the last segment
            // (or a file created just before a crash) may look like that.
            if is_last && position > 0 {
                repair = Some(Repair::RemoveLastSegment);
                removed = Some(file.path.clone());
                continue;
            }
            return Err(corrupt(&file.path, "the segment holds no intact batch, not even its start record"));
        };
        if start_last.index.0.checked_add(1) != Some(file.first_index) {
            return Err(corrupt(
                &file.path,
                format!("the segment was started after {start_last}, which its name does not say"),
            ));
        }
        segments.push(Segment {
            seq: file.seq,
            path: file.path.clone(),
            start_last,
            data_end: at as u64,
            file_len: data.len() as u64,
        });
    }
    let state = state.ok_or_else(|| corrupt(dir, "the log holds no segment start"))?;
    if let Some((first, last)) = state.missing() {
        return Err(corrupt(
            dir,
            format!(
                "entries {first}..={last} are neither purged nor in any segment: a segment file before {} was removed",
                files[0].path.display()
            ),
        ));
    }
    Ok(Replayed { state, segments, repair, removed })
}

/// Applies one intact batch found at offset `at` of `file`; returns the segment's start
/// (its last log id) when the batch starts the segment.
fn apply_batch(
    state: &mut Option<LogState>,
    file: &SegmentFile,
    at: usize,
    body: &[u8],
) -> Result<Option<d_engine_core::LogId>, StorageError> {
    let body_offset = at + HEADER_BYTES;
    let mut started = None;
    for (number, record) in batch::records(body).enumerate() {
        let (kind, payload_at, payload) =
            record.map_err(|(offset, reason)| record_error(file, body_offset + offset, &reason))?;
        let offset = body_offset + payload_at - batch::RECORD_HEADER_BYTES;
        let fail = |reason: String| record_error(file, offset, &reason);
        let starts_segment = at == 0 && number == 0;
        if starts_segment != (kind == RecordKind::Start) {
            return Err(fail(if starts_segment {
                "the segment does not begin with a start record".to_string()
            } else {
                "a segment start record after the segment's beginning".to_string()
            }));
        }
        match kind {
            RecordKind::Start => {
                let (seq, shape) = batch::decode_start(payload).map_err(fail)?;
                if seq != file.seq {
                    return Err(fail(format!("the start record names segment {seq}, not {}", file.seq)));
                }
                continue_or_start(state, shape).map_err(fail)?;
                started = Some(shape.last);
            }
            RecordKind::Entry => {
                let state = state.as_mut().expect("a segment starts before its entries");
                let log_id = batch::entry_log_id(payload).map_err(fail)?;
                let location = Location {
                    segment: file.seq,
                    offset: (body_offset + payload_at) as u64,
                    len: payload.len() as u32,
                    term: log_id.term,
                };
                state.append(log_id, location).map_err(fail)?;
            }
            RecordKind::HardState => {
                let hard_state = codec::decode_hard_state(payload).map_err(|error| fail(error.to_string()))?;
                state.as_mut().expect("a segment starts before its records").shape.hard_state = hard_state;
            }
            RecordKind::Truncate => {
                let new_last = codec::decode_log_id(payload).map_err(|error| fail(error.to_string()))?;
                state.as_mut().expect("a segment starts before its records").truncate(new_last).map_err(fail)?;
            }
            RecordKind::Purge => {
                let upto = codec::decode_log_id(payload).map_err(|error| fail(error.to_string()))?;
                state.as_mut().expect("a segment starts before its records").purge(upto).map_err(fail)?;
            }
        }
    }
    Ok(started)
}

/// The first segment's start sets the state; every later one must repeat the state the
/// segments before it ended in.
fn continue_or_start(state: &mut Option<LogState>, shape: Shape) -> Result<(), String> {
    match state {
        None => {
            *state = Some(LogState::starting_at(shape));
            Ok(())
        }
        Some(state) if state.shape == shape => Ok(()),
        Some(state) => {
            Err(format!("the segment starts at {shape:?} but the segments before it end at {:?}", state.shape))
        }
    }
}

fn record_error(file: &SegmentFile, offset: usize, reason: &str) -> StorageError {
    corrupt(&file.path, format!("record at offset {offset}: {reason}"))
}

/// Decides what damage at offset `at` is: `Ok` for the remains of an interrupted write
/// at the end of the last segment, else `Corrupt` naming the file and the offset.
fn judge_damage(path: &Path, data: &[u8], at: usize, damage: Damage, is_last: bool) -> Result<(), StorageError> {
    let refuse = |why: String| Err(corrupt(path, format!("batch at offset {at}: {damage}; {why}")));
    if !is_last {
        return refuse("only the last segment can end in an interrupted write".to_string());
    }
    if let Some(next) = next_intact_batch(data, at) {
        return refuse(format!(
            "an intact batch follows at offset {next}, so this one was written before it and is damaged"
        ));
    }
    if !looks_interrupted(data, at, damage) {
        return refuse("it holds no unwritten sector, so it is damaged, not an interrupted write".to_string());
    }
    Ok(())
}

/// The offset of the first intact batch after `at`, if any.
fn next_intact_batch(data: &[u8], at: usize) -> Option<usize> {
    let mut from = at + 1;
    while from + HEADER_BYTES <= data.len() {
        let found = data[from..].windows(MAGIC.len()).position(|window| window == MAGIC)?;
        let candidate = from + found;
        if matches!(batch::read_at(data, candidate), Found::Batch { .. }) {
            return Some(candidate);
        }
        from = candidate + 1;
    }
    None
}

/// Whether the damaged batch at `at` holds a sector that was never written: the file
/// ends inside it, or an aligned 512-byte sector of zeros (bytes past the end of the file
/// count as zeros) lies inside its extent, or its header is zeros before or after a
/// sector boundary.
fn looks_interrupted(data: &[u8], at: usize, damage: Damage) -> bool {
    let header_end = at + HEADER_BYTES;
    let zeros = |from: usize, to: usize| batch::is_zero(&data[from.min(data.len())..to.min(data.len())]);
    if zeros(at, header_end) || header_end > data.len() {
        return true;
    }
    let extent_end = match damage {
        Damage::PastEnd { .. } => return true,
        Damage::Body { body_len } => header_end + body_len as usize,
        Damage::Header => header_end,
    };
    let first_boundary = (at / SECTOR_BYTES + 1) * SECTOR_BYTES;
    if damage == Damage::Header && first_boundary < header_end && zeros(at, first_boundary) {
        return true;
    }
    (first_boundary..extent_end).step_by(SECTOR_BYTES).any(|sector| zeros(sector, sector + SECTOR_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batch;

    /// Three batches of `records` purge records each, then `zeros` zero bytes; the
    /// offsets of the batches.
    fn segment(records: usize, zeros: usize) -> (Vec<u8>, Vec<usize>) {
        let mut data = Vec::new();
        let mut offsets = Vec::new();
        for number in 0..3 {
            let mut batch = Batch::new();
            for index in 0..records {
                let id = d_engine_core::LogId::new(1, (number * records + index + 1) as u64);
                batch.push(RecordKind::Purge, &codec::encode_log_id(id));
            }
            offsets.push(data.len());
            data.extend_from_slice(batch.seal());
        }
        data.resize(data.len() + zeros, 0);
        (data, offsets)
    }

    fn judge(data: &[u8], at: usize, is_last: bool) -> Result<(), StorageError> {
        let Found::Damaged(damage) = batch::read_at(data, at) else { panic!("damage at {at}") };
        judge_damage(Path::new("segment.wal"), data, at, damage, is_last)
    }

    #[test]
    fn a_write_cut_at_a_page_boundary_is_an_interrupted_write() {
        let (mut data, offsets) = segment(200, 8192);
        let last = offsets[2];
        let cut = (last / 4096 + 1) * 4096;
        assert!(cut < data.len() - 8192, "the last batch crosses a page boundary");
        data[cut..].fill(0);
        assert!(judge(&data, last, true).is_ok(), "zeros from a page boundary on");
        assert!(judge(&data, last, false).is_err(), "but never in a segment before the last");
        assert!(judge(&data[..cut], last, true).is_ok(), "a file that ends at the boundary too");
        assert!(judge(&data[..last + 7], last, true).is_ok(), "a file that ends inside the header");
    }

    #[test]
    fn a_flipped_bit_in_the_last_batch_is_damage_not_an_interrupted_write() {
        let (data, offsets) = segment(200, 8192);
        for at_byte in [offsets[2] + 2, offsets[2] + 30, offsets[2] + 3000] {
            let mut damaged = data.clone();
            damaged[at_byte] ^= 0x10;
            let error = judge(&damaged, offsets[2], true).unwrap_err().to_string();
            assert!(error.contains(&format!("batch at offset {}", offsets[2])), "{error}");
        }
    }

    #[test]
    fn damage_followed_by_an_intact_batch_is_corruption() {
        let (mut data, offsets) = segment(200, 8192);
        let cut = (offsets[1] / 4096 + 1) * 4096;
        data[cut..cut + 512].fill(0);
        let error = judge(&data, offsets[1], true).unwrap_err().to_string();
        assert!(error.contains(&format!("an intact batch follows at offset {}", offsets[2])), "{error}");
    }

    #[test]
    fn a_header_torn_at_a_sector_boundary_is_an_interrupted_write() {
        let (mut data, offsets) = segment(30, 4096);
        let last = offsets[2];
        // Move the last batch so that its header straddles a sector boundary.
        let shift = (last / 512 + 1) * 512 - 8 - last;
        let batch = data[last..].to_vec();
        data.truncate(last);
        data.resize(last + shift, 0);
        data.extend_from_slice(&batch);
        let at = last + shift;
        let mut second_half_lost = data.clone();
        second_half_lost[at + 8..].fill(0);
        assert!(matches!(batch::read_at(&second_half_lost, at), Found::Damaged(Damage::Header)));
        // The gap before the moved batch is zeros: judge from the batch itself.
        assert!(looks_interrupted(&second_half_lost, at, Damage::Header));
        let mut first_half_lost = data.clone();
        first_half_lost[at..at + 8].fill(0);
        assert!(looks_interrupted(&first_half_lost, at, Damage::Header));
        let mut flipped = data.clone();
        flipped[at + 12] ^= 1;
        assert!(!looks_interrupted(&flipped, at, Damage::Header));
    }
}
