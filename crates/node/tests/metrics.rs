//! The `/metrics` endpoint of a running cluster: scraped over plain HTTP, its values move
//! as the cluster works. Waits poll with a deadline and never assert speed.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{Cluster, listeners, other_than};
use d_engine::{NodeBuilder, NodeError, StorageKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A 3-node cluster whose nodes each serve `/metrics` on their own loopback port.
async fn start_with_metrics() -> (Cluster, Vec<SocketAddr>) {
    let peer_listeners = listeners(3);
    let ports: Vec<u16> = peer_listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
    // Free ports for the endpoints: released here, taken again by the nodes just below.
    let metrics_addrs: Vec<SocketAddr> = listeners(3).iter().map(|l| l.local_addr().unwrap()).collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut cluster = Cluster {
        nodes: Vec::new(),
        ports,
        storage: StorageKind::Memory,
        dir,
        snapshot_every: None,
        log_store: Default::default(),
    };
    for (i, listener) in peer_listeners.into_iter().enumerate() {
        let mut settings = cluster.builder_settings(i as u64 + 1);
        settings.metrics.listen_addr = Some(metrics_addrs[i].to_string());
        let builder = NodeBuilder::new(settings, common::Registers::default()).listener(listener);
        cluster.nodes.push(Some(builder.start().await.expect("the node starts")));
    }
    (cluster, metrics_addrs)
}

/// One HTTP/1.0 GET of `/metrics`; the body.
async fn scrape(address: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("the metrics endpoint accepts");
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("a response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The value of the sample `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, found) = match series.split_once('{') {
            Some((series_name, rest)) => (series_name, parse_labels(rest.trim_end_matches('}'))),
            None => (series, BTreeMap::new()),
        };
        let matches = series_name == name && labels.iter().all(|(k, v)| found.get(*k).map(String::as_str) == Some(*v));
        if matches { value.parse().ok() } else { None }
    })
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

fn node_sample(text: &str, name: &str, node: u64) -> f64 {
    let node = node.to_string();
    sample(text, name, &[("node_id", &node)]).unwrap_or_else(|| panic!("no {name} for node {node}:\n{text}"))
}

