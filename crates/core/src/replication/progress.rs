//! What the leader knows of one follower and the probe / replicate state machine.
//!
//! Probe: the leader does not know where the follower's log matches; it sends one
//! message and waits for the answer (or the next heartbeat response) before another.
//! Replicate: the follower matched; the leader streams messages optimistically,
//! advancing `next` as it sends, bounded by the in-flight window.
//! Invariants: `matched < next`; in Replicate, the window holds only indices above `matched`.

use super::Inflights;
use crate::types::LogIndex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProgressState {
    Probe,
    Replicate,
    /// The peer needs entries the leader purged: it is sent a snapshot instead.
    Snapshot,
}

#[derive(Debug)]
pub(crate) struct Progress {
    pub(crate) matched: LogIndex,
    pub(crate) next: LogIndex,
    pub(crate) state: ProgressState,
    /// In Probe: a message is out and unanswered.
    pub(crate) probe_sent: bool,
    /// A `LoadEntries` for this peer is outstanding.
    pub(crate) loading: bool,
    pub(crate) inflights: Inflights,
    /// Heard from since the last CheckQuorum round.
    pub(crate) recent_active: bool,
    /// The highest read round this peer confirmed.
    pub(crate) read_round: u64,
    /// The snapshot being sent, in Snapshot state once the runtime handed it over.
    pub(crate) snapshot_send: Option<super::SnapshotSend>,
    /// `matched` when the previous heartbeat response arrived.
    matched_at_last_heartbeat: LogIndex,
    /// Consecutive heartbeat responses without progress while behind.
    stalled_heartbeats: u8,
}

impl Progress {
    pub(crate) fn new(next: LogIndex, inflights: Inflights) -> Progress {
        Progress {
            matched: LogIndex(0),
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            loading: false,
            inflights,
            recent_active: true,
            read_round: 0,
            snapshot_send: None,
            matched_at_last_heartbeat: LogIndex(0),
            stalled_heartbeats: 0,
        }
    }

    /// Whether the leader may send an append message now.
    pub(crate) fn can_send(&self) -> bool {
        !self.loading
            && match self.state {
                ProgressState::Probe => !self.probe_sent,
                ProgressState::Replicate => !self.inflights.is_full(),
                ProgressState::Snapshot => false,
            }
    }

    /// Records that a message carrying entries up to `last` (or none) was sent.
    pub(crate) fn sent(&mut self, last: Option<LogIndex>, bytes: u64) {
        match self.state {
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Replicate => {
                if let Some(last) = last {
                    self.inflights.add(last, bytes);
                    self.next = last.next();
                }
            }
            ProgressState::Snapshot => debug_assert!(false, "no appends while a snapshot is sent"),
        }
    }

    /// Starts sending a snapshot: appends stop until the peer reports it installed.
    pub(crate) fn become_snapshot(&mut self) {
        self.state = ProgressState::Snapshot;
        self.inflights.clear();
        self.probe_sent = false;
        self.snapshot_send = None;
    }

    /// A snapshot transfer gave up: probe again (which finds the purge and starts afresh).
    pub(crate) fn abandon_snapshot(&mut self) {
        self.snapshot_send = None;
        self.loading = false;
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.next = self.matched.next();
    }

    /// The peer holds everything up to `last_included`: resume appends after it.
    pub(crate) fn snapshot_done(&mut self, last_included: LogIndex) {
        self.snapshot_send = None;
        self.loading = false;
        self.matched = self.matched.max(last_included);
        self.next = self.matched.next();
        self.state = ProgressState::Probe;
        self.probe_sent = false;
    }

    /// The follower matched up to `matched`. Returns whether anything moved forward.
    pub(crate) fn on_success(&mut self, matched: LogIndex) -> bool {
        let advanced = matched > self.matched;
        if advanced {
            self.matched = matched;
        }
        self.next = self.next.max(matched.next());
        self.probe_sent = false;
        match self.state {
            ProgressState::Probe => {
                self.state = ProgressState::Replicate;
                self.inflights.clear();
            }
            ProgressState::Replicate => self.inflights.free_up_to(matched),
            ProgressState::Snapshot => {}
        }
        advanced
    }

