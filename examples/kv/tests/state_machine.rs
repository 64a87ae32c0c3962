//! etcd semantics of the KV state machine, applied entry by entry without any network.

mod common;

use bytes::Bytes;
use common::*;
use d_engine_core::Membership;
use d_engine_core::storage::{Snapshot, SnapshotMeta, StateMachine, StateStore};
use d_engine_kv::proto::command::kv_output;
use d_engine_kv::proto::etcdserverpb::compare::{CompareResult, TargetUnion};
use d_engine_kv::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use d_engine_kv::proto::etcdserverpb::*;
use d_engine_kv::{KvError, KvStateMachine};
use d_engine_memory::MemStateStore;
use tonic::Code;

fn range(harness: &Harness<impl StateStore>, request: RangeRequest) -> RangeResponse {
    harness.state_machine.range(&request).expect("range")
}

fn keys(response: &RangeResponse) -> Vec<String> {
    response.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
}

fn rejected(output: kv_output::Result) -> (Code, String) {
    match output {
        kv_output::Result::Rejected(rejection) => (Code::from_i32(rejection.code), rejection.message),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn a_new_store_is_at_revision_zero_and_empty() {
    let harness = Harness::new();
    assert_eq!(harness.revision(), 0);
    assert_eq!(harness.get("foo"), None);
}

#[test]
fn put_put_delete_put_tracks_create_mod_revision_and_version() {
    let mut harness = Harness::new();
    let first = harness.put("foo", "a");
    assert_eq!(first.header.unwrap().revision, 1);
    let kv = harness.get("foo").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version, kv.lease), (1, 1, 1, 0));
    assert_eq!(kv.value, bytes("a"));

    harness.put("foo", "b");
    let kv = harness.get("foo").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 2, 2));

    let deleted = harness.delete("foo", "");
    assert_eq!(deleted.deleted, 1);
    assert_eq!(deleted.header.unwrap().revision, 3);
    assert_eq!(deleted.prev_kvs[0].value, bytes("b"));
    assert_eq!(harness.get("foo"), None);

    harness.put("foo", "c");
    let kv = harness.get("foo").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (4, 4, 1), "a delete resets the key's history");
    assert_eq!(harness.revision(), 4);
}

#[test]
fn put_returns_the_previous_pair_only_when_asked() {
    let mut harness = Harness::new();
    harness.put("foo", "a");
    let without = harness.put("foo", "b");
    assert_eq!(without.prev_kv, None);
    let request = PutRequest { prev_kv: true, ..put_request("foo", "c") };
    let kv_output::Result::Put(with) = harness.apply(kv_command_put(request)) else { panic!("not a put") };
    let previous = with.prev_kv.unwrap();
    assert_eq!((previous.key, previous.value, previous.version), (bytes("foo"), bytes("b"), 2));
}

fn kv_command_put(request: PutRequest) -> d_engine_kv::proto::command::kv_command::Request {
    d_engine_kv::proto::command::kv_command::Request::Put(request)
}

#[test]
fn put_with_ignore_value_keeps_the_value_and_needs_the_key() {
    let mut harness = Harness::new();
    let missing = PutRequest { ignore_value: true, ..put_request("foo", "") };
    assert_eq!(rejected(harness.apply(kv_command_put(missing.clone()))).0, Code::InvalidArgument);
    assert_eq!(harness.revision(), 0, "a refused command takes no revision");
    harness.put("foo", "kept");
    harness.apply(kv_command_put(missing));
    let kv = harness.get("foo").unwrap();
    assert_eq!((kv.value, kv.version, kv.mod_revision), (bytes("kept"), 2, 2));
}

#[test]
fn an_empty_key_or_a_lease_is_refused_deterministically() {
    let mut harness = Harness::new();
    let (code, message) = rejected(harness.apply(kv_command_put(put_request("", "x"))));
    assert_eq!((code, message.as_str()), (Code::InvalidArgument, "etcdserver: key is not provided"));
    let leased = PutRequest { lease: 7, ..put_request("foo", "x") };
    assert_eq!(rejected(harness.apply(kv_command_put(leased))).0, Code::NotFound);
    assert_eq!(harness.revision(), 0);
    let error = harness.state_machine.range(&RangeRequest::default()).unwrap_err();
    assert!(matches!(error, KvError::KeyNotProvided));
}

