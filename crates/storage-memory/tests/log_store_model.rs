//! `MemLogStore` against a naive model of the `LogStore` contract.
//!
//! The model is the contract read literally: a `Vec` of entries, whole copies taken
//! at `sync` and restored at `crash`. Random sequences of writes, syncs and crashes
//! run against both, and every read must agree after every step. On a failure
//! proptest prints the shrunk sequence and records its seed in `proptest-regressions/`,
//! so the run replays exactly.

use std::ops::RangeInclusive;

use bytes::Bytes;
use d_engine_core::storage::{LogStore, StorageError};
use d_engine_core::{Entry, EntryPayload, HardState, LogId, LogIndex, NodeId, Term};
use d_engine_memory::MemLogStore;
use proptest::prelude::*;

/// A storage error reduced to what the contract specifies, so it can be compared.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    Compacted { index: u64, first_available: u64 },
    Unavailable { index: u64, last: u64 },
    Misuse,
    Other(String),
}

fn outcome<T>(result: Result<T, StorageError>) -> Result<T, Failure> {
    result.map_err(|error| match error {
        StorageError::Compacted { index, first_available } => {
            Failure::Compacted { index: index.0, first_available: first_available.0 }
        }
        StorageError::Unavailable { index, last } => Failure::Unavailable { index: index.0, last: last.0 },
        StorageError::Misuse(_) => Failure::Misuse,
        other => Failure::Other(other.to_string()),
    })
}

/// One image of the modelled log.
#[derive(Clone, Debug, Default)]
struct ModelLog {
    hard_state: HardState,
    last_purged: LogId,
    entries: Vec<Entry>,
}

impl ModelLog {
    fn last_log_id(&self) -> LogId {
        self.entries.last().map_or(self.last_purged, |entry| entry.log_id)
    }

    fn find(&self, index: u64) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.log_id.index.0 == index)
    }

    fn term_of(&self, index: u64) -> Result<Term, Failure> {
        let purged = self.last_purged.index.0;
        if index == 0 {
            return Ok(Term(0));
        }
        if index == purged {
            return Ok(self.last_purged.term);
        }
        if index < purged {
            return Err(Failure::Compacted { index, first_available: purged + 1 });
        }
        self.find(index)
            .map(|entry| entry.log_id.term)
            .ok_or(Failure::Unavailable { index, last: self.last_log_id().index.0 })
    }

    fn entries(&self, range: RangeInclusive<u64>) -> Result<Vec<Entry>, Failure> {
        let (start, end) = range.into_inner();
        let (purged, last) = (self.last_purged.index.0, self.last_log_id().index.0);
        if start > end {
            return Ok(Vec::new());
        }
        if start <= purged {
            return Err(Failure::Compacted { index: start, first_available: purged + 1 });
        }
        if end > last {
            return Err(Failure::Unavailable { index: end, last });
        }
        Ok(self.entries.iter().filter(|entry| (start..=end).contains(&entry.log_id.index.0)).cloned().collect())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), Failure> {
        let first = self.last_log_id().index.0 + 1;
        if entries.iter().zip(first..).any(|(entry, expected)| entry.log_id.index.0 != expected) {
            return Err(Failure::Misuse);
        }
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    fn truncate_suffix(&mut self, from: u64) -> Result<(), Failure> {
        if from <= self.last_purged.index.0 {
            return Err(Failure::Misuse);
        }
        self.entries.retain(|entry| entry.log_id.index.0 < from);
        Ok(())
    }

    fn purge_prefix(&mut self, upto: LogId) {
        if upto.index > self.last_purged.index {
            self.entries.retain(|entry| entry.log_id.index > upto.index);
            self.last_purged = upto;
        }
    }
}

/// A step of the test, relative to the current log so that most steps are valid.
#[derive(Clone, Debug)]
enum Step {
    /// Append `count` entries starting `shift` after the expected index, optionally
    /// skipping an index after the `gap_after`-th entry.
    Append {
        shift: i64,
        count: u64,
        term_bump: u64,
        gap_after: Option<u64>,
    },
    /// Truncate from `back` entries before the end (0: past the end).
    Truncate {
        back: u64,
    },
    /// Purge up to `ahead` indices after the last purged one.
    Purge {
        ahead: i64,
        term_bump: u64,
    },
    SaveHardState {
        term: u64,
        vote: Option<u64>,
        commit: u64,
    },
    Sync,
    Crash,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (prop_oneof![8 => Just(0i64), 1 => Just(-1), 1 => Just(1)], 0..4u64, 0..2u64, prop::option::weighted(0.1, 0..3u64))
            .prop_map(|(shift, count, term_bump, gap_after)| Step::Append { shift, count, term_bump, gap_after }),
        2 => (0..6u64).prop_map(|back| Step::Truncate { back }),
        1 => (-1..12i64, 0..2u64).prop_map(|(ahead, term_bump)| Step::Purge { ahead, term_bump }),
        1 => (0..5u64, prop::option::of(1..4u64), 0..20u64)
            .prop_map(|(term, vote, commit)| Step::SaveHardState { term, vote, commit }),
        3 => Just(Step::Sync),
        1 => Just(Step::Crash),
    ]
}

