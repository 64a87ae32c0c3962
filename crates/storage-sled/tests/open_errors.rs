//! Bad input at open: a damaged file, a path that cannot hold a store, another
//! adapter's or kind's store, an unknown format version. Each gives a typed
//! `StorageError` naming the path, never a panic and never an entry that differs from
//! what was written.
//!
//! The cases every durable adapter shares are in `d_engine_storage_fs::testing::open_errors`;
//! the ones that depend on sled's directory layout are written out here.

mod common;

use common::Sled;
use d_engine_core::LogIndex;
use d_engine_core::storage::StorageError;
use d_engine_core::testing::crash;
use d_engine_redb::RedbLogStore;
use d_engine_sled::{FORMAT_VERSION, SledLogStore};
use d_engine_storage_fs::testing::open_errors::{self, assert_names, copy_of, written_log};

#[test]
fn a_flipped_bit_anywhere_in_the_log_file_is_refused_by_name_or_harmless_never_garbage() {
    open_errors::a_flipped_bit_anywhere_in_the_log_file_is_refused_by_name_or_harmless::<Sled>();
}

/// sled cannot tell a log file cut at a record boundary from a crash that lost the
/// unflushed tail, so a cut file may open at an earlier synced state: never at a torn or
/// garbled one. (redb refuses every cut file; see docs/storage.md.)
#[test]
fn a_truncated_log_file_is_refused_by_name_or_opens_at_an_earlier_synced_state_never_garbage() {
    let pristine = written_log::<Sled>();
    let len = std::fs::metadata(pristine.path().join("log.sled/db")).unwrap().len();
    let mut outcomes = Vec::new();
    for keep in [0, 100, 4096, len / 2, len - 4096, len - 1] {
        let damaged = copy_of(pristine.path());
        let file = damaged.path().join("log.sled/db");
        std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(keep).unwrap();
        match SledLogStore::open(damaged.path()) {
            Ok(store) => {
                let state = crash::verify(&store, LogIndex(0))
                    .unwrap_or_else(|error| panic!("a file cut to {keep} of {len} bytes is garbled: {error}"));
                outcomes.push(format!("{keep}: opened at step {}", state.steps));
            }
            Err(error) => {
                assert_names(&error, &damaged.path().join("log.sled"));
                outcomes.push(format!("{keep}: refused"));
            }
        }
    }
    println!("log file of {len} bytes cut to {}", outcomes.join(", "));
}

#[test]
fn a_flipped_bit_inside_a_stored_entry_is_refused_by_name() {
    open_errors::a_flipped_bit_inside_a_stored_entry_is_refused_by_name::<Sled>();
}

#[test]
fn a_path_that_is_a_regular_file_is_refused_by_name() {
    open_errors::a_path_that_is_a_regular_file_is_refused_by_name::<Sled>();
}

#[test]
fn a_path_that_cannot_be_created_is_refused_by_name() {
    open_errors::a_path_that_cannot_be_created_is_refused_by_name::<Sled>();
}

#[test]
fn a_read_only_directory_is_refused_by_name_unless_running_as_root() {
    open_errors::a_read_only_directory_is_refused_by_name_unless_running_as_root::<Sled>();
}

#[test]
fn a_directory_holding_a_redb_store_is_refused_by_name() {
    open_errors::a_directory_holding_another_adapters_store_is_refused_by_name::<Sled>(
        "d-engine-redb",
        "log.redb",
        |dir| drop(RedbLogStore::open(dir).unwrap()),
    );
}

#[test]
fn a_redb_file_in_place_of_the_sled_database_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    drop(RedbLogStore::open(dir.path()).unwrap());
    std::fs::rename(dir.path().join("log.redb"), dir.path().join("log.sled")).unwrap();

    let error = SledLogStore::open(dir.path()).unwrap_err();

    assert!(matches!(error, StorageError::Io { .. }), "{error}");
    assert_names(&error, &dir.path().join("log.sled"));
}

#[test]
fn a_directory_that_is_not_a_sled_database_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("log.sled");
    std::fs::create_dir(&database).unwrap();
    std::fs::write(database.join("conf"), vec![0x5a; 100]).unwrap();
    std::fs::write(database.join("db"), vec![0x5a; 10_000]).unwrap();

    let error = SledLogStore::open(dir.path()).unwrap_err();

    assert_names(&error, &database);
}

#[test]
fn a_format_version_this_build_does_not_know_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    drop(SledLogStore::open(dir.path()).unwrap());
    let database = dir.path().join("log.sled");
    let raw = sled::open(&database).unwrap();
    raw.insert(b"mformat", format!("d-engine-sled log {}", FORMAT_VERSION + 1).as_bytes()).unwrap();
    raw.flush().unwrap();
    drop(raw);

    open_errors::a_format_version_this_build_does_not_know_is_refused_by_name::<Sled>(dir.path(), FORMAT_VERSION + 1);
}

#[test]
fn a_state_store_in_place_of_a_log_is_refused_by_name() {
    open_errors::a_state_store_in_place_of_a_log_is_refused_by_name::<Sled>();
}

#[test]
fn a_store_open_in_another_handle_is_refused_by_name() {
    open_errors::a_store_open_in_another_handle_is_refused_by_name::<Sled>();
}
