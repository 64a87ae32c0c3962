//! Proposals committed per second by a 3-node cluster in one process, with no disk and no
//! network: the protocol and runtime overhead alone (the event loop, the storage and apply
//! threads, the channels between them), apart from fsync and sockets.
//!
//! Three `d_engine::Node`s run with `storage = "memory"` and an in-process transport: each
//! node's `send` pushes the envelope into an unbounded channel (it never blocks), and one
//! task per node hands what arrives to `Node::deliver`. The state machine is a counter.
//! Each node still binds a gRPC listener on 127.0.0.1 (the node always serves its client
//! API); nothing connects to it. An iteration is one proposal, answered once the leader
//! applied it; 1, 64 or 1024 proposers run concurrently, each proposing one after another.
//!
//! The yardstick: openraft's in-process benchmark on the same 2-core machine (in
//! shared/reference/etcd-baseline.md).
//!
//! ```sh
//! cargo bench -p d-engine-benches --bench cluster
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use d_engine::core::storage::{Snapshot, StateMachine, StorageError};
use d_engine::core::{Entry, EntryPayload, Envelope, LogId, NodeId};
use d_engine::{Application, Node, NodeBuilder, Settings, Transport};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const PROPOSERS: [u64; 3] = [1, 64, 1024];
const NODES: u64 = 3;
/// What every proposal carries.
const COMMAND: &[u8] = b"12345678";

/// The state machine: counts the bytes of every command applied.
#[derive(Default)]
struct Counter {
    total: u64,
    applied: LogId,
}

impl StateMachine for Counter {
    fn apply(&mut self, entries: &[Entry]) -> Result<Vec<Bytes>, StorageError> {
        let mut outputs = Vec::with_capacity(entries.len());
        for entry in entries {
            if let EntryPayload::Command(command) = &entry.payload {
                self.total += command.len() as u64;
            }
            self.applied = entry.log_id;
            outputs.push(Bytes::new());
        }
        Ok(outputs)
    }

    fn last_applied(&self) -> LogId {
        self.applied
    }

    fn build_snapshot(&mut self) -> Result<(LogId, Bytes), StorageError> {
        Ok((self.applied, Bytes::copy_from_slice(&self.total.to_le_bytes())))
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let bytes: [u8; 8] = snapshot.data[..]
            .try_into()
            .map_err(|_| StorageError::Corrupt { location: "counter snapshot".into(), reason: "not 8 bytes".into() })?;
        self.total = u64::from_le_bytes(bytes);
        self.applied = snapshot.meta.last_included;
        Ok(())
    }
}

impl Application for Counter {
    fn query(&self, _query: &[u8]) -> Result<Bytes, String> {
        Ok(Bytes::copy_from_slice(&self.total.to_le_bytes()))
    }
}

/// Delivers each envelope into its receiver's inbound channel; never blocks.
struct InProcessTransport {
    inboxes: Arc<HashMap<NodeId, mpsc::UnboundedSender<Envelope>>>,
}

impl Transport for InProcessTransport {
    fn send(&mut self, envelope: Envelope) {
        if let Some(inbox) = self.inboxes.get(&envelope.to) {
            // A closed inbox is a stopped node: the message is lost, as on a network.
            let _ = inbox.send(envelope);
        }
    }
}

/// Three nodes wired to each other in process, and the one that leads.
struct Cluster {
    nodes: Vec<Node<Counter>>,
    leader: Node<Counter>,
}

impl Cluster {
    async fn start() -> Cluster {
        // Members need distinct addresses: bind first, then name the real ports.
        let listeners: Vec<std::net::TcpListener> =
            (0..NODES).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port")).collect();
        let members: Vec<String> = listeners
            .iter()
            .enumerate()
            .map(|(i, listener)| {
                let port = listener.local_addr().expect("a bound address").port();
                format!("{{ id = {}, peer_addr = \"127.0.0.1:{port}\" }}", i + 1)
            })
            .collect();
        let mut inboxes = HashMap::new();
        let mut receivers = Vec::new();
        for id in 1..=NODES {
            let (sender, receiver) = mpsc::unbounded_channel();
            inboxes.insert(NodeId(id), sender);
            receivers.push(receiver);
        }
        let inboxes = Arc::new(inboxes);
        let mut nodes = Vec::new();
        for (index, (listener, mut inbox)) in listeners.into_iter().zip(receivers).enumerate() {
            let settings = Settings::from_toml(&format!(
                "[node]\nid = {}\ndata_dir = \"\"\nstorage = \"memory\"\n[cluster]\nid = \"bench\"\nmembers = [{}]\n\
                 [raft]\ntick_ms = 5\n",
                index + 1,
                members.join(", ")
            ))
            .expect("valid settings");
            let node = NodeBuilder::new(settings, Counter::default())
                .transport(InProcessTransport { inboxes: inboxes.clone() })
                .listener(listener)
                .start()
                .await
                .expect("the node starts");
            let receiver = node.clone();
            tokio::spawn(async move {
                while let Some(envelope) = inbox.recv().await {
                    if receiver.deliver(envelope).await.is_err() {
                        break;
                    }
                }
            });
            nodes.push(node);
        }
        let leader = wait_for_leader(&nodes).await;
        Cluster { nodes, leader }
    }

    async fn stop(self) {
        for node in &self.nodes {
            node.shutdown();
        }
        for node in &self.nodes {
            let _ = node.run().await;
        }
    }
}

async fn wait_for_leader(nodes: &[Node<Counter>]) -> Node<Counter> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(node) = nodes.iter().find(|node| node.status().is_leader()) {
            // The new leader's no-op commits before its first proposal is answered; a
            // proposal through it also proves the wiring works.
            if node.propose(COMMAND).await.is_ok() {
                return node.clone();
            }
        }
        assert!(Instant::now() < deadline, "no leader within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `proposals` proposals through `leader` from `proposers` concurrent tasks; the wall
/// time they took.
async fn propose_all(leader: &Node<Counter>, proposers: u64, proposals: u64) -> Duration {
    let remaining = Arc::new(AtomicU64::new(proposals));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..proposers.min(proposals) {
        let (leader, remaining) = (leader.clone(), remaining.clone());
        tasks.push(tokio::spawn(async move {
            while remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                leader.propose(COMMAND).await.expect("the leader commits the proposal");
            }
        }));
    }
    for task in tasks {
        task.await.expect("a proposer task");
    }
    started.elapsed()
}

fn committed_proposals(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let cluster = runtime.block_on(Cluster::start());
    let mut group = c.benchmark_group("cluster_in_process");
    group.throughput(Throughput::Elements(1)).sample_size(10).warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for proposers in PROPOSERS {
        group.bench_with_input(BenchmarkId::new("proposers", proposers), &proposers, |b, &proposers| {
            b.iter_custom(|iters| runtime.block_on(propose_all(&cluster.leader, proposers, iters)));
        });
    }
    group.finish();
    runtime.block_on(cluster.stop());
}

criterion_group!(benches, committed_proposals);
criterion_main!(benches);
