//! Swarm testing: every seed draws its own cluster size, protocol settings and mix of
//! faults, runs a client workload through a fault phase and a liveness phase, and checks
//! the history. A seed fails on any invariant violation, a core assertion, a liveness
//! timeout, or a linearizability checker that cannot decide.

use std::panic::{AssertUnwindSafe, catch_unwind};

use d_engine_core::{LeaseReadConfig, MembershipChange, NodeId, ReadPolicy, SnapshotPolicy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cluster::{Cluster, SimConfig};
use crate::network::NetworkConfig;
use crate::workload::WorkloadConfig;

/// One kind of fault a seed may inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Crash a node (losing unsynced writes) or restart a crashed one.
    Crash,
    /// Freeze a node's process, or resume one.
    Pause,
    /// Split the cluster into two sides.
    Partition,
    /// Cut one direction of one link.
    OneWay,
    /// A reaches B and B reaches C, but A does not reach C.
    PartialConnectivity,
    /// Cut the current leader off.
    IsolateLeader,
    /// Crash the current leader (it restarts with the next `Crash` or when faults stop).
    CrashLeader,
    /// Crash a node and restart it within 30 ms: it comes back with only its durable state
    /// while the election or replication it took part in is still going on.
    Reboot,
    /// Switch between a reliable and an unreliable (lossy, duplicating, reordering) network.
    Unreliable,
    /// Make a node's disk 20-200 times slower, or restore it.
    SlowDisk,
    /// Ask the leader to hand leadership to a random node.
    Transfer,
    /// Change the membership: add a learner, promote one, remove or replace a voter, or set
    /// the voters (between 3 and 7 of them); removed nodes keep running.
    Membership,
    /// Ask a random node to snapshot now.
    Snapshot,
    /// Reboot a node 0-3 ms after it grants a vote, while the election it voted in is still
    /// going on: a vote that was not durable would let it vote twice in one term.
    RebootVoter,
}

const ALL_FAULTS: [Fault; 14] = [
    Fault::Crash,
    Fault::Pause,
    Fault::Partition,
    Fault::OneWay,
    Fault::PartialConnectivity,
    Fault::IsolateLeader,
    Fault::CrashLeader,
    Fault::Reboot,
    Fault::Unreliable,
    Fault::SlowDisk,
    Fault::Transfer,
    Fault::Membership,
    Fault::Snapshot,
    Fault::RebootVoter,
];

/// Virtual time of the fault phase.
pub const FAULT_PHASE_US: u64 = 20_000_000;
/// Once faults stop, a leader must serve every client within this virtual time.
pub const LIVENESS_BOUND_US: u64 = 10_000_000;
/// Search steps the linearizability checker may spend on one key.
pub const CHECKER_BUDGET_PER_KEY: u64 = 5_000_000;

/// What a passing seed did.
#[derive(Clone, Debug)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// Cluster size.
    pub nodes: usize,
    /// The faults drawn for it.
    pub faults: Vec<Fault>,
    /// Client operations checked for linearizability.
    pub operations: usize,
    /// Entries committed.
    pub committed: usize,
    /// Snapshot chunks sent to lagging peers.
    pub snapshot_chunks: u64,
}

/// The plan a seed runs: derived from the seed alone (and the optional node count).
#[derive(Clone, Debug)]
pub struct SeedPlan {
    /// The cluster's configuration.
    pub config: SimConfig,
    /// The faults to inject.
    pub faults: Vec<Fault>,
}

