//! Quickstart: a 3-node d-engine cluster in one process, over real gRPC on 127.0.0.1, with
//! durable storage in a temporary directory (the defaults: the log in d-engine-wal segments,
//! the state on redb), running the replicated KV store of `d-engine-kv`.
//!
//! It elects a leader, writes 100 keys through it, reads one back linearizably, stops the
//! leader, waits for a new one, checks that every acknowledged write survived, writes a few
//! more, restarts the old leader from its data directory and waits until it has caught up.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! Observability comes with it: every node serves Prometheus metrics on its own port (the
//! quickstart prints the addresses and, at the end, a few values scraped from one of
//! them); logs go to stderr at `warn` (`RUST_LOG=info` shows role changes and snapshots);
//! with `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317` every write is traced to that
//! OpenTelemetry collector, from the write through replication to each follower's fsync.
//!
//! Exit status 0 when every step worked; otherwise a message and status 1. No step waits
//! longer than 30 seconds.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use d_engine::{BoxedStateStore, Node, NodeBuilder, ReadConsistency, RequestError, Settings};
use d_engine_kv::{KvStateMachine, get, output_revision, put_command};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Instrument;

/// The replicated KV store over whichever state store the settings name (redb here).
type KvNode = Node<KvStateMachine<BoxedStateStore>>;
type Error = Box<dyn std::error::Error + Send + Sync>;

const NODES: usize = 3;
const FIRST_WRITES: usize = 100;
const MORE_WRITES: usize = 10;
/// The longest any one step may wait.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("quickstart failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let started = Instant::now();
    let data = tempfile::tempdir()?;
    // Bind every node's port first, so that each settings file can name all of them.
    let listeners = (0..NODES).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<Vec<_>, _>>()?;
    let addresses = listeners.iter().map(TcpListener::local_addr).collect::<Result<Vec<_>, _>>()?;
    let metrics = free_addresses(NODES)?;
    let settings = (1..=NODES as u64)
        .map(|id| node_settings(id, &addresses, metrics[id as usize - 1], data.path()))
        .collect::<Result<Vec<_>, _>>()?;
    // Logs and (with OTEL_EXPORTER_OTLP_ENDPOINT) traces, for the whole process.
    let _telemetry = d_engine::init_telemetry(&settings[0])?;
    let metrics_urls: Vec<String> = metrics.iter().map(|address| format!("http://{address}/metrics")).collect();
    println!("metrics: {}", metrics_urls.join(", "));
    match &settings[0].tracing.otlp_endpoint {
        Some(endpoint) => println!("traces: every write is exported to {endpoint}"),
        None => println!("traces: off (OTEL_EXPORTER_OTLP_ENDPOINT=http://host:4317 exports them)"),
    }

    let mut nodes: Vec<Option<KvNode>> = Vec::new();
    for (settings, listener) in settings.iter().zip(listeners) {
        nodes.push(Some(start(settings.clone(), Some(listener)).await?));
    }
    let list: Vec<String> = addresses.iter().map(SocketAddr::to_string).collect();
    println!("started {NODES} nodes on {} (data under {})", list.join(", "), data.path().display());

    let mut leader = wait_for_leader(&nodes).await?;
    println!("leader: node {} (term {})", leader.id().0, leader.status().term.0);

    let mut acknowledged = Vec::new();
    write_keys(&nodes, &mut leader, 0..FIRST_WRITES, &mut acknowledged).await?;
    println!("wrote {FIRST_WRITES} keys through node {}", leader.id().0);
    let (key, value) = &acknowledged[FIRST_WRITES / 2];
    let read = read_value(&nodes, &mut leader, key).await?;
    println!("linearizable read on node {}: {key} = {}", leader.id().0, show(read.as_deref()));
    if read.as_deref() != Some(value.as_bytes()) {
        return Err(format!("{key} reads {}, not {value}", show(read.as_deref())).into());
    }

    // Stop the leader abruptly: in-process, a shutdown and wait is the closest thing to a kill.
    let old_leader = leader.id().0;
    drop(leader);
    let slot = old_leader as usize - 1;
    let stopped = nodes[slot].take().ok_or("the leader is not running")?;
    stopped.shutdown();
    stopped.run().await?;
    drop(stopped);
    println!("stopped the leader, node {old_leader}");

    let mut leader = wait_for_leader(&nodes).await?;
    let new_leader = leader.id().0;
    println!("new leader: node {new_leader} (term {})", leader.status().term.0);
    let verified = verify(&nodes, &mut leader, &acknowledged).await?;
    println!("all {verified} acknowledged writes are readable on node {} (linearizable)", leader.id().0);
    write_keys(&nodes, &mut leader, FIRST_WRITES..FIRST_WRITES + MORE_WRITES, &mut acknowledged).await?;
    println!("wrote {MORE_WRITES} more keys through node {}", leader.id().0);

    let restarted = restart(settings[slot].clone()).await?;
    let recovered = restarted.status().applied.0;
    let target = leader.status().commit.0;
    let mut status = restarted.watch_status();
    tokio::time::timeout(STEP_TIMEOUT, status.wait_for(|status| status.applied.0 >= target))
        .await
        .map_err(|_| format!("node {old_leader} did not catch up to index {target} within {STEP_TIMEOUT:?}"))??;
    println!(
        "restarted node {old_leader} from its data directory (applied index {recovered}); caught up to index {target}"
    );
    nodes[slot] = Some(restarted);
    let verified = verify(&nodes, &mut leader, &acknowledged).await?;

    let scraped = scrape(metrics[leader.id().0 as usize - 1]).await?;
    let leader_label = format!("node_id=\"{}\"", leader.id().0);
    for name in ["d_engine_term", "d_engine_applied_index", "d_engine_proposals_total"] {
        let line = scraped.lines().find(|line| line.starts_with(name) && line.contains(&leader_label));
        let line = line.ok_or_else(|| format!("the leader's /metrics has no {name}"))?;
        println!("metric of the leader: {line}");
    }
    println!(
        "summary: {NODES} nodes, leader node {old_leader} -> node {new_leader}, {} writes acknowledged, {verified} verified, {:.1} s",
        acknowledged.len(),
        started.elapsed().as_secs_f64()
    );
    drop(leader);
    for node in nodes.into_iter().flatten() {
        node.shutdown();
        node.run().await?;
    }
    Ok(())
}