#[test]
fn delete_range_with_a_prefix_counts_and_takes_one_revision() {
    let mut harness = Harness::new();
    for key in ["a", "p/1", "p/2", "p/3", "q"] {
        harness.put(key, "v");
    }
    let deleted = harness.delete("p/", "p0");
    assert_eq!(deleted.deleted, 3);
    assert_eq!(deleted.prev_kvs.len(), 3);
    assert_eq!(harness.revision(), 6, "one revision for the whole range");
    assert_eq!(
        keys(&range(&harness, RangeRequest { key: bytes("\0"), range_end: bytes("\0"), ..Default::default() })),
        ["a", "q"]
    );
}

#[test]
fn deleting_nothing_takes_no_revision() {
    let mut harness = Harness::new();
    harness.put("a", "v");
    let deleted = harness.delete("zzz", "");
    assert_eq!(deleted.deleted, 0);
    assert_eq!(deleted.header.unwrap().revision, 1);
    assert_eq!(harness.revision(), 1);
}

#[test]
fn delete_everything_from_a_key_with_nul_range_end() {
    let mut harness = Harness::new();
    for key in ["a", "b", "c"] {
        harness.put(key, "v");
    }
    assert_eq!(harness.delete("b", "\0").deleted, 2);
    assert!(harness.get("a").is_some());
}

#[test]
fn range_limit_more_count_only_and_keys_only() {
    let mut harness = Harness::new();
    for key in ["k1", "k2", "k3", "k4"] {
        harness.put(key, "value");
    }
    let prefix = RangeRequest { key: bytes("k"), range_end: bytes("l"), ..Default::default() };
    let limited = range(&harness, RangeRequest { limit: 2, ..prefix.clone() });
    assert_eq!(keys(&limited), ["k1", "k2"]);
    assert!(limited.more);
    assert_eq!(limited.count, 4);
    assert_eq!(limited.header.unwrap().revision, 4);

    let all = range(&harness, RangeRequest { limit: 4, ..prefix.clone() });
    assert!(!all.more);

    let counted = range(&harness, RangeRequest { count_only: true, ..prefix.clone() });
    assert_eq!((counted.kvs.len(), counted.count, counted.more), (0, 4, false));

    let keys_only = range(&harness, RangeRequest { keys_only: true, ..prefix.clone() });
    assert_eq!(keys(&keys_only), ["k1", "k2", "k3", "k4"]);
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty() && kv.version == 1));

    let from_k3 = range(&harness, RangeRequest { key: bytes("k3"), range_end: bytes("\0"), ..Default::default() });
    assert_eq!(keys(&from_k3), ["k3", "k4"]);
    let inverted = range(&harness, RangeRequest { key: bytes("k3"), range_end: bytes("k1"), ..Default::default() });
    assert_eq!(inverted.count, 0);
}

#[test]
fn range_sorts_and_filters_by_revision() {
    let mut harness = Harness::new();
    harness.put("b", "1");
    harness.put("a", "2");
    harness.put("c", "3");
    harness.put("b", "4");
    let all = RangeRequest { key: bytes("\0"), range_end: bytes("\0"), ..Default::default() };
    let by_mod_desc =
        RangeRequest { sort_order: SortOrder::Descend as i32, sort_target: SortTarget::Mod as i32, ..all.clone() };
    assert_eq!(keys(&range(&harness, by_mod_desc)), ["b", "c", "a"]);
    let by_create = RangeRequest { sort_target: SortTarget::Create as i32, ..all.clone() };
    assert_eq!(keys(&range(&harness, by_create)), ["b", "a", "c"]);
    let recent = RangeRequest { min_mod_revision: 3, ..all.clone() };
    let recent = range(&harness, recent);
    assert_eq!(keys(&recent), ["b", "c"]);
    assert_eq!(recent.count, 3, "count ignores the filters, as in etcd");
    let bad_sort = RangeRequest { sort_order: 9, ..all };
    assert!(matches!(harness.state_machine.range(&bad_sort), Err(KvError::InvalidSortOption)));
}

