//! Node metrics: Prometheus names (`d_engine_` prefix, `_total`, `_seconds`, `_bytes`), each
//! labelled with the node's `node_id`, and the `/metrics` endpoint that serves them.
//!
//! Metrics go through the `metrics` facade. The first node of a process whose settings set
//! `metrics.listen_addr` installs a Prometheus recorder as the process's global recorder;
//! a recorder is global, so every later node of the process shares it, and each node with
//! a `listen_addr` serves the same registry on its own address (the `node_id` label tells
//! the nodes apart). Nodes started before the recorder was installed record nothing. If
//! the application installed another recorder first, start fails with
//! [`NodeError::Metrics`](crate::NodeError::Metrics).
//!
//! Each task resolves its handles once at start ([`NodeMetrics`]), so recording costs an
//! atomic update, not a registry lookup; without a recorder the handles are no-ops.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use d_engine_core::{LogIndex, NodeId, PeerReplication, Role};
use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::error::NodeError;
use crate::status::NodeStatus;

/// Histogram buckets for latencies, 100 µs to 10 s.
const SECONDS_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Histogram buckets for the writes one storage sync covers.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];
/// How often histogram samples are folded into buckets when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// A scrape request larger than this is not a scrape.
const REQUEST_MAX_BYTES: usize = 8192;
/// A scraper that sends nothing for this long is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The process's recorder, or why it could not be installed (decided once per process).
static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// The process's Prometheus registry: installed on first use, shared afterwards.
fn recorder() -> Result<PrometheusHandle, NodeError> {
    let installed = RECORDER.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(Matcher::Full("d_engine_storage_batch_writes".into()), BATCH_BUCKETS)
            })
            .expect("the bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        match metrics::set_global_recorder(recorder) {
            Ok(()) => Ok(handle),
            Err(_) => Err("another metrics recorder is already installed in this process".to_owned()),
        }
    });
    installed.clone().map_err(NodeError::Metrics)
}

/// Binds the `/metrics` endpoint and makes sure the recorder is installed; called by
/// `NodeBuilder::start` before any task resolves its handles.
pub(crate) fn bind(address: SocketAddr) -> Result<(std::net::TcpListener, PrometheusHandle), NodeError> {
    let handle = recorder()?;
    let listener = std::net::TcpListener::bind(address).map_err(|source| NodeError::Bind { address, source })?;
    listener.set_nonblocking(true).map_err(|source| NodeError::Bind { address, source })?;
    Ok((listener, handle))
}

/// Serves the registry in the Prometheus text format to every HTTP GET on `listener`, until
/// `shutdown` changes. Each scrape is answered on its own task, so a slow scraper delays
/// nobody, and shutdown does not wait for scrapers.
pub(crate) async fn serve(listener: TcpListener, handle: PrometheusHandle, mut shutdown: watch::Receiver<()>) {
    let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = upkeep.tick() => handle.run_upkeep(),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let handle = handle.clone();
                    tokio::spawn(async move {
                        if let Err(error) = answer_scrape(stream, &handle).await {
                            tracing::debug!(%error, "a metrics scrape failed");
                        }
                    });
                }
                Err(error) => tracing::debug!(%error, "accepting a metrics scrape failed"),
            },
        }
    }
}

