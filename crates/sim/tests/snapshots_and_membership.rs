//! Named scenarios for snapshots and membership changes, one test per story.
//!
//! Snapshots follow the classic Raft lab's shapes (basic, install to a disconnected or
//! crashed follower on a reliable or unreliable network, all nodes crashing repeatedly,
//! restart right after a snapshot), with the simulator's harsher crash model: a crash
//! loses every unsynced write, and the state machine is rebuilt at restart from the
//! durable snapshot plus the log tail. Membership stories cover learners, promotion,
//! joint consensus, removing the leader, the typed refusals, and churn under faults with
//! a checked client history.
//!
//! The simulator checks Raft's (membership-aware) safety invariants after every event;
//! each test asserts its story's outcome on top. Every run is fixed by its seed, printed
//! with any failure: rerunning the test replays it exactly.

#[allow(dead_code)] // The harness serves several test files; this one uses part of it.
mod common;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use common::{
    AGREEMENT_DEADLINE_US, MS, RETRY_AFTER_US, SECOND, Sim, TEST_KEY, TICK_US, Values, command, for_each_seed, id,
};
use d_engine_core::storage::LogStore;
use d_engine_core::{
    LogId, LogIndex, Membership, MembershipChange, MembershipChangeError, MembershipError, NodeId, Role, SnapshotPolicy,
};
use d_engine_sim::SimConfig;
use d_engine_sim::kv::KvWrite;
use d_engine_sim::network::NetworkConfig;
use d_engine_sim::workload::WorkloadConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The tests' own random choices come from a generator seeded from the test's seed,
/// separate from the simulator's.
fn test_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ 0x5a95_5a95_5a95_5a95)
}

// ---------------------------------------------------------------------------------------
// Snapshot harness
// ---------------------------------------------------------------------------------------

/// A node snapshots every this many applied entries (the lab's `SnapShotInterval`).
const SNAPSHOT_EVERY: u64 = 10;
/// Bytes per snapshot chunk: far below a snapshot's size, so every transfer is many chunks.
const CHUNK_BYTES: u64 = 8;
/// Keys the snapshot tests write; each takes 16 bytes in a KV snapshot.
const KEYS: u64 = 8;
/// Chunks of one complete transfer of a snapshot that holds every key (128 bytes).
const FULL_SNAPSHOT_CHUNKS: u64 = KEYS * 16 / CHUNK_BYTES;
/// Iterations of the lab's snapshot loop.
const LAB_ITERATIONS: usize = 30;

/// Three nodes that snapshot every `SNAPSHOT_EVERY` applied entries, keep `keep_entries`
/// below each snapshot, and send snapshots in `CHUNK_BYTES` chunks.
fn snapshot_config(seed: u64, keep_entries: u64, network: NetworkConfig) -> SimConfig {
    let mut config = SimConfig { network, ..SimConfig::new(3, seed) };
    config.raft.snapshot_policy =
        SnapshotPolicy { every_applied_entries: Some(SNAPSHOT_EVERY), max_log_bytes: None, keep_entries };
    config.raft.snapshot_chunk_bytes = CHUNK_BYTES;
    config
}

fn put(key: u64, value: u64) -> Bytes {
    KvWrite::Put { key, value }.encode()
}

/// The snapshot tests' writes: puts of unique values spread over `KEYS` keys. Every
/// proposal is remembered by its log id, so the state a node must hold after applying
/// index `i` is known exactly (`map_at`).
struct Writer {
    values: Values,
    proposals: Vec<(LogId, u64, u64)>,
}

impl Writer {
    fn new() -> Writer {
        Writer { values: Values::after(0), proposals: Vec::new() }
    }

    fn next_put(&mut self) -> (u64, u64) {
        let value = self.values.fresh();
        (TEST_KEY + value % KEYS, value)
    }

    /// The lab's raw `Start()`: proposes a put on node `i` without waiting. Returns
    /// whether `i` accepted it (only a leader does).
    fn start(&mut self, sim: &mut Sim, i: usize) -> bool {
        let (key, value) = self.next_put();
        match sim.propose(i, put(key, value)) {
            Ok(log_id) => {
                self.proposals.push((log_id, key, value));
                true
            }
            Err(_) => false,
        }
    }

    /// The lab's `one()` for a fresh put: proposes on the connected leader until at least
    /// `expected` nodes applied it, proposing again when it was overwritten or not applied
    /// within 2 s; fails after 10 s. Returns the log id it was applied under.
    #[track_caller]
    fn agree(&mut self, sim: &mut Sim, expected: usize) -> LogId {
        let (key, value) = self.next_put();
        let start = sim.now();
        let mut tries: Vec<(LogId, u64)> = Vec::new();
        loop {
            if let Some((log_id, _)) = tries.iter().find(|(log_id, _)| sim.applied_on(*log_id) >= expected) {
                return *log_id;
            }
            if sim.now() >= start + AGREEMENT_DEADLINE_US {
                sim.fail(format!(
                    "no agreement on {expected} nodes within {}s for put({key}, {value}), proposed as {tries:?}",
                    AGREEMENT_DEADLINE_US / SECOND
                ));
            }
            let now = sim.now();
            if tries.iter().all(|(log_id, at)| now >= at + RETRY_AFTER_US || sim.overwritten(*log_id))
                && let Some(leader) = sim.connected_leader()
                && let Ok(log_id) = sim.propose(leader, put(key, value))
            {
                self.proposals.push((log_id, key, value));
                tries.push((log_id, now));
            }
            sim.run_until(10 * MS, |c| tries.iter().any(|(log_id, _)| c.applied_on(*log_id) >= expected));
        }
    }

    /// The KV map a state machine holds once it applied exactly the committed prefix up to
    /// `upto`: the test's committed puts in log order.
    #[track_caller]
    fn map_at(&self, sim: &Sim, upto: LogIndex) -> BTreeMap<u64, u64> {
        let committed = sim.committed();
        sim.check(
            upto.0 as usize <= committed.len(),
            format!("map_at({upto}) beyond the {} entries known committed", committed.len()),
        );
        let in_log: BTreeMap<LogIndex, (u64, u64)> = self
            .proposals
            .iter()
            .filter(|(log_id, _, _)| log_id.index <= upto && committed[log_id.index.0 as usize - 1] == *log_id)
            .map(|(log_id, key, value)| (log_id.index, (*key, *value)))
            .collect();
        in_log.into_values().collect()
    }

