//! The `cluster` command: a local cluster of `d-engine-kv` server processes on loopback.
//!
//! It builds the server, writes one settings file per node under `<target>/cluster/node<N>/`
//! (`settings.toml`, data in `data/`, the server's stdout and stderr in `stdout.log` and
//! `stderr.log`), starts one process per node, prints the endpoints and waits. Ctrl-C (or
//! SIGTERM) stops every node with SIGTERM — a graceful shutdown — and SIGKILL after a bound.
//! A node that exits on its own stops the whole cluster, with the tail of its log.
//!
//! Ports: node N serves peers (and d-engine clients) on `base_port + N - 1` (9081, 9082, ...),
//! the etcd API on `client_port + (N - 1) * 10000` (2379, 12379, 22379, ...; etcd's own
//! Procfile spaces its members the same way) and Prometheus metrics on
//! `metrics_port + N - 1` (9181, 9182, ...). With `--otlp-endpoint`, every node exports its
//! trace spans to that OpenTelemetry collector.

use crate::bench::servers::{log_tail, signal_pid};
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a node may take to print its "serving" line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Spacing of the etcd API ports of consecutive nodes.
const CLIENT_PORT_STEP: u32 = 10_000;

#[derive(clap::Args)]
pub struct ClusterArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=7))]
    nodes: u16,
    /// The storage adapter of every node.
    #[arg(long, default_value = "redb", value_parser = ["redb", "sled", "memory"])]
    storage: String,
    /// Node 1's peer port; node N uses base-port + N - 1.
    #[arg(long, default_value_t = 9081)]
    base_port: u16,
    /// Node 1's etcd API port; node N uses client-port + (N - 1) * 10000.
    #[arg(long, default_value_t = 2379)]
    client_port: u16,
    /// Node 1's Prometheus `/metrics` port; node N uses metrics-port + N - 1.
    #[arg(long, default_value_t = 9181)]
    metrics_port: u16,
    /// An OpenTelemetry collector (OTLP over gRPC, e.g. http://127.0.0.1:4317) every node
    /// sends its trace spans to.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// The cluster id written into every settings file.
    #[arg(long, default_value = "local")]
    cluster_id: String,
    /// Delete the cluster directory (settings, data, logs) before starting.
    #[arg(long)]
    clean: bool,
    /// Build and run the server with the release profile.
    #[arg(long)]
    release: bool,
}

/// One node's place in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePlan {
    /// Its id, from 1.
    pub id: u64,
    /// Where it serves peers and d-engine clients.
    pub peer_addr: String,
    /// Where it serves the etcd API.
    pub client_addr: String,
    /// Where it serves Prometheus metrics.
    pub metrics_addr: String,
    /// Its directory: `settings.toml`, `data/`, logs.
    pub dir: PathBuf,
}

/// The first port of each kind: node N uses `peer + N - 1`, `client + (N - 1) * 10000` and
/// `metrics + N - 1`.
#[derive(Clone, Copy, Debug)]
pub struct BasePorts {
    pub peer: u16,
    pub client: u16,
    pub metrics: u16,
}

/// The nodes of a cluster of `nodes` members, or why the ports do not fit.
pub fn plan(nodes: u16, ports: BasePorts, cluster_dir: &Path) -> Result<Vec<NodePlan>, String> {
    (1..=u32::from(nodes))
        .map(|n| {
            let port = |port: u32, what: &str| {
                u16::try_from(port).map_err(|_| format!("node {n}'s {what} port {port} is above 65535"))
            };
            let peer = port(u32::from(ports.peer) + n - 1, "peer")?;
            let client = port(u32::from(ports.client) + (n - 1) * CLIENT_PORT_STEP, "etcd API")?;
            let metrics = port(u32::from(ports.metrics) + n - 1, "metrics")?;
            Ok(NodePlan {
                id: u64::from(n),
                peer_addr: format!("127.0.0.1:{peer}"),
                client_addr: format!("127.0.0.1:{client}"),
                metrics_addr: format!("127.0.0.1:{metrics}"),
                dir: cluster_dir.join(format!("node{n}")),
            })
        })
        .collect()
}

