//! A node that is not the leader forwards KV requests to the leader's client address, once;
//! with no leader known it answers UNAVAILABLE.

mod common;

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use d_engine_kv::proto::etcdserverpb::kv_client::KvClient;
use d_engine_kv::proto::etcdserverpb::*;
use d_engine_kv::{ClusterView, KvServiceConfig, KvStateMachine, Replica, ReplicaError};
use d_engine_memory::MemStateStore;
use tokio::sync::oneshot;
use tonic::Code;

/// A replica that is never the leader and points at `leader_client_address`.
struct Follower {
    leader_client_address: Option<String>,
}

impl Follower {
    fn not_leader(&self) -> ReplicaError {
        ReplicaError::NotLeader { leader_client_address: self.leader_client_address.clone() }
    }
}

impl Replica for Follower {
    type Store = MemStateStore;

    fn write(&self, _command: Bytes) -> impl Future<Output = Result<Bytes, ReplicaError>> + Send {
        let error = self.not_leader();
        async move { Err(error) }
    }

    fn read<R: Send + 'static>(
        &self,
        linearizable: bool,
        read: impl FnOnce(&KvStateMachine<MemStateStore>) -> R + Send + 'static,
    ) -> impl Future<Output = Result<R, ReplicaError>> + Send {
        // A serializable read is answered from this (empty) follower's own state.
        let result = if linearizable {
            Err(self.not_leader())
        } else {
            Ok(read(&KvStateMachine::open(MemStateStore::new()).expect("open")))
        };
        async move { result }
    }

    fn cluster(&self) -> ClusterView {
        ClusterView { cluster_id: CLUSTER_ID, member_id: 7, raft_term: 1, ..ClusterView::default() }
    }
}

struct FollowerServer {
    client: KvClient<tonic::transport::Channel>,
    _stop: oneshot::Sender<()>,
}

async fn start_follower(leader_client_address: Option<String>) -> FollowerServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let replica = Arc::new(Follower { leader_client_address });
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        d_engine_kv::serve(listener, replica, KvServiceConfig::default(), shutdown).await.expect("serve");
    });
    let client = KvClient::connect(format!("http://{address}")).await.expect("connect");
    FollowerServer { client, _stop: stop }
}

#[tokio::test]
async fn a_follower_forwards_writes_and_linearizable_reads_to_the_leader() {
    let leader = start_server().await;
    let mut follower = start_follower(Some(leader.address.to_string())).await;

    let put = follower.client.put(put_request("foo", "bar")).await.unwrap().into_inner();
    assert_eq!(put.header.unwrap().member_id, MEMBER_ID, "the leader answered");
    let read = RangeRequest { key: bytes("foo"), ..Default::default() };
    let range = follower.client.range(read.clone()).await.unwrap().into_inner();
    assert_eq!(range.kvs[0].value, bytes("bar"));

    let stale = follower.client.range(RangeRequest { serializable: true, ..read }).await.unwrap().into_inner();
    assert_eq!((stale.count, stale.header.unwrap().member_id), (0, 7), "a serializable read stays local");

    let txn = TxnRequest { compare: vec![], success: vec![put_op("t", "1")], failure: vec![] };
    assert!(follower.client.txn(txn).await.unwrap().into_inner().succeeded);
    let delete = DeleteRangeRequest { key: bytes("foo"), ..Default::default() };
    assert_eq!(follower.client.delete_range(delete).await.unwrap().into_inner().deleted, 1);
}

#[tokio::test]
async fn with_no_leader_known_a_follower_answers_unavailable() {
    let mut follower = start_follower(None).await;
    let status = follower.client.put(put_request("foo", "bar")).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::Unavailable, "etcdserver: no leader"));
}

#[tokio::test]
async fn a_forwarded_request_is_not_forwarded_again() {
    // Two followers that each believe the other is the leader.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second_address = listener.local_addr().unwrap();
    let mut first = start_follower(Some(second_address.to_string())).await;
    let (_stop, stopped) = oneshot::channel::<()>();
    let replica = Arc::new(Follower { leader_client_address: Some("127.0.0.1:1".into()) });
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        d_engine_kv::serve(listener, replica, KvServiceConfig::default(), shutdown).await.expect("serve");
    });
    let status = first.client.put(put_request("foo", "bar")).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::Unavailable, "etcdserver: no leader"));
}