    /// Asserts that running node `i` holds exactly the state of the committed prefix it
    /// applied.
    #[track_caller]
    fn check_state(&self, sim: &Sim, i: usize, when: &str) {
        let applied = sim.status_of(i).applied;
        let expected = self.map_at(sim, applied);
        let held = sim.node(i).kv().map();
        sim.check(
            *held == expected,
            format!("{when}: {} applied {applied} but holds {held:?}, expected {expected:?}", id(i)),
        );
    }
}

/// Snapshot chunks sent so far.
fn chunks_sent(sim: &Sim) -> u64 {
    sim.message_counts().get("install_snapshot").copied().unwrap_or(0)
}

/// Answers to snapshot chunks sent so far: one per chunk a follower received.
fn chunk_answers_sent(sim: &Sim) -> u64 {
    sim.message_counts().get("install_snapshot_response").copied().unwrap_or(0)
}

/// Entries node `i` holds in its durable log (after its purge point).
fn durable_log_entries(sim: &Sim, i: usize) -> usize {
    sim.node(i).store().durable_entries().len()
}

fn last_purged(sim: &Sim, i: usize) -> LogIndex {
    sim.node(i).store().last_purged().expect("the memory store reads").index
}

/// Runs the lab's snapshot setup: the new leader's no-op and one put per key, then puts
/// until every node's durable snapshot covers all keys, so that each later snapshot holds
/// all `KEYS` keys and a complete transfer takes `FULL_SNAPSHOT_CHUNKS` chunks.
fn write_every_key(sim: &mut Sim, writer: &mut Writer) {
    let mut last = writer.agree(sim, 3);
    for _ in 1..KEYS {
        last = writer.agree(sim, 3);
    }
    while (0..3).any(|i| sim.node(i).snapshot_index() < last.index) {
        writer.agree(sim, 3);
    }
}

/// What a victim fault does in the lab's snapshot loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    /// No fault: every node keeps up.
    Kept,
    /// Cut off, then reconnected.
    Disconnected,
    /// Crashed (losing unsynced writes), then restarted.
    Crashed,
}

/// What a run of the lab's snapshot loop measured (after the setup).
#[derive(Debug, Default)]
struct SnapshotRun {
    /// Catch-ups where what the victim held ended below every other node's purge point.
    behind_purge_point: usize,
    /// Snapshots the victims installed from a leader while catching up.
    victim_installs: u64,
    /// Chunks sent during each catch-up that installed a snapshot on the victim.
    chunks_per_install: Vec<u64>,
    /// Snapshots installed by any node, chunks and chunk responses sent.
    installs: u64,
    chunks: u64,
    responses: u64,
    /// The longest durable log any node held after an iteration.
    longest_log: usize,
    committed: usize,
}

/// The longest durable log a node may hold: entries since its last snapshot (fewer than
/// `SNAPSHOT_EVERY` applied and not yet covered), the kept tail, and what is not yet
/// applied there: a lab iteration's raw proposals (at most `SNAPSHOT_EVERY * 3 / 2`), the
/// iteration's agreed puts and a new leader's no-op.
fn log_bound(keep_entries: u64) -> usize {
    (SNAPSHOT_EVERY + keep_entries + SNAPSHOT_EVERY * 3 / 2 + 3) as usize
}

fn installs_everywhere(sim: &Sim) -> u64 {
    (0..sim.len()).map(|i| sim.node(i).snapshots_installed()).sum()
}

