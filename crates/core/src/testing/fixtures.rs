//! Entries, payloads and assertions shared by the cases.

use std::fmt::Debug;
use std::ops::RangeInclusive;

use bytes::Bytes;

use super::{LogStoreHarness, StateStoreHarness};
use crate::membership::Membership;
use crate::storage::{LogStore, StorageError};
use crate::types::{Entry, EntryPayload, LogId, LogIndex};

/// One mebibyte: the largest payload the suite writes.
pub const ONE_MEBIBYTE: usize = 1 << 20;

/// A command entry whose payload names its log id, so a misplaced entry is visible.
pub fn command(term: u64, index: u64) -> Entry {
    with_payload(term, index, Bytes::from(format!("t{term}-i{index}")))
}

/// Command entries `indices`, all written in `term`.
pub fn commands(term: u64, indices: RangeInclusive<u64>) -> Vec<Entry> {
    indices.map(|index| command(term, index)).collect()
}

/// A command entry carrying `payload`.
pub fn with_payload(term: u64, index: u64, payload: Bytes) -> Entry {
    Entry { log_id: LogId::new(term, index), payload: EntryPayload::Command(payload) }
}

/// A membership entry of a joint configuration with a learner, the richest payload kind.
pub fn membership(term: u64, index: u64) -> Entry {
    let joint = Membership::from_parts(
        [1, 2, 4].map(crate::NodeId).into(),
        [1, 2, 3].map(crate::NodeId).into(),
        [9].map(crate::NodeId).into(),
    )
    .expect("a valid joint membership");
    Entry { log_id: LogId::new(term, index), payload: EntryPayload::Membership(joint) }
}

/// `len` bytes of a pattern that differs at every position of a 251-byte cycle, so a
/// shifted or truncated payload never compares equal.
pub fn patterned_bytes(len: usize, seed: u8) -> Bytes {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect::<Vec<u8>>().into()
}

/// Opens a new store, failing the case with the adapter's error.
pub fn open_log<H: LogStoreHarness>(harness: &mut H) -> H::Store {
    harness.open().unwrap_or_else(|error| panic!("the harness opens a new log store: {error}"))
}

/// Reopens a log store, failing the case with the adapter's error.
pub fn reopen_log<H: LogStoreHarness>(harness: &mut H, store: H::Store) -> H::Store {
    harness.reopen(store).unwrap_or_else(|error| panic!("the harness reopens the log store: {error}"))
}

/// Opens a new state store, failing the case with the adapter's error.
pub fn open_state<H: StateStoreHarness>(harness: &mut H) -> H::Store {
    harness.open().unwrap_or_else(|error| panic!("the harness opens a new state store: {error}"))
}

/// Reopens a state store, failing the case with the adapter's error.
pub fn reopen_state<H: StateStoreHarness>(harness: &mut H, store: H::Store) -> H::Store {
    harness.reopen(store).unwrap_or_else(|error| panic!("the harness reopens the state store: {error}"))
}

/// Appends and syncs, failing the case on any error.
pub fn append_synced(store: &mut impl LogStore, entries: &[Entry]) {
    store.append(entries).expect("append");
    store.sync().expect("sync");
}

/// Every entry of the log, from the first held one to the last.
pub fn all_entries(store: &impl LogStore) -> Vec<Entry> {
    let first = store.last_purged().expect("last_purged").index.next();
    let last = store.last_log_id().expect("last_log_id").index;
    store.entries(first..=last).expect("every held entry reads")
}

/// Asserts `result` is `Compacted { index, first_available }`.
pub fn assert_compacted<T: Debug>(result: Result<T, StorageError>, index: u64, first_available: u64, what: &str) {
    match result {
        Err(StorageError::Compacted { index: got, first_available: first }) => {
            assert_eq!((got, first), (LogIndex(index), LogIndex(first_available)), "{what}");
        }
        other => panic!("{what}: expected Compacted at {index} (first available {first_available}), got {other:?}"),
    }
}

/// Asserts `result` is `Unavailable { index, last }`.
pub fn assert_unavailable<T: Debug>(result: Result<T, StorageError>, index: u64, last: u64, what: &str) {
    match result {
        Err(StorageError::Unavailable { index: got, last: got_last }) => {
            assert_eq!((got, got_last), (LogIndex(index), LogIndex(last)), "{what}");
        }
        other => panic!("{what}: expected Unavailable at {index} (last {last}), got {other:?}"),
    }
}

/// Asserts `result` is `Misuse`.
pub fn assert_misuse<T: Debug>(result: Result<T, StorageError>, what: &str) {
    assert!(matches!(result, Err(StorageError::Misuse(_))), "{what}: expected Misuse, got {result:?}");
}
