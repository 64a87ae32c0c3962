//! Bad input at open: a damaged file, a path that cannot hold a store, another
//! adapter's or kind's store, an unknown format version. Each gives a typed
//! `StorageError` naming the path, never a panic and never an entry that differs from
//! what was written.

use std::path::Path;

use d_engine_core::storage::{LogStore, StateStore, StorageError};
use d_engine_core::testing::crash::{self, CrashState};
use d_engine_core::{Entry, HardState, LogId};
use d_engine_redb::{FORMAT_VERSION, RedbLogStore, RedbStateStore};
use d_engine_sled::SledLogStore;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tempfile::TempDir;

/// Everything a log store answers, or its first error.
fn contents(dir: &Path) -> Result<(HardState, LogId, Vec<Entry>), StorageError> {
    let store = RedbLogStore::open(dir)?;
    let first = store.last_purged()?.index.next();
    let last = store.last_log_id()?.index;
    Ok((store.hard_state()?, store.last_purged()?, store.entries(first..=last)?))
}

/// A directory with a log of 150 steps of the crash workload (purges included).
fn written_log() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RedbLogStore::open(dir.path()).unwrap();
    let mut state = CrashState::initial();
    for _ in 0..150 {
        let (step, after) = state.next_step();
        crash::write_step(&mut store, &step).unwrap();
        state = after;
    }
    dir
}

fn copy_of(dir: &Path) -> TempDir {
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("log.redb"), copy.path().join("log.redb")).unwrap();
    copy
}

fn assert_names(error: &StorageError, path: &Path) {
    assert!(error.to_string().contains(&path.display().to_string()), "{error} does not name {}", path.display());
}

#[test]
fn a_flipped_bit_anywhere_in_the_file_is_refused_by_name_or_harmless_never_garbage() {
    let pristine = written_log();
    let expected = contents(pristine.path()).unwrap();
    let file_bits = std::fs::metadata(pristine.path().join("log.redb")).unwrap().len() * 8;
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (mut refused, mut harmless) = (0, 0);
    for _ in 0..60 {
        let bit = rng.random_range(0..file_bits);
        let damaged = copy_of(pristine.path());
        let file = damaged.path().join("log.redb");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
        std::fs::write(&file, bytes).unwrap();
        match contents(damaged.path()) {
            Ok(found) => {
                assert_eq!(found, expected, "bit {bit} changed what the store answers");
                harmless += 1;
            }
            Err(error) => {
                assert_names(&error, &file);
                refused += 1;
            }
        }
    }
    println!("60 flipped bits: {refused} refused at open, {harmless} in unused space");
    assert!(refused > 0);
}

#[test]
fn a_truncated_file_is_refused_by_name() {
    let pristine = written_log();
    let len = std::fs::metadata(pristine.path().join("log.redb")).unwrap().len();
    for keep in [0, 100, 4096, len / 2, len - 4096, len - 1] {
        let damaged = copy_of(pristine.path());
        let file = damaged.path().join("log.redb");
        std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(keep).unwrap();
        match contents(damaged.path()) {
            Ok(found) => panic!("a file cut to {keep} of {len} bytes opened with {} entries", found.2.len()),
            Err(error) => assert_names(&error, &file),
        }
    }
}

#[test]
fn a_flipped_bit_inside_a_stored_entry_is_refused_by_name() {
    let pristine = written_log();
    let file = pristine.path().join("log.redb");
    let store = RedbLogStore::open(pristine.path()).unwrap();
    let target = store.last_log_id().unwrap().index.prev();
    let entry = store.entries(target..=target).unwrap();
    drop(store);
    let record = d_engine_core::storage::codec::encode_entry(&entry[0]);
    let mut bytes = std::fs::read(&file).unwrap();
    let offsets: Vec<usize> = bytes
        .windows(record.len())
        .enumerate()
        .filter(|(_, window)| *window == &record[..])
        .map(|(offset, _)| offset)
        .collect();
    assert!(!offsets.is_empty(), "the entry is stored as encoded");
    for offset in offsets {
        bytes[offset + record.len() / 2] ^= 0x04;
    }
    std::fs::write(&file, bytes).unwrap();

    let error = contents(pristine.path()).unwrap_err();

    assert!(matches!(error, StorageError::Corrupt { .. }), "{error}");
    assert_names(&error, &file);
}

#[test]
fn a_path_that_is_a_regular_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"hello").unwrap();

    let error = RedbLogStore::open(&file).unwrap_err();
    assert!(matches!(error, StorageError::Io { .. }), "{error}");
    assert_names(&error, &file);
    let error = RedbStateStore::open(&file).unwrap_err();
    assert_names(&error, &file);
    assert_eq!(std::fs::read(&file).unwrap(), b"hello", "the file is left alone");
}

#[test]
fn a_path_that_cannot_be_created_is_refused_by_name() {
    // A directory below a regular file cannot be created by anyone, root included.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), b"").unwrap();
    let path = dir.path().join("file").join("store");

    let error = RedbLogStore::open(&path).unwrap_err();

    assert!(matches!(error, StorageError::Io { .. }), "{error}");
    assert_names(&error, &path);
}

#[test]
fn a_read_only_directory_is_refused_by_name_unless_running_as_root() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("read-only");
    std::fs::create_dir(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o500)).unwrap();
    if std::fs::write(path.join("probe"), b"").is_ok() {
        println!(
            "skipped: this process writes into a read-only directory (it runs as root), so permissions cannot make the open fail"
        );
        return;
    }

    let error = RedbLogStore::open(&path).unwrap_err();

    assert!(matches!(error, StorageError::Io { .. }), "{error}");
    assert_names(&error, &path);
}

#[test]
fn a_directory_holding_a_sled_store_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    drop(SledLogStore::open(dir.path()).unwrap());

    let error = RedbLogStore::open(dir.path()).unwrap_err();

    assert!(matches!(error, StorageError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("d-engine-sled"), "{error}");
    assert_names(&error, &dir.path().join("log.sled"));
    assert!(!dir.path().join("log.redb").exists(), "nothing was created beside it");
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

    let error = RedbLogStore::open(dir.path()).unwrap_err();

    assert!(matches!(error, StorageError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains(&format!("format version {}", FORMAT_VERSION + 1)), "{error}");
    assert_names(&error, &file);
}

#[test]
fn a_state_store_file_in_place_of_a_log_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = RedbStateStore::open(dir.path()).unwrap();
    state.write_batch(&[], LogId::new(1, 1)).unwrap();
    drop(state);
    std::fs::rename(dir.path().join("state.redb"), dir.path().join("log.redb")).unwrap();

    let error = RedbLogStore::open(dir.path()).unwrap_err();

    assert!(error.to_string().contains("this is a state store, not a log store"), "{error}");
    assert_names(&error, &dir.path().join("log.redb"));
}

#[test]
fn a_store_open_in_another_handle_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let _open = RedbLogStore::open(dir.path()).unwrap();

    let error = RedbLogStore::open(dir.path()).unwrap_err();

    assert!(matches!(error, StorageError::Io { .. }), "{error}");
    assert_names(&error, &dir.path().join("log.redb"));
}
