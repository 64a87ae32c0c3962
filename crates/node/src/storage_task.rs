//! The storage thread: owns the log store and the snapshot store, and makes writes durable
//! with group commit.
//!
//! It takes every command already queued (up to `GROUP_MAX`), carries them out in order —
//! writes without syncing, reads (which see the unsynced writes before them), snapshot
//! saves — then syncs once and reports the last write durable. One fsync covers every
//! write the event loop produced meanwhile, which is what lets many clients share a disk
//! flush. A storage error stops the thread and the node (fail closed): nothing after a
//! failed write is ever reported durable.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use d_engine_core::storage::{LogStore, StorageError};
use d_engine_core::{LogIndex, PersistRequest, WriteId};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::entry_traces::{EntryTraces, Stage};
use crate::error::NodeError;
use crate::messages::{ApplyCommand, Completion, SequencedApply, StorageCommand};
use crate::metrics::NodeMetrics;
use crate::snapshot_file::SnapshotStore;
use crate::term_span::{SharedTerm, TermSpan};

const GROUP_MAX: usize = 4096;

/// A log store the storage thread can own.
pub type BoxedLogStore = Box<dyn LogStore + Send>;

pub(crate) struct StorageTask {
    pub(crate) log: BoxedLogStore,
    pub(crate) snapshots: SnapshotStore,
    pub(crate) commands: UnboundedReceiver<StorageCommand>,
    pub(crate) completions: UnboundedSender<Completion>,
    pub(crate) apply: UnboundedSender<SequencedApply>,
    pub(crate) metrics: NodeMetrics,
    pub(crate) traces: Arc<EntryTraces>,
}

impl StorageTask {
    /// Starts the thread; its lines carry the node id and the current term.
    pub(crate) fn spawn(self, node: u64, term: SharedTerm) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name(format!("d-engine-{node}-storage")).spawn(move || {
            let mut span = TermSpan::new(node, term);
            self.run(&mut span)
        })
    }

    fn run(mut self, span: &mut TermSpan) {
        let mut group = Vec::new();
        loop {
            span.enter_current();
            let Some(first) = self.commands.blocking_recv() else { break };
            span.enter_current();
            group.push(first);
            while group.len() < GROUP_MAX {
                match self.commands.try_recv() {
                    Ok(command) => group.push(command),
                    Err(_) => break,
                }
            }
            match self.carry_out(&mut group) {
                Ok(Continue::Yes) => {}
                Ok(Continue::No) => break,
                Err(error) => {
                    tracing::error!(%error, "storage failed; the node stops");
                    let _ = self.completions.send(Completion::Failed(NodeError::Storage(error)));
                    return;
                }
            }
        }
        span.enter_current();
        match self.log.sync() {
            Ok(()) => tracing::info!(last_log_id = ?self.log.last_log_id().ok(), "log synced and closed"),
            Err(error) => tracing::error!(%error, "final sync failed"),
        }
    }

    fn carry_out(&mut self, group: &mut Vec<StorageCommand>) -> Result<Continue, StorageError> {
        let mut last_write: Option<WriteId> = None;
        let mut writes = 0u32;
        let mut stop = false;
        // Spans of traced entries in this sync, and the entries written (for the follower's
        // `replicate` spans, which end once their entry is durable).
        let mut sync_spans = Vec::new();
        let mut written = None;
        for command in group.drain(..) {
            match command {
                StorageCommand::Persist(write) => {
                    if !self.traces.is_empty() {
                        sync_spans.extend(self.traces.spans_for(Stage::StorageSync, &write.entries));
                        if let (Some(first), Some(last)) = (write.entries.first(), write.entries.last()) {
                            let from = written.map_or(first.log_id.index, |(from, _): (LogIndex, LogIndex)| {
                                from.min(first.log_id.index)
                            });
                            written = Some((from, last.log_id.index));
                        }
                    }
                    write_to(&mut *self.log, &write)?;
                    last_write = Some(write.id);
                    writes += 1;
                }
                StorageCommand::Apply { first, last, seq } => {
                    let entries = self.log.entries(first..=last)?;
                    // The apply thread only goes away when the node stops.
                    let _ = self.apply.send((seq, ApplyCommand::Entries(entries)));
                }
                StorageCommand::LoadEntries { peer, term, first, last } => {
                    let entries = match self.log.entries(first..=last) {
                        Ok(entries) => entries,
                        // Purged since the core asked: it falls back to a snapshot.
                        Err(StorageError::Compacted { .. } | StorageError::Unavailable { .. }) => Vec::new(),
                        Err(error) => return Err(error),
                    };
                    self.report(Completion::EntriesLoaded { peer, term, entries });
                }
                StorageCommand::SaveBuiltSnapshot(snapshot) => self.snapshots.save(snapshot)?,
                StorageCommand::SaveInstalledSnapshot(snapshot) => {
                    let meta = snapshot.meta.clone();
                    self.snapshots.save(snapshot)?;
                    self.report(Completion::SnapshotInstalled(meta));
                }
                StorageCommand::LoadSnapshot { peer, term } => {
                    let snapshot = self.snapshots.latest().cloned().ok_or_else(|| {
                        StorageError::Misuse("the core asked for a snapshot before one was saved".into())
                    })?;
                    self.metrics.snapshot_sent(snapshot.data.len());
                    self.report(Completion::SnapshotLoaded { peer, term, snapshot });
                }
                StorageCommand::PublishLogSize => self.publish_log_size()?,
                StorageCommand::Stop => stop = true,
            }
        }
        if let Some(id) = last_write {
            let sync_started = Instant::now();
            self.log.sync()?;
            self.metrics.storage_sync.record(sync_started.elapsed());
            self.metrics.storage_batch_writes.record(writes);
            drop(sync_spans);
            if let Some((first, last)) = written {
                self.traces.synced(first, last);
            }
            self.report(Completion::Persisted(id));
        }
        Ok(if stop { Continue::No } else { Continue::Yes })
    }

    /// Refreshes the log's size gauges (reads the store's size: the event loop asks about
    /// once a second).
    fn publish_log_size(&mut self) -> Result<(), StorageError> {
        let entries = self.log.last_log_id()?.index.0.saturating_sub(self.log.last_purged()?.index.0);
        self.metrics.log_size(entries, self.log.size_bytes());
        Ok(())
    }

    fn report(&self, completion: Completion) {
        let _ = self.completions.send(completion);
    }
}

enum Continue {
    Yes,
    No,
}

/// Carries out one write of the core, in the order its fields document: hard state,
/// truncation, append, purge. Durable at the next sync.
fn write_to(log: &mut (dyn LogStore + Send), write: &PersistRequest) -> Result<(), StorageError> {
    if let Some(hard_state) = &write.hard_state {
        log.save_hard_state(hard_state)?;
    }
    if let Some(from) = write.truncate_from {
        debug_assert!(from > LogIndex(0), "index 0 is never truncated");
        log.truncate_suffix(from)?;
    }
    log.append(&write.entries)?;
    if let Some(upto) = write.purge_upto {
        log.purge_prefix(upto)?;
    }
    Ok(())
}