#[test]
fn range_at_another_revision_is_compacted_or_future() {
    let mut harness = Harness::new();
    harness.put("a", "1");
    harness.put("a", "2");
    let at = |revision| RangeRequest { key: bytes("a"), revision, ..Default::default() };
    assert_eq!(range(&harness, at(2)).kvs[0].value, bytes("2"), "the current revision is readable");
    let old = harness.state_machine.range(&at(1)).unwrap_err();
    assert!(matches!(old, KvError::RevisionCompacted));
    assert_eq!(old.code(), Code::OutOfRange);
    assert!(matches!(harness.state_machine.range(&at(3)), Err(KvError::FutureRevision)));
}

#[test]
fn txn_compares_every_target_with_every_result() {
    let mut harness = Harness::new();
    harness.put("k", "m");
    harness.put("k", "m"); // version 2, create 1, mod 2
    let cases = [
        (TargetUnion::Value(bytes("m")), [true, false, false, false]),
        (TargetUnion::Value(bytes("a")), [false, true, false, true]),
        (TargetUnion::Value(bytes("z")), [false, false, true, true]),
        (TargetUnion::Version(2), [true, false, false, false]),
        (TargetUnion::Version(1), [false, true, false, true]),
        (TargetUnion::CreateRevision(1), [true, false, false, false]),
        (TargetUnion::CreateRevision(5), [false, false, true, true]),
        (TargetUnion::ModRevision(2), [true, false, false, false]),
        (TargetUnion::ModRevision(1), [false, true, false, true]),
        (TargetUnion::Lease(0), [true, false, false, false]),
    ];
    let results = [CompareResult::Equal, CompareResult::Greater, CompareResult::Less, CompareResult::NotEqual];
    for (target, expected) in cases {
        for (result, expected) in results.into_iter().zip(expected) {
            let request = TxnRequest {
                compare: vec![compare("k", result, target.clone())],
                success: vec![get_op("k")],
                failure: vec![],
            };
            let response = harness.txn(request);
            assert_eq!(response.succeeded, expected, "{target:?} {result:?}");
        }
    }
    assert_eq!(harness.revision(), 2, "read-only txns take no revision");
}

#[test]
fn txn_compares_on_a_missing_key_against_zero_and_never_match_a_value() {
    let mut harness = Harness::new();
    let absent_version = compare("new", CompareResult::Equal, TargetUnion::Version(0));
    let created = harness.txn(TxnRequest {
        compare: vec![absent_version.clone()],
        success: vec![put_op("new", "1")],
        failure: vec![],
    });
    assert!(created.succeeded);
    let again =
        harness.txn(TxnRequest { compare: vec![absent_version], success: vec![put_op("new", "2")], failure: vec![] });
    assert!(!again.succeeded);
    assert_eq!(harness.get("new").unwrap().value, bytes("1"));
    let value = compare("missing", CompareResult::NotEqual, TargetUnion::Value(bytes("x")));
    assert!(!harness.txn(TxnRequest { compare: vec![value], ..Default::default() }).succeeded);
}

#[test]
fn txn_runs_the_failure_branch_and_reports_every_response() {
    let mut harness = Harness::new();
    harness.put("foo", "bar");
    let request = TxnRequest {
        compare: vec![compare("foo", CompareResult::Equal, TargetUnion::Value(bytes("nope")))],
        success: vec![put_op("foo", "won")],
        failure: vec![put_op("foo", "lost"), get_op("foo"), delete_op("other")],
    };
    let response = harness.txn(request);
    assert!(!response.succeeded);
    assert_eq!(response.responses.len(), 3);
    let Some(response_op::Response::ResponseRange(read)) = &response.responses[1].response else { panic!("range") };
    assert_eq!(read.kvs[0].value, bytes("lost"), "a read in a txn sees the txn's earlier writes");
    assert_eq!(response.header.unwrap().revision, 2);
}

