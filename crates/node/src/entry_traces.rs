//! Per-entry trace spans: how one traced write shows up on every node it touches.
//!
//! ```text
//!  client span ─▶ d_engine.grpc (leader, from the request's `traceparent`)
//!                   └─ d_engine.propose ─┬─ d_engine.storage_sync   (the leader's fsync)
//!                                        ├─ d_engine.replicate      (each follower: receipt → durable)
//!                                        │    └─ d_engine.storage_sync (the follower's fsync)
//!                                        ├─ d_engine.commit         (accepted → committed)
//!                                        └─ d_engine.apply          (the state machine)
//! ```
//! The leader registers an entry when a traced proposal is accepted (its `propose` span);
//! a follower registers an entry when an append carried its `traceparent` (a `replicate`
//! span, child of the leader's `propose`). The storage thread opens a `storage_sync` span
//! under each registered entry it writes and closes it after the sync; the apply thread does
//! the same with `apply`. An entry leaves the registry once applied (a follower's
//! `replicate` span ends when the entry is durable; the entry stays, marked durable, so that
//! a retransmitted append does not trace it twice; one applied before it was durable here
//! stays until it is), or when the registry is full (oldest
//! first).
//!
//! Only traced requests pay: [`EntryTraces::is_empty`] is one atomic load, and untraced
//! proposals never enter the registry.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use d_engine_core::{Entry, LogIndex, NodeId};
use d_engine_grpc::EntryTracer;
use d_engine_grpc::trace_context::{self, TRACE_TARGET};

use crate::messages::EntryTrace;

/// The most entries traced at once; older ones are dropped (their spans close early).
const MAX_TRACED: usize = 4096;

/// The registry of traced entries of one node (see the module docs).
pub(crate) struct EntryTraces {
    node: NodeId,
    held: AtomicUsize,
    entries: Mutex<BTreeMap<LogIndex, Traced>>,
}

struct Traced {
    /// What this node's spans of the entry hang under: `propose` on the leader, `replicate`
    /// on a follower.
    span: tracing::Span,
    /// The W3C context of `span`, sent with the entry to followers (leader only).
    traceparent: Option<String>,
    /// Open from acceptance to commit, on the leader.
    commit: Option<tracing::Span>,
    /// Registered by a follower from an append (the leader's `traceparent` it carried), and
    /// whether the entry is durable here: then `span` has ended, and a retransmission of the
    /// same entry is not traced again.
    replicated: Option<(String, bool)>,
}

impl EntryTraces {
    pub(crate) fn new(node: NodeId) -> EntryTraces {
        EntryTraces { node, held: AtomicUsize::new(0), entries: Mutex::new(BTreeMap::new()) }
    }

    /// Whether no entry is traced now (the cheap check before any other call).
    pub(crate) fn is_empty(&self) -> bool {
        self.held.load(Ordering::Relaxed) == 0
    }

    /// The leader accepted a traced proposal at `index`.
    pub(crate) fn proposed(&self, index: LogIndex, trace: EntryTrace) {
        let EntryTrace { span, traceparent } = trace;
        let commit = tracing::info_span!(target: TRACE_TARGET, parent: &span, "d_engine.commit", node_id = self.node.0, index = index.0);
        self.insert(index, Traced { span, traceparent: Some(traceparent), commit: Some(commit), replicated: None });
    }

    /// Entries up to `last` are committed: their `commit` spans end.
    pub(crate) fn committed(&self, first: LogIndex, last: LogIndex) {
        if self.is_empty() {
            return;
        }
        for traced in self.lock().range_mut(first..=last).map(|(_, traced)| traced) {
            traced.commit = None;
        }
    }

