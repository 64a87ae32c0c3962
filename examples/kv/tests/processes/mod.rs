//! A cluster of real `d-engine-kv` processes on loopback, for tests: settings files in a
//! temporary directory, ports the OS picked, children killed by pid on drop (only the ones
//! this harness started). Waits have deadlines that only turn a hang into a failure with a
//! message; nothing asserts speed.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use d_engine_kv::proto::etcdserverpb::kv_client::KvClient;
use d_engine_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use d_engine_kv::proto::etcdserverpb::{PutRequest, RangeRequest, StatusRequest};
use tokio::time::Instant;
use tonic::transport::Channel;

pub const BINARY: &str = env!("CARGO_BIN_EXE_d-engine-kv");

/// How long any one wait may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Free loopback ports: bound, read, released (the OS does not hand them out again at once).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
    listeners.iter().map(|listener| listener.local_addr().expect("address").port()).collect()
}

pub struct ProcessCluster {
    pub dir: tempfile::TempDir,
    pub peer_ports: Vec<u16>,
    pub client_ports: Vec<u16>,
    pub children: Vec<Option<Child>>,
    pub storage: &'static str,
}

impl ProcessCluster {
    /// Writes settings for `n` nodes of cluster `cluster_id` (node ids 1..=n) without starting them.
    pub fn configure(n: usize, storage: &'static str) -> ProcessCluster {
        let ports = free_ports(2 * n);
        let cluster = ProcessCluster {
            dir: tempfile::tempdir().expect("a temporary directory"),
            peer_ports: ports[..n].to_vec(),
            client_ports: ports[n..].to_vec(),
            children: (0..n).map(|_| None).collect(),
            storage,
        };
        for id in 1..=n as u64 {
            cluster.write_settings(id, "process-test");
        }
        cluster
    }

    /// Configures and starts `n` nodes.
    pub fn start(n: usize, storage: &'static str) -> ProcessCluster {
        let mut cluster = ProcessCluster::configure(n, storage);
        for id in 1..=n as u64 {
            cluster.spawn(id);
        }
        cluster
    }