/// The lab's `snapcommon`: 30 iterations, each cutting off or crashing a victim (every
/// third iteration the leader itself), sending 5-14 raw proposals to the leader (or to the
/// cut-off old leader, where they never commit), agreeing on one more put without the
/// victim, and then bringing the victim back and agreeing with all three. Asserts after
/// every iteration that the durable logs stay small and that every node's state machine
/// holds exactly the committed prefix it applied; on a reliable network, that a victim
/// left below every other node's purge point came back through a complete chunked
/// snapshot transfer; and over the run, that every install took a complete transfer.
fn snapshot_lab_loop(seed: u64, victim_fault: Victim, network: NetworkConfig) -> SnapshotRun {
    let keep_entries = if victim_fault == Victim::Kept { 5 } else { 0 };
    // On a reliable network a message is delivered within 2 ms or never, so nothing sent
    // before a victim came back reaches it later. An unreliable one holds some messages up
    // to 2 s: an append sent before the leader compacted can still arrive and bring a
    // victim past the leader's purge point without a snapshot.
    let reliable = network == NetworkConfig::reliable();
    let mut sim = Sim::new(snapshot_config(seed, keep_entries, network));
    let mut rng = test_rng(seed);
    let mut writer = Writer::new();
    write_every_key(&mut sim, &mut writer);
    let (installs_at_start, chunks_at_start) = (installs_everywhere(&sim), chunks_sent(&sim));
    let mut run = SnapshotRun::default();
    let mut leader1 = sim.check_one_leader();
    for iteration in 0..LAB_ITERATIONS {
        let (mut victim, mut sender) = ((leader1 + 1) % 3, leader1);
        if iteration % 3 == 1 {
            (victim, sender) = (leader1, (leader1 + 1) % 3);
        }
        match victim_fault {
            Victim::Kept => {}
            Victim::Disconnected => {
                sim.disconnect(victim);
                writer.agree(&mut sim, 2);
            }
            Victim::Crashed => {
                sim.crash(victim);
                writer.agree(&mut sim, 2);
            }
        }
        let proposals = SNAPSHOT_EVERY / 2 + rng.random_range(0..SNAPSHOT_EVERY);
        for _ in 0..proposals {
            writer.start(&mut sim, sender);
        }
        let expected = if victim_fault == Victim::Kept { 3 } else { 2 };
        writer.agree(&mut sim, expected);

        let longest = (0..3).map(|i| durable_log_entries(&sim, i)).max().expect("three nodes");
        run.longest_log = run.longest_log.max(longest);
        sim.check(
            longest <= log_bound(keep_entries),
            format!(
                "iteration {iteration}: a durable log holds {longest} entries, more than {}: the log is not compacted",
                log_bound(keep_entries)
            ),
        );

        if victim_fault != Victim::Kept {
            // What the victim restarts or resumes from: its log, or its durable snapshot when
            // a crash came between saving an installed snapshot and compacting the log.
            let victim_last = sim.node(victim).store().last_log_id().expect("the memory store reads").index;
            let victim_last = victim_last.max(sim.node(victim).snapshot_index());
            let others_purged = (0..3).filter(|i| *i != victim).map(|i| last_purged(&sim, i)).min().expect("two");
            let behind = victim_last < others_purged;
            let (chunks_before, answers_before) = (chunks_sent(&sim), chunk_answers_sent(&sim));
            let installs_before = sim.node(victim).snapshots_installed();
            if victim_fault == Victim::Crashed {
                sim.restart(victim);
            } else {
                sim.connect(victim);
            }
            let caught_up = writer.agree(&mut sim, 3);
            // The answer to a snapshot's last chunk leaves once the victim's log is durable,
            // possibly after it applied the put: give it the time to.
            sim.run_for(10 * MS);
            let chunks = chunks_sent(&sim) - chunks_before;
            let answers = chunk_answers_sent(&sim) - answers_before;
            let installs = sim.node(victim).snapshots_installed() - installs_before;
            run.victim_installs += installs;
            if installs > 0 {
                run.chunks_per_install.push(chunks);
            }
            if behind {
                run.behind_purge_point += 1;
            }
            // Counted by the victim's answers: a chunk the leader sent to a crashed victim just
            // before it restarted may still arrive, and be answered, after the restart.
            if behind && reliable {
                sim.check(
                    installs >= 1 && answers >= FULL_SNAPSHOT_CHUNKS,
                    format!(
                        "iteration {iteration}: {} (its log or snapshot ends at {victim_last}, the others purged up to {others_purged}) caught up to {caught_up} with {installs} snapshot installs and {answers} chunks received ({chunks} sent); a complete transfer is {FULL_SNAPSHOT_CHUNKS}",
                        id(victim)
                    ),
                );
            }
            leader1 = sim.check_one_leader();
        }
        for i in 0..3 {
            writer.check_state(&sim, i, &format!("iteration {iteration}"));
        }
    }
    // All three hold the same, complete state, and every log was compacted.
    let last = writer.agree(&mut sim, 3);
    sim.wait_for(SECOND, "every node applies the last put", |c| {
        (0..3).all(|i| c.status(i).is_some_and(|s| s.applied >= last.index))
    });
    let leader = sim.check_one_leader();
    for i in 0..3 {
        writer.check_state(&sim, i, "at the end");
        sim.check(
            sim.node(i).kv().map() == sim.node(leader).kv().map(),
            format!("{}'s state differs from the leader's", id(i)),
        );
        sim.check(last_purged(&sim, i) > LogIndex(0), format!("{}'s log was never compacted", id(i)));
    }
    run.installs = installs_everywhere(&sim) - installs_at_start;
    run.chunks = chunks_sent(&sim) - chunks_at_start;
    run.responses = chunk_answers_sent(&sim);
    run.committed = sim.committed().len();
    // Every install received each of a snapshot's chunks, each sent at least once.
    sim.check(
        run.chunks >= FULL_SNAPSHOT_CHUNKS * run.installs,
        format!("{} chunks sent for {} installs of {FULL_SNAPSHOT_CHUNKS}-chunk snapshots", run.chunks, run.installs),
    );
    println!("[seed {seed}] snapshots, victim {victim_fault:?}: {run:?}");
    run
}

// ---------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------

/// Seeds of the lab-shaped snapshot loops and the churns: each run is cheap, and every
/// seed draws other timings, victims and proposal counts.
fn seeds(first: u64) -> Vec<u64> {
    (0..5).map(|k| first + 1000 * k).collect()
}

#[test]
fn snapshot_basic() {
    // Every node compacts its log and the durable logs stay within `log_bound` entries
    // (checked after every iteration by the loop) while hundreds of entries commit.
    for_each_seed(&seeds(301), |seed| {
        let run = snapshot_lab_loop(seed, Victim::Kept, NetworkConfig::reliable());
        let bound = log_bound(5) as u64;
        assert!(
            run.committed as u64 > 5 * bound,
            "[seed {seed}] only {} entries committed in {LAB_ITERATIONS} iterations: too few to show compaction",
            run.committed
        );
    });
}

/// The victims' catch-ups went through snapshot installs in at least a third of the
/// iterations, and each of those took at least one complete multi-chunk transfer.
#[track_caller]
fn check_victims_installed_snapshots(seed: u64, run: &SnapshotRun) {
    assert!(
        run.victim_installs >= (LAB_ITERATIONS / 3) as u64,
        "[seed {seed}] victims installed only {} snapshots in {LAB_ITERATIONS} catch-ups: {run:?}",
        run.victim_installs
    );
    assert!(
        run.chunks_per_install.iter().all(|chunks| *chunks > 1),
        "[seed {seed}] a catch-up installed a snapshot from a single chunk: {run:?}"
    );
}

#[test]
fn snapshot_install_to_a_disconnected_follower() {
    for_each_seed(&seeds(302), |seed| {
        let run = snapshot_lab_loop(seed, Victim::Disconnected, NetworkConfig::reliable());
        check_victims_installed_snapshots(seed, &run);
    });
}

/// Lost, duplicated and held-back chunks and answers: the transfer resumes from the last
/// offset the follower acknowledged.
#[test]
fn snapshot_install_unreliable() {
    for_each_seed(&seeds(303), |seed| {
        let run = snapshot_lab_loop(seed, Victim::Disconnected, NetworkConfig::unreliable());
        check_victims_installed_snapshots(seed, &run);
    });
}

#[test]
fn snapshot_install_with_crashes() {
    for_each_seed(&seeds(304), |seed| {
        let run = snapshot_lab_loop(seed, Victim::Crashed, NetworkConfig::reliable());
        check_victims_installed_snapshots(seed, &run);
    });
}

#[test]
fn snapshot_install_with_crashes_unreliable() {
    for_each_seed(&seeds(305), |seed| {
        let run = snapshot_lab_loop(seed, Victim::Crashed, NetworkConfig::unreliable());
        check_victims_installed_snapshots(seed, &run);
    });
}

/// Crash and restart every node at once.
fn crash_all_and_restart(sim: &mut Sim) {
    for i in 0..sim.len() {
        sim.crash(i);
    }
    for i in 0..sim.len() {
        sim.restart(i);
    }
}

