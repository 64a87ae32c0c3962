//! The WAL adapter as the shared durable-adapter tests of `d_engine_storage_fs::testing`
//! see it: a log store only (no state store), with default segments, or with segments
//! small enough that every test crosses many of them.

#![allow(dead_code)]

use std::path::Path;

use d_engine_core::storage::StorageError;
use d_engine_storage_fs::testing::LogAdapter;
use d_engine_wal::{WalLogStore, WalOptions};

/// d-engine-wal with its default options: 64 MiB segments, 1 MiB written ahead.
pub struct Wal;

/// The directory of the log inside a store directory.
pub const LOG: &str = "log.wal";
/// The first segment of a new log.
pub const FIRST_SEGMENT: &str = "log.wal/00000000000000000001-00000000000000000001.wal";

impl LogAdapter for Wal {
    type Log = WalLogStore;

    const LOG: &'static str = LOG;
    const LOG_FILE: &'static str = FIRST_SEGMENT;

    fn open_log(dir: &Path) -> Result<WalLogStore, StorageError> {
        WalLogStore::open(dir)
    }
}

/// Options whose segments hold a few dozen small entries each, so that rollover,
/// reads across segments and the removal of purged segments happen all the time.
pub const SMALL_SEGMENTS: WalOptions =
    WalOptions { segment_bytes: 4 << 10, preallocate_bytes: 1 << 10, direct_io: true };

/// d-engine-wal with [`SMALL_SEGMENTS`].
pub struct SmallSegments;

impl LogAdapter for SmallSegments {
    type Log = WalLogStore;

    const LOG: &'static str = LOG;
    const LOG_FILE: &'static str = FIRST_SEGMENT;

    fn open_log(dir: &Path) -> Result<WalLogStore, StorageError> {
        WalLogStore::open_with(dir, SMALL_SEGMENTS)
    }
}

/// The segment files of the log in store directory `dir`, sorted by name.
pub fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join(LOG))
        .unwrap()
        .map(|item| item.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "wal"))
        .collect();
    files.sort();
    files
}
