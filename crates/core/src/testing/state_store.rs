//! State store cases: atomic batches with their applied id, point and range reads,
//! and snapshot export / import in the portable format, within one adapter and across
//! adapters.

use bytes::Bytes;

use super::StateStoreHarness;
use super::fixtures::{ONE_MEBIBYTE, assert_misuse, open_state, patterned_bytes, reopen_state};
use crate::storage::{StateStore, StateWrite, StorageError, encode_export};
use crate::types::LogId;

fn put(key: &[u8], value: &[u8]) -> StateWrite {
    StateWrite::Put { key: Bytes::copy_from_slice(key), value: Bytes::copy_from_slice(value) }
}

fn delete(key: &[u8]) -> StateWrite {
    StateWrite::Delete { key: Bytes::copy_from_slice(key) }
}

fn pair(key: &[u8], value: &[u8]) -> (Bytes, Bytes) {
    (Bytes::copy_from_slice(key), Bytes::copy_from_slice(value))
}

fn value(store: &impl StateStore, key: &[u8]) -> Option<Bytes> {
    store.get(key).expect("get")
}

fn everything(store: &(impl StateStore + ?Sized)) -> Vec<(Bytes, Bytes)> {
    store.range(b"", None, 0).expect("a full scan")
}

/// The data set of the export cases: an empty key, an empty value, binary keys that
/// sort around a prefix, and a 1 MiB value.
fn sample_writes() -> Vec<StateWrite> {
    vec![
        put(b"", b"empty key"),
        put(b"a", b""),
        put(b"a\x00", b"after a"),
        put(b"ab", b"2"),
        put(b"b", b"3"),
        put(&[0xff, 0xff], b"last"),
        put(b"big", &patterned_bytes(ONE_MEBIBYTE, 7)),
    ]
}

/// A new store is empty and has applied nothing.
pub fn a_new_state_store_is_empty<H: StateStoreHarness>(harness: &mut H) {
    let store = open_state(harness);
    assert_eq!(store.applied().unwrap(), LogId::default());
    assert_eq!(value(&store, b"a"), None);
    assert!(everything(&store).is_empty());
    let (applied, pairs) = crate::storage::decode_export(&store.export().unwrap()).unwrap();
    assert_eq!((applied, pairs), (LogId::default(), vec![]), "an empty store exports nothing");
}

/// A batch applies its writes in order (a later write to the same key wins; deleting
/// an absent key is fine) and records its applied id.
pub fn a_batch_applies_puts_and_deletes_in_order_with_its_applied_id<H: StateStoreHarness>(harness: &mut H) {
    let mut store = open_state(harness);
    store.write_batch(&[put(b"a", b"1"), put(b"b", b"2"), put(b"c", b"3")], LogId::new(1, 3)).unwrap();
    store
        .write_batch(
            &[put(b"a", b"9"), delete(b"b"), delete(b"absent"), put(b"b", b"7"), delete(b"c")],
            LogId::new(1, 4),
        )
        .unwrap();

    assert_eq!(store.applied().unwrap(), LogId::new(1, 4));
    assert_eq!(everything(&store), vec![pair(b"a", b"9"), pair(b"b", b"7")]);
    store.write_batch(&[], LogId::new(2, 5)).expect("an empty batch records its applied id");
    assert_eq!(store.applied().unwrap(), LogId::new(2, 5));
}

/// A batch whose applied id is below the current one is `Misuse` and changes nothing;
/// an equal id is accepted.
pub fn an_applied_id_below_the_current_one_is_misuse_and_changes_nothing<H: StateStoreHarness>(harness: &mut H) {
    let mut store = open_state(harness);
    store.write_batch(&[put(b"a", b"1")], LogId::new(2, 5)).unwrap();

    assert_misuse(store.write_batch(&[put(b"a", b"2")], LogId::new(2, 4)), "a lower index");
    assert_misuse(store.write_batch(&[put(b"a", b"2")], LogId::new(1, 9)), "a lower term");
    assert_eq!(value(&store, b"a"), Some(Bytes::from_static(b"1")));
    assert_eq!(store.applied().unwrap(), LogId::new(2, 5));
    store.write_batch(&[put(b"a", b"3")], LogId::new(2, 5)).expect("the same id again");
    assert_eq!(value(&store, b"a"), Some(Bytes::from_static(b"3")));
}