#[test]
fn a_txn_with_several_writes_is_one_revision() {
    let mut harness = Harness::new();
    harness.put("gone", "x");
    let response = harness.txn(TxnRequest {
        compare: vec![],
        success: vec![put_op("a", "1"), put_op("b", "2"), delete_op("gone")],
        failure: vec![],
    });
    assert!(response.succeeded);
    assert_eq!(response.header.unwrap().revision, 2);
    assert_eq!(harness.revision(), 2);
    for key in ["a", "b"] {
        let kv = harness.get(key).unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
    }
    assert_eq!(harness.get("gone"), None);
}

#[test]
fn a_txn_that_writes_a_key_twice_is_refused_whole() {
    let mut harness = Harness::new();
    let twice = TxnRequest { compare: vec![], success: vec![put_op("a", "1"), put_op("a", "2")], failure: vec![] };
    let output = harness.apply(d_engine_kv::proto::command::kv_command::Request::Txn(twice));
    assert_eq!(rejected(output).1, "etcdserver: duplicate key given in txn request");
    let put_and_delete =
        TxnRequest { compare: vec![], success: vec![put_op("a", "1"), delete_op("a")], failure: vec![] };
    let output = harness.apply(d_engine_kv::proto::command::kv_command::Request::Txn(put_and_delete));
    assert_eq!(rejected(output).0, Code::InvalidArgument);
    assert_eq!(harness.revision(), 0);
    assert_eq!(harness.get("a"), None);
}

#[test]
fn a_txn_refused_midway_leaves_no_trace() {
    let mut harness = Harness::new();
    let ignore_missing = PutRequest { ignore_value: true, ..put_request("missing", "") };
    let request = TxnRequest {
        compare: vec![],
        success: vec![put_op("a", "1"), RequestOp { request: Some(request_op::Request::RequestPut(ignore_missing)) }],
        failure: vec![],
    };
    let output = harness.apply(d_engine_kv::proto::command::kv_command::Request::Txn(request));
    assert_eq!(rejected(output).1, "etcdserver: key not found");
    assert_eq!(harness.get("a"), None);
    assert_eq!(harness.revision(), 0);
    assert_eq!(harness.state_machine.last_applied().index.0, 1, "the entry is applied even though it was refused");
}

#[test]
fn nested_txns_share_the_outer_revision() {
    let mut harness = Harness::new();
    let inner = TxnRequest { compare: vec![], success: vec![put_op("inner", "1")], failure: vec![] };
    let response = harness.txn(TxnRequest {
        compare: vec![],
        success: vec![put_op("outer", "1"), RequestOp { request: Some(request_op::Request::RequestTxn(inner)) }],
        failure: vec![],
    });
    assert!(response.succeeded);
    assert_eq!(harness.revision(), 1);
    assert_eq!(harness.get("inner").unwrap().mod_revision, 1);
}

#[test]
fn noop_and_undecodable_entries_advance_applied_only() {
    let mut harness = Harness::new();
    assert_eq!(harness.noop(), Bytes::new());
    let entry = d_engine_core::Entry {
        log_id: d_engine_core::LogId::new(1, 2),
        payload: d_engine_core::EntryPayload::Command(Bytes::from_static(b"\xff\xff\xff")),
    };
    let outputs = harness.state_machine.apply(&[entry]).unwrap();
    let output = <d_engine_kv::proto::command::KvOutput as prost::Message>::decode(outputs[0].as_ref()).unwrap();
    assert_eq!(rejected(output.result.unwrap()).0, Code::InvalidArgument);
    assert_eq!(harness.state_machine.last_applied(), d_engine_core::LogId::new(1, 2));
    assert_eq!(harness.revision(), 0);
}

