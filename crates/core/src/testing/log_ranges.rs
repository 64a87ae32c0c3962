//! Log store cases: what reads return at the edges of the log. Every out-of-range read
//! is a typed error (`Compacted` below the log, `Unavailable` past it), never a panic.

use super::LogStoreHarness;
use super::fixtures::{all_entries, append_synced, assert_compacted, assert_unavailable, commands, open_log};
use crate::storage::LogStore;
use crate::types::{HardState, LogId, LogIndex, Term};

/// A new store has the default hard state, no entry, nothing purged, and takes its
/// first entry at index 1.
pub fn a_new_store_is_empty_and_starts_at_index_one<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);

    assert_eq!(store.hard_state().unwrap(), HardState::default());
    assert_eq!(store.last_purged().unwrap(), LogId::default());
    assert_eq!(store.last_log_id().unwrap(), LogId::default());
    assert_eq!(store.term_of(LogIndex(0)).unwrap(), Term(0), "index 0 always has term 0");
    assert_unavailable(store.term_of(LogIndex(1)), 1, 0, "term of the first index of an empty log");
    assert_unavailable(store.entries(LogIndex(1)..=LogIndex(1)), 1, 0, "the first entry of an empty log");
    assert!(all_entries(&store).is_empty());
    assert!(store.append(&commands(1, 2..=2)).is_err(), "the first entry has index 1");
    append_synced(&mut store, &commands(1, 1..=1));
    assert_eq!(store.last_log_id().unwrap(), LogId::new(1, 1));
}

/// `term_of` answers every held index, the last purged index (with the purged term),
/// and index 0.
pub fn term_of_answers_every_held_index_and_the_last_purged_one<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    append_synced(&mut store, &commands(1, 1..=3));
    append_synced(&mut store, &commands(3, 4..=6));
    store.purge_prefix(LogId::new(1, 2)).unwrap();

    assert_eq!(store.term_of(LogIndex(0)).unwrap(), Term(0));
    assert_eq!(store.term_of(LogIndex(2)).unwrap(), Term(1), "the last purged entry keeps its term");
    assert_eq!(store.term_of(LogIndex(3)).unwrap(), Term(1));
    assert_eq!(store.term_of(LogIndex(4)).unwrap(), Term(3));
    assert_eq!(store.term_of(LogIndex(6)).unwrap(), Term(3));
}

/// Reading below the purged prefix is `Compacted` with the first index still held;
/// a range that starts at the purged entry itself is compacted too.
pub fn reading_a_purged_index_is_compacted_never_a_panic<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    append_synced(&mut store, &commands(1, 1..=5));
    store.purge_prefix(LogId::new(1, 3)).unwrap();

    assert_compacted(store.term_of(LogIndex(1)), 1, 4, "term of a purged index");
    assert_compacted(store.entries(LogIndex(2)..=LogIndex(5)), 2, 4, "a range starting in the purged prefix");
    assert_compacted(store.entries(LogIndex(3)..=LogIndex(4)), 3, 4, "a range starting at the last purged entry");
    assert_compacted(store.entries(LogIndex(0)..=LogIndex(0)), 0, 4, "index 0 holds no entry");
    assert_compacted(
        store.entries(LogIndex(1)..=LogIndex(u64::MAX)),
        1,
        4,
        "Compacted wins when the range is also past the end",
    );
    assert_eq!(store.entries(LogIndex(4)..=LogIndex(5)).unwrap(), commands(1, 4..=5));
}

/// Reading past the last entry is `Unavailable`, naming the range's end and the last
/// index, up to the largest index there is.
pub fn reading_past_the_end_is_unavailable_never_a_panic<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    append_synced(&mut store, &commands(1, 1..=5));

    assert_unavailable(store.term_of(LogIndex(6)), 6, 5, "term just past the end");
    assert_unavailable(store.term_of(LogIndex(u64::MAX)), u64::MAX, 5, "term of the largest index");
    assert_unavailable(store.entries(LogIndex(4)..=LogIndex(6)), 6, 5, "a range running past the end");
    assert_unavailable(store.entries(LogIndex(7)..=LogIndex(9)), 9, 5, "a range wholly past the end");
    assert_unavailable(store.entries(LogIndex(u64::MAX)..=LogIndex(u64::MAX)), u64::MAX, 5, "the largest index");
    assert_eq!(store.entries(LogIndex(1)..=LogIndex(5)).unwrap(), commands(1, 1..=5));
}

/// A range whose start is above its end reads as no entries, wherever it lies.
pub fn an_empty_range_reads_as_no_entries<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    append_synced(&mut store, &commands(1, 1..=5));
    store.purge_prefix(LogId::new(1, 2)).unwrap();

    #[allow(clippy::reversed_empty_ranges)]
    for (start, end) in [(4, 3), (1, 0), (9, 8), (u64::MAX, 0)] {
        let range = LogIndex(start)..=LogIndex(end);
        assert!(store.entries(range).unwrap().is_empty(), "{start}..={end} is empty");
    }
}
