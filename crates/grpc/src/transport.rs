//! The peer transport's two ends: a tonic server that checks and forwards what peers send,
//! and a per-peer client that keeps one channel and one long-lived append stream.
//!
//! [`PeerClient`] is the plain connection: it does not reconnect (a client whose stream
//! ended reports it through [`PeerClient::closed`]). A node sends through
//! [`PeerSender`](crate::PeerSender), which owns a connection like this one and reconnects
//! with backoff.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use d_engine_core::{Envelope, LogIndex, Message, NodeId};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status, Streaming};

use crate::convert::{ClusterEnvelope, envelope_to_proto};
use crate::faults::NetworkFaults;
use crate::proto;
use crate::proto::raft_client::RaftClient;
use crate::sender::count_errors;
use crate::trace_context::SharedEntryTracer;

/// What a node's transport needs to know about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// This node's id: envelopes to any other id are refused, and no client connects to it.
    pub node_id: NodeId,
    /// The cluster's id, stamped on every envelope sent and checked on every one received.
    pub cluster_id: String,
    /// The largest gRPC message encoded or decoded, on both the server and the client side
    /// (an append batch or a snapshot chunk must fit).
    pub max_message_bytes: usize,
    /// How many envelopes a client buffers for its append stream before `send` waits.
    pub stream_buffer: usize,
    /// Carries entries' trace context on appends (distributed tracing); `None`: nothing is.
    pub entry_tracer: Option<SharedEntryTracer>,
}

impl TransportConfig {
    /// A config with 16 MiB messages and a 1024-envelope stream buffer.
    pub fn new(node_id: NodeId, cluster_id: impl Into<String>) -> TransportConfig {
        TransportConfig {
            node_id,
            cluster_id: cluster_id.into(),
            max_message_bytes: 16 << 20,
            stream_buffer: 1024,
            entry_tracer: None,
        }
    }
}

/// Why the transport could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A node never opens a connection to itself.
    #[error("node {0} refuses to connect to itself")]
    SelfConnection(NodeId),
    /// The envelope is not from this node to this client's peer.
    #[error("envelope {from} -> {to} does not fit the client {client_from} -> {client_to}")]
    Misaddressed {
        /// The envelope's sender.
        from: NodeId,
        /// The envelope's receiver.
        to: NodeId,
        /// The client's node.
        client_from: NodeId,
        /// The client's peer.
        client_to: NodeId,
    },
    /// The peer's address is not a valid URI.
    #[error("invalid peer address {address:?}: {source}")]
    InvalidAddress {
        /// The address given.
        address: String,
        /// Why it is invalid.
        source: tonic::transport::Error,
    },
    /// Connecting or serving failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The peer refused the call or ended the stream with this status.
    #[error("peer refused: {0}")]
    Refused(Status),
    /// The envelope encodes to more than `max_message_bytes`; nothing was sent.
    #[error("envelope of {bytes} bytes exceeds the {max_bytes}-byte message limit")]
    TooLarge {
        /// The envelope's encoded size.
        bytes: usize,
        /// The configured limit.
        max_bytes: usize,
    },
    /// The append stream ended without a status (the peer went away).
    #[error("the append stream to node {0} is closed")]
    StreamClosed(NodeId),
}

/// The server side: accepts envelopes of this node's cluster and hands them to `inbound`.
///
/// Clones share one shutdown switch ([`close_streams`](Self::close_streams)).
#[derive(Clone, Debug)]
pub struct PeerServer {
    config: TransportConfig,
    inbound: mpsc::Sender<Envelope>,
    faults: Option<NetworkFaults>,
    /// `true` once the server is shutting down: open append streams end, new ones are refused.
    closing: Arc<watch::Sender<bool>>,
}

impl PeerServer {
    /// A server for the node of `config`, forwarding accepted envelopes to `inbound`.
    pub fn new(config: TransportConfig, inbound: mpsc::Sender<Envelope>) -> PeerServer {
        PeerServer { config, inbound, faults: None, closing: Arc::new(watch::channel(false).0) }
    }

    /// Discards envelopes from the peers `faults` cuts: accepted, then dropped unseen, as a
    /// partition would lose them.
    pub fn with_faults(mut self, faults: NetworkFaults) -> PeerServer {
        self.faults = Some(faults);
        self
    }