/// `range` starts at `start` inclusive, stops before `end`, runs to the last key when
/// `end` is `None`, honours `limit` (0 = none), and is empty when inverted.
pub fn range_honours_inclusive_start_exclusive_end_and_limit<H: StateStoreHarness>(harness: &mut H) {
    let mut store = open_state(harness);
    store.write_batch(&sample_writes(), LogId::new(1, 1)).unwrap();
    let keys = |pairs: Vec<(Bytes, Bytes)>| pairs.into_iter().map(|(key, _)| key.to_vec()).collect::<Vec<_>>();

    assert_eq!(keys(store.range(b"a", Some(b"b"), 0).unwrap()), [&b"a"[..], b"a\x00", b"ab"]);
    assert_eq!(keys(store.range(b"a", Some(b"b"), 2).unwrap()), [&b"a"[..], b"a\x00"]);
    assert_eq!(keys(store.range(b"ab", None, 0).unwrap()), [&b"ab"[..], b"b", b"big", &[0xff, 0xff]]);
    assert_eq!(keys(store.range(b"", Some(b"a"), 0).unwrap()), [&b""[..]]);
    assert_eq!(keys(store.range(b"", None, 1).unwrap()), [&b""[..]]);
    assert!(store.range(b"b", Some(b"a"), 0).unwrap().is_empty(), "an inverted range");
    assert!(store.range(b"b", Some(b"b"), 0).unwrap().is_empty(), "an empty range");
    assert!(store.range(&[0xff, 0xff, 0], None, 0).unwrap().is_empty(), "past the last key");
}

/// Every batch that returned survives a reopen, with its applied id.
pub fn batches_survive_a_reopen<H: StateStoreHarness>(harness: &mut H) {
    let mut store = open_state(harness);
    store.write_batch(&[put(b"a", b"1"), put(b"b", b"2")], LogId::new(1, 1)).unwrap();
    store.write_batch(&[delete(b"a"), put(b"c", b"3")], LogId::new(1, 2)).unwrap();

    let store = reopen_state(harness, store);

    assert_eq!(store.applied().unwrap(), LogId::new(1, 2));
    assert_eq!(everything(&store), vec![pair(b"b", b"2"), pair(b"c", b"3")]);
}

/// Deferred batches are visible at once, keep the applied-id rule, and survive a reopen once
/// synced (a store with nothing deferred syncs as a no-op).
pub fn deferred_batches_are_visible_at_once_and_durable_after_sync<H: StateStoreHarness>(harness: &mut H) {
    let mut store = open_state(harness);
    store.sync().expect("a sync with nothing deferred");
    store.write_batch_deferred(&[put(b"a", b"1"), put(b"b", b"2")], LogId::new(1, 1)).unwrap();
    assert_eq!(value(&store, b"a"), Some(Bytes::from_static(b"1")), "readers see a deferred batch at once");
    assert_eq!(store.applied().unwrap(), LogId::new(1, 1));
    store.write_batch_deferred(&[delete(b"a")], LogId::new(1, 2)).unwrap();
    assert_misuse(store.write_batch_deferred(&[put(b"z", b"9")], LogId::new(1, 1)), "an older applied id");
    store.sync().expect("sync");

    let store = reopen_state(harness, store);

    assert_eq!(store.applied().unwrap(), LogId::new(1, 2));
    assert_eq!(everything(&store), vec![pair(b"b", b"2")]);
}

/// Empty and 1 MiB values, and an empty key, round-trip through a reopen.
pub fn empty_and_one_mebibyte_values_round_trip<H: StateStoreHarness>(harness: &mut H) {
    let mut store = open_state(harness);
    let big = patterned_bytes(ONE_MEBIBYTE, 3);
    store.write_batch(&[put(b"", b""), put(b"big", &big), put(b"empty", b"")], LogId::new(1, 1)).unwrap();

    let store = reopen_state(harness, store);

    assert_eq!(value(&store, b""), Some(Bytes::new()));
    assert_eq!(value(&store, b"big"), Some(big));
    assert_eq!(value(&store, b"empty"), Some(Bytes::new()));
}

