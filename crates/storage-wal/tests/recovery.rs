//! The WAL's own stories: what recovery does with the end of the last segment and with
//! damage elsewhere, how segments roll over and are removed, and what a failed sync
//! leaves. Each case damages or inspects the files the way a crash or a disk would.

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::{LOG, SMALL_SEGMENTS, segment_files};
use d_engine_core::storage::{LogStore, StorageError};
use d_engine_core::{Entry, EntryPayload, HardState, LogId, LogIndex, NodeId, Term};
use d_engine_storage_fs::testing::open_errors::{assert_names, copy_of};
use d_engine_wal::{SEGMENT_BYTES, WalLogStore, WalOptions};

/// Default segments, no zeros written ahead, writes through the page cache: each file ends
/// exactly where its last batch ends (a direct write pads the last block with zeros).
const NO_PREALLOCATION: WalOptions =
    WalOptions { segment_bytes: SEGMENT_BYTES, preallocate_bytes: 0, direct_io: false };

/// Entries `first..=last` of `term`, each with `payload_bytes` bytes derived from its index.
fn entries(term: u64, first: u64, last: u64, payload_bytes: usize) -> Vec<Entry> {
    (first..=last)
        .map(|index| {
            let payload: Vec<u8> = (0..payload_bytes).map(|at| (index as usize * 31 + at * 7) as u8 | 1).collect();
            Entry { log_id: LogId::new(term, index), payload: EntryPayload::Command(Bytes::from(payload)) }
        })
        .collect()
}

fn append_synced(store: &mut WalLogStore, batch: &[Entry]) {
    store.append(batch).unwrap();
    store.sync().unwrap();
}

/// A log with [`SMALL_SEGMENTS`] holding entries 1..=`last` of term 1 (100 bytes each),
/// synced in batches of ten (`last` a multiple of ten): many segments.
fn small_segment_log(last: u64) -> (tempfile::TempDir, WalLogStore) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalLogStore::open_with(dir.path(), SMALL_SEGMENTS).unwrap();
    for first in (1..=last).step_by(10) {
        append_synced(&mut store, &entries(1, first, first + 9, 100));
    }
    (dir, store)
}

fn all_entries(store: &WalLogStore) -> Vec<Entry> {
    let first = store.last_purged().unwrap().index.next();
    store.entries(first..=store.last_log_id().unwrap().index).unwrap()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// The same file in a copy of a store directory.
fn in_copy(copy: &Path, original_dir: &Path, file: &Path) -> PathBuf {
    copy.join(file.strip_prefix(original_dir).unwrap())
}

#[test]
fn an_interrupted_last_write_is_cut_off_on_reopen_and_the_log_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalLogStore::open(dir.path()).unwrap();
    for first in (1..=50).step_by(10) {
        append_synced(&mut store, &entries(1, first, first + 9, 100));
    }
    let segment = segment_files(dir.path()).remove(0);
    let before = std::fs::read(&segment).unwrap();
    append_synced(&mut store, &entries(1, 51, 60, 1500));
    drop(store);
    let after = std::fs::read(&segment).unwrap();
    let at = before.iter().zip(&after).position(|(old, new)| old != new).unwrap();
    let body_len = u64::from_le_bytes(after[at + 4..at + 12].try_into().unwrap()) as usize;
    let end = at + 20 + body_len;
    let page_inside = (at / 4096 + 2) * 4096;
    let sector_inside = (at / 512 + 3) * 512;
    assert!(page_inside < end && sector_inside + 512 < end, "the last batch spans several pages");

    let interruptions: [(&str, Interruption); 5] = [
        ("a process killed at a page boundary inside the batch", Box::new(move |file| zero(file, page_inside, end))),
        ("the file ends inside the batch header", Box::new(move |file| cut(file, at + 7))),
        ("the file ends inside the batch body", Box::new(move |file| cut(file, at + 1000))),
        ("a disk that lost the batch's first sector", Box::new(move |file| zero(file, at, (at / 512 + 1) * 512))),
        (
            "a disk that lost a sector in the middle",
            Box::new(move |file| zero(file, sector_inside, sector_inside + 512)),
        ),
    ];
    for (story, interrupt) in interruptions {
        let copy = copy_of(dir.path());
        let copied_segment = in_copy(copy.path(), dir.path(), &segment);
        interrupt(&copied_segment);

        let mut store = WalLogStore::open(copy.path()).unwrap_or_else(|error| panic!("{story}: {error}"));

        assert_eq!(store.last_log_id().unwrap(), LogId::new(1, 50), "{story}");
        assert_eq!(all_entries(&store), entries(1, 1, 50, 100), "{story}");
        assert_eq!(file_len(&copied_segment), at as u64, "{story}: the remains are cut off");
        append_synced(&mut store, &entries(2, 51, 51, 10));
        let store = WalLogStore::open({
            drop(store);
            copy.path()
        })
        .unwrap();
        let mut expected = entries(1, 1, 50, 100);
        expected.extend(entries(2, 51, 51, 10));
        assert_eq!(all_entries(&store), expected, "{story}: the log continues after the cut");
    }
}

