//! The event loop: the one task that owns the core.
//!
//! It waits for the next input — a completion from the storage or apply thread, a peer
//! message, a client request, a tick — then takes whatever else is already queued (up to
//! `BATCH_MAX` of each kind), so that a burst of proposals becomes one write and one
//! append message per peer, and only then drains the core's outputs and hands each to
//! the task that carries it out. Completions go first: they release held messages and
//! advance commit. Storage and the state machine run on their own threads, peers behind
//! non-blocking senders, with two exceptions, each only while that thread has nothing
//! queued or in hand: a follower's write, which the loop writes and syncs itself (see
//! [`crate::storage_task`]), and a leader's small committed batch, which it applies itself
//! (see [`crate::apply_task`]). What arrives meanwhile queues up for the next batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use d_engine_core::{
    Envelope, MembershipChangeError, NodeId, Output, ProposeError, Raft, ReadError, ReadId, TransferError,
};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use crate::apply_task::InlineApply;
use crate::backlog::Backlog;
use crate::entry_cache::EntryCache;
use crate::entry_traces::EntryTraces;
use crate::error::{NodeError, RequestError};
use crate::messages::{ApplyCommand, Completion, Reply, Request, SequencedApply, StorageCommand, Waiter, Waiters};
use crate::metrics::NodeMetrics;
use crate::status::NodeStatus;
use crate::storage_task::{SharedStorage, StorageQueue};
use crate::term_span::{SharedTerm, node_span};
use crate::transport::{AddressBook, Transport};

const BATCH_MAX: usize = 512;
/// The most entries a leader's loop applies itself (when the apply thread is idle): a
/// batch this small costs the loop less than the two thread hand-offs it saves.
const INLINE_APPLY_MAX: usize = 8;
/// How often the transport is asked whether peers refuse this node.
const MISCONFIGURATION_CHECK_TICKS: u64 = 10;

pub(crate) struct EventLoop {
    pub(crate) core: Raft,
    pub(crate) transport: Box<dyn Transport>,
    pub(crate) requests: mpsc::Receiver<Request>,
    pub(crate) inbound: mpsc::Receiver<Envelope>,
    pub(crate) completions: mpsc::UnboundedReceiver<Completion>,
    pub(crate) storage: StorageQueue,
    /// The storage thread's state, for a follower's writes carried out here.
    pub(crate) shared_storage: SharedStorage,
    pub(crate) apply: mpsc::UnboundedSender<SequencedApply>,
    /// The sequence number of the next command for the apply thread.
    pub(crate) apply_seq: u64,
    /// The apply thread's commands not yet carried out (sequence numbers taken).
    pub(crate) apply_backlog: Backlog,
    /// The apply thread's state, for small batches applied here.
    pub(crate) inline_apply: std::sync::Arc<dyn InlineApply>,
    /// A follower's small batch to apply here (its sequence number taken) once the core has
    /// nothing more to send: applied before anything else is handed to the apply thread.
    pub(crate) deferred_apply: Option<(u64, Vec<d_engine_core::Entry>)>,
    pub(crate) entries: EntryCache,
    pub(crate) waiters: Waiters,
    pub(crate) reads: HashMap<ReadId, Reply<d_engine_core::LogIndex>>,
    pub(crate) next_read: u64,
    pub(crate) status: watch::Sender<NodeStatus>,
    pub(crate) shutdown: watch::Receiver<()>,
    pub(crate) tick: Duration,
    pub(crate) ticks: u64,
    pub(crate) addresses: Arc<AddressBook>,
    pub(crate) metrics: NodeMetrics,
    /// The span the loop logs in, and the term it was made for.
    pub(crate) log_span: tracing::Span,
    pub(crate) span_term: Option<d_engine_core::Term>,
    /// The term, for the storage and apply threads' spans.
    pub(crate) shared_term: SharedTerm,
    pub(crate) traces: Arc<EntryTraces>,
}

/// One input the loop waited for.
enum Input {
    Completion(Completion),
    Peer(Envelope),
    Request(Request),
    Tick,
}

