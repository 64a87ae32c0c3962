//! Bad input at open, the same story for every durable adapter: a damaged file, a path
//! that cannot hold a store, another adapter's or kind's store, a store already open.
//! Each gives a typed `StorageError` naming the path, never a panic and never an entry
//! that differs from what was written.
//!
//! Each case is a function an adapter's test of the same name calls; the helpers
//! ([`written_log`], [`contents`], [`copy_of`], [`assert_names`]) serve its own cases.

use std::path::Path;

use d_engine_core::storage::{LogStore, StateStore, StorageError, codec};
use d_engine_core::testing::crash::{self, CrashState};
use d_engine_core::{Entry, HardState, LogId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tempfile::TempDir;

use super::{Adapter, LogAdapter};

/// Everything the log store of adapter `A` in `dir` answers, or its first error.
pub fn contents<A: LogAdapter>(dir: &Path) -> Result<(HardState, LogId, Vec<Entry>), StorageError> {
    let store = A::open_log(dir)?;
    let first = store.last_purged()?.index.next();
    let last = store.last_log_id()?.index;
    Ok((store.hard_state()?, store.last_purged()?, store.entries(first..=last)?))
}

/// A directory with a log of 150 steps of the crash workload (purges included).
pub fn written_log<A: LogAdapter>() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut store = A::open_log(dir.path()).unwrap();
    let mut state = CrashState::initial();
    for _ in 0..150 {
        let (step, after) = state.next_step();
        crash::write_step(&mut store, &step).unwrap();
        state = after;
    }
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A copy of the store directory `dir`, in a new temporary directory.
pub fn copy_of(dir: &Path) -> TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_tree(dir, copy.path());
    copy
}

/// Asserts that `error`'s message names `path`.
pub fn assert_names(error: &StorageError, path: &Path) {
    assert!(error.to_string().contains(&path.display().to_string()), "{error} does not name {}", path.display());
}

/// 60 random bits flipped, one per copy of a written log, anywhere in
/// [`LogAdapter::LOG_FILE`]: each copy either opens with exactly what was written, or is
/// refused with an error naming the log database; at least one is refused.
pub fn a_flipped_bit_anywhere_in_the_log_file_is_refused_by_name_or_harmless<A: LogAdapter>() {
    let pristine = written_log::<A>();
    let expected = contents::<A>(pristine.path()).unwrap();
    let file_bits = std::fs::metadata(pristine.path().join(A::LOG_FILE)).unwrap().len() * 8;
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (mut refused, mut harmless) = (0, 0);
    for _ in 0..60 {
        let bit = rng.random_range(0..file_bits);
        let damaged = copy_of(pristine.path());
        let file = damaged.path().join(A::LOG_FILE);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
        std::fs::write(&file, bytes).unwrap();
        match contents::<A>(damaged.path()) {
            Ok(found) => {
                assert_eq!(found, expected, "bit {bit} changed what the store answers");
                harmless += 1;
            }
            Err(error) => {
                assert_names(&error, &damaged.path().join(A::LOG));
                refused += 1;
            }
        }
    }
    println!("60 flipped bits: {refused} refused at open, {harmless} in unused space");
    assert!(refused > 0);
}

/// A bit flipped inside every stored copy of one entry's record: `Corrupt`, naming the
/// log database.
pub fn a_flipped_bit_inside_a_stored_entry_is_refused_by_name<A: LogAdapter>() {
    let pristine = written_log::<A>();
    let file = pristine.path().join(A::LOG_FILE);
    let store = A::open_log(pristine.path()).unwrap();
    let target = store.last_log_id().unwrap().index.prev();
    let entry = store.entries(target..=target).unwrap();
    drop(store);
    let record = codec::encode_entry(&entry[0]);
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

    let error = contents::<A>(pristine.path()).unwrap_err();

    assert!(matches!(error, StorageError::Corrupt { .. }), "{error}");
    assert_names(&error, &pristine.path().join(A::LOG));
}