    /// The follower rejected a message whose previous index was `rejected`. Returns
    /// `false` for a stale rejection (one about a message already superseded).
    pub(crate) fn on_conflict(&mut self, rejected: LogIndex, next_from_hint: LogIndex) -> bool {
        let stale = match self.state {
            ProgressState::Replicate => rejected <= self.matched,
            ProgressState::Probe => rejected != self.next.prev(),
            ProgressState::Snapshot => true,
        };
        if stale {
            return false;
        }
        self.state = ProgressState::Probe;
        self.inflights.clear();
        self.probe_sent = false;
        self.next = next_from_hint.clamp(self.matched.next(), self.next.max(self.matched.next()));
        true
    }

    /// A heartbeat response arrived: a paused probe may try again. In Replicate, a peer
    /// that is behind `last` and acknowledged nothing over two heartbeat rounds is presumed
    /// to have lost what was in flight (a full window, or the last append before the leader
    /// went idle): it goes back to Probe and is re-sent from `matched + 1`. Two rounds, not
    /// one, so that a follower whose disk is merely slow is not flooded with duplicates.
    pub(crate) fn on_heartbeat_response(&mut self, last: LogIndex) {
        self.probe_sent = false;
        let stalled = self.state == ProgressState::Replicate
            && self.matched < last
            && self.matched == self.matched_at_last_heartbeat;
        self.stalled_heartbeats = if stalled { self.stalled_heartbeats + 1 } else { 0 };
        if self.stalled_heartbeats >= 2 {
            self.state = ProgressState::Probe;
            self.inflights.clear();
            self.next = self.matched.next();
            self.stalled_heartbeats = 0;
        }
        self.matched_at_last_heartbeat = self.matched;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> Progress {
        Progress::new(LogIndex(11), Inflights::new(4, 1 << 20))
    }

    #[test]
    fn probe_sends_one_message_and_waits() {
        let mut p = progress();
        assert!(p.can_send());
        p.sent(Some(LogIndex(12)), 10);
        assert!(!p.can_send(), "a probe waits for its answer");
        p.on_heartbeat_response(LogIndex(12));
        assert!(p.can_send(), "a heartbeat response lets the probe retry");
    }

    #[test]
    fn success_switches_to_replicate_and_pipelines() {
        let mut p = progress();
        p.sent(None, 0);
        assert!(p.on_success(LogIndex(10)));
        assert_eq!(p.state, ProgressState::Replicate);
        p.sent(Some(LogIndex(12)), 10);
        p.sent(Some(LogIndex(14)), 10);
        assert_eq!(p.next, LogIndex(15), "replicate advances next optimistically");
        assert!(p.can_send());
    }

    #[test]
    fn a_peer_that_acknowledges_nothing_for_two_heartbeat_rounds_falls_back_to_probe() {
        let mut p = progress();
        p.on_success(LogIndex(10));
        p.on_heartbeat_response(LogIndex(10));
        for last in [12, 14, 16, 18] {
            p.sent(Some(LogIndex(last)), 10);
        }
        assert!(!p.can_send(), "four messages fill a window of four");
        p.on_heartbeat_response(LogIndex(18));
        assert_eq!(p.state, ProgressState::Replicate, "one silent round may be a slow disk");
        p.on_heartbeat_response(LogIndex(18));
        assert_eq!(p.state, ProgressState::Probe, "two silent rounds: what was in flight is presumed lost");
        assert_eq!(p.next, LogIndex(11));
        assert!(p.can_send());
    }

    #[test]
    fn stale_rejections_are_ignored() {
        let mut p = progress();
        p.on_success(LogIndex(10));
        p.sent(Some(LogIndex(12)), 10);
        assert!(!p.on_conflict(LogIndex(9), LogIndex(5)), "a rejection below match is stale");
        assert!(p.on_conflict(LogIndex(11), LogIndex(5)));
        assert_eq!(p.next, LogIndex(11), "never go back below match + 1");
        assert_eq!(p.state, ProgressState::Probe);
    }
}
