//! Bad input at open: a damaged segment, a path that cannot hold a store, another
//! adapter's or kind's store, an unknown format version, a missing stamp or segment, a
//! log open in another handle. Each gives a typed `StorageError` naming the path, never
//! a panic and never an entry that differs from what was written.
//!
//! The cases every durable adapter shares are in `d_engine_storage_fs::testing::open_errors`;
//! the ones that depend on the WAL's layout (a directory with a stamp file and segments)
//! are written out here. Damage inside the log that recovery must tell from an
//! interrupted write is in `recovery.rs`.

mod common;

use common::{LOG, SmallSegments, Wal, segment_files};
use d_engine_core::LogId;
use d_engine_core::storage::{LogStore, StorageError};
use d_engine_storage_fs::testing::open_errors::{self, assert_names, contents, written_log};
use d_engine_wal::{FORMAT_VERSION, WalLogStore};

#[test]
fn a_flipped_bit_anywhere_in_the_segment_is_refused_by_name_or_harmless_never_garbage() {
    open_errors::a_flipped_bit_anywhere_in_the_log_file_is_refused_by_name_or_harmless::<Wal>();
}

#[test]
fn a_flipped_bit_inside_a_stored_entry_is_refused_by_name() {
    open_errors::a_flipped_bit_inside_a_stored_entry_is_refused_by_name::<Wal>();
}

#[test]
fn a_path_that_is_a_regular_file_is_refused_by_name() {
    open_errors::a_log_path_that_is_a_regular_file_is_refused_by_name::<Wal>();
}

#[test]
fn a_path_that_cannot_be_created_is_refused_by_name() {
    open_errors::a_path_that_cannot_be_created_is_refused_by_name::<Wal>();
}

#[test]
fn a_read_only_directory_is_refused_by_name_unless_running_as_root() {
    open_errors::a_read_only_directory_is_refused_by_name_unless_running_as_root::<Wal>();
}

#[test]
fn a_directory_holding_a_redb_log_is_refused_by_name() {
    open_errors::a_directory_holding_another_adapters_store_is_refused_by_name::<Wal>(
        "d-engine-redb",
        "log.redb",
        // The refusal goes by the database's name; its content is never read.
        |dir| std::fs::write(dir.join("log.redb"), b"a redb database").unwrap(),
    );
}

#[test]
fn a_directory_holding_a_sled_log_is_refused_by_name() {
    open_errors::a_directory_holding_another_adapters_store_is_refused_by_name::<Wal>(
        "d-engine-sled",
        "log.sled",
        |dir| std::fs::create_dir(dir.join("log.sled")).unwrap(),
    );
}

/// Writes `stamp` into the format stamp of a new log in a new directory.
fn log_with_stamp(stamp: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    drop(WalLogStore::open(dir.path()).unwrap());
    std::fs::write(dir.path().join(LOG).join("FORMAT"), stamp).unwrap();
    dir
}

#[test]
fn a_format_version_this_build_does_not_know_is_refused_by_name() {
    let future = FORMAT_VERSION + 1;
    let dir = log_with_stamp(&format!("d-engine-wal log {future}"));

    open_errors::a_format_version_this_build_does_not_know_is_refused_by_name::<Wal>(dir.path(), future);
}

#[test]
fn a_state_store_stamp_in_place_of_a_log_is_refused_by_name() {
    let dir = log_with_stamp(&format!("d-engine-wal state {FORMAT_VERSION}"));

    let error = WalLogStore::open(dir.path()).unwrap_err();

    assert!(error.to_string().contains("this is a state store, not a log store"), "{error}");
    assert_names(&error, &dir.path().join(LOG));
}

#[test]
fn another_adapters_stamp_is_refused_by_name() {
    let dir = log_with_stamp("d-engine-redb log 1");

    let error = WalLogStore::open(dir.path()).unwrap_err();

    assert!(matches!(error, StorageError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("made by d-engine-redb"), "{error}");
    assert_names(&error, &dir.path().join(LOG));
}

#[test]
fn a_log_without_its_stamp_is_refused_by_name_not_started_afresh() {
    let dir = written_log::<Wal>();
    std::fs::remove_file(dir.path().join(LOG).join("FORMAT")).unwrap();

    let error = WalLogStore::open(dir.path()).unwrap_err();

    assert!(error.to_string().contains("no format stamp"), "{error}");
    assert_names(&error, &dir.path().join(LOG));
}

#[test]
fn a_file_in_place_of_the_log_directory_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(LOG), b"not a directory").unwrap();

    let error = WalLogStore::open(dir.path()).unwrap_err();

    assert!(matches!(error, StorageError::Corrupt { .. }), "{error}");
    assert_names(&error, &dir.path().join(LOG));
}

#[test]
fn a_log_whose_segments_are_all_gone_is_refused_by_name() {
    let dir = written_log::<Wal>();
    for segment in segment_files(dir.path()) {
        std::fs::remove_file(segment).unwrap();
    }

    let error = WalLogStore::open(dir.path()).unwrap_err();

    assert!(error.to_string().contains("no segment file"), "{error}");
    assert_names(&error, &dir.path().join(LOG));
}

#[test]
fn a_lost_segment_in_the_middle_is_refused_naming_its_neighbours() {
    let dir = written_log::<SmallSegments>();
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 5, "{} segments", segments.len());
    std::fs::remove_file(&segments[2]).unwrap();

    let error = contents::<SmallSegments>(dir.path()).unwrap_err();

    assert!(matches!(error, StorageError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("not consecutive"), "{error}");
    assert_names(&error, &segments[1]);
    assert_names(&error, &segments[3]);
}

#[test]
fn a_lost_first_segment_is_refused_unless_its_entries_were_purged() {
    // Segment files are removed only once every entry they held is purged; losing the
    // first one while its entries are still held leaves a hole that must be refused.
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalLogStore::open_with(dir.path(), common::SMALL_SEGMENTS).unwrap();
    for first in (1..=200).step_by(10) {
        let batch: Vec<_> = (first..first + 10).map(d_engine_core::testing::crash::entry).collect();
        store.append(&batch).unwrap();
        store.sync().unwrap();
    }
    let last = store.last_log_id().unwrap();
    drop(store);
    let segments = segment_files(dir.path());
    std::fs::remove_file(&segments[0]).unwrap();

    let error = WalLogStore::open_with(dir.path(), common::SMALL_SEGMENTS).unwrap_err();

    assert!(error.to_string().contains("neither purged nor in any segment"), "{error}");
    assert_names(&error, &dir.path().join(LOG));
    assert_eq!(last, LogId::new(1, 200));
}

#[test]
fn a_stray_wal_file_is_refused_by_name() {
    let dir = written_log::<Wal>();
    let stray = dir.path().join(LOG).join("backup.wal");
    std::fs::write(&stray, b"").unwrap();

    let error = WalLogStore::open(dir.path()).unwrap_err();

    assert_names(&error, &stray);
}

#[test]
fn a_store_open_in_another_handle_is_refused_by_name() {
    open_errors::a_store_open_in_another_handle_is_refused_by_name::<Wal>();
}

#[test]
fn the_lock_is_released_when_the_store_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = WalLogStore::open(dir.path()).unwrap();
    assert!(WalLogStore::open(dir.path()).is_err());

    drop(store);

    assert!(WalLogStore::open(dir.path()).is_ok());
}
