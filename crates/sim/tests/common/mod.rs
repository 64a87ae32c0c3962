//! The scenario tests' harness, shaped after the classic Raft lab's: a cluster whose links
//! follow a "connected" set, `one()` to get a command agreed on by enough nodes, and the
//! leader and term checks. Every failure names the run's seed and virtual time and
//! describes every node, so a failing scenario replays exactly from its seed.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::ops::{Deref, DerefMut};
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use d_engine_core::storage::LogStore;
use d_engine_core::{EntryPayload, LogId, LogIndex, NodeId, Role, Status, Term};
use d_engine_sim::kv::KvWrite;
use d_engine_sim::linearizability::{KvInput, KvOutput};
use d_engine_sim::node::{OpRef, Reply};
use d_engine_sim::swarm::heal_everything;
use d_engine_sim::{Cluster, SimConfig};

/// One virtual millisecond, in the simulator's microseconds.
pub const MS: u64 = 1_000;
/// One virtual second.
pub const SECOND: u64 = 1_000_000;
/// One tick of `SimConfig::new` (10 ms).
pub const TICK_US: u64 = 10 * MS;
/// The base election timeout of `SimConfig::new` (15 ticks); each node draws its timeout
/// from `[150 ms, 300 ms)`, and a leader runs CheckQuorum once per 150 ms.
pub const ELECTION_TIMEOUT_US: u64 = 150 * MS;
/// The longest randomized election timeout.
pub const ELECTION_TIMEOUT_MAX_US: u64 = 300 * MS;
/// How long `one` keeps trying before it declares that agreement failed (the lab's 10 s).
pub const AGREEMENT_DEADLINE_US: u64 = 10 * SECOND;
/// How long `one` waits for a proposal to be applied before proposing it again (the lab's 2 s).
pub const RETRY_AFTER_US: u64 = 2 * SECOND;
/// How long `check_one_leader` waits for a leader (the lab polls for about 5 s).
pub const LEADER_DEADLINE_US: u64 = 5 * SECOND;
/// The key of the commands tests propose themselves. Client workloads use keys
/// `0..WorkloadConfig::keys`, so these commands never disturb a checked history.
pub const TEST_KEY: u64 = 1 << 40;
/// Search steps the linearizability checker may spend on one key (as the swarm).
pub const CHECKER_BUDGET_PER_KEY: u64 = d_engine_sim::swarm::CHECKER_BUDGET_PER_KEY;

/// The id of the node at position `i` (positions are 0-based, ids start at 1).
pub fn id(i: usize) -> NodeId {
    NodeId(i as u64 + 1)
}

fn ids(positions: &[usize]) -> Vec<NodeId> {
    positions.iter().map(|i| id(*i)).collect()
}

/// The command a test proposes: a put of a value unique to the test onto `TEST_KEY`.
pub fn command(value: u64) -> Bytes {
    KvWrite::Put { key: TEST_KEY, value }.encode()
}

/// A cluster plus the set of nodes the test considers connected. Links follow that set
/// exactly: connected nodes reach each other, a disconnected node reaches nobody.
/// (`Cluster::reconnect` restores every link of a node, including those to nodes that are
/// still meant to be cut off; `Sim::connect` does not.)
pub struct Sim {
    cluster: Cluster,
    connected: Vec<bool>,
}

impl Deref for Sim {
    type Target = Cluster;

    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl DerefMut for Sim {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }
}

impl Sim {
    /// Starts a cluster with every node connected, spare nodes included (they are in the
    /// connected set from the start, so links follow it once they join).
    pub fn new(config: SimConfig) -> Sim {
        let nodes = config.nodes + config.spare_nodes;
        Sim { cluster: Cluster::new(config), connected: vec![true; nodes] }
    }

    /// Starts a reliable cluster of `nodes` with the simulator's standard timing.
    pub fn with(nodes: usize, seed: u64) -> Sim {
        Sim::new(SimConfig::new(nodes, seed))
    }

