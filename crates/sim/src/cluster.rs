//! The simulated cluster: real cores on virtual time, driven by one seeded RNG.
//!
//! Everything that happens is an event in one queue ordered by (virtual time, sequence
//! number): ticks, message deliveries, disk completions and client traffic. Because the
//! queue, the network and every random choice derive from the seed, a run replays
//! exactly from it. Invariants are checked after every event; a violation panics with
//! the seed and the virtual time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use bytes::Bytes;
use d_engine_core::{
    Config, Envelope, LogId, LogIndex, Membership, MembershipChange, MembershipChangeError, NodeId, ProposeError,
    ReadPolicy, Role, Status, TransferError, WriteId,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::checker::Checker;
use crate::linearizability::{self, CheckResult};
use crate::network::{Network, NetworkConfig};
use crate::node::{Effect, OpRef, Reply, Request, SimNode};
use crate::workload::{ClientAction, Workload, WorkloadConfig};

/// Everything that defines a simulation run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of voting nodes (ids 1..=nodes).
    pub nodes: usize,
    /// The seed every random choice derives from.
    pub seed: u64,
    /// The protocol settings of every node.
    pub raft: Config,
    /// The network's behaviour at start.
    pub network: NetworkConfig,
    /// Virtual microseconds per tick.
    pub tick_us: u64,
    /// Range of one disk sync's latency, in virtual microseconds.
    pub disk_latency_us: (u64, u64),
    /// How clients' reads are confirmed.
    pub read_policy: ReadPolicy,
    /// Client load, if any.
    pub workload: Option<WorkloadConfig>,
    /// Extra node ids (after the voters) that exist but never ran: they join through
    /// membership changes.
    pub spare_nodes: usize,
    /// How to replay this run, printed with any failure (the swarm sets its command line).
    pub replay: String,
    /// Probability that a node that just granted a vote is rebooted 0-3 ms later, while the
    /// election it voted in is still going on (a vote that was not durable would be lost).
    pub reboot_after_vote: f64,
}

impl SimConfig {
    /// A reliable cluster of `nodes` with the simulator's standard timing: 10 ms ticks,
    /// heartbeats every 20 ms, election timeouts of 150-300 ms.
    pub fn new(nodes: usize, seed: u64) -> SimConfig {
        SimConfig {
            nodes,
            seed,
            raft: Config { election_timeout_ticks: 15, heartbeat_interval_ticks: 2, ..Config::default() },
            network: NetworkConfig::reliable(),
            tick_us: 10_000,
            disk_latency_us: (50, 500),
            read_policy: ReadPolicy::ReadIndex,
            workload: None,
            spare_nodes: 0,
            replay: format!("rerun the test: the run is determined by seed {seed}"),
            reboot_after_vote: 0.0,
        }
    }
}

#[derive(Debug)]
enum Event {
    Tick(usize),
    Deliver(Box<Envelope>),
    DiskDone {
        node: usize,
        incarnation: u64,
        write: WriteId,
    },
    ClientArrive {
        node: usize,
        op: OpRef,
        request: Request,
    },
    ClientReply {
        op: OpRef,
        reply: Reply,
    },
    ClientDeadline(OpRef),
    ClientNext(usize),
    /// Crash node `usize` and restart it at once (a reboot).
    Reboot(usize),
}

#[derive(Debug)]
struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Debug, Default)]
struct Paused {
    missed_ticks: u64,
    inbox: Vec<Event>,
}

#[derive(Debug)]
struct Disk {
    free_at: u64,
    slow_factor: u64,
}

/// A simulated cluster.
pub struct Cluster {
    config: SimConfig,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<SimNode>,
    network: Network,
    disks: Vec<Disk>,
    paused: Vec<Option<Paused>>,
    checker: Checker,
    workload: Option<Workload>,
    messages: BTreeMap<&'static str, u64>,
    payload_bytes_sent: u64,
    append_conflicts_sent: u64,
    /// Replies to requests a test sent itself with `client_request` (no workload).
    replies: Vec<(OpRef, Reply)>,
    /// The newest membership known committed: the one in force at the highest commit index
    /// any node ever reported (with that index).
    committed_membership: Membership,
    /// The newest membership appended on that node.
    newest_membership: Membership,
    highest_commit: LogIndex,
}

