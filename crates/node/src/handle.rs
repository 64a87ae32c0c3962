//! The [`Node`] handle: what an application holds to use a running node.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use d_engine_core::{Envelope, LogId, LogIndex, MembershipChange, NodeId, ReadPolicy};
use d_engine_grpc::NetworkFaults;
use d_engine_grpc::trace_context::{self, TRACE_TARGET};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::application::Application;
use crate::error::{NodeError, RequestError};
use crate::messages::{Applied, EntryTrace, Request};
use crate::metrics::NodeMetrics;
use crate::status::NodeStatus;
use crate::transport::AddressBook;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Reflects every write acknowledged before the read began: the leader confirms its
    /// leadership with a quorum round (ReadIndex), then serves once it has applied that far.
    #[default]
    Linearizable,
    /// Like `Linearizable`, but a leader holding a valid lease skips the round; correct as
    /// long as clocks drift less than `raft.lease_clock_drift_ticks` allows. Without a
    /// configured lease it is a ReadIndex read.
    Lease,
    /// This node's state as it is now, possibly stale; any node answers, the event loop is
    /// not involved.
    Serializable,
}

/// A running node. Cheap to clone; every clone drives the same node.
pub struct Node<S> {
    pub(crate) inner: Arc<Inner<S>>,
}

impl<S> Clone for Node<S> {
    fn clone(&self) -> Self {
        Node { inner: Arc::clone(&self.inner) }
    }
}

pub(crate) struct Inner<S> {
    pub(crate) id: NodeId,
    pub(crate) cluster_id: String,
    pub(crate) listen_addr: SocketAddr,
    pub(crate) requests: mpsc::Sender<Request>,
    pub(crate) inbound: mpsc::Sender<Envelope>,
    pub(crate) state_machine: Arc<RwLock<S>>,
    pub(crate) applied: watch::Receiver<LogIndex>,
    pub(crate) status: watch::Receiver<NodeStatus>,
    pub(crate) addresses: Arc<AddressBook>,
    pub(crate) max_command_bytes: usize,
    pub(crate) faults: NetworkFaults,
    pub(crate) metrics: NodeMetrics,
    pub(crate) shutdown: watch::Sender<()>,
    pub(crate) tasks: Mutex<Option<Tasks>>,
}

pub(crate) struct Tasks {
    pub(crate) event_loop: tokio::task::JoinHandle<Result<(), NodeError>>,
    pub(crate) server: tokio::task::JoinHandle<()>,
    pub(crate) metrics_server: Option<tokio::task::JoinHandle<()>>,
    pub(crate) threads: Vec<JoinHandle<()>>,
}

impl<S: Application> Node<S> {
    /// Replicates `command` and returns the state machine's output once it is applied on
    /// this node (the leader). Errors say whether the command may have taken effect.
    pub async fn propose(&self, command: impl Into<Bytes>) -> Result<Applied, RequestError> {
        let started = Instant::now();
        let result = self.propose_unrecorded(command.into()).await;
        let proposals = &self.inner.metrics.proposals;
        let outcome = match &result {
            Ok(_) => {
                self.inner.metrics.commit_latency.record(started.elapsed());
                &proposals.applied
            }
            Err(RequestError::NotLeader { .. }) => &proposals.not_leader,
            Err(RequestError::Aborted) => &proposals.aborted,
            Err(RequestError::OutcomeUnknown(_)) => &proposals.outcome_unknown,
            Err(RequestError::ShuttingDown) => &proposals.shutting_down,
            Err(RequestError::InvalidArgument(_) | RequestError::TooLarge { .. })
            | Err(RequestError::Refused(_) | RequestError::Query(_)) => &proposals.invalid,
        };
        outcome.increment(1);
        result
    }

    async fn propose_unrecorded(&self, command: Bytes) -> Result<Applied, RequestError> {
        if command.is_empty() {
            return Err(RequestError::InvalidArgument("the command is empty".into()));
        }
        if command.len() > self.inner.max_command_bytes {
            return Err(RequestError::TooLarge { bytes: command.len(), max_bytes: self.inner.max_command_bytes });
        }
        // Traced only inside a traced request (see `telemetry`): untraced proposals make no span.
        // One await for both cases (a disabled span when untraced): every request's future
        // holds this one, and two awaits would make it hold both states.
        let (span, trace) = if tracing::Span::current().is_none() {
            (tracing::Span::none(), None)
        } else {
            let span = tracing::info_span!(target: TRACE_TARGET, "d_engine.propose", node_id = self.inner.id.0, bytes = command.len());
            let trace =
                trace_context::traceparent(&span).map(|traceparent| EntryTrace { span: span.clone(), traceparent });
            (span, trace)
        };
        self.ask(|reply| Request::Propose { command, reply, trace }).instrument(span).await
    }

    /// Runs `read` against the state machine at the asked consistency.
    pub async fn read<R>(&self, consistency: ReadConsistency, read: impl FnOnce(&S) -> R) -> Result<R, RequestError> {
        let policy = match consistency {
            ReadConsistency::Linearizable => Some(ReadPolicy::ReadIndex),
            ReadConsistency::Lease => Some(ReadPolicy::Lease),
            ReadConsistency::Serializable => None,
        };
        if let Some(policy) = policy {
            let started = Instant::now();
            let index = self.ask(|reply| Request::Read { policy, reply }).await?;
            self.inner.metrics.read_index_latency.record(started.elapsed());
            let mut applied = self.inner.applied.clone();
            applied.wait_for(|applied| *applied >= index).await.map_err(|_| RequestError::ShuttingDown)?;
        }
        let state_machine = self.inner.state_machine.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(read(&state_machine))
    }