/// Checks every node right after a restart, before any event ran: its state machine was
/// rebuilt from its durable snapshot (the log below it is purged) plus the durable log up
/// to its durable commit index, and holds exactly that committed prefix.
#[track_caller]
fn check_restored_from_snapshot(sim: &Sim, writer: &Writer, when: &str) {
    for i in 0..sim.len() {
        let snapshot = sim.node(i).snapshot_index();
        let status = sim.status_of(i);
        sim.check(snapshot > LogIndex(0), format!("{when}: {} has no durable snapshot", id(i)));
        sim.check(
            last_purged(sim, i) >= snapshot,
            format!(
                "{when}: {}'s log is purged only up to {}, below its snapshot {snapshot}",
                id(i),
                last_purged(sim, i)
            ),
        );
        sim.check(
            status.applied >= snapshot,
            format!("{when}: {} restarted with applied {}, behind its snapshot {snapshot}", id(i), status.applied),
        );
        writer.check_state(sim, i, when);
    }
}

#[test]
fn snapshot_all_nodes_crash_repeatedly_and_applied_never_goes_back() {
    const SEED: u64 = 306;
    let mut sim = Sim::new(snapshot_config(SEED, 0, NetworkConfig::reliable()));
    let mut rng = test_rng(SEED);
    let mut writer = Writer::new();
    write_every_key(&mut sim, &mut writer);
    for round in 0..5 {
        let puts = SNAPSHOT_EVERY / 2 + rng.random_range(0..SNAPSHOT_EVERY);
        for _ in 0..puts {
            writer.agree(&mut sim, 3);
        }
        let index1 = writer.agree(&mut sim, 3);
        let applied_before: Vec<LogIndex> = (0..3).map(|i| sim.status_of(i).applied).collect();
        let max_before = *applied_before.iter().max().expect("three nodes");

        crash_all_and_restart(&mut sim);
        let applied_at_restart: Vec<LogIndex> = (0..3).map(|i| sim.status_of(i).applied).collect();
        check_restored_from_snapshot(&sim, &writer, &format!("round {round}, at restart"));

        let index2 = writer.agree(&mut sim, 3);
        sim.check(
            index2.index > index1.index,
            format!("round {round}: the log index went back: {index1} agreed before the crash, {index2} after"),
        );
        sim.wait_for(SECOND, format!("round {round}: every node applies {index2}"), |c| c.applied_on(index2) == 3);
        let applied_after: Vec<LogIndex> = (0..3).map(|i| sim.status_of(i).applied).collect();
        for i in 0..3 {
            sim.check(
                applied_after[i] >= applied_before[i],
                format!(
                    "round {round}: {} applied {} before the crash but only {} after catching up",
                    id(i),
                    applied_before[i],
                    applied_after[i]
                ),
            );
            writer.check_state(&sim, i, &format!("round {round}, after catching up"));
        }
        let max_after = *applied_after.iter().max().expect("three nodes");
        sim.check(max_after >= max_before, format!("round {round}: the highest applied index went back"));
        println!(
            "[seed {SEED}] round {round}: applied before {applied_before:?}, at restart {applied_at_restart:?}, after {applied_after:?}; snapshots at {:?}",
            (0..3).map(|i| sim.node(i).snapshot_index()).collect::<Vec<_>>()
        );
    }
}

#[test]
fn snapshot_restart_right_after_a_snapshot_reinitialises_state_from_it() {
    const SEED: u64 = 307;
    let mut sim = Sim::new(snapshot_config(SEED, 0, NetworkConfig::reliable()));
    let mut writer = Writer::new();
    writer.agree(&mut sim, 3);
    // Enough puts for a snapshot on every node.
    for _ in 0..=SNAPSHOT_EVERY {
        writer.agree(&mut sim, 3);
    }
    for i in 0..3 {
        let snapshot = sim.node(i).snapshot_index();
        sim.check(snapshot >= LogIndex(SNAPSHOT_EVERY), format!("{} has not snapshotted: {snapshot}", id(i)));
    }
    let before: Vec<BTreeMap<u64, u64>> = (0..3).map(|i| sim.node(i).kv().map().clone()).collect();

    crash_all_and_restart(&mut sim);
    check_restored_from_snapshot(&sim, &writer, "first restart");
    // A single put, so that the log and the hard state are written after the restart.
    writer.agree(&mut sim, 3);
    crash_all_and_restart(&mut sim);
    check_restored_from_snapshot(&sim, &writer, "second restart");
    // One more put, on the state re-initialised from the snapshot.
    let last = writer.agree(&mut sim, 3);
    sim.wait_for(SECOND, format!("every node applies {last}"), |c| c.applied_on(last) == 3);
    for (i, before) in before.iter().enumerate() {
        writer.check_state(&sim, i, "after the last put");
        // Nothing written before the crashes is lost: every key keeps its value or a newer one.
        let map = sim.node(i).kv().map();
        for (key, value) in before {
            let now = map.get(key).copied();
            sim.check(
                now >= Some(*value),
                format!("{}: key {key} held {value} before the crashes, now {now:?}", id(i)),
            );
        }
    }
}

/// Bug list item 5: a follower whose log holds a different entry at the snapshot's last
/// index must discard its whole log, not keep the conflicting entry or what follows it.
#[test]
fn snapshot_that_conflicts_at_its_last_index_replaces_the_follower_log() {
    const SEED: u64 = 308;
    let mut sim = Sim::new(snapshot_config(SEED, 0, NetworkConfig::reliable()));
    let mut writer = Writer::new();
    write_every_key(&mut sim, &mut writer);

    // The leader is cut off and appends 40 entries that can never commit.
    let old = sim.check_one_leader();
    sim.disconnect(old);
    for k in 0..40 {
        let accepted = writer.start(&mut sim, old);
        sim.check(accepted, format!("the cut-off leader refused proposal {k}"));
    }
    let stale_last = sim.status_of(old).last_log_id;

    // The other two elect a leader, commit 15 puts, snapshot and purge their logs.
    for _ in 0..15 {
        writer.agree(&mut sim, 2);
    }
    let leader = sim.check_one_leader();
    let snapshot = sim.node(leader).core().and_then(|core| core.snapshot_meta()).expect("a snapshot").last_included;
    let conflicting = sim.durable_log_id(old, snapshot.index);
    sim.check(
        conflicting.is_some_and(|held| held.term != snapshot.term),
        format!("setup: the old leader should hold a different entry at {snapshot}, holds {conflicting:?}"),
    );
    sim.check(last_purged(&sim, leader) >= snapshot.index, "setup: the leader did not purge up to its snapshot");

    // Reconnected, it is sent the snapshot and, having installed it, holds nothing after it.
    sim.connect(old);
    sim.wait_for(5 * SECOND, format!("{} installs the snapshot at {snapshot}", id(old)), |c| {
        c.node(old).snapshot_index() >= snapshot.index
    });
    let installed = sim.node(old).core().and_then(|core| core.snapshot_meta()).expect("installed").last_included;
    let last = sim.status_of(old).last_log_id;
    println!(
        "[seed {SEED}] conflicting snapshot: {} held {conflicting:?} (log up to {stale_last}), installed {installed}, log now ends at {last}",
        id(old)
    );
    sim.check(installed == snapshot, format!("{} installed {installed}, expected {snapshot}", id(old)));
    sim.check(
        last == installed,
        format!("{} kept its log up to {last} after installing {installed}, over a conflicting entry", id(old)),
    );
    let caught_up = writer.agree(&mut sim, 3);
    sim.check(sim.applied_on(caught_up) == 3, "the old leader did not catch up");
    writer.check_state(&sim, old, "after catching up");
}