    /// Ends every open append stream with `UNAVAILABLE` and refuses new ones.
    ///
    /// Peers hold their append streams open for as long as they run, and a tonic server's
    /// graceful shutdown waits for every open stream: call this first when serving
    /// [`into_service`](Self::into_service) from a server of your own. [`serve`](Self::serve)
    /// does it when its `shutdown` completes.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// The tonic service, with the message size limit set.
    pub fn into_service(self) -> proto::raft_server::RaftServer<PeerServer> {
        let max = self.config.max_message_bytes;
        proto::raft_server::RaftServer::new(self).max_decoding_message_size(max).max_encoding_message_size(max)
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), TransportError> {
        let server = self.clone();
        let shutdown = async move {
            shutdown.await;
            server.close_streams();
        };
        Server::builder()
            .add_service(self.into_service())
            .serve_with_incoming_shutdown(incoming_nodelay(listener), shutdown)
            .await?;
        Ok(())
    }

    /// Checks one envelope and forwards it; the error is the status the sender sees.
    async fn accept(&self, mut wire: proto::Envelope) -> Result<(), Status> {
        let node = self.config.node_id;
        let from = NodeId(wire.from);
        // The cluster first: a foreign cluster's envelope is refused before it is even decoded.
        if wire.cluster_id != self.config.cluster_id {
            count_errors(node, from, "refused_cluster", 1);
            return Err(Status::failed_precondition(format!(
                "cluster id mismatch: node {} belongs to cluster {:?}, the envelope from node {} is of cluster {:?}",
                node.0, self.config.cluster_id, wire.from, wire.cluster_id
            )));
        }
        let traces = std::mem::take(&mut wire.entry_traces);
        let ClusterEnvelope { envelope, .. } = ClusterEnvelope::try_from(wire).map_err(|e| {
            count_errors(node, from, "refused_malformed", 1);
            Status::invalid_argument(e.to_string())
        })?;
        if envelope.to != node {
            count_errors(node, from, "refused_misaddressed", 1);
            return Err(Status::invalid_argument(format!(
                "envelope for node {} reached node {}",
                envelope.to.0, node.0
            )));
        }
        if self.faults.as_ref().is_some_and(|faults| faults.is_cut(envelope.from)) {
            return Ok(());
        }
        if let Some(tracer) = &self.config.entry_tracer
            && !traces.is_empty()
        {
            tracer
                .0
                .incoming(from, traces.into_iter().map(|trace| (LogIndex(trace.index), trace.traceparent)).collect());
        }
        self.inbound.send(envelope).await.map_err(|_| shutting_down())
    }
}

fn shutting_down() -> Status {
    Status::unavailable("the node is shutting down")
}

type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<proto::Envelope, Status>> + Send>>;

#[tonic::async_trait]
impl proto::raft_server::Raft for PeerServer {
    type AppendStreamStream = EnvelopeStream;

    async fn append_stream(
        &self,
        request: Request<Streaming<proto::Envelope>>,
    ) -> Result<Response<EnvelopeStream>, Status> {
        let mut closing = self.closing.subscribe();
        if *closing.borrow() {
            return Err(shutting_down());
        }
        let mut incoming = request.into_inner();
        let (refusal_tx, refusal_rx) = mpsc::channel(1);
        let server = self.clone();
        tokio::spawn(async move {
            // Ends when the sender closes the stream or goes away (an error there is its
            // own), at the first refused envelope, whose status ends the response stream, or
            // when the server shuts down.
            loop {
                let closed = async {
                    let _ = closing.wait_for(|closing| *closing).await;
                };
                let refusal = tokio::select! {
                    message = incoming.message() => match message {
                        Ok(Some(wire)) => server.accept(wire).await.err(),
                        _ => return,
                    },
                    () = closed => Some(shutting_down()),
                };
                if let Some(status) = refusal {
                    let _ = refusal_tx.send(Err(status)).await;
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(refusal_rx))))
    }

    async fn send(&self, request: Request<proto::Envelope>) -> Result<Response<proto::SendReply>, Status> {
        self.accept(request.into_inner()).await?;
        Ok(Response::new(proto::SendReply {}))
    }
}

/// How an append stream ended: `None` while it is open.
type StreamEnd = Option<Result<(), Status>>;

/// One node's connection to one peer: one channel, one long-lived append stream.
#[derive(Debug)]
pub struct PeerClient {
    config: TransportConfig,
    peer: NodeId,
    client: RaftClient<Channel>,
    stream: mpsc::Sender<proto::Envelope>,
    stream_end: watch::Receiver<StreamEnd>,
}

impl PeerClient {
    /// Connects to `peer` at `address` (e.g. `http://127.0.0.1:7001`) and opens the append
    /// stream. Refuses `peer == config.node_id`: a node never connects to itself.
    pub async fn connect(config: TransportConfig, peer: NodeId, address: &str) -> Result<PeerClient, TransportError> {
        if peer == config.node_id {
            return Err(TransportError::SelfConnection(peer));
        }
        let endpoint = Endpoint::from_shared(address.to_owned())
            .map_err(|source| TransportError::InvalidAddress { address: address.to_owned(), source })?;
        let channel = endpoint.connect().await?;
        let max = config.max_message_bytes;
        let client = RaftClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max);