    /// Panics with the seed, the virtual time, `message` and every node's state.
    #[track_caller]
    pub fn fail(&self, message: impl Display) -> ! {
        panic!(
            "[seed {}] at t={}us: {message}\n{}replay: rerun this test; the seed fixes every choice",
            self.seed(),
            self.now(),
            self.describe()
        )
    }

    /// Asserts `condition`, failing with `message` (and the seed) otherwise.
    #[track_caller]
    pub fn check(&self, condition: bool, message: impl Display) {
        if !condition {
            self.fail(message);
        }
    }

    /// Runs until `condition` holds, failing with `what` if it does not within `max_us`.
    #[track_caller]
    pub fn wait_for(&mut self, max_us: u64, what: impl Display, condition: impl FnMut(&Cluster) -> bool) {
        if !self.cluster.run_until(max_us, condition) {
            self.fail(format!("{what}: not reached within {}ms", max_us / MS));
        }
    }

    /// Cuts node `i` off from every other node.
    pub fn disconnect(&mut self, i: usize) {
        self.connected[i] = false;
        self.apply_links();
    }

    /// Connects node `i` to every connected node (and to no disconnected one).
    pub fn connect(&mut self, i: usize) {
        self.connected[i] = true;
        self.apply_links();
    }

    /// Connects exactly `nodes`; every other node is cut off.
    pub fn connect_only(&mut self, nodes: &[usize]) {
        for i in 0..self.connected.len() {
            self.connected[i] = nodes.contains(&i);
        }
        self.apply_links();
    }

    /// Whether node `i` is in the connected set.
    pub fn is_connected(&self, i: usize) -> bool {
        self.connected[i]
    }

    /// Ends every fault (links, network quality, disks, pauses, crashes): all nodes run
    /// and are connected.
    pub fn heal_everything(&mut self) {
        heal_everything(&mut self.cluster);
        self.connected.iter_mut().for_each(|connected| *connected = true);
    }

    /// Crash and restart from durable state (the lab's `start1` on a running server).
    pub fn reboot(&mut self, i: usize) {
        self.cluster.crash(i);
        self.cluster.restart(i);
    }

    fn apply_links(&mut self) {
        let ids = self.cluster.ids();
        let mut groups = vec![ids.iter().zip(&self.connected).filter(|(_, c)| **c).map(|(id, _)| *id).collect()];
        groups.extend(ids.iter().zip(&self.connected).filter(|(_, c)| !**c).map(|(id, _)| vec![*id]));
        self.cluster.network().partition(&groups);
    }

    /// Connected nodes that are running and not paused.
    pub fn live_connected(&self) -> Vec<usize> {
        (0..self.len()).filter(|i| self.connected[*i] && self.node(*i).is_up() && !self.is_paused(*i)).collect()
    }

    /// The status of a running node.
    #[track_caller]
    pub fn status_of(&self, i: usize) -> Status {
        self.status(i).unwrap_or_else(|| self.fail(format!("{} is down", id(i))))
    }

    /// Waits (up to 5 s) for a leader among the live connected nodes whose term is the
    /// highest among them, and returns it.
    #[track_caller]
    pub fn check_one_leader(&mut self) -> usize {
        let among = self.live_connected();
        if !self.cluster.run_until(LEADER_DEADLINE_US, |c| current_leader(c, &among).is_some()) {
            self.fail(format!("expected one leader among connected nodes {:?}, none within 5 s", ids(&among)));
        }
        current_leader(&self.cluster, &among).expect("just checked")
    }

    /// Asserts that no live connected node believes it leads.
    #[track_caller]
    pub fn check_no_leader(&self) {
        for i in self.live_connected() {
            if self.status_of(i).role == Role::Leader {
                self.fail(format!("expected no leader among the connected nodes, but {} leads", id(i)));
            }
        }
    }

    /// Asserts that every live connected node is in the same term, and returns it.
    #[track_caller]
    pub fn check_terms_agree(&self) -> Term {
        let terms: BTreeSet<Term> = self.live_connected().iter().map(|i| self.status_of(*i).term).collect();
        if terms.len() != 1 {
            self.fail(format!("connected nodes disagree on the term: {terms:?}"));
        }
        *terms.first().expect("one term")
    }

