//! Linearizable reads without writing to the log: ReadIndex rounds and the leader lease.
//!
//! A read arriving at the leader is assigned the commit index and the next heartbeat
//! round. It becomes ready when a quorum has echoed that round, which proves that no
//! other leader had been elected when the round was sent. Every read queued before a
//! round is sent is confirmed by it, so many reads cost one round. A round is started
//! when none is in flight, or on the next heartbeat tick, which also covers lost messages.
//!
//! With a lease configured, the confirmation of a round sent at tick `t` also proves
//! that no other leader can be elected before `t + election_timeout - clock_drift`,
//! because followers ignore vote requests for an election timeout after hearing from
//! their leader; reads inside that window need no round at all.

use std::collections::VecDeque;

use crate::output::ReadId;
use crate::types::LogIndex;

#[derive(Debug)]
struct PendingRead {
    id: ReadId,
    index: LogIndex,
    round: u64,
}

#[derive(Debug, Default)]
pub(crate) struct ReadIndexQueue {
    /// The latest round broadcast.
    round_sent: u64,
    /// The latest round a quorum confirmed.
    round_confirmed: u64,
    /// The tick at which each unconfirmed round was sent.
    sent_at: VecDeque<(u64, u64)>,
    waiting: VecDeque<PendingRead>,
    /// Reads waiting for a round after `round_sent`.
    needs_round: bool,
    /// The lease holds while `now < lease_until`.
    lease_until: u64,
}

impl ReadIndexQueue {
    pub(crate) fn round_sent(&self) -> u64 {
        self.round_sent
    }

    /// Queues a read of `index` for the next round.
    pub(crate) fn push(&mut self, id: ReadId, index: LogIndex) {
        self.waiting.push_back(PendingRead { id, index, round: self.round_sent + 1 });
        self.needs_round = true;
    }

    /// Whether a new round should be started now: reads wait for one and either no round
    /// is in flight or the caller is on a heartbeat tick (`force`).
    pub(crate) fn should_start_round(&self, force: bool) -> bool {
        self.needs_round && (force || self.round_confirmed == self.round_sent)
    }

    /// Starts the next round at tick `now`; returns its number.
    pub(crate) fn start_round(&mut self, now: u64) -> u64 {
        self.round_sent += 1;
        self.sent_at.push_back((self.round_sent, now));
        self.needs_round = false;
        self.round_sent
    }

    /// A quorum has echoed `round`. Returns the reads now ready. With `lease_ticks`,
    /// extends the lease from the moment that round was sent.
    pub(crate) fn confirm(&mut self, round: u64, lease_ticks: Option<u64>) -> Vec<(ReadId, LogIndex)> {
        if round <= self.round_confirmed {
            return Vec::new();
        }
        assert!(round <= self.round_sent, "a quorum cannot confirm a round that was never sent");
        self.round_confirmed = round;
        while let Some((sent_round, sent_tick)) = self.sent_at.front().copied() {
            if sent_round > round {
                break;
            }
            self.sent_at.pop_front();
            if sent_round == round
                && let Some(lease) = lease_ticks
            {
                self.lease_until = self.lease_until.max(sent_tick + lease);
            }
        }
        let mut ready = Vec::new();
        while self.waiting.front().is_some_and(|read| read.round <= round) {
            let read = self.waiting.pop_front().expect("checked non-empty");
            ready.push((read.id, read.index));
        }
        ready
    }

    pub(crate) fn lease_valid(&self, now: u64) -> bool {
        now < self.lease_until
    }

    /// Every read still waiting, for failing them when leadership is lost.
    pub(crate) fn drain(&mut self) -> Vec<ReadId> {
        self.needs_round = false;
        self.waiting.drain(..).map(|read| read.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_round_confirms_every_read_queued_before_it() {
        let mut queue = ReadIndexQueue::default();
        queue.push(ReadId(1), LogIndex(5));
        queue.push(ReadId(2), LogIndex(5));
        assert!(queue.should_start_round(false));
        let round = queue.start_round(0);
        queue.push(ReadId(3), LogIndex(6));
        assert!(!queue.should_start_round(false), "a round is in flight: batch behind it");
        assert_eq!(queue.confirm(round, None), vec![(ReadId(1), LogIndex(5)), (ReadId(2), LogIndex(5))]);
        assert!(queue.should_start_round(false), "read 3 needs the next round");
        let next = queue.start_round(1);
        assert_eq!(queue.confirm(next, None), vec![(ReadId(3), LogIndex(6))]);
    }

    #[test]
    fn a_read_queued_after_a_round_left_is_not_confirmed_by_it() {
        let mut queue = ReadIndexQueue::default();
        queue.push(ReadId(1), LogIndex(1));
        let round = queue.start_round(0);
        queue.push(ReadId(2), LogIndex(1));
        assert_eq!(queue.confirm(round, None), vec![(ReadId(1), LogIndex(1))]);
    }

    #[test]
    fn lease_runs_from_when_the_confirmed_round_was_sent() {
        let mut queue = ReadIndexQueue::default();
        queue.push(ReadId(1), LogIndex(1));
        let round = queue.start_round(100);
        queue.confirm(round, Some(8));
        assert!(queue.lease_valid(107));
        assert!(!queue.lease_valid(108));
    }
}