        let (stream, outgoing) = mpsc::channel(config.stream_buffer.max(1));
        let (end_tx, stream_end) = watch::channel(None);
        let mut stream_client = client.clone();
        tokio::spawn(async move {
            let end = match stream_client.append_stream(ReceiverStream::new(outgoing)).await {
                Ok(response) => drain(response.into_inner()).await,
                Err(status) => Err(status),
            };
            let _ = end_tx.send(Some(end));
        });
        Ok(PeerClient { config, peer, client, stream, stream_end })
    }

    /// The peer this client sends to.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// Queues `envelope` on the append stream, in order; waits only when the buffer is full.
    pub async fn send(&self, envelope: &Envelope) -> Result<(), TransportError> {
        let wire = self.encode(envelope)?;
        if self.stream.send(wire).await.is_err() {
            return Err(self.closed().await);
        }
        Ok(())
    }

    /// Sends `envelope` in its own unary call (votes, timeout-now, snapshot chunks) and
    /// returns once the peer has accepted it.
    pub async fn send_unary(&self, envelope: &Envelope) -> Result<(), TransportError> {
        let wire = self.encode(envelope)?;
        self.client.clone().send(wire).await.map_err(TransportError::Refused)?;
        Ok(())
    }

    /// Waits until the append stream has ended and tells why.
    pub async fn closed(&self) -> TransportError {
        let mut end = self.stream_end.clone();
        let ended = end.wait_for(Option::is_some).await.map(|end| end.clone());
        match ended {
            Ok(Some(Err(status))) => TransportError::Refused(status),
            _ => TransportError::StreamClosed(self.peer),
        }
    }

    fn encode(&self, envelope: &Envelope) -> Result<proto::Envelope, TransportError> {
        encode(&self.config, self.peer, envelope)
    }
}

/// Checks that `envelope` goes from `config`'s node to `peer` and fits the message limit,
/// and encodes it.
pub(crate) fn encode(
    config: &TransportConfig,
    peer: NodeId,
    envelope: &Envelope,
) -> Result<proto::Envelope, TransportError> {
    if envelope.from != config.node_id || envelope.to != peer {
        return Err(TransportError::Misaddressed {
            from: envelope.from,
            to: envelope.to,
            client_from: config.node_id,
            client_to: peer,
        });
    }
    let mut wire = envelope_to_proto(&config.cluster_id, envelope);
    if let (Some(tracer), Message::AppendRequest { entries, .. }) = (&config.entry_tracer, &envelope.message)
        && !entries.is_empty()
    {
        wire.entry_traces = tracer
            .0
            .outgoing(peer, entries)
            .into_iter()
            .map(|(index, traceparent)| proto::EntryTrace { index: index.0, traceparent })
            .collect();
    }
    // Checked here, not only by tonic: tonic's own encode-side limit resets the HTTP/2
    // stream with an opaque INTERNAL error, and on the append stream it would end the
    // stream for every envelope queued behind this one.
    let bytes = prost::Message::encoded_len(&wire);
    if bytes > config.max_message_bytes {
        return Err(TransportError::TooLarge { bytes, max_bytes: config.max_message_bytes });
    }
    Ok(wire)
}

/// The connections `listener` accepts, with `TCP_NODELAY` set on each, for
/// `serve_with_incoming*`. tonic's own `tcp_nodelay` applies only to the listeners it binds
/// itself; without it, a small answer waits for the client's delayed ACK (Nagle): about
/// 40 ms per request on Linux.
pub fn incoming_nodelay(
    listener: TcpListener,
) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// Reads the server's side of the append stream to its end: its refusal status, if any.
pub(crate) async fn drain(mut responses: Streaming<proto::Envelope>) -> Result<(), Status> {
    while responses.message().await?.is_some() {}
    Ok(())
}
