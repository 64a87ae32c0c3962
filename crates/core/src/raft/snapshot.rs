//! Snapshots: building them by policy, compacting the log, sending them to peers whose
//! entries were purged, and installing one received from the leader.
//!
//! Follower install rule: a snapshot not newer than the commit index is answered as
//! already held; otherwise, once installed and saved by the runtime, the log keeps its
//! entries after the snapshot only if it holds the snapshot's last entry with the same
//! term, and is discarded entirely otherwise (keeping a conflicting entry at that index
//! livelocked another implementation). Commit and applied only move forward.

use bytes::{Bytes, BytesMut};

use super::{Raft, RoleState};
use crate::durability::Dependency;
use crate::message::{Message, SnapshotOutcome};
use crate::output::{Output, SnapshotError};
use crate::replication::{ProgressState, SnapshotSend, SnapshotTick};
use crate::storage::codec::bulk_checksum;
use crate::storage::{Snapshot, SnapshotMeta};
use crate::types::{LogId, LogIndex, NodeId, Term};

/// A snapshot arriving from the leader.
#[derive(Debug)]
pub(super) struct Incoming {
    meta: SnapshotMeta,
    total_bytes: u64,
    checksum: u64,
    buffer: BytesMut,
    /// Complete and handed to the runtime to install: nothing is applied until it is done.
    pub(super) handed_out: bool,
}

