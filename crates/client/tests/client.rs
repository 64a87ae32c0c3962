//! The client against fake nodes: in-process `dengine.client.v1` servers on loopback that lead,
//! redirect, hang, refuse or flap, each counting the calls it received.
//!
//! Timeouts here only keep a broken test from hanging; nothing asserts how fast anything is.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use d_engine_client::{Client, ClientConfig, ClientError, Consistency, Role};
use d_engine_grpc::client_proto as proto;
use d_engine_grpc::client_proto::client_server::{Client as ClientService, ClientServer};
use d_engine_grpc::not_leader_status;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

const HANG_GUARD: Duration = Duration::from_secs(30);

/// How a fake node answers.
#[derive(Clone, Debug)]
enum Behaviour {
    /// Leads: runs every proposal and query.
    Leader,
    /// Follows: refuses with a hint naming the leader, or no hint when `leader` is `None`.
    Follower { leader: Option<(u64, String)> },
    /// Accepts every call and never answers.
    Hang,
    /// Refuses every call as malformed.
    Invalid,
    /// Answers `UNAVAILABLE` to the first `failures` calls of each kind, then leads.
    Flapping { failures: usize },
}

#[derive(Debug, Default)]
struct Calls {
    propose: AtomicUsize,
    query: AtomicUsize,
    status: AtomicUsize,
}

#[derive(Clone, Debug)]
struct FakeNode {
    id: u64,
    address: String,
    behaviour: Behaviour,
    calls: Arc<Calls>,
}