/// The settings file of `node` in a cluster of `all` (a `d_engine::Settings` TOML document),
/// exporting traces to `otlp_endpoint` when given.
pub fn settings_toml(
    node: &NodePlan,
    all: &[NodePlan],
    cluster_id: &str,
    storage: &str,
    otlp_endpoint: Option<&str>,
) -> String {
    let mut text = String::new();
    let data_dir = node.dir.join("data");
    let _ = writeln!(text, "# Written by `cargo xtask cluster`; rewritten at every start.");
    let _ =
        writeln!(text, "[node]\nid = {}\ndata_dir = {}\nstorage = \"{storage}\"\n", node.id, toml_string(&data_dir));
    let _ = writeln!(text, "[cluster]\nid = {}\nmembers = [", toml_string(Path::new(cluster_id)));
    for member in all {
        let _ = writeln!(
            text,
            "    {{ id = {}, peer_addr = \"{}\", client_addr = \"{}\" }},",
            member.id, member.peer_addr, member.client_addr
        );
    }
    text.push_str("]\n");
    let _ = writeln!(text, "\n[metrics]\nlisten_addr = \"{}\"", node.metrics_addr);
    if let Some(endpoint) = otlp_endpoint {
        let _ = writeln!(
            text,
            "\n[tracing]\notlp_endpoint = {}\nservice_name = \"d-engine-kv-{}\"\n# A local cluster: trace every request.\nsample_ratio = 1.0",
            toml_string(Path::new(endpoint)),
            node.id
        );
    }
    text
}

/// A TOML basic string holding `path`.
fn toml_string(path: &Path) -> String {
    let mut out = String::from("\"");
    for c in path.to_string_lossy().chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn run(args: ClusterArgs) -> ExitCode {
    match start_and_wait(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cargo xtask cluster: {message}");
            ExitCode::FAILURE
        }
    }
}

fn start_and_wait(args: &ClusterArgs) -> Result<(), String> {
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let target = if target.is_absolute() { target } else { root.join(target) };
    let cluster_dir = target.join("cluster");
    let ports = BasePorts { peer: args.base_port, client: args.client_port, metrics: args.metrics_port };
    let nodes = plan(args.nodes, ports, &cluster_dir)?;
    check_ports_free(&nodes)?;

    let binary = build_server(&root, &target, args.release)?;
    if args.clean && cluster_dir.exists() {
        std::fs::remove_dir_all(&cluster_dir)
            .map_err(|error| format!("cannot delete {}: {error}", cluster_dir.display()))?;
    }
    for node in &nodes {
        std::fs::create_dir_all(&node.dir).map_err(|error| format!("cannot create {}: {error}", node.dir.display()))?;
        let path = node.dir.join("settings.toml");
        let settings = settings_toml(node, &nodes, &args.cluster_id, &args.storage, args.otlp_endpoint.as_deref());
        std::fs::write(&path, settings).map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }

    let signals = signal_channel()?;
    let mut cluster = Cluster { children: Vec::new() };
    for node in &nodes {
        let child = spawn_node(&binary, node)?;
        cluster.children.push((node.clone(), child));
    }
    if let Err(message) = cluster.wait_until_serving(&signals) {
        cluster.stop();
        return Err(message);
    }
    print_endpoints(&nodes, &cluster_dir, args.otlp_endpoint.as_deref());

    let outcome = cluster.wait_for_signal_or_exit(&signals);
    cluster.stop();
    outcome
}

fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map_or(manifest_dir.clone(), Path::to_path_buf)
}

