//! Log replication: the leader's appends and heartbeats, the follower's consistency
//! check, and commitment.
//!
//! The leader streams entries to a matched peer (Replicate) within its in-flight window
//! and probes an unmatched one with a single message at a time (Probe). A follower
//! that rejects an append answers with a conflict hint so the leader skips a whole
//! term per round trip. Commit advances only to an index of the leader's own term that
//! a quorum (the leader counting itself only up to its durable index) holds.

use super::{Raft, RoleState};
use crate::durability::Dependency;
use crate::message::{AppendOutcome, Message};
use crate::output::Output;
use crate::replication::ProgressState;
use crate::types::{Entry, EntryPayload, LogId, LogIndex, NodeId, Term};

impl Raft {
    pub(super) fn tick_leader(&mut self) {
        self.election_elapsed += 1;
        let election_timeout = self.config.election_timeout_ticks;
        let RoleState::Leader(leader) = &mut self.role else { unreachable!("tick_leader on a non-leader") };
        leader.heartbeat_elapsed += 1;
        if let Some(transfer) = &mut leader.transfer {
            transfer.elapsed += 1;
            if transfer.elapsed >= election_timeout {
                leader.transfer = None;
            }
        }
        self.tick_snapshot_sends();
        if self.election_elapsed >= election_timeout {
            self.election_elapsed = 0;
            let quorum_active = self.check_quorum();
            if self.config.check_quorum && !quorum_active {
                self.become_follower(self.term, None);
                return;
            }
        }
        let RoleState::Leader(leader) = &mut self.role else { return };
        if leader.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
            leader.heartbeat_elapsed = 0;
            self.broadcast_heartbeat(true);
        }
    }

    /// Appends an entry of this leader's term and schedules replication to every peer.
    pub(super) fn append_as_leader(&mut self, payload: EntryPayload) -> LogId {
        let log_id = LogId { term: self.term, index: self.log.last().index.next() };
        let is_membership = matches!(payload, EntryPayload::Membership(_));
        let entry = Entry { log_id, payload };
        self.log.append(std::slice::from_ref(&entry));
        self.durability.stage_append(std::slice::from_ref(&entry));
        self.membership.on_append(std::slice::from_ref(&entry));
        let RoleState::Leader(leader) = &mut self.role else { unreachable!("only a leader appends") };
        leader.needs_append = leader.progress.keys().copied().collect();
        if is_membership {
            self.sync_progress_with_membership();
        }
        log_id
    }

    /// Sends what was scheduled while inputs were handled: appends to peers that need them
    /// (many proposals become one message) and a read round if reads wait for one.
    pub(super) fn flush_leader_sends(&mut self) {
        let RoleState::Leader(leader) = &mut self.role else { return };
        let peers = std::mem::take(&mut leader.needs_append);
        let start_round = leader.reads.should_start_round(false);
        for peer in peers {
            self.send_append(peer);
        }
        if start_round {
            self.broadcast_heartbeat(false);
        }
        if self.membership.effective().peers_of(self.id).is_empty() {
            self.maybe_commit();
        }
    }

    pub(super) fn schedule_append(&mut self, peer: NodeId) {
        if let RoleState::Leader(leader) = &mut self.role
            && !leader.needs_append.contains(&peer)
        {
            leader.needs_append.push(peer);
        }
    }

    /// Sends as many append messages to `peer` as its progress state and window allow.
    fn send_append(&mut self, peer: NodeId) {
        loop {
            let last = self.log.last().index;
            let term = self.term;
            let commit = self.commit;
            let RoleState::Leader(leader) = &mut self.role else { return };
            let Some(progress) = leader.progress.get_mut(&peer) else { return };
            if !progress.can_send() {
                return;
            }
            let next = progress.next;
            let Some(prev_term) = self.log.term_at(next.prev()) else {
                // The entry before `next` was purged: only a snapshot can catch this peer up.
                self.request_snapshot_for(peer);
                return;
            };
            let prev_log_id = LogId { term: prev_term, index: next.prev() };
            if next > last {
                if progress.state == ProgressState::Probe {
                    progress.sent(None, 0);
                    let message =
                        Message::AppendRequest { term, prev_log_id, entries: Vec::new(), leader_commit: commit };
                    self.send(peer, message, Dependency::None);
                }
                return;
            }
            let upto = last.min(LogIndex(next.0 + self.config.max_entries_per_message as u64 - 1));
            let Some(entries) = self.log.cached(next, upto) else {
                progress.loading = true;
                self.outputs.push(Output::LoadEntries { peer, term, first: next, last: upto });
                return;
            };
            self.send_entries(peer, prev_log_id, entries);
        }
    }

    /// Sends one append of `entries` (trimmed to the message byte limit) after `prev_log_id`.
    fn send_entries(&mut self, peer: NodeId, prev_log_id: LogId, mut entries: Vec<Entry>) {
        let mut bytes = 0;
        let mut keep = 0;
        for entry in &entries {
            if keep > 0 && bytes + entry.payload_bytes() > self.config.max_bytes_per_message {
                break;
            }
            bytes += entry.payload_bytes();
            keep += 1;
        }
        entries.truncate(keep);
        let last_sent = entries.last().map(|entry| entry.log_id.index);
        let (term, commit) = (self.term, self.commit);
        let RoleState::Leader(leader) = &mut self.role else { return };
        let Some(progress) = leader.progress.get_mut(&peer) else { return };
        progress.sent(last_sent, bytes);
        self.send(peer, Message::AppendRequest { term, prev_log_id, entries, leader_commit: commit }, Dependency::None);
    }

    pub(super) fn replicate_loaded(&mut self, peer: NodeId, term: Term, entries: Vec<Entry>) {
        if term != self.term {
            return;
        }
        let RoleState::Leader(leader) = &mut self.role else { return };
        let Some(progress) = leader.progress.get_mut(&peer) else { return };
        if !progress.loading {
            return;
        }
        progress.loading = false;
        let next = progress.next;
        let usable = entries.first().is_some_and(|first| first.log_id.index == next)
            && entries.iter().all(|entry| self.log.contains(entry.log_id));
        if !usable {
            // Purged or superseded meanwhile: the next answer from the peer retries (a tight
            // retry here could spin while the store catches up).
            return;
        }
        if progress.can_send() {
            let prev_term = self.log.term_at(next.prev()).expect("the entry before loaded entries is known");
            self.send_entries(peer, LogId { term: prev_term, index: next.prev() }, entries);
        }
        self.schedule_append(peer);
    }

    pub(super) fn handle_append_request(
        &mut self,
        from: NodeId,
        prev_log_id: LogId,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
    ) {
        self.follow(from);
        let term = self.term;
        let (mut prev, mut entries) = (prev_log_id, entries);
        if prev.index < self.commit {
            // Everything up to our commit index is committed and therefore identical to the
            // leader's log: skip it, and check consistency at the last skipped entry.
            let skip = ((self.commit.0 - prev.index.0) as usize).min(entries.len());
            if skip > 0 {
                prev = entries[skip - 1].log_id;
                entries.drain(..skip);
            }
        }
        // An index at or below our commit index holds the committed entry, identical to the
        // leader's, even when our log no longer has it (compacted into a snapshot).
        if prev.index > self.commit && !self.log.contains(prev) {
            let outcome = AppendOutcome::Conflict { rejected: prev_log_id.index, hint: self.log.conflict_hint(prev) };
            self.send(from, Message::AppendResponse { term, outcome }, Dependency::HardState);
            return;
        }
        let matched = LogIndex(prev.index.0 + entries.len() as u64);
        if let Some(first_new) = entries.iter().position(|entry| !self.log.contains(entry.log_id)) {
            let new_entries = &entries[first_new..];
            let from_index = new_entries[0].log_id.index;
            if from_index <= self.log.last().index {
                assert!(from_index > self.commit, "a committed entry at {from_index} would be overwritten");
                self.log.truncate(from_index);
                self.durability.stage_truncate(from_index);
                self.membership.on_truncate(from_index);
            }
            self.log.append(new_entries);
            self.durability.stage_append(new_entries);
            self.membership.on_append(new_entries);
        }
        // Only entries verified to match the leader's may become committed here.
        let commit = leader_commit.min(matched);
        if commit > self.commit {
            self.commit = commit;
        }
        let outcome = AppendOutcome::Success { matched };
        self.send(from, Message::AppendResponse { term, outcome }, Dependency::Log);
    }

    /// Accepts `leader` as the leader of the current term.
    pub(super) fn follow(&mut self, leader: NodeId) {
        if !matches!(self.role, RoleState::Follower) || self.leader != Some(leader) {
            assert!(!self.is_leader(), "two leaders in term {}", self.term);
            self.become_follower(self.term, Some(leader));
        }
        self.election_elapsed = 0;
    }

    pub(super) fn handle_append_response(&mut self, from: NodeId, outcome: AppendOutcome) {
        let last = self.log.last().index;
        let RoleState::Leader(leader) = &mut self.role else { return };
        let Some(progress) = leader.progress.get_mut(&from) else { return };
        progress.recent_active = true;
        match outcome {
            AppendOutcome::Success { matched } => {
                if matched > last {
                    return;
                }
                let advanced = progress.on_success(matched);
                if advanced {
                    self.maybe_commit();
                }
                self.on_transfer_target_progress(from);
                self.schedule_append(from);
            }
            AppendOutcome::Conflict { rejected, hint } => {
                let next = self.log.find_conflict_by_term(hint.index.min(last), hint.term).next();
                if progress.on_conflict(rejected, next) {
                    self.schedule_append(from);
                }
            }
            AppendOutcome::StaleTerm => {}
        }
    }

    /// Sends a heartbeat to every peer; starts a read round first if reads wait for one
    /// (always on a timer tick, `force`, so a lost round is retried).
    pub(super) fn broadcast_heartbeat(&mut self, force: bool) {
        let now = self.now;
        let (term, commit) = (self.term, self.commit);
        let RoleState::Leader(leader) = &mut self.role else { return };
        if leader.reads.should_start_round(force) {
            leader.reads.start_round(now);
        }
        let read_round = leader.reads.round_sent();
        let heartbeats: Vec<(NodeId, LogIndex)> =
            leader.progress.iter().map(|(peer, progress)| (*peer, commit.min(progress.matched))).collect();
        for (peer, commit) in heartbeats {
            self.send(peer, Message::Heartbeat { term, commit, read_round }, Dependency::None);
        }
        self.confirm_reads();
    }

    pub(super) fn handle_heartbeat(&mut self, from: NodeId, commit: LogIndex, read_round: u64) {
        self.follow(from);
        // The leader sends at most what it knows we match, so this needs no consistency check.
        let commit = commit.min(self.log.last().index);
        if commit > self.commit {
            self.commit = commit;
        }
        let term = self.term;
        self.send(from, Message::HeartbeatResponse { term, read_round }, Dependency::HardState);
    }

    pub(super) fn handle_heartbeat_response(&mut self, from: NodeId, read_round: u64) {
        let last = self.log.last().index;
        let RoleState::Leader(leader) = &mut self.role else { return };
        let Some(progress) = leader.progress.get_mut(&from) else { return };
        progress.recent_active = true;
        progress.read_round = progress.read_round.max(read_round);
        progress.on_heartbeat_response(last);
        if progress.matched < last {
            self.schedule_append(from);
        }
        self.confirm_reads();
    }

    /// Advances the commit index to what a quorum holds, if that entry is of this term.
    pub(super) fn maybe_commit(&mut self) {
        let RoleState::Leader(leader) = &self.role else { return };
        let id = self.id;
        let own = self.durability.durable_index();
        let progress = &leader.progress;
        let acked = |voter: NodeId| {
            if voter == id { Some(own.0) } else { progress.get(&voter).map(|p| p.matched.0) }
        };
        let candidate = LogIndex(self.membership.effective().quorum().committed_value(acked));
        // Raft Figure 8: counting replicas commits only entries of the current term;
        // earlier entries are committed with them, never on their own.
        if candidate > self.commit && self.log.term_at(candidate) == Some(self.term) {
            self.commit = candidate;
            self.on_commit_advanced();
            self.advance_membership();
        }
    }
}
