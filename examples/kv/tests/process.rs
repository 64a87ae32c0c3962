//! Real `d-engine-kv` processes on loopback: kill -9, restart, partitions, bad settings.

mod processes;

use std::collections::BTreeSet;
use std::time::Duration;

use d_engine_kv::otlp_sink::{OtlpSink, ReceivedSpan};
use d_engine_kv::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use d_engine_kv::proto::etcdserverpb::request_op::Request as Op;
use d_engine_kv::proto::etcdserverpb::response_op::Response as OpResponse;
use d_engine_kv::proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use processes::{PATIENCE, ProcessCluster, bytes};
use tokio::time::Instant;

/// Writes `key{i}` for i in `range` one at a time through any node; returns the keys a
/// node acknowledged. Failures (no leader for a moment, a killed node) are retried with
/// the next key; an unacknowledged key may or may not exist, so nothing is asserted about it.
async fn write_load(cluster: &ProcessCluster, prefix: &str, range: std::ops::Range<u32>) -> BTreeSet<String> {
    let mut acknowledged = BTreeSet::new();
    for i in range {
        let key = format!("{prefix}{i:05}");
        if cluster.put(&key, &format!("value-{i}")).await.is_ok() {
            acknowledged.insert(key);
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    acknowledged
}

/// Waits until node `id` holds at least `count` keys under `prefix` in its local state.
async fn wait_local_count(cluster: &ProcessCluster, id: u64, prefix: &str, count: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let held = cluster.count_local(id, prefix).await;
        if held.is_some_and(|held| held as usize >= count) {
            return;
        }
        assert!(Instant::now() < deadline, "node {id} holds {held:?} of {count} keys:\n{}", cluster.stderr(id));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_during_a_write_load_loses_no_acknowledged_write_and_catches_up_after_restart() {
    let mut cluster = ProcessCluster::start(3, "redb");
    let leader = cluster.agreed_leader(&[1, 2, 3]).await;

    let mut acknowledged = write_load(&cluster, "load/", 0..100).await;
    // The load keeps running while the leader dies under it (SIGKILL by pid, mid-stream).
    let pid = cluster.pid(leader);
    let kill_mid_load = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let killed = std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        assert!(killed.is_ok_and(|status| status.success()), "kill -9 the leader");
    };
    let (more, ()) = tokio::join!(write_load(&cluster, "load/", 100..250), kill_mid_load);
    acknowledged.extend(more);
    cluster.kill9(leader); // reaps it
    let survivors: Vec<u64> = cluster.running();
    let new_leader = cluster.agreed_leader(&survivors).await;
    assert_ne!(new_leader, leader, "a killed node cannot lead");
    acknowledged.extend(write_load(&cluster, "load/", 250..300).await);
    assert!(acknowledged.len() >= 150, "most writes are acknowledged: {}", acknowledged.len());

    cluster.spawn(leader);
    for key in &acknowledged {
        let value = cluster.get(new_leader, key, false).await.expect("a linearizable read");
        assert!(value.is_some(), "acknowledged write {key} was lost");
    }
    // The restarted node replays its log from disk and receives what it missed.
    wait_local_count(&cluster, leader, "load/", acknowledged.len()).await;
    for key in &acknowledged {
        let value = cluster.get(leader, key, true).await.expect("a serializable read on the restarted node");
        assert!(value.is_some(), "the restarted node lacks {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_steps_down_and_the_new_leaders_write_survives_the_heal() {
    let mut cluster = ProcessCluster::start(3, "redb");
    let old = cluster.agreed_leader(&[1, 2, 3]).await;
    cluster.put("before", "1").await.expect("a write before the partition");

    cluster.signal(old, "USR1"); // cut off from both peers, both directions
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let new = cluster.agreed_leader(&others).await;
    assert_ne!(new, old);
    // The isolated leader hears from no quorum (CheckQuorum) and stops claiming leadership.
    let deadline = Instant::now() + PATIENCE;
    while cluster.leader_seen_by(old).await == Some(old) {
        assert!(Instant::now() < deadline, "the partitioned leader never stepped down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = cluster.kv(new).await.expect("the new leader answers");
    let request = PutRequest { key: bytes("after"), value: bytes("2"), ..Default::default() };
    client.put(request).await.expect("the new leader acknowledges a write");

    cluster.signal(old, "USR2");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let value = cluster.get(old, "after", true).await;
        if value.as_ref().is_ok_and(|v| v.as_deref() == Some(b"2".as_slice())) {
            break;
        }
        assert!(Instant::now() < deadline, "the healed node never got the new write: {value:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in 1..=3 {
        let value = cluster.get(id, "after", false).await.expect("a linearizable read");
        assert_eq!(value.as_deref(), Some(b"2".as_slice()), "node {id} serves the acknowledged write");
        let value = cluster.get(id, "before", false).await.expect("a linearizable read");
        assert_eq!(value.as_deref(), Some(b"1".as_slice()));
    }
    for id in 1..=3 {
        assert!(cluster.terminate(id).await.success(), "node {id} stops gracefully:\n{}", cluster.stderr(id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_etcd_client_drives_put_range_and_txn_against_the_cluster() {
    let cluster = ProcessCluster::start(3, "sled");
    let leader = cluster.agreed_leader(&[1, 2, 3]).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    // Through a follower: it forwards to the leader.
    let mut client = cluster.kv(follower).await.expect("the follower answers");
    let put = client
        .put(PutRequest { key: bytes("x"), value: bytes("1"), prev_kv: true, ..Default::default() })
        .await
        .expect("put through a follower")
        .into_inner();
    assert!(put.prev_kv.is_none(), "x did not exist");
    let revision = put.header.expect("a header").revision;

    let txn = |expected: &str, new: &str| TxnRequest {
        compare: vec![Compare {
            key: bytes("x"),
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            target_union: Some(TargetUnion::Value(bytes(expected))),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(Op::RequestPut(PutRequest { key: bytes("x"), value: bytes(new), ..Default::default() })),
        }],
        failure: vec![RequestOp {
            request: Some(Op::RequestRange(RangeRequest { key: bytes("x"), ..Default::default() })),
        }],
    };
    let swapped = client.txn(txn("1", "2")).await.expect("txn").into_inner();
    assert!(swapped.succeeded, "x was 1: the compare-and-swap succeeds");
    let refused = client.txn(txn("1", "3")).await.expect("txn").into_inner();
    assert!(!refused.succeeded, "x is 2 now: the second swap fails");
    let Some(OpResponse::ResponseRange(current)) = &refused.responses[0].response else {
        panic!("the failure branch reads x: {refused:?}")
    };
    assert_eq!(current.kvs[0].value, bytes("2"));

    let mut on_leader = cluster.kv(leader).await.expect("the leader answers");
    let read = on_leader.range(RangeRequest { key: bytes("x"), ..Default::default() }).await.expect("range");
    let read = read.into_inner();
    assert_eq!(read.kvs[0].value, bytes("2"));
    assert_eq!(read.kvs[0].version, 2, "created, then swapped once");
    assert_eq!(read.kvs[0].create_revision, revision);
    assert_eq!(read.header.expect("a header").revision, revision + 1, "the failed txn wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_exit_with_code_2_and_name_the_field() {
    let mut cluster = ProcessCluster::configure(1, "memory");
    let path = cluster.settings_path(1);
    let text = std::fs::read_to_string(&path).unwrap().replace("id = 1\n", "id = \"one\"\n");
    std::fs::write(&path, text).unwrap();
    cluster.spawn(1);
    let status = cluster.wait_exit(1).await;
    assert_eq!(status.code(), Some(2), "{}", cluster.stderr(1));
    assert!(cluster.stderr(1).contains("node.id"), "the message names the field:\n{}", cluster.stderr(1));

    std::fs::remove_file(&path).unwrap();
    cluster.spawn(1);
    assert_eq!(cluster.wait_exit(1).await.code(), Some(2), "a missing settings file is bad usage");
    assert!(cluster.stderr(1).contains("cannot load settings"), "{}", cluster.stderr(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_override_is_applied_and_validated_like_the_file() {
    let cluster = ProcessCluster::configure(1, "memory");
    let status = std::process::Command::new(processes::BINARY)
        .arg("--config")
        .arg(cluster.settings_path(1))
        .env("D_ENGINE_RAFT__TICK_MS", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run d-engine-kv");
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid setting raft.tick_ms = 0"), "the override was read and checked: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_exits_with_code_1_and_names_the_address() {
    let mut cluster = ProcessCluster::configure(1, "memory");
    let taken = std::net::TcpListener::bind(("127.0.0.1", cluster.client_ports[0])).expect("take the client port");
    cluster.spawn(1);
    let status = cluster.wait_exit(1).await;
    drop(taken);
    assert_eq!(status.code(), Some(1), "{}", cluster.stderr(1));
    let expected = format!("cannot listen on 127.0.0.1:{}", cluster.client_ports[0]);
    assert!(cluster.stderr(1).contains(&expected), "{}", cluster.stderr(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_with_another_clusters_id_exits_with_code_1_and_the_rest_serve() {
    let mut cluster = ProcessCluster::configure(3, "memory");
    cluster.write_settings(3, "some-other-cluster");
    for id in 1..=3 {
        cluster.spawn(id);
    }
    let status = cluster.wait_exit(3).await;
    assert_eq!(status.code(), Some(1), "{}", cluster.stderr(3));
    assert!(cluster.stderr(3).contains("cluster id mismatch"), "{}", cluster.stderr(3));
    cluster.agreed_leader(&[1, 2]).await;
    cluster.put("still", "serving").await.expect("nodes 1 and 2 are a quorum");
}

/// Runs `etcdctl --endpoints=<all nodes> <args>` with `stdin`; panics with its output on failure.
fn etcdctl(cluster: &ProcessCluster, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    // host:port, not http://host:port: etcdctl 3.4 puts the scheme into the HTTP/2
    // :authority for `endpoint status`, which the Rust HTTP/2 server refuses.
    let endpoints: Vec<String> = cluster.client_ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
    let mut child = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(["--dial-timeout=10s", "--command-timeout=10s"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start etcdctl");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let output = child.wait_with_output().expect("etcdctl output");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert!(output.status.success(), "etcdctl {args:?} failed: {}{}", text(&output.stdout), text(&output.stderr));
    text(&output.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_drives_the_three_process_cluster() {
    let installed = std::process::Command::new("etcdctl").arg("version").output().is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!("SKIPPED: etcdctl is not installed (Debian: apt-get install etcd-client); .ci/run installs it");
        return;
    }
    let cluster = ProcessCluster::start(3, "redb");
    let leader = cluster.agreed_leader(&[1, 2, 3]).await;
    assert_eq!(etcdctl(&cluster, &["put", "greeting", "hello"], ""), "OK\n");
    assert_eq!(etcdctl(&cluster, &["put", "dir/a", "1"], ""), "OK\n");
    assert_eq!(etcdctl(&cluster, &["put", "dir/b", "2"], ""), "OK\n");
    assert_eq!(etcdctl(&cluster, &["get", "greeting"], ""), "greeting\nhello\n");
    assert_eq!(etcdctl(&cluster, &["get", "--prefix", "dir/"], ""), "dir/a\n1\ndir/b\n2\n");
    assert_eq!(etcdctl(&cluster, &["del", "dir/a"], ""), "1\n");
    let script = "value(\"greeting\") = \"hello\"\n\nput greeting bye\n\nput greeting lost\n\n";
    assert_eq!(etcdctl(&cluster, &["txn"], script), "SUCCESS\n\nOK\n");
    assert_eq!(etcdctl(&cluster, &["txn"], script), "FAILURE\n\nOK\n");
    assert_eq!(etcdctl(&cluster, &["get", "greeting"], ""), "greeting\nlost\n");

    let status = etcdctl(&cluster, &["endpoint", "status"], "");
    let rows: Vec<&str> = status.lines().collect();
    assert_eq!(rows.len(), 3, "one row per endpoint:\n{status}");
    for (i, row) in rows.iter().enumerate() {
        let fields: Vec<&str> = row.split(", ").collect();
        assert_eq!(fields[0], format!("127.0.0.1:{}", cluster.client_ports[i]), "{row}");
        assert_eq!(fields[1], format!("{:x}", i + 1), "the member id: {row}");
        assert_eq!(fields[4], if i as u64 + 1 == leader { "true" } else { "false" }, "is leader: {row}");
    }
    let members = etcdctl(&cluster, &["member", "list"], "");
    assert_eq!(members.lines().count(), 3, "{members}");
    assert!(members.contains(&format!("http://127.0.0.1:{}", cluster.client_ports[0])), "{members}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_put_through_a_follower_reaches_the_collector_as_one_trace_from_all_three_processes() {
    let collector = OtlpSink::keeping();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the collector");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(collector.clone().serve(listener));
    let mut cluster = ProcessCluster::configure(3, "redb");
    cluster.append_settings(|id| format!("\n[tracing]\notlp_endpoint = \"{url}\"\nservice_name = \"kv-node-{id}\"\n"));
    for id in 1..=3 {
        cluster.spawn(id);
    }
    let leader = cluster.agreed_leader(&[1, 2, 3]).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");

    // The caller's trace context, as any OpenTelemetry-instrumented etcd client sends it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(PutRequest { key: bytes("traced"), value: bytes("1"), ..Default::default() });
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
    let mut client = cluster.kv(follower).await.expect("the follower answers");
    client.put(request).await.expect("a put through a follower");

    // Spans leave each process in batches (every few seconds): wait for the whole trace.
    let wanted =
        trace_id.as_bytes().chunks(2).map(|hex| u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap());
    let wanted: Vec<u8> = wanted.collect();
    let deadline = Instant::now() + PATIENCE;
    let spans = loop {
        let spans: Vec<_> = collector.spans().into_iter().filter(|span| span.trace_id == wanted).collect();
        let count = |name: &str| spans.iter().filter(|span| span.name == name).count();
        if count("d_engine.replicate") == 2 && count("d_engine.storage_sync") == 3 && count("d_engine.apply") == 1 {
            break spans;
        }
        let summary: Vec<String> = spans.iter().map(ReceivedSpan::summary).collect();
        assert!(Instant::now() < deadline, "the trace never completed; spans of it so far: {summary:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let summary: Vec<String> = spans.iter().map(ReceivedSpan::summary).collect();
    let one = |name: &str, node: u64| {
        let found: Vec<_> = spans.iter().filter(|s| s.name == name && s.node_id == Some(node as i64)).collect();
        assert_eq!(found.len(), 1, "one {name} on node {node}: {summary:#?}");
        found[0].clone()
    };
    let entry = one("d_engine.grpc", follower);
    assert_eq!(entry.parent_span_id, vec![0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7], "under the caller's span");
    assert_eq!(entry.service, format!("kv-node-{follower}"), "each process names itself");
    let forwarded = one("d_engine.grpc", leader);
    assert_eq!(forwarded.parent_span_id, entry.span_id, "the follower forwarded the put with its trace context");
    let propose = one("d_engine.propose", leader);
    assert_eq!(propose.parent_span_id, forwarded.span_id);
    for node in (1..=3).filter(|id| *id != leader) {
        let replicate = one("d_engine.replicate", node);
        assert_eq!(replicate.parent_span_id, propose.span_id, "node {node} appended the leader's traced entry");
        assert_eq!(one("d_engine.storage_sync", node).parent_span_id, replicate.span_id);
        assert_eq!(replicate.service, format!("kv-node-{node}"));
    }
    for stage in ["d_engine.storage_sync", "d_engine.commit", "d_engine.apply"] {
        assert_eq!(one(stage, leader).parent_span_id, propose.span_id, "{stage} on the leader");
    }
    for id in 1..=3 {
        let status = cluster.terminate(id).await;
        assert!(status.success(), "node {id} stops gracefully, flushing its spans: {}", cluster.stderr(id));
    }
}
