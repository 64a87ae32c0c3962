//! The apply thread: feeds committed entries to the state machine in log order, answers
//! the proposals waiting for them, and builds and installs snapshots.
//!
//! The state machine sits behind a read-write lock: this thread takes the write lock for
//! one batch at a time, reads (serializable, or after a ReadIndex round) take the read lock.
//! `applied` is published after the batch is visible to readers, so a read that waited for
//! index `i` always sees the effect of entry `i`.
//!
//! The thread's state sits behind a mutex it holds while it carries commands out, so that
//! the event loop can apply a small batch itself when the thread has nothing queued or in
//! hand ([`InlineApply`]): the same code, in sequence, without the two thread hand-offs (to
//! this thread, and back to the event loop, or to the task that answers the client).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use d_engine_core::storage::Snapshot;
use d_engine_core::{Entry, EntryPayload, LogIndex};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;

use crate::application::Application;
use crate::backlog::Backlog;
use crate::entry_traces::{EntryTraces, Stage};
use crate::error::{NodeError, RequestError};
use crate::messages::{Applied, ApplyCommand, Completion, SequencedApply, StorageCommand, Waiters};
use crate::metrics::NodeMetrics;
use crate::storage_task::StorageQueue;
use crate::term_span::{SharedTerm, TermSpan};

/// The apply thread's state, shared with the event loop for [`InlineApply`].
pub(crate) type SharedApply<S> = Arc<Mutex<ApplyTask<S>>>;

/// Applying a batch of entries on the caller's thread: the event loop's handle on the apply
/// thread's state (the state machine type erased).
pub(crate) trait InlineApply: Send + Sync {
    /// Applies `entries` as the command with sequence number `seq`, which must be the next
    /// one: the thread has nothing queued or in hand. Returns the index applied through (if
    /// any entry was left to apply) to the caller instead of reporting it on the thread's
    /// channel (which the event loop awaits: a report there would wake the loop's own task).
    fn apply_now(&self, seq: u64, entries: Vec<Entry>) -> Result<Option<LogIndex>, NodeError>;
}

pub(crate) struct ApplyTask<S> {
    pub(crate) state_machine: Arc<RwLock<S>>,
    pub(crate) completions: UnboundedSender<Completion>,
    pub(crate) storage: StorageQueue,
    pub(crate) waiters: Waiters,
    pub(crate) applied: watch::Sender<LogIndex>,
    pub(crate) metrics: NodeMetrics,
    pub(crate) traces: Arc<EntryTraces>,
    /// The thread running the state machine's snapshot job, while it runs.
    pub(crate) building: Option<JoinHandle<()>>,
    /// The sequence number of the next command to carry out.
    pub(crate) next_seq: u64,
}

impl<S: Application> ApplyTask<S> {
    /// Starts the thread, which carries out the commands `commands` brings in sequence
    /// order, counting them off `backlog` (counted on when their sequence number is taken,
    /// by the event loop, for itself or the storage thread); its lines carry the node id and
    /// the current term. Returns the state it shares, for [`InlineApply`].
    pub(crate) fn spawn(
        self,
        commands: UnboundedReceiver<SequencedApply>,
        backlog: Backlog,
        node: u64,
        term: SharedTerm,
    ) -> std::io::Result<(JoinHandle<()>, SharedApply<S>)> {
        let shared = Arc::new(Mutex::new(self));
        let state = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name(format!("d-engine-{node}-apply")).spawn(move || {
            let mut span = TermSpan::new(node, term);
            run(&state, commands, &backlog, &mut span)
        })?;
        Ok((thread, shared))
    }

    /// Carries out `command`; returns the index applied through when it applied entries,
    /// for the caller to report.
    fn carry_out(&mut self, command: ApplyCommand) -> Result<Option<LogIndex>, NodeError> {
        self.next_seq += 1;
        match command {
            ApplyCommand::Entries(entries) => self.apply(entries),
            ApplyCommand::BuildSnapshot => self.build_snapshot().map(|()| None),
            ApplyCommand::InstallSnapshot(snapshot) => self.install_snapshot(snapshot).map(|()| None),
        }
    }

    fn apply(&mut self, mut entries: Vec<Entry>) -> Result<Option<LogIndex>, NodeError> {
        let mut state_machine = self.state_machine.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Entries a snapshot installed meanwhile already covers are skipped.
        let applied = state_machine.last_applied().index;
        entries.retain(|entry| entry.log_id.index > applied);
        let Some(last) = entries.last().map(|entry| entry.log_id.index) else { return Ok(None) };
        assert_eq!(entries[0].log_id.index, applied.next(), "entries are applied in order, without gaps");
        let spans = self.traces.spans_for(Stage::Apply, &entries);
        let outputs = state_machine.apply(&entries)?;
        drop(state_machine);
        drop(spans);
        self.traces.applied(last);
        assert_eq!(outputs.len(), entries.len(), "the state machine returns one output per entry");
        self.answer(&entries, outputs);
        self.applied.send_replace(last);
        Ok(Some(last))
    }

