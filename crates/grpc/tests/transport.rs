//! The transport on loopback: two nodes exchange envelopes both ways over real gRPC, and a
//! node of another cluster is refused with a message naming both cluster ids.

use std::time::Duration;

use bytes::Bytes;
use d_engine_core::{Envelope, LogId, LogIndex, Message, NodeId, Term};
use d_engine_grpc::{PeerClient, PeerServer, TransportConfig, TransportError};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(10);

/// A server for `config` on an ephemeral loopback port; returns its address, its inbox and
/// the trigger that stops it.
async fn start(config: TransportConfig) -> (String, mpsc::Receiver<Envelope>, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (inbound, inbox) = mpsc::channel(64);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(PeerServer::new(config, inbound).serve(listener, async {
        let _ = stopped.await;
    }));
    (address, inbox, stop)
}

async fn receive(inbox: &mut mpsc::Receiver<Envelope>) -> Envelope {
    tokio::time::timeout(WAIT, inbox.recv()).await.expect("an envelope in time").expect("server running")
}

fn append(from: u64, to: u64, command: &'static [u8]) -> Envelope {
    Message::AppendRequest {
        term: Term(2),
        prev_log_id: LogId::new(1, 4),
        entries: vec![d_engine_core::Entry {
            log_id: LogId::new(2, 5),
            payload: d_engine_core::EntryPayload::Command(Bytes::from_static(command)),
        }],
        leader_commit: LogIndex(4),
    }
    .to(from, to)
}

trait To {
    fn to(self, from: u64, to: u64) -> Envelope;
}

impl To for Message {
    fn to(self, from: u64, to: u64) -> Envelope {
        Envelope { from: NodeId(from), to: NodeId(to), message: self }
    }
}

#[tokio::test]
async fn two_nodes_exchange_envelopes_both_ways_on_stream_and_unary() {
    let (config_1, config_2) = (TransportConfig::new(NodeId(1), "alpha"), TransportConfig::new(NodeId(2), "alpha"));
    let (address_1, mut inbox_1, _stop_1) = start(config_1.clone()).await;
    let (address_2, mut inbox_2, _stop_2) = start(config_2.clone()).await;
    let client_1_to_2 = PeerClient::connect(config_1, NodeId(2), &address_2).await.unwrap();
    let client_2_to_1 = PeerClient::connect(config_2, NodeId(1), &address_1).await.unwrap();

    // Appends on the stream arrive in order.
    for command in [&b"a"[..], b"b", b"c"] {
        client_1_to_2.send(&append(1, 2, command)).await.unwrap();
    }
    for command in [&b"a"[..], b"b", b"c"] {
        assert_eq!(receive(&mut inbox_2).await, append(1, 2, command));
    }

    // The answer goes back on node 2's own stream.
    let response = Message::AppendResponse {
        term: Term(2),
        outcome: d_engine_core::AppendOutcome::Success { matched: LogIndex(5) },
    }
    .to(2, 1);
    client_2_to_1.send(&response).await.unwrap();
    assert_eq!(receive(&mut inbox_1).await, response);

    // A vote outside the stream, and its answer.
    let vote = Message::VoteRequest {
        term: Term(3),
        last_log_id: LogId::new(2, 5),
        pre_vote: true,
        leadership_transfer: false,
    }
    .to(2, 1);
    client_2_to_1.send_unary(&vote).await.unwrap();
    assert_eq!(receive(&mut inbox_1).await, vote);
    let granted = Message::VoteResponse { term: Term(3), granted: true, pre_vote: true }.to(1, 2);
    client_1_to_2.send_unary(&granted).await.unwrap();
    assert_eq!(receive(&mut inbox_2).await, granted);
}