/// Refuses to start when a port is taken, naming the node and the address.
fn check_ports_free(nodes: &[NodePlan]) -> Result<(), String> {
    for node in nodes {
        let addresses = [("peer", &node.peer_addr), ("etcd API", &node.client_addr), ("metrics", &node.metrics_addr)];
        for (what, address) in addresses {
            if let Err(error) = TcpListener::bind(address.as_str()) {
                return Err(format!(
                    "node {}'s {what} address {address} is not free ({error}); stop whatever uses it, or pick \
                     other ports with --base-port / --client-port / --metrics-port",
                    node.id
                ));
            }
        }
    }
    Ok(())
}

fn build_server(root: &Path, target: &Path, release: bool) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root).args(["build", "--quiet", "-p", "d-engine-kv", "--bin", "d-engine-kv"]);
    if release {
        command.arg("--release");
    }
    eprintln!("building d-engine-kv ...");
    let status = command.status().map_err(|error| format!("cannot run cargo: {error}"))?;
    if !status.success() {
        return Err(format!("building d-engine-kv failed ({status})"));
    }
    let binary = target.join(if release { "release" } else { "debug" }).join("d-engine-kv");
    if !binary.exists() {
        return Err(format!("the build succeeded but {} does not exist", binary.display()));
    }
    Ok(binary)
}

fn spawn_node(binary: &Path, node: &NodePlan) -> Result<Child, String> {
    use std::os::unix::process::CommandExt;
    let log = |name: &str| {
        let path = node.dir.join(name);
        std::fs::File::create(&path).map_err(|error| format!("cannot create {}: {error}", path.display()))
    };
    Command::new(binary)
        .arg("--config")
        .arg(node.dir.join("settings.toml"))
        .stdin(Stdio::null())
        .stdout(log("stdout.log")?)
        .stderr(log("stderr.log")?)
        // Its own process group: a Ctrl-C in the terminal reaches only xtask, which then
        // stops the nodes one by one.
        .process_group(0)
        .spawn()
        .map_err(|error| format!("cannot start node {} ({}): {error}", node.id, binary.display()))
}

/// Ctrl-C or SIGTERM, as a message on a channel.
fn signal_channel() -> Result<mpsc::Receiver<()>, String> {
    let (sender, receiver) = mpsc::channel();
    crate::signals::on_interrupt(move || {
        let _ = sender.send(());
    })?;
    Ok(receiver)
}

struct Cluster {
    children: Vec<(NodePlan, Child)>,
}

impl Cluster {
    /// Waits until every node printed its "serving" line; fails on a signal, an early exit
    /// or the start timeout.
    fn wait_until_serving(&mut self, signals: &mpsc::Receiver<()>) -> Result<(), String> {
        let started = Instant::now();
        loop {
            self.check_all_running()?;
            let serving = self.children.iter().all(|(node, _)| {
                std::fs::read_to_string(node.dir.join("stdout.log")).is_ok_and(|out| out.contains("serving"))
            });
            if serving {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                let waiting: Vec<String> = self
                    .children
                    .iter()
                    .filter(|(node, _)| {
                        !std::fs::read_to_string(node.dir.join("stdout.log")).is_ok_and(|out| out.contains("serving"))
                    })
                    .map(|(node, _)| format!("node {} (see {})", node.id, node.dir.join("stderr.log").display()))
                    .collect();
                return Err(format!("not serving after {START_TIMEOUT:?}: {}", waiting.join(", ")));
            }
            if signals.recv_timeout(Duration::from_millis(100)).is_ok() {
                return Err("interrupted while starting".into());
            }
        }
    }

    /// Runs until a signal (Ok) or until a node exits on its own (Err, with its log's tail).
    fn wait_for_signal_or_exit(&mut self, signals: &mpsc::Receiver<()>) -> Result<(), String> {
        loop {
            if signals.recv_timeout(Duration::from_millis(200)).is_ok() {
                eprintln!("stopping the cluster ...");
                return Ok(());
            }
            self.check_all_running()?;
        }
    }

