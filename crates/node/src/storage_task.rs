//! The storage thread: owns the log store and the snapshot store, and makes writes durable
//! with group commit.
//!
//! It takes every command already queued (up to `GROUP_MAX`), carries them out in order —
//! writes without syncing, reads (which see the unsynced writes before them), snapshot
//! saves — then syncs once and reports the last write durable. One fsync covers every
//! write the event loop produced meanwhile, which is what lets many clients share a disk
//! flush. A storage error stops the thread and the node (fail closed): nothing after a
//! failed write is ever reported durable.
//!
//! The stores sit behind a mutex that the thread holds only while it carries a group out,
//! so that a follower's event loop can write and sync a write itself when the thread has
//! nothing queued or in hand ([`StorageQueue::is_idle`]): the same code, in the same order
//! (nothing is ahead of it), without the two thread hand-offs — to the storage thread and
//! back — that on a loaded machine cost tens of microseconds each on a follower's
//! acknowledgement, which every write of a 3-node cluster waits for.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use d_engine_core::storage::{LogStore, Snapshot, StorageError};
use d_engine_core::{LogId, LogIndex, PersistRequest, WriteId};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::backlog::Backlog;
use crate::entry_traces::{EntryTraces, Stage};
use crate::error::NodeError;
use crate::messages::{ApplyCommand, Completion, SequencedApply, StorageCommand};
use crate::metrics::NodeMetrics;
use crate::snapshot_file::SnapshotStore;
use crate::term_span::{SharedTerm, TermSpan};

const GROUP_MAX: usize = 4096;

/// A log store the storage thread can own.
pub type BoxedLogStore = Box<dyn LogStore + Send>;

/// The storage thread's queue, with its [`Backlog`]: every sender counts what it queues,
/// so that the event loop can tell when nothing is ahead of a write.
#[derive(Clone)]
pub(crate) struct StorageQueue {
    commands: UnboundedSender<StorageCommand>,
    backlog: Backlog,
}

impl StorageQueue {
    pub(crate) fn new() -> (StorageQueue, UnboundedReceiver<StorageCommand>) {
        let (commands, receiver) = tokio::sync::mpsc::unbounded_channel();
        (StorageQueue { commands, backlog: Backlog::default() }, receiver)
    }

    /// Queues `command` for the storage thread.
    pub(crate) fn send(&self, command: StorageCommand) {
        self.backlog.add();
        // The thread ends only after `Stop` or a failure, which is reported as a completion.
        if self.commands.send(command).is_err() {
            self.backlog.done(1);
        }
    }

    /// Whether the thread has carried out everything queued so far and reported it (its
    /// completions are in the channel).
    pub(crate) fn is_idle(&self) -> bool {
        self.backlog.is_clear()
    }
}

/// The storage thread's state, shared with the event loop for writes it carries out itself.
pub(crate) type SharedStorage = Arc<Mutex<StorageTask>>;

pub(crate) struct StorageTask {
    pub(crate) log: BoxedLogStore,
    /// `None` while a built snapshot is being saved (the saving thread has it).
    pub(crate) snapshots: Option<SnapshotStore>,
    pub(crate) saving: Option<SnapshotSave>,
    pub(crate) completions: UnboundedSender<Completion>,
    pub(crate) apply: UnboundedSender<SequencedApply>,
    pub(crate) metrics: NodeMetrics,
    pub(crate) traces: Arc<EntryTraces>,
}

/// A built snapshot being written on a thread of its own, so that log syncs do not wait
/// behind tens of megabytes and their fsync; the purge of the log it covers waits for it.
pub(crate) struct SnapshotSave {
    thread: JoinHandle<(SnapshotStore, Result<(), StorageError>)>,
    started: Instant,
    bytes: usize,
    /// The purge that arrived meanwhile (the highest), carried out once the save is durable.
    purge: Option<LogId>,
}

impl StorageTask {
    /// Starts the thread, which carries out what `queue` (made with `commands`) holds; its
    /// lines carry the node id and the current term. Returns the state it shares.
    pub(crate) fn spawn(
        self,
        commands: UnboundedReceiver<StorageCommand>,
        queue: &StorageQueue,
        node: u64,
        term: SharedTerm,
    ) -> std::io::Result<(JoinHandle<()>, SharedStorage)> {
        let shared = Arc::new(Mutex::new(self));
        let (state, backlog) = (Arc::clone(&shared), queue.backlog.clone());
        let thread = std::thread::Builder::new().name(format!("d-engine-{node}-storage")).spawn(move || {
            let mut span = TermSpan::new(node, term);
            run(&state, commands, &backlog, &mut span)
        })?;
        Ok((thread, shared))
    }