// ---------------------------------------------------------------------------------------
// Membership harness
// ---------------------------------------------------------------------------------------

fn set(ids: &[u64]) -> BTreeSet<NodeId> {
    ids.iter().map(|i| NodeId(*i)).collect()
}

fn membership(sim: &Sim, i: usize) -> Membership {
    sim.node(i).core().map(|core| core.membership().clone()).unwrap_or_else(|| sim.fail(format!("{} is down", id(i))))
}

fn committed_membership(sim: &Sim, i: usize) -> Membership {
    sim.node(i)
        .core()
        .map(|core| core.committed_membership().clone())
        .unwrap_or_else(|| sim.fail(format!("{} is down", id(i))))
}

/// The position of the node with `id`.
fn position(id: NodeId) -> usize {
    id.0 as usize - 1
}

/// Whether every member of `target` (voters and learners) runs and has `target` as its
/// committed, non-joint membership.
fn committed_everywhere(sim: &d_engine_sim::Cluster, target: &Membership) -> bool {
    !target.is_joint()
        && target
            .voter_ids()
            .chain(target.learners().iter().copied())
            .all(|member| sim.node(position(member)).core().is_some_and(|core| core.committed_membership() == target))
}

/// Proposes `change` on whoever leads until it is accepted, waiting through the
/// refusals that pass with time (a leader not ready yet, a change in flight, a learner
/// still behind, no leader); fails on any other refusal or after 10 s.
#[track_caller]
fn change_when_possible(sim: &mut Sim, change: MembershipChange) -> (usize, LogId) {
    let deadline = sim.now() + 10 * SECOND;
    loop {
        if let Some(leader) = sim.connected_leader() {
            match sim.change_membership(leader, change.clone()) {
                Ok(log_id) => return (leader, log_id),
                Err(
                    MembershipChangeError::LeaderNotReady
                    | MembershipChangeError::ChangeInProgress
                    | MembershipChangeError::LearnerBehind { .. }
                    | MembershipChangeError::NotLeader { .. },
                ) => {}
                Err(other) => sim.fail(format!("{change:?} refused: {other}")),
            }
        }
        if sim.now() >= deadline {
            sim.fail(format!("{change:?} not accepted within 10 s"));
        }
        sim.run_for(TICK_US);
    }
}

// ---------------------------------------------------------------------------------------
// Membership
// ---------------------------------------------------------------------------------------

#[test]
fn add_a_learner_and_promote_it_once_caught_up() {
    const SEED: u64 = 311;
    let mut config = SimConfig { spare_nodes: 1, ..SimConfig::new(3, SEED) };
    // A learner catches up four entries per round trip, and may vote only within 5 of the leader.
    config.raft.learner_catchup_entries = 5;
    config.raft.max_entries_per_message = 4;
    config.raft.max_inflight_messages = 1;
    let mut sim = Sim::new(config);
    let mut values = Values::after(0);
    let backlog = values.fresh_many(200);
    sim.one_each(&backlog, 3);

    // The learner joins: it starts with the membership that adds it, and the voters stay.
    let leader = sim.check_one_leader();
    let learner = 3;
    let added = sim
        .change_membership(leader, MembershipChange::AddLearner(id(learner)))
        .unwrap_or_else(|e| sim.fail(format!("adding a learner refused: {e}")));
    sim.check(sim.node(learner).is_up(), "the learner was not started");
    let with_learner = membership(&sim, leader);
    sim.check(
        *with_learner.incoming() == set(&[1, 2, 3])
            && *with_learner.learners() == set(&[4])
            && !with_learner.is_joint(),
        format!("after adding a learner the membership is {with_learner:?}"),
    );
    sim.wait_for(SECOND, format!("{added} (add learner) commits"), |c| c.applied_on(added) >= 3);

    // Far behind: promotion is refused, saying by how much.
    let refused = sim.change_membership(leader, MembershipChange::Promote(id(learner)));
    let lag = match refused {
        Err(MembershipChangeError::LearnerBehind { id: who, lag, allowed: 5 }) if who == id(learner) && lag > 5 => lag,
        other => sim.fail(format!("promoting a learner 200 entries behind was answered {other:?}")),
    };

    // It receives the log: it catches up through the backlog.
    let target = sim.status_of(leader).last_log_id;
    sim.wait_for(5 * SECOND, format!("the learner applies up to {target}"), |c| {
        c.status(learner).is_some_and(|s| s.applied >= target.index)
    });

    // It does not count in quorums. Cut off with one voter, the other two voters commit.
    let f1 = (leader + 1) % 3;
    sim.disconnect(learner);
    sim.disconnect(f1);
    sim.one(values.fresh(), 2);
    // With both other voters cut off, the leader and the learner hold a new entry, yet it
    // does not commit: the learner's acknowledgement does not count.
    sim.connect(learner);
    sim.connect(f1);
    sim.one(values.fresh(), 4);
    let leader = sim.check_one_leader();
    let (f1, f2) = ((leader + 1) % 3, (leader + 2) % 3);
    sim.disconnect(f1);
    sim.disconnect(f2);
    let committed_before = sim.committed().len();
    let lonely = sim.propose(leader, command(values.fresh())).unwrap_or_else(|e| sim.fail(format!("refused: {e}")));
    sim.wait_for(SECOND, format!("the learner durably holds {lonely}"), |c| {
        c.node(learner).store().durable_log_id(lonely.index) == Some(lonely)
    });
    sim.run_for(SECOND);
    sim.check(sim.applied_on(lonely) == 0, format!("{lonely} was applied with only the leader and a learner"));
    sim.check(
        sim.committed().len() == committed_before,
        format!("commit advanced from {committed_before} to {} with one voter and a learner", sim.committed().len()),
    );
    // Nor for CheckQuorum: hearing only from a learner, the leader steps down.
    sim.check(
        sim.status_of(leader).role != Role::Leader,
        format!("{} still leads after 1 s with only a learner reachable", id(leader)),
    );

    // Healed and caught up, the learner is promoted through a joint configuration.
    sim.connect(f1);
    sim.connect(f2);
    let (leader, promoted) = change_when_possible(&mut sim, MembershipChange::Promote(id(learner)));
    let joint = membership(&sim, leader);
    sim.check(
        joint.is_joint() && *joint.incoming() == set(&[1, 2, 3, 4]) && *joint.outgoing() == set(&[1, 2, 3]),
        format!("promotion appended {joint:?}, expected the joint configuration {{1,2,3,4}}/{{1,2,3}}"),
    );
    let four = Membership::new(&[NodeId(1), NodeId(2), NodeId(3), NodeId(4)], &[]).expect("valid");
    sim.wait_for(5 * SECOND, format!("{four:?} committed on every member after {promoted}"), |c| {
        committed_everywhere(c, &four)
    });

    // A voter now: with one old voter cut off, commits need the promoted node (3 of 4).
    let leader = sim.check_one_leader();
    let cut = (0..3).find(|i| *i != leader).expect("a follower");
    sim.disconnect(cut);
    let needs_four = sim.one(values.fresh(), 3);
    sim.check(sim.applied_on(needs_four) == 3, "the promoted voter did not take part in the commit");
    println!("[seed {SEED}] learner: refused promotion {lag} entries behind, promoted at {promoted}");
}

