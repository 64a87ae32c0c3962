//! [`PeerSender`]: what a node sends to one peer through, without ever waiting on it.
//!
//! A sender owns two queues and the tasks that drain them:
//! - the stream lane: appends, heartbeats and their responses go, in the order they were
//!   queued, on one long-lived `AppendStream`;
//! - the unary lane: votes and their answers, `TimeoutNow`, snapshot chunks and their
//!   answers go through unary `Send` calls, so that they never wait behind a backlog of
//!   appends (and a multi-megabyte chunk never delays a heartbeat). Unary envelopes are
//!   sent up to [`MAX_UNARY_IN_FLIGHT`] at a time, so they may overtake one another; Raft
//!   tolerates reordering, and the core keeps at most one snapshot chunk in flight.
//!
//! Both lanes share one lazily connected tonic channel. Nothing connects before the first
//! envelope is queued. When the append stream cannot be opened, everything queued on that
//! lane is dropped (by the time the peer is back those messages are stale, and Raft
//! retransmits what still matters) and the lane waits out a [`Backoff`] before it tries
//! again, woken by the next envelope. A stream that ends (peer restarted, refusal) is
//! reopened the same way. A unary call that fails or times out drops its envelope.
//!
//! Batching: when the stream lane wakes up it takes everything already queued, up to
//! [`MAX_BATCH`] envelopes, and writes it to the stream without awaiting in between, so a
//! burst leaves back to back and tonic coalesces it into few HTTP/2 frames.
//!
//! [`PeerSender::send`] never blocks and never fails loudly: a full queue, a cut link
//! ([`NetworkFaults`]) or an unreachable peer drop the envelope and count it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use d_engine_core::{Envelope, Message, NodeId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::faults::NetworkFaults;
use crate::proto;
use crate::proto::raft_client::RaftClient;
use crate::transport::{TransportConfig, TransportError, drain, encode};

/// The most envelopes the stream lane writes per wake-up.
pub const MAX_BATCH: usize = 64;
/// The most unary calls in flight to one peer; the unary queue holds more.
pub const MAX_UNARY_IN_FLIGHT: usize = 4;
/// How many envelopes the unary lane queues (the stream lane queues
/// [`TransportConfig::stream_buffer`]).
const UNARY_QUEUE: usize = 64;
/// The longest a TCP connect may take before the peer counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest opening the append stream may take (connect plus the peer's answer).
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest one unary call may take, a snapshot chunk included.
const UNARY_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings notice a peer that vanished without closing its connection.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a sender waits before it tries an unreachable peer again: `initial` after the
/// first failure, doubling after each further one, never more than `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 50 ms, doubling up to 2 s.
    fn default() -> Backoff {
        Backoff { initial: Duration::from_millis(50), max: Duration::from_secs(2) }
    }
}

impl Backoff {
    /// The delay that follows `delay`: twice as long, within `initial..=max`.
    pub fn next(&self, delay: Duration) -> Duration {
        delay.saturating_mul(2).min(self.max).max(self.initial)
    }
}

/// What a sender has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerSenderStats {
    /// Envelopes handed to the connection: written to the append stream (which may still
    /// lose them if the connection breaks right after), or accepted by the peer in a unary call.
    pub sent: u64,
    /// Envelopes dropped: queue full, link cut, peer unreachable, call failed, too large
    /// or misaddressed.
    pub dropped: u64,
    /// How many times the append stream was opened again after an earlier one ended.
    pub reconnects: u64,
    /// Whether the append stream is open now.
    pub connected: bool,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
    connected: AtomicBool,
    /// The peer's last FAILED_PRECONDITION refusal (another cluster), cleared by a success.
    refusal: std::sync::Mutex<Option<String>>,
}