#[test]
fn state_and_applied_id_survive_a_reopen_after_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut harness = Harness::over(d_engine_redb::RedbStateStore::open(dir.path()).unwrap());
        harness.put("a", "1");
        harness.put("a", "2");
        // What the node's apply thread does when the node stops gracefully.
        harness.state_machine.flush().unwrap();
    }
    let harness = Harness::over(d_engine_redb::RedbStateStore::open(dir.path()).unwrap());
    assert_eq!(harness.revision(), 2);
    assert_eq!(harness.state_machine.last_applied(), d_engine_core::LogId::new(1, 2));
    assert_eq!(harness.get("a").unwrap().version, 2);
}

#[test]
fn without_a_flush_a_reopen_is_back_at_the_last_sync_for_the_log_to_re_apply() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut harness = Harness::over(d_engine_redb::RedbStateStore::open(dir.path()).unwrap());
        harness.put("a", "1");
        harness.put("a", "2");
        // Dropped as a crash would leave it: the deferred batches are gone, all of them.
    }
    let harness = Harness::over(d_engine_redb::RedbStateStore::open(dir.path()).unwrap());
    assert_eq!(harness.revision(), 0, "data, revision and applied id are back together");
    assert_eq!(harness.state_machine.last_applied(), d_engine_core::LogId::default());
    assert!(harness.get("a").is_none());
}

#[test]
fn a_snapshot_job_on_redb_builds_the_state_it_was_taken_at_while_applying_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = Harness::over(d_engine_redb::RedbStateStore::open(dir.path()).unwrap());
    harness.put("a", "1");
    harness.put("b", "2");
    let expected = harness.state_machine.build_snapshot().unwrap();
    let job = harness.state_machine.snapshot_job().unwrap();
    harness.put("a", "3");
    harness.delete("b", "");
    let built = std::thread::spawn(job).join().unwrap().unwrap();
    assert_eq!(built, expected, "the job's snapshot is the state at index 2, not the later writes");
    assert_eq!(harness.revision(), 4, "applying went on");
}

#[test]
fn a_snapshot_from_memory_installs_into_redb_with_the_same_state() {
    let mut source = Harness::new();
    for (key, value) in [("a", "1"), ("b", "2"), ("c", "3"), ("b", "4")] {
        source.put(key, value);
    }
    source.delete("c", "");
    let (last_included, data) = source.state_machine.build_snapshot().unwrap();
    assert_eq!(last_included, source.state_machine.last_applied());

    let dir = tempfile::tempdir().unwrap();
    let mut target: KvStateMachine<_> =
        KvStateMachine::open(d_engine_redb::RedbStateStore::open(dir.path()).unwrap()).unwrap();
    let membership = Membership::with_voters([1]).unwrap();
    let snapshot = Snapshot { meta: SnapshotMeta { last_included, membership }, data };
    target.install_snapshot(&snapshot).unwrap();

    assert_eq!(target.last_applied(), last_included);
    assert_eq!(target.revision(), source.revision());
    let everything = RangeRequest { key: bytes("\0"), range_end: bytes("\0"), ..Default::default() };
    assert_eq!(target.range(&everything).unwrap(), source.state_machine.range(&everything).unwrap());

    // The installed state machine carries on from the snapshot's revision.
    let mut continued = Harness { state_machine: target };
    let response = continued.put("d", "5");
    assert_eq!(response.header.unwrap().revision, source.revision() + 1);
}

#[test]
fn a_snapshot_older_than_applied_is_misuse() {
    let mut harness = Harness::new();
    harness.put("a", "1");
    let (_, data) = KvStateMachine::open(MemStateStore::new()).unwrap().build_snapshot().unwrap();
    let membership = Membership::with_voters([1]).unwrap();
    let snapshot = Snapshot { meta: SnapshotMeta { last_included: Default::default(), membership }, data };
    assert!(harness.state_machine.install_snapshot(&snapshot).is_err());
    assert_eq!(harness.get("a").unwrap().value, bytes("1"));
}