fn entry(term: u64, index: u64) -> Entry {
    Entry { log_id: LogId::new(term, index), payload: EntryPayload::Command(Bytes::from(index.to_le_bytes().to_vec())) }
}

/// Runs `step` against the store and the model; both must give the same outcome.
fn run(
    step: &Step,
    store: &mut MemLogStore,
    current: &mut ModelLog,
    durable: &mut ModelLog,
) -> Result<(), TestCaseError> {
    let last = current.last_log_id();
    match *step {
        Step::Append { shift, count, term_bump, gap_after } => {
            let start = (last.index.0 as i64 + 1 + shift).max(1) as u64;
            let term = last.term.0 + term_bump;
            let batch: Vec<Entry> =
                (0..count).map(|i| entry(term, start + i + u64::from(gap_after.is_some_and(|gap| i > gap)))).collect();
            prop_assert_eq!(outcome(store.append(&batch)), current.append(&batch));
        }
        Step::Truncate { back } => {
            let from = (last.index.0 + 1).saturating_sub(back);
            prop_assert_eq!(outcome(store.truncate_suffix(LogIndex(from))), current.truncate_suffix(from));
        }
        Step::Purge { ahead, term_bump } => {
            let index = (current.last_purged.index.0 as i64 + ahead).max(0) as u64;
            let term = current.find(index).map_or(last.term.0 + term_bump, |entry| entry.log_id.term.0);
            let upto = LogId::new(term, index);
            prop_assert_eq!(outcome(store.purge_prefix(upto)), Ok(()));
            current.purge_prefix(upto);
        }
        Step::SaveHardState { term, vote, commit } => {
            let hard_state = HardState { term: Term(term), vote: vote.map(NodeId), commit: LogIndex(commit) };
            prop_assert_eq!(outcome(store.save_hard_state(&hard_state)), Ok(()));
            current.hard_state = hard_state;
        }
        Step::Sync => {
            prop_assert_eq!(outcome(store.sync()), Ok(()));
            *durable = current.clone();
        }
        Step::Crash => {
            store.crash();
            *current = durable.clone();
        }
    }
    Ok(())
}

/// Every read of the store agrees with the model, and so does what a crash would keep.
fn check_reads(store: &MemLogStore, current: &ModelLog, durable: &ModelLog) -> Result<(), TestCaseError> {
    prop_assert_eq!(store.hard_state().unwrap(), current.hard_state);
    prop_assert_eq!(store.last_purged().unwrap(), current.last_purged);
    prop_assert_eq!(store.last_log_id().unwrap(), current.last_log_id());
    let (purged, last) = (current.last_purged.index.0, current.last_log_id().index.0);
    for index in 0..=last + 2 {
        prop_assert_eq!(outcome(store.term_of(LogIndex(index))), current.term_of(index), "term_of({})", index);
    }
    for start in purged.saturating_sub(1)..=last + 1 {
        for end in [start.saturating_sub(1), start, last, last + 1] {
            let range = LogIndex(start)..=LogIndex(end);
            prop_assert_eq!(
                outcome(store.entries(range)),
                current.entries(start..=end),
                "entries({}..={})",
                start,
                end
            );
        }
    }
    prop_assert_eq!(store.durable_hard_state(), durable.hard_state);
    prop_assert_eq!(store.durable_last_log_id(), durable.last_log_id());
    prop_assert_eq!(store.durable_entries(), durable.entries.clone());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_the_naive_model(steps in prop::collection::vec(step(), 1..80)) {
        let mut store = MemLogStore::new();
        let (mut current, mut durable) = (ModelLog::default(), ModelLog::default());
        for step in &steps {
            run(step, &mut store, &mut current, &mut durable)?;
            check_reads(&store, &current, &durable)?;
        }
    }
}