/// Node `id`'s settings: durable storage under `<data>/node<id>`, every node's address in the member
/// list, metrics served on `metrics`, quiet logs, and traces to `OTEL_EXPORTER_OTLP_ENDPOINT`
/// when it is set.
fn node_settings(id: u64, addresses: &[SocketAddr], metrics: SocketAddr, data: &Path) -> Result<Settings, Error> {
    let members: Vec<String> =
        addresses.iter().zip(1..).map(|(address, id)| format!("{{ id = {id}, peer_addr = \"{address}\" }}")).collect();
    let data_dir = data.join(format!("node{id}"));
    let mut text = format!(
        "[node]\nid = {id}\ndata_dir = {data_dir:?}\nstorage = \"redb\"\n\n\
         [cluster]\nid = \"quickstart\"\nmembers = [{}]\n\n\
         # Short ticks: elections within a few hundred milliseconds on loopback.\n\
         [raft]\ntick_ms = 20\n\n\
         [metrics]\nlisten_addr = \"{metrics}\"\n\n\
         [log]\nlevel = \"warn\"\n",
        members.join(", ")
    );
    if let Some(endpoint) = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|e| !e.is_empty()) {
        text.push_str(&format!("\n[tracing]\notlp_endpoint = {endpoint:?}\nservice_name = \"quickstart\"\n"));
    }
    Ok(Settings::from_toml(&text)?)
}

/// `count` loopback addresses that were free a moment ago (bound, read, released).
fn free_addresses(count: usize) -> Result<Vec<SocketAddr>, Error> {
    let listeners = (0..count).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<Vec<_>, _>>()?;
    Ok(listeners.iter().map(TcpListener::local_addr).collect::<Result<Vec<_>, _>>()?)
}

/// The text of one `GET /metrics` from `address`.
async fn scrape(address: SocketAddr) -> Result<String, Error> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: quickstart\r\n\r\n").await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (_, body) = response.split_once("\r\n\r\n").ok_or("the metrics endpoint did not answer HTTP")?;
    Ok(body.to_owned())
}

/// Opens the node's state store, the KV state machine over it, and starts the node.
async fn start(settings: Settings, listener: Option<TcpListener>) -> Result<KvNode, Error> {
    let state_machine = KvStateMachine::open(d_engine::open_state_store(&settings)?)?;
    let mut builder = NodeBuilder::new(settings, state_machine);
    if let Some(listener) = listener {
        builder = builder.listener(listener);
    }
    Ok(builder.start().await?)
}