/// Damage done to a segment file, the way an interrupted write leaves it.
type Interruption = Box<dyn Fn(&Path)>;

fn zero(file: &Path, from: usize, to: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[from..to].fill(0);
    std::fs::write(file, bytes).unwrap();
}

fn cut(file: &Path, len: usize) {
    std::fs::OpenOptions::new().write(true).open(file).unwrap().set_len(len as u64).unwrap();
}

/// A log of five synced batches without zeros written ahead, and the offset of each batch.
fn five_batches() -> (tempfile::TempDir, PathBuf, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalLogStore::open_with(dir.path(), NO_PREALLOCATION).unwrap();
    let segment = segment_files(dir.path()).remove(0);
    let mut offsets = Vec::new();
    for first in (1..=50).step_by(10) {
        offsets.push(file_len(&segment));
        store.save_hard_state(&HardState { term: Term(1), vote: Some(NodeId(1)), commit: LogIndex(first) }).unwrap();
        append_synced(&mut store, &entries(1, first, first + 9, 200));
    }
    (dir, segment, offsets)
}

#[test]
fn a_damaged_batch_is_refused_naming_the_file_and_offset_wherever_it_is() {
    let (dir, segment, offsets) = five_batches();
    for (which, at) in
        [("the second batch", offsets[1]), ("the fourth batch", offsets[3]), ("the last batch", offsets[4])]
    {
        for (field, byte) in [("magic", 1), ("length", 6), ("body", 40), ("a payload", 1200)] {
            let copy = copy_of(dir.path());
            let damaged = in_copy(copy.path(), dir.path(), &segment);
            let mut bytes = std::fs::read(&damaged).unwrap();
            bytes[at as usize + byte] ^= 0x08;
            std::fs::write(&damaged, bytes).unwrap();

            let error = WalLogStore::open_with(copy.path(), NO_PREALLOCATION).unwrap_err();

            assert!(matches!(error, StorageError::Corrupt { .. }), "{which}, {field}: {error}");
            assert_names(&error, &damaged);
            assert!(error.to_string().contains(&format!("batch at offset {at}")), "{which}, {field}: {error}");
            assert_eq!(file_len(&damaged), file_len(&segment), "nothing was cut");
        }
    }
}

#[test]
fn every_flipped_bit_in_written_data_is_refused_never_cut_or_misread() {
    let (dir, segment, _) = five_batches();
    let data_bits = file_len(&segment) * 8;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..120 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let bit = (seed >> 11) % data_bits;
        let copy = copy_of(dir.path());
        let damaged = in_copy(copy.path(), dir.path(), &segment);
        let mut bytes = std::fs::read(&damaged).unwrap();
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
        std::fs::write(&damaged, bytes).unwrap();

        let error = WalLogStore::open_with(copy.path(), NO_PREALLOCATION).unwrap_err();

        assert!(matches!(error, StorageError::Corrupt { .. }), "bit {bit}: {error}");
        assert_names(&error, &damaged);
    }
}

#[test]
fn segments_roll_over_and_reads_span_them_synced_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalLogStore::open_with(dir.path(), SMALL_SEGMENTS).unwrap();
    let mut written = Vec::new();
    for first in (1..=294).step_by(7) {
        let batch = entries(1 + first / 100, first, first + 6, (first as usize * 13) % 300);
        append_synced(&mut store, &batch);
        written.extend(batch);
    }
    let unsynced = entries(3, 295, 300, 50);
    store.append(&unsynced).unwrap();
    written.extend(unsynced);

    let segments = segment_files(dir.path());
    assert!(segments.len() >= 10, "{} segments", segments.len());
    assert_eq!(store.segment_count(), segments.len());
    assert_eq!(all_entries(&store), written, "one read across every segment and the unsynced batch");
    for (start, end) in [(1, 1), (40, 160), (280, 300), (295, 295)] {
        let read = store.entries(LogIndex(start)..=LogIndex(end)).unwrap();
        assert_eq!(read, written[start as usize - 1..end as usize], "{start}..={end}");
    }
    assert_eq!(store.term_of(LogIndex(150)).unwrap(), Term(2));
    assert_eq!(store.size_bytes(), Some(segments.iter().map(|path| file_len(path)).sum()));

    store.sync().unwrap();
    drop(store);
    let store = WalLogStore::open_with(dir.path(), SMALL_SEGMENTS).unwrap();
    assert_eq!(all_entries(&store), written, "after a reopen");
    assert_eq!(segment_files(dir.path()).len(), store.segment_count());
}

