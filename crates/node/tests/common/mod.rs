//! A small cluster harness: nodes on 127.0.0.1 ports chosen by the OS, a register state
//! machine (`key=value` commands, queries by key), and waits that never assert speed —
//! their deadlines only turn a hang into a failure with a message.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use d_engine::core::storage::{Snapshot, StateMachine, StorageError};
use d_engine::core::{Entry, EntryPayload, LogId, NodeId};
use d_engine::{Application, LogStoreKind, Node, NodeBuilder, Settings, StorageKind};

/// A map of registers: `key=value` sets, the output is the previous value.
#[derive(Default)]
pub struct Registers {
    pub values: BTreeMap<String, String>,
    pub applied: LogId,
    /// Snapshots installed into this state machine (at start or from a leader).
    pub snapshots_installed: u64,
}

impl StateMachine for Registers {
    fn apply(&mut self, entries: &[Entry]) -> Result<Vec<Bytes>, StorageError> {
        let mut outputs = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut output = Bytes::new();
            if let EntryPayload::Command(command) = &entry.payload {
                let text = String::from_utf8_lossy(command);
                let (key, value) = text.split_once('=').unwrap_or((&text, ""));
                if let Some(previous) = self.values.insert(key.to_owned(), value.to_owned()) {
                    output = Bytes::from(previous);
                }
            }
            self.applied = entry.log_id;
            outputs.push(output);
        }
        Ok(outputs)
    }

    fn last_applied(&self) -> LogId {
        self.applied
    }

    fn build_snapshot(&mut self) -> Result<(LogId, Bytes), StorageError> {
        let text: Vec<String> = self.values.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok((self.applied, Bytes::from(text.join("\n"))))
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.values = String::from_utf8_lossy(&snapshot.data)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        self.applied = snapshot.meta.last_included;
        self.snapshots_installed += 1;
        Ok(())
    }
}

impl Application for Registers {
    fn query(&self, query: &[u8]) -> Result<Bytes, String> {
        let key = std::str::from_utf8(query).map_err(|_| "keys are UTF-8".to_owned())?;
        Ok(self.values.get(key).map(|v| Bytes::from(v.clone())).unwrap_or_default())
    }
}

/// Free loopback ports, held open until the nodes take them.
pub fn listeners(n: usize) -> Vec<TcpListener> {
    (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port")).collect()
}

/// Settings for node `id` of a cluster whose members listen on `ports`.
pub fn settings(id: u64, ports: &[u16], storage: StorageKind, data_dir: &Path, cluster_id: &str) -> Settings {
    let members: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("{{ id = {}, peer_addr = \"127.0.0.1:{port}\" }}", i + 1))
        .collect();
    let storage = match storage {
        StorageKind::Redb => "redb",
        StorageKind::Sled => "sled",
        StorageKind::Memory => "memory",
    };
    let text = format!(
        r#"
        [node]
        id = {id}
        data_dir = "{}"
        storage = "{storage}"
        [cluster]
        id = "{cluster_id}"
        members = [{}]
        [raft]
        tick_ms = 10
        election_timeout_ticks = 15
        heartbeat_interval_ticks = 3
        [transport]
        reconnect_initial_ms = 10
        reconnect_max_ms = 200
        "#,
        data_dir.join(format!("node{id}")).display(),
        members.join(", ")
    );
    Settings::from_toml(&text).expect("test settings are valid")
}

/// A running cluster of `Registers` nodes.
pub struct Cluster {
    pub nodes: Vec<Option<Node<Registers>>>,
    pub ports: Vec<u16>,
    pub storage: StorageKind,
    pub dir: tempfile::TempDir,
    /// Snapshot every this many applied entries, keeping 5 behind (unset: the defaults).
    pub snapshot_every: Option<u64>,
    /// The log engine of durable nodes.
    pub log_store: LogStoreKind,
}

impl Cluster {
    pub async fn start(n: usize, storage: StorageKind) -> Cluster {
        Cluster::start_with(n, storage, None).await
    }

    pub async fn start_with(n: usize, storage: StorageKind, snapshot_every: Option<u64>) -> Cluster {
        Cluster::start_configured(n, storage, snapshot_every, LogStoreKind::default()).await
    }

    pub async fn start_configured(
        n: usize,
        storage: StorageKind,
        snapshot_every: Option<u64>,
        log_store: LogStoreKind,
    ) -> Cluster {
        let listeners = listeners(n);
        let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cluster = Cluster { nodes: Vec::new(), ports, storage, dir, snapshot_every, log_store };
        for (i, listener) in listeners.into_iter().enumerate() {
            let node = cluster.build(i as u64 + 1).listener(listener).start().await.expect("the node starts");
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    pub fn builder_settings(&self, id: u64) -> Settings {
        let mut settings = settings(id, &self.ports, self.storage, self.dir.path(), "test-cluster");
        settings.node.log_store = self.log_store;
        if let Some(every) = self.snapshot_every {
            settings.raft.snapshot_every_applied_entries = Some(every);
            settings.raft.snapshot_keep_entries = 5;
        }
        settings
    }

    fn build(&self, id: u64) -> NodeBuilder<Registers> {
        NodeBuilder::new(self.builder_settings(id), Registers::default())
    }

    pub fn node(&self, id: u64) -> &Node<Registers> {
        self.nodes[id as usize - 1].as_ref().expect("the node is running")
    }

    /// Stops node `id` gracefully and waits until it has closed its storage.
    pub async fn stop(&mut self, id: u64) {
        let node = self.nodes[id as usize - 1].take().expect("the node is running");
        node.shutdown();
        node.run().await.expect("a graceful stop succeeds");
    }

    /// Starts node `id` again on its port, from its data directory.
    pub async fn restart(&mut self, id: u64) {
        assert!(self.nodes[id as usize - 1].is_none(), "restart a stopped node");
        let mut attempts = 0;
        let node = loop {
            // The old server may still hold the port for a moment after it stopped.
            match self.build(id).start().await {
                Ok(node) => break node,
                Err(d_engine::NodeError::Bind { .. }) if attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("node {id} does not restart: {error}"),
            }
        };
        self.nodes[id as usize - 1] = Some(node);
    }

    /// Waits until one running node leads and every running node agrees on it.
    pub async fn leader(&self) -> u64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let running: Vec<_> = self.nodes.iter().flatten().map(|n| n.status()).collect();
            let leaders: Vec<_> = running.iter().filter(|s| s.is_leader()).collect();
            if let [leader] = leaders[..]
                && running.iter().all(|s| s.leader == Some(leader.id) && s.term == leader.term)
            {
                return leader.id.0;
            }
            assert!(tokio::time::Instant::now() < deadline, "no agreed leader within 30 s: {running:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64) {
        let mut status = self.node(id).watch_status();
        let applied = async { status.wait_for(|s| s.applied.0 >= index).await.is_ok() };
        let waited = tokio::time::timeout(Duration::from_secs(30), applied).await;
        assert_eq!(waited, Ok(true), "node {id} did not apply index {index} within 30 s: {:?}", self.node(id).status());
    }

    pub async fn shutdown(mut self) {
        for id in 1..=self.nodes.len() as u64 {
            if self.nodes[id as usize - 1].is_some() {
                self.stop(id).await;
            }
        }
    }
}

/// The id of a running node other than `not`.
pub fn other_than(cluster: &Cluster, not: &[u64]) -> u64 {
    (1..=cluster.nodes.len() as u64)
        .find(|id| !not.contains(id) && cluster.nodes[*id as usize - 1].is_some())
        .expect("another running node")
}

pub fn id(n: u64) -> NodeId {
    NodeId(n)
}