/// Starts a stopped node again from its data directory. Its files and port are released
/// once the last of its tasks is gone, which may be a moment after `run` returned: retry
/// briefly.
async fn restart(settings: Settings) -> Result<KvNode, Error> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        match start(settings.clone(), None).await {
            Ok(node) => return Ok(node),
            Err(error) if Instant::now() >= deadline => return Err(format!("cannot restart the node: {error}").into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The first running node that sees itself as leader.
async fn wait_for_leader(nodes: &[Option<KvNode>]) -> Result<KvNode, Error> {
    let search = async {
        loop {
            if let Some(leader) = nodes.iter().flatten().find(|node| node.status().is_leader()) {
                return leader.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    Ok(tokio::time::timeout(STEP_TIMEOUT, search).await.map_err(|_| "no leader was elected within 30 s")?)
}

/// Runs `request` on `leader`. A node that has lost leadership refuses without executing
/// anything (`NotLeader`, or `Aborted` for a proposal a new leader overwrote), so then the
/// leader is found again and the request retried; anything else is returned.
async fn on_leader<T, F, R>(nodes: &[Option<KvNode>], leader: &mut KvNode, what: &str, request: R) -> Result<T, Error>
where
    R: Fn(KvNode) -> F,
    F: Future<Output = Result<T, RequestError>>,
{
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, request(leader.clone())).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(RequestError::NotLeader { .. } | RequestError::Aborted)) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                *leader = wait_for_leader(nodes).await?;
            }
            Ok(Err(error)) => return Err(format!("{what} failed: {error}").into()),
            Err(_) => return Err(format!("{what} took longer than {STEP_TIMEOUT:?}").into()),
        }
    }
}

/// Puts `key-NNN = value-NNN` for each number through the leader, recording each write the
/// cluster acknowledged.
async fn write_keys(
    nodes: &[Option<KvNode>],
    leader: &mut KvNode,
    numbers: std::ops::Range<usize>,
    acknowledged: &mut Vec<(String, String)>,
) -> Result<(), Error> {
    for n in numbers {
        let (key, value) = (format!("key-{n:03}"), format!("value-{n:03}"));
        let command = put_command(key.clone(), value.clone());
        // A span of the application's: with a collector, each write is one trace across the nodes.
        let span = tracing::info_span!("quickstart.write", key = %key);
        let applied = on_leader(nodes, leader, &format!("writing {key}"), |node| {
            let command = command.clone();
            async move { node.propose(command).await }
        })
        .instrument(span)
        .await?;
        output_revision(&applied.output)?;
        acknowledged.push((key, value));
    }
    Ok(())
}

async fn read_value(nodes: &[Option<KvNode>], leader: &mut KvNode, key: &str) -> Result<Option<Vec<u8>>, Error> {
    let what = format!("reading {key}");
    let value = on_leader(nodes, leader, &what, |node| {
        let key = key.to_owned();
        async move { node.read(ReadConsistency::Linearizable, move |kv| get(kv, key)).await }
    })
    .await??;
    Ok(value.map(|value| value.to_vec()))
}

/// Checks, in one linearizable read on the leader, that every acknowledged write is there;
/// returns how many were checked.
async fn verify(
    nodes: &[Option<KvNode>],
    leader: &mut KvNode,
    acknowledged: &[(String, String)],
) -> Result<usize, Error> {
    let problem = on_leader(nodes, leader, "verifying the acknowledged writes", |node| {
        let expected = acknowledged.to_vec();
        async move {
            node.read(ReadConsistency::Linearizable, move |kv| {
                expected.iter().find_map(|(key, value)| match get(kv, key.clone()) {
                    Ok(Some(found)) if found == value.as_bytes() => None,
                    Ok(found) => Some(format!("{key} reads {}, not {value}", show(found.as_deref()))),
                    Err(error) => Some(format!("reading {key} failed: {error}")),
                })
            })
            .await
        }
    })
    .await?;
    match problem {
        None => Ok(acknowledged.len()),
        Some(problem) => Err(format!("an acknowledged write is lost on node {}: {problem}", leader.id().0).into()),
    }
}

fn show(value: Option<&[u8]>) -> String {
    value.map_or_else(|| "(absent)".to_owned(), |value| String::from_utf8_lossy(value).into_owned())
}