/// Scrapes `address` until `check` holds, failing with the last scrape after 30 s.
async fn scrape_until(address: SocketAddr, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(address).await;
        if check(&text) {
            return text;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within 30 s: {what}\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_writes_and_a_forced_election() {
    let (cluster, endpoints) = start_with_metrics().await;
    let leader = cluster.leader().await;

    // Every endpoint serves the process's one registry; the node_id label separates nodes.
    let text = scrape_until(endpoints[0], "the leader's gauges", |text| {
        sample(text, "d_engine_is_leader", &[("node_id", &leader.to_string())]) == Some(1.0)
    })
    .await;
    for node in 1..=3 {
        assert!(node_sample(&text, "d_engine_term", node) >= 1.0, "node {node} has a term");
        let is_leader = node_sample(&text, "d_engine_is_leader", node);
        assert_eq!(is_leader, if node == leader { 1.0 } else { 0.0 }, "node {node}");
    }

    // Writes move the applied index and the applied proposals.
    let applied_before = node_sample(&text, "d_engine_applied_index", leader);
    let applied_label = [("node_id", leader.to_string()), ("outcome", "applied".to_owned())];
    let applied_label: Vec<(&str, &str)> = applied_label.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let proposals_before = sample(&text, "d_engine_proposals_total", &applied_label).unwrap_or(0.0);
    const WRITES: u64 = 20;
    for i in 0..WRITES {
        cluster.node(leader).propose(format!("k{i}=v{i}")).await.expect("the leader accepts the write");
    }
    let endpoint = endpoints[leader as usize - 1];
    let text = scrape_until(endpoint, "the applied index grows by the writes", |text| {
        node_sample(text, "d_engine_applied_index", leader) >= applied_before + WRITES as f64
    })
    .await;
    let proposals = sample(&text, "d_engine_proposals_total", &applied_label).expect("applied proposals are counted");
    assert!(proposals >= proposals_before + WRITES as f64, "{proposals} applied proposals after {WRITES} writes");
    let committed = node_sample(&text, "d_engine_commit_latency_seconds_count", leader);
    assert!(committed >= WRITES as f64, "every applied proposal has a commit latency");
    assert!(node_sample(&text, "d_engine_storage_sync_seconds_count", leader) >= 1.0, "syncs are timed");
    assert!(node_sample(&text, "d_engine_storage_batch_writes_count", leader) >= 1.0, "batches are counted");

    // The log's size, and each follower's replication as the leader sees it: caught up.
    let text = scrape_until(endpoint, "the log size covers the writes", |text| {
        node_sample(text, "d_engine_log_entries", leader) >= WRITES as f64
    })
    .await;
    assert!(node_sample(&text, "d_engine_log_bytes", leader) >= WRITES as f64 * 5.0, "k{{i}}=v{{i}} bytes are counted");
    let peer_sample = |text: &str, name: &str, peer: u64| {
        let (node, peer) = (leader.to_string(), peer.to_string());
        sample(text, name, &[("node_id", &node), ("peer", &peer)])
    };
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let text = scrape_until(endpoint, "both followers caught up", |text| {
        followers.iter().all(|f| peer_sample(text, "d_engine_replication_lag_entries", *f) == Some(0.0))
    })
    .await;
    for follower in &followers {
        let inflight = peer_sample(&text, "d_engine_replication_inflight_messages", *follower);
        assert!(inflight.is_some(), "in-flight appends to node {follower} are published:\n{text}");
    }

    // A follower cut off: the leader's lag for it grows with new writes, and the envelopes the
    // cut link drops are counted as gRPC errors of that kind.
    let cut = followers[0];
    cluster.node(leader).network_faults().cut(common::id(cut));
    for i in 0..5 {
        cluster.node(leader).propose(format!("cut{i}=x")).await.expect("the other follower still makes a quorum");
    }
    let (node_label, cut_label) = (leader.to_string(), cut.to_string());
    let errors = [("node_id", node_label.as_str()), ("peer", cut_label.as_str()), ("kind", "link_cut")];
    scrape_until(endpoint, "the cut follower lags and the drops are counted", |text| {
        peer_sample(text, "d_engine_replication_lag_entries", cut).is_some_and(|lag| lag >= 5.0)
            && sample(text, "d_engine_grpc_errors_total", &errors).is_some_and(|dropped| dropped >= 1.0)
    })
    .await;
    cluster.node(leader).network_faults().restore(common::id(cut));
    scrape_until(endpoint, "the healed follower catches up", |text| {
        peer_sample(text, "d_engine_replication_lag_entries", cut) == Some(0.0)
    })
    .await;

    // A transfer forces an election: the target's term rises and it counts a won election.
    let target = other_than(&cluster, &[leader]);
    let text = scrape(endpoints[target as usize - 1]).await;
    let term_before = node_sample(&text, "d_engine_term", target);
    let won_before = node_sample(&text, "d_engine_elections_won_total", target);
    let started_before = node_sample(&text, "d_engine_elections_started_total", target);
    cluster.node(leader).transfer_leadership(common::id(target)).await.expect("the leader starts the transfer");
    scrape_until(endpoints[target as usize - 1], "the target wins an election in a higher term", |text| {
        node_sample(text, "d_engine_term", target) > term_before
            && node_sample(text, "d_engine_elections_started_total", target) > started_before
            && node_sample(text, "d_engine_elections_won_total", target) > won_before
            && node_sample(text, "d_engine_is_leader", target) == 1.0
    })
    .await;

    cluster.shutdown().await;
    // Serving stopped with the nodes: the addresses are free again.
    for endpoint in endpoints {
        std::net::TcpListener::bind(endpoint).expect("the metrics address is released at shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_address_in_use_is_a_bind_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let peer = listeners(1).pop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = peer.local_addr().unwrap().port();
    let mut settings = common::settings(1, &[port], StorageKind::Memory, dir.path(), "metrics-bind");
    settings.metrics.listen_addr = Some(taken_addr.to_string());
    let started = NodeBuilder::new(settings, common::Registers::default()).listener(peer).start().await;
    match started {
        Err(NodeError::Bind { address, .. }) => assert_eq!(address, taken_addr),
        Err(error) => panic!("expected a bind error, got {error}"),
        Ok(_) => panic!("the node started although its metrics address is taken"),
    }
}