#[test]
fn remove_the_leader_it_steps_down_after_the_new_configuration_commits() {
    const SEED: u64 = 312;
    let mut sim = Sim::with(5, SEED);
    sim.one(1, 5);
    let old = sim.check_one_leader();
    let term = sim.status_of(old).term;
    let rest: BTreeSet<NodeId> = (0..5).filter(|i| *i != old).map(id).collect();

    let joint_at = sim
        .change_membership(old, MembershipChange::Remove(id(old)))
        .unwrap_or_else(|e| sim.fail(format!("removing the leader refused: {e}")));
    let joint = membership(&sim, old);
    sim.check(
        joint.is_joint() && *joint.incoming() == rest && joint.outgoing().contains(&id(old)),
        format!("removing the leader appended {joint:?}"),
    );

    // It keeps leading through the joint configuration and steps down once C(new) commits.
    sim.wait_for(2 * SECOND, format!("{} steps down after its removal", id(old)), |c| {
        c.status(old).is_some_and(|s| s.role != Role::Leader)
    });
    let status = sim.status_of(old);
    let at_step_down = committed_membership(&sim, old);
    sim.check(status.term == term, format!("{} left its term {term} for {} during the change", id(old), status.term));
    sim.check(
        !at_step_down.is_joint() && *at_step_down.incoming() == rest && !at_step_down.contains(id(old)),
        format!("{} stepped down with {at_step_down:?} committed, before C(new) committed", id(old)),
    );
    sim.check(status.commit > joint_at.index, format!("{} stepped down before committing C(new)", id(old)));

    // The others elect a leader among themselves and keep committing without it.
    let new = sim.check_one_leader();
    sim.check(new != old, "the removed node leads again");
    let agreed = sim.one(2, 4);
    sim.check(sim.status_of(old).applied < agreed.index, "the removed node is still sent entries");
    let new_term = sim.status_of(new).term;

    // The removed node keeps running, even across a restart, and never disrupts: for 5 s
    // the new leader's term stays put and the removed node never campaigns.
    let mut campaigned = false;
    sim.run_until(2 * SECOND, |c| {
        campaigned |= c.status(old).is_some_and(|s| s.role != Role::Follower);
        false
    });
    sim.reboot(old);
    sim.run_until(3 * SECOND, |c| {
        campaigned |= c.status(old).is_some_and(|s| s.role != Role::Follower);
        false
    });
    let (now_new, now_old) = (sim.status_of(new), sim.status_of(old));
    println!(
        "[seed {SEED}] removed leader {}: stepped down in {term}; new leader {} in {new_term}, {} 5 s later; removed node's term {}",
        id(old),
        id(new),
        now_new.term,
        now_old.term
    );
    sim.check(!campaigned, format!("the removed node {} campaigned", id(old)));
    sim.check(
        now_new.role == Role::Leader && now_new.term == new_term,
        format!("the new leader's term moved from {new_term} to {} (role {:?})", now_new.term, now_new.role),
    );
    sim.check(now_old.term <= new_term, format!("the removed node's term climbed to {}", now_old.term));
    sim.one(3, 4);
}

#[test]
fn replace_a_voter_through_a_joint_configuration() {
    const SEED: u64 = 313;
    let mut sim = Sim::new(SimConfig { spare_nodes: 1, ..SimConfig::new(3, SEED) });
    sim.one(1, 3);
    let (_, added) = change_when_possible(&mut sim, MembershipChange::AddLearner(NodeId(4)));
    sim.wait_for(SECOND, format!("{added} (add learner) applied on all four"), |c| c.applied_on(added) == 4);

    let leader = sim.check_one_leader();
    let leaving = (leader + 1) % 3;
    let new_voters: BTreeSet<NodeId> = (0..4).filter(|i| *i != leaving).map(id).collect();
    let (leader, replaced_at) =
        change_when_possible(&mut sim, MembershipChange::Replace { remove: id(leaving), add: NodeId(4) });
    let joint = membership(&sim, leader);
    sim.check(
        joint.is_joint() && *joint.incoming() == new_voters && *joint.outgoing() == set(&[1, 2, 3]),
        format!("the replacement appended {joint:?}, expected the joint {new_voters:?}/{{1,2,3}}"),
    );
    sim.check(!committed_membership(&sim, leader).is_joint(), "the joint configuration committed at once");

    // The leader commits the joint configuration (seen committed on it), then leaves it by
    // itself: every new voter ends with the same simple configuration committed.
    let target = Membership::from_parts(new_voters.clone(), BTreeSet::new(), BTreeSet::new()).expect("valid");
    let mut joint_committed = false;
    sim.wait_for(5 * SECOND, format!("{target:?} committed on every new voter"), |c| {
        joint_committed |= c.node(leader).core().is_some_and(|core| core.committed_membership().is_joint());
        committed_everywhere(c, &target)
    });
    sim.check(joint_committed, "the joint configuration was never seen committed on the leader");
    let leader_now = sim.check_one_leader();
    sim.check(!membership(&sim, leader_now).contains(id(leaving)), format!("{} is still a member", id(leaving)));

    // The new voter set commits without the replaced node, which keeps running undisturbing.
    let agreed = sim.one(2, 3);
    sim.check(
        sim.status_of(leaving).applied < agreed.index,
        format!("the replaced node {} was still sent {agreed}", id(leaving)),
    );
    let term = sim.status_of(leader_now).term;
    sim.run_for(2 * SECOND);
    let status = sim.status_of(leader_now);
    sim.check(
        status.role == Role::Leader && status.term == term,
        format!("the leader changed within 2 s after the replacement (term {term} -> {})", status.term),
    );
    println!("[seed {SEED}] replaced {} by n4 at {replaced_at}; voters {new_voters:?}", id(leaving));
}