impl SeedPlan {
    /// Draws the cluster size (unless given), settings and fault mix from `seed`.
    pub fn new(seed: u64, nodes: Option<usize>) -> SeedPlan {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed_5eed_5eed);
        // Drawn even when forced, so that `--nodes K` with the drawn K replays the same run.
        let drawn = [3, 3, 5, 5, 7][rng.random_range(0..5)];
        let nodes = nodes.unwrap_or(drawn);
        let mut config = SimConfig::new(nodes, seed);
        config.replay = format!("cargo xtask sim --seed {seed} --nodes {nodes}");
        config.raft.pre_vote = rng.random_bool(0.6);
        config.raft.check_quorum = rng.random_bool(0.5);
        config.raft.max_inflight_messages = [1, 4, 64][rng.random_range(0..3)];
        config.raft.max_entries_per_message = [1, 8, 256][rng.random_range(0..3)];
        config.raft.entry_cache_entries = [4, 64, 4096][rng.random_range(0..3)];
        if rng.random_bool(0.7) {
            config.raft.snapshot_policy = SnapshotPolicy {
                every_applied_entries: [None, Some(10), Some(50), Some(200)][rng.random_range(0..4)],
                max_log_bytes: [None, Some(500), Some(5_000)][rng.random_range(0..3)],
                keep_entries: [0, 3, 30][rng.random_range(0..3)],
            };
            config.raft.snapshot_chunk_bytes = [8, 16, 1 << 20][rng.random_range(0..3)];
        }
        if rng.random_bool(0.3) {
            config.raft.lease_read = Some(LeaseReadConfig { clock_drift_ticks: 2 });
            config.read_policy = ReadPolicy::Lease;
        }
        config.workload = Some(WorkloadConfig { clients: rng.random_range(3..=6), ..WorkloadConfig::default() });
        let mut faults: Vec<Fault> = ALL_FAULTS.iter().copied().filter(|_| rng.random_bool(0.5)).collect();
        if faults.is_empty() {
            faults.push(ALL_FAULTS[rng.random_range(0..ALL_FAULTS.len())]);
        }
        if faults.contains(&Fault::RebootVoter) {
            config.reboot_after_vote = 0.3;
        }
        if faults.contains(&Fault::Membership) {
            config.spare_nodes = 9 - nodes;
            config.replay = format!("cargo xtask sim --seed {seed} --nodes {nodes}");
        }
        SeedPlan { config, faults }
    }
}

/// Runs one seed; any panic (invariant, core assertion) becomes an `Err` naming the seed.
pub fn run_seed(seed: u64, nodes: Option<usize>) -> Result<SeedReport, String> {
    let plan = SeedPlan::new(seed, nodes);
    match catch_unwind(AssertUnwindSafe(|| run_plan(&plan))) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic without message".into());
            Err(message)
        }
    }
}

fn run_plan(plan: &SeedPlan) -> Result<SeedReport, String> {
    let mut cluster = Cluster::new(plan.config.clone());
    let mut fault_rng = ChaCha8Rng::seed_from_u64(plan.config.seed.rotate_left(17));
    let end_of_faults = cluster.now() + FAULT_PHASE_US;
    while cluster.now() < end_of_faults {
        cluster.run_for(fault_rng.random_range(10_000..400_000));
        if fault_rng.random_bool(0.35) {
            recover_something(&mut cluster, &mut fault_rng);
        } else {
            let fault = plan.faults[fault_rng.random_range(0..plan.faults.len())];
            inject(&mut cluster, fault, &mut fault_rng);
        }
    }
    heal_everything(&mut cluster);
    let seed = plan.config.seed;
    let baseline: Vec<u64> = {
        let workload = cluster.workload().expect("the swarm always runs clients");
        (0..workload.clients()).map(|client| workload.completed(client)).collect()
    };
    let live = cluster.run_until(LIVENESS_BOUND_US, |c| {
        let workload = c.workload().expect("clients");
        c.leader().is_some()
            && baseline.iter().enumerate().all(|(client, before)| workload.completed(client) >= before + 2)
    });
    if !live {
        return Err(format!(
            "[seed {seed}] liveness: {}us after faults stopped, no leader served every client (leader: {:?}) at t={}us\n{}",
            LIVENESS_BOUND_US,
            cluster.leader(),
            cluster.now(),
            cluster.describe()
        ));
    }
    cluster.stop_clients();
    cluster.run_until(LIVENESS_BOUND_US, |c| !c.workload().expect("clients").has_outstanding());
    let operations = cluster.finish(CHECKER_BUDGET_PER_KEY).map_err(|e| format!("[seed {seed}] {e}"))?;
    Ok(SeedReport {
        seed,
        nodes: plan.config.nodes,
        faults: plan.faults.clone(),
        operations,
        committed: cluster.committed().len(),
        snapshot_chunks: cluster.message_counts().get("install_snapshot").copied().unwrap_or(0),
    })
}