    fn answer(&self, entries: &[Entry], outputs: Vec<bytes::Bytes>) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (entry, output) in entries.iter().zip(outputs) {
            let Some(waiter) = waiters.remove(&entry.log_id.index) else { continue };
            let result = if waiter.log_id == entry.log_id {
                let output =
                    if matches!(entry.payload, EntryPayload::Command(_)) { output } else { Default::default() };
                Ok(Applied { log_id: entry.log_id, output })
            } else {
                Err(RequestError::Aborted)
            };
            let _ = waiter.reply.send(result);
        }
    }

    /// Takes the state machine's snapshot job under the write lock (applies wait only for
    /// that), and runs it on a thread of its own that reports `SnapshotBuilt` (or the failure)
    /// to the event loop; applying goes on meanwhile. The core asks for one build at a time.
    fn build_snapshot(&mut self) -> Result<(), NodeError> {
        self.wait_for_build();
        let started = std::time::Instant::now();
        let mut state_machine = self.state_machine.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let job = state_machine.snapshot_job()?;
        drop(state_machine);
        let paused_ms = started.elapsed().as_millis() as u64;
        let completions = self.completions.clone();
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new().name("d-engine-snapshot-build".into()).spawn(move || {
            let _entered = span.enter();
            let completion = match job() {
                Ok((last_included, data)) => {
                    let elapsed_ms = started.elapsed().as_millis() as u64;
                    let bytes = data.len();
                    tracing::info!(%last_included, bytes, paused_ms, elapsed_ms, "state machine snapshot built");
                    Completion::SnapshotBuilt { last_included, data }
                }
                Err(error) => {
                    tracing::error!(%error, "building the snapshot failed; the node stops");
                    Completion::Failed(NodeError::Storage(error))
                }
            };
            let _ = completions.send(completion);
        });
        match thread {
            Ok(thread) => self.building = Some(thread),
            Err(error) => return Err(NodeError::Task(format!("cannot start the snapshot-building thread: {error}"))),
        }
        Ok(())
    }

    /// Waits until a snapshot job in progress has finished.
    fn wait_for_build(&mut self) {
        if let Some(thread) = self.building.take() {
            let _ = thread.join();
        }
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), NodeError> {
        let covered = snapshot.meta.last_included.index;
        let mut state_machine = self.state_machine.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        state_machine.install_snapshot(&snapshot)?;
        drop(state_machine);
        self.metrics.snapshot_installed(snapshot.data.len());
        // Proposals the snapshot covers may or may not be in it: their outcome is unknown here.
        let mut waiters = self.waiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let later = waiters.split_off(&covered.next());
        for (_, waiter) in std::mem::replace(&mut *waiters, later) {
            let reason = "a snapshot from the leader replaced the state before the entry was seen applied";
            let _ = waiter.reply.send(Err(RequestError::OutcomeUnknown(reason.into())));
        }
        drop(waiters);
        self.applied.send_replace(covered);
        self.storage.send(StorageCommand::SaveInstalledSnapshot(snapshot));
        Ok(())
    }
}

impl<S: Application> InlineApply for Mutex<ApplyTask<S>> {
    fn apply_now(&self, seq: u64, entries: Vec<Entry>) -> Result<Option<LogIndex>, NodeError> {
        let mut task = self.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        assert_eq!(task.next_seq, seq, "applied inline only when nothing is ahead of it");
        task.carry_out(ApplyCommand::Entries(entries))
    }
}

/// The apply thread's loop. Commands arrive from two senders (the event loop and the
/// storage thread) and are carried out in the event loop's sequence: early arrivals wait.
fn run<S: Application>(
    shared: &Mutex<ApplyTask<S>>,
    mut commands: UnboundedReceiver<SequencedApply>,
    backlog: &Backlog,
    span: &mut TermSpan,
) {
    let lock = || shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut early = BTreeMap::new();
    while let Some((seq, command)) = commands.blocking_recv() {
        span.enter_current();
        early.insert(seq, command);
        let mut task = lock();
        while let Some(command) = early.remove(&task.next_seq) {
            let result = task.carry_out(command);
            if let Ok(Some(applied)) = result {
                let _ = task.completions.send(Completion::Applied(applied));
            }
            // After its completion is sent: an empty backlog means everything is reported.
            backlog.done(1);
            if let Err(error) = result {
                tracing::error!(%error, "the state machine failed; the node stops");
                let _ = task.completions.send(Completion::Failed(error));
                return;
            }
        }
    }
    span.enter_current();
    let mut task = lock();
    // The job holds a view of the store: it ends before the store may close.
    task.wait_for_build();
    let mut state_machine = task.state_machine.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    match state_machine.flush() {
        Ok(()) => tracing::info!(applied = %*task.applied.borrow(), "state machine flushed and stopped"),
        Err(error) => tracing::warn!(%error, "flushing the state machine failed; a restart re-applies the log"),
    }
}
