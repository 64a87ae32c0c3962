//! Raft's safety invariants, checked after every simulated step.
//!
//! - Election safety: at most one leader per term.
//! - Log matching: two logs holding the same log id hold the same prefix (checked with
//!   a rolling hash of every node's log).
//! - Committed entries never change: every index a node reports committed carries the
//!   same log id on every node, forever.
//! - Leader completeness: a new leader holds every committed entry.
//! - State machine safety: no two nodes apply different entries at one index.
//! - Committed entries are never lost: each is on a quorum of durable logs, checked after
//!   every crash and at the end.
//! - The durability contract, at the moment a message leaves: a vote or a message in a
//!   term is backed by a durable hard state, and an acknowledgement by durable entries.
//! - Term, commit and applied never go backwards within a life; term and vote survive
//!   restarts because nothing depending on them left before they were durable.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use d_engine_core::quorum::VoteResult;
use d_engine_core::storage::LogStore;
use d_engine_core::{
    AppendOutcome, Entry, EntryPayload, Envelope, LogId, LogIndex, Membership, Message, NodeId, Role, Term,
};

use crate::node::SimNode;

/// A node's log as the checker sees it: the ids and prefix hashes of the entries after its
/// purge point (`base`: the last purged id and the prefix hash there).
#[derive(Debug, Default)]
struct NodeLog {
    base: (LogId, u64),
    ids: Vec<LogId>,
    prefix: Vec<u64>,
}

impl NodeLog {
    fn first_index(&self) -> u64 {
        self.base.0.index.0 + 1
    }

    fn last_index(&self) -> LogIndex {
        LogIndex(self.base.0.index.0 + self.ids.len() as u64)
    }

    fn id_at(&self, index: LogIndex) -> Option<LogId> {
        if index == self.base.0.index {
            return Some(self.base.0);
        }
        index.0.checked_sub(self.first_index()).and_then(|position| self.ids.get(position as usize)).copied()
    }

    fn truncate(&mut self, from: LogIndex) {
        let keep = from.0.saturating_sub(self.first_index()) as usize;
        self.ids.truncate(keep);
        self.prefix.truncate(keep);
    }

    fn append(&mut self, entry: &Entry) -> u64 {
        assert_eq!(entry.log_id.index.0, self.first_index() + self.ids.len() as u64, "checker: log write leaves a gap");
        let mut hasher = DefaultHasher::new();
        self.prefix.last().copied().unwrap_or(self.base.1).hash(&mut hasher);
        entry.log_id.hash(&mut hasher);
        match &entry.payload {
            EntryPayload::Command(data) => data.hash(&mut hasher),
            EntryPayload::Noop => 0u8.hash(&mut hasher),
            EntryPayload::Membership(m) => format!("{m:?}").hash(&mut hasher),
        }
        let hash = hasher.finish();
        self.ids.push(entry.log_id);
        self.prefix.push(hash);
        hash
    }

    /// Drops entries up to `upto`; past the end, the log restarts after it with the prefix
    /// hash the cluster knows for that id.
    fn purge(&mut self, upto: LogId, known_prefix: Option<u64>) {
        if upto.index.0 < self.first_index() {
            return;
        }
        let drop = (upto.index.0 - self.first_index() + 1) as usize;
        let hash = if drop <= self.prefix.len() { self.prefix[drop - 1] } else { known_prefix.unwrap_or(0) };
        let drop = drop.min(self.ids.len());
        self.ids.drain(..drop);
        self.prefix.drain(..drop);
        self.base = (upto, hash);
    }
}

#[derive(Debug, Default)]
struct NodeHistory {
    log: NodeLog,
    term: Term,
    commit_checked: LogIndex,
    applied: LogIndex,
    last_role: Option<(Role, Term)>,
}

/// Checks invariants as the simulation runs; the first violation is a test failure.
#[derive(Debug, Default)]
pub struct Checker {
    leaders: BTreeMap<Term, NodeId>,
    prefix_of: HashMap<LogId, u64>,
    nodes: BTreeMap<NodeId, NodeHistory>,
    committed: Vec<LogId>,
    applied: Vec<LogId>,
}

type Verdict = Result<(), String>;

impl Checker {
    /// A checker with nothing observed yet.
    pub fn new() -> Checker {
        Checker::default()
    }

    /// The log ids committed so far, by index.
    pub fn committed(&self) -> &[LogId] {
        &self.committed
    }