    /// Carries out one write of the core here and now, as the thread would (see the module
    /// docs): only when nothing is queued ahead of it. Returns the write, durable, to the
    /// caller instead of reporting it on the thread's channel (which the event loop awaits:
    /// a report there would wake the loop's own task).
    pub(crate) fn persist_now(&mut self, write: PersistRequest) -> Result<WriteId, StorageError> {
        let id = write.id;
        self.carry_out(&mut vec![StorageCommand::Persist(write)])?;
        Ok(id)
    }

    /// Carries out `group` in order, after taking back a finished snapshot save, then syncs
    /// once; the last write, durable, is for the caller to report.
    fn carry_out(&mut self, group: &mut Vec<StorageCommand>) -> Result<Carried, StorageError> {
        self.finish_save(false)?;
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
                    // While a snapshot is being saved, the purge of the log it covers waits.
                    let purge = match (&mut self.saving, write.purge_upto) {
                        (Some(save), Some(upto)) => {
                            // The furthest purge asked for meanwhile.
                            save.purge = Some(save.purge.filter(|held| held.index >= upto.index).unwrap_or(upto));
                            false
                        }
                        _ => true,
                    };
                    write_to(&mut *self.log, &write, purge)?;
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
                StorageCommand::SaveBuiltSnapshot(snapshot) => self.start_save(snapshot)?,
                StorageCommand::SaveInstalledSnapshot(snapshot) => {
                    let meta = snapshot.meta.clone();
                    self.snapshot_store()?.save(snapshot)?;
                    self.report(Completion::SnapshotInstalled(meta));
                }
                StorageCommand::LoadSnapshot { peer, term } => {
                    let snapshot = self.snapshot_store()?.latest().cloned().ok_or_else(|| {
                        StorageError::Misuse("the core asked for a snapshot before one was saved".into())
                    })?;
                    self.metrics.snapshot_sent(snapshot.data.len());
                    self.report(Completion::SnapshotLoaded { peer, term, snapshot });
                }
                StorageCommand::PublishLogSize => self.publish_log_size()?,
                StorageCommand::Stop => stop = true,
            }
        }
        if last_write.is_some() {
            let sync_started = Instant::now();
            self.log.sync()?;
            self.metrics.storage_sync.record(sync_started.elapsed());
            self.metrics.storage_batch_writes.record(writes);
            drop(sync_spans);
            if let Some((first, last)) = written {
                self.traces.synced(first, last);
            }
        }
        Ok(Carried { durable: last_write, stop })
    }

    /// Starts writing a built snapshot on a thread of its own (after any earlier save).
    fn start_save(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        self.finish_save(true)?;
        let mut store = self.snapshots.take().expect("no save in progress: the store is here");
        let bytes = snapshot.data.len();
        let thread = std::thread::Builder::new()
            .name("d-engine-snapshot-save".into())
            .spawn(move || {
                let saved = store.save(snapshot);
                (store, saved)
            })
            .map_err(|error| StorageError::Io {
                operation: "start the snapshot-saving thread",
                source: Box::new(error),
            })?;
        self.saving = Some(SnapshotSave { thread, started: Instant::now(), bytes, purge: None });
        Ok(())
    }

    /// Takes back the snapshot store from a finished save (waiting for it when `wait`), and
    /// carries out the purge that waited for it (durable at the next sync). A failed save
    /// fails the storage thread like any storage error.
    fn finish_save(&mut self, wait: bool) -> Result<(), StorageError> {
        let Some(save) = self.saving.take_if(|save| wait || save.thread.is_finished()) else { return Ok(()) };
        let (store, saved) = save.thread.join().map_err(|_| StorageError::Io {
            operation: "save a snapshot",
            source: "the snapshot-saving thread panicked".into(),
        })?;
        self.snapshots = Some(store);
        saved?;
        let elapsed_ms = save.started.elapsed().as_millis() as u64;
        tracing::info!(bytes = save.bytes, elapsed_ms, "snapshot saved");
        if let Some(upto) = save.purge {
            self.log.purge_prefix(upto)?;
        }
        Ok(())
    }

    /// The snapshot store, once any save in progress is done.
    fn snapshot_store(&mut self) -> Result<&mut SnapshotStore, StorageError> {
        self.finish_save(true)?;
        Ok(self.snapshots.as_mut().expect("no save in progress: the store is here"))
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

/// The storage thread's loop: takes what is queued, carries it out under the lock, and
/// only then counts it done.
fn run(
    shared: &SharedStorage,
    mut commands: UnboundedReceiver<StorageCommand>,
    backlog: &Backlog,
    span: &mut TermSpan,
) {
    let lock = || shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut group = Vec::new();
    loop {
        span.enter_current();
        let Some(first) = commands.blocking_recv() else { break };
        span.enter_current();
        group.push(first);
        while group.len() < GROUP_MAX {
            match commands.try_recv() {
                Ok(command) => group.push(command),
                Err(_) => break,
            }
        }
        let taken = group.len();
        let mut task = lock();
        let carried = task.carry_out(&mut group);
        if let Ok(Carried { durable: Some(id), .. }) = carried {
            task.report(Completion::Persisted(id));
        }
        drop(task);
        // After the completions are sent: an idle queue means they are all in the channel.
        backlog.done(taken);
        match carried {
            Ok(Carried { stop: false, .. }) => {}
            Ok(Carried { stop: true, .. }) => break,
            Err(error) => {
                tracing::error!(%error, "storage failed; the node stops");
                let _ = lock().completions.send(Completion::Failed(NodeError::Storage(error)));
                return;
            }
        }
    }
    span.enter_current();
    let mut task = lock();
    if let Err(error) = task.finish_save(true) {
        tracing::error!(%error, "saving the snapshot failed");
    }
    match task.log.sync() {
        Ok(()) => tracing::info!(last_log_id = ?task.log.last_log_id().ok(), "log synced and closed"),
        Err(error) => tracing::error!(%error, "final sync failed"),
    }
}

/// What carrying out a group came to.
struct Carried {
    /// The last write of the group, now durable.
    durable: Option<WriteId>,
    /// The group held `Stop`.
    stop: bool,
}

/// Carries out one write of the core, in the order its fields document: hard state,
/// truncation, append, purge (unless `purge` is false: a snapshot save holds it back).
/// Durable at the next sync.
fn write_to(log: &mut (dyn LogStore + Send), write: &PersistRequest, purge: bool) -> Result<(), StorageError> {
    if let Some(hard_state) = &write.hard_state {
        log.save_hard_state(hard_state)?;
    }
    if let Some(from) = write.truncate_from {
        debug_assert!(from > LogIndex(0), "index 0 is never truncated");
        log.truncate_suffix(from)?;
    }
    log.append(&write.entries)?;
    if let Some(upto) = write.purge_upto.filter(|_| purge) {
        log.purge_prefix(upto)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use d_engine_core::{Entry, EntryPayload, LogId, NodeId, WriteId};
    use d_engine_memory::MemLogStore;

    use super::*;

    fn write(id: u64, index: u64) -> PersistRequest {
        let entry = Entry { log_id: LogId::new(1, index), payload: EntryPayload::Command(Bytes::from_static(b"x")) };
        PersistRequest {
            id: WriteId(id),
            hard_state: None,
            truncate_from: None,
            entries: vec![entry],
            purge_upto: None,
        }
    }

    /// The rule the event loop's inline writes rest on: once the queue reads idle, the thread
    /// has carried out everything queued and its completions are already in the channel, so
    /// a write carried out on the loop's thread now comes after all of them.
    #[test]
    fn an_idle_queue_means_every_queued_write_is_done_and_reported_and_an_inline_write_follows_them() {
        let (completions_tx, mut completions) = tokio::sync::mpsc::unbounded_channel();
        let (apply_tx, _apply) = tokio::sync::mpsc::unbounded_channel();
        let task = StorageTask {
            log: Box::new(MemLogStore::new()),
            snapshots: Some(SnapshotStore::in_memory()),
            saving: None,
            completions: completions_tx,
            apply: apply_tx,
            metrics: NodeMetrics::new(1),
            traces: Arc::new(EntryTraces::new(NodeId(1))),
        };
        let (queue, commands) = StorageQueue::new();
        let (thread, shared) = task.spawn(commands, &queue, 1, SharedTerm::default()).unwrap();

        for id in 1..=50 {
            queue.send(StorageCommand::Persist(write(id, id)));
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while !queue.is_idle() {
            assert!(Instant::now() < deadline, "the storage thread never caught up");
            std::thread::yield_now();
        }
        let mut reported = Vec::new();
        while let Ok(Completion::Persisted(id)) = completions.try_recv() {
            reported.push(id.0);
        }
        assert_eq!(reported.last(), Some(&50), "idle, yet the last write's completion was not sent: {reported:?}");

        // Returned to the caller, durable, and not reported on the thread's channel (the
        // event loop awaits that one: a report there would wake the loop's own task).
        let durable = shared.lock().unwrap().persist_now(write(51, 51)).unwrap();
        assert_eq!(durable, WriteId(51), "durable when it returns");
        assert!(completions.try_recv().is_err(), "nothing on the thread's channel");
        assert_eq!(shared.lock().unwrap().log.last_log_id().unwrap(), LogId::new(1, 51), "after the 50 queued ones");

        // The thread's own writes report to its channel again.
        queue.send(StorageCommand::Persist(write(52, 52)));
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match completions.try_recv() {
                Ok(Completion::Persisted(WriteId(52))) => break,
                Ok(_) | Err(_) => {
                    assert!(Instant::now() < deadline, "the thread's write was not reported on its channel");
                    std::thread::yield_now();
                }
            }
        }

        queue.send(StorageCommand::Stop);
        thread.join().unwrap();
        assert!(queue.is_idle(), "the stop is counted off too");
    }
}