    pub fn settings_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.toml"))
    }

    pub fn stderr_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.stderr"))
    }

    /// (Re)writes node `id`'s settings with `cluster_id`.
    pub fn write_settings(&self, id: u64, cluster_id: &str) {
        let members: Vec<String> = (0..self.peer_ports.len())
            .map(|i| {
                format!(
                    "  {{ id = {}, peer_addr = \"127.0.0.1:{}\", client_addr = \"127.0.0.1:{}\" }},",
                    i + 1,
                    self.peer_ports[i],
                    self.client_ports[i]
                )
            })
            .collect();
        let text = format!(
            "[node]\nid = {id}\ndata_dir = \"{}\"\nstorage = \"{}\"\n\n[cluster]\nid = \"{cluster_id}\"\nmembers = [\n{}\n]\n\n\
             [raft]\ntick_ms = 20\nelection_timeout_ticks = 10\n\n[transport]\nreconnect_initial_ms = 20\nreconnect_max_ms = 500\n",
            self.dir.path().join(format!("data{id}")).display(),
            self.storage,
            members.join("\n")
        );
        std::fs::write(self.settings_path(id), text).expect("write settings");
    }

    /// Adds `text` (TOML sections) to every node's settings file.
    pub fn append_settings(&self, text: impl Fn(u64) -> String) {
        for id in 1..=self.peer_ports.len() as u64 {
            let path = self.settings_path(id);
            let mut settings = std::fs::read_to_string(&path).expect("read settings");
            settings.push_str(&text(id));
            std::fs::write(path, settings).expect("write settings");
        }
    }

    /// Starts node `id`'s process; stderr goes to a file the failure messages show.
    pub fn spawn(&mut self, id: u64) {
        assert!(self.children[id as usize - 1].is_none(), "node {id} is already running");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path(id))
            .expect("open the stderr file");
        let child = Command::new(BINARY)
            .arg("--config")
            .arg(self.settings_path(id))
            .arg("--enable-fault-signals")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start d-engine-kv");
        self.children[id as usize - 1] = Some(child);
    }

    pub fn pid(&self, id: u64) -> u32 {
        self.children[id as usize - 1].as_ref().expect("running").id()
    }

    /// SIGKILL: the process dies at once, unsynced writes and all.
    pub fn kill9(&mut self, id: u64) {
        let mut child = self.children[id as usize - 1].take().expect("running");
        child.kill().expect("kill -9");
        child.wait().expect("reap");
    }

    /// Sends `signal` (e.g. "USR1") to node `id`.
    pub fn signal(&self, id: u64, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid(id).to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} node {id}");
    }

    /// SIGTERM, then waits for the exit status.
    pub async fn terminate(&mut self, id: u64) -> ExitStatus {
        self.signal(id, "TERM");
        self.wait_exit(id).await
    }

    /// Waits until node `id`'s process exits by itself.
    pub async fn wait_exit(&mut self, id: u64) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        let child = self.children[id as usize - 1].as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.children[id as usize - 1] = None;
                return status;
            }
            assert!(Instant::now() < deadline, "node {id} did not exit:\n{}", self.stderr(id));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stderr(&self, id: u64) -> String {
        std::fs::read_to_string(self.stderr_path(id)).unwrap_or_default()
    }

    pub fn endpoint(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.client_ports[id as usize - 1])
    }

    pub fn running(&self) -> Vec<u64> {
        (1..=self.children.len() as u64).filter(|id| self.children[*id as usize - 1].is_some()).collect()
    }

    /// A KV client of node `id`'s etcd API.
    pub async fn kv(&self, id: u64) -> Option<KvClient<Channel>> {
        let channel = Channel::from_shared(self.endpoint(id)).ok()?.connect_timeout(Duration::from_secs(1));
        Some(KvClient::new(channel.connect().await.ok()?))
    }

    /// Which node node `id` says leads (etcd Status), if it answers and knows one.
    pub async fn leader_seen_by(&self, id: u64) -> Option<u64> {
        let channel = Channel::from_shared(self.endpoint(id)).ok()?.connect_timeout(Duration::from_secs(1));
        let mut client = MaintenanceClient::new(channel.connect().await.ok()?);
        let status = tokio::time::timeout(Duration::from_secs(2), client.status(StatusRequest {})).await.ok()?.ok()?;
        let leader = status.into_inner().leader;
        (leader != 0).then_some(leader)
    }

    /// Waits until every node in `among` names the same leader, itself one of them.
    pub async fn agreed_leader(&self, among: &[u64]) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut seen = Vec::new();
            for id in among {
                seen.push(self.leader_seen_by(*id).await);
            }
            if let Some(Some(leader)) = seen.first()
                && among.contains(leader)
                && seen.iter().all(|s| *s == Some(*leader))
            {
                return *leader;
            }
            assert!(Instant::now() < deadline, "no agreed leader among {among:?}: {seen:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Puts through any running node (followers forward to the leader); `Ok` only when a
    /// node acknowledged the write. Tries each node once.
    pub async fn put(&self, key: &str, value: &str) -> Result<(), String> {
        let mut last_error = String::from("no node running");
        for id in self.running() {
            let Some(mut client) = self.kv(id).await else { continue };
            let request = PutRequest { key: bytes(key), value: bytes(value), ..Default::default() };
            match tokio::time::timeout(Duration::from_secs(3), client.put(request)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(status)) => last_error = format!("node {id}: {status}"),
                Err(_) => last_error = format!("node {id}: no answer within 3 s"),
            }
        }
        Err(last_error)
    }

    /// The value of `key` read on node `id` (`serializable` = its local state).
    pub async fn get(&self, id: u64, key: &str, serializable: bool) -> Result<Option<Bytes>, String> {
        let mut client = self.kv(id).await.ok_or_else(|| format!("node {id} does not answer"))?;
        let request = RangeRequest { key: bytes(key), serializable, ..Default::default() };
        let response = tokio::time::timeout(Duration::from_secs(3), client.range(request))
            .await
            .map_err(|_| format!("node {id}: no answer within 3 s"))?
            .map_err(|status| format!("node {id}: {status}"))?;
        Ok(response.into_inner().kvs.into_iter().next().map(|kv| kv.value))
    }

    /// How many keys with `prefix` node `id` holds locally (serializable count).
    pub async fn count_local(&self, id: u64, prefix: &str) -> Option<i64> {
        let mut client = self.kv(id).await?;
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().expect("a non-empty prefix") += 1;
        let request = RangeRequest {
            key: bytes(prefix),
            range_end: Bytes::from(end),
            count_only: true,
            serializable: true,
            ..Default::default()
        };
        let response = tokio::time::timeout(Duration::from_secs(3), client.range(request)).await.ok()?.ok()?;
        Some(response.into_inner().count)
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        // Only the processes this harness started, by their handles (pids).
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}
