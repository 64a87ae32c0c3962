//! Real process crashes: a child process (the adapter's test binary, re-executed) appends
//! and syncs the deterministic crash workload of `d_engine_core::testing::crash` in a
//! loop, printing every synced last index; the parent kills it with SIGKILL at random
//! moments, reopens the store and checks that every write reported synced is there and
//! that the store holds exactly the state after a whole number of steps (no torn sync,
//! no entry that differs from what the child wrote). Each child continues the same store.
//!
//! The kill schedule comes from a seeded generator; the seed is printed and
//! `D_ENGINE_CRASH_SEED=<seed>` repeats the schedule (the child's progress at each kill
//! still depends on timing).
//!
//! An adapter's test file declares the two tests by name, the child first:
//!
//! ```text
//! #[test]
//! fn crash_child_writes_the_workload_until_killed() {
//!     crash::child_writes_the_workload_until_killed::<MyAdapter>();
//! }
//!
//! #[test]
//! fn every_synced_write_survives_sigkill_at_random_moments() {
//!     crash::every_synced_write_survives_sigkill_at_random_moments::<MyAdapter>();
//! }
//! ```

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use d_engine_core::LogIndex;
use d_engine_core::testing::crash::{self, CrashState};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::LogAdapter;

/// The name of the child's test, which the parent runs in a new process.
pub const CHILD_TEST: &str = "crash_child_writes_the_workload_until_killed";
/// Set (to the store's directory) only in the child process.
const CHILD_DIRECTORY_VAR: &str = "D_ENGINE_CRASH_CHILD_DIRECTORY";
const SEED_VAR: &str = "D_ENGINE_CRASH_SEED";
const KILLS: usize = 60;
/// The child is killed this long after it was started, at most.
const KILL_AFTER_MILLIS_MAX: u64 = 60;

/// The child, run by the test named [`CHILD_TEST`]: resume the workload where the store
/// left off and write steps until killed. A no-op in a normal test run.
pub fn child_writes_the_workload_until_killed<A: LogAdapter>() {
    let Ok(dir) = std::env::var(CHILD_DIRECTORY_VAR) else {
        return;
    };
    let mut store = A::open_log(Path::new(&dir)).expect("the child opens the store");
    let mut state = crash::verify(&store, LogIndex(0)).expect("the child resumes from a verified store");
    let mut stdout = std::io::stdout().lock();
    loop {
        let (step, after) = state.next_step();
        crash::write_step(&mut store, &step).expect("the child writes a step");
        writeln!(stdout, "synced {}", after.last.0).and_then(|()| stdout.flush()).expect("stdout");
        state = after;
    }
}

/// The parent: kills children at random moments and checks the store after each kill.
pub fn every_synced_write_survives_sigkill_at_random_moments<A: LogAdapter>() {
    let seed = std::env::var(SEED_VAR)
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos() as u64));
    println!("crash test seed {seed} (repeat the kill schedule with {SEED_VAR}={seed})");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut acknowledged = LogIndex(0);
    let mut state = CrashState::initial();
    let mut unacknowledged_survivors = 0;

    for kill in 1..=KILLS {
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads", "1"])
            .env(CHILD_DIRECTORY_VAR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the child starts");
        std::thread::sleep(Duration::from_millis(rng.random_range(0..=KILL_AFTER_MILLIS_MAX)));
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("the child is reaped");
        let (mut output, mut errors) = (String::new(), String::new());
        child.stdout.take().expect("piped").read_to_string(&mut output).expect("child stdout");
        child.stderr.take().expect("piped").read_to_string(&mut errors).expect("child stderr");
        assert!(
            !status.success() && status.code().is_none(),
            "seed {seed}, kill {kill}: the child ended by itself ({status}):\n{errors}"
        );
        // Only whole lines count: the kill may cut the last one.
        let whole_lines = output.rsplit_once('\n').map_or("", |(whole, _)| whole);
        for line in whole_lines.lines() {
            if let Some(index) = line.strip_prefix("synced ").and_then(|index| index.parse().ok()) {
                acknowledged = acknowledged.max(LogIndex(index));
            }
        }

        let store =
            A::open_log(dir.path()).unwrap_or_else(|error| panic!("seed {seed}, kill {kill}: reopen failed: {error}"));
        state = crash::verify(&store, acknowledged).unwrap_or_else(|error| panic!("seed {seed}, kill {kill}: {error}"));
        unacknowledged_survivors += usize::from(state.last > acknowledged);
        acknowledged = state.last;
    }
    println!(
        "{KILLS} kills: the log reached step {} (index {}); {unacknowledged_survivors} kills left a synced step the child had not reported yet",
        state.steps, state.last
    );
    assert!(state.steps > 0, "seed {seed}: the children never completed a step");
}
