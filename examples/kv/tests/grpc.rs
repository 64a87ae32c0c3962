//! The etcd gRPC API over a single-process replica, driven by a client generated from the
//! same protos: writes, reads, txns, errors and the rpcs d-engine-kv does not serve.

mod common;

use common::*;
use d_engine_kv::KvServiceConfig;
use d_engine_kv::proto::etcdserverpb::cluster_client::ClusterClient;
use d_engine_kv::proto::etcdserverpb::compare::{CompareResult, TargetUnion};
use d_engine_kv::proto::etcdserverpb::lease_client::LeaseClient;
use d_engine_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use d_engine_kv::proto::etcdserverpb::watch_client::WatchClient;
use d_engine_kv::proto::etcdserverpb::*;
use tonic::Code;

#[tokio::test]
async fn put_range_txn_and_delete_over_grpc() {
    let server = start_server().await;
    let mut client = kv_client(&server).await;

    let put = client.put(put_request("foo", "bar")).await.unwrap().into_inner();
    let header = put.header.unwrap();
    assert_eq!((header.cluster_id, header.member_id, header.revision, header.raft_term), (CLUSTER_ID, MEMBER_ID, 1, 1));
    client.put(put_request("foo/a", "1")).await.unwrap();
    client.put(put_request("foo/b", "2")).await.unwrap();

    let one = client.range(RangeRequest { key: bytes("foo"), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(one.kvs.len(), 1);
    assert_eq!((one.kvs[0].value.clone(), one.kvs[0].version, one.count), (bytes("bar"), 1, 1));
    assert_eq!(one.header.unwrap().revision, 3);

    let prefix =
        RangeRequest { key: bytes("foo/"), range_end: bytes("foo0"), serializable: true, ..Default::default() };
    let listed = client.range(prefix).await.unwrap().into_inner();
    let keys: Vec<_> = listed.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, [bytes("foo/a"), bytes("foo/b")]);

    let txn = TxnRequest {
        compare: vec![compare("foo", CompareResult::Equal, TargetUnion::Value(bytes("bar")))],
        success: vec![put_op("foo", "baz"), get_op("foo/a")],
        failure: vec![],
    };
    let response = client.txn(txn).await.unwrap().into_inner();
    assert!(response.succeeded);
    assert_eq!(response.header.unwrap().revision, 4);
    let Some(response_op::Response::ResponseRange(read)) = &response.responses[1].response else { panic!("range") };
    assert_eq!(read.kvs[0].value, bytes("1"));

    let delete = DeleteRangeRequest { key: bytes("foo"), range_end: bytes("fop"), prev_kv: true };
    let deleted = client.delete_range(delete).await.unwrap().into_inner();
    assert_eq!(deleted.deleted, 3);
    assert_eq!(deleted.header.unwrap().revision, 5);
    let everything = RangeRequest { key: bytes("\0"), range_end: bytes("\0"), count_only: true, ..Default::default() };
    assert_eq!(client.range(everything).await.unwrap().into_inner().count, 0);
}

#[tokio::test]
async fn an_empty_key_is_invalid_argument() {
    let server = start_server().await;
    let mut client = kv_client(&server).await;
    let status = client.put(put_request("", "x")).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "etcdserver: key is not provided"));
    assert_eq!(client.range(RangeRequest::default()).await.unwrap_err().code(), Code::InvalidArgument);
    let status = client.delete_range(DeleteRangeRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let txn = TxnRequest { compare: vec![], success: vec![put_op("", "x")], failure: vec![] };
    assert_eq!(client.txn(txn).await.unwrap_err().code(), Code::InvalidArgument);
}