impl Counters {
    fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how a call ended: a FAILED_PRECONDITION refusal is kept (the peer says this
    /// node is misconfigured, e.g. of another cluster), anything else clears it.
    fn call_ended(&self, status: Option<&tonic::Status>) {
        let refusal = status
            .filter(|status| status.code() == tonic::Code::FailedPrecondition)
            .map(|status| status.message().to_owned());
        *self.refusal.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = refusal;
    }
}

/// Why envelopes to a peer were dropped: the `kind` label of `d_engine_grpc_errors_total`.
#[derive(Clone, Copy, Debug)]
enum DropReason {
    /// The lane's queue was full.
    QueueFull,
    /// [`NetworkFaults`] cut the link.
    LinkCut,
    /// Not from this node to this peer.
    Misaddressed,
    /// Larger than the message limit.
    TooLarge,
    /// The append stream could not be opened: queued envelopes were stale.
    Unreachable,
    /// The append stream ended under them.
    StreamEnded,
    /// A unary call ended with an error status.
    CallFailed,
    /// A unary call took longer than its timeout.
    CallTimeout,
}

impl DropReason {
    fn kind(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::LinkCut => "link_cut",
            DropReason::Misaddressed => "misaddressed",
            DropReason::TooLarge => "too_large",
            DropReason::Unreachable => "unreachable",
            DropReason::StreamEnded => "stream_ended",
            DropReason::CallFailed => "call_failed",
            DropReason::CallTimeout => "call_timeout",
        }
    }
}

/// Counts `count` transport errors of `node` with `peer` in `d_engine_grpc_errors_total` (a
/// no-op without a metrics recorder). Errors are rare: the handle is looked up each time.
pub(crate) fn count_errors(node: NodeId, peer: NodeId, kind: &'static str, count: u64) {
    let (node, peer) = (node.0.to_string(), peer.0.to_string());
    metrics::counter!("d_engine_grpc_errors_total", "node_id" => node, "peer" => peer, "kind" => kind).increment(count);
}

/// What both lanes of one sender share.
#[derive(Debug)]
struct Link {
    config: TransportConfig,
    peer: NodeId,
    client: RaftClient<Channel>,
    faults: Option<NetworkFaults>,
    counters: Counters,
}

impl Link {
    fn is_cut(&self) -> bool {
        self.faults.as_ref().is_some_and(|faults| faults.is_cut(self.peer))
    }

    /// Counts `count` envelopes dropped for `why`.
    fn dropped(&self, why: DropReason, count: usize) {
        self.counters.dropped.fetch_add(count as u64, Ordering::Relaxed);
        count_errors(self.config.node_id, self.peer, why.kind(), count as u64);
    }

    /// The envelope encoded for the wire; `None` (counted as dropped) when the link is cut
    /// or the envelope cannot be sent at all.
    fn prepare(&self, envelope: &Envelope) -> Option<proto::Envelope> {
        // Checked again here, not only in `send`: the link may have been cut while the
        // envelope sat in the queue.
        if self.is_cut() {
            self.dropped(DropReason::LinkCut, 1);
            return None;
        }
        match encode(&self.config, self.peer, envelope) {
            Ok(wire) => Some(wire),
            Err(error) => {
                let why = if matches!(error, TransportError::TooLarge { .. }) {
                    DropReason::TooLarge
                } else {
                    DropReason::Misaddressed
                };
                self.dropped(why, 1);
                None
            }
        }
    }
}

/// One node's sending side towards one peer: queues, a reconnecting connection, and the
/// tasks that drain the queues into it (see the module docs). Dropping it stops the tasks.
#[derive(Debug)]
pub struct PeerSender {
    link: Arc<Link>,
    stream_queue: mpsc::Sender<Envelope>,
    unary_queue: mpsc::Sender<Envelope>,
    tasks: [AbortHandle; 2],
}

impl PeerSender {
    /// Spawns (on the current tokio runtime) the tasks that own the connection to `peer` at
    /// `address` (e.g. `http://127.0.0.1:9082`): they connect lazily, keep one channel and
    /// one append stream, and reconnect with `backoff` after a failure.
    ///
    /// Refuses `peer == config.node_id` (a node never connects to itself) and an address
    /// that is not a URI. Panics outside a tokio runtime.
    pub fn spawn(
        config: TransportConfig,
        peer: NodeId,
        address: String,
        backoff: Backoff,
    ) -> Result<PeerSender, TransportError> {
        PeerSender::start(config, peer, address, backoff, None)
    }

    /// [`spawn`](Self::spawn), with envelopes to a peer that `faults` cuts dropped unsent.
    pub fn spawn_with_faults(
        config: TransportConfig,
        peer: NodeId,
        address: String,
        backoff: Backoff,
        faults: NetworkFaults,
    ) -> Result<PeerSender, TransportError> {
        PeerSender::start(config, peer, address, backoff, Some(faults))
    }