impl FakeNode {
    /// How the node treats the `count`-th call (1-based) of one kind: `Ok` to serve it.
    async fn gate(&self, count: usize) -> Result<(), Status> {
        match &self.behaviour {
            Behaviour::Leader => Ok(()),
            Behaviour::Follower { leader: Some((id, address)) } => Err(not_leader_status(Some(*id), Some(address))),
            Behaviour::Follower { leader: None } => Err(not_leader_status(None, None)),
            Behaviour::Hang => std::future::pending().await,
            Behaviour::Invalid => Err(Status::invalid_argument("empty command")),
            Behaviour::Flapping { failures } if count <= *failures => Err(Status::unavailable("starting")),
            Behaviour::Flapping { .. } => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl ClientService for FakeNode {
    async fn propose(&self, request: Request<proto::ProposeRequest>) -> Result<Response<proto::ProposeReply>, Status> {
        let count = self.calls.propose.fetch_add(1, Ordering::SeqCst) + 1;
        self.gate(count).await?;
        let mut output = b"ran:".to_vec();
        output.extend_from_slice(&request.into_inner().command);
        Ok(Response::new(proto::ProposeReply { output: output.into(), term: 3, index: count as u64 }))
    }

    async fn query(&self, request: Request<proto::QueryRequest>) -> Result<Response<proto::QueryReply>, Status> {
        let count = self.calls.query.fetch_add(1, Ordering::SeqCst) + 1;
        self.gate(count).await?;
        let mut output = format!("node {} answers ", self.id).into_bytes();
        output.extend_from_slice(&request.into_inner().query);
        Ok(Response::new(proto::QueryReply { output: output.into(), applied_index: 7 }))
    }

    async fn status(&self, _: Request<proto::StatusRequest>) -> Result<Response<proto::StatusReply>, Status> {
        self.calls.status.fetch_add(1, Ordering::SeqCst);
        let (role, leader_id, leader_address) = match &self.behaviour {
            Behaviour::Follower { leader: Some((id, address)) } => (proto::Role::Follower, *id, address.clone()),
            Behaviour::Follower { leader: None } => (proto::Role::Follower, 0, String::new()),
            _ => (proto::Role::Leader, self.id, self.address.clone()),
        };
        Ok(Response::new(proto::StatusReply {
            node_id: self.id,
            cluster_id: "alpha".into(),
            role: role as i32,
            term: 3,
            leader_id,
            leader_address,
            commit_index: 7,
            applied_index: 7,
            last_log_index: 7,
            members: Vec::new(),
        }))
    }
}

/// Starts a fake node on an ephemeral loopback port; it runs until the test's runtime ends.
async fn start(id: u64, behaviour: Behaviour) -> FakeNode {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let address = format!("http://{}", listener.local_addr().expect("a bound address"));
    let node = FakeNode { id, address, behaviour, calls: Arc::default() };
    let service = ClientServer::new(node.clone());
    tokio::spawn(
        tonic::transport::Server::builder().add_service(service).serve_with_incoming(TcpListenerStream::new(listener)),
    );
    node
}

/// An address where nothing listens.
async fn down_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    format!("http://{}", listener.local_addr().expect("a bound address"))
}

fn config(endpoints: &[&str]) -> ClientConfig {
    ClientConfig {
        backoff: (Duration::from_millis(10), Duration::from_millis(100)),
        ..ClientConfig::new(endpoints.iter().copied())
    }
}

async fn connect(config: ClientConfig) -> Client {
    Client::connect(config).await.expect("a valid config")
}

/// Runs `call`, failing the test instead of hanging if it never returns.
async fn guarded<T>(call: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, call).await.expect("the call returned")
}

fn proposals(node: &FakeNode) -> usize {
    node.calls.propose.load(Ordering::SeqCst)
}

fn queries(node: &FakeNode) -> usize {
    node.calls.query.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_follower_redirects_to_the_leader_and_the_proposal_runs_once() {
    let leader = start(1, Behaviour::Leader).await;
    let follower = start(2, Behaviour::Follower { leader: Some((1, leader.address.clone())) }).await;
    // Only the follower is configured: the client follows the hint to an address it was not given.
    let client = connect(config(&[&follower.address])).await;

    let proposed = guarded(client.propose(&b"x=1"[..])).await.expect("proposed");
    assert_eq!(proposed.output, Bytes::from_static(b"ran:x=1"));
    assert_eq!((proposed.term, proposed.index), (3, 1));
    assert_eq!((proposals(&follower), proposals(&leader)), (1, 1), "refused once, ran once");
    assert_eq!(client.leader(), Some(leader.address.clone()));

    // The next call goes straight to the leader.
    guarded(client.propose(&b"x=2"[..])).await.expect("proposed");
    assert_eq!((proposals(&follower), proposals(&leader)), (1, 2));
}

#[tokio::test]
async fn a_follower_that_knows_no_leader_sends_the_client_on_to_the_next_endpoint() {
    let follower = start(2, Behaviour::Follower { leader: None }).await;
    let leader = start(1, Behaviour::Leader).await;
    let client = connect(config(&[&follower.address, &leader.address])).await;

    guarded(client.propose(&b"x=1"[..])).await.expect("proposed");
    assert_eq!((proposals(&follower), proposals(&leader)), (1, 1));
}

#[tokio::test]
async fn a_down_endpoint_is_skipped() {
    let down = down_address().await;
    let leader = start(1, Behaviour::Leader).await;
    let client = connect(config(&[&down, &leader.address])).await;

    guarded(client.propose(&b"x=1"[..])).await.expect("a proposal that never left is retried elsewhere");
    assert_eq!(proposals(&leader), 1);
    let answer = guarded(client.query(&b"x"[..], Consistency::Linearizable)).await.expect("queried");
    assert_eq!(answer, Bytes::from_static(b"node 1 answers x"));
}

#[tokio::test]
async fn all_endpoints_down_is_unavailable_within_the_timeout() {
    let (down_1, down_2) = (down_address().await, down_address().await);
    let client = connect(ClientConfig {
        request_timeout: Duration::from_secs(2),
        max_retries: 4,
        ..config(&[&down_1, &down_2])
    })
    .await;

    let proposed = guarded(client.propose(&b"x=1"[..])).await;
    assert!(matches!(proposed, Err(ClientError::Unavailable(_))), "{proposed:?}");
    let queried = guarded(client.query(&b"x"[..], Consistency::Serializable)).await;
    assert!(matches!(queried, Err(ClientError::Unavailable(_))), "{queried:?}");
    let status = guarded(client.status()).await;
    assert!(matches!(status, Err(ClientError::Unavailable(_))), "{status:?}");
    assert_eq!(client.leader(), None);
}

#[tokio::test]
async fn a_proposal_left_unanswered_times_out_and_is_not_retried() {
    let hanging = start(1, Behaviour::Hang).await;
    let leader = start(2, Behaviour::Leader).await;
    let client = connect(ClientConfig {
        request_timeout: Duration::from_millis(500),
        ..config(&[&hanging.address, &leader.address])
    })
    .await;

    let proposed = guarded(client.propose(&b"x=1"[..])).await;
    assert_eq!(proposed, Err(ClientError::Timeout));
    assert_eq!(proposals(&hanging), 1, "sent exactly once");
    assert_eq!(proposals(&leader), 0, "never sent again elsewhere: it may have run");
}

/// A TCP relay to `target` whose connections can all be cut at once, as a crashed node or a
/// network failure would: returns its address and the switch.
async fn relay(target: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let address = format!("http://{}", listener.local_addr().expect("a bound address"));
    let target = target.trim_start_matches("http://").to_owned();
    let (cut, cut_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        let accept = async {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        };
        tokio::select! {
            () = accept => {}
            _ = cut_rx => {}
        }
        // Dropping the set closes every relayed connection.
    });
    (address, cut)
}

#[tokio::test]
async fn a_proposal_whose_connection_breaks_after_sending_is_not_retried() {
    let hanging = start(1, Behaviour::Hang).await;
    let leader = start(2, Behaviour::Leader).await;
    let (relayed, cut) = relay(&hanging.address).await;
    let client = connect(config(&[&relayed, &leader.address])).await;

    let proposal = tokio::spawn({
        let client = client.clone();
        async move { client.propose(&b"x=1"[..]).await }
    });
    guarded(async {
        while proposals(&hanging) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    cut.send(()).expect("the relay runs");

    let proposed = guarded(proposal).await.expect("the call task");
    assert!(matches!(proposed, Err(ClientError::Unavailable(_))), "outcome unknown: {proposed:?}");
    assert_eq!(proposals(&leader), 0, "never sent again elsewhere: it may have run");
}

#[tokio::test]
async fn invalid_argument_surfaces_without_retry() {
    let refusing = start(1, Behaviour::Invalid).await;
    let leader = start(2, Behaviour::Leader).await;
    let client = connect(config(&[&refusing.address, &leader.address])).await;

    let proposed = guarded(client.propose(Bytes::new())).await;
    assert_eq!(proposed, Err(ClientError::InvalidArgument("empty command".into())));
    let queried = guarded(client.query(Bytes::new(), Consistency::Linearizable)).await;
    assert_eq!(queried, Err(ClientError::InvalidArgument("empty command".into())));
    assert_eq!((proposals(&refusing), queries(&refusing)), (1, 1));
    assert_eq!((proposals(&leader), queries(&leader)), (0, 0));
}

#[tokio::test]
async fn a_query_is_retried_after_unavailable() {
    let flapping = start(1, Behaviour::Flapping { failures: 2 }).await;
    let client = connect(config(&[&flapping.address])).await;

    let answer = guarded(client.query(&b"x"[..], Consistency::Lease)).await.expect("answered on the third try");
    assert_eq!(answer, Bytes::from_static(b"node 1 answers x"));
    assert_eq!(queries(&flapping), 3);
}

#[tokio::test]
async fn a_proposal_refused_as_unavailable_is_not_retried() {
    // The node sent UNAVAILABLE itself: it may be shutting down with the command in its log.
    let flapping = start(1, Behaviour::Flapping { failures: 1 }).await;
    let client = connect(config(&[&flapping.address])).await;

    let proposed = guarded(client.propose(&b"x=1"[..])).await;
    assert_eq!(proposed, Err(ClientError::Unavailable("starting".into())));
    assert_eq!(proposals(&flapping), 1);
}

#[tokio::test]
async fn retries_are_bounded_by_max_retries() {
    let follower = start(2, Behaviour::Follower { leader: None }).await;
    let client = connect(ClientConfig { max_retries: 2, ..config(&[&follower.address]) }).await;

    let proposed = guarded(client.propose(&b"x=1"[..])).await;
    assert_eq!(proposed, Err(ClientError::NotLeader { leader_id: None, leader_address: None }));
    assert_eq!(proposals(&follower), 3, "the first attempt and two retries");
}

#[tokio::test]
async fn status_prefers_the_leader() {
    let leader = start(1, Behaviour::Leader).await;
    let follower = start(2, Behaviour::Follower { leader: Some((1, leader.address.clone())) }).await;
    let client = connect(config(&[&follower.address])).await;

    let status = guarded(client.status()).await.expect("a status");
    assert_eq!((status.node_id, status.role), (1, Role::Leader));
    assert_eq!(status.leader_address.as_deref(), Some(leader.address.as_str()));
    assert_eq!(client.leader(), Some(leader.address.clone()));
}

#[tokio::test]
async fn connect_validates_the_config_but_needs_no_node_up() {
    let empty = Client::connect(ClientConfig::new(Vec::<String>::new())).await;
    assert!(matches!(empty, Err(ClientError::InvalidArgument(_))), "{empty:?}");
    let no_scheme = Client::connect(ClientConfig::new(["127.0.0.1:9081"])).await;
    assert!(matches!(no_scheme, Err(ClientError::InvalidArgument(_))), "{no_scheme:?}");
    let garbage = Client::connect(ClientConfig::new(["http://exa mple"])).await;
    assert!(matches!(garbage, Err(ClientError::InvalidArgument(_))), "{garbage:?}");

    let down = down_address().await;
    let client = Client::connect(ClientConfig::new([down])).await.expect("no endpoint needs to be up");
    assert_eq!(client.leader(), None);
}
