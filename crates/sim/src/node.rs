//! One simulated node: the real core, an in-memory log store that loses unsynced
//! writes on crash, the simulator's KV state machine, and the small runtime that
//! carries out the core's outputs the way the real runtime does.

use std::collections::BTreeMap;

use d_engine_core::storage::{LogStore, RecoveredLog, Snapshot, StateMachine};
use d_engine_core::{
    Config, Entry, LogId, LogIndex, Membership, MembershipChange, MembershipChangeError, NodeId, Output,
    PersistRequest, ProposeError, Raft, ReadId, ReadPolicy, Role, Term, WriteId,
};
use d_engine_memory::MemLogStore;

use crate::kv::{KvStateMachine, KvWrite};

/// Which client operation a request or reply belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpRef {
    /// The client.
    pub client: usize,
    /// The client's operation number (unique per client).
    pub op: u64,
}

/// What a client asks a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// A write through the log.
    Write(KvWrite),
    /// A linearizable read of one key.
    Read {
        /// The key.
        key: u64,
    },
}

/// What a node answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The write was applied; for a compare-and-swap, whether it swapped.
    Written(Option<bool>),
    /// The read's value.
    Value(Option<u64>),
    /// Definitely not done here: not the leader (with a hint).
    NotLeader(Option<NodeId>),
    /// Definitely not done: another entry was committed where the proposal sat.
    Overwritten,
}

/// What a node's runtime hands back to the cluster after an input.
#[derive(Clone, Debug)]
pub enum Effect {
    /// A message for the network.
    Send(d_engine_core::Envelope),
    /// A write to make durable; the cluster schedules its completion.
    Persist(WriteId),
    /// A reply for a client.
    Reply(OpRef, Reply),
}

/// What the invariant checker observes of a node's log and state machine.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    /// Log writes in order: (truncate-from, appended entries, purged up to).
    pub log_writes: Vec<(Option<LogIndex>, Vec<Entry>, Option<LogId>)>,
    /// Snapshots installed from the leader (the state machine jumped to their last entry).
    pub snapshots_installed: Vec<LogId>,
    /// Entries applied to the state machine, in order.
    pub applied: Vec<Entry>,
    /// Role changes reported by the core.
    pub roles: Vec<(Role, Term, Option<NodeId>)>,
}

/// A node of the simulated cluster.
pub struct SimNode {
    id: NodeId,
    config: Config,
    membership: Membership,
    store: MemLogStore,
    /// The latest snapshot, saved durably: it survives crashes.
    snapshot: Option<Snapshot>,
    /// Snapshots installed from a leader, over every life of the node.
    snapshots_installed: u64,
    core: Option<Raft>,
    kv: KvStateMachine,
    read_policy: ReadPolicy,
    incarnation: u64,
    proposals: BTreeMap<LogIndex, (LogId, OpRef)>,
    reads_unconfirmed: BTreeMap<ReadId, (OpRef, u64)>,
    reads_waiting_apply: Vec<(LogIndex, OpRef, u64)>,
    /// What happened since the checker last looked.
    pub observations: Observations,
}

impl SimNode {
    /// A fresh node with an empty log.
    pub fn new(id: NodeId, config: Config, membership: Membership, read_policy: ReadPolicy, seed: u64) -> SimNode {
        let mut node = SimNode::unstarted(id, config, membership, read_policy);
        node.start(seed);
        node
    }

    /// A node that has never run: a spare id for membership changes. `start` it with the
    /// membership that adds it.
    pub fn unstarted(id: NodeId, config: Config, membership: Membership, read_policy: ReadPolicy) -> SimNode {
        SimNode {
            id,
            config,
            membership,
            store: MemLogStore::new(),
            snapshot: None,
            snapshots_installed: 0,
            core: None,
            kv: KvStateMachine::default(),
            read_policy,
            incarnation: 0,
            proposals: BTreeMap::new(),
            reads_unconfirmed: BTreeMap::new(),
            reads_waiting_apply: Vec::new(),
            observations: Observations::default(),
        }
    }

    /// Whether the node ever ran.
    pub fn ever_started(&self) -> bool {
        self.incarnation > 0
    }

    /// Sets the membership a node that never ran starts with.
    pub fn set_bootstrap_membership(&mut self, membership: Membership) {
        assert!(!self.ever_started(), "only a node that never ran takes a bootstrap membership");
        self.membership = membership;
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Whether the node is running.
    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }

    /// Increases with every restart; events of an older life are ignored.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The core, when running.
    pub fn core(&self) -> Option<&Raft> {
        self.core.as_ref()
    }

    /// The log store (durable and not yet durable state).
    pub fn store(&self) -> &MemLogStore {
        &self.store
    }

