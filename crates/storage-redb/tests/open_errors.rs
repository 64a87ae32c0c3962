//! Bad input at open: a damaged file, a path that cannot hold a store, another
//! adapter's or kind's store, an unknown format version. Each gives a typed
//! `StorageError` naming the path, never a panic and never an entry that differs from
//! what was written.
//!
//! The cases every durable adapter shares are in `d_engine_storage_fs::testing::open_errors`;
//! the ones that depend on redb's single-file layout are written out here.

mod common;

use common::Redb;
use d_engine_redb::{FORMAT_VERSION, RedbLogStore};
use d_engine_sled::SledLogStore;
use d_engine_storage_fs::testing::open_errors::{self, assert_names, contents, copy_of, written_log};

#[test]
fn a_flipped_bit_anywhere_in_the_file_is_refused_by_name_or_harmless_never_garbage() {
    open_errors::a_flipped_bit_anywhere_in_the_log_file_is_refused_by_name_or_harmless::<Redb>();
}

#[test]
fn a_truncated_file_is_refused_by_name() {
    let pristine = written_log::<Redb>();
    let len = std::fs::metadata(pristine.path().join("log.redb")).unwrap().len();
    for keep in [0, 100, 4096, len / 2, len - 4096, len - 1] {
        let damaged = copy_of(pristine.path());
        let file = damaged.path().join("log.redb");
        std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(keep).unwrap();
        match contents::<Redb>(damaged.path()) {
            Ok(found) => panic!("a file cut to {keep} of {len} bytes opened with {} entries", found.2.len()),
            Err(error) => assert_names(&error, &file),
        }
    }
}

#[test]
fn a_flipped_bit_inside_a_stored_entry_is_refused_by_name() {
    open_errors::a_flipped_bit_inside_a_stored_entry_is_refused_by_name::<Redb>();
}

#[test]
fn a_path_that_is_a_regular_file_is_refused_by_name() {
    open_errors::a_path_that_is_a_regular_file_is_refused_by_name::<Redb>();
}

#[test]
fn a_path_that_cannot_be_created_is_refused_by_name() {
    open_errors::a_path_that_cannot_be_created_is_refused_by_name::<Redb>();
}

#[test]
fn a_read_only_directory_is_refused_by_name_unless_running_as_root() {
    open_errors::a_read_only_directory_is_refused_by_name_unless_running_as_root::<Redb>();
}

#[test]
fn a_directory_holding_a_sled_store_is_refused_by_name() {
    open_errors::a_directory_holding_another_adapters_store_is_refused_by_name::<Redb>(
        "d-engine-sled",
        "log.sled",
        |dir| drop(SledLogStore::open(dir).unwrap()),
    );
}

#[test]
fn a_sled_database_directory_itself_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    drop(SledLogStore::open(dir.path()).unwrap());
    let sled_database = dir.path().join("log.sled");

    let error = RedbLogStore::open(&sled_database).unwrap_err();

    assert!(error.to_string().contains("sled database"), "{error}");
    assert_names(&error, &sled_database);
}

#[test]
fn a_file_that_is_not_a_redb_database_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("log.redb");
    std::fs::write(&file, vec![0x5a; 10_000]).unwrap();

    let error = RedbLogStore::open(dir.path()).unwrap_err();

    assert_names(&error, &file);
}

#[test]
fn a_format_version_this_build_does_not_know_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    drop(RedbLogStore::open(dir.path()).unwrap());
    let file = dir.path().join("log.redb");
    let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
    let database = redb::Database::create(&file).unwrap();
    let txn = database.begin_write().unwrap();
    let future = format!("d-engine-redb log {}", FORMAT_VERSION + 1);
    txn.open_table(meta).unwrap().insert("format", future.as_bytes()).unwrap();
    txn.commit().unwrap();
    drop(database);

    open_errors::a_format_version_this_build_does_not_know_is_refused_by_name::<Redb>(dir.path(), FORMAT_VERSION + 1);
}

#[test]
fn a_state_store_file_in_place_of_a_log_is_refused_by_name() {
    open_errors::a_state_store_in_place_of_a_log_is_refused_by_name::<Redb>();
}

#[test]
fn a_store_open_in_another_handle_is_refused_by_name() {
    open_errors::a_store_open_in_another_handle_is_refused_by_name::<Redb>();
}
