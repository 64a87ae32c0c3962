//! Scenarios for `MemStateStore`: batches, ranges, and snapshot export and import.

use bytes::Bytes;
use d_engine_core::LogId;
use d_engine_core::storage::{StateStore, StateWrite, StorageError};
use d_engine_memory::MemStateStore;

fn put(key: &'static str, value: &'static str) -> StateWrite {
    StateWrite::Put { key: Bytes::from_static(key.as_bytes()), value: Bytes::from_static(value.as_bytes()) }
}

fn delete(key: &'static str) -> StateWrite {
    StateWrite::Delete { key: Bytes::from_static(key.as_bytes()) }
}

fn pair(key: &'static str, value: &'static str) -> (Bytes, Bytes) {
    (Bytes::from_static(key.as_bytes()), Bytes::from_static(value.as_bytes()))
}

/// A store holding a=1, b=2, c=3 applied at 1-3.
fn store_of_three() -> MemStateStore {
    let mut store = MemStateStore::new();
    store.write_batch(&[put("a", "1"), put("b", "2"), put("c", "3")], LogId::new(1, 3)).unwrap();
    store
}

#[test]
fn a_batch_applies_in_order_and_records_applied() {
    let mut store = store_of_three();
    store
        .write_batch(&[put("a", "9"), delete("b"), delete("absent"), put("b", "7"), delete("c")], LogId::new(1, 4))
        .unwrap();

    assert_eq!(store.applied().unwrap(), LogId::new(1, 4));
    assert_eq!(store.get(b"a").unwrap(), Some(Bytes::from_static(b"9")));
    assert_eq!(store.get(b"b").unwrap(), Some(Bytes::from_static(b"7")));
    assert_eq!(store.get(b"c").unwrap(), None);
}

#[test]
fn a_batch_below_applied_is_misuse_and_changes_nothing() {
    let mut store = store_of_three();
    assert!(matches!(store.write_batch(&[put("a", "x")], LogId::new(1, 2)), Err(StorageError::Misuse(_))));
    assert!(matches!(store.write_batch(&[put("a", "x")], LogId::new(0, 9)), Err(StorageError::Misuse(_))));
    assert_eq!(store.get(b"a").unwrap(), Some(Bytes::from_static(b"1")));
    assert_eq!(store.applied().unwrap(), LogId::new(1, 3));
    store.write_batch(&[], LogId::new(1, 3)).unwrap();
}

#[test]
fn range_is_half_open_ordered_and_limited() {
    let store = store_of_three();
    assert_eq!(store.range(b"a", Some(b"c"), 0).unwrap(), vec![pair("a", "1"), pair("b", "2")]);
    assert_eq!(store.range(b"b", None, 0).unwrap(), vec![pair("b", "2"), pair("c", "3")]);
    assert_eq!(store.range(b"", None, 2).unwrap(), vec![pair("a", "1"), pair("b", "2")]);
    assert_eq!(store.range(b"b", Some(b"b"), 0).unwrap(), Vec::new());
    assert_eq!(store.range(b"c", Some(b"a"), 0).unwrap(), Vec::new(), "an inverted range is empty");
}

#[test]
fn export_import_round_trip() {
    let source = store_of_three();
    let exported = source.export().unwrap();

    let mut target = MemStateStore::new();
    target.write_batch(&[put("stale", "x")], LogId::new(1, 1)).unwrap();
    target.import(&exported).unwrap();

    assert_eq!(target.applied().unwrap(), LogId::new(1, 3));
    assert_eq!(target.range(b"", None, 0).unwrap(), source.range(b"", None, 0).unwrap());
    assert_eq!(target.get(b"stale").unwrap(), None, "import replaces the whole content");
}

#[test]
fn import_of_garbage_keeps_content() {
    let mut store = store_of_three();
    let before = store.range(b"", None, 0).unwrap();
    let mut truncated = MemStateStore::new().export().unwrap().to_vec();
    truncated.pop();

    for garbage in [&b"not an export"[..], &[], &truncated] {
        assert!(matches!(store.import(garbage), Err(StorageError::Corrupt { .. })));
    }

    assert_eq!(store.range(b"", None, 0).unwrap(), before);
    assert_eq!(store.applied().unwrap(), LogId::new(1, 3));
}
