//! Scenarios for `MemLogStore`: the ranges and errors of the `LogStore` contract,
//! and what a crash keeps.

use bytes::Bytes;
use d_engine_core::storage::{LogStore, RecoveredLog, StorageError};
use d_engine_core::{Entry, EntryPayload, HardState, LogId, LogIndex, NodeId, Term};
use d_engine_memory::MemLogStore;

fn entry(term: u64, index: u64) -> Entry {
    Entry { log_id: LogId::new(term, index), payload: EntryPayload::Command(Bytes::from(format!("{term}-{index}"))) }
}

/// Entries `indices` written in `term`.
fn entries(term: u64, indices: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    indices.map(|index| entry(term, index)).collect()
}

/// A log holding entries 1..=5 of term 1, synced.
fn synced_log_of_five() -> MemLogStore {
    let mut log = MemLogStore::new();
    log.append(&entries(1, 1..=5)).unwrap();
    log.sync().unwrap();
    log
}

#[test]
fn a_new_store_is_empty_and_starts_at_index_one() {
    let mut log = MemLogStore::new();
    assert_eq!(log.hard_state().unwrap(), HardState::default());
    assert_eq!(log.last_purged().unwrap(), LogId::default());
    assert_eq!(log.last_log_id().unwrap(), LogId::default());
    assert_eq!(log.term_of(LogIndex(0)).unwrap(), Term(0));
    assert!(matches!(
        log.term_of(LogIndex(1)),
        Err(StorageError::Unavailable { index: LogIndex(1), last: LogIndex(0) })
    ));
    assert!(log.append(&entries(1, 2..=2)).is_err(), "the first entry has index 1");
}

#[test]
fn unsynced_append_is_lost_on_crash() {
    let mut log = synced_log_of_five();
    log.append(&entries(2, 6..=7)).unwrap();
    assert_eq!(log.last_log_id().unwrap(), LogId::new(2, 7), "an append is visible before it is synced");
    assert_eq!(log.durable_last_log_id(), LogId::new(1, 5));

    log.crash();

    assert_eq!(log.last_log_id().unwrap(), LogId::new(1, 5));
    assert_eq!(log.entries(LogIndex(1)..=LogIndex(5)).unwrap(), entries(1, 1..=5));
    assert!(matches!(log.term_of(LogIndex(6)), Err(StorageError::Unavailable { .. })));
}

#[test]
fn synced_hard_state_survives_crash() {
    let mut log = MemLogStore::new();
    let voted = HardState { term: Term(3), vote: Some(NodeId(2)), commit: LogIndex(0) };
    log.save_hard_state(&voted).unwrap();
    log.sync().unwrap();
    log.save_hard_state(&HardState { term: Term(4), vote: None, commit: LogIndex(0) }).unwrap();

    log.crash();

    assert_eq!(log.hard_state().unwrap(), voted);
    assert_eq!(log.durable_hard_state(), voted);
}

#[test]
fn truncate_then_crash_restores_durable_suffix() {
    let mut log = synced_log_of_five();
    log.truncate_suffix(LogIndex(3)).unwrap();
    log.append(&entries(2, 3..=3)).unwrap();
    assert_eq!(log.last_log_id().unwrap(), LogId::new(2, 3));

    log.crash();

    assert_eq!(log.last_log_id().unwrap(), LogId::new(1, 5));
    assert_eq!(log.entries(LogIndex(3)..=LogIndex(5)).unwrap(), entries(1, 3..=5));
}

#[test]
fn synced_truncate_and_overwrite_survive_crash() {
    let mut log = synced_log_of_five();
    log.truncate_suffix(LogIndex(4)).unwrap();
    log.append(&entries(2, 4..=6)).unwrap();
    log.sync().unwrap();
    log.append(&entries(2, 7..=7)).unwrap();

    log.crash();

    let mut expected = entries(1, 1..=3);
    expected.extend(entries(2, 4..=6));
    assert_eq!(log.durable_entries(), expected);
    assert_eq!(log.entries(LogIndex(1)..=LogIndex(6)).unwrap(), expected);
}

#[test]
fn reading_a_purged_index_is_compacted_error() {
    let mut log = synced_log_of_five();
    log.purge_prefix(LogId::new(1, 3)).unwrap();

    let compacted = |error: StorageError| {
        matches!(error, StorageError::Compacted { index: LogIndex(2), first_available: LogIndex(4) })
    };
    assert!(compacted(log.term_of(LogIndex(2)).unwrap_err()));
    assert!(compacted(log.entries(LogIndex(2)..=LogIndex(5)).unwrap_err()));
    assert!(
        matches!(log.entries(LogIndex(3)..=LogIndex(4)), Err(StorageError::Compacted { index: LogIndex(3), .. })),
        "a range starting at the purged entry itself is compacted",
    );
    assert_eq!(log.term_of(LogIndex(3)).unwrap(), Term(1), "the last purged entry keeps its term");
    assert_eq!(log.term_of(LogIndex(0)).unwrap(), Term(0));
    assert_eq!(log.entries(LogIndex(4)..=LogIndex(5)).unwrap(), entries(1, 4..=5));
}