impl Cluster {
    /// Starts every node (empty logs) and, if configured, the clients.
    pub fn new(config: SimConfig) -> Cluster {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let membership = Membership::with_voters(1..=config.nodes as u64).expect("at least one node");
        let nodes: Vec<SimNode> = (0..config.nodes + config.spare_nodes)
            .map(|i| {
                let id = NodeId(i as u64 + 1);
                if i < config.nodes {
                    SimNode::new(id, config.raft.clone(), membership.clone(), config.read_policy, rng.random())
                } else {
                    SimNode::unstarted(id, config.raft.clone(), membership.clone(), config.read_policy)
                }
            })
            .collect();
        let workload = config.workload.clone().map(|w| Workload::new(w, config.nodes + config.spare_nodes, &mut rng));
        let mut cluster = Cluster {
            network: Network::new(config.network.clone()),
            disks: (0..config.nodes + config.spare_nodes).map(|_| Disk { free_at: 0, slow_factor: 1 }).collect(),
            paused: (0..config.nodes + config.spare_nodes).map(|_| None).collect(),
            checker: Checker::new(),
            committed_membership: membership.clone(),
            newest_membership: membership.clone(),
            highest_commit: LogIndex(0),
            nodes,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            workload,
            messages: BTreeMap::new(),
            payload_bytes_sent: 0,
            append_conflicts_sent: 0,
            replies: Vec::new(),
            config,
        };
        for i in 0..cluster.nodes.len() {
            let phase = cluster.rng.random_range(0..cluster.config.tick_us);
            cluster.schedule(phase, Event::Tick(i));
        }
        if let Some(workload) = &cluster.workload {
            for client in 0..workload.clients() {
                cluster.schedule(0, Event::ClientNext(client));
            }
        }
        cluster
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// Virtual time, in microseconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node (never true: a cluster has at least one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The run's random generator, for tests that make their own choices reproducibly.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Node `i` (by position, id `i + 1`).
    pub fn node(&self, i: usize) -> &SimNode {
        &self.nodes[i]
    }

    /// The protocol status of node `i`, `None` while it is down.
    pub fn status(&self, i: usize) -> Option<Status> {
        self.nodes[i].core().map(|core| core.status())
    }

    /// The running, unpaused node that leads the highest term, if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|i| self.paused[*i].is_none())
            .filter_map(|i| self.status(i).map(|status| (i, status)))
            .filter(|(_, status)| status.role == Role::Leader)
            .max_by_key(|(_, status)| status.term)
            .map(|(i, _)| i)
    }