#[test]
fn a_purge_removes_the_segments_below_it_and_survives_a_reopen() {
    let (dir, mut store) = small_segment_log(400);
    let before = segment_files(dir.path());

    store.purge_prefix(LogId::new(1, 300)).unwrap();
    assert_eq!(segment_files(dir.path()), before, "nothing is removed before the purge is durable");
    store.sync().unwrap();

    let after = segment_files(dir.path());
    assert!(after.len() < before.len() / 2, "{} of {} segments remain", after.len(), before.len());
    assert_eq!(after[..], before[before.len() - after.len()..], "only the oldest segments are removed");
    // Each removed segment held only entries up to 300: the one after it was started past 300.
    let started_after = |path: &PathBuf| {
        let name = path.file_stem().unwrap().to_str().unwrap();
        name.split_once('-').unwrap().1.parse::<u64>().unwrap() - 1
    };
    assert!(started_after(&after[0]) <= 300 && started_after(&after[1]) > 300);
    assert_eq!(store.size_bytes(), Some(after.iter().map(|path| file_len(path)).sum()));
    drop(store);

    let store = WalLogStore::open_with(dir.path(), SMALL_SEGMENTS).unwrap();
    assert_eq!(store.last_purged().unwrap(), LogId::new(1, 300));
    assert_eq!(store.term_of(LogIndex(300)).unwrap(), Term(1));
    assert_eq!(all_entries(&store), entries(1, 301, 400, 100));
    assert_eq!(segment_files(dir.path()), after);
}

#[test]
fn segments_a_crash_left_behind_after_a_durable_purge_are_removed_at_open() {
    let (dir, mut store) = small_segment_log(200);
    let saved = copy_of(dir.path());
    store.purge_prefix(LogId::new(1, 150)).unwrap();
    store.sync().unwrap();
    drop(store);
    // A crash after the purge record was durable but before the removals reached the
    // disk: the old segments are back, beside the segment holding the purge.
    let remaining = segment_files(dir.path());
    for old in segment_files(saved.path()) {
        let name = old.file_name().unwrap();
        if !dir.path().join(LOG).join(name).exists() {
            std::fs::copy(&old, dir.path().join(LOG).join(name)).unwrap();
        }
    }
    assert!(segment_files(dir.path()).len() > remaining.len());

    let store = WalLogStore::open_with(dir.path(), SMALL_SEGMENTS).unwrap();

    assert_eq!(store.last_purged().unwrap(), LogId::new(1, 150));
    assert_eq!(all_entries(&store), entries(1, 151, 200, 100));
    assert_eq!(segment_files(dir.path()), remaining, "the open removed them again");
}

#[test]
fn a_truncation_into_an_earlier_segment_then_appends_survive_a_reopen() {
    let (dir, mut store) = small_segment_log(200);
    let first_segment_holding_50 = segment_files(dir.path()).len();
    assert!(first_segment_holding_50 > 4);

    store.truncate_suffix(LogIndex(50)).unwrap();
    store.append(&entries(2, 50, 60, 30)).unwrap();
    store.sync().unwrap();
    for first in (61..=130).step_by(10) {
        append_synced(&mut store, &entries(2, first, first + 9, 30));
    }
    store.truncate_suffix(LogIndex(125)).unwrap();
    store.append(&entries(3, 125, 126, 30)).unwrap();
    // Unsynced: the truncation and its appends are lost at the reopen.
    drop(store);

    let mut expected = entries(1, 1, 49, 100);
    expected.extend(entries(2, 50, 130, 30));
    let mut store = WalLogStore::open_with(dir.path(), SMALL_SEGMENTS).unwrap();
    assert_eq!(store.last_log_id().unwrap(), LogId::new(2, 130));
    assert_eq!(all_entries(&store), expected);
    assert_eq!(store.term_of(LogIndex(49)).unwrap(), Term(1));
    assert_eq!(store.term_of(LogIndex(50)).unwrap(), Term(2));

    // A purge past the truncation point removes the segments of the old, truncated tail
    // only when every entry they held is purged.
    store.purge_prefix(LogId::new(2, 100)).unwrap();
    store.sync().unwrap();
    drop(store);
    let store = WalLogStore::open_with(dir.path(), SMALL_SEGMENTS).unwrap();
    assert_eq!(all_entries(&store), expected[100..]);
}

