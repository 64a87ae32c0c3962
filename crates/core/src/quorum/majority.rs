//! Majority quorums over one voter set.

use std::collections::BTreeSet;

use super::VoteResult;
use crate::types::NodeId;

/// One set of voters; a quorum is any strict majority of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MajorityConfig {
    voters: BTreeSet<NodeId>,
}

impl MajorityConfig {
    /// A configuration of these voters.
    pub fn new(voters: BTreeSet<NodeId>) -> MajorityConfig {
        MajorityConfig { voters }
    }

    /// The voters.
    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.voters
    }

    /// How many acknowledgements make a quorum. An empty set needs none; it only
    /// appears as the absent half of a non-joint configuration.
    pub fn quorum_size(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The largest value that a quorum of voters has acknowledged: with the acknowledged
    /// values sorted from high to low, the one at position `quorum_size - 1`.
    /// Voters without a value count as 0. An empty configuration returns `u64::MAX`
    /// so that it never holds back a joint configuration.
    pub fn committed_value(&self, acked: impl Fn(NodeId) -> Option<u64>) -> u64 {
        if self.voters.is_empty() {
            return u64::MAX;
        }
        let mut values: Vec<u64> = self.voters.iter().map(|id| acked(*id).unwrap_or(0)).collect();
        values.sort_unstable_by(|a, b| b.cmp(a));
        values[self.quorum_size() - 1]
    }

    /// Counts votes: `Some(true)` granted, `Some(false)` rejected, `None` not answered.
    /// An empty configuration has always won (see `committed_value`).
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        if self.voters.is_empty() {
            return VoteResult::Won;
        }
        let (mut granted, mut missing) = (0, 0);
        for id in &self.voters {
            match vote(*id) {
                Some(true) => granted += 1,
                Some(false) => {}
                None => missing += 1,
            }
        }
        let quorum = self.quorum_size();
        if granted >= quorum {
            VoteResult::Won
        } else if granted + missing >= quorum {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ids: &[u64]) -> MajorityConfig {
        MajorityConfig::new(ids.iter().map(|id| NodeId(*id)).collect())
    }

    /// (voters, acknowledged values by voter, expected committed value)
    type CommitCase = (&'static [u64], &'static [(u64, u64)], u64);
    /// (voters, votes by voter, expected result)
    type VoteCase = (&'static [u64], &'static [(u64, bool)], VoteResult);

    fn lookup(values: &[(u64, u64)]) -> impl Fn(NodeId) -> Option<u64> + '_ {
        move |id| values.iter().find(|(n, _)| *n == id.0).map(|(_, v)| *v)
    }

    #[test]
    fn committed_value_is_the_highest_value_a_majority_holds() {
        let cases: &[CommitCase] = &[
            (&[1], &[(1, 7)], 7),
            (&[1, 2, 3], &[(1, 5), (2, 3), (3, 9)], 5),
            (&[1, 2, 3], &[(1, 5)], 0),
            (&[1, 2, 3], &[(1, 5), (2, 5)], 5),
            (&[1, 2, 3, 4], &[(1, 4), (2, 3), (3, 2), (4, 1)], 2),
            (&[1, 2, 3, 4, 5], &[(1, 10), (2, 10), (3, 1), (4, 1), (5, 1)], 1),
            (&[1, 2, 3, 4, 5], &[(1, 10), (2, 10), (3, 10), (4, 1), (5, 1)], 10),
            (&[], &[], u64::MAX),
        ];
        for (voters, acked, expected) in cases {
            assert_eq!(config(voters).committed_value(lookup(acked)), *expected, "voters {voters:?} acked {acked:?}");
        }
    }

    #[test]
    fn vote_result_needs_a_strict_majority() {
        let cases: &[VoteCase] = &[
            (&[1], &[(1, true)], VoteResult::Won),
            (&[1], &[], VoteResult::Pending),
            (&[1, 2, 3], &[(1, true)], VoteResult::Pending),
            (&[1, 2, 3], &[(1, true), (2, true)], VoteResult::Won),
            (&[1, 2, 3], &[(1, true), (2, false), (3, false)], VoteResult::Lost),
            (&[1, 2, 3, 4], &[(1, true), (2, true)], VoteResult::Pending),
            (&[1, 2, 3, 4], &[(1, true), (2, true), (3, false), (4, false)], VoteResult::Lost),
            (&[1, 2, 3, 4, 5], &[(1, false), (2, false), (3, false)], VoteResult::Lost),
            (&[], &[], VoteResult::Won),
        ];
        for (voters, votes, expected) in cases {
            let result = config(voters).vote_result(|id| votes.iter().find(|(n, _)| *n == id.0).map(|(_, v)| *v));
            assert_eq!(result, *expected, "voters {voters:?} votes {votes:?}");
        }
    }
}
