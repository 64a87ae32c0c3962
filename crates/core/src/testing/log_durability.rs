//! Log store cases: what a reopen keeps. Exactly the synced writes survive: everything
//! before the last successful `sync`, nothing after it, and never a part of a sync.

use super::LogStoreHarness;
use super::fixtures::{
    all_entries, append_synced, assert_compacted, assert_unavailable, command, commands, open_log, reopen_log,
};
use crate::storage::{LogStore, RecoveredLog};
use crate::types::{HardState, LogId, LogIndex, NodeId, Term};

/// Synced entries and hard state read back unchanged after a reopen.
pub fn synced_entries_and_hard_state_survive_a_reopen<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    let hard_state = HardState { term: Term(2), vote: Some(NodeId(1)), commit: LogIndex(3) };
    store.save_hard_state(&hard_state).unwrap();
    store.append(&commands(1, 1..=2)).unwrap();
    append_synced(&mut store, &commands(2, 3..=4));

    let store = reopen_log(harness, store);

    assert_eq!(store.hard_state().unwrap(), hard_state);
    assert_eq!(store.last_log_id().unwrap(), LogId::new(2, 4));
    let mut expected = commands(1, 1..=2);
    expected.extend(commands(2, 3..=4));
    assert_eq!(all_entries(&store), expected);
    let recovered = RecoveredLog::read(&store).unwrap();
    assert_eq!(recovered.term_starts, vec![LogId::new(1, 1), LogId::new(2, 3)]);
    assert_eq!(recovered.last_log_id, LogId::new(2, 4));
}

/// Writes are visible to reads before they are synced, and a reopen without a sync
/// forgets all of them: appends, truncations, purges and the hard state.
pub fn unsynced_writes_are_visible_at_once_and_gone_after_a_reopen<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    let synced_state = HardState { term: Term(1), vote: Some(NodeId(2)), commit: LogIndex(2) };
    store.save_hard_state(&synced_state).unwrap();
    append_synced(&mut store, &commands(1, 1..=5));

    store.truncate_suffix(LogIndex(4)).unwrap();
    store.append(&commands(2, 4..=6)).unwrap();
    store.purge_prefix(LogId::new(1, 2)).unwrap();
    store.save_hard_state(&HardState { term: Term(2), vote: None, commit: LogIndex(5) }).unwrap();
    assert_eq!(store.last_log_id().unwrap(), LogId::new(2, 6), "unsynced writes are visible");
    assert_eq!(store.term_of(LogIndex(4)).unwrap(), Term(2));
    assert_eq!(store.last_purged().unwrap(), LogId::new(1, 2));

    let store = reopen_log(harness, store);

    assert_eq!(store.hard_state().unwrap(), synced_state);
    assert_eq!(store.last_purged().unwrap(), LogId::default());
    assert_eq!(store.last_log_id().unwrap(), LogId::new(1, 5));
    assert_eq!(all_entries(&store), commands(1, 1..=5));
}

/// One `sync` after many writes makes all of them durable together: a group commit.
pub fn one_sync_makes_every_earlier_write_durable_together<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    append_synced(&mut store, &commands(1, 1..=10));

    for first in (11..=100).step_by(10) {
        store.append(&commands(1, first..=first + 9)).unwrap();
    }
    store.truncate_suffix(LogIndex(91)).unwrap();
    store.append(&commands(2, 91..=95)).unwrap();
    store.purge_prefix(LogId::new(1, 20)).unwrap();
    let hard_state = HardState { term: Term(2), vote: Some(NodeId(1)), commit: LogIndex(95) };
    store.save_hard_state(&hard_state).unwrap();
    store.sync().unwrap();
    let before = all_entries(&store);

    let store = reopen_log(harness, store);

    assert_eq!(store.hard_state().unwrap(), hard_state);
    assert_eq!(store.last_purged().unwrap(), LogId::new(1, 20));
    assert_eq!(store.last_log_id().unwrap(), LogId::new(2, 95));
    assert_eq!(all_entries(&store), before);
    let mut expected = commands(1, 21..=90);
    expected.extend(commands(2, 91..=95));
    assert_eq!(before, expected);
}

/// A synced truncation and the entries that overwrote the tail survive a reopen; the
/// unsynced append after them does not.
pub fn synced_truncation_and_overwrite_survive_a_reopen<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    append_synced(&mut store, &commands(1, 1..=5));
    store.truncate_suffix(LogIndex(4)).unwrap();
    append_synced(&mut store, &commands(2, 4..=6));
    store.append(&commands(2, 7..=7)).unwrap();

    let store = reopen_log(harness, store);

    let mut expected = commands(1, 1..=3);
    expected.extend(commands(2, 4..=6));
    assert_eq!(all_entries(&store), expected);
    assert_unavailable(store.term_of(LogIndex(7)), 7, 6, "the unsynced entry");
}

/// A synced purge survives a reopen, and the purged entry keeps answering its term.
pub fn synced_purge_survives_a_reopen_with_the_purged_term<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    append_synced(&mut store, &commands(1, 1..=3));
    append_synced(&mut store, &commands(2, 4..=6));
    store.purge_prefix(LogId::new(2, 4)).unwrap();
    store.sync().unwrap();

    let mut store = reopen_log(harness, store);

    assert_eq!(store.last_purged().unwrap(), LogId::new(2, 4));
    assert_eq!(store.term_of(LogIndex(4)).unwrap(), Term(2));
    assert_compacted(store.term_of(LogIndex(3)), 3, 5, "a purged entry after the reopen");
    assert_eq!(all_entries(&store), commands(2, 5..=6));

    store.purge_prefix(LogId::new(7, 50)).unwrap();
    store.sync().unwrap();
    let store = reopen_log(harness, store);
    assert_eq!(store.last_purged().unwrap(), LogId::new(7, 50), "a purge past the end survives too");
    assert_eq!(store.last_log_id().unwrap(), LogId::new(7, 50));
    assert!(all_entries(&store).is_empty());
}

/// A reopened log takes the next append right after its last synced entry, and that
/// append survives the next reopen.
pub fn a_reopened_log_accepts_appends_where_it_left_off<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    append_synced(&mut store, &commands(1, 1..=3));
    store.append(&commands(1, 4..=4)).unwrap();

    let mut store = reopen_log(harness, store);
    assert!(store.append(&commands(1, 5..=5)).is_err(), "entry 4 was never synced");
    append_synced(&mut store, &[command(1, 4), command(3, 5)]);
    let store = reopen_log(harness, store);

    let mut expected = commands(1, 1..=4);
    expected.push(command(3, 5));
    assert_eq!(all_entries(&store), expected);
}

/// A sync with nothing to write succeeds, and so does a reopen of a store that never
/// wrote anything.
pub fn a_sync_with_nothing_to_write_succeeds_and_changes_nothing<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    store.sync().unwrap();
    let mut store = reopen_log(harness, store);
    assert_eq!(store.last_log_id().unwrap(), LogId::default());
    assert_eq!(store.hard_state().unwrap(), HardState::default());

    append_synced(&mut store, &commands(1, 1..=2));
    store.sync().unwrap();
    store.sync().unwrap();
    let store = reopen_log(harness, store);
    assert_eq!(all_entries(&store), commands(1, 1..=2));
}