#[test]
fn reading_past_the_end_is_unavailable() {
    let log = synced_log_of_five();
    assert!(matches!(
        log.entries(LogIndex(4)..=LogIndex(6)),
        Err(StorageError::Unavailable { index: LogIndex(6), last: LogIndex(5) })
    ));
    assert!(matches!(log.term_of(LogIndex(6)), Err(StorageError::Unavailable { .. })));
    assert_eq!(log.entries(LogIndex(9)..=LogIndex(2)).unwrap(), Vec::new(), "an empty range is no error");
}

#[test]
fn append_with_gap_is_misuse() {
    let mut log = synced_log_of_five();
    assert!(matches!(log.append(&entries(1, 7..=8)), Err(StorageError::Misuse(_))));
    assert!(matches!(log.append(&entries(1, 5..=6)), Err(StorageError::Misuse(_))), "no overlap either");
    let with_inner_gap = [entry(1, 6), entry(1, 8)];
    assert!(matches!(log.append(&with_inner_gap), Err(StorageError::Misuse(_))));
    assert_eq!(log.last_log_id().unwrap(), LogId::new(1, 5), "a rejected append changes nothing");
    log.append(&[]).unwrap();
}

#[test]
fn truncating_a_purged_index_is_misuse() {
    let mut log = synced_log_of_five();
    log.purge_prefix(LogId::new(1, 2)).unwrap();
    assert!(matches!(log.truncate_suffix(LogIndex(2)), Err(StorageError::Misuse(_))));
    assert!(matches!(log.truncate_suffix(LogIndex(1)), Err(StorageError::Misuse(_))));
    log.truncate_suffix(LogIndex(9)).unwrap();
    assert_eq!(log.last_log_id().unwrap(), LogId::new(1, 5), "truncating past the end is a no-op");
    log.truncate_suffix(LogIndex(3)).unwrap();
    assert_eq!(log.last_log_id().unwrap(), LogId::new(1, 2), "an empty log answers its last purged id");
}

#[test]
fn purge_past_the_end_continues_after_snapshot_index() {
    let mut log = synced_log_of_five();
    let snapshot = LogId::new(3, 10);
    log.purge_prefix(snapshot).unwrap();
    assert_eq!(log.last_purged().unwrap(), snapshot);
    assert_eq!(log.last_log_id().unwrap(), snapshot);
    assert_eq!(log.term_of(LogIndex(10)).unwrap(), Term(3));

    assert!(matches!(log.append(&entries(3, 6..=6)), Err(StorageError::Misuse(_))));
    log.append(&entries(3, 11..=12)).unwrap();
    log.sync().unwrap();
    log.crash();

    assert_eq!(log.entries(LogIndex(11)..=LogIndex(12)).unwrap(), entries(3, 11..=12));
    assert_eq!(log.last_purged().unwrap(), snapshot);
}

#[test]
fn purging_at_or_below_last_purged_is_a_no_op() {
    let mut log = synced_log_of_five();
    log.purge_prefix(LogId::new(1, 3)).unwrap();
    log.purge_prefix(LogId::new(1, 2)).unwrap();
    log.purge_prefix(LogId::new(1, 3)).unwrap();
    assert_eq!(log.last_purged().unwrap(), LogId::new(1, 3));
    assert_eq!(log.entries(LogIndex(4)..=LogIndex(5)).unwrap(), entries(1, 4..=5));
}

#[test]
fn unsynced_purge_is_lost_on_crash() {
    let mut log = synced_log_of_five();
    log.purge_prefix(LogId::new(1, 4)).unwrap();
    log.crash();
    assert_eq!(log.last_purged().unwrap(), LogId::default());
    assert_eq!(log.entries(LogIndex(1)..=LogIndex(5)).unwrap(), entries(1, 1..=5));
}

#[test]
fn a_recovered_log_reads_the_durable_shape() {
    let mut log = MemLogStore::new();
    log.append(&entries(1, 1..=3)).unwrap();
    log.append(&entries(2, 4..=6)).unwrap();
    log.save_hard_state(&HardState { term: Term(2), vote: Some(NodeId(1)), commit: LogIndex(5) }).unwrap();
    log.sync().unwrap();
    log.append(&entries(3, 7..=9)).unwrap();
    log.crash();

    let recovered = RecoveredLog::read(&log).unwrap();

    assert_eq!(recovered.term_starts[..2], [LogId::new(1, 1), LogId::new(2, 4)], "the term boundaries");
    assert_eq!(recovered.last_log_id, LogId::new(2, 6));
    assert_eq!(recovered.hard_state.commit, LogIndex(5));
}

#[test]
fn extreme_indices_are_errors_not_panics() {
    let mut log = MemLogStore::new();
    let end = LogId { term: Term(1), index: LogIndex(u64::MAX) };
    log.purge_prefix(end).unwrap();
    log.sync().unwrap();
    assert!(matches!(log.append(&entries(1, 1..=1)), Err(StorageError::Misuse(_))));
    assert!(matches!(log.term_of(LogIndex(1)), Err(StorageError::Compacted { .. })));
    assert!(matches!(log.entries(LogIndex(0)..=end.index), Err(StorageError::Compacted { .. })));
    assert!(matches!(log.truncate_suffix(end.index), Err(StorageError::Misuse(_))));
    assert_eq!(log.term_of(end.index).unwrap(), Term(1));
}
