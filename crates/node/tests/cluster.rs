//! Three nodes in one process over real gRPC on loopback.

mod common;

use std::time::Duration;

use common::{Cluster, other_than};
use d_engine::{LogStoreKind, ReadConsistency, RequestError, StorageKind};

async fn write(cluster: &Cluster, leader: u64, key: &str, value: &str) -> u64 {
    let applied = cluster.node(leader).propose(format!("{key}={value}")).await.expect("the leader accepts the write");
    applied.log_id.index.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_replicate_and_serve_reads_at_each_consistency() {
    let cluster = Cluster::start(3, StorageKind::Memory).await;
    let leader = cluster.leader().await;
    let mut last = 0;
    for i in 0..50 {
        last = write(&cluster, leader, &format!("k{i}"), &format!("v{i}")).await;
    }
    let value = cluster.node(leader).read(ReadConsistency::Linearizable, |r| r.values.get("k49").cloned()).await;
    assert_eq!(value, Ok(Some("v49".to_owned())), "a linearizable read sees the last acknowledged write");
    let value = cluster.node(leader).read(ReadConsistency::Lease, |r| r.values.len()).await;
    assert_eq!(value, Ok(50));
    for id in 1..=3 {
        cluster.wait_applied(id, last).await;
        let values = cluster.node(id).read(ReadConsistency::Serializable, |r| r.values.clone()).await.unwrap();
        assert_eq!(values.len(), 50, "node {id} applied every write");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_refuses_writes_and_linearizable_reads_with_the_leaders_address() {
    let cluster = Cluster::start(3, StorageKind::Memory).await;
    let leader = cluster.leader().await;
    let follower = other_than(&cluster, &[leader]);
    let expected_address = format!("http://127.0.0.1:{}", cluster.ports[leader as usize - 1]);
    let refused = cluster.node(follower).propose("k=v").await;
    assert_eq!(
        refused,
        Err(RequestError::NotLeader { leader: Some(common::id(leader)), address: Some(expected_address.clone()) })
    );
    let refused = cluster.node(follower).read(ReadConsistency::Linearizable, |_| ()).await;
    assert_eq!(
        refused,
        Err(RequestError::NotLeader { leader: Some(common::id(leader)), address: Some(expected_address) })
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_oversized_commands_are_refused_before_they_reach_the_log() {
    let cluster = Cluster::start(1, StorageKind::Memory).await;
    let leader = cluster.leader().await;
    let node = cluster.node(leader);
    assert!(matches!(node.propose("").await, Err(RequestError::InvalidArgument(_))));
    let huge = vec![b'x'; 2 << 20];
    assert!(matches!(node.propose(huge).await, Err(RequestError::TooLarge { .. })));
    assert_eq!(node.status().last_log_index.0, 1, "only the leader's no-op is in the log");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_steps_down_and_the_new_leaders_writes_survive_the_heal() {
    let cluster = Cluster::start(3, StorageKind::Memory).await;
    let old = cluster.leader().await;
    write(&cluster, old, "before", "1").await;
    cluster.node(old).network_faults().isolate();

    // The others elect a new leader; the old one steps down once it misses a quorum.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let new = loop {
        let candidates: Vec<u64> = (1..=3).filter(|id| *id != old && cluster.node(*id).status().is_leader()).collect();
        if let [new] = candidates[..]
            && !cluster.node(old).status().is_leader()
        {
            break new;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new leader, or the old one did not step down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let index = write(&cluster, new, "after", "2").await;
    let refused = cluster.node(old).propose("lost=3").await;
    assert!(matches!(refused, Err(RequestError::NotLeader { .. })), "the isolated old leader takes no write");

    cluster.node(old).network_faults().heal();
    cluster.wait_applied(old, index).await;
    let values = cluster.node(old).read(ReadConsistency::Serializable, |r| r.values.clone()).await.unwrap();
    assert_eq!(values.get("after").map(String::as_str), Some("2"), "the healed node has the new leader's write");
    assert_eq!(values.get("before").map(String::as_str), Some("1"));
    assert!(!values.contains_key("lost"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_on_redb_keeps_every_acknowledged_write_across_a_full_restart() {
    every_acknowledged_write_survives_a_full_restart(LogStoreKind::Wal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_on_redb_with_the_redb_log_keeps_every_acknowledged_write_across_a_full_restart() {
    every_acknowledged_write_survives_a_full_restart(LogStoreKind::Adapter).await;
}

async fn every_acknowledged_write_survives_a_full_restart(log_store: LogStoreKind) {
    let mut cluster = Cluster::start_configured(3, StorageKind::Redb, None, log_store).await;
    let leader = cluster.leader().await;
    let mut last = 0;
    for i in 0..20 {
        last = write(&cluster, leader, &format!("k{i}"), &i.to_string()).await;
    }
    for id in 1..=3 {
        cluster.stop(id).await;
    }
    for id in 1..=3 {
        cluster.restart(id).await;
    }
    let leader = cluster.leader().await;
    // The new leader's no-op commits everything before it; reads then see all of it.
    let values = cluster.node(leader).read(ReadConsistency::Linearizable, |r| r.values.clone()).await.unwrap();
    assert_eq!(values.len(), 20, "every acknowledged write survived the restart");
    for id in 1..=3 {
        cluster.wait_applied(id, last).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_follower_catches_up_after_a_restart() {
    let mut cluster = Cluster::start(3, StorageKind::Redb).await;
    let leader = cluster.leader().await;
    let follower = other_than(&cluster, &[leader]);
    cluster.stop(follower).await;
    let mut last = 0;
    for i in 0..30 {
        last = write(&cluster, leader, &format!("k{i}"), "x").await;
    }
    cluster.restart(follower).await;
    cluster.wait_applied(follower, last).await;
    let count = cluster.node(follower).read(ReadConsistency::Serializable, |r| r.values.len()).await.unwrap();
    assert_eq!(count, 30);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_the_asked_node() {
    let cluster = Cluster::start(3, StorageKind::Memory).await;
    let leader = cluster.leader().await;
    let target = other_than(&cluster, &[leader]);
    cluster.node(leader).transfer_leadership(common::id(target)).await.expect("the leader starts the transfer");
    let mut status = cluster.node(target).watch_status();
    // (`wait_for` returns a borrow of the watch: keep only whether it succeeded, or the
    // node's status updates would wait for the borrow to end.)
    let led = tokio::time::timeout(Duration::from_secs(30), async { status.wait_for(|s| s.is_leader()).await.is_ok() });
    assert_eq!(led.await, Ok(true), "node {target} did not take over");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused_and_stops_while_the_others_carry_on() {
    let listeners = common::listeners(3);
    let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        let cluster_id = if id == 3 { "another-cluster" } else { "test-cluster" };
        let settings = common::settings(id, &ports, StorageKind::Memory, dir.path(), cluster_id);
        let node = d_engine::NodeBuilder::new(settings, common::Registers::default()).listener(listener).start().await;
        nodes.push(node.expect("the node starts"));
    }
    let stopped = tokio::time::timeout(Duration::from_secs(30), nodes[2].run()).await.expect("node 3 stops by itself");
    match stopped {
        Err(d_engine::NodeError::WrongCluster(reason)) => {
            assert!(reason.contains("cluster id mismatch"), "the reason names the mismatch: {reason}")
        }
        other => panic!("node 3 must stop with WrongCluster, got {other:?}"),
    }
    // Nodes 1 and 2 are a quorum of three: they elect a leader and commit.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let leader = loop {
        if let Some(node) = nodes[..2].iter().find(|node| node.status().is_leader()) {
            break node.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "nodes 1 and 2 elect no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    leader.propose("still=working").await.expect("the remaining quorum commits");
    for node in &nodes[..2] {
        node.shutdown();
        node.run().await.expect("a graceful stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_a_bind_error_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let settings = common::settings(1, &[port], StorageKind::Memory, dir.path(), "test-cluster");
    match d_engine::NodeBuilder::new(settings, common::Registers::default()).start().await {
        Err(error @ d_engine::NodeError::Bind { .. }) => {
            assert!(error.to_string().starts_with(&format!("cannot listen on 127.0.0.1:{port}")), "{error}")
        }
        Err(other) => panic!("expected a bind error, got {other}"),
        Ok(_) => panic!("a taken port must not be served twice"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_compacted_log_catches_up_from_a_snapshot_and_survives_a_restart() {
    let mut cluster = Cluster::start_with(3, StorageKind::Redb, Some(20)).await;
    let leader = cluster.leader().await;
    let follower = other_than(&cluster, &[leader]);
    cluster.stop(follower).await;
    let mut last = 0;
    for i in 0..120 {
        last = write(&cluster, leader, &format!("k{i}"), &i.to_string()).await;
    }
    // The leader compacted its log past what the follower has: only a snapshot helps.
    cluster.restart(follower).await;
    cluster.wait_applied(follower, last).await;
    let (values, installed) = cluster
        .node(follower)
        .read(ReadConsistency::Serializable, |r| (r.values.clone(), r.snapshots_installed))
        .await
        .unwrap();
    assert!(installed >= 1, "the follower caught up through a snapshot, not the log alone");
    assert_eq!(values.len(), 120, "the snapshot and the tail after it hold every write");
    assert_eq!(values.get("k119").map(String::as_str), Some("119"));

    // Restarted again, it starts from its own saved snapshot plus its log.
    cluster.stop(follower).await;
    cluster.restart(follower).await;
    cluster.wait_applied(follower, last).await;
    let (count, installed) = cluster
        .node(follower)
        .read(ReadConsistency::Serializable, |r| (r.values.len(), r.snapshots_installed))
        .await
        .unwrap();
    assert_eq!(installed, 1, "the restarted node starts from its own saved snapshot");
    assert_eq!(count, 120);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_answers_every_request_in_flight_and_then_refuses_new_ones() {
    let cluster = Cluster::start(1, StorageKind::Redb).await;
    let leader = cluster.leader().await;
    let node = cluster.node(leader).clone();
    let proposals: Vec<_> = (0..200)
        .map(|i| {
            let node = node.clone();
            tokio::spawn(async move { node.propose(format!("k{i}=v")).await })
        })
        .collect();
    node.shutdown();
    node.run().await.expect("a graceful stop");
    for proposal in proposals {
        let answered = tokio::time::timeout(Duration::from_secs(30), proposal).await.expect("no proposal hangs");
        match answered.expect("the task ran") {
            Ok(_) | Err(RequestError::ShuttingDown) | Err(RequestError::OutcomeUnknown(_)) => {}
            Err(other) => panic!("a proposal in flight got {other:?}"),
        }
    }
    assert_eq!(node.propose("late=1").await, Err(RequestError::ShuttingDown));
    assert!(node.status().stopped.is_some(), "the status says the node stopped");
}
