//! The deterministic workload of the process-crash tests, and the check of what a
//! crash left behind.
//!
//! A writer process applies [`CrashStep`]s one after another, each followed by one
//! `sync`, and reports every synced last index; it is killed at a random moment. The
//! workload is a pure function of the step number, so the checker knows exactly what
//! every synced state looks like: a reopened store must hold the state after some
//! whole number of steps, at or past the last one acknowledged, with every entry
//! equal to the one the workload wrote. A torn sync (entries without their hard
//! state, half a batch, a truncation without the rewrite) is caught because no step
//! ends there.
//!
//! Steps also exercise the other writes: every 7th rewrites the last three entries
//! (truncate, then append them again), and every 10th purges all but the last 100.

use bytes::Bytes;

use crate::storage::{LogStore, StorageError};
use crate::types::{Entry, EntryPayload, HardState, LogId, LogIndex, NodeId, Term};

const REWRITE_EVERY_STEPS: u64 = 7;
const PURGE_EVERY_STEPS: u64 = 10;
const ENTRIES_KEPT_BY_A_PURGE: u64 = 100;
const INDICES_PER_TERM: u64 = 500;

/// A well-mixed hash of a number (splitmix64's finaliser).
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn term_at(index: u64) -> Term {
    Term(1 + index / INDICES_PER_TERM)
}

/// The entry the workload writes at `index`: its term grows every 500 indices and its
/// payload (0 to 300 bytes) is derived from the index.
pub fn entry(index: u64) -> Entry {
    let len = (mix(index) % 301) as usize;
    let payload: Vec<u8> = (0..len).map(|offset| mix(index ^ ((offset as u64) << 32)) as u8).collect();
    Entry {
        log_id: LogId { term: term_at(index), index: LogIndex(index) },
        payload: EntryPayload::Command(Bytes::from(payload)),
    }
}

/// The writes of one step, applied in this order and then synced once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashStep {
    /// Written first.
    pub hard_state: HardState,
    /// Truncated next (the entries are then appended again, unchanged).
    pub truncate_from: Option<LogIndex>,
    /// Appended next.
    pub entries: Vec<Entry>,
    /// Purged last.
    pub purge_upto: Option<LogId>,
}

/// The log after a whole number of steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashState {
    /// How many steps were applied.
    pub steps: u64,
    /// The hard state of the last step.
    pub hard_state: HardState,
    /// The last purged entry.
    pub last_purged: LogId,
    /// The last entry's index.
    pub last: LogIndex,
}

impl CrashState {
    /// The empty log before the first step.
    pub fn initial() -> CrashState {
        CrashState { steps: 0, hard_state: HardState::default(), last_purged: LogId::default(), last: LogIndex(0) }
    }

    /// The writes of the next step and the state they lead to.
    pub fn next_step(&self) -> (CrashStep, CrashState) {
        let number = self.steps;
        let new_last = self.last.0 + 1 + mix(number) % 16;
        let truncate_from = (number % REWRITE_EVERY_STEPS == REWRITE_EVERY_STEPS - 1
            && self.last.0 > self.last_purged.index.0)
            .then(|| LogIndex(self.last.0.saturating_sub(2).max(self.last_purged.index.0 + 1)));
        let first = truncate_from.map_or(self.last.0 + 1, |from| from.0);
        let purge_index = new_last.saturating_sub(ENTRIES_KEPT_BY_A_PURGE);
        let purge_upto = (number % PURGE_EVERY_STEPS == PURGE_EVERY_STEPS - 1
            && purge_index > self.last_purged.index.0)
            .then(|| LogId { term: term_at(purge_index), index: LogIndex(purge_index) });
        let hard_state = HardState { term: term_at(new_last), vote: Some(NodeId(1)), commit: LogIndex(new_last) };
        let step =
            CrashStep { hard_state, truncate_from, entries: (first..=new_last).map(entry).collect(), purge_upto };
        let after = CrashState {
            steps: number + 1,
            hard_state,
            last_purged: purge_upto.unwrap_or(self.last_purged),
            last: LogIndex(new_last),
        };
        (step, after)
    }
}

/// Applies one step to `store` and syncs it: once this returns `Ok`, the step is durable.
pub fn write_step(store: &mut impl LogStore, step: &CrashStep) -> Result<(), StorageError> {
    store.save_hard_state(&step.hard_state)?;
    if let Some(from) = step.truncate_from {
        store.truncate_suffix(from)?;
    }
    store.append(&step.entries)?;
    if let Some(upto) = step.purge_upto {
        store.purge_prefix(upto)?;
    }
    store.sync()
}

/// Checks a store reopened after a crash of the writer and returns the state it holds,
/// from which the writer continues.
///
/// `acknowledged` is the last index the writer reported synced. The store must hold
/// exactly the state after some whole number of steps, ending at or past
/// `acknowledged`, and every held entry must decode and equal the workload's.
pub fn verify(store: &impl LogStore, acknowledged: LogIndex) -> Result<CrashState, String> {
    let failed = |what: &str, error: StorageError| format!("{what} failed: {error}");
    let last_log_id = store.last_log_id().map_err(|error| failed("last_log_id", error))?;
    let mut state = CrashState::initial();
    while state.last < last_log_id.index {
        state = state.next_step().1;
    }
    if state.last != last_log_id.index {
        return Err(format!("the log ends at {last_log_id}, inside step {}: a sync was torn", state.steps));
    }
    if state.last < acknowledged {
        return Err(format!("the writer acknowledged {acknowledged} as synced but the log ends at {last_log_id}"));
    }
    let hard_state = store.hard_state().map_err(|error| failed("hard_state", error))?;
    if hard_state != state.hard_state {
        return Err(format!("after step {}, hard state {hard_state:?} should be {:?}", state.steps, state.hard_state));
    }
    let last_purged = store.last_purged().map_err(|error| failed("last_purged", error))?;
    if last_purged != state.last_purged {
        return Err(format!("after step {}, last purged {last_purged} should be {}", state.steps, state.last_purged));
    }
    let mut next = last_purged.index.0 + 1;
    while next <= state.last.0 {
        let end = (next + 999).min(state.last.0);
        let entries = store.entries(LogIndex(next)..=LogIndex(end)).map_err(|error| failed("entries", error))?;
        if entries.len() as u64 != end - next + 1 {
            return Err(format!("entries {next}..={end} returned {} entries", entries.len()));
        }
        for (index, got) in (next..).zip(&entries) {
            if *got != entry(index) {
                return Err(format!("entry {index} is {:?}, not the one written", got.log_id));
            }
        }
        next = end + 1;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_ends_past_the_last_and_rewrites_and_purges_on_schedule() {
        let mut state = CrashState::initial();
        let (mut rewrites, mut purges) = (0, 0);
        for _ in 0..200 {
            let (step, after) = state.next_step();
            assert!(after.last > state.last);
            assert_eq!(step.entries.last().map(|entry| entry.log_id.index), Some(after.last));
            if let Some(from) = step.truncate_from {
                assert!(from > state.last_purged.index && from <= state.last);
                assert_eq!(step.entries[0].log_id.index, from);
                rewrites += 1;
            }
            purges += usize::from(step.purge_upto.is_some());
            state = after;
        }
        assert!(rewrites >= 25 && purges >= 15, "{rewrites} rewrites, {purges} purges");
    }
}
