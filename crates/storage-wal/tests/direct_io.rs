//! Direct writes: a sync rewrites the last partial block in front of its batch and pads
//! the block with zeros. These stories check that the bytes before a batch survive the
//! rewrite, and that a log written one way opens and goes on the other way.

mod common;

use std::path::Path;

use bytes::Bytes;
use common::segment_files;
use d_engine_core::storage::LogStore;
use d_engine_core::{Entry, EntryPayload, LogId, LogIndex};
use d_engine_wal::{WalLogStore, WalOptions};

const BUFFERED: WalOptions = WalOptions { direct_io: false, ..DEFAULT };
const DEFAULT: WalOptions = WalOptions {
    segment_bytes: d_engine_wal::SEGMENT_BYTES,
    preallocate_bytes: d_engine_wal::PREALLOCATE_BYTES,
    direct_io: true,
};

/// One entry at `index` whose payload has `bytes` bytes, all derived from the index.
fn entry(index: u64, bytes: usize) -> Entry {
    let payload: Vec<u8> = (0..bytes).map(|at| (index as usize * 131 + at * 17) as u8).collect();
    Entry { log_id: LogId::new(1, index), payload: EntryPayload::Command(Bytes::from(payload)) }
}

/// Appends and syncs one entry per size, one sync each, after the log's last entry.
fn write_batches(store: &mut WalLogStore, sizes: &[usize], written: &mut Vec<Entry>) {
    for &bytes in sizes {
        let next = store.last_log_id().unwrap().index.0 + 1;
        let batch = [entry(next, bytes)];
        store.append(&batch).unwrap();
        store.sync().unwrap();
        written.extend(batch);
    }
}

fn read_all(dir: &Path, options: WalOptions) -> Vec<Entry> {
    let store = WalLogStore::open_with(dir, options).unwrap();
    store.entries(LogIndex(1)..=store.last_log_id().unwrap().index).unwrap()
}

#[test]
fn batches_ending_inside_a_block_keep_the_bytes_before_them_and_the_log_opens_either_way() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalLogStore::open_with(dir.path(), DEFAULT).unwrap();
    if !store.writes_directly() {
        eprintln!("skipped: the file system of {} refuses O_DIRECT (tmpfs?)", dir.path().display());
        return;
    }
    // Sizes that end batches just before, on, and just after block boundaries, and
    // batches spanning several blocks.
    let sizes = [1, 700, 4093, 3, 5000, 13, 8192, 4096 - 40, 1, 20_000, 2];
    let mut written = Vec::new();
    write_batches(&mut store, &sizes, &mut written);
    assert_eq!(store.entries(LogIndex(1)..=LogIndex(sizes.len() as u64)).unwrap(), written, "read back while open");
    drop(store);
    for segment in segment_files(dir.path()) {
        assert_eq!(std::fs::metadata(&segment).unwrap().len() % 4096, 0, "direct writes end on block boundaries");
    }
    assert_eq!(read_all(dir.path(), DEFAULT), written, "reopened for direct writes");
    assert_eq!(read_all(dir.path(), BUFFERED), written, "reopened for buffered writes");

    // Written through the page cache (its end now anywhere in a block), then directly again:
    // the direct writer's first batch rewrites a tail it read from the file.
    let mut buffered = WalLogStore::open_with(dir.path(), BUFFERED).unwrap();
    assert!(!buffered.writes_directly());
    write_batches(&mut buffered, &[333, 5], &mut written);
    drop(buffered);
    let mut direct = WalLogStore::open_with(dir.path(), DEFAULT).unwrap();
    write_batches(&mut direct, &[77, 4096, 9], &mut written);
    drop(direct);
    assert_eq!(read_all(dir.path(), DEFAULT), written, "every batch, whichever way it was written");
}