    /// A `name` span under each traced entry among `entries`; they end when dropped.
    pub(crate) fn spans_for(&self, name: Stage, entries: &[Entry]) -> Vec<tracing::Span> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return Vec::new() };
        if self.is_empty() {
            return Vec::new();
        }
        let node = self.node.0;
        self.lock()
            .range(first.log_id.index..=last.log_id.index)
            .filter(|(_, traced)| !matches!(traced.replicated, Some((_, true))))
            .map(|(index, traced)| {
                let parent = &traced.span;
                match name {
                    Stage::StorageSync => tracing::info_span!(target: TRACE_TARGET, parent: parent, "d_engine.storage_sync", node_id = node, index = index.0, entries = entries.len()),
                    Stage::Apply => tracing::info_span!(target: TRACE_TARGET, parent: parent, "d_engine.apply", node_id = node, index = index.0),
                }
            })
            .collect()
    }

    /// Entries `first..=last` are durable here: a follower's `replicate` spans of them end.
    /// The entries stay registered, as durable, until applied, so that a retransmitted
    /// append does not trace them again.
    pub(crate) fn synced(&self, first: LogIndex, last: LogIndex) {
        if self.is_empty() {
            return;
        }
        for traced in self.lock().range_mut(first..=last).map(|(_, traced)| traced) {
            if let Some((_, durable)) = &mut traced.replicated
                && !*durable
            {
                *durable = true;
                traced.span = tracing::Span::none();
            }
        }
    }

    /// Entries up to `last` are applied: nothing more is traced for them — except a
    /// follower's entries not yet durable here (a follower applies what the leader committed,
    /// possibly before its own write of it is synced): their `storage_sync` span is still to
    /// come. They leave at the first `applied` after [`Self::synced`].
    pub(crate) fn applied(&self, last: LogIndex) {
        if self.is_empty() {
            return;
        }
        let mut held = self.lock();
        let later = held.split_off(&last.next());
        let done = std::mem::replace(&mut *held, later);
        held.extend(done.into_iter().filter(|(_, traced)| matches!(traced.replicated, Some((_, false)))));
        self.held.store(held.len(), Ordering::Relaxed);
    }

    fn insert(&self, index: LogIndex, traced: Traced) {
        let mut held = self.lock();
        held.insert(index, traced);
        while held.len() > MAX_TRACED {
            held.pop_first();
        }
        self.held.store(held.len(), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<LogIndex, Traced>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The per-entry stages the storage and apply threads trace.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stage {
    StorageSync,
    Apply,
}

impl EntryTracer for EntryTraces {
    fn outgoing(&self, _peer: NodeId, entries: &[Entry]) -> Vec<(LogIndex, String)> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return Vec::new() };
        if self.is_empty() {
            return Vec::new();
        }
        self.lock()
            .range(first.log_id.index..=last.log_id.index)
            .filter_map(|(index, traced)| traced.traceparent.clone().map(|traceparent| (*index, traceparent)))
            .collect()
    }

    fn incoming(&self, from: NodeId, traces: Vec<(LogIndex, String)>) {
        for (index, traceparent) in traces {
            // A retransmission of an entry already traced here: its spans exist.
            let seen = self
                .lock()
                .get(&index)
                .is_some_and(|traced| traced.replicated.as_ref().is_some_and(|(leaders, _)| *leaders == traceparent));
            if seen {
                continue;
            }
            let span = tracing::info_span!(target: TRACE_TARGET, parent: None, "d_engine.replicate", node_id = self.node.0, leader = from.0, index = index.0);
            if span.is_disabled() {
                continue;
            }
            trace_context::set_remote_parent(&span, &traceparent);
            let replicated = Some((traceparent, false));
            self.insert(index, Traced { span, traceparent: None, commit: None, replicated });
        }
    }
}

#[cfg(test)]
mod tests {
    use d_engine_core::{EntryPayload, LogId, Term};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn entry(index: u64) -> Entry {
        Entry { log_id: LogId { term: Term(1), index: LogIndex(index) }, payload: EntryPayload::Command("x".into()) }
    }

    /// Any subscriber that records spans, for this thread: the registry makes none without one.
    fn recording_spans() -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(
            tracing_subscriber::registry().with(tracing_subscriber::fmt::layer().with_writer(std::io::sink)),
        )
    }

    const LEADERS: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_follower_traces_a_retransmitted_entry_once_and_stops_tracing_it_once_durable() {
        let _subscriber = recording_spans();
        let traces = EntryTraces::new(NodeId(2));
        traces.incoming(NodeId(1), vec![(LogIndex(5), LEADERS.to_owned())]);
        traces.incoming(NodeId(1), vec![(LogIndex(5), LEADERS.to_owned())]);
        assert_eq!(traces.spans_for(Stage::StorageSync, &[entry(5)]).len(), 1, "one replicate span, not two");

        traces.synced(LogIndex(5), LogIndex(5));
        assert!(traces.spans_for(Stage::StorageSync, &[entry(5)]).is_empty(), "durable: nothing more to trace");
        traces.incoming(NodeId(1), vec![(LogIndex(5), LEADERS.to_owned())]);
        assert!(traces.spans_for(Stage::StorageSync, &[entry(5)]).is_empty(), "a late retransmission is not traced");

        traces.applied(LogIndex(5));
        assert!(traces.is_empty(), "applied entries leave the registry");
    }

    /// A follower may apply an entry the leader committed before its own write of it is
    /// synced (its event loop applies small batches itself while the storage thread is
    /// busy): the entry's `storage_sync` span is still made.
    #[test]
    fn a_follower_applying_an_entry_before_it_is_durable_still_traces_its_sync() {
        let _subscriber = recording_spans();
        let traces = EntryTraces::new(NodeId(2));
        traces.incoming(NodeId(1), vec![(LogIndex(5), LEADERS.to_owned())]);
        traces.applied(LogIndex(5));
        assert_eq!(traces.spans_for(Stage::StorageSync, &[entry(5)]).len(), 1, "applied, not yet durable: traced");

        traces.synced(LogIndex(5), LogIndex(5));
        traces.applied(LogIndex(6));
        assert!(traces.is_empty(), "durable and applied: gone");
    }
}
