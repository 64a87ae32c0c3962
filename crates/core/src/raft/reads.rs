//! Linearizable reads on the leader (see `crate::read` for the protocol).

use super::{Raft, RoleState};
use crate::output::{Output, ReadId, ReadPolicy};
use crate::types::NodeId;

impl Raft {
    pub(super) fn admit_read(&mut self, id: ReadId, policy: ReadPolicy) {
        let (commit, now) = (self.commit, self.now);
        let committed_in_term = self.log.term_at(commit) == Some(self.term);
        let lease_configured = self.config.lease_read.is_some();
        let RoleState::Leader(leader) = &mut self.role else { unreachable!("reads are admitted on the leader") };
        if !committed_in_term {
            // Until its no-op commits, a new leader may not know the latest commit index.
            leader.reads_before_term_commit.push((id, policy));
            return;
        }
        let lease_usable = lease_configured && !leader.transfer_attempted && leader.reads.lease_valid(now);
        if policy == ReadPolicy::Lease && lease_usable {
            self.outputs.push(Output::ReadReady { id, index: commit });
            return;
        }
        leader.reads.push(id, commit);
    }

    /// Releases reads whose round a quorum has echoed.
    pub(super) fn confirm_reads(&mut self) {
        let id = self.id;
        let lease_ticks =
            self.config.lease_read.map(|lease| self.config.election_timeout_ticks - lease.clock_drift_ticks);
        let RoleState::Leader(leader) = &mut self.role else { return };
        let round_sent = leader.reads.round_sent();
        let progress = &leader.progress;
        let confirmed = self.membership.effective().quorum().committed_value(|voter: NodeId| {
            if voter == id { Some(round_sent) } else { progress.get(&voter).map(|p| p.read_round) }
        });
        for (id, index) in leader.reads.confirm(confirmed, lease_ticks) {
            self.outputs.push(Output::ReadReady { id, index });
        }
    }

    /// The commit index moved: reads held for this term's first commit may proceed.
    pub(super) fn on_commit_advanced(&mut self) {
        let RoleState::Leader(leader) = &mut self.role else { return };
        if leader.reads_before_term_commit.is_empty() {
            return;
        }
        for (id, policy) in std::mem::take(&mut leader.reads_before_term_commit) {
            self.admit_read(id, policy);
        }
    }
}
