//! Structured logs: one `tracing` subscriber for a node's process, human or JSON, with the
//! level from the settings or `RUST_LOG`.
//!
//! Every task and thread of a node runs inside a `node` span carrying `id` and `term` (the
//! event loop records the term when it changes), so every line a node writes names the node
//! and its term: `node{id=2 term=5}: role changed ...` in the human format, a `span`
//! object in JSON. Role changes, snapshots and membership changes are logged at `info`;
//! per-message detail only at `debug` and `trace`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::settings::{LogFormat, LogSettings};

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
}

/// Installs the process-wide subscriber described by `settings`, writing to stderr.
/// `RUST_LOG`, when set, replaces `settings.level`.
pub fn init_logging(settings: &LogSettings) -> Result<(), LoggingError> {
    let colours = std::io::stderr().is_terminal();
    init_logging_to(settings, std::io::stderr, colours)
}

/// [`init_logging`] with another writer (tests capture the lines this way).
pub fn init_logging_to<W>(settings: &LogSettings, writer: W, colours: bool) -> Result<(), LoggingError>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let filter_text = std::env::var("RUST_LOG").ok().filter(|text| !text.is_empty()).unwrap_or(settings.level.clone());
    let filter = EnvFilter::try_new(&filter_text)
        .map_err(|error| LoggingError::Filter { filter: filter_text.clone(), reason: error.to_string() })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_target(false);
    let installed = match settings.format {
        LogFormat::Human => builder.with_ansi(colours).try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
    };
    installed.map_err(|_| LoggingError::AlreadyInstalled)
}
