//! Structured logs and traces: one `tracing` subscriber for a node's process — log lines,
//! human or JSON, with the level from the settings or `RUST_LOG`, and, with the `otel`
//! feature and `tracing.otlp_endpoint` set, spans exported to an OpenTelemetry collector.
//!
//! Every task and thread of a node runs inside a `node` span carrying `id` and `term` (a
//! new span when the term changes), so every line a node writes names the node and its
//! term: `node{id=2 term=5}: role changed ...` in the human format, a `span` object in
//! JSON. Role changes, snapshots and membership changes are logged at `info`; per-message
//! detail only at `debug` and `trace`.
//!
//! The per-request and per-entry spans of [`crate::telemetry`] (target `d_engine::trace`)
//! go to the exporter only: log lines leave them out unless `RUST_LOG` names that target.

use std::io::IsTerminal;

use d_engine_grpc::trace_context::TRACE_TARGET;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::{LogFormat, LogSettings, Settings, TracingSettings};
use crate::telemetry::{self, TelemetryGuard};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `RUST_LOG` or `log.level` is not a valid filter.
    #[error("invalid log filter {filter:?}: {reason}")]
    Filter {
        /// The filter text.
        filter: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The process already has a global `tracing` subscriber.
    #[error("a tracing subscriber is already installed in this process")]
    AlreadyInstalled,
    /// The OpenTelemetry exporter could not be built.
    #[error("cannot export traces to {endpoint}: {reason}")]
    Exporter {
        /// `tracing.otlp_endpoint`.
        endpoint: String,
        /// What failed.
        reason: String,
    },
}

/// Installs the process-wide subscriber for `settings.log`, writing to stderr.
/// `RUST_LOG`, when set, replaces `settings.level`. No traces are exported; see
/// [`init_telemetry`] for that.
pub fn init_logging(settings: &LogSettings) -> Result<(), LoggingError> {
    let colours = std::io::stderr().is_terminal();
    init_logging_to(settings, std::io::stderr, colours)
}

/// [`init_logging`] with another writer (tests capture the lines this way).
pub fn init_logging_to<W>(settings: &LogSettings, writer: W, colours: bool) -> Result<(), LoggingError>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    install(settings, &TracingSettings::default(), writer, colours).map(|_guard| ())
}

/// Installs the process-wide subscriber for `settings.log` (as [`init_logging`]) and, when
/// `settings.tracing.otlp_endpoint` is set, an OpenTelemetry exporter to it (needs the
/// `otel` feature; [`Settings::validate`] refuses the endpoint without it). Keep the guard
/// until the process ends: dropping it flushes the spans not yet exported.
pub fn init_telemetry(settings: &Settings) -> Result<TelemetryGuard, LoggingError> {
    let colours = std::io::stderr().is_terminal();
    install(&settings.log, &settings.tracing, std::io::stderr, colours)
}

fn install<W>(
    log: &LogSettings,
    tracing: &TracingSettings,
    writer: W,
    colours: bool,
) -> Result<TelemetryGuard, LoggingError>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let from_env = std::env::var("RUST_LOG").ok().filter(|text| !text.is_empty());
    let filter_text = from_env.clone().unwrap_or(log.level.clone());
    let filter_error =
        |error: &dyn std::fmt::Display| LoggingError::Filter { filter: filter_text.clone(), reason: error.to_string() };
    let mut filter = EnvFilter::try_new(&filter_text).map_err(|error| filter_error(&error))?;
    // Spans made for the exporter stay out of log lines unless RUST_LOG asks for them.
    let spans_logged = from_env.is_some_and(|text| text.contains(TRACE_TARGET));
    if !spans_logged {
        filter = filter.add_directive(format!("{TRACE_TARGET}=off").parse().map_err(|error| filter_error(&error))?);
    }
    let lines = tracing_subscriber::fmt::layer().with_writer(writer).with_target(false);
    let lines = match log.format {
        LogFormat::Human => lines.with_ansi(colours).with_filter(filter).boxed(),
        LogFormat::Json => lines.json().with_current_span(true).with_span_list(false).with_filter(filter).boxed(),
    };
    let (exporter, guard) = telemetry::exporter_layer(tracing, spans_logged)?;
    tracing_subscriber::registry().with(lines).with(exporter).try_init().map_err(|_| LoggingError::AlreadyInstalled)?;
    Ok(guard)
}