fn inject(cluster: &mut Cluster, fault: Fault, rng: &mut ChaCha8Rng) {
    let n = cluster.len();
    let pick = |rng: &mut ChaCha8Rng| rng.random_range(0..n);
    match fault {
        Fault::Crash => {
            let i = pick(rng);
            if cluster.node(i).is_up() { cluster.crash(i) } else { cluster.restart(i) }
        }
        Fault::Pause => {
            let i = pick(rng);
            if cluster.is_paused(i) { cluster.resume(i) } else { cluster.pause(i) }
        }
        Fault::Partition => {
            let mut ids = cluster.ids();
            let split = rng.random_range(1..n);
            for k in (1..ids.len()).rev() {
                ids.swap(k, rng.random_range(0..=k));
            }
            let (left, right) = ids.split_at(split);
            cluster.network().partition(&[left.to_vec(), right.to_vec()]);
        }
        Fault::OneWay => {
            let ids = cluster.ids();
            let (a, b) = (ids[pick(rng)], ids[pick(rng)]);
            if a != b {
                cluster.network().block(a, b);
            }
        }
        Fault::PartialConnectivity => {
            let ids = cluster.ids();
            let (a, c) = (ids[pick(rng)], ids[pick(rng)]);
            if a != c {
                cluster.network().heal();
                cluster.network().block(a, c);
                cluster.network().block(c, a);
            }
        }
        Fault::IsolateLeader => {
            if rng.random_bool(0.5)
                && let Some(leader) = cluster.leader()
            {
                cluster.disconnect(leader);
            } else {
                cluster.network().heal();
            }
        }
        Fault::CrashLeader => {
            if let Some(leader) = cluster.leader() {
                cluster.crash(leader);
            }
        }
        Fault::Reboot => {
            let i = pick(rng);
            cluster.crash(i);
            cluster.run_for(rng.random_range(0..30_000));
            cluster.restart(i);
        }
        // Injected as votes are granted (`SimConfig::reboot_after_vote`), not on the timer.
        Fault::RebootVoter => {}
        Fault::Membership => change_membership(cluster, rng),
        Fault::Snapshot => cluster.trigger_snapshot(pick(rng)),
        Fault::Unreliable => {
            let config = if rng.random_bool(0.5) { NetworkConfig::unreliable() } else { NetworkConfig::reliable() };
            cluster.network().set_config(config);
        }
        Fault::SlowDisk => {
            let i = pick(rng);
            let factor = if rng.random_bool(0.5) { rng.random_range(20..200) } else { 1 };
            cluster.set_disk_slowness(i, factor);
        }
        Fault::Transfer => {
            if let Some(leader) = cluster.leader() {
                let target = pick(rng);
                let _ = cluster.transfer_leadership(leader, target);
            }
        }
    }
}

/// One random membership change on the leader; refusals (a change in flight, a learner
/// still behind, ...) are part of the test.
fn change_membership(cluster: &mut Cluster, rng: &mut ChaCha8Rng) {
    let Some(leader) = cluster.leader() else { return };
    let membership = cluster.node(leader).core().expect("the leader runs").membership().clone();
    let voters: Vec<NodeId> = membership.incoming().iter().copied().collect();
    let learners: Vec<NodeId> = membership.learners().iter().copied().collect();
    let spare: Vec<NodeId> =
        (0..cluster.len()).filter(|i| !cluster.node(*i).ever_started()).map(|i| NodeId(i as u64 + 1)).collect();
    let any = |ids: &[NodeId], rng: &mut ChaCha8Rng| ids[rng.random_range(0..ids.len())];
    let change = match rng.random_range(0..5) {
        0 if !spare.is_empty() => MembershipChange::AddLearner(spare[0]),
        1 if !learners.is_empty() && voters.len() < 7 => MembershipChange::Promote(any(&learners, rng)),
        2 if voters.len() > 3 || !learners.is_empty() => {
            let pool = if voters.len() > 3 { &voters } else { &learners };
            MembershipChange::Remove(any(pool, rng))
        }
        3 if !learners.is_empty() => MembershipChange::Replace { remove: any(&voters, rng), add: any(&learners, rng) },
        4 => {
            let mut pool: Vec<NodeId> = voters.iter().chain(&learners).copied().collect();
            for k in (1..pool.len()).rev() {
                pool.swap(k, rng.random_range(0..=k));
            }
            let size = rng.random_range(3..=7).min(pool.len());
            MembershipChange::ChangeVoters(pool.into_iter().take(size).collect())
        }
        _ => return,
    };
    let _ = cluster.change_membership(leader, change);
}

/// Undoes one fault at random, so that the cluster has healthy stretches between faults.
fn recover_something(cluster: &mut Cluster, rng: &mut ChaCha8Rng) {
    let i = rng.random_range(0..cluster.len());
    match rng.random_range(0..4) {
        0 => cluster.network().heal(),
        1 => cluster.restart(i),
        2 => cluster.resume(i),
        _ => cluster.set_disk_slowness(i, 1),
    }
}

/// Ends every fault: links, network quality, disks, paused and crashed processes.
pub fn heal_everything(cluster: &mut Cluster) {
    cluster.network().heal();
    cluster.network().set_config(NetworkConfig::reliable());
    for i in 0..cluster.len() {
        cluster.set_disk_slowness(i, 1);
        cluster.resume(i);
        cluster.restart(i);
    }
}