    /// The leader (highest term) among the live connected nodes, if one exists now.
    pub fn connected_leader(&self) -> Option<usize> {
        current_leader(&self.cluster, &self.live_connected())
    }

    /// Whether a different entry was committed at `log_id`'s index.
    pub fn overwritten(&self, log_id: LogId) -> bool {
        self.committed().get(log_id.index.0 as usize - 1).is_some_and(|committed| *committed != log_id)
    }

    /// The classic lab's `one()`: proposes `value` on the connected leader and waits until
    /// at least `expected` nodes applied it. Proposes again (on whoever leads then) when the
    /// proposal was overwritten or not applied within 2 s; fails after 10 s. Returns the
    /// log id under which the command was applied.
    #[track_caller]
    pub fn one(&mut self, value: u64, expected: usize) -> LogId {
        self.one_each(&[value], expected)[0]
    }

    /// `one()` for several values proposed concurrently (back to back, without waiting).
    /// Returns, per value, the log id under which it was applied.
    #[track_caller]
    pub fn one_each(&mut self, values: &[u64], expected: usize) -> Vec<LogId> {
        let start = self.now();
        let mut proposals: Vec<Vec<(LogId, u64)>> = vec![Vec::new(); values.len()];
        loop {
            let agreed: Vec<Option<LogId>> = proposals
                .iter()
                .map(|tries| tries.iter().map(|(id, _)| *id).find(|id| self.applied_on(*id) >= expected))
                .collect();
            if agreed.iter().all(Option::is_some) {
                return agreed.into_iter().flatten().collect();
            }
            if self.now() >= start + AGREEMENT_DEADLINE_US {
                let missing: Vec<_> = values
                    .iter()
                    .zip(&proposals)
                    .zip(&agreed)
                    .filter(|(_, agreed)| agreed.is_none())
                    .map(|((value, tries), _)| (value, tries))
                    .collect();
                self.fail(format!(
                    "one(): no agreement on {expected} nodes within {}s for (value, [(proposed as, at)]): {missing:?}",
                    AGREEMENT_DEADLINE_US / SECOND
                ));
            }
            let now = self.now();
            let to_propose: Vec<usize> = (0..values.len())
                .filter(|k| agreed[*k].is_none())
                .filter(|k| proposals[*k].iter().all(|(id, at)| now >= at + RETRY_AFTER_US || self.overwritten(*id)))
                .collect();
            if !to_propose.is_empty()
                && let Some(leader) = self.connected_leader()
            {
                for k in to_propose {
                    if let Ok(log_id) = self.cluster.propose(leader, command(values[k])) {
                        proposals[k].push((log_id, now));
                    }
                }
            }
            // Stop the moment every value is agreed, else look again (retries) in 10 ms.
            self.cluster.run_until(10 * MS, |c| {
                proposals.iter().all(|tries| tries.iter().any(|(id, _)| c.applied_on(*id) >= expected))
            });
        }
    }

    /// Waits (up to 5 s) until every entry of `log_ids` is applied on every node.
    #[track_caller]
    pub fn wait_applied_everywhere(&mut self, log_ids: &[LogId]) {
        let n = self.len();
        let what = format!("every one of {log_ids:?} applied on all {n} nodes");
        self.wait_for(5 * SECOND, what, |c| log_ids.iter().all(|id| c.applied_on(*id) == n));
    }

    /// Runs until replies to the test's own `client_request`s arrive and returns them;
    /// fails if none arrives within `max_us`.
    #[track_caller]
    pub fn await_replies(&mut self, max_us: u64) -> Vec<(OpRef, Reply)> {
        let deadline = self.now() + max_us;
        loop {
            let replies = self.take_replies();
            if !replies.is_empty() {
                return replies;
            }
            if self.now() >= deadline {
                self.fail(format!("no reply to a client request within {}ms", max_us / MS));
            }
            self.run_for(MS);
        }
    }