    fn check_all_running(&mut self) -> Result<(), String> {
        for (node, child) in &mut self.children {
            match child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    return Err(format!(
                        "node {} exited on its own ({status}); the end of {}:\n{}",
                        node.id,
                        node.dir.join("stderr.log").display(),
                        log_tail(&node.dir.join("stderr.log"), 20)
                    ));
                }
                Err(error) => return Err(format!("cannot watch node {}: {error}", node.id)),
            }
        }
        Ok(())
    }

    /// SIGTERM to every running node, then waits; SIGKILL to any still running after
    /// `STOP_TIMEOUT`.
    fn stop(&mut self) {
        for (_, child) in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                signal_pid("TERM", child.id());
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for (node, child) in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        eprintln!("node {} stopped ({status})", node.id);
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                    _ => {
                        eprintln!("node {} did not stop within {STOP_TIMEOUT:?}; killing it", node.id);
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

fn print_endpoints(nodes: &[NodePlan], cluster_dir: &Path, otlp_endpoint: Option<&str>) {
    println!("d-engine-kv cluster of {} nodes is up (files under {}):", nodes.len(), cluster_dir.display());
    for node in nodes {
        let etcd = format!("http://{}", node.client_addr);
        println!(
            "  node {}: etcd API {etcd:<24} peers + d-engine client API http://{}  metrics http://{}/metrics",
            node.id, node.peer_addr, node.metrics_addr
        );
    }
    match otlp_endpoint {
        Some(endpoint) => println!("traces: every node exports to {endpoint}"),
        None => println!("traces: off (--otlp-endpoint URL sends them to an OpenTelemetry collector)"),
    }
    let endpoints: Vec<&str> = nodes.iter().map(|node| node.client_addr.as_str()).collect();
    let endpoints = endpoints.join(",");
    println!("try:");
    println!("  ETCDCTL_API=3 etcdctl --endpoints={endpoints} put foo bar");
    println!("  ETCDCTL_API=3 etcdctl --endpoints={endpoints} get foo");
    println!("  ETCDCTL_API=3 etcdctl --endpoints={endpoints} endpoint status -w table");
    println!("Ctrl-C stops the cluster.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_settings_file_parses_as_node_settings() {
        let ports = BasePorts { peer: 9081, client: 2379, metrics: 9181 };
        let nodes = plan(3, ports, Path::new("/tmp/cluster \"x\"")).expect("ports fit");
        for node in &nodes {
            let text = settings_toml(node, &nodes, "local", "sled", Some("http://127.0.0.1:4317"));
            let settings = d_engine::Settings::from_toml(&text).expect("the generated file is valid");
            assert_eq!(settings.node.id, node.id);
            assert_eq!(settings.node.storage, d_engine::StorageKind::Sled);
            assert_eq!(settings.node.data_dir, node.dir.join("data"));
            assert_eq!(settings.cluster.id, "local");
            assert_eq!(settings.listen_addr().to_string(), node.peer_addr);
            assert_eq!(settings.metrics.listen_addr.as_deref(), Some(format!("127.0.0.1:{}", 9180 + node.id).as_str()));
            assert_eq!(settings.tracing.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
            let clients: Vec<_> = settings.cluster.members.iter().map(|m| m.client_addr.clone()).collect();
            assert_eq!(
                clients,
                ["127.0.0.1:2379", "127.0.0.1:12379", "127.0.0.1:22379"].map(|a| Some(a.to_owned())).to_vec()
            );
        }
    }

    #[test]
    fn ports_past_65535_are_refused() {
        let ports = |client| BasePorts { peer: 9081, client, metrics: 9181 };
        assert!(plan(7, ports(2379), Path::new("/tmp")).is_ok(), "node 7 gets 62379");
        let error = plan(7, ports(9000), Path::new("/tmp")).expect_err("node 7 would need port 69000");
        assert!(error.contains("node 7's etcd API port 69000"), "{error}");
    }
}