#[test]
fn change_refused_while_another_is_in_flight_and_before_the_leader_commits_its_term() {
    const SEED: u64 = 314;
    let mut sim = Sim::new(SimConfig { spare_nodes: 2, ..SimConfig::new(3, SEED) });

    // The moment a leader is elected its no-op is not committed: it refuses any change
    // (the single-server change bug), and nothing is started.
    sim.wait_for(SECOND, "a first leader", |c| c.leader().is_some());
    let leader = sim.leader().expect("just elected");
    let noop = sim.status_of(leader).last_log_id;
    sim.check(sim.status_of(leader).commit < noop.index, "the new leader's no-op committed at once");
    match sim.change_membership(leader, MembershipChange::AddLearner(NodeId(4))) {
        Err(MembershipChangeError::LeaderNotReady) => {}
        other => sim.fail(format!("a change before the leader's no-op committed was answered {other:?}")),
    }
    sim.check(!sim.node(3).ever_started(), "a refused change started the learner");
    sim.wait_for(SECOND, "the leader's no-op applied everywhere", |c| c.applied_on(noop) == 3);

    // Only the leader changes the membership, and the change must make sense.
    let follower = (leader + 1) % 3;
    match sim.change_membership(follower, MembershipChange::AddLearner(NodeId(4))) {
        Err(MembershipChangeError::NotLeader { leader: hint }) if hint == Some(id(leader)) => {}
        other => sim.fail(format!("a change on a follower was answered {other:?}")),
    }
    let expect = |sim: &mut Sim, change: MembershipChange, expected: MembershipChangeError| {
        let answer = sim.change_membership(leader, change.clone());
        if answer != Err(expected.clone()) {
            sim.fail(format!("{change:?} was answered {answer:?}, expected {expected:?}"));
        }
    };
    expect(&mut sim, MembershipChange::AddLearner(NodeId(1)), MembershipChangeError::AlreadyMember(NodeId(1)));
    expect(&mut sim, MembershipChange::Remove(NodeId(5)), MembershipChangeError::NotAMember(NodeId(5)));
    expect(&mut sim, MembershipChange::Promote(NodeId(4)), MembershipChangeError::NotAMember(NodeId(4)));
    expect(
        &mut sim,
        MembershipChange::ChangeVoters(BTreeSet::new()),
        MembershipChangeError::Invalid(MembershipError::NoVoters),
    );

    // One change at a time: while adding a learner is in flight, every other is refused.
    let added = sim
        .change_membership(leader, MembershipChange::AddLearner(NodeId(4)))
        .unwrap_or_else(|e| sim.fail(format!("adding a learner refused: {e}")));
    expect(&mut sim, MembershipChange::AddLearner(NodeId(5)), MembershipChangeError::ChangeInProgress);
    expect(&mut sim, MembershipChange::Remove(NodeId(1)), MembershipChangeError::ChangeInProgress);
    sim.check(!sim.node(4).ever_started(), "a refused change started a node");
    sim.wait_for(SECOND, format!("{added} commits"), |c| c.status(leader).is_some_and(|s| s.commit >= added.index));

    // A voter change is in flight until the joint configuration is left, not only until
    // it commits: refused before and after the joint entry commits.
    let promoted = sim
        .change_membership(leader, MembershipChange::Promote(NodeId(4)))
        .unwrap_or_else(|e| sim.fail(format!("promoting the caught-up learner refused: {e}")));
    expect(&mut sim, MembershipChange::AddLearner(NodeId(5)), MembershipChangeError::ChangeInProgress);
    sim.wait_for(SECOND, format!("the joint configuration {promoted} commits"), |c| {
        c.node(leader).core().is_some_and(|core| core.committed_membership().is_joint())
    });
    expect(&mut sim, MembershipChange::AddLearner(NodeId(5)), MembershipChangeError::ChangeInProgress);
    let four = Membership::new(&[NodeId(1), NodeId(2), NodeId(3), NodeId(4)], &[]).expect("valid");
    sim.wait_for(SECOND, "the joint configuration is left", |c| committed_everywhere(c, &four));

    // Done: the next change is accepted.
    sim.change_membership(leader, MembershipChange::AddLearner(NodeId(5)))
        .unwrap_or_else(|e| sim.fail(format!("a change after the last one finished refused: {e}")));

    // A leadership transfer in progress also holds changes back.
    sim.wait_for(SECOND, "the second learner's entry commits", |c| {
        c.node(leader).core().is_some_and(|core| core.committed_membership().learners().contains(&NodeId(5)))
    });
    sim.transfer_leadership(leader, follower).unwrap_or_else(|e| sim.fail(format!("transfer refused: {e}")));
    expect(&mut sim, MembershipChange::Remove(NodeId(5)), MembershipChangeError::TransferInProgress);
}

// ---------------------------------------------------------------------------------------
// Membership churn with clients
// ---------------------------------------------------------------------------------------

/// Voters the churn keeps between.
const MIN_VOTERS: usize = 3;
const MAX_VOTERS: usize = 7;

