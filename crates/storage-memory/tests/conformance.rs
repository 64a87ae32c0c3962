//! The storage conformance suite of `d-engine-core`, run against the memory adapter.
//!
//! A "reopen" of the log store is `MemLogStore::crash`: it forgets every unsynced
//! write, as a power loss would. The state store survives a simulated crash as it is.
//! The process-crash tests of the durable adapters (a child process killed with
//! SIGKILL) are skipped here by design: nothing in memory outlives its process, so
//! there is nothing to reopen. The same crash workload runs below with simulated
//! power losses instead.

use d_engine_core::storage::{LogStore, StorageError};
use d_engine_core::testing::crash::{self, CrashState};
use d_engine_core::testing::{LogStoreHarness, StateStoreHarness};
use d_engine_core::{LogIndex, log_store_conformance_tests, state_store_conformance_tests};
use d_engine_memory::{MemLogStore, MemStateStore};

/// Memory stores for the suite; a reopen is a simulated power loss.
#[derive(Default)]
struct MemoryHarness;

impl LogStoreHarness for MemoryHarness {
    type Store = MemLogStore;

    fn open(&mut self) -> Result<MemLogStore, StorageError> {
        Ok(MemLogStore::new())
    }

    fn reopen(&mut self, mut store: MemLogStore) -> Result<MemLogStore, StorageError> {
        store.crash();
        Ok(store)
    }
}

impl StateStoreHarness for MemoryHarness {
    type Store = MemStateStore;

    fn open(&mut self) -> Result<MemStateStore, StorageError> {
        Ok(MemStateStore::new())
    }

    fn reopen(&mut self, store: MemStateStore) -> Result<MemStateStore, StorageError> {
        Ok(store)
    }
}

log_store_conformance_tests!(MemoryHarness);
state_store_conformance_tests!(MemoryHarness);

#[test]
fn crash_workload_keeps_every_synced_step_through_simulated_power_losses() {
    let mut store = MemLogStore::new();
    let mut acknowledged = LogIndex(0);
    let mut state = CrashState::initial();
    for round in 0..300_u64 {
        // Some whole steps, then a power loss in the middle of the next one.
        for _ in 0..round % 5 {
            let (step, after) = state.next_step();
            crash::write_step(&mut store, &step).unwrap();
            (state, acknowledged) = (after, after.last);
        }
        let (step, _) = state.next_step();
        store.save_hard_state(&step.hard_state).unwrap();
        if let Some(from) = step.truncate_from {
            store.truncate_suffix(from).unwrap();
        }
        store.append(&step.entries[..step.entries.len() / 2]).unwrap();

        store.crash();

        state = crash::verify(&store, acknowledged).unwrap_or_else(|error| panic!("round {round}: {error}"));
        assert_eq!(state.last, acknowledged, "round {round}: memory loses exactly the unsynced step");
    }
    assert!(state.steps >= 500, "the workload went through {} steps", state.steps);
}

#[test]
fn crash_check_catches_a_torn_step_and_a_lost_acknowledged_write() {
    let mut store = MemLogStore::new();
    let (first, after_first) = CrashState::initial().next_step();
    crash::write_step(&mut store, &first).unwrap();
    let (second, _) = after_first.next_step();
    store.append(&second.entries[..1]).unwrap();
    store.sync().unwrap();

    let torn = crash::verify(&store, after_first.last).unwrap_err();
    assert!(torn.contains("torn"), "{torn}");

    store.truncate_suffix(after_first.last.next()).unwrap();
    store.sync().unwrap();
    let lost = crash::verify(&store, LogIndex(after_first.last.0 + 5)).unwrap_err();
    assert!(lost.contains("acknowledged"), "{lost}");
}