    /// The log id node `i` durably holds at `index`, if any.
    pub fn durable_log_id(&self, i: usize, index: LogIndex) -> Option<LogId> {
        self.node(i).store().durable_log_id(index)
    }

    /// The client workload's end: stop clients, let outstanding operations finish (or time
    /// out), and check the history. Returns the number of operations checked; fails if the
    /// history is not linearizable or the checker gave up.
    #[track_caller]
    pub fn finish_clients(&mut self) -> usize {
        self.stop_clients();
        self.wait_for(10 * SECOND, "clients' outstanding operations to finish", |c| {
            !c.workload().expect("a client workload").has_outstanding()
        });
        match self.cluster.finish(CHECKER_BUDGET_PER_KEY) {
            Ok(operations) => operations,
            Err(error) => self.fail(format!("client history check failed: {error}")),
        }
    }

    /// Asserts that every write a client saw acknowledged is in the committed log, read
    /// from node `i`'s store (which must have applied everything committed). Returns how
    /// many acknowledged writes were checked. Deletes carry no unique value and are skipped.
    #[track_caller]
    pub fn check_acknowledged_writes_in_log(&self, i: usize) -> usize {
        let committed = self.committed().len() as u64;
        self.check(
            self.status_of(i).applied.0 >= committed,
            format!("{} has not applied all {committed} committed entries", id(i)),
        );
        let entries = self
            .node(i)
            .store()
            .entries(LogIndex(1)..=LogIndex(committed))
            .unwrap_or_else(|error| self.fail(format!("reading {}'s log: {error}", id(i))));
        let mut in_log = BTreeSet::new();
        for entry in entries {
            if let EntryPayload::Command(data) = &entry.payload {
                match KvWrite::decode(data) {
                    Some(KvWrite::Put { key, value }) | Some(KvWrite::Cas { key, new: value, .. }) => {
                        in_log.insert((key, value));
                    }
                    _ => {}
                }
            }
        }
        let workload = self.workload().expect("a client workload");
        let mut checked = 0;
        for op in workload.history() {
            let written = match (op.input, op.output) {
                (KvInput::Put(value), KvOutput::Put) => value,
                (KvInput::Cas { new, .. }, KvOutput::Cas(_)) => new,
                _ => continue,
            };
            checked += 1;
            if !in_log.contains(&(op.key, written)) {
                self.fail(format!(
                    "acknowledged write of {written} to key {} is not in the committed log: {op:?}",
                    op.key
                ));
            }
        }
        checked
    }
}

/// The leader among `among` whose term is the highest any of them has.
fn current_leader(cluster: &Cluster, among: &[usize]) -> Option<usize> {
    let statuses: Vec<(usize, Status)> = among.iter().filter_map(|i| cluster.status(*i).map(|s| (*i, s))).collect();
    let highest = statuses.iter().map(|(_, s)| s.term).max()?;
    statuses.iter().find(|(_, s)| s.role == Role::Leader && s.term == highest).map(|(i, _)| *i)
}

/// Runs `scenario` once per seed and reports every failing seed (with its panic message)
/// instead of stopping at the first, so a multi-seed failure says which seeds to replay.
pub fn for_each_seed(seeds: &[u64], scenario: impl Fn(u64)) {
    let mut failures = Vec::new();
    for seed in seeds {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| scenario(*seed))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".to_string());
            failures.push(format!("seed {seed}: {message}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} seeds failed:\n{}", failures.len(), seeds.len(), failures.join("\n"));
}

/// Unique values for a test's commands.
#[derive(Debug, Default)]
pub struct Values(u64);

impl Values {
    /// Values after `start`.
    pub fn after(start: u64) -> Values {
        Values(start)
    }

    /// The next unused value.
    pub fn fresh(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }

    /// `count` unused values.
    pub fn fresh_many(&mut self, count: usize) -> Vec<u64> {
        (0..count).map(|_| self.fresh()).collect()
    }
}