#[tokio::test]
async fn a_node_of_another_cluster_is_refused_naming_both_ids() {
    let (address, mut inbox, _stop) = start(TransportConfig::new(NodeId(2), "alpha")).await;
    let stranger = PeerClient::connect(TransportConfig::new(NodeId(1), "beta"), NodeId(2), &address).await.unwrap();

    let refused = stranger.send_unary(&Message::TimeoutNow { term: Term(1) }.to(1, 2)).await.unwrap_err();
    let TransportError::Refused(status) = refused else { panic!("expected a refusal, got {refused:?}") };
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("\"alpha\"") && status.message().contains("\"beta\""), "{}", status.message());

    // On the stream, the first foreign envelope ends it with the same refusal.
    stranger.send(&append(1, 2, b"x")).await.unwrap();
    let ended = tokio::time::timeout(WAIT, stranger.closed()).await.expect("the stream ends");
    let TransportError::Refused(status) = ended else { panic!("expected a refusal, got {ended:?}") };
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("\"alpha\"") && status.message().contains("\"beta\""), "{}", status.message());
    assert!(inbox.try_recv().is_err(), "nothing of the foreign cluster reached the node");
}

#[tokio::test]
async fn a_node_never_connects_to_itself() {
    let config = TransportConfig::new(NodeId(1), "alpha");
    let refused = PeerClient::connect(config, NodeId(1), "http://127.0.0.1:1").await.unwrap_err();
    assert!(matches!(refused, TransportError::SelfConnection(NodeId(1))), "{refused:?}");
}

#[tokio::test]
async fn an_envelope_not_from_this_node_to_this_peer_is_refused_locally() {
    let (address, _inbox, _stop) = start(TransportConfig::new(NodeId(2), "alpha")).await;
    let client = PeerClient::connect(TransportConfig::new(NodeId(1), "alpha"), NodeId(2), &address).await.unwrap();
    let wrong = client.send(&Message::TimeoutNow { term: Term(1) }.to(1, 3)).await.unwrap_err();
    assert!(matches!(wrong, TransportError::Misaddressed { .. }), "{wrong:?}");
}

#[tokio::test]
async fn a_server_refuses_a_message_over_its_size_limit() {
    let mut server_config = TransportConfig::new(NodeId(2), "alpha");
    server_config.max_message_bytes = 1024;
    let (address, mut inbox, _stop) = start(server_config).await;
    let client = PeerClient::connect(TransportConfig::new(NodeId(1), "alpha"), NodeId(2), &address).await.unwrap();

    let big = append_of(4096);
    let refused = client.send_unary(&big).await.unwrap_err();
    let TransportError::Refused(status) = refused else { panic!("expected a refusal, got {refused:?}") };
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(inbox.try_recv().is_err());
}

#[tokio::test]
async fn a_client_does_not_send_over_its_own_size_limit() {
    let (address, mut inbox, _stop) = start(TransportConfig::new(NodeId(2), "alpha")).await;
    let mut client_config = TransportConfig::new(NodeId(1), "alpha");
    client_config.max_message_bytes = 1024;
    let client = PeerClient::connect(client_config, NodeId(2), &address).await.unwrap();

    let chunk = Message::TimeoutNow { term: Term(1) }.to(1, 2);
    client.send_unary(&chunk).await.unwrap();
    assert_eq!(receive(&mut inbox).await, chunk);

    let big = append_of(4096);
    let refused = client.send_unary(&big).await.unwrap_err();
    assert!(matches!(refused, TransportError::TooLarge { max_bytes: 1024, .. }), "{refused:?}");
    let refused = client.send(&big).await.unwrap_err();
    assert!(matches!(refused, TransportError::TooLarge { max_bytes: 1024, .. }), "{refused:?}");

    // The stream is still usable after the refusal.
    client.send(&chunk).await.unwrap();
    assert_eq!(receive(&mut inbox).await, chunk);
}

fn append_of(command_bytes: usize) -> Envelope {
    Message::AppendRequest {
        term: Term(1),
        prev_log_id: LogId::default(),
        entries: vec![d_engine_core::Entry {
            log_id: LogId::new(1, 1),
            payload: d_engine_core::EntryPayload::Command(Bytes::from(vec![7u8; command_bytes])),
        }],
        leader_commit: LogIndex(0),
    }
    .to(1, 2)
}