/// Reads one HTTP request head and answers it: the metrics for `GET`, 405 otherwise.
async fn answer_scrape(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < REQUEST_MAX_BYTES {
        let read = tokio::time::timeout(REQUEST_TIMEOUT, stream.read(&mut buffer))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
        if read == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..read]);
    }
    let (status, content_type, body) = if request.starts_with(b"GET ") {
        ("200 OK", "text/plain; version=0.0.4", handle.render())
    } else {
        ("405 Method Not Allowed", "text/plain", "only GET is served\n".to_owned())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The handles of one node's metrics. Cheap to clone; every task holds the ones it records.
#[derive(Clone)]
pub(crate) struct NodeMetrics {
    term: Gauge,
    is_leader: Gauge,
    leader_id: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    last_log_index: Gauge,
    log_entries: Gauge,
    log_bytes: Gauge,
    elections_started: Counter,
    elections_won: Counter,
    role_changes: Counter,
    pub(crate) proposals: Proposals,
    pub(crate) commit_latency: Histogram,
    pub(crate) read_index_latency: Histogram,
    pub(crate) storage_sync: Histogram,
    pub(crate) storage_batch_writes: Histogram,
    snapshots_built: Counter,
    snapshots_built_bytes: Counter,
    snapshots_installed: Counter,
    snapshots_installed_bytes: Counter,
    snapshots_sent: Counter,
    snapshots_sent_bytes: Counter,
    /// Per-peer replication gauges (leader only), by peer id, made at a peer's first sight.
    peers: Arc<Mutex<BTreeMap<NodeId, PeerGauges>>>,
    node: String,
}

/// What the leader publishes of one peer.
struct PeerGauges {
    lag: Gauge,
    inflight_messages: Gauge,
    inflight_bytes: Gauge,
}

/// `d_engine_proposals_total`, one counter per outcome.
#[derive(Clone)]
pub(crate) struct Proposals {
    pub(crate) applied: Counter,
    pub(crate) not_leader: Counter,
    pub(crate) aborted: Counter,
    pub(crate) outcome_unknown: Counter,
    pub(crate) shutting_down: Counter,
    pub(crate) invalid: Counter,
}

impl NodeMetrics {
    /// Resolves every handle of node `node_id` against the current recorder.
    pub(crate) fn new(node_id: u64) -> NodeMetrics {
        let node = node_id.to_string();
        let proposals = |outcome: &'static str| metrics::counter!("d_engine_proposals_total", "node_id" => node.clone(), "outcome" => outcome);
        NodeMetrics {
            term: metrics::gauge!("d_engine_term", "node_id" => node.clone()),
            is_leader: metrics::gauge!("d_engine_is_leader", "node_id" => node.clone()),
            leader_id: metrics::gauge!("d_engine_leader_id", "node_id" => node.clone()),
            commit_index: metrics::gauge!("d_engine_commit_index", "node_id" => node.clone()),
            applied_index: metrics::gauge!("d_engine_applied_index", "node_id" => node.clone()),
            last_log_index: metrics::gauge!("d_engine_last_log_index", "node_id" => node.clone()),
            log_entries: metrics::gauge!("d_engine_log_entries", "node_id" => node.clone()),
            log_bytes: metrics::gauge!("d_engine_log_bytes", "node_id" => node.clone()),
            elections_started: metrics::counter!("d_engine_elections_started_total", "node_id" => node.clone()),
            elections_won: metrics::counter!("d_engine_elections_won_total", "node_id" => node.clone()),
            role_changes: metrics::counter!("d_engine_role_changes_total", "node_id" => node.clone()),
            proposals: Proposals {
                applied: proposals("applied"),
                not_leader: proposals("not_leader"),
                aborted: proposals("aborted"),
                outcome_unknown: proposals("outcome_unknown"),
                shutting_down: proposals("shutting_down"),
                invalid: proposals("invalid"),
            },
            commit_latency: metrics::histogram!("d_engine_commit_latency_seconds", "node_id" => node.clone()),
            read_index_latency: metrics::histogram!("d_engine_read_index_latency_seconds", "node_id" => node.clone()),
            storage_sync: metrics::histogram!("d_engine_storage_sync_seconds", "node_id" => node.clone()),
            storage_batch_writes: metrics::histogram!("d_engine_storage_batch_writes", "node_id" => node.clone()),
            snapshots_built: metrics::counter!("d_engine_snapshots_built_total", "node_id" => node.clone()),
            snapshots_built_bytes: metrics::counter!("d_engine_snapshots_built_bytes_total", "node_id" => node.clone()),
            snapshots_installed: metrics::counter!("d_engine_snapshots_installed_total", "node_id" => node.clone()),
            snapshots_installed_bytes: metrics::counter!("d_engine_snapshots_installed_bytes_total", "node_id" => node.clone()),
            snapshots_sent: metrics::counter!("d_engine_snapshots_sent_total", "node_id" => node.clone()),
            snapshots_sent_bytes: metrics::counter!("d_engine_snapshots_sent_bytes_total", "node_id" => node.clone()),
            peers: Arc::default(),
            node,
        }
    }

    /// Sets the gauges from the status the event loop publishes.
    pub(crate) fn publish(&self, status: &NodeStatus) {
        self.term.set(status.term.0 as f64);
        self.is_leader.set(if status.is_leader() { 1.0 } else { 0.0 });
        self.leader_id.set(status.leader.map_or(0.0, |id| id.0 as f64));
        self.commit_index.set(status.commit.0 as f64);
        self.applied_index.set(status.applied.0 as f64);
        self.last_log_index.set(status.last_log_index.0 as f64);
    }

    /// Counts a role change, and an election started (candidate) or won (leader).
    pub(crate) fn role_changed(&self, role: Role) {
        self.role_changes.increment(1);
        match role {
            Role::Candidate => self.elections_started.increment(1),
            Role::Leader => self.elections_won.increment(1),
            Role::Follower | Role::PreCandidate => {}
        }
    }

    /// Sets the log size gauges: entries held, and bytes when the store can tell.
    pub(crate) fn log_size(&self, entries: u64, bytes: Option<u64>) {
        self.log_entries.set(entries as f64);
        if let Some(bytes) = bytes {
            self.log_bytes.set(bytes as f64);
        }
    }

    /// Sets each peer's replication gauges from the leader's view, its log ending at
    /// `last_index`. Peers missing from `view` (all of them once this node is no longer
    /// leader) read 0.
    pub(crate) fn replication(&self, last_index: LogIndex, view: &[PeerReplication]) {
        let mut peers = self.peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for gauges in peers.values() {
            gauges.lag.set(0.0);
            gauges.inflight_messages.set(0.0);
            gauges.inflight_bytes.set(0.0);
        }
        for peer in view {
            let gauges = peers.entry(peer.peer).or_insert_with(|| {
                let labels = [("node_id", self.node.clone()), ("peer", peer.peer.0.to_string())];
                PeerGauges {
                    lag: metrics::gauge!("d_engine_replication_lag_entries", &labels),
                    inflight_messages: metrics::gauge!("d_engine_replication_inflight_messages", &labels),
                    inflight_bytes: metrics::gauge!("d_engine_replication_inflight_bytes", &labels),
                }
            });
            gauges.lag.set(last_index.0.saturating_sub(peer.matched.0) as f64);
            gauges.inflight_messages.set(peer.inflight_messages as f64);
            gauges.inflight_bytes.set(peer.inflight_bytes as f64);
        }
    }

    /// Counts a snapshot of `bytes` loaded to be sent to a peer.
    pub(crate) fn snapshot_sent(&self, bytes: usize) {
        self.snapshots_sent.increment(1);
        self.snapshots_sent_bytes.increment(bytes as u64);
    }

    /// Counts a snapshot of `bytes` built from the local state machine.
    pub(crate) fn snapshot_built(&self, bytes: usize) {
        self.snapshots_built.increment(1);
        self.snapshots_built_bytes.increment(bytes as u64);
    }

    /// Counts a snapshot of `bytes` from the leader installed into the state machine.
    pub(crate) fn snapshot_installed(&self, bytes: usize) {
        self.snapshots_installed.increment(1);
        self.snapshots_installed_bytes.increment(bytes as u64);
    }
}