    /// Answers a byte-encoded query ([`Application::query`]) at the asked consistency, with
    /// the applied index it reflects.
    pub async fn query(&self, consistency: ReadConsistency, query: &[u8]) -> Result<(Bytes, LogIndex), RequestError> {
        let (answer, applied) =
            self.read(consistency, |state| (state.query(query), state.last_applied().index)).await?;
        Ok((answer.map_err(RequestError::Query)?, applied))
    }

    /// Proposes a membership change and waits until its entry is applied here. A joint
    /// change (promote, remove a voter, replace) is complete once the core has also left
    /// the joint configuration, which it does on its own; watch [`Node::status`].
    pub async fn change_membership(&self, change: MembershipChange) -> Result<LogId, RequestError> {
        let applied = self.ask(|reply| Request::ChangeMembership { change, reply }).await?;
        Ok(applied.log_id)
    }

    /// Asks the leader to hand leadership to `target`; returns once the transfer started.
    pub async fn transfer_leadership(&self, target: NodeId) -> Result<(), RequestError> {
        self.ask(|reply| Request::TransferLeadership { target, reply }).await
    }

    /// Asks for a snapshot now, whatever the policy says.
    pub async fn trigger_snapshot(&self) -> Result<(), RequestError> {
        self.inner.requests.send(Request::TriggerSnapshot).await.map_err(|_| RequestError::ShuttingDown)
    }

    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, RequestError>>) -> Request,
    ) -> Result<T, RequestError> {
        let (reply, answer) = oneshot::channel();
        self.inner.requests.send(request(reply)).await.map_err(|_| RequestError::ShuttingDown)?;
        answer.await.map_err(|_| RequestError::ShuttingDown)?
    }
}

impl<S> Node<S> {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The cluster's id.
    pub fn cluster_id(&self) -> &str {
        &self.inner.cluster_id
    }

    /// The address the node's gRPC server is bound to.
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen_addr
    }

    /// The node's current view of itself and the cluster.
    pub fn status(&self) -> NodeStatus {
        self.inner.status.borrow().clone()
    }

    /// A watch of [`NodeStatus`]: role, term, leader, indexes and membership.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.inner.status.clone()
    }

    /// Every node's addresses, from the settings.
    pub fn addresses(&self) -> &AddressBook {
        &self.inner.addresses
    }

    /// The state machine, for reads that need no consistency guarantee beyond
    /// [`ReadConsistency::Serializable`] (the apply thread writes it).
    pub fn state_machine(&self) -> &Arc<RwLock<S>> {
        &self.inner.state_machine
    }

    /// Network faults of this node's gRPC transport (cut peers, isolate, heal), for tests
    /// and failure drills.
    pub fn network_faults(&self) -> &NetworkFaults {
        &self.inner.faults
    }

    /// Hands a peer's message to the event loop: for a custom [`crate::Transport`] whose
    /// receiving side is not the node's gRPC server.
    pub async fn deliver(&self, envelope: Envelope) -> Result<(), RequestError> {
        self.inner.inbound.send(envelope).await.map_err(|_| RequestError::ShuttingDown)
    }

    /// Starts a graceful shutdown (the same as the builder's shutdown signal); see [`Node::run`].
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(());
    }

    /// Waits until the node has stopped — after the shutdown signal or a fatal error — and
    /// everything is answered, synced and closed. Returns the fatal error, if any. Only the
    /// first caller waits for the tasks; later callers get the recorded outcome.
    pub async fn run(&self) -> Result<(), NodeError> {
        let tasks = self.inner.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let Some(tasks) = tasks else {
            let mut status = self.inner.status.clone();
            let stopped = status.wait_for(|status| status.stopped.is_some()).await.map(|s| s.stopped.clone());
            return match stopped {
                Ok(Some(Err(reason))) => Err(NodeError::Task(reason)),
                _ => Ok(()),
            };
        };
        let result = tasks.event_loop.await.unwrap_or_else(|error| Err(NodeError::Task(error.to_string())));
        // Whatever stopped the loop, the server stops accepting now.
        self.inner.shutdown.send_replace(());
        let threads = tasks.threads;
        let joined = tokio::task::spawn_blocking(move || threads.into_iter().all(|thread| thread.join().is_ok())).await;
        // Peers keep their append streams open: give in-flight calls a moment, then close.
        let mut server = tasks.server;
        if tokio::time::timeout(std::time::Duration::from_secs(2), &mut server).await.is_err() {
            server.abort();
        }
        // It stops at the shutdown signal without waiting for scrapers.
        if let Some(metrics_server) = tasks.metrics_server {
            let _ = metrics_server.await;
        }
        match (result, joined) {
            (Err(error), _) => Err(error),
            (Ok(()), Ok(true)) => Ok(()),
            _ => Err(NodeError::Task("the storage or apply thread panicked".into())),
        }
    }
}