impl EventLoop {
    /// Runs until the shutdown signal or a fatal error, then stops the storage thread
    /// (which syncs) and answers every waiting request.
    pub(crate) async fn run(mut self) -> Result<(), NodeError> {
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let result = loop {
            let input = tokio::select! {
                biased;
                // A dropped sender counts as a signal: nobody is left to send it.
                _ = self.shutdown.changed() => break Ok(()),
                Some(completion) = self.completions.recv() => Input::Completion(completion),
                Some(envelope) = self.inbound.recv() => Input::Peer(envelope),
                Some(request) = self.requests.recv() => Input::Request(request),
                _ = ticker.tick() => Input::Tick,
            };
            // Entered only between awaits: everything the loop logs names the node and its term.
            let span = self.span();
            let _entered = span.enter();
            if let Err(error) = self.on_input(input) {
                break Err(error);
            }
            if let Err(error) = self.take_ready() {
                break Err(error);
            }
            if let Err(error) = self.carry_out() {
                break Err(error);
            }
            self.publish_status(None);
        };
        let span = self.span();
        let _entered = span.enter();
        self.stop(result)
    }

    fn on_input(&mut self, input: Input) -> Result<(), NodeError> {
        match input {
            Input::Completion(completion) => self.on_completion(completion)?,
            Input::Peer(envelope) => self.core.step(envelope),
            Input::Request(request) => self.on_request(request),
            Input::Tick => {
                self.core.tick();
                self.ticks += 1;
                if self.core.role() == d_engine_core::Role::Leader {
                    self.metrics.replication(self.core.status().last_log_id.index, &self.core.replication());
                }
                if self.ticks.is_multiple_of(self.ticks_per_second()) {
                    self.to_storage(StorageCommand::PublishLogSize);
                }
                if self.ticks.is_multiple_of(MISCONFIGURATION_CHECK_TICKS)
                    && let Some(reason) = self.transport.misconfiguration()
                {
                    return Err(NodeError::WrongCluster(reason));
                }
            }
        }
        Ok(())
    }

    /// About one second in ticks (at least one).
    fn ticks_per_second(&self) -> u64 {
        (Duration::from_secs(1).as_nanos() / self.tick.as_nanos().max(1)).max(1) as u64
    }

    /// The `node{id, term}` span for the current term (a new one when the term moved on, so
    /// that human-format lines show one term, not every term recorded so far).
    fn span(&mut self) -> tracing::Span {
        let term = self.core.status().term;
        if self.span_term != Some(term) {
            self.span_term = Some(term);
            self.shared_term.set(term.0);
            self.log_span = node_span(self.core.status().id.0, term.0);
        }
        self.log_span.clone()
    }

    /// Takes inputs that are already queued, without waiting.
    fn take_ready(&mut self) -> Result<(), NodeError> {
        while let Ok(completion) = self.completions.try_recv() {
            self.on_completion(completion)?;
        }
        for _ in 0..BATCH_MAX {
            let Ok(envelope) = self.inbound.try_recv() else { break };
            self.core.step(envelope);
        }
        for _ in 0..BATCH_MAX {
            let Ok(request) = self.requests.try_recv() else { break };
            self.on_request(request);
        }
        Ok(())
    }