    /// A one-line-per-node summary, for failure reports.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let state = match (node.core(), self.paused[i].is_some()) {
                (None, _) => "down".to_string(),
                (Some(core), paused) => {
                    let s = core.status();
                    let m = core.membership();
                    format!(
                        "{:?} {} vote {:?} leader {:?} commit {} applied {} last {} durable {} voters {:?}/{:?} learners {:?} snapshot {:?}{}",
                        s.role,
                        s.term,
                        s.vote,
                        s.leader,
                        s.commit,
                        s.applied,
                        s.last_log_id,
                        s.durable_index,
                        m.incoming(),
                        m.outgoing(),
                        m.learners(),
                        core.snapshot_meta().map(|meta| meta.last_included),
                        if paused { " (paused)" } else { "" }
                    )
                }
            };
            out.push_str(&format!("  {}: {state}\n", node.id()));
        }
        if let Some(workload) = &self.workload {
            out.push_str(&format!("  clients: {}\n", workload.describe()));
        }
        out
    }

    /// Messages sent so far, by kind.
    pub fn message_counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.messages
    }

    /// The total number of messages sent so far.
    pub fn messages_sent(&self) -> u64 {
        self.messages.values().sum()
    }

    /// Command payload bytes carried by append messages so far.
    pub fn payload_bytes_sent(&self) -> u64 {
        self.payload_bytes_sent
    }

    /// Append responses sent with a `Conflict` outcome (a failed consistency check), so a
    /// test can bound how many round trips repairing a divergent follower log takes.
    pub fn append_conflicts_sent(&self) -> u64 {
        self.append_conflicts_sent
    }

    /// Log ids committed so far, by index (as observed by the checker).
    pub fn committed(&self) -> &[LogId] {
        self.checker.committed()
    }

    /// The network, to change its behaviour or partition it.
    pub fn network(&mut self) -> &mut Network {
        &mut self.network
    }

    /// Cuts node `i` off from every other node.
    pub fn disconnect(&mut self, i: usize) {
        let all = self.ids();
        self.network.isolate(NodeId(i as u64 + 1), &all);
    }

    /// Restores every link of node `i`.
    pub fn reconnect(&mut self, i: usize) {
        self.network.reconnect(NodeId(i as u64 + 1));
    }

    /// Every node id.
    pub fn ids(&self) -> Vec<NodeId> {
        (1..=self.nodes.len() as u64).map(NodeId).collect()
    }

    /// Makes node `i`'s disk `factor` times slower (1 restores it).
    pub fn set_disk_slowness(&mut self, i: usize, factor: u64) {
        self.disks[i].slow_factor = factor.max(1);
    }

    /// Power loss on node `i`: its process and unsynced writes are gone.
    pub fn crash(&mut self, i: usize) {
        if !self.nodes[i].is_up() {
            return;
        }
        self.nodes[i].crash();
        self.paused[i] = None;
        self.checker.on_restart(&self.nodes[i]);
        let verdict =
            self.checker.committed_entries_survive(&self.nodes, &self.committed_membership, &self.newest_membership);
        self.verdict(verdict);
    }

    /// Restarts a crashed node `i` from its durable state (a node that never ran stays down).
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].is_up() || !self.nodes[i].ever_started() {
            return;
        }
        let seed = self.rng.random();
        let effects = self.nodes[i].start(seed);
        self.handle_effects(i, effects);
    }

    /// Freezes node `i`'s process: it sees no time, messages or disk completions until resumed.
    pub fn pause(&mut self, i: usize) {
        if self.nodes[i].is_up() && self.paused[i].is_none() {
            self.paused[i] = Some(Paused::default());
        }
    }

    /// Resumes node `i`: it first sees the time that passed, then what arrived meanwhile.
    pub fn resume(&mut self, i: usize) {
        let Some(paused) = self.paused[i].take() else { return };
        for _ in 0..paused.missed_ticks {
            let effects = self.nodes[i].tick();
            self.handle_effects(i, effects);
        }
        for event in paused.inbox {
            self.dispatch(event);
        }
    }

    /// Whether node `i` is paused.
    pub fn is_paused(&self, i: usize) -> bool {
        self.paused[i].is_some()
    }

    /// Proposes a command on node `i` directly (as `Start()` in the classic lab).
    pub fn propose(&mut self, i: usize, command: Bytes) -> Result<LogId, ProposeError> {
        if self.paused[i].is_some() {
            return Err(ProposeError::NotLeader { leader: None });
        }
        let (result, effects) = self.nodes[i].propose(command);
        self.handle_effects(i, effects);
        result
    }

    /// Proposes a membership change on node `i`. Adding a learner that never ran also starts
    /// it, with the membership that adds it.
    pub fn change_membership(&mut self, i: usize, change: MembershipChange) -> Result<LogId, MembershipChangeError> {
        if self.paused[i].is_some() {
            return Err(MembershipChangeError::NotLeader { leader: None });
        }
        let (result, effects) = self.nodes[i].change_membership(change.clone());
        self.handle_effects(i, effects);
        if let (Ok(_), MembershipChange::AddLearner(id)) = (&result, &change) {
            let new = id.0 as usize - 1;
            if new < self.nodes.len() && !self.nodes[new].ever_started() {
                let membership = self.nodes[i].core().expect("the leader runs").membership().clone();
                self.nodes[new].set_bootstrap_membership(membership);
                let seed = self.rng.random();
                let effects = self.nodes[new].start(seed);
                self.handle_effects(new, effects);
            }
        }
        result
    }

    /// Asks node `i` for a snapshot now.
    pub fn trigger_snapshot(&mut self, i: usize) {
        if self.paused[i].is_none() {
            let effects = self.nodes[i].trigger_snapshot();
            self.handle_effects(i, effects);
        }
    }

    /// Asks node `i` to hand leadership to node `target`.
    pub fn transfer_leadership(&mut self, i: usize, target: usize) -> Result<(), TransferError> {
        let (result, effects) = self.nodes[i].transfer_leadership(NodeId(target as u64 + 1));
        self.handle_effects(i, effects);
        result
    }

    /// How many running nodes have applied exactly the entry `log_id`.
    pub fn applied_on(&self, log_id: LogId) -> usize {
        if self.checker.applied_at(log_id.index) != Some(log_id) {
            return 0;
        }
        (0..self.nodes.len()).filter_map(|i| self.status(i)).filter(|status| status.applied >= log_id.index).count()
    }

    /// Delivers a client request to node `i` at once, as a test's own client. Replies are
    /// collected for `take_replies`.
    pub fn client_request(&mut self, i: usize, op: OpRef, request: Request) {
        if self.paused[i].is_none() {
            let effects = self.nodes[i].client_request(op, request);
            self.handle_effects(i, effects);
        }
    }

    /// The replies to `client_request`s received so far (each returned once).
    pub fn take_replies(&mut self) -> Vec<(OpRef, Reply)> {
        std::mem::take(&mut self.replies)
    }

    /// Stops clients from starting new operations.
    pub fn stop_clients(&mut self) {
        if let Some(workload) = &mut self.workload {
            workload.running = false;
        }
    }

    /// The client workload, if configured.
    pub fn workload(&self) -> Option<&Workload> {
        self.workload.as_ref()
    }

    /// Runs `duration_us` of virtual time.
    pub fn run_for(&mut self, duration_us: u64) {
        let until = self.now + duration_us;
        while self.queue.peek().is_some_and(|Reverse(next)| next.at <= until) {
            self.step();
        }
        self.now = until;
    }

    /// Runs until `condition` holds (checked after every event) or `max_us` passed;
    /// returns whether it held.
    pub fn run_until(&mut self, max_us: u64, mut condition: impl FnMut(&Cluster) -> bool) -> bool {
        let until = self.now + max_us;
        while !condition(self) {
            match self.queue.peek() {
                Some(Reverse(next)) if next.at <= until => self.step(),
                _ => {
                    self.now = until;
                    return condition(self);
                }
            }
        }
        true
    }

    /// Ends the run: outstanding client operations become unknown, committed entries must
    /// be durable on a quorum, and the history must be linearizable. Returns the number of
    /// operations checked.
    pub fn finish(&mut self, budget_per_key: u64) -> Result<usize, String> {
        self.checker.committed_entries_survive(&self.nodes, &self.committed_membership, &self.newest_membership)?;
        let Some(workload) = &mut self.workload else { return Ok(0) };
        workload.finish();
        let history = workload.history();
        match linearizability::check(history, budget_per_key) {
            CheckResult::Linearizable => Ok(history.len()),
            CheckResult::NotLinearizable { key, explanation } => {
                Err(format!("history not linearizable on key {key}:\n{explanation}"))
            }
            CheckResult::BudgetExhausted { key, explored } => Err(format!(
                "linearizability checker gave up on key {key} after {explored} steps: a failure, not a pass"
            )),
        }
    }

    fn schedule(&mut self, delay_us: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at: self.now + delay_us, seq: self.seq, event }));
    }

    fn step(&mut self) {
        let Reverse(next) = self.queue.pop().expect("step with an empty queue");
        self.now = next.at;
        if let Event::Tick(i) = next.event {
            let tick = self.config.tick_us;
            self.schedule(tick, Event::Tick(i));
        }
        self.dispatch(next.event);
    }

    fn dispatch(&mut self, event: Event) {
        let target = match &event {
            Event::Tick(i) | Event::DiskDone { node: i, .. } | Event::ClientArrive { node: i, .. } => Some(*i),
            Event::Deliver(envelope) => Some(envelope.to.0 as usize - 1),
            _ => None,
        };
        if let Some(i) = target
            && let Some(paused) = &mut self.paused[i]
        {
            match event {
                Event::Tick(_) => paused.missed_ticks += 1,
                other => paused.inbox.push(other),
            }
            return;
        }
        match event {
            Event::Tick(i) => {
                let effects = self.nodes[i].tick();
                self.handle_effects(i, effects);
            }
            Event::Deliver(envelope) => {
                let i = envelope.to.0 as usize - 1;
                if self.network.can_reach(envelope.from, envelope.to) {
                    let effects = self.nodes[i].receive(*envelope);
                    self.handle_effects(i, effects);
                }
            }
            Event::DiskDone { node, incarnation, write } => {
                if self.nodes[node].incarnation() == incarnation {
                    let effects = self.nodes[node].disk_done(write);
                    self.handle_effects(node, effects);
                }
            }
            Event::ClientArrive { node, op, request } => {
                if !self.nodes[node].is_up() {
                    // Nothing listens on a stopped node's port: the client is refused at once.
                    if let Some(delay) = self.client_link_delay() {
                        self.schedule(delay, Event::ClientReply { op, reply: Reply::NotLeader(None) });
                    }
                    return;
                }
                let effects = self.nodes[node].client_request(op, request);
                self.handle_effects(node, effects);
            }
            Event::ClientReply { op, reply } => {
                let now = self.now;
                let actions = self.workload.as_mut().map(|w| w.on_reply(op, reply, now)).unwrap_or_default();
                self.client_actions(actions);
            }
            Event::ClientDeadline(op) => {
                let now = self.now;
                let Some(workload) = self.workload.as_mut() else { return };
                let actions = workload.on_deadline(op, now, &mut self.rng);
                self.client_actions(actions);
            }
            Event::Reboot(i) => {
                self.crash(i);
                self.restart(i);
            }
            Event::ClientNext(client) => {
                let now = self.now;
                let Some(workload) = self.workload.as_mut() else { return };
                let actions = workload.next_operation(client, now, &mut self.rng);
                self.client_actions(actions);
            }
        }
    }

    fn client_actions(&mut self, actions: Vec<ClientAction>) {
        for action in actions {
            match action {
                ClientAction::Send { node, op, request, delay_us } => {
                    if let Some(delay) = self.client_link_delay() {
                        self.schedule(delay_us + delay, Event::ClientArrive { node, op, request });
                    }
                }
                ClientAction::Deadline { op, at } => {
                    let delay = at.saturating_sub(self.now);
                    self.schedule(delay, Event::ClientDeadline(op));
                }
                ClientAction::Next { client, delay_us } => self.schedule(delay_us, Event::ClientNext(client)),
            }
        }
    }

    /// Clients are not partitioned, but their messages are delayed and lost like any other.
    fn client_link_delay(&mut self) -> Option<u64> {
        let client = NodeId(0);
        let node = NodeId(u64::MAX);
        self.network.deliveries(&mut self.rng, client, node).first().copied()
    }

    fn handle_effects(&mut self, i: usize, effects: Vec<Effect>) {
        let verdict = self.checker.after_step(&mut self.nodes[i]);
        self.verdict(verdict);
        if let Some(core) = self.nodes[i].core()
            && core.status().commit > self.highest_commit
        {
            self.highest_commit = core.status().commit;
            self.committed_membership = core.committed_membership().clone();
            self.newest_membership = core.membership().clone();
        }
        for effect in effects {
            match effect {
                Effect::Send(envelope) => {
                    let verdict = self.checker.on_send(&self.nodes[i], &envelope);
                    self.verdict(verdict);
                    self.count(&envelope);
                    for delay in self.network.deliveries(&mut self.rng, envelope.from, envelope.to) {
                        self.schedule(delay, Event::Deliver(Box::new(envelope.clone())));
                    }
                }
                Effect::Persist(write) => {
                    let (low, high) = self.config.disk_latency_us;
                    let latency = self.rng.random_range(low..=high) * self.disks[i].slow_factor;
                    let done_at = self.now.max(self.disks[i].free_at) + latency;
                    self.disks[i].free_at = done_at;
                    let incarnation = self.nodes[i].incarnation();
                    self.schedule(done_at - self.now, Event::DiskDone { node: i, incarnation, write });
                }
                Effect::Reply(op, reply) if self.workload.is_none() => self.replies.push((op, reply)),
                Effect::Reply(op, reply) => {
                    if let Some(delay) = self.client_link_delay() {
                        self.schedule(delay, Event::ClientReply { op, reply });
                    }
                }
            }
        }
    }

    fn count(&mut self, envelope: &Envelope) {
        if let d_engine_core::Message::VoteResponse { granted: true, pre_vote: false, .. } = envelope.message {
            let voter = envelope.from.0 as usize - 1;
            if self.config.reboot_after_vote > 0.0 && self.rng.random_bool(self.config.reboot_after_vote) {
                let delay = self.rng.random_range(0..3_000);
                self.schedule(delay, Event::Reboot(voter));
            }
        }
        *self.messages.entry(envelope.message.kind()).or_default() += 1;
        match &envelope.message {
            d_engine_core::Message::AppendRequest { entries, .. } => {
                self.payload_bytes_sent += entries.iter().map(|entry| entry.payload_bytes()).sum::<u64>();
            }
            d_engine_core::Message::AppendResponse {
                outcome: d_engine_core::AppendOutcome::Conflict { .. }, ..
            } => {
                self.append_conflicts_sent += 1;
            }
            _ => {}
        }
    }

    fn verdict(&self, verdict: Result<(), String>) {
        if let Err(violation) = verdict {
            panic!(
                "[seed {}] invariant violated at t={}us: {violation}\nreplay: {}\n{}",
                self.config.seed,
                self.now,
                self.config.replay,
                self.describe()
            );
        }
    }
}
