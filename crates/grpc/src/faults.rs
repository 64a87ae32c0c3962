//! A partition switch for tests of real clusters: which peers this node can no longer
//! reach or hear.
//!
//! The faults act at the edges of the transport. A [`PeerSender`](crate::PeerSender) given a
//! [`NetworkFaults`] drops every envelope to a cut peer before it is sent, and a
//! [`PeerServer`](crate::PeerServer) given one accepts envelopes from a cut peer and then
//! discards them, as a real partition would lose them: the sender sees no error. Share one
//! `NetworkFaults` between a node's senders and its server to cut links both ways.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use d_engine_core::NodeId;

/// Which peers are cut off from this node. Cheap to clone; clones share the same state.
#[derive(Clone, Debug, Default)]
pub struct NetworkFaults {
    state: Arc<Mutex<FaultState>>,
}

/// Invariant: when `isolated`, `cut` is empty and `restored` lists the exceptions; otherwise
/// `restored` is empty and `cut` lists the cut peers.
#[derive(Debug, Default)]
struct FaultState {
    isolated: bool,
    cut: HashSet<NodeId>,
    restored: HashSet<NodeId>,
}

impl NetworkFaults {
    /// No peer cut.
    pub fn new() -> NetworkFaults {
        NetworkFaults::default()
    }

    /// Cuts every peer, present and future, until [`heal`](Self::heal) (or
    /// [`restore`](Self::restore) of single peers).
    pub fn isolate(&self) {
        self.update(|state| {
            *state = FaultState { isolated: true, ..FaultState::default() };
        });
    }

    /// Restores every peer.
    pub fn heal(&self) {
        self.update(|state| *state = FaultState::default());
    }

    /// Cuts the link to and from `peer`.
    pub fn cut(&self, peer: NodeId) {
        self.update(|state| {
            if state.isolated {
                state.restored.remove(&peer);
            } else {
                state.cut.insert(peer);
            }
        });
    }

    /// Restores the link to and from `peer`.
    pub fn restore(&self, peer: NodeId) {
        self.update(|state| {
            if state.isolated {
                state.restored.insert(peer);
            } else {
                state.cut.remove(&peer);
            }
        });
    }

    /// Whether the link to and from `peer` is cut.
    pub fn is_cut(&self, peer: NodeId) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.isolated { !state.restored.contains(&peer) } else { state.cut.contains(&peer) }
    }

    fn update(&self, change: impl FnOnce(&mut FaultState)) {
        // The state is a pair of sets, valid after any partial update: a panic elsewhere
        // while the lock was held leaves nothing to repair.
        change(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_and_restore_single_peers() {
        let faults = NetworkFaults::new();
        assert!(!faults.is_cut(NodeId(2)));
        faults.cut(NodeId(2));
        assert!(faults.is_cut(NodeId(2)) && !faults.is_cut(NodeId(3)));
        faults.clone().restore(NodeId(2));
        assert!(!faults.is_cut(NodeId(2)), "clones share the state");
    }

    #[test]
    fn isolate_cuts_every_peer_until_healed_or_restored() {
        let faults = NetworkFaults::new();
        faults.isolate();
        assert!(faults.is_cut(NodeId(2)) && faults.is_cut(NodeId(99)));
        faults.restore(NodeId(2));
        assert!(!faults.is_cut(NodeId(2)) && faults.is_cut(NodeId(3)));
        faults.cut(NodeId(2));
        assert!(faults.is_cut(NodeId(2)));
        faults.heal();
        assert!(!faults.is_cut(NodeId(2)) && !faults.is_cut(NodeId(3)));
    }
}