    /// The entry applied at `index` (the same on every node that applied it), if any node has.
    pub fn applied_at(&self, index: LogIndex) -> Option<LogId> {
        index.0.checked_sub(1).and_then(|position| self.applied.get(position as usize)).copied()
    }

    /// Checks a message as it leaves `node`: what it claims must already be durable.
    pub fn on_send(&self, node: &SimNode, envelope: &Envelope) -> Verdict {
        let durable = node.store().durable_hard_state();
        let from = envelope.from;
        let message = &envelope.message;
        let depends_on_term = !matches!(
            message,
            Message::VoteRequest { pre_vote: true, .. } | Message::VoteResponse { pre_vote: true, granted: true, .. }
        );
        if depends_on_term && durable.term < message.term() {
            return Err(format!(
                "{from} sent {} in {} while its durable term is {}",
                message.kind(),
                message.term(),
                durable.term
            ));
        }
        // A vote is safe once the durable state can never vote otherwise in that term: it
        // records this vote, or it has already moved to a later term.
        let vote_durable = |term: Term, candidate: NodeId| {
            durable.term > term || (durable.term == term && durable.vote == Some(candidate))
        };
        match message {
            Message::VoteRequest { term, pre_vote: false, .. } if !vote_durable(*term, from) => {
                Err(format!("{from} asked for votes in {term} before its own vote was durable ({durable:?})"))
            }
            Message::VoteResponse { term, granted: true, pre_vote: false } if !vote_durable(*term, envelope.to) => {
                Err(format!(
                    "{from} granted its vote to {} in {term} before the vote was durable ({durable:?})",
                    envelope.to
                ))
            }
            Message::AppendResponse { outcome: AppendOutcome::Success { matched }, .. } => {
                let current = node.core().map(|core| core.status().last_log_id);
                let durable_id = node.store().durable_log_id(*matched);
                let current_id = self.nodes.get(&from).and_then(|h| h.log.id_at(*matched));
                let in_snapshot = node.snapshot_index() >= *matched;
                if *matched > LogIndex(0) && !in_snapshot && (durable_id.is_none() || durable_id != current_id) {
                    return Err(format!(
                        "{from} acknowledged entries up to {matched} that are not durable (durable there: {durable_id:?}, log: {current:?})"
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Takes in what `node` did during one step and checks every invariant it touches.
    pub fn after_step(&mut self, node: &mut SimNode) -> Verdict {
        let id = node.id();
        let observations = std::mem::take(&mut node.observations);
        let history = self.nodes.entry(id).or_default();
        for (truncate_from, entries, purge_upto) in &observations.log_writes {
            if let Some(from) = truncate_from {
                history.log.truncate(*from);
            }
            for entry in entries {
                let hash = history.log.append(entry);
                let known = *self.prefix_of.entry(entry.log_id).or_insert(hash);
                if known != hash {
                    return Err(format!("log matching violated: {id} holds {} with a different prefix", entry.log_id));
                }
            }
            if let Some(upto) = purge_upto {
                // Commits reported in the same step must be checked against entries this
                // purge is about to drop.
                if let Some(commit) = node.core().map(|core| core.status().commit) {
                    let checkable = commit.min(upto.index).min(history.log.last_index());
                    Self::check_commits(&mut self.committed, id, history, checkable)?;
                }
                history.log.purge(*upto, self.prefix_of.get(upto).copied());
            }
        }
        for last_included in &observations.snapshots_installed {
            // A snapshot holds exactly the committed prefix up to its last entry.
            match self.committed.get(last_included.index.0 as usize - 1) {
                Some(committed) if committed == last_included => {}
                other => {
                    return Err(format!(
                        "{id} installed a snapshot at {last_included}, but committed there: {other:?}"
                    ));
                }
            }
            if last_included.index < history.applied {
                return Err(format!(
                    "{id} installed a snapshot at {last_included} behind its applied {}",
                    history.applied
                ));
            }
            history.applied = last_included.index;
            history.commit_checked = history.commit_checked.max(last_included.index);
        }
        for entry in &observations.applied {
            let index = entry.log_id.index.0 as usize;
            if index != history.applied.0 as usize + 1 {
                return Err(format!("{id} applied {} after {}", entry.log_id, history.applied));
            }
            history.applied = entry.log_id.index;
            match self.applied.get(index - 1) {
                Some(other) if *other != entry.log_id => {
                    return Err(format!(
                        "state machine safety: {id} applied {} where another node applied {other}",
                        entry.log_id
                    ));
                }
                Some(_) => {}
                None => self.applied.push(entry.log_id),
            }
        }
        let Some(core) = node.core() else { return Ok(()) };
        let status = core.status();
        if status.term < history.term {
            return Err(format!("{id}'s term went back from {} to {}", history.term, status.term));
        }
        history.term = status.term;
        if status.commit < history.commit_checked {
            return Err(format!("{id}'s commit index went back from {} to {}", history.commit_checked, status.commit));
        }
        Self::check_commits(&mut self.committed, id, history, status.commit)?;
        for (role, term, _) in &observations.roles {
            if *role == Role::Leader && history.last_role != Some((Role::Leader, *term)) {
                if let Some(other) = self.leaders.insert(*term, id)
                    && other != id
                {
                    return Err(format!("election safety: {other} and {id} both led {term}"));
                }
                let first = history.log.first_index() as usize;
                for committed in self.committed.iter().skip(first.saturating_sub(1)) {
                    if history.log.id_at(committed.index) != Some(*committed) {
                        return Err(format!("leader completeness: {id} leads {term} without committed {committed}"));
                    }
                }
            }
            history.last_role = Some((*role, *term));
        }
        Ok(())
    }

    /// Records (or compares) every index `history` newly reports committed, up to `commit`.
    fn check_commits(committed: &mut Vec<LogId>, id: NodeId, history: &mut NodeHistory, commit: LogIndex) -> Verdict {
        while history.commit_checked < commit {
            let index = history.commit_checked.next();
            if index.0 < history.log.first_index() {
                // Covered by the node's snapshot, which was checked to be committed.
                history.commit_checked = index;
                continue;
            }
            let Some(log_id) = history.log.id_at(index) else {
                return Err(format!("{id} committed {index} beyond its log"));
            };
            match committed.get(index.0 as usize - 1) {
                Some(known) if *known != log_id => {
                    return Err(format!(
                        "committed entry changed: {id} committed {log_id} where {known} was committed"
                    ));
                }
                Some(_) => {}
                None => {
                    assert_eq!(committed.len() + 1, index.0 as usize, "checker: committed ids stay contiguous");
                    committed.push(log_id)
                }
            }
            history.commit_checked = index;
        }
        Ok(())
    }

    /// A node crashed: its view falls back to its durable log and a new life begins.
    pub fn on_restart(&mut self, node: &SimNode) {
        let history = self.nodes.entry(node.id()).or_default();
        let base = node.store().last_purged().expect("memory store");
        history.log = NodeLog { base: (base, self.prefix_of.get(&base).copied().unwrap_or(0)), ..NodeLog::default() };
        for entry in node.store().durable_entries() {
            history.log.append(&entry);
        }
        // Only the durable term survives a crash; messages never leave ahead of it
        // (`on_send`), so restarting from it cannot undo anything another node relied on.
        history.term = Term(0);
        // The state machine restarts from the durable snapshot (whose content was checked
        // when it was taken or installed) and re-applies the log after it.
        history.commit_checked = node.snapshot_index();
        history.applied = node.snapshot_index();
        history.last_role = None;
    }

    /// Every committed entry must sit on a quorum of durable logs or durable snapshots: a
    /// quorum of the committed membership, or of the newest appended one (which a leader uses
    /// as soon as it appends it; voter changes go through a joint configuration, so entries
    /// committed under either are on a quorum of one of the two).
    pub fn committed_entries_survive(&self, nodes: &[SimNode], committed: &Membership, newest: &Membership) -> Verdict {
        let (quorum, newest_quorum) = (committed.quorum(), newest.quorum());
        for entry in self.committed.iter().rev().take(64) {
            let holds = |node: &SimNode| {
                node.snapshot_index() >= entry.index || node.store().durable_log_id(entry.index) == Some(*entry)
            };
            let holders: Vec<NodeId> = nodes.iter().filter(|node| holds(node)).map(|node| node.id()).collect();
            let held_by = |q: &d_engine_core::quorum::JointConfig| {
                q.vote_result(|voter| Some(holders.contains(&voter))) == VoteResult::Won
            };
            if !held_by(&quorum) && !held_by(&newest_quorum) {
                return Err(format!(
                    "committed entry {entry} is durable only on {holders:?}, not on a quorum of {committed:?} or {newest:?}"
                ));
            }
        }
        Ok(())
    }
}
