//! [`NodeBuilder`]: assembles a node from settings, a state machine and (optionally) a log
//! store and a transport, then starts its tasks.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use d_engine_core::storage::{RecoveredLog, StateStore, StorageError};
use d_engine_core::{LogIndex, NodeId, Raft};
use d_engine_grpc::{NetworkFaults, SharedEntryTracer};
use d_engine_memory::{MemLogStore, MemStateStore};
use d_engine_redb::{RedbLogStore, RedbStateStore};
use d_engine_sled::{SledLogStore, SledStateStore};
use d_engine_wal::WalLogStore;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::application::Application;
use crate::apply_task::ApplyTask;
use crate::backlog::Backlog;
use crate::entry_cache::EntryCache;
use crate::entry_traces::EntryTraces;
use crate::error::NodeError;
use crate::event_loop::EventLoop;
use crate::handle::{Inner, Node, Tasks};
use crate::metrics::{self, NodeMetrics};
use crate::server;
use crate::settings::{LogStoreKind, Settings, StorageKind};
use crate::snapshot_file::SnapshotStore;
use crate::status::NodeStatus;
use crate::storage_task::{BoxedLogStore, StorageQueue, StorageTask};
use crate::term_span::SharedTerm;
use crate::transport::{AddressBook, GrpcTransport, Transport};

/// A state store the caller can own and hand to a state machine.
pub type BoxedStateStore = Box<dyn StateStore + Send + Sync>;

/// Builds and starts a node.
///
/// Defaults: the log in the adapter `settings.node.storage` names (redb unless set) under
/// `data_dir/log`, the snapshot in `data_dir/snapshot`, gRPC to peers. The state machine
/// is always the caller's; [`open_state_store`] opens a matching state store for it.
pub struct NodeBuilder<S> {
    settings: Settings,
    state_machine: S,
    log_store: Option<BoxedLogStore>,
    transport: Option<Box<dyn Transport>>,
    shutdown: Option<watch::Receiver<()>>,
    listener: Option<std::net::TcpListener>,
}

impl<S: Application> NodeBuilder<S> {
    /// A builder for the node `settings` describe, running `state_machine`.
    pub fn new(settings: Settings, state_machine: S) -> NodeBuilder<S> {
        NodeBuilder { settings, state_machine, log_store: None, transport: None, shutdown: None, listener: None }
    }

    /// Uses this log store instead of the one the settings name.
    pub fn log_store(mut self, store: BoxedLogStore) -> Self {
        self.log_store = Some(store);
        self
    }