#[test]
fn an_interrupted_first_write_of_a_new_segment_removes_that_segment() {
    let dir = tempfile::tempdir().unwrap();
    // Every sync starts a segment of its own.
    let one_batch_per_segment = WalOptions { segment_bytes: 1, preallocate_bytes: 0, direct_io: true };
    let mut store = WalLogStore::open_with(dir.path(), one_batch_per_segment).unwrap();
    for first in (1..=30).step_by(10) {
        append_synced(&mut store, &entries(1, first, first + 9, 100));
    }
    drop(store);
    let segments = segment_files(dir.path());
    // One segment per sync; the first one, which held only the empty log's start, is
    // removed as soon as the second repeats that start.
    assert_eq!(segments.len(), 3, "one segment per sync");
    let newest = segments.last().unwrap();

    for (story, len) in [("cut inside its start record", 30), ("cut before anything was written", 0)] {
        let copy = copy_of(dir.path());
        let copied = in_copy(copy.path(), dir.path(), newest);
        cut(&copied, len);

        let store = WalLogStore::open_with(copy.path(), one_batch_per_segment).unwrap();

        assert_eq!(store.last_log_id().unwrap(), LogId::new(1, 20), "{story}");
        assert_eq!(all_entries(&store), entries(1, 1, 20, 100), "{story}");
        assert!(!copied.exists(), "{story}: the unwritten segment is removed");
    }
}

#[test]
fn a_failed_sync_closes_the_store_until_it_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let one_batch_per_segment = WalOptions { segment_bytes: 1, preallocate_bytes: 0, direct_io: true };
    let mut store = WalLogStore::open_with(dir.path(), one_batch_per_segment).unwrap();
    append_synced(&mut store, &entries(1, 1, 5, 10));
    // Something occupies the name of the segment the next sync creates.
    let newest = segment_files(dir.path()).pop().unwrap();
    let newest_seq: u64 = newest.file_name().unwrap().to_str().unwrap()[..20].parse().unwrap();
    let next = dir.path().join(LOG).join(format!("{:020}-{:020}.wal", newest_seq + 1, 6));
    std::fs::create_dir(&next).unwrap();
    store.append(&entries(1, 6, 8, 10)).unwrap();

    let error = store.sync().unwrap_err();

    assert!(matches!(error, StorageError::Io { .. }), "{error}");
    assert_names(&error, &next);
    for refused in [
        store.hard_state().map(drop),
        store.last_log_id().map(drop),
        store.entries(LogIndex(1)..=LogIndex(1)).map(drop),
        store.append(&entries(1, 9, 9, 10)),
        store.sync(),
    ] {
        let error = refused.unwrap_err().to_string();
        assert!(error.contains("reopen the store"), "{error}");
    }
    drop(store);
    std::fs::remove_dir(&next).unwrap();
    let store = WalLogStore::open_with(dir.path(), one_batch_per_segment).unwrap();
    assert_eq!(all_entries(&store), entries(1, 1, 5, 10), "exactly the synced entries");
}

#[test]
fn zeros_written_ahead_are_kept_and_overwritten_not_taken_for_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalLogStore::open(dir.path()).unwrap();
    append_synced(&mut store, &entries(1, 1, 10, 100));
    let segment = segment_files(dir.path()).remove(0);
    let preallocated = file_len(&segment);
    assert_eq!(preallocated % 4096, 0);
    assert!(preallocated >= 1 << 20, "a MiB of zeros written ahead: {preallocated}");
    drop(store);

    let mut store = WalLogStore::open(dir.path()).unwrap();
    assert_eq!(file_len(&segment), preallocated, "the reopen keeps the zeros");
    append_synced(&mut store, &entries(1, 11, 20, 100));
    assert_eq!(file_len(&segment), preallocated, "the next batch overwrote zeros, the size did not change");
    drop(store);
    let store = WalLogStore::open(dir.path()).unwrap();
    assert_eq!(all_entries(&store), entries(1, 1, 20, 100));
}
