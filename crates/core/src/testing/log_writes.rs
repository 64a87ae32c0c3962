//! Log store cases: append, truncate, purge and hard state, as reads see them at once
//! (before any sync).

use super::LogStoreHarness;
use super::fixtures::{
    all_entries, append_synced, assert_compacted, assert_misuse, assert_unavailable, command, commands, open_log,
};
use crate::storage::LogStore;
use crate::types::{HardState, LogId, LogIndex, NodeId, Term};

/// An append with a gap, an overlap, a repeated index or a falling term is `Misuse`,
/// and a refused append changes nothing: not even its valid first entries.
pub fn append_refuses_a_gap_an_overlap_or_a_falling_term_and_changes_nothing<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    append_synced(&mut store, &commands(2, 1..=3));

    assert_misuse(store.append(&commands(2, 5..=5)), "a gap after the last entry");
    assert_misuse(store.append(&commands(2, 3..=4)), "an overlap with the last entry");
    assert_misuse(store.append(&[command(2, 4), command(2, 6)]), "a gap inside the batch");
    assert_misuse(store.append(&[command(2, 4), command(2, 4)]), "a repeated index inside the batch");
    assert_misuse(store.append(&commands(1, 4..=4)), "a term below the last entry's");
    assert_misuse(store.append(&[command(3, 4), command(2, 5)]), "a falling term inside the batch");

    assert_eq!(store.last_log_id().unwrap(), LogId::new(2, 3));
    assert_eq!(all_entries(&store), commands(2, 1..=3));
    store.append(&[]).expect("an empty append is a no-op");
    store.append(&[command(2, 4), command(5, 5)]).expect("terms may jump");
    assert_eq!(store.last_log_id().unwrap(), LogId::new(5, 5));
}

/// Truncating removes every entry from the given index on; the log continues there,
/// in a later term.
pub fn truncate_suffix_removes_the_tail_and_the_log_continues_from_there<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    append_synced(&mut store, &commands(1, 1..=5));

    store.truncate_suffix(LogIndex(3)).unwrap();
    assert_eq!(store.last_log_id().unwrap(), LogId::new(1, 2));
    assert_unavailable(store.term_of(LogIndex(3)), 3, 2, "a truncated index");
    assert_unavailable(store.entries(LogIndex(1)..=LogIndex(3)), 3, 2, "a range reaching a truncated index");

    store.append(&commands(2, 3..=4)).unwrap();
    let mut expected = commands(1, 1..=2);
    expected.extend(commands(2, 3..=4));
    assert_eq!(all_entries(&store), expected);
    assert_eq!(store.term_of(LogIndex(3)).unwrap(), Term(2));

    store.truncate_suffix(LogIndex(1)).unwrap();
    assert_eq!(store.last_log_id().unwrap(), LogId::default(), "truncating from 1 empties the log");
    store.append(&commands(3, 1..=1)).unwrap();
    assert_eq!(all_entries(&store), commands(3, 1..=1));
}

/// Truncating at or below the purged prefix is `Misuse` (purged entries are committed);
/// truncating past the last entry is a no-op.
pub fn truncating_purged_entries_is_misuse_and_past_the_end_is_a_no_op<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    append_synced(&mut store, &commands(1, 1..=5));
    store.purge_prefix(LogId::new(1, 2)).unwrap();

    assert_misuse(store.truncate_suffix(LogIndex(2)), "truncating the last purged entry");
    assert_misuse(store.truncate_suffix(LogIndex(1)), "truncating inside the purged prefix");
    assert_misuse(store.truncate_suffix(LogIndex(0)), "truncating from index 0");
    store.truncate_suffix(LogIndex(6)).expect("just past the end is a no-op");
    store.truncate_suffix(LogIndex(u64::MAX)).expect("far past the end is a no-op");
    assert_eq!(all_entries(&store), commands(1, 3..=5));
    store.truncate_suffix(LogIndex(3)).expect("the first held entry may be truncated");
    assert_eq!(store.last_log_id().unwrap(), LogId::new(1, 2), "an emptied log ends at its purged id");
}

/// Purging removes the prefix up to the given id, which `last_purged` then answers.
pub fn purge_prefix_keeps_the_tail_and_remembers_the_purged_id<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    append_synced(&mut store, &commands(1, 1..=3));
    append_synced(&mut store, &commands(2, 4..=6));

    store.purge_prefix(LogId::new(2, 4)).unwrap();

    assert_eq!(store.last_purged().unwrap(), LogId::new(2, 4));
    assert_eq!(store.last_log_id().unwrap(), LogId::new(2, 6));
    assert_eq!(all_entries(&store), commands(2, 5..=6));
    assert_compacted(store.entries(LogIndex(4)..=LogIndex(6)), 4, 5, "the purged entry itself");
    store.append(&commands(2, 7..=7)).unwrap();
    assert_eq!(all_entries(&store), commands(2, 5..=7));
}

/// Purging past the last entry (after a snapshot install) empties the log, which then
/// continues right after the purged id.
pub fn purging_past_the_end_empties_the_log_which_continues_after_the_purged_id<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    append_synced(&mut store, &commands(1, 1..=3));

    store.purge_prefix(LogId::new(4, 10)).unwrap();

    assert_eq!(store.last_purged().unwrap(), LogId::new(4, 10));
    assert_eq!(store.last_log_id().unwrap(), LogId::new(4, 10), "an empty log ends at its purged id");
    assert_eq!(store.term_of(LogIndex(10)).unwrap(), Term(4));
    assert_compacted(store.term_of(LogIndex(3)), 3, 11, "an entry that was held before the purge");
    assert_unavailable(store.term_of(LogIndex(11)), 11, 10, "the next index");
    assert!(store.append(&commands(4, 4..=4)).is_err(), "the log continues at 11, not 4");
    store.append(&commands(4, 11..=12)).unwrap();
    assert_eq!(all_entries(&store), commands(4, 11..=12));
}

/// Purging at or below the current purged id changes nothing.
pub fn purging_at_or_below_the_purged_id_is_a_no_op<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    append_synced(&mut store, &commands(1, 1..=5));
    store.purge_prefix(LogId::new(1, 3)).unwrap();

    store.purge_prefix(LogId::new(1, 3)).unwrap();
    store.purge_prefix(LogId::new(1, 1)).unwrap();
    store.purge_prefix(LogId::default()).unwrap();

    assert_eq!(store.last_purged().unwrap(), LogId::new(1, 3));
    assert_eq!(all_entries(&store), commands(1, 4..=5));
}

/// The hard state reads back as saved, including no vote and the largest values.
pub fn hard_state_round_trips_including_extreme_values<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    let states = [
        HardState { term: Term(1), vote: None, commit: LogIndex(0) },
        HardState { term: Term(2), vote: Some(NodeId(3)), commit: LogIndex(7) },
        HardState { term: Term(u64::MAX), vote: Some(NodeId(u64::MAX)), commit: LogIndex(u64::MAX) },
        HardState { term: Term(u64::MAX), vote: Some(NodeId(0)), commit: LogIndex(1) },
    ];
    for state in states {
        store.save_hard_state(&state).unwrap();
        assert_eq!(store.hard_state().unwrap(), state, "visible before the sync");
        store.sync().unwrap();
        assert_eq!(store.hard_state().unwrap(), state, "unchanged by the sync");
    }
}