    /// Uses this transport to reach peers instead of gRPC (the gRPC server still runs, for
    /// clients and peers that use it).
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Box::new(transport));
        self
    }

    /// Shuts the node down gracefully when `signal` changes or its sender is dropped: stop
    /// accepting, answer what is in flight, sync, close.
    pub fn shutdown_signal(mut self, signal: watch::Receiver<()>) -> Self {
        self.shutdown = Some(signal);
        self
    }

    /// Serves on this already bound listener instead of binding `peer_addr` (tests bind
    /// port 0 first to learn a free port).
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Opens storage, recovers, binds the listen address and starts the node's tasks.
    /// Must be called inside a tokio runtime.
    pub async fn start(self) -> Result<Node<S>, NodeError> {
        let NodeBuilder { settings, mut state_machine, log_store, transport, shutdown, listener } = self;
        settings.validate()?;
        let id = NodeId(settings.node.id);
        let log = match log_store {
            Some(store) => store,
            None => open_log_store(&settings)?,
        };
        let snapshots = match settings.node.storage {
            StorageKind::Memory => SnapshotStore::in_memory(),
            _ => SnapshotStore::open(&settings.node.data_dir.join("snapshot"))?,
        };
        let mut recovered = RecoveredLog::read(&*log)?;
        if let Some(snapshot) = snapshots.latest() {
            if snapshot.meta.last_included.index > state_machine.last_applied().index {
                state_machine.install_snapshot(snapshot)?;
            }
            recovered.snapshot = Some(snapshot.meta.clone());
        }
        let applied = state_machine.last_applied().index;
        let log_end =
            recovered.last_log_id.index.max(recovered.snapshot.as_ref().map_or(LogIndex(0), |s| s.last_included.index));
        if applied > log_end {
            return Err(NodeError::Inconsistent(format!(
                "the state machine applied up to index {applied}, but the log and snapshot end at {log_end}: \
                 the state and the log come from different data directories or runs"
            )));
        }
        let core =
            Raft::new(id, settings.core_config(), settings.bootstrap_membership(), &recovered, applied, seed(id))?;
        // The log's tail above the applied index, so that applying never waits for the log.
        let tail = log.entries(applied.next()..=recovered.last_log_id.index).unwrap_or_default();
        let entries = EntryCache::with(tail);

        let listener = match listener {
            Some(listener) => listener,
            None => bind(&settings)?,
        };
        let listen_addr =
            listener.local_addr().map_err(|source| NodeError::Bind { address: settings.listen_addr(), source })?;
        listener.set_nonblocking(true).map_err(|source| NodeError::Bind { address: listen_addr, source })?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|source| NodeError::Bind { address: listen_addr, source })?;
        // Before any handle is resolved, so that this node's metrics reach the recorder.
        let metrics_endpoint = match settings.metrics_addr() {
            Some(address) => {
                let (listener, handle) = metrics::bind(address)?;
                let listener = tokio::net::TcpListener::from_std(listener)
                    .map_err(|source| NodeError::Bind { address, source })?;
                Some((listener, handle))
            }
            None => None,
        };
        let node_metrics = NodeMetrics::new(id.0);

        let addresses = Arc::new(AddressBook::from_settings(&settings));
        let faults = NetworkFaults::new();
        let traces = Arc::new(EntryTraces::new(id));
        let tracer = SharedEntryTracer(traces.clone());
        let transport = transport.unwrap_or_else(|| {
            let grpc = GrpcTransport::new(&settings, Arc::clone(&addresses), faults.clone());
            Box::new(grpc.with_entry_tracer(tracer.clone()))
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(());
        if let Some(mut external) = shutdown {
            let trigger = shutdown_tx.clone();
            tokio::spawn(async move {
                let _ = external.changed().await;
                trigger.send_replace(());
            });
        }

        let (storage_queue, storage_rx) = StorageQueue::new();
        let (apply_tx, apply_rx) = mpsc::unbounded_channel();
        let (completions_tx, completions_rx) = mpsc::unbounded_channel();
        let (requests_tx, requests_rx) = mpsc::channel(settings.transport.request_queue);
        let (inbound_tx, inbound_rx) = mpsc::channel(4096);
        let (applied_tx, applied_rx) = watch::channel(applied);
        let waiters = Arc::new(Mutex::new(Default::default()));
        let state_machine = Arc::new(RwLock::new(state_machine));
        let initial_status = NodeStatus {
            id,
            role: core.role(),
            term: core.status().term,
            leader: None,
            commit: core.status().commit,
            applied,
            last_log_index: core.status().last_log_id.index,
            membership: core.membership().clone(),
            stopped: None,
        };
        let (status_tx, status_rx) = watch::channel(initial_status.clone());

        let spawn_error = |error: std::io::Error| NodeError::Task(format!("cannot start a thread: {error}"));
        // The event loop and the threads log inside `node{id, term}` (a span per term); the
        // server inside `node{id}`.
        let term = SharedTerm::default();
        term.set(initial_status.term.0);
        let span = tracing::info_span!("node", id = id.0);
        let (storage_thread, shared_storage) = StorageTask {
            log,
            snapshots: Some(snapshots),
            saving: None,
            completions: completions_tx.clone(),
            apply: apply_tx.clone(),
            metrics: node_metrics.clone(),
            traces: traces.clone(),
        }
        .spawn(storage_rx, &storage_queue, id.0, term.clone())
        .map_err(spawn_error)?;
        let apply_backlog = Backlog::default();
        let (apply_thread, apply_state) = ApplyTask {
            state_machine: Arc::clone(&state_machine),
            completions: completions_tx,
            storage: storage_queue.clone(),
            waiters: Arc::clone(&waiters),
            applied: applied_tx,
            metrics: node_metrics.clone(),
            traces: traces.clone(),
            building: None,
            next_seq: 0,
        }
        .spawn(apply_rx, apply_backlog.clone(), id.0, term.clone())
        .map_err(spawn_error)?;
        let event_loop = EventLoop {
            core,
            transport,
            requests: requests_rx,
            inbound: inbound_rx,
            completions: completions_rx,
            storage: storage_queue,
            shared_storage,
            apply: apply_tx,
            apply_seq: 0,
            apply_backlog,
            deferred_apply: None,
            inline_apply: apply_state,
            entries,
            waiters,
            reads: HashMap::new(),
            next_read: 0,
            status: status_tx,
            shutdown: shutdown_rx.clone(),
            tick: settings.tick(),
            ticks: 0,
            addresses: Arc::clone(&addresses),
            metrics: node_metrics.clone(),
            log_span: tracing::Span::none(),
            span_term: None,
            shared_term: term,
            traces,
        };
        let event_loop = tokio::spawn(event_loop.run());

        let node = Node {
            inner: Arc::new(Inner {
                id,
                cluster_id: settings.cluster.id.clone(),
                listen_addr,
                requests: requests_tx,
                inbound: inbound_tx.clone(),
                state_machine,
                applied: applied_rx,
                status: status_rx,
                addresses,
                max_command_bytes: settings.transport.max_command_bytes,
                faults: faults.clone(),
                metrics: node_metrics,
                shutdown: shutdown_tx,
                tasks: Mutex::new(None),
            }),
        };
        let metrics_server = metrics_endpoint
            .map(|(listener, handle)| tokio::spawn(metrics::serve(listener, handle, shutdown_rx.clone())));
        let server = tokio::spawn(
            server::serve(node.clone(), settings.clone(), listener, inbound_tx, faults, tracer, shutdown_rx)
                .instrument(span),
        );
        *node.inner.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some(Tasks { event_loop, server, metrics_server, threads: vec![storage_thread, apply_thread] });
        tracing::info!(node = id.0, cluster = %settings.cluster.id, address = %listen_addr, "node started");
        Ok(node)
    }
}