/// An export imported into a fresh store of the same adapter reproduces the content
/// and applied id exactly: the two stores export the same bytes.
pub fn export_then_import_into_a_fresh_store_reproduces_it_exactly<H: StateStoreHarness>(harness: &mut H) {
    let mut source = open_state(harness);
    source.write_batch(&sample_writes(), LogId::new(3, 9)).unwrap();
    let export = source.export().unwrap();
    drop(source);

    let mut target = open_state(harness);
    target.import(&export).unwrap();

    assert_eq!(target.applied().unwrap(), LogId::new(3, 9));
    assert_eq!(target.export().unwrap(), export);
}

/// An import replaces everything (keys absent from the export disappear, the applied
/// id may go back) and survives a reopen.
pub fn import_replaces_the_whole_content_and_survives_a_reopen<H: StateStoreHarness>(harness: &mut H) {
    let mut store = open_state(harness);
    store.write_batch(&[put(b"old", b"1"), put(b"kept", b"old value")], LogId::new(5, 50)).unwrap();
    let export = encode_export(LogId::new(4, 40), &[pair(b"kept", b"new value"), pair(b"new", b"2")]);

    store.import(&export).unwrap();
    let store = reopen_state(harness, store);

    assert_eq!(store.applied().unwrap(), LogId::new(4, 40));
    assert_eq!(everything(&store), vec![pair(b"kept", b"new value"), pair(b"new", b"2")]);
}

/// A truncated, bit-flipped or foreign import is `Corrupt` and leaves the content as
/// it was.
pub fn a_malformed_import_is_corrupt_and_changes_nothing<H: StateStoreHarness>(harness: &mut H) {
    let mut store = open_state(harness);
    store.write_batch(&[put(b"a", b"1")], LogId::new(1, 1)).unwrap();
    let export = encode_export(LogId::new(2, 2), &[pair(b"b", b"2")]);
    let mut flipped = export.to_vec();
    flipped[30] ^= 0x10;

    for (what, data) in [
        ("truncated", &export[..export.len() - 1]),
        ("bit-flipped", &flipped[..]),
        ("empty", &[][..]),
        ("not an export", &b"DENGST99 something else entirely, long enough"[..]),
    ] {
        let result = store.import(data);
        assert!(matches!(result, Err(StorageError::Corrupt { .. })), "{what}: {result:?}");
    }

    let store = reopen_state(harness, store);
    assert_eq!(store.applied().unwrap(), LogId::new(1, 1));
    assert_eq!(everything(&store), vec![pair(b"a", b"1")]);
}

/// Imports another adapter's export and exports back to it: `foreign` is a fresh store
/// of a different adapter. Both directions reproduce the content exactly, and both
/// adapters export identical bytes for identical content.
pub fn imports_and_exports_across_adapters<H: StateStoreHarness>(harness: &mut H, foreign: &mut dyn StateStore) {
    foreign.write_batch(&sample_writes(), LogId::new(2, 7)).expect("the foreign store takes the sample");
    let foreign_export = foreign.export().expect("the foreign store exports");

    let mut store = open_state(harness);
    store.import(&foreign_export).expect("this adapter imports the foreign export");
    assert_eq!(store.applied().unwrap(), LogId::new(2, 7));
    assert_eq!(everything(&store), everything(foreign));
    assert_eq!(store.export().unwrap(), foreign_export, "identical content exports identical bytes");

    store.write_batch(&[delete(b"big"), put(b"z", b"from this adapter")], LogId::new(3, 8)).unwrap();
    foreign.import(&store.export().unwrap()).expect("the foreign store imports this adapter's export");
    assert_eq!(foreign.applied().unwrap(), LogId::new(3, 8));
    assert_eq!(everything(foreign), everything(&store));
}