impl Raft {
    fn snapshot_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(LogIndex(0), |meta| meta.last_included.index)
    }

    pub(super) fn request_snapshot(&mut self) {
        if !self.snapshot_requested && self.applied > self.snapshot_index() {
            self.snapshot_requested = true;
            self.outputs.push(Output::BuildSnapshot);
        }
    }

    /// Asks for a snapshot when the policy says so.
    pub(super) fn maybe_request_snapshot(&mut self) {
        let policy = self.config.snapshot_policy;
        let since = self.applied.0.saturating_sub(self.snapshot_index().0);
        let by_entries = policy.every_applied_entries.is_some_and(|every| since >= every);
        let by_bytes = policy.max_log_bytes.is_some_and(|max| self.log.payload_bytes() > max);
        if by_entries || by_bytes {
            self.request_snapshot();
        }
    }

    pub(super) fn record_built_snapshot(&mut self, last_included: LogId) -> Result<SnapshotMeta, SnapshotError> {
        self.snapshot_requested = false;
        let unusable = |reason| Err(SnapshotError::Unusable { last_included, reason });
        if last_included.index > self.applied {
            return unusable("it covers entries the state machine has not applied");
        }
        if last_included.index <= self.snapshot_index() {
            return unusable("it is not newer than the current snapshot");
        }
        if self.log.term_at(last_included.index) != Some(last_included.term) {
            return unusable("its last entry is not in the log");
        }
        let meta = SnapshotMeta { last_included, membership: self.membership.at(last_included.index).clone() };
        self.membership.on_snapshot(last_included.index, meta.membership.clone());
        self.snapshot = Some(meta.clone());
        let purge_index = LogIndex(last_included.index.0.saturating_sub(self.config.snapshot_policy.keep_entries));
        if purge_index > self.log.last_purged().index {
            let term = self.log.term_at(purge_index).expect("the purge point is below the snapshot, in the log");
            let upto = LogId { term, index: purge_index };
            self.log.purge(upto);
            self.durability.stage_purge(upto);
        }
        Ok(meta)
    }

    /// The peer needs entries that were purged: ask the runtime for the snapshot.
    pub(super) fn request_snapshot_for(&mut self, peer: NodeId) {
        let term = self.term;
        let RoleState::Leader(leader) = &mut self.role else { return };
        let Some(progress) = leader.progress.get_mut(&peer) else { return };
        if progress.state == ProgressState::Snapshot {
            return;
        }
        progress.become_snapshot();
        progress.loading = true;
        self.outputs.push(Output::LoadSnapshot { peer, term });
    }

    pub(super) fn start_snapshot_send(&mut self, peer: NodeId, term: Term, snapshot: Snapshot) {
        if term != self.term {
            return;
        }
        let RoleState::Leader(leader) = &mut self.role else { return };
        let Some(progress) = leader.progress.get_mut(&peer) else { return };
        if progress.state != ProgressState::Snapshot || !progress.loading {
            return;
        }
        progress.loading = false;
        progress.snapshot_send = Some(SnapshotSend::new(snapshot));
        self.send_snapshot_chunk(peer);
    }

    fn send_snapshot_chunk(&mut self, peer: NodeId) {
        let (term, chunk_bytes) = (self.term, self.config.snapshot_chunk_bytes);
        let RoleState::Leader(leader) = &mut self.role else { return };
        let Some(send) = leader.progress.get_mut(&peer).and_then(|p| p.snapshot_send.as_mut()) else { return };
        let Some((offset, data)) = send.next_chunk(chunk_bytes) else { return };
        let message = Message::InstallSnapshot {
            term,
            meta: send.snapshot.meta.clone(),
            offset,
            data,
            total_bytes: send.total_bytes(),
            checksum: send.checksum,
        };
        self.send(peer, message, Dependency::None);
    }

    /// Leader tick: resend a lost chunk, or give up a stalled transfer.
    pub(super) fn tick_snapshot_sends(&mut self) {
        let resend_after = (self.config.heartbeat_interval_ticks * 2).max(1);
        let restart_after = self.config.election_timeout_ticks * 4;
        let RoleState::Leader(leader) = &mut self.role else { return };
        let mut resend = Vec::new();
        for (peer, progress) in &mut leader.progress {
            let Some(send) = progress.snapshot_send.as_mut() else { continue };
            match send.on_tick(resend_after, restart_after) {
                SnapshotTick::Wait => {}
                SnapshotTick::Resend => resend.push(*peer),
                SnapshotTick::Restart => {
                    progress.abandon_snapshot();
                    leader.needs_append.push(*peer);
                }
            }
        }
        for peer in resend {
            self.send_snapshot_chunk(peer);
        }
    }

    pub(super) fn handle_install_snapshot_response(
        &mut self,
        from: NodeId,
        last_included: LogId,
        outcome: SnapshotOutcome,
    ) {
        let RoleState::Leader(leader) = &mut self.role else { return };
        let Some(progress) = leader.progress.get_mut(&from) else { return };
        progress.recent_active = true;
        let Some(send) = progress.snapshot_send.as_mut().filter(|s| s.snapshot.meta.last_included == last_included)
        else {
            return;
        };
        match outcome {
            SnapshotOutcome::Continue { next_offset } => {
                send.on_continue(next_offset);
                self.send_snapshot_chunk(from);
            }
            SnapshotOutcome::Done => {
                progress.snapshot_done(last_included.index);
                self.maybe_commit();
                self.schedule_append(from);
            }
        }
    }

    pub(super) fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        total_bytes: u64,
        checksum_of_all: u64,
    ) {
        self.follow(from);
        let (term, last_included) = (self.term, meta.last_included);
        if last_included.index <= self.commit {
            // Our committed log already covers it.
            let message = Message::InstallSnapshotResponse { term, last_included, outcome: SnapshotOutcome::Done };
            self.send(from, message, Dependency::Log);
            return;
        }
        if self.incoming_snapshot.as_ref().is_some_and(|incoming| incoming.handed_out) {
            return; // Installing one already; the leader resends.
        }
        let same = self.incoming_snapshot.as_ref().is_some_and(|incoming| {
            incoming.meta.last_included == last_included
                && incoming.total_bytes == total_bytes
                && incoming.checksum == checksum_of_all
        });
        if !same {
            self.incoming_snapshot = (offset == 0).then(|| Incoming {
                meta,
                total_bytes,
                checksum: checksum_of_all,
                buffer: BytesMut::new(),
                handed_out: false,
            });
        }
        let Some(incoming) = self.incoming_snapshot.as_mut() else {
            self.answer_snapshot_chunk(from, last_included, 0);
            return;
        };
        if offset != incoming.buffer.len() as u64 {
            let resume = incoming.buffer.len() as u64;
            self.answer_snapshot_chunk(from, last_included, resume);
            return;
        }
        incoming.buffer.extend_from_slice(&data);
        let received = incoming.buffer.len() as u64;
        if received < incoming.total_bytes {
            self.answer_snapshot_chunk(from, last_included, received);
            return;
        }
        if received != incoming.total_bytes || bulk_checksum(&incoming.buffer) != incoming.checksum {
            // Damaged in transit: start this snapshot over.
            self.incoming_snapshot = None;
            self.answer_snapshot_chunk(from, last_included, 0);
            return;
        }
        incoming.handed_out = true;
        let snapshot = Snapshot { meta: incoming.meta.clone(), data: std::mem::take(&mut incoming.buffer).freeze() };
        self.outputs.push(Output::InstallSnapshot(snapshot));
    }

    fn answer_snapshot_chunk(&mut self, to: NodeId, last_included: LogId, next_offset: u64) {
        let outcome = SnapshotOutcome::Continue { next_offset };
        let message = Message::InstallSnapshotResponse { term: self.term, last_included, outcome };
        self.send(to, message, Dependency::HardState);
    }

    pub(super) fn finish_snapshot_install(&mut self, meta: SnapshotMeta) {
        let expected = self.incoming_snapshot.take().filter(|incoming| incoming.handed_out);
        assert!(
            expected.is_some_and(|incoming| incoming.meta == meta),
            "snapshot_installed({}) without a matching Output::InstallSnapshot",
            meta.last_included
        );
        self.adopt_snapshot(meta.clone());
        if let Some(leader) = self.leader {
            let outcome = SnapshotOutcome::Done;
            let message =
                Message::InstallSnapshotResponse { term: self.term, last_included: meta.last_included, outcome };
            self.send(leader, message, Dependency::Log);
        }
    }

    /// A snapshot newer than our log's start is durable: fit the log to it.
    fn adopt_snapshot(&mut self, meta: SnapshotMeta) {
        let last_included = meta.last_included;
        if !self.log.contains(last_included) {
            let first = self.log.last_purged().index.next();
            if self.log.last().index >= first {
                assert!(
                    first > self.commit || self.commit <= last_included.index,
                    "a committed entry would be discarded"
                );
                self.log.truncate(first);
                self.durability.stage_truncate(first);
                self.membership.on_truncate(first);
            }
        }
        self.log.purge(last_included);
        self.durability.stage_purge(last_included);
        self.durability.covered_by_snapshot(last_included.index);
        self.membership.on_snapshot(last_included.index, meta.membership.clone());
        self.commit = self.commit.max(last_included.index);
        self.apply_requested = self.apply_requested.max(last_included.index);
        self.applied = self.applied.max(last_included.index);
        self.snapshot = Some(meta);
    }

    /// At start: a durable snapshot newer than the log's purge point (a crash between saving
    /// the snapshot and compacting the log) is applied to the log now.
    pub(super) fn reconcile_log_with_snapshot(&mut self) {
        if let Some(meta) = self.snapshot.clone()
            && meta.last_included.index > self.log.last_purged().index
        {
            self.adopt_snapshot(meta);
        }
    }
}
