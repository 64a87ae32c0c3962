//! Log store cases: payload kinds and sizes, and a long log.

use bytes::Bytes;

use super::LogStoreHarness;
use super::fixtures::{
    ONE_MEBIBYTE, all_entries, append_synced, membership, open_log, patterned_bytes, reopen_log, with_payload,
};
use crate::storage::{LogStore, RecoveredLog};
use crate::types::{Entry, EntryPayload, LogId, LogIndex, Term};

/// Every payload kind round-trips through a reopen: an empty command, a no-op, a joint
/// membership, and 1 MiB commands (one alone, and two next to small entries).
pub fn empty_noop_membership_and_one_mebibyte_payloads_round_trip<H: LogStoreHarness>(harness: &mut H) {
    let mut store = open_log(harness);
    let entries = vec![
        with_payload(1, 1, Bytes::new()),
        Entry { log_id: LogId::new(1, 2), payload: EntryPayload::Noop },
        membership(1, 3),
        with_payload(1, 4, patterned_bytes(ONE_MEBIBYTE, 0x5a)),
        with_payload(2, 5, Bytes::from_static(b"x")),
        with_payload(2, 6, patterned_bytes(ONE_MEBIBYTE, 0xa5)),
        with_payload(2, 7, Bytes::new()),
    ];
    append_synced(&mut store, &entries[..4]);
    append_synced(&mut store, &entries[4..]);
    assert_eq!(all_entries(&store), entries, "before the reopen");

    let store = reopen_log(harness, store);

    assert_eq!(all_entries(&store), entries, "after the reopen");
    assert_eq!(store.entries(LogIndex(4)..=LogIndex(4)).unwrap(), entries[3..4], "a 1 MiB entry alone");
}

/// The number of entries in the long-log case.
pub const LONG_LOG_ENTRIES: u64 = 100_000;

/// 100,000 entries over ten terms, appended in batches of 1,000 with one sync each,
/// read back in full and by term after a reopen; then half are purged and a tail
/// truncated, and that survives a second reopen.
pub fn one_hundred_thousand_entries_round_trip_through_a_reopen<H: LogStoreHarness>(harness: &mut H) {
    let entry = |index: u64| with_payload(1 + (index - 1) / 10_000, index, Bytes::from(index.to_le_bytes().to_vec()));
    let mut store = open_log(harness);
    for first in (1..=LONG_LOG_ENTRIES).step_by(1_000) {
        let batch: Vec<Entry> = (first..first + 1_000).map(entry).collect();
        append_synced(&mut store, &batch);
    }

    let mut store = reopen_log(harness, store);

    assert_eq!(store.last_log_id().unwrap(), LogId::new(10, LONG_LOG_ENTRIES));
    let read = store.entries(LogIndex(1)..=LogIndex(LONG_LOG_ENTRIES)).unwrap();
    assert_eq!(read.len() as u64, LONG_LOG_ENTRIES);
    assert!(read.iter().zip(1..).all(|(got, index)| *got == entry(index)), "every entry is the one written");
    let recovered = RecoveredLog::read(&store).unwrap();
    let starts: Vec<LogId> = (0..10).map(|term| LogId::new(term + 1, term * 10_000 + 1)).collect();
    assert_eq!(recovered.term_starts, starts);

    store.purge_prefix(LogId::new(5, 50_000)).unwrap();
    store.truncate_suffix(LogIndex(90_001)).unwrap();
    store.sync().unwrap();
    let store = reopen_log(harness, store);

    assert_eq!(store.last_purged().unwrap(), LogId::new(5, 50_000));
    assert_eq!(store.last_log_id().unwrap(), LogId::new(9, 90_000));
    assert_eq!(store.term_of(LogIndex(70_000)).unwrap(), Term(7));
    let tail = all_entries(&store);
    assert_eq!(tail.len(), 40_000);
    assert!(tail.iter().zip(50_001..).all(|(got, index)| *got == entry(index)));
}
