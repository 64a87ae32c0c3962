//! Real process crashes of the WAL log store: the shared test of
//! `d_engine_storage_fs::testing::crash` (a child process writing the crash workload is
//! killed with SIGKILL at random moments; every write reported synced must survive, and
//! the store must hold exactly the state after a whole number of steps).
//!
//! The kill schedule is seeded; `D_ENGINE_CRASH_SEED=<seed>` repeats it. The same test
//! with small segments, which start and remove segment files at almost every step, is in
//! `crash_small_segments.rs`.

mod common;

use common::Wal;
use d_engine_storage_fs::testing::crash;

/// The child: resume the workload where the store left off and write steps until
/// killed. A no-op in a normal test run.
#[test]
fn crash_child_writes_the_workload_until_killed() {
    crash::child_writes_the_workload_until_killed::<Wal>();
}

#[test]
fn every_synced_write_survives_sigkill_at_random_moments() {
    crash::every_synced_write_survives_sigkill_at_random_moments::<Wal>();
}
