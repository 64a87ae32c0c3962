//! Elections: randomized timeouts, PreVote, votes, CheckQuorum and role transitions.
//!
//! - A follower whose timer expires first asks for pre-votes in `term + 1` without
//!   changing its term, so a node that cannot win (partitioned, or with a stale log)
//!   never bumps terms and never disrupts a healthy leader.
//! - A node that heard from a live leader within the election timeout ignores vote
//!   requests of higher terms (unless they come from a leadership transfer), and so
//!   does a node that just started: it cannot know whether it recently acknowledged a
//!   leader, and the leader's lease relies on that.
//! - A leader that has not heard from a quorum within an election timeout steps down.

use std::collections::BTreeMap;

use rand::Rng;

use super::{LeaderState, Raft, RoleState};
use crate::durability::Dependency;
use crate::message::Message;
use crate::output::ReadError;
use crate::quorum::VoteResult;
use crate::read::ReadIndexQueue;
use crate::replication::{Inflights, Progress};
use crate::types::{EntryPayload, LogId, NodeId, Term};

impl Raft {
    pub(super) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let base = self.config.election_timeout_ticks;
        self.randomized_election_timeout = base + self.rng.random_range(0..base);
    }

    /// Whether a leader was heard from (or this node started) less than an election timeout ago.
    fn in_lease(&self) -> bool {
        let started_recently = self.now < self.config.election_timeout_ticks;
        (self.leader.is_some() || started_recently) && self.election_elapsed < self.config.election_timeout_ticks
    }

    pub(super) fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed >= self.randomized_election_timeout && self.membership.effective().is_voter(self.id) {
            self.start_election();
        }
    }

    fn start_election(&mut self) {
        if self.config.pre_vote { self.pre_campaign() } else { self.campaign(false) }
    }

    /// Applies the term rules to an incoming message; returns whether to handle it further.
    pub(super) fn reconcile_term(&mut self, from: NodeId, message: &Message) -> bool {
        let term = message.term();
        if term > self.term {
            match message {
                Message::VoteRequest { leadership_transfer, pre_vote, .. } => {
                    if !leadership_transfer && self.in_lease() {
                        return false;
                    }
                    if !pre_vote {
                        self.become_follower(term, None);
                    }
                }
                // A granted pre-vote carries the term we would run in; it changes nothing.
                Message::VoteResponse { pre_vote: true, granted: true, .. } => {}
                Message::AppendRequest { .. } | Message::Heartbeat { .. } | Message::TimeoutNow { .. } => {
                    self.become_follower(term, Some(from))
                }
                _ => self.become_follower(term, None),
            }
            return true;
        }
        if term < self.term {
            self.answer_stale(from, message);
            return false;
        }
        true
    }

    /// Tells a sender from an older term about ours, so a deposed leader steps down and a
    /// lagging candidate catches up.
    fn answer_stale(&mut self, from: NodeId, message: &Message) {
        let term = self.term;
        let answer = match message {
            Message::AppendRequest { .. } => {
                Message::AppendResponse { term, outcome: crate::message::AppendOutcome::StaleTerm }
            }
            Message::Heartbeat { .. } => Message::HeartbeatResponse { term, read_round: 0 },
            Message::VoteRequest { pre_vote, .. } => {
                Message::VoteResponse { term, granted: false, pre_vote: *pre_vote }
            }
            _ => return,
        };
        self.send(from, answer, Dependency::HardState);
    }

    pub(super) fn handle_vote_request(&mut self, from: NodeId, term: Term, last_log_id: LogId, pre_vote: bool) {
        // A learner answers too: it may have been promoted by an entry it has not received
        // yet, and the candidate counts only the votes of its own configuration's voters.
        let log_ok = last_log_id.is_at_least_as_up_to_date_as(&self.log.last());
        let granted = log_ok
            && if pre_vote {
                term > self.term
            } else {
                term == self.term && (self.vote == Some(from) || (self.vote.is_none() && self.leader.is_none()))
            };
        if granted && !pre_vote {
            self.vote = Some(from);
            self.durability.stage_hard_state();
            self.reset_election_timer();
        }
        let answer_term = if pre_vote && granted { term } else { self.term };
        // A granted pre-vote promises nothing; anything else carries our term or vote.
        let dependency = if pre_vote && granted { Dependency::None } else { Dependency::HardState };
        self.send(from, Message::VoteResponse { term: answer_term, granted, pre_vote }, dependency);
    }

    pub(super) fn handle_vote_response(&mut self, from: NodeId, term: Term, granted: bool, pre_vote: bool) {
        match &mut self.role {
            RoleState::PreCandidate { votes } if pre_vote && (!granted || term == self.term.next()) => {
                votes.insert(from, granted);
            }
            RoleState::Candidate { votes } if !pre_vote && term == self.term => {
                votes.insert(from, granted);
            }
            _ => return,
        }
        self.count_votes();
    }

    /// Evaluates the election in progress. A candidate's own vote counts only once it is
    /// durable: otherwise a crash could let it vote again, for another node, in the same term.
    pub(super) fn count_votes(&mut self) {
        let own_vote_durable = self.durability.hard_state_is_durable();
        let id = self.id;
        let quorum = self.membership.effective().quorum();
        let (result, pre) = match &self.role {
            RoleState::PreCandidate { votes } => {
                (quorum.vote_result(|voter| if voter == id { Some(true) } else { votes.get(&voter).copied() }), true)
            }
            RoleState::Candidate { votes } => (
                quorum.vote_result(|voter| {
                    if voter == id { own_vote_durable.then_some(true) } else { votes.get(&voter).copied() }
                }),
                false,
            ),
            _ => return,
        };
        match (result, pre) {
            (VoteResult::Won, true) => self.campaign(false),
            (VoteResult::Won, false) => self.become_leader(),
            (VoteResult::Lost, _) => self.become_follower(self.term, None),
            (VoteResult::Pending, _) => {}
        }
    }

    fn pre_campaign(&mut self) {
        self.fail_leader_state();
        self.role = RoleState::PreCandidate { votes: BTreeMap::new() };
        self.leader = None;
        self.reset_election_timer();
        let request = Message::VoteRequest {
            term: self.term.next(),
            last_log_id: self.log.last(),
            pre_vote: true,
            leadership_transfer: false,
        };
        for voter in self.membership.effective().voter_ids().filter(|voter| *voter != self.id).collect::<Vec<_>>() {
            self.send(voter, request.clone(), Dependency::None);
        }
        self.count_votes();
    }

    /// Starts a real election in the next term. `leadership_transfer` marks requests that
    /// receivers must not ignore for having a leader.
    pub(super) fn campaign(&mut self, leadership_transfer: bool) {
        self.fail_leader_state();
        self.term = self.term.next();
        self.vote = Some(self.id);
        self.durability.stage_hard_state();
        self.role = RoleState::Candidate { votes: BTreeMap::new() };
        self.leader = None;
        self.reset_election_timer();
        let request = Message::VoteRequest {
            term: self.term,
            last_log_id: self.log.last(),
            pre_vote: false,
            leadership_transfer,
        };
        for voter in self.membership.effective().voter_ids().filter(|voter| *voter != self.id).collect::<Vec<_>>() {
            self.send(voter, request.clone(), Dependency::HardState);
        }
        self.count_votes();
    }

    /// Moves to `term` (if higher, forgetting the vote) as a follower of `leader`.
    pub(super) fn become_follower(&mut self, term: Term, leader: Option<crate::types::NodeId>) {
        assert!(term >= self.term, "terms never go backwards");
        self.fail_leader_state();
        if term > self.term {
            self.term = term;
            self.vote = None;
            self.durability.stage_hard_state();
        }
        self.role = RoleState::Follower;
        self.leader = leader;
        self.reset_election_timer();
    }

    fn become_leader(&mut self) {
        assert!(self.durability.hard_state_is_durable(), "a leader's term and vote are durable");
        let next = self.log.last().index.next();
        let progress = self
            .membership
            .effective()
            .peers_of(self.id)
            .into_iter()
            .map(|peer| {
                let window = Inflights::new(self.config.max_inflight_messages, self.config.max_inflight_bytes);
                (peer, Progress::new(next, window))
            })
            .collect();
        self.role = RoleState::Leader(Box::new(LeaderState {
            progress,
            heartbeat_elapsed: 0,
            reads: ReadIndexQueue::default(),
            reads_before_term_commit: Vec::new(),
            transfer: None,
            transfer_attempted: false,
            needs_append: Vec::new(),
        }));
        self.leader = Some(self.id);
        self.election_elapsed = 0;
        // The no-op lets this leader commit (and serve reads) without waiting for a client write.
        self.append_as_leader(EntryPayload::Noop);
    }

    /// Leaves the leader role: every read it had queued fails with a hint.
    fn fail_leader_state(&mut self) {
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        let mut failed = leader.reads.drain();
        failed.extend(leader.reads_before_term_commit.drain(..).map(|(id, _)| id));
        self.role = RoleState::Follower;
        for id in failed {
            self.outputs.push(crate::output::Output::ReadFailed { id, error: ReadError::NotLeader { leader: None } });
        }
    }

    /// CheckQuorum: called by the leader once per election timeout.
    pub(super) fn check_quorum(&mut self) -> bool {
        let RoleState::Leader(leader) = &mut self.role else {
            return false;
        };
        let id = self.id;
        let progress = &leader.progress;
        let active = self
            .membership
            .effective()
            .quorum()
            .vote_result(|voter| Some(voter == id || progress.get(&voter).is_some_and(|p| p.recent_active)))
            == VoteResult::Won;
        for peer in leader.progress.values_mut() {
            peer.recent_active = false;
        }
        active
    }
}