    fn start(
        config: TransportConfig,
        peer: NodeId,
        address: String,
        backoff: Backoff,
        faults: Option<NetworkFaults>,
    ) -> Result<PeerSender, TransportError> {
        if peer == config.node_id {
            return Err(TransportError::SelfConnection(peer));
        }
        let endpoint = match Endpoint::from_shared(address.clone()) {
            Ok(endpoint) => endpoint,
            Err(source) => return Err(TransportError::InvalidAddress { address, source }),
        };
        let channel = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .connect_lazy();
        let max = config.max_message_bytes;
        let client = RaftClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max);

        let (stream_queue, stream_rx) = mpsc::channel(config.stream_buffer.max(1));
        let (unary_queue, unary_rx) = mpsc::channel(UNARY_QUEUE);
        let link = Arc::new(Link { config, peer, client, faults, counters: Counters::default() });
        let stream_task = tokio::spawn(run_stream_lane(link.clone(), stream_rx, backoff));
        let unary_task = tokio::spawn(run_unary_lane(link.clone(), unary_rx));
        Ok(PeerSender {
            link,
            stream_queue,
            unary_queue,
            tasks: [stream_task.abort_handle(), unary_task.abort_handle()],
        })
    }

    /// The peer this sender sends to.
    pub fn peer(&self) -> NodeId {
        self.link.peer
    }

    /// Queues `envelope` for the peer without waiting; returns whether it was queued.
    ///
    /// Appends, heartbeats and their responses go on the append stream in order; votes and
    /// their answers, `TimeoutNow` and snapshot chunks and their answers go through unary
    /// calls. An envelope is dropped (and counted in [`PeerSenderStats::dropped`]) when its
    /// queue is full, the link is cut, it is not from this node to this peer, or later when
    /// the peer turns out to be unreachable: Raft retransmits what still matters.
    pub fn send(&self, envelope: Envelope) -> bool {
        let link = &self.link;
        let addressed = envelope.from == link.config.node_id && envelope.to == link.peer;
        let queue = if is_unary(&envelope.message) { &self.unary_queue } else { &self.stream_queue };
        let why = if !addressed {
            DropReason::Misaddressed
        } else if link.is_cut() {
            DropReason::LinkCut
        } else if queue.try_send(envelope).is_err() {
            DropReason::QueueFull
        } else {
            return true;
        };
        link.dropped(why, 1);
        false
    }

    /// The peer's last refusal of this node as misconfigured (FAILED_PRECONDITION, e.g. a
    /// cluster id mismatch), until a later call succeeds. A node refused by most of its peers
    /// is the misconfigured one.
    pub fn refusal(&self) -> Option<String> {
        self.link.counters.refusal.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> PeerSenderStats {
        let counters = &self.link.counters;
        PeerSenderStats {
            sent: counters.sent.load(Ordering::Relaxed),
            dropped: counters.dropped.load(Ordering::Relaxed),
            reconnects: counters.reconnects.load(Ordering::Relaxed),
            connected: counters.connected.load(Ordering::Relaxed),
        }
    }
}

impl Drop for PeerSender {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.link.counters.connected.store(false, Ordering::Relaxed);
    }
}

/// Whether `message` goes through a unary call rather than the append stream.
fn is_unary(message: &Message) -> bool {
    match message {
        Message::VoteRequest { .. }
        | Message::VoteResponse { .. }
        | Message::TimeoutNow { .. }
        | Message::InstallSnapshot { .. }
        | Message::InstallSnapshotResponse { .. } => true,
        Message::AppendRequest { .. }
        | Message::AppendResponse { .. }
        | Message::Heartbeat { .. }
        | Message::HeartbeatResponse { .. } => false,
    }
}

