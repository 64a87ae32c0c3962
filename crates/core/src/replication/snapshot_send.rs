//! Sending one snapshot to one peer: a chunk at a time, resumed from the last offset the
//! peer confirmed when a chunk or its answer is lost, and abandoned for a fresh transfer
//! when nothing moves for long.

use bytes::Bytes;

use crate::storage::Snapshot;
use crate::storage::codec::bulk_checksum;

#[derive(Debug)]
pub(crate) struct SnapshotSend {
    pub(crate) snapshot: Snapshot,
    pub(crate) checksum: u64,
    /// The peer confirmed every byte below this offset.
    acked: u64,
    /// Whether the chunk starting at `acked` is in flight.
    in_flight: bool,
    /// Ticks since the peer last confirmed progress.
    idle_ticks: u64,
}

/// What a tick means for a transfer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SnapshotTick {
    Wait,
    /// Send the chunk at the confirmed offset again.
    Resend,
    /// Give up and start over (perhaps with a newer snapshot).
    Restart,
}

impl SnapshotSend {
    pub(crate) fn new(snapshot: Snapshot) -> SnapshotSend {
        let checksum = bulk_checksum(&snapshot.data);
        SnapshotSend { snapshot, checksum, acked: 0, in_flight: false, idle_ticks: 0 }
    }

    pub(crate) fn total_bytes(&self) -> u64 {
        self.snapshot.data.len() as u64
    }

    /// The next chunk to send, if none is in flight. An empty snapshot is one empty chunk.
    pub(crate) fn next_chunk(&mut self, chunk_bytes: u64) -> Option<(u64, Bytes)> {
        if self.in_flight || (self.acked >= self.total_bytes() && self.total_bytes() > 0) {
            return None;
        }
        let end = (self.acked + chunk_bytes).min(self.total_bytes());
        self.in_flight = true;
        Some((self.acked, self.snapshot.data.slice(self.acked as usize..end as usize)))
    }

    /// The peer expects `next_offset` next (it may be lower than before: it restarted).
    pub(crate) fn on_continue(&mut self, next_offset: u64) {
        self.acked = next_offset.min(self.total_bytes());
        self.in_flight = false;
        self.idle_ticks = 0;
    }

    pub(crate) fn on_tick(&mut self, resend_after: u64, restart_after: u64) -> SnapshotTick {
        self.idle_ticks += 1;
        if self.idle_ticks >= restart_after {
            SnapshotTick::Restart
        } else if self.idle_ticks % resend_after == 0 {
            self.in_flight = false;
            SnapshotTick::Resend
        } else {
            SnapshotTick::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Membership;
    use crate::storage::SnapshotMeta;
    use crate::types::LogId;

    fn send(bytes: &'static [u8]) -> SnapshotSend {
        let meta = SnapshotMeta { last_included: LogId::new(1, 5), membership: Membership::with_voters([1]).unwrap() };
        SnapshotSend::new(Snapshot { meta, data: Bytes::from_static(bytes) })
    }

    #[test]
    fn chunks_follow_the_confirmed_offset_one_at_a_time() {
        let mut s = send(b"abcdefg");
        assert_eq!(s.next_chunk(3), Some((0, Bytes::from_static(b"abc"))));
        assert_eq!(s.next_chunk(3), None, "one chunk in flight");
        s.on_continue(3);
        assert_eq!(s.next_chunk(3), Some((3, Bytes::from_static(b"def"))));
        s.on_continue(6);
        assert_eq!(s.next_chunk(3), Some((6, Bytes::from_static(b"g"))));
    }

    #[test]
    fn a_lost_chunk_is_resent_from_the_confirmed_offset_then_the_transfer_restarts() {
        let mut s = send(b"abcdefg");
        s.next_chunk(3);
        s.on_continue(3);
        s.next_chunk(3);
        assert_eq!(s.on_tick(2, 6), SnapshotTick::Wait);
        assert_eq!(s.on_tick(2, 6), SnapshotTick::Resend);
        assert_eq!(s.next_chunk(3), Some((3, Bytes::from_static(b"def"))), "resumed, not restarted");
        for _ in 0..3 {
            s.on_tick(2, 6);
        }
        assert_eq!(s.on_tick(2, 6), SnapshotTick::Restart);
    }

    #[test]
    fn an_empty_snapshot_is_one_empty_chunk() {
        let mut s = send(b"");
        assert_eq!(s.next_chunk(3), Some((0, Bytes::new())));
    }
}
