//! Shared helpers: a state machine driven entry by entry, and an etcd server on loopback
//! over a single-process replica.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use d_engine_core::storage::{StateMachine, StateStore};
use d_engine_core::{Entry, EntryPayload, LogId};
use d_engine_kv::proto::command::{KvCommand, KvOutput, kv_command, kv_output};
use d_engine_kv::proto::etcdserverpb::kv_client::KvClient;
use d_engine_kv::proto::etcdserverpb::*;
use d_engine_kv::proto::mvccpb::KeyValue;
use d_engine_kv::{ClusterView, KvServiceConfig, KvStateMachine, LocalReplica, MemberView};
use d_engine_memory::MemStateStore;
use prost::Message;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// A state machine fed one command per entry, in term 1.
pub struct Harness<S> {
    pub state_machine: KvStateMachine<S>,
}

impl Harness<MemStateStore> {
    pub fn new() -> Harness<MemStateStore> {
        Harness::over(MemStateStore::new())
    }
}

impl<S: StateStore> Harness<S> {
    pub fn over(store: S) -> Harness<S> {
        Harness { state_machine: KvStateMachine::open(store).expect("open") }
    }

    fn next_log_id(&self) -> LogId {
        LogId::new(1, self.state_machine.last_applied().index.0 + 1)
    }

    pub fn apply(&mut self, request: kv_command::Request) -> kv_output::Result {
        let command = Bytes::from(KvCommand { request: Some(request) }.encode_to_vec());
        let entry = Entry { log_id: self.next_log_id(), payload: EntryPayload::Command(command) };
        let outputs = self.state_machine.apply(&[entry]).expect("apply");
        KvOutput::decode(outputs[0].as_ref()).expect("decode output").result.expect("a result")
    }

    pub fn noop(&mut self) -> Bytes {
        let entry = Entry { log_id: self.next_log_id(), payload: EntryPayload::Noop };
        self.state_machine.apply(&[entry]).expect("apply").remove(0)
    }

    pub fn put(&mut self, key: &str, value: &str) -> PutResponse {
        match self.apply(kv_command::Request::Put(put_request(key, value))) {
            kv_output::Result::Put(response) => response,
            other => panic!("put answered {other:?}"),
        }
    }

    pub fn delete(&mut self, key: &str, range_end: &str) -> DeleteRangeResponse {
        let request = DeleteRangeRequest { key: bytes(key), range_end: bytes(range_end), prev_kv: true };
        match self.apply(kv_command::Request::DeleteRange(request)) {
            kv_output::Result::DeleteRange(response) => response,
            other => panic!("delete answered {other:?}"),
        }
    }

    pub fn txn(&mut self, request: TxnRequest) -> TxnResponse {
        match self.apply(kv_command::Request::Txn(request)) {
            kv_output::Result::Txn(response) => response,
            other => panic!("txn answered {other:?}"),
        }
    }

    pub fn get(&self, key: &str) -> Option<KeyValue> {
        let response =
            self.state_machine.range(&RangeRequest { key: bytes(key), ..Default::default() }).expect("range");
        response.kvs.into_iter().next()
    }

    pub fn revision(&self) -> i64 {
        self.state_machine.revision()
    }
}

pub fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

pub fn put_request(key: &str, value: &str) -> PutRequest {
    PutRequest { key: bytes(key), value: bytes(value), ..Default::default() }
}

pub fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestPut(put_request(key, value))) }
}

pub fn get_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest { key: bytes(key), ..Default::default() })),
    }
}

pub fn delete_op(key: &str) -> RequestOp {
    let request = DeleteRangeRequest { key: bytes(key), ..Default::default() };
    RequestOp { request: Some(request_op::Request::RequestDeleteRange(request)) }
}

pub fn compare(key: &str, result: compare::CompareResult, target: compare::TargetUnion) -> Compare {
    let kind = match target {
        compare::TargetUnion::Version(_) => compare::CompareTarget::Version,
        compare::TargetUnion::CreateRevision(_) => compare::CompareTarget::Create,
        compare::TargetUnion::ModRevision(_) => compare::CompareTarget::Mod,
        compare::TargetUnion::Value(_) => compare::CompareTarget::Value,
        compare::TargetUnion::Lease(_) => compare::CompareTarget::Lease,
    };
    Compare {
        result: result as i32,
        target: kind as i32,
        key: bytes(key),
        target_union: Some(target),
        range_end: Bytes::new(),
    }
}

/// A running etcd service on 127.0.0.1 over a [`LocalReplica`]; stops when dropped.
pub struct Server {
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub const MEMBER_ID: u64 = 0x2a;
pub const CLUSTER_ID: u64 = 0x1d;

pub async fn start_server() -> Server {
    start_server_with(KvServiceConfig::default()).await
}

pub async fn start_server_with(config: KvServiceConfig) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address");
    let view = ClusterView {
        cluster_id: CLUSTER_ID,
        member_id: MEMBER_ID,
        members: vec![MemberView {
            id: MEMBER_ID,
            name: "n1".into(),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            client_urls: vec![format!("http://{address}")],
            is_learner: false,
        }],
        db_size_bytes: 4096,
        ..ClusterView::default()
    };
    let state_machine = KvStateMachine::open(MemStateStore::new()).expect("open");
    let replica = Arc::new(LocalReplica::new(state_machine, view));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        d_engine_kv::serve(listener, replica, config, shutdown).await.expect("serve");
    });
    Server { address, stop: Some(stop) }
}

pub async fn kv_client(server: &Server) -> KvClient<Channel> {
    let channel = channel(server).await;
    KvClient::new(channel).max_encoding_message_size(usize::MAX)
}

pub async fn channel(server: &Server) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", server.address))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}