/// The stream lane: opens the append stream when there is something to send, pumps the
/// queue into it while it lasts, and backs off between attempts.
async fn run_stream_lane(link: Arc<Link>, mut queue: mpsc::Receiver<Envelope>, backoff: Backoff) {
    let mut delay = backoff.initial;
    let mut opened_before = false;
    while let Some(first) = queue.recv().await {
        let Some(stream) = AppendStream::open(&link).await else {
            // Unreachable: what is queued would be stale by the time the peer is back.
            let mut stale = 1;
            while queue.try_recv().is_ok() {
                stale += 1;
            }
            link.dropped(DropReason::Unreachable, stale);
            tokio::time::sleep(delay).await;
            delay = backoff.next(delay);
            continue;
        };
        if opened_before {
            link.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        opened_before = true;
        link.counters.connected.store(true, Ordering::Relaxed);
        let opened_at = Instant::now();
        stream.pump(&link, &mut queue, first).await;
        link.counters.connected.store(false, Ordering::Relaxed);
        // A stream that lived long was healthy: start the backoff over. One that ended at
        // once (a refusal) keeps growing the delay, so a misconfigured peer is not hammered.
        if opened_at.elapsed() >= backoff.max {
            delay = backoff.initial;
        }
        tokio::time::sleep(delay).await;
        delay = backoff.next(delay);
    }
}

/// One open append stream: the writing end, and word of its end.
struct AppendStream {
    outgoing: mpsc::Sender<proto::Envelope>,
    /// Completes (with an error: the sender is dropped) when the call ended.
    ended: oneshot::Receiver<()>,
    /// The task that runs the call; aborted with the stream.
    call: AbortHandle,
}

impl Drop for AppendStream {
    fn drop(&mut self) {
        self.call.abort();
    }
}

impl AppendStream {
    /// Opens the stream; `None` when the peer cannot be reached or refuses it.
    async fn open(link: &Arc<Link>) -> Option<AppendStream> {
        let (outgoing, outgoing_rx) = mpsc::channel(MAX_BATCH);
        let (opened_tx, opened) = oneshot::channel();
        let (ended_tx, ended) = oneshot::channel::<()>();
        let mut client = link.client.clone();
        let link = Arc::clone(link);
        let call = tokio::spawn(async move {
            let _ended = ended_tx;
            match client.append_stream(ReceiverStream::new(outgoing_rx)).await {
                Ok(response) => {
                    let _ = opened_tx.send(true);
                    // Its end (a refusal or the connection's) is all the server ever writes.
                    let end = drain(response.into_inner()).await;
                    link.counters.call_ended(end.as_ref().err());
                }
                Err(_) => {
                    let _ = opened_tx.send(false);
                }
            }
        });
        let stream = AppendStream { outgoing, ended, call: call.abort_handle() };
        match tokio::time::timeout(OPEN_TIMEOUT, opened).await {
            Ok(Ok(true)) => Some(stream),
            _ => None,
        }
    }

    /// Writes `first` and everything queued after it until the stream ends or the queue
    /// closes; envelopes in hand when the stream ends are counted as dropped.
    async fn pump(mut self, link: &Link, queue: &mut mpsc::Receiver<Envelope>, first: Envelope) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        batch.push(first);
        loop {
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(envelope) => batch.push(envelope),
                    Err(_) => break,
                }
            }
            let mut pending = batch.drain(..);
            while let Some(envelope) = pending.next() {
                let Some(wire) = link.prepare(&envelope) else { continue };
                // Waits only when HTTP/2 flow control pushes back; the queue fills meanwhile.
                let written = tokio::select! {
                    biased;
                    _ = &mut self.ended => false,
                    written = self.outgoing.send(wire) => written.is_ok(),
                };
                if !written {
                    link.dropped(DropReason::StreamEnded, 1 + pending.len());
                    return;
                }
                link.counters.sent();
            }
            drop(pending);
            tokio::select! {
                biased;
                _ = &mut self.ended => return,
                next = queue.recv() => match next {
                    Some(envelope) => batch.push(envelope),
                    None => return,
                },
            }
        }
    }
}

/// The unary lane: one `Send` call per envelope, a few in flight at a time.
async fn run_unary_lane(link: Arc<Link>, mut queue: mpsc::Receiver<Envelope>) {
    let mut calls = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = calls.join_next(), if !calls.is_empty() => {}
            next = queue.recv(), if calls.len() < MAX_UNARY_IN_FLIGHT => {
                let Some(envelope) = next else { return };
                let Some(wire) = link.prepare(&envelope) else { continue };
                let link = link.clone();
                calls.spawn(async move {
                    let mut client = link.client.clone();
                    match tokio::time::timeout(UNARY_TIMEOUT, client.send(wire)).await {
                        Ok(Ok(_)) => {
                            link.counters.sent();
                            link.counters.call_ended(None);
                        }
                        Ok(Err(status)) => {
                            link.dropped(DropReason::CallFailed, 1);
                            link.counters.call_ended(Some(&status));
                        }
                        Err(_) => link.dropped(DropReason::CallTimeout, 1),
                    }
                });
            }
        }
    }
}