    /// The state machine.
    pub fn kv(&self) -> &KvStateMachine {
        &self.kv
    }

    /// The last entry covered by the durable snapshot, if any.
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(LogIndex(0), |snapshot| snapshot.meta.last_included.index)
    }

    /// How many snapshots this node installed from a leader, over all its lives (its own
    /// snapshots are not counted), so a test can tell a catch-up by snapshot from one by
    /// log entries.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed
    }

    /// Power loss: the process and every unsynced write are gone.
    pub fn crash(&mut self) {
        self.core = None;
        self.store.crash();
        self.kv = KvStateMachine::default();
        self.proposals.clear();
        self.reads_unconfirmed.clear();
        self.reads_waiting_apply.clear();
    }

    /// Starts the node from its durable state. The state machine is volatile and is
    /// rebuilt by re-applying the log.
    pub fn start(&mut self, seed: u64) -> Vec<Effect> {
        assert!(self.core.is_none(), "start on a running node");
        self.incarnation += 1;
        let mut recovered = RecoveredLog::read(&self.store).expect("the memory store never fails to read");
        if let Some(snapshot) = &self.snapshot {
            self.kv.install_snapshot(snapshot).expect("a saved snapshot installs");
            recovered.snapshot = Some(snapshot.meta.clone());
        }
        let applied = self.kv.last_applied().index;
        let core = Raft::new(self.id, self.config.clone(), self.membership.clone(), &recovered, applied, seed)
            .expect("the simulator's configuration is valid");
        self.core = Some(core);
        self.drive()
    }

    /// Advances the node's clock by one tick.
    pub fn tick(&mut self) -> Vec<Effect> {
        self.with_core(|core| core.tick())
    }

    /// Delivers a peer message.
    pub fn receive(&mut self, envelope: d_engine_core::Envelope) -> Vec<Effect> {
        self.with_core(|core| core.step(envelope))
    }

    /// The disk finished syncing write `id`.
    pub fn disk_done(&mut self, id: WriteId) -> Vec<Effect> {
        if self.core.is_none() {
            return Vec::new();
        }
        self.store.sync().expect("the memory store never fails to sync");
        self.with_core(|core| core.persisted(id))
    }

    /// Proposes a command directly, as a test harness would (no client).
    pub fn propose(&mut self, command: bytes::Bytes) -> (Result<LogId, ProposeError>, Vec<Effect>) {
        let Some(core) = self.core.as_mut() else {
            return (Err(ProposeError::NotLeader { leader: None }), Vec::new());
        };
        let result = core.propose(command);
        (result, self.drive())
    }

    /// Asks the leader to hand over to `target`.
    pub fn transfer_leadership(&mut self, target: NodeId) -> (Result<(), d_engine_core::TransferError>, Vec<Effect>) {
        let Some(core) = self.core.as_mut() else {
            return (Err(d_engine_core::TransferError::NotLeader { leader: None }), Vec::new());
        };
        let result = core.transfer_leadership(target);
        (result, self.drive())
    }

    /// Proposes a membership change on this node.
    pub fn change_membership(
        &mut self,
        change: MembershipChange,
    ) -> (Result<LogId, MembershipChangeError>, Vec<Effect>) {
        let Some(core) = self.core.as_mut() else {
            return (Err(MembershipChangeError::NotLeader { leader: None }), Vec::new());
        };
        let result = core.change_membership(change);
        (result, self.drive())
    }

    /// Asks the core for a snapshot now.
    pub fn trigger_snapshot(&mut self) -> Vec<Effect> {
        self.with_core(|core| core.trigger_snapshot())
    }

    /// A client request arrives.
    pub fn client_request(&mut self, op: OpRef, request: Request) -> Vec<Effect> {
        let Some(core) = self.core.as_mut() else {
            return Vec::new();
        };
        let mut effects = Vec::new();
        match request {
            Request::Write(write) => match core.propose(write.encode()) {
                Ok(log_id) => {
                    self.proposals.insert(log_id.index, (log_id, op));
                }
                Err(ProposeError::NotLeader { leader }) => effects.push(Effect::Reply(op, Reply::NotLeader(leader))),
                Err(ProposeError::TransferInProgress { target }) => {
                    effects.push(Effect::Reply(op, Reply::NotLeader(Some(target))))
                }
            },
            Request::Read { key } => {
                let id = ReadId(((op.client as u64) << 40) | op.op);
                match core.read(id, self.read_policy) {
                    Ok(()) => {
                        self.reads_unconfirmed.insert(id, (op, key));
                    }
                    Err(d_engine_core::ReadError::NotLeader { leader }) => {
                        effects.push(Effect::Reply(op, Reply::NotLeader(leader)))
                    }
                }
            }
        }
        effects.extend(self.drive());
        effects
    }

    fn with_core(&mut self, input: impl FnOnce(&mut Raft)) -> Vec<Effect> {
        match self.core.as_mut() {
            Some(core) => {
                input(core);
                self.drive()
            }
            None => Vec::new(),
        }
    }

    /// Carries out outputs until the core has nothing more to say.
    fn drive(&mut self) -> Vec<Effect> {
        let mut effects = Vec::new();
        loop {
            let outputs = self.core.as_mut().expect("drive on a running node").take_outputs();
            if outputs.is_empty() {
                return effects;
            }
            for output in outputs {
                self.carry_out(output, &mut effects);
            }
        }
    }

    fn carry_out(&mut self, output: Output, effects: &mut Vec<Effect>) {
        match output {
            Output::Persist(write) => {
                self.write_to_store(&write);
                effects.push(Effect::Persist(write.id));
            }
            Output::Send(envelope) => effects.push(Effect::Send(envelope)),
            Output::Apply { first, last } => self.apply(first, last, effects),
            Output::LoadEntries { peer, term, first, last } => {
                // Entries purged since the request are simply not there: hand back none.
                let entries = self.store.entries(first..=last).unwrap_or_default();
                self.core.as_mut().expect("running").entries_loaded(peer, term, entries);
            }
            Output::BuildSnapshot => {
                let (last_included, data) = self.kv.build_snapshot().expect("the KV snapshot builds");
                if let Ok(meta) = self.core.as_mut().expect("running").snapshot_built(last_included) {
                    self.snapshot = Some(Snapshot { meta, data });
                }
            }
            Output::LoadSnapshot { peer, term } => {
                let snapshot = self.snapshot.clone().expect("a leader purges its log only after saving a snapshot");
                self.core.as_mut().expect("running").snapshot_loaded(peer, term, snapshot);
            }
            Output::InstallSnapshot(snapshot) => {
                self.kv.install_snapshot(&snapshot).expect("a verified snapshot installs");
                let covered = snapshot.meta.last_included.index;
                self.proposals.retain(|index, _| *index > covered);
                self.observations.snapshots_installed.push(snapshot.meta.last_included);
                self.snapshots_installed += 1;
                let meta = snapshot.meta.clone();
                self.snapshot = Some(snapshot);
                self.core.as_mut().expect("running").snapshot_installed(meta);
                self.serve_reads(effects);
            }
            Output::ReadReady { id, index } => {
                if let Some((op, key)) = self.reads_unconfirmed.remove(&id) {
                    self.reads_waiting_apply.push((index, op, key));
                    self.serve_reads(effects);
                }
            }
            Output::ReadFailed { id, .. } => {
                if let Some((op, _)) = self.reads_unconfirmed.remove(&id) {
                    effects.push(Effect::Reply(op, Reply::NotLeader(None)));
                }
            }
            Output::RoleChanged { role, term, leader } => self.observations.roles.push((role, term, leader)),
        }
    }

    fn write_to_store(&mut self, write: &PersistRequest) {
        let store = &mut self.store;
        if let Some(hard_state) = &write.hard_state {
            store.save_hard_state(hard_state).expect("memory store accepts the hard state");
        }
        if let Some(from) = write.truncate_from {
            store.truncate_suffix(from).expect("the core truncates only unpurged entries");
        }
        store.append(&write.entries).expect("the core appends consecutive entries");
        if let Some(upto) = write.purge_upto {
            store.purge_prefix(upto).expect("the core purges what a snapshot covers");
        }
        self.observations.log_writes.push((write.truncate_from, write.entries.clone(), write.purge_upto));
    }

    fn apply(&mut self, first: LogIndex, last: LogIndex, effects: &mut Vec<Effect>) {
        let entries = self.store.entries(first..=last).expect("committed entries are in the log");
        let outputs = self.kv.apply(&entries).expect("the KV state machine never fails");
        for (entry, output) in entries.iter().zip(outputs) {
            if let Some((log_id, op)) = self.proposals.remove(&entry.log_id.index) {
                let reply = if log_id == entry.log_id {
                    Reply::Written(output.first().map(|swapped| *swapped == 1))
                } else {
                    Reply::Overwritten
                };
                effects.push(Effect::Reply(op, reply));
            }
        }
        self.observations.applied.extend(entries);
        self.core.as_mut().expect("running").applied(last);
        self.serve_reads(effects);
    }

    fn serve_reads(&mut self, effects: &mut Vec<Effect>) {
        let applied = self.kv.last_applied().index;
        let kv = &self.kv;
        self.reads_waiting_apply.retain(|(index, op, key)| {
            if *index <= applied {
                effects.push(Effect::Reply(*op, Reply::Value(kv.get(*key))));
                false
            } else {
                true
            }
        });
    }
}
