//! A tiny driver for one core in tests: a vector-backed log store that is durable at
//! `persist`, and helpers that sort the core's outputs by kind.
#![allow(dead_code, missing_docs)]

use std::ops::RangeInclusive;

use bytes::Bytes;
use d_engine_core::storage::{LogStore, RecoveredLog, StorageError};
use d_engine_core::{
    Config, Entry, Envelope, HardState, LogId, LogIndex, Membership, Message, NodeId, Output, PersistRequest, Raft,
    ReadError, ReadId, Role, Term,
};

/// A log store that keeps everything in vectors (no crash model: it is "durable" at write).
#[derive(Default)]
pub struct VecStore {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
    pub purged: Option<LogId>,
}

impl LogStore for VecStore {
    fn hard_state(&self) -> Result<HardState, StorageError> {
        Ok(self.hard_state)
    }
    fn last_purged(&self) -> Result<LogId, StorageError> {
        Ok(LogId::default())
    }
    fn last_log_id(&self) -> Result<LogId, StorageError> {
        Ok(self.entries.last().map_or(LogId::default(), |e| e.log_id))
    }
    fn term_of(&self, index: LogIndex) -> Result<Term, StorageError> {
        if index.0 == 0 {
            return Ok(Term(0));
        }
        self.entries
            .get(index.0 as usize - 1)
            .map(|e| e.log_id.term)
            .ok_or(StorageError::Unavailable { index, last: LogIndex(self.entries.len() as u64) })
    }
    fn entries(&self, range: RangeInclusive<LogIndex>) -> Result<Vec<Entry>, StorageError> {
        Ok(self.entries[range.start().0 as usize - 1..range.end().0 as usize].to_vec())
    }
    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.hard_state = *hard_state;
        Ok(())
    }
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.entries.extend_from_slice(entries);
        Ok(())
    }
    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.entries.truncate(from.0 as usize - 1);
        Ok(())
    }
    fn purge_prefix(&mut self, upto: LogId) -> Result<(), StorageError> {
        // Kept simple: this store only records that a purge was asked for.
        self.purged = Some(upto);
        Ok(())
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// The outputs of one drain, sorted by kind.
#[derive(Default, Debug)]
pub struct Drained {
    pub persists: Vec<PersistRequest>,
    pub sent: Vec<Envelope>,
    pub applies: Vec<(LogIndex, LogIndex)>,
    pub reads_ready: Vec<(ReadId, LogIndex)>,
    pub reads_failed: Vec<(ReadId, ReadError)>,
    pub loads: Vec<(NodeId, LogIndex, LogIndex)>,
    pub roles: Vec<(Role, Term, Option<NodeId>)>,
    pub build_snapshot: usize,
    pub load_snapshot: Vec<NodeId>,
    pub install_snapshot: Vec<d_engine_core::storage::Snapshot>,
}

impl Drained {
    pub fn messages_to(&self, to: u64) -> Vec<&Message> {
        self.sent.iter().filter(|e| e.to == NodeId(to)).map(|e| &e.message).collect()
    }
}

pub struct TestNode {
    pub id: NodeId,
    pub raft: Raft,
    pub store: VecStore,
    membership: Membership,
    config: Config,
}

pub fn config() -> Config {
    Config { election_timeout_ticks: 10, heartbeat_interval_ticks: 2, ..Config::default() }
}

impl TestNode {
    pub fn new(id: u64, voters: u64, config: Config) -> TestNode {
        let membership = Membership::with_voters(1..=voters).unwrap();
        let store = VecStore::default();
        let raft = Raft::new(NodeId(id), config.clone(), membership.clone(), &RecoveredLog::default(), LogIndex(0), id)
            .unwrap();
        TestNode { id: NodeId(id), raft, store, membership, config }
    }

    /// Throws the process away and starts again from what was persisted.
    pub fn restart(&mut self) {
        let recovered = RecoveredLog::read(&self.store).unwrap();
        self.raft =
            Raft::new(self.id, self.config.clone(), self.membership.clone(), &recovered, LogIndex(0), 99).unwrap();
    }

    pub fn drain(&mut self) -> Drained {
        let mut drained = Drained::default();
        for output in self.raft.take_outputs() {
            match output {
                Output::Persist(write) => drained.persists.push(write),
                Output::Send(envelope) => drained.sent.push(envelope),
                Output::Apply { first, last } => drained.applies.push((first, last)),
                Output::ReadReady { id, index } => drained.reads_ready.push((id, index)),
                Output::ReadFailed { id, error } => drained.reads_failed.push((id, error)),
                Output::LoadEntries { peer, first, last, .. } => drained.loads.push((peer, first, last)),
                Output::RoleChanged { role, term, leader } => drained.roles.push((role, term, leader)),
                Output::BuildSnapshot => drained.build_snapshot += 1,
                Output::LoadSnapshot { peer, .. } => drained.load_snapshot.push(peer),
                Output::InstallSnapshot(snapshot) => drained.install_snapshot.push(snapshot),
            }
        }
        drained
    }

    /// Writes every persist request to the store and reports it durable; returns what
    /// that released together with what was drained before.
    pub fn drain_persisting(&mut self) -> Drained {
        let mut all = Drained::default();
        loop {
            let mut drained = self.drain();
            let done = drained.persists.is_empty();
            for write in &drained.persists {
                if let Some(hs) = &write.hard_state {
                    self.store.save_hard_state(hs).unwrap();
                }
                if let Some(from) = write.truncate_from {
                    self.store.truncate_suffix(from).unwrap();
                }
                self.store.append(&write.entries).unwrap();
                if let Some(upto) = write.purge_upto {
                    self.store.purge_prefix(upto).unwrap();
                }
                self.raft.persisted(write.id);
            }
            all.persists.append(&mut drained.persists);
            all.sent.append(&mut drained.sent);
            all.applies.append(&mut drained.applies);
            all.reads_ready.append(&mut drained.reads_ready);
            all.reads_failed.append(&mut drained.reads_failed);
            all.loads.append(&mut drained.loads);
            all.roles.append(&mut drained.roles);
            all.build_snapshot += drained.build_snapshot;
            all.load_snapshot.append(&mut drained.load_snapshot);
            all.install_snapshot.append(&mut drained.install_snapshot);
            if done {
                return all;
            }
        }
    }

    /// Ticks until the core emits anything, without persisting it.
    pub fn tick_until_outputs(&mut self) -> Drained {
        for _ in 0..1000 {
            self.raft.tick();
            let drained = self.drain();
            if !drained.persists.is_empty() || !drained.sent.is_empty() {
                return drained;
            }
        }
        panic!("no output in 1000 ticks");
    }

    pub fn receive(&mut self, from: u64, message: Message) {
        self.raft.step(Envelope { from: NodeId(from), to: self.id, message });
    }

    pub fn tick_until(&mut self, mut done: impl FnMut(&Drained) -> bool) -> Drained {
        for _ in 0..1000 {
            self.raft.tick();
            let drained = self.drain_persisting();
            if done(&drained) {
                return drained;
            }
        }
        panic!("condition not reached in 1000 ticks");
    }

    /// Makes this node leader of a fresh cluster with the votes of `voters` (ids), and
    /// returns the term.
    pub fn elect(&mut self, voters: &[u64]) -> Term {
        self.tick_until(|d| d.sent.iter().any(|e| matches!(e.message, Message::VoteRequest { .. })));
        let status = self.raft.status();
        if status.role == Role::PreCandidate {
            for voter in voters {
                let term = status.term.next();
                self.receive(*voter, Message::VoteResponse { term, granted: true, pre_vote: true });
            }
            self.drain_persisting();
        }
        let term = self.raft.status().term;
        for voter in voters {
            self.receive(*voter, Message::VoteResponse { term, granted: true, pre_vote: false });
        }
        self.drain_persisting();
        assert_eq!(self.raft.role(), Role::Leader, "elect() should make n{} leader", self.id.0);
        term
    }
}

pub fn command(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

pub fn entry(term: u64, index: u64, text: &'static str) -> Entry {
    Entry { log_id: LogId::new(term, index), payload: d_engine_core::EntryPayload::Command(command(text)) }
}
