//! Membership changes on the leader: learners, and voter changes through joint consensus.
//!
//! A voter change appends C(old,new) (incoming = new voters, outgoing = old voters); from
//! then on every decision needs a majority of both. Once that entry is committed the
//! leader appends C(new) by itself, also after a leader change (a new leader finding an
//! unfinished joint configuration commits it with its no-op, then leaves it). A leader that
//! is not a voter of C(new) keeps leading until C(new) commits, then steps down. A change
//! is refused until the leader has committed an entry of its term, and while another one is
//! in flight; learners become voters only when caught up.

use std::collections::BTreeSet;

use super::{Raft, RoleState};
use crate::membership::Membership;
use crate::output::{MembershipChange, MembershipChangeError};
use crate::replication::{Inflights, Progress};
use crate::types::{EntryPayload, LogId, NodeId};

impl Raft {
    pub(super) fn propose_membership_change(
        &mut self,
        change: MembershipChange,
    ) -> Result<LogId, MembershipChangeError> {
        let RoleState::Leader(leader) = &self.role else {
            return Err(MembershipChangeError::NotLeader { leader: self.leader });
        };
        if leader.transfer.is_some() {
            return Err(MembershipChangeError::TransferInProgress);
        }
        if self.log.term_at(self.commit) != Some(self.term) {
            return Err(MembershipChangeError::LeaderNotReady);
        }
        let current = self.membership.effective().clone();
        if current.is_joint() || self.membership.effective_index() > self.commit {
            return Err(MembershipChangeError::ChangeInProgress);
        }
        let next = self.next_membership(&current, change)?;
        Ok(self.append_as_leader(EntryPayload::Membership(next)))
    }

    fn next_membership(
        &self,
        current: &Membership,
        change: MembershipChange,
    ) -> Result<Membership, MembershipChangeError> {
        let voters = current.incoming().clone();
        let mut learners = current.learners().clone();
        let joint = |new_voters: BTreeSet<NodeId>, learners: BTreeSet<NodeId>| {
            if new_voters == voters {
                return Err(MembershipChangeError::AlreadyMember(*new_voters.iter().next().expect("voters exist")));
            }
            Ok(Membership::from_parts(new_voters, voters.clone(), learners)?)
        };
        match change {
            MembershipChange::AddLearner(id) => {
                if current.contains(id) {
                    return Err(MembershipChangeError::AlreadyMember(id));
                }
                learners.insert(id);
                Ok(Membership::from_parts(voters.clone(), BTreeSet::new(), learners)?)
            }
            MembershipChange::Promote(id) => {
                self.check_caught_up_learner(current, id)?;
                learners.remove(&id);
                joint(voters.iter().copied().chain([id]).collect(), learners)
            }
            MembershipChange::Remove(id) if learners.remove(&id) => {
                Ok(Membership::from_parts(voters.clone(), BTreeSet::new(), learners)?)
            }
            MembershipChange::Remove(id) => {
                if !voters.contains(&id) {
                    return Err(MembershipChangeError::NotAMember(id));
                }
                joint(voters.iter().copied().filter(|voter| *voter != id).collect(), learners)
            }
            MembershipChange::Replace { remove, add } => {
                if !voters.contains(&remove) {
                    return Err(MembershipChangeError::NotAMember(remove));
                }
                self.check_caught_up_learner(current, add)?;
                learners.remove(&add);
                joint(voters.iter().copied().filter(|voter| *voter != remove).chain([add]).collect(), learners)
            }
            MembershipChange::ChangeVoters(new_voters) => {
                for id in new_voters.difference(&voters) {
                    self.check_caught_up_learner(current, *id)?;
                    learners.remove(id);
                }
                joint(new_voters, learners)
            }
        }
    }

    fn check_caught_up_learner(&self, current: &Membership, id: NodeId) -> Result<(), MembershipChangeError> {
        if current.is_voter(id) {
            return Err(MembershipChangeError::AlreadyMember(id));
        }
        if !current.learners().contains(&id) {
            return Err(MembershipChangeError::NotAMember(id));
        }
        let RoleState::Leader(leader) = &self.role else { unreachable!("checked by the caller") };
        let matched = leader.progress.get(&id).map_or(0, |progress| progress.matched.0);
        let lag = self.log.last().index.0.saturating_sub(matched);
        let allowed = self.config.learner_catchup_entries;
        if lag > allowed {
            return Err(MembershipChangeError::LearnerBehind { id, lag, allowed });
        }
        Ok(())
    }

    /// The leader appended a membership entry: replicate to exactly its members.
    pub(super) fn sync_progress_with_membership(&mut self) {
        let peers: BTreeSet<NodeId> = self.membership.effective().peers_of(self.id).into_iter().collect();
        let next = self.log.last().index;
        let (max_messages, max_bytes) = (self.config.max_inflight_messages, self.config.max_inflight_bytes);
        let RoleState::Leader(leader) = &mut self.role else { return };
        leader.progress.retain(|peer, _| peers.contains(peer));
        for peer in peers {
            leader.progress.entry(peer).or_insert_with(|| Progress::new(next, Inflights::new(max_messages, max_bytes)));
            if !leader.needs_append.contains(&peer) {
                leader.needs_append.push(peer);
            }
        }
    }

    /// After the commit index moved on the leader: leave a committed joint configuration,
    /// and step down once a configuration without this node is committed.
    pub(super) fn advance_membership(&mut self) {
        if !self.is_leader() || self.membership.effective_index() > self.commit {
            return;
        }
        let current = self.membership.effective().clone();
        if current.is_joint() {
            let next = Membership::from_parts(current.incoming().clone(), BTreeSet::new(), current.learners().clone())
                .expect("leaving a valid joint configuration gives a valid one");
            self.append_as_leader(EntryPayload::Membership(next));
        } else if !current.is_voter(self.id) {
            self.become_follower(self.term, None);
        }
    }
}