/// Opens the log store `settings.node.storage` and `settings.node.log_store` name, under
/// `data_dir/log`.
pub fn open_log_store(settings: &Settings) -> Result<BoxedLogStore, StorageError> {
    let dir = settings.node.data_dir.join("log");
    Ok(match (settings.node.storage, settings.node.log_store) {
        (StorageKind::Memory, _) => Box::new(MemLogStore::new()),
        (_, LogStoreKind::Wal) => Box::new(WalLogStore::open(&dir)?),
        (StorageKind::Redb, LogStoreKind::Adapter) => Box::new(RedbLogStore::open(&dir)?),
        (StorageKind::Sled, LogStoreKind::Adapter) => Box::new(SledLogStore::open(&dir)?),
    })
}

/// Opens a state store of the adapter `settings.node.storage` names, under `data_dir/state`,
/// for the application's state machine.
pub fn open_state_store(settings: &Settings) -> Result<BoxedStateStore, StorageError> {
    open_state_store_at(settings.node.storage, &settings.node.data_dir.join("state"))
}

fn open_state_store_at(kind: StorageKind, dir: &Path) -> Result<BoxedStateStore, StorageError> {
    Ok(match kind {
        StorageKind::Redb => Box::new(RedbStateStore::open(dir)?),
        StorageKind::Sled => Box::new(SledStateStore::open(dir)?),
        StorageKind::Memory => Box::new(MemStateStore::default()),
    })
}

fn bind(settings: &Settings) -> Result<std::net::TcpListener, NodeError> {
    let address = settings.listen_addr();
    std::net::TcpListener::bind(address).map_err(|source| NodeError::Bind { address, source })
}

/// The core's election randomness: distinct per node and per start.
fn seed(id: NodeId) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}
