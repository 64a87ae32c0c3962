//! `d-engine-otlp-sink`: a stand-in OpenTelemetry collector that accepts OTLP trace
//! exports over gRPC and counts the spans, so that tracing can be measured switched on
//! without a real collector (`cargo xtask bench --observability` runs it).
//!
//! ```text
//! d-engine-otlp-sink --listen 127.0.0.1:4317
//! ```
//!
//! Its first line on stdout is `listening on ADDR` (useful with port 0); then `spans N`,
//! the total received so far, every second. It runs until killed.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use d_engine_kv::otlp_sink::OtlpSink;

/// A stand-in OpenTelemetry collector that counts the spans it is sent.
#[derive(Debug, Parser)]
#[command(name = "d-engine-otlp-sink", version)]
struct Cli {
    /// Where to accept OTLP/gRPC exports, ip:port (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:4317")]
    listen: SocketAddr,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("d-engine-otlp-sink: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli.listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("d-engine-otlp-sink: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: SocketAddr) -> Result<(), String> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    println!("listening on {address}");
    let sink = OtlpSink::counting();
    let counted = sink.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            println!("spans {}", counted.received());
        }
    });
    sink.serve(listener).await.map_err(|error| error.to_string())
}