/// What the churn's membership changes did, by kind: (accepted, refused).
#[derive(Debug, Default)]
struct ChurnChanges(BTreeMap<&'static str, (u32, u32)>);

/// One random membership change on the leader, keeping `MIN_VOTERS..=MAX_VOTERS` voters,
/// drawn among those that make sense now: add a learner (a spare node, or a removed one
/// that rejoins with its old log), promote a learner, remove a voter or a learner, replace
/// a voter by a learner, or set the voters. The leader may still refuse (a change in
/// flight, a learner behind, a leader not ready): refusals are part of the churn.
fn random_change(sim: &mut Sim, rng: &mut ChaCha8Rng, changes: &mut ChurnChanges) {
    let Some(leader) = sim.connected_leader() else { return };
    let current = membership(sim, leader);
    let voters: Vec<NodeId> = current.incoming().iter().copied().collect();
    let learners: Vec<NodeId> = current.learners().iter().copied().collect();
    let outsiders: Vec<NodeId> = (0..sim.len()).map(id).filter(|n| !current.contains(*n)).collect();
    let any = |ids: &[NodeId], rng: &mut ChaCha8Rng| ids[rng.random_range(0..ids.len())];
    let mut kinds = Vec::new();
    if !outsiders.is_empty() {
        kinds.push("add learner");
    }
    if !learners.is_empty() && voters.len() < MAX_VOTERS {
        kinds.push("promote");
    }
    if voters.len() > MIN_VOTERS || !learners.is_empty() {
        kinds.push("remove");
    }
    if !learners.is_empty() {
        kinds.extend(["replace", "change voters"]);
    } else if voters.len() > MIN_VOTERS {
        kinds.push("change voters");
    }
    let Some(kind) = kinds.get(rng.random_range(0..kinds.len().max(1))).copied() else { return };
    let change = match kind {
        "add learner" => MembershipChange::AddLearner(any(&outsiders, rng)),
        "promote" => MembershipChange::Promote(any(&learners, rng)),
        "remove" if voters.len() > MIN_VOTERS && (learners.is_empty() || rng.random_bool(0.7)) => {
            MembershipChange::Remove(any(&voters, rng))
        }
        "remove" => MembershipChange::Remove(any(&learners, rng)),
        "replace" => MembershipChange::Replace { remove: any(&voters, rng), add: any(&learners, rng) },
        _ => {
            let mut pool: Vec<NodeId> = voters.iter().chain(&learners).copied().collect();
            for k in (1..pool.len()).rev() {
                pool.swap(k, rng.random_range(0..=k));
            }
            let size = rng.random_range(MIN_VOTERS..=MAX_VOTERS).min(pool.len());
            MembershipChange::ChangeVoters(pool.into_iter().take(size).collect())
        }
    };
    let accepted = sim.change_membership(leader, change).is_ok();
    let counts = changes.0.entry(kind).or_default();
    if accepted {
        counts.0 += 1;
    } else {
        counts.1 += 1;
    }
}

/// Five voters and four spare nodes under a client workload, for 15 s: every 500 ms a
/// random membership change, plus random crashes, restarts and cut-off nodes (and log
/// compaction with small chunks, so new members often catch up from snapshots). Then
/// every fault ends: the cluster settles on one configuration of 3-7 voters that all
/// members agree on, and the client history is linearizable.
fn membership_churn(seed: u64, network: NetworkConfig) {
    let mut config =
        SimConfig { network, workload: Some(WorkloadConfig::default()), spare_nodes: 4, ..SimConfig::new(5, seed) };
    config.raft.snapshot_policy =
        SnapshotPolicy { every_applied_entries: Some(50), max_log_bytes: None, keep_entries: 5 };
    config.raft.snapshot_chunk_bytes = 16;
    let mut sim = Sim::new(config);
    let mut rng = test_rng(seed);
    let mut changes = ChurnChanges::default();
    let (mut crashes, mut cuts) = (0, 0);
    let end = sim.now() + 15 * SECOND;
    while sim.now() < end {
        sim.run_for(500 * MS);
        random_change(&mut sim, &mut rng, &mut changes);
        // Faults come and go: a crash or a cut-off now and then (at most two of each at a
        // time), a restart or a reconnection more often, so that a quorum is usually, not
        // always, available.
        let up: Vec<usize> = (0..sim.len()).filter(|i| sim.node(*i).is_up()).collect();
        let down: Vec<usize> =
            (0..sim.len()).filter(|i| sim.node(*i).ever_started() && !sim.node(*i).is_up()).collect();
        let cut: Vec<usize> = (0..sim.len()).filter(|i| !sim.is_connected(*i)).collect();
        let any = |nodes: &[usize], rng: &mut ChaCha8Rng| nodes[rng.random_range(0..nodes.len())];
        if down.len() < 2 && rng.random_bool(0.25) && !up.is_empty() {
            sim.crash(any(&up, &mut rng));
            crashes += 1;
        }
        if rng.random_bool(0.5) && !down.is_empty() {
            sim.restart(any(&down, &mut rng));
        }
        if cut.len() < 2 && rng.random_bool(0.15) && !up.is_empty() {
            sim.disconnect(any(&up, &mut rng));
            cuts += 1;
        }
        if rng.random_bool(0.4) && !cut.is_empty() {
            sim.connect(any(&cut, &mut rng));
        }
    }
    sim.heal_everything();

    // The cluster settles on one configuration, committed and agreed by every member.
    let mut settled: Option<Membership> = None;
    sim.wait_for(10 * SECOND, "one committed configuration agreed by every member", |c| {
        let Some(leader) = c.leader() else { return false };
        let core = c.node(leader).core().expect("the leader runs");
        if core.committed_membership() != core.membership() || !committed_everywhere(c, core.membership()) {
            return false;
        }
        settled = Some(core.membership().clone());
        true
    });
    let settled = settled.expect("just settled");
    let voters = settled.incoming().len();
    sim.check(
        (MIN_VOTERS..=MAX_VOTERS).contains(&voters),
        format!("the final configuration has {voters} voters: {settled:?}"),
    );
    let operations = sim.finish_clients();
    sim.check(operations > 50, format!("only {operations} client operations were checked"));
    let accepted: u32 = changes.0.values().map(|(ok, _)| ok).sum();
    sim.check(accepted >= 5, format!("only {accepted} membership changes were accepted: {changes:?}"));
    println!(
        "[seed {seed}] membership churn: {operations} operations linearizable; changes (accepted, refused) {:?}; {crashes} crashes, {cuts} cut-offs, {} snapshot chunks; final {settled:?}",
        changes.0,
        chunks_sent(&sim)
    );
}

#[test]
fn membership_churn_reliable() {
    for_each_seed(&seeds(321), |seed| membership_churn(seed, NetworkConfig::reliable()));
}

#[test]
fn membership_churn_unreliable() {
    for_each_seed(&seeds(322), |seed| membership_churn(seed, NetworkConfig::unreliable()));
}
