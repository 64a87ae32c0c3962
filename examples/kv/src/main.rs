//! `d-engine-kv`: one node of the replicated KV store, serving etcd's v3 API.
//!
//! ```text
//! d-engine-kv --config node1.toml
//! ```
//! The settings file is d-engine's (docs/operations.md); every member needs a `client_addr`,
//! where its node serves the etcd API. SIGTERM or SIGINT stops the node gracefully.
//! Exit codes: 0 after a graceful stop, 2 for bad usage or settings, 1 for any other failure
//! (port in use, storage, another cluster's peers).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use d_engine::{NodeBuilder, Settings, StorageKind};
use d_engine_kv::{KvServiceConfig, KvStateMachine, NodeReplica};
use tokio::sync::watch;

/// One node of d-engine-kv, a replicated KV store speaking etcd's v3 API.
#[derive(Debug, Parser)]
#[command(name = "d-engine-kv", version)]
struct Cli {
    /// The node's settings file (TOML); D_ENGINE_* environment variables override it.
    #[arg(long)]
    config: PathBuf,
    /// The largest etcd request accepted, in bytes (etcd's default: 1.5 MiB).
    #[arg(long, default_value_t = d_engine_kv::DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: usize,
    /// How long a request may wait for the cluster before DEADLINE_EXCEEDED, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    request_timeout_ms: u64,
    /// For failure drills and tests: SIGUSR1 cuts this node off from every peer, SIGUSR2 heals.
    #[arg(long)]
    enable_fault_signals: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(&cli.config) {
        Ok(settings) => settings,
        Err(error) => return fail(ExitCode::from(2), &error),
    };
    let Some(client_addr) = client_addr(&settings) else {
        let index = settings.cluster.members.iter().position(|m| m.id == settings.node.id).unwrap_or_default();
        let message = format!(
            "invalid setting cluster.members[{index}].client_addr: d-engine-kv serves the etcd API there; give it as ip:port"
        );
        return fail(ExitCode::from(2), &message);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(ExitCode::FAILURE, &format!("cannot start the runtime: {error}")),
    };
    // `[log]` (format, level; `RUST_LOG` overrides the level) and `[tracing]` (the OTLP
    // exporter, whose gRPC channel lives on the runtime: set up inside it, flushed before it ends).
    let telemetry = match runtime.block_on(async { d_engine::init_telemetry(&settings) }) {
        Ok(guard) => guard,
        Err(error) => return fail(ExitCode::from(2), &error),
    };
    let result = runtime.block_on(run(cli, settings, client_addr));
    drop(telemetry);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(ExitCode::FAILURE, &error),
    }
}

fn fail(code: ExitCode, error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("d-engine-kv: error: {error}");
    code
}

fn client_addr(settings: &Settings) -> Option<SocketAddr> {
    settings.this_member().client_addr.as_ref()?.parse().ok()
}

async fn run(cli: Cli, settings: Settings, client_addr: SocketAddr) -> Result<(), String> {
    // Bound before the node starts, so a taken port fails the start, not a running node.
    let client_listener = std::net::TcpListener::bind(client_addr)
        .map_err(|error| format!("cannot listen on {client_addr} (client_addr, the etcd API): {error}"))?;
    client_listener.set_nonblocking(true).map_err(|error| error.to_string())?;
    let client_listener = tokio::net::TcpListener::from_std(client_listener).map_err(|error| error.to_string())?;

    let store =
        d_engine::open_state_store(&settings).map_err(|error| format!("cannot open the state store: {error}"))?;
    let state_machine = KvStateMachine::open(store).map_err(|error| format!("cannot open the KV state: {error}"))?;
    let (shutdown_tx, shutdown_rx) = watch::channel(());
    let node = NodeBuilder::new(settings.clone(), state_machine)
        .shutdown_signal(shutdown_rx.clone())
        .start()
        .await
        .map_err(|error| error.to_string())?;
    spawn_signal_handlers(shutdown_tx.clone(), node.network_faults().clone(), cli.enable_fault_signals)?;

    let data_dir = (settings.node.storage != StorageKind::Memory).then_some(settings.node.data_dir.as_path());
    let replica = Arc::new(NodeReplica::new(node.clone(), data_dir, Duration::from_millis(cli.request_timeout_ms)));
    let config = KvServiceConfig {
        max_request_bytes: cli.max_request_bytes,
        node_id: settings.node.id,
        ..KvServiceConfig::default()
    };
    let mut kv_shutdown = shutdown_rx;
    let kv_server = tokio::spawn(d_engine_kv::serve(client_listener, replica, config, async move {
        let _ = kv_shutdown.changed().await;
    }));
    println!(
        "d-engine-kv: node {} of cluster {} serving etcd API on {client_addr}, peers on {}",
        settings.node.id,
        settings.cluster.id,
        node.listen_addr()
    );

    let stopped = node.run().await;
    // Whatever stopped the node, the etcd API stops too; in-flight calls get their answers.
    shutdown_tx.send_replace(());
    match tokio::time::timeout(Duration::from_secs(5), kv_server).await {
        Ok(Ok(Err(error))) => tracing::warn!(%error, "the etcd API server failed"),
        Err(_) => tracing::warn!("the etcd API server did not stop within 5 s"),
        _ => {}
    }
    stopped.map_err(|error| error.to_string())?;
    tracing::info!("stopped gracefully");
    Ok(())
}

/// SIGTERM and SIGINT start a graceful shutdown; with `faults`, SIGUSR1 isolates the node
/// from its peers and SIGUSR2 heals it.
fn spawn_signal_handlers(
    shutdown: watch::Sender<()>,
    network: d_engine::NetworkFaults,
    faults: bool,
) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind| signal(kind).map_err(|error| format!("cannot install a signal handler: {error}"));
    let mut terminate = listen(SignalKind::terminate())?;
    let mut interrupt = listen(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        }
        shutdown.send_replace(());
    });
    if faults {
        let mut isolate = listen(SignalKind::user_defined1())?;
        let mut heal = listen(SignalKind::user_defined2())?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(()) = isolate.recv() => {
                        tracing::warn!("SIGUSR1: isolated from every peer");
                        network.isolate();
                    }
                    Some(()) = heal.recv() => {
                        tracing::warn!("SIGUSR2: healed");
                        network.heal();
                    }
                    else => break,
                }
            }
        });
    }
    Ok(())
}