#[tokio::test]
async fn an_oversize_request_is_resource_exhausted_and_changes_nothing() {
    let config = KvServiceConfig { max_request_bytes: 1024, ..KvServiceConfig::default() };
    let server = start_server_with(config).await;
    let mut client = kv_client(&server).await;
    let big = "x".repeat(2048);
    let status = client.put(put_request("big", &big)).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::ResourceExhausted, "etcdserver: request is too large"));
    let txn = TxnRequest { compare: vec![], success: vec![put_op("big", &big)], failure: vec![] };
    assert_eq!(client.txn(txn).await.unwrap_err().code(), Code::ResourceExhausted);
    let range = client.range(RangeRequest { key: bytes("big"), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!((range.count, range.header.unwrap().revision), (0, 0));
}

#[tokio::test]
async fn the_default_limit_is_etcds_one_and_a_half_mebibytes() {
    let server = start_server().await;
    let mut client = kv_client(&server).await;
    let fits = "x".repeat(1024 * 1024);
    client.put(put_request("fits", &fits)).await.unwrap();
    let too_big = "x".repeat(1536 * 1024 + 1);
    assert_eq!(client.put(put_request("big", &too_big)).await.unwrap_err().code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn an_old_revision_is_out_of_range() {
    let server = start_server().await;
    let mut client = kv_client(&server).await;
    client.put(put_request("a", "1")).await.unwrap();
    client.put(put_request("a", "2")).await.unwrap();
    let status = client.range(RangeRequest { key: bytes("a"), revision: 1, ..Default::default() }).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::OutOfRange, "mvcc: required revision has been compacted"));
}

#[tokio::test]
async fn unsupported_rpcs_answer_unimplemented_at_once() {
    let server = start_server().await;
    let channel = channel(&server).await;
    let mut kv = kv_client(&server).await;
    let status = kv.compact(CompactionRequest { revision: 1, physical: false }).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::Unimplemented, "Compact is not supported by d-engine-kv"));

    let mut lease = LeaseClient::new(channel.clone());
    let status = lease.lease_grant(LeaseGrantRequest { ttl: 10, id: 0 }).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::Unimplemented, "LeaseGrant is not supported by d-engine-kv"));
    // A client stream that never ends: the answer must not wait for it.
    let keep_alive = lease.lease_keep_alive(tokio_stream::pending::<LeaseKeepAliveRequest>()).await.unwrap_err();
    assert_eq!(keep_alive.code(), Code::Unimplemented);

    let mut watch = WatchClient::new(channel.clone());
    let status = watch.watch(tokio_stream::pending::<WatchRequest>()).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::Unimplemented, "Watch is not supported by d-engine-kv"));

    let mut maintenance = MaintenanceClient::new(channel.clone());
    assert_eq!(maintenance.snapshot(SnapshotRequest {}).await.unwrap_err().code(), Code::Unimplemented);
    assert_eq!(maintenance.defragment(DefragmentRequest {}).await.unwrap_err().code(), Code::Unimplemented);
    let mut cluster = ClusterClient::new(channel);
    assert_eq!(cluster.member_add(MemberAddRequest::default()).await.unwrap_err().code(), Code::Unimplemented);
}

#[tokio::test]
async fn status_and_member_list_report_the_cluster() {
    let server = start_server().await;
    let channel = channel(&server).await;
    let mut kv = kv_client(&server).await;
    kv.put(put_request("a", "1")).await.unwrap();

    let status = MaintenanceClient::new(channel.clone()).status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.version, d_engine_kv::SERVER_VERSION);
    assert_eq!((status.leader, status.raft_term, status.raft_index, status.raft_applied_index), (MEMBER_ID, 1, 1, 1));
    assert_eq!((status.db_size, status.is_learner), (4096, false));
    let header = status.header.unwrap();
    assert_eq!((header.member_id, header.cluster_id, header.revision), (MEMBER_ID, CLUSTER_ID, 1));

    let members = ClusterClient::new(channel).member_list(MemberListRequest::default()).await.unwrap().into_inner();
    assert_eq!(members.members.len(), 1);
    let member = &members.members[0];
    assert_eq!((member.id, member.name.as_str(), member.is_learner), (MEMBER_ID, "n1", false));
    assert_eq!(member.client_ur_ls, [format!("http://{}", server.address)]);
}
