//! Joint quorums: during a membership change both the incoming and the outgoing
//! voter sets must agree. Outside a change the outgoing set is empty and the
//! joint configuration behaves exactly like its incoming majority.

use std::collections::BTreeSet;

use super::{MajorityConfig, VoteResult};
use crate::types::NodeId;

/// The voter sets whose quorums must all agree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JointConfig {
    incoming: MajorityConfig,
    outgoing: MajorityConfig,
}

impl JointConfig {
    /// A joint configuration; pass an empty `outgoing` for a simple one.
    pub fn new(incoming: BTreeSet<NodeId>, outgoing: BTreeSet<NodeId>) -> JointConfig {
        JointConfig { incoming: MajorityConfig::new(incoming), outgoing: MajorityConfig::new(outgoing) }
    }

    /// Every voter of either half.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.incoming.voters().union(self.outgoing.voters()).copied().collect()
    }

    /// The largest value acknowledged by a quorum of both halves.
    pub fn committed_value(&self, acked: impl Fn(NodeId) -> Option<u64>) -> u64 {
        self.incoming.committed_value(&acked).min(self.outgoing.committed_value(&acked))
    }

    /// Won only when both halves won; lost as soon as either lost.
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        match (self.incoming.vote_result(&vote), self.outgoing.vote_result(&vote)) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ids: &[u64]) -> BTreeSet<NodeId> {
        ids.iter().map(|id| NodeId(*id)).collect()
    }

    #[test]
    fn joint_commit_is_the_minimum_of_both_halves() {
        // old {1,2,3}, new {3,4,5}; 1,2 far ahead, 4,5 behind.
        let config = JointConfig::new(ids(&[3, 4, 5]), ids(&[1, 2, 3]));
        let acked = |id: NodeId| Some([0, 10, 10, 6, 2, 1][id.0 as usize]);
        assert_eq!(config.committed_value(acked), 2, "the new half holds only index 2 on a majority");
    }

    #[test]
    fn old_quorum_alone_never_commits_during_a_joint_change() {
        let config = JointConfig::new(ids(&[4, 5, 6]), ids(&[1, 2, 3]));
        let acked = |id: NodeId| if id.0 <= 3 { Some(9) } else { None };
        assert_eq!(config.committed_value(acked), 0);
    }

    #[test]
    fn simple_configuration_behaves_like_its_majority() {
        let config = JointConfig::new(ids(&[1, 2, 3]), BTreeSet::new());
        assert_eq!(config.committed_value(|id| Some(id.0)), 2);
        assert_eq!(config.vote_result(|id| Some(id.0 != 3)), VoteResult::Won);
    }

    #[test]
    fn joint_votes_need_both_halves() {
        let config = JointConfig::new(ids(&[3, 4, 5]), ids(&[1, 2, 3]));
        let only_old = |id: NodeId| match id.0 {
            1..=3 => Some(true),
            _ => None,
        };
        assert_eq!(config.vote_result(only_old), VoteResult::Pending);
        let new_rejects = |id: NodeId| Some(id.0 <= 3);
        assert_eq!(config.vote_result(new_rejects), VoteResult::Lost);
        let both = |id: NodeId| Some(id.0 >= 2);
        assert_eq!(config.vote_result(both), VoteResult::Won);
    }
}