    fn on_completion(&mut self, completion: Completion) -> Result<(), NodeError> {
        match completion {
            Completion::Persisted(id) => self.core.persisted(id),
            Completion::EntriesLoaded { peer, term, entries } => self.core.entries_loaded(peer, term, entries),
            Completion::Applied(index) => self.core.applied(index),
            Completion::SnapshotBuilt { last_included, data } => match self.core.snapshot_built(last_included) {
                // Queued before any output that follows, so the storage thread saves it
                // before the write that purges the log it covers.
                Ok(meta) => {
                    self.metrics.snapshot_built(data.len());
                    tracing::info!(last_included = %meta.last_included, bytes = data.len(), "snapshot built");
                    let snapshot = d_engine_core::storage::Snapshot { meta, data };
                    self.to_storage(StorageCommand::SaveBuiltSnapshot(snapshot));
                }
                Err(error) => tracing::debug!(%error, "snapshot not recorded"),
            },
            Completion::SnapshotLoaded { peer, term, snapshot } => self.core.snapshot_loaded(peer, term, snapshot),
            Completion::SnapshotInstalled(meta) => {
                tracing::info!(last_included = %meta.last_included, "snapshot from the leader installed");
                self.core.snapshot_installed(meta)
            }
            Completion::Failed(error) => return Err(error),
        }
        Ok(())
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Propose { command, reply, trace } => match self.core.propose(command) {
                Ok(log_id) => {
                    if let Some(trace) = trace {
                        self.traces.proposed(log_id.index, trace);
                    }
                    self.wait_for_apply(log_id, reply)
                }
                Err(ProposeError::NotLeader { leader }) => {
                    let _ = reply.send(Err(self.not_leader(leader)));
                }
                Err(ProposeError::TransferInProgress { target }) => {
                    let _ = reply.send(Err(self.not_leader(Some(target))));
                }
            },
            Request::Read { policy, reply } => {
                self.next_read += 1;
                let id = ReadId(self.next_read);
                match self.core.read(id, policy) {
                    Ok(()) => {
                        self.reads.insert(id, reply);
                    }
                    Err(ReadError::NotLeader { leader }) => {
                        let _ = reply.send(Err(self.not_leader(leader)));
                    }
                }
            }
            Request::ChangeMembership { change, reply } => match self.core.change_membership(change.clone()) {
                Ok(log_id) => {
                    tracing::info!(?change, at = %log_id, "membership change proposed");
                    self.wait_for_apply(log_id, reply)
                }
                Err(MembershipChangeError::NotLeader { leader }) => {
                    let _ = reply.send(Err(self.not_leader(leader)));
                }
                Err(error) => {
                    let _ = reply.send(Err(RequestError::Refused(error.to_string())));
                }
            },
            Request::TransferLeadership { target, reply } => {
                let result = match self.core.transfer_leadership(target) {
                    Ok(()) => Ok(()),
                    Err(TransferError::NotLeader { leader }) => Err(self.not_leader(leader)),
                    Err(error) => Err(RequestError::InvalidArgument(error.to_string())),
                };
                let _ = reply.send(result);
            }
            Request::TriggerSnapshot => self.core.trigger_snapshot(),
        }
    }

    fn wait_for_apply(&mut self, log_id: d_engine_core::LogId, reply: Reply<crate::messages::Applied>) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A slot reused by a newer proposal: the older one was overwritten before it applied.
        if let Some(old) = waiters.insert(log_id.index, Waiter { log_id, reply }) {
            let _ = old.reply.send(Err(RequestError::Aborted));
        }
    }

    fn not_leader(&self, leader: Option<NodeId>) -> RequestError {
        let address = leader.and_then(|id| self.addresses.get(id)).map(|addresses| addresses.peer_url.clone());
        RequestError::NotLeader { leader, address }
    }

    /// Drains the core's outputs until it is quiet, handing each to its task.
    fn carry_out(&mut self) -> Result<(), NodeError> {
        loop {
            let outputs = self.core.take_outputs();
            if outputs.is_empty() {
                if self.deferred_apply.is_none() {
                    return Ok(());
                }
                self.apply_deferred()?;
                continue;
            }
            for output in outputs {
                match output {
                    Output::Persist(write) => {
                        self.entries.on_persist(&write);
                        // A leader goes on sending while its own write syncs (its followers'
                        // writes are what a commit waits for); a follower's acknowledgement
                        // waits for this very write.
                        if self.core.role() != d_engine_core::Role::Leader && self.storage.is_idle() {
                            self.persist_now(write)?;
                        } else {
                            self.to_storage(StorageCommand::Persist(write));
                        }
                    }
                    Output::Send(envelope) => self.transport.send(envelope),
                    Output::Apply { first, last } => {
                        self.traces.committed(first, last);
                        self.apply_entries(first, last)?
                    }
                    Output::LoadEntries { peer, term, first, last } => {
                        self.to_storage(StorageCommand::LoadEntries { peer, term, first, last })
                    }
                    Output::BuildSnapshot => self.send_to_apply(ApplyCommand::BuildSnapshot)?,
                    Output::LoadSnapshot { peer, term } => self.to_storage(StorageCommand::LoadSnapshot { peer, term }),
                    Output::InstallSnapshot(snapshot) => {
                        self.entries.discard_through(snapshot.meta.last_included.index);
                        self.send_to_apply(ApplyCommand::InstallSnapshot(snapshot))?;
                    }
                    Output::ReadReady { id, index } => {
                        if let Some(reply) = self.reads.remove(&id) {
                            let _ = reply.send(Ok(index));
                        }
                    }
                    Output::ReadFailed { id, error: ReadError::NotLeader { leader } } => {
                        if let Some(reply) = self.reads.remove(&id) {
                            let _ = reply.send(Err(self.not_leader(leader)));
                        }
                    }
                    Output::RoleChanged { role, term, leader } => {
                        self.metrics.role_changed(role);
                        if role != d_engine_core::Role::Leader {
                            self.metrics.replication(self.core.status().last_log_id.index, &[]);
                        }
                        tracing::info!(?role, term = term.0, leader = ?leader.map(|l| l.0), "role changed");
                    }
                }
            }
        }
    }

    /// Writes and syncs `write` on this thread (nothing is queued ahead of it), then takes
    /// the completions already there and its own at once: the messages it held are released
    /// in this same batch.
    fn persist_now(&mut self, write: d_engine_core::PersistRequest) -> Result<(), NodeError> {
        let mut storage = self.shared_storage.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let durable = storage.persist_now(write).map_err(|error| {
            tracing::error!(%error, "storage failed; the node stops");
            NodeError::Storage(error)
        })?;
        drop(storage);
        // The thread's completions, all in the channel, came before this write.
        self.take_completions()?;
        self.on_completion(Completion::Persisted(durable))
    }

    /// Takes every completion already reported.
    fn take_completions(&mut self) -> Result<(), NodeError> {
        while let Ok(completion) = self.completions.try_recv() {
            self.on_completion(completion)?;
        }
        Ok(())
    }

    /// Hands committed entries to the apply thread: from the cache when it holds them all,
    /// else read from the log by the storage thread (same sequence number either way).
    ///
    /// A small batch is applied here when the apply thread has nothing queued or in hand
    /// (see [`crate::apply_task`]): by a leader at once, so the proposals' answers leave in
    /// this batch; by a follower once the core's outputs are drained, so its acknowledgements
    /// leave first (its applies answer nobody; doing them here saves the apply thread's two
    /// wake-ups per batch).
    fn apply_entries(
        &mut self,
        first: d_engine_core::LogIndex,
        last: d_engine_core::LogIndex,
    ) -> Result<(), NodeError> {
        match self.entries.take(first, last) {
            Some(entries) if self.applies_here(entries.len()) => {
                // Carried out here: not counted in the thread's backlog.
                let seq = self.take_apply_seq();
                self.deferred_apply = Some((seq, entries));
                if self.core.role() == d_engine_core::Role::Leader {
                    self.apply_deferred()?;
                }
            }
            Some(entries) => self.send_to_apply(ApplyCommand::Entries(entries))?,
            None => {
                self.entries.discard_through(last);
                let seq = self.next_apply_seq()?;
                self.to_storage(StorageCommand::Apply { first, last, seq });
            }
        }
        Ok(())
    }

    fn applies_here(&self, entries: usize) -> bool {
        self.deferred_apply.is_none() && entries <= INLINE_APPLY_MAX && self.apply_backlog.is_clear()
    }

    /// Applies the batch [`Self::apply_entries`] set aside, if any: a leader's at once, a
    /// follower's when the core's outputs are drained or when a later command takes its
    /// sequence number ([`Self::next_apply_seq`]).
    fn apply_deferred(&mut self) -> Result<(), NodeError> {
        let Some((seq, entries)) = self.deferred_apply.take() else { return Ok(()) };
        let applied = self.inline_apply.apply_now(seq, entries).inspect_err(|error| {
            tracing::error!(%error, "the state machine failed; the node stops");
        })?;
        // The thread's completions, all in the channel, came before this batch.
        self.take_completions()?;
        match applied {
            Some(index) => self.on_completion(Completion::Applied(index)),
            None => Ok(()),
        }
    }

    fn send_to_apply(&mut self, command: ApplyCommand) -> Result<(), NodeError> {
        let seq = self.next_apply_seq()?;
        // The apply thread ends only after the event loop, or on a failure reported as a completion.
        let _ = self.apply.send((seq, command));
        Ok(())
    }

    /// The sequence number of a command for the apply thread (sent to it, or to the storage
    /// thread's apply path), counted in its backlog. A batch set aside to be applied here
    /// holds the sequence number before it: it is applied first, so that the thread, which
    /// carries commands out in sequence, never waits for it.
    fn next_apply_seq(&mut self) -> Result<u64, NodeError> {
        self.apply_deferred()?;
        self.apply_backlog.add();
        Ok(self.take_apply_seq())
    }

    /// The next apply sequence number.
    fn take_apply_seq(&mut self) -> u64 {
        self.apply_seq += 1;
        self.apply_seq - 1
    }

    fn to_storage(&self, command: StorageCommand) {
        self.storage.send(command);
    }

    fn publish_status(&self, stopped: Option<Result<(), String>>) {
        let status = self.core.status();
        let membership = self.core.membership();
        // Runs after every batch of inputs: compare first, clone the membership only on a change.
        self.status.send_if_modified(|current| {
            let changed = current.role != status.role
                || current.term != status.term
                || current.leader != status.leader
                || current.commit != status.commit
                || current.applied != status.applied
                || current.last_log_index != status.last_log_id.index
                || current.membership != *membership
                || (stopped.is_some() && current.stopped != stopped);
            if changed {
                *current = NodeStatus {
                    id: status.id,
                    role: status.role,
                    term: status.term,
                    leader: status.leader,
                    commit: status.commit,
                    applied: status.applied,
                    last_log_index: status.last_log_id.index,
                    membership: membership.clone(),
                    stopped: stopped.clone().or_else(|| current.stopped.clone()),
                };
                self.metrics.publish(current);
            }
            changed
        });
    }

    /// Answers every waiting request, asks the storage thread to sync and close.
    fn stop(mut self, result: Result<(), NodeError>) -> Result<(), NodeError> {
        self.requests.close();
        while let Ok(request) = self.requests.try_recv() {
            refuse(request);
        }
        for (_, reply) in self.reads.drain() {
            let _ = reply.send(Err(RequestError::ShuttingDown));
        }
        let mut waiters = self.waiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (_, waiter) in std::mem::take(&mut *waiters) {
            let reason = "the node stopped before the entry was seen applied";
            let _ = waiter.reply.send(Err(RequestError::OutcomeUnknown(reason.into())));
        }
        drop(waiters);
        self.to_storage(StorageCommand::Stop);
        let stopped = match &result {
            Ok(()) => Ok(()),
            Err(error) => Err(error.to_string()),
        };
        self.publish_status(Some(stopped));
        result
    }
}

fn refuse(request: Request) {
    match request {
        Request::Propose { reply, .. } | Request::ChangeMembership { reply, .. } => {
            let _ = reply.send(Err(RequestError::ShuttingDown));
        }
        Request::Read { reply, .. } => {
            let _ = reply.send(Err(RequestError::ShuttingDown));
        }
        Request::TransferLeadership { reply, .. } => {
            let _ = reply.send(Err(RequestError::ShuttingDown));
        }
        Request::TriggerSnapshot => {}
    }
}
