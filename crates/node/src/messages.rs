//! What the node's tasks say to each other.
//!
//! ```text
//!  Node handle ──Request──▶ event loop (owns the core) ──StorageCommand──▶ storage thread
//!  peers ──Envelope──────▶      ▲  │                                          │ (FIFO)
//!                               │  └──(seq, ApplyCommand)──▶ apply thread ◀───┘ (seq, entries
//!                               │                               │               the cache lacked)
//!                               └──────────Completion───────────┴── and from the storage thread
//! ```
//! Every command that reads or writes the log goes through the storage thread's one FIFO
//! queue: a snapshot is saved before the write that purges the log it covers, and entries
//! are loaded after the write that appended them. Work for the apply thread carries a
//! sequence number from the event loop and is carried out in that order, whether it came
//! straight from the event loop (committed entries from its cache, snapshot build and
//! install) or through the storage thread (entries the cache did not hold).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use d_engine_core::storage::{Snapshot, SnapshotMeta};
use d_engine_core::{Entry, LogId, LogIndex, MembershipChange, NodeId, PersistRequest, ReadPolicy, Term, WriteId};
use tokio::sync::oneshot;

use crate::error::{NodeError, RequestError};

/// A command applied by the state machine: where it sits and what it returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The entry's id.
    pub log_id: LogId,
    /// The state machine's output for it (empty for a membership change).
    pub output: Bytes,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, RequestError>>;

/// A request from the node handle to the event loop.
pub(crate) enum Request {
    /// `trace`: set when the request is traced (see `entry_traces`).
    Propose {
        command: Bytes,
        reply: Reply<Applied>,
        trace: Option<EntryTrace>,
    },
    Read {
        policy: ReadPolicy,
        reply: Reply<LogIndex>,
    },
    ChangeMembership {
        change: MembershipChange,
        reply: Reply<Applied>,
    },
    TransferLeadership {
        target: NodeId,
        reply: Reply<()>,
    },
    TriggerSnapshot,
}

/// A traced proposal: its `propose` span and that span's W3C `traceparent`.
pub(crate) struct EntryTrace {
    pub(crate) span: tracing::Span,
    pub(crate) traceparent: String,
}

/// A completion reported back to the event loop.
pub(crate) enum Completion {
    Persisted(WriteId),
    EntriesLoaded {
        peer: NodeId,
        term: Term,
        entries: Vec<Entry>,
    },
    Applied(LogIndex),
    SnapshotBuilt {
        last_included: LogId,
        data: Bytes,
    },
    SnapshotLoaded {
        peer: NodeId,
        term: Term,
        snapshot: Snapshot,
    },
    SnapshotInstalled(SnapshotMeta),
    /// Storage or the state machine failed: the node stops.
    Failed(NodeError),
}

/// Work for the storage thread, carried out in order.
pub(crate) enum StorageCommand {
    Persist(PersistRequest),
    /// Read committed entries and hand them to the apply thread as its command `seq`.
    Apply {
        first: LogIndex,
        last: LogIndex,
        seq: u64,
    },
    LoadEntries {
        peer: NodeId,
        term: Term,
        first: LogIndex,
        last: LogIndex,
    },
    /// Save a snapshot the state machine built.
    SaveBuiltSnapshot(Snapshot),
    /// Save a snapshot the apply thread installed, then report it installed.
    SaveInstalledSnapshot(Snapshot),
    LoadSnapshot {
        peer: NodeId,
        term: Term,
    },
    /// Refresh the log size metrics.
    PublishLogSize,
    /// Finish what is queued, sync, close.
    Stop,
}

/// Work for the apply thread, carried out in `seq` order (see the module docs).
pub(crate) type SequencedApply = (u64, ApplyCommand);

/// Work for the apply thread.
pub(crate) enum ApplyCommand {
    Entries(Vec<Entry>),
    BuildSnapshot,
    InstallSnapshot(Snapshot),
}

/// A proposal waiting for its entry to be applied.
pub(crate) struct Waiter {
    pub(crate) log_id: LogId,
    pub(crate) reply: Reply<Applied>,
}

/// Proposals by log index: the event loop registers, the apply thread answers.
pub(crate) type Waiters = Arc<Mutex<BTreeMap<LogIndex, Waiter>>>;