/// A store path that is a regular file: `Io` naming it, for both kinds of store, and
/// the file is left alone.
pub fn a_path_that_is_a_regular_file_is_refused_by_name<A: Adapter>() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"hello").unwrap();

    let error = <A as Adapter>::open_log(&file).unwrap_err();
    assert!(matches!(error, StorageError::Io { .. }), "{error}");
    assert_names(&error, &file);
    let error = A::open_state(&file).unwrap_err();
    assert_names(&error, &file);
    assert_eq!(std::fs::read(&file).unwrap(), b"hello", "the file is left alone");
}

/// A log store path that is a regular file: `Io` naming it, and the file is left alone
/// (the case above for an adapter that has no state store).
pub fn a_log_path_that_is_a_regular_file_is_refused_by_name<A: LogAdapter>() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"hello").unwrap();

    let error = A::open_log(&file).unwrap_err();

    assert!(matches!(error, StorageError::Io { .. }), "{error}");
    assert_names(&error, &file);
    assert_eq!(std::fs::read(&file).unwrap(), b"hello", "the file is left alone");
}

/// A store path below a regular file: `Io` naming the path.
pub fn a_path_that_cannot_be_created_is_refused_by_name<A: LogAdapter>() {
    // A directory below a regular file cannot be created by anyone, root included.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), b"").unwrap();
    let path = dir.path().join("file").join("store");

    let error = A::open_log(&path).unwrap_err();

    assert!(matches!(error, StorageError::Io { .. }), "{error}");
    assert_names(&error, &path);
}

/// An empty read-only store directory: `Io` naming it (skipped when running as root,
/// which writes anyway).
pub fn a_read_only_directory_is_refused_by_name_unless_running_as_root<A: LogAdapter>() {
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

    let error = A::open_log(&path).unwrap_err();

    assert!(matches!(error, StorageError::Io { .. }), "{error}");
    assert_names(&error, &path);
}

/// A directory holding a log store of another adapter, `other` (its crate name), made
/// by `create_other` as `other_log`: adapter `A` refuses it with `Corrupt`, naming the
/// other adapter and its database, and creates nothing beside it.
pub fn a_directory_holding_another_adapters_store_is_refused_by_name<A: LogAdapter>(
    other: &str,
    other_log: &str,
    create_other: impl FnOnce(&Path),
) {
    let dir = tempfile::tempdir().unwrap();
    create_other(dir.path());

    let error = A::open_log(dir.path()).unwrap_err();

    assert!(matches!(error, StorageError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains(other), "{error}");
    assert_names(&error, &dir.path().join(other_log));
    assert!(!dir.path().join(A::LOG).exists(), "nothing was created beside it");
}

/// Opens the log store in `dir`, whose stamp says layout `version`, and expects
/// `Corrupt` naming the version and the log database.
pub fn a_format_version_this_build_does_not_know_is_refused_by_name<A: LogAdapter>(dir: &Path, version: u32) {
    let error = A::open_log(dir).unwrap_err();

    assert!(matches!(error, StorageError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains(&format!("format version {version}")), "{error}");
    assert_names(&error, &dir.join(A::LOG));
}

/// A state store's database renamed to the log's name: refused as the wrong kind,
/// naming the log database.
pub fn a_state_store_in_place_of_a_log_is_refused_by_name<A: Adapter>() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = A::open_state(dir.path()).unwrap();
    state.write_batch(&[], LogId::new(1, 1)).unwrap();
    drop(state);
    std::fs::rename(dir.path().join(A::STATE), dir.path().join(A::LOG)).unwrap();

    let error = A::open_log(dir.path()).unwrap_err();

    assert!(error.to_string().contains("this is a state store, not a log store"), "{error}");
    assert_names(&error, &dir.path().join(A::LOG));
}

/// A second open of a log store that is open: `Io` naming the log database.
pub fn a_store_open_in_another_handle_is_refused_by_name<A: LogAdapter>() {
    let dir = tempfile::tempdir().unwrap();
    let _open = A::open_log(dir.path()).unwrap();

    let error = A::open_log(dir.path()).unwrap_err();

    assert!(matches!(error, StorageError::Io { .. }), "{error}");
    assert_names(&error, &dir.path().join(A::LOG));
}
