//! Cluster membership: who votes and who only learns.
//!
//! A membership is shaped as a joint configuration from the start (an incoming
//! and an optional outgoing voter set) so that joint consensus can be added
//! without changing any caller; today every membership has no outgoing set.
//! Invariants: the incoming voter set is non-empty and learners are never voters.

use std::collections::BTreeSet;

use crate::quorum::JointConfig;
use crate::types::NodeId;

/// Why a membership is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// No voter: such a cluster can never elect a leader.
    #[error("the voter set is empty: a cluster needs at least one voter")]
    NoVoters,
    /// The same id was listed twice.
    #[error("node id {0} is listed more than once")]
    DuplicateId(NodeId),
    /// A node cannot vote and only learn at once.
    #[error("node id {0} is both a voter and a learner")]
    VoterIsLearner(NodeId),
}

/// The voters and learners of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    incoming: BTreeSet<NodeId>,
    outgoing: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
}

impl Membership {
    /// A simple (non-joint) membership. Duplicates and overlaps are errors, not merged silently.
    pub fn new(voters: &[NodeId], learners: &[NodeId]) -> Result<Membership, MembershipError> {
        let voter_set = unique(voters)?;
        let learner_set = unique(learners)?;
        if voter_set.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        if let Some(both) = voter_set.intersection(&learner_set).next() {
            return Err(MembershipError::VoterIsLearner(*both));
        }
        Ok(Membership { incoming: voter_set, outgoing: BTreeSet::new(), learners: learner_set })
    }

    /// A membership from its parts; `outgoing` is empty outside a joint change. Used by
    /// decoders and by the membership-change logic; validates like `new`.
    pub fn from_parts(
        incoming: BTreeSet<NodeId>,
        outgoing: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
    ) -> Result<Membership, MembershipError> {
        if incoming.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        if let Some(both) = learners.iter().find(|id| incoming.contains(id) || outgoing.contains(id)) {
            return Err(MembershipError::VoterIsLearner(*both));
        }
        Ok(Membership { incoming, outgoing, learners })
    }

    /// The voters of the configuration in force (or being moved to, during a joint change).
    pub fn incoming(&self) -> &BTreeSet<NodeId> {
        &self.incoming
    }

    /// The voters being left during a joint change; empty otherwise.
    pub fn outgoing(&self) -> &BTreeSet<NodeId> {
        &self.outgoing
    }

    /// Whether this is a joint configuration (a voter change in progress).
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Voters `1..=n` and no learners: the common test and example cluster.
    pub fn with_voters(ids: impl IntoIterator<Item = u64>) -> Result<Membership, MembershipError> {
        let voters: Vec<NodeId> = ids.into_iter().map(NodeId).collect();
        Membership::new(&voters, &[])
    }

    /// Every voter, of both halves during a joint change, in id order.
    pub fn voter_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.incoming.union(&self.outgoing).copied()
    }

    /// The learners: they receive the log but never vote nor count in a quorum.
    pub fn learners(&self) -> &BTreeSet<NodeId> {
        &self.learners
    }

    /// Whether `id` votes in this membership.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.incoming.contains(&id) || self.outgoing.contains(&id)
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Every member except `id`: the peers a leader replicates to.
    pub fn peers_of(&self, id: NodeId) -> Vec<NodeId> {
        self.voter_ids().chain(self.learners.iter().copied()).filter(|peer| *peer != id).collect()
    }

    /// The quorum rules of this membership.
    pub fn quorum(&self) -> JointConfig {
        JointConfig::new(self.incoming.clone(), self.outgoing.clone())
    }
}

fn unique(ids: &[NodeId]) -> Result<BTreeSet<NodeId>, MembershipError> {
    let mut set = BTreeSet::new();
    for id in ids {
        if !set.insert(*id) {
            return Err(MembershipError::DuplicateId(*id));
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_memberships_are_refused_with_the_reason() {
        assert_eq!(Membership::new(&[], &[]), Err(MembershipError::NoVoters));
        assert_eq!(Membership::new(&[NodeId(1), NodeId(1)], &[]), Err(MembershipError::DuplicateId(NodeId(1))));
        assert_eq!(Membership::new(&[NodeId(1)], &[NodeId(1)]), Err(MembershipError::VoterIsLearner(NodeId(1))));
    }

    #[test]
    fn peers_exclude_self_and_include_learners() {
        let m = Membership::new(&[NodeId(1), NodeId(2)], &[NodeId(3)]).unwrap();
        assert_eq!(m.peers_of(NodeId(1)), vec![NodeId(2), NodeId(3)]);
        assert!(!m.is_voter(NodeId(3)));
        assert!(m.contains(NodeId(3)));
    }
}
