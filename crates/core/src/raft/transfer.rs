//! Leadership transfer (TimeoutNow): the leader stops taking proposals, brings the target
//! up to date, then tells it to campaign at once. If the target has not taken over
//! within an election timeout the transfer is abandoned and proposals resume.

use super::{Raft, RoleState};
use crate::durability::Dependency;
use crate::message::Message;
use crate::output::TransferError;
use crate::types::NodeId;

#[derive(Debug)]
pub(super) struct Transfer {
    pub(super) target: NodeId,
    pub(super) elapsed: u64,
    timeout_now_sent: bool,
}

impl Raft {
    pub(super) fn start_transfer(&mut self, target: NodeId) -> Result<(), TransferError> {
        let leader_hint = self.leader;
        let RoleState::Leader(leader) = &mut self.role else {
            return Err(TransferError::NotLeader { leader: leader_hint });
        };
        if target == self.id {
            return Ok(());
        }
        if !self.membership.effective().is_voter(target) {
            return Err(TransferError::NotAVoter(target));
        }
        leader.transfer = Some(Transfer { target, elapsed: 0, timeout_now_sent: false });
        // Lease reads are off for the rest of this term: a late TimeoutNow could start an
        // election that ignores the followers' leases.
        leader.transfer_attempted = true;
        self.on_transfer_target_progress(target);
        Ok(())
    }

    /// Sends TimeoutNow once the transfer target holds the whole log; otherwise keeps
    /// replicating to it.
    pub(super) fn on_transfer_target_progress(&mut self, peer: NodeId) {
        let (last, term) = (self.log.last().index, self.term);
        let RoleState::Leader(leader) = &mut self.role else { return };
        let Some(transfer) = &mut leader.transfer else { return };
        if transfer.target != peer || transfer.timeout_now_sent {
            return;
        }
        let caught_up = leader.progress.get(&peer).is_some_and(|progress| progress.matched == last);
        if caught_up {
            transfer.timeout_now_sent = true;
            self.send(peer, Message::TimeoutNow { term }, Dependency::None);
        } else if !leader.needs_append.contains(&peer) {
            leader.needs_append.push(peer);
        }
    }

    pub(super) fn handle_timeout_now(&mut self, from: NodeId) {
        if self.membership.effective().is_voter(self.id) && !self.is_leader() {
            debug_assert!(self.leader.is_none_or(|leader| leader == from));
            self.campaign(true);
        }
    }
}
