//! Real process crashes of the WAL log store with 4 KiB segments: the crash workload
//! then starts a new segment every few steps and removes purged ones every tenth, so
//! kills land between creating a segment, writing its first batch, syncing the
//! directory and removing old segments. Every synced write must survive.
//!
//! The kill schedule is seeded; `D_ENGINE_CRASH_SEED=<seed>` repeats it.

mod common;

use common::SmallSegments;
use d_engine_storage_fs::testing::crash;

/// The child: resume the workload where the store left off and write steps until
/// killed. A no-op in a normal test run.
#[test]
fn crash_child_writes_the_workload_until_killed() {
    crash::child_writes_the_workload_until_killed::<SmallSegments>();
}

#[test]
fn every_synced_write_survives_sigkill_at_random_moments_with_small_segments() {
    crash::every_synced_write_survives_sigkill_at_random_moments::<SmallSegments>();
}
