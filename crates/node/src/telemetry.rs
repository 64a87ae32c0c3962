//! Distributed tracing: the spans a node makes per request and per entry, and their
//! export to an OpenTelemetry collector (OTLP over gRPC, cargo feature `otel`).
//!
//! One write, traced, is one trace across the cluster:
//! ```text
//!  client span (d-engine-client sends its `traceparent` in the request metadata)
//!   └─ d_engine.grpc              leader: the request, parent from `traceparent`
//!       └─ d_engine.propose       leader: from submission to the applied answer
//!           ├─ d_engine.storage_sync   leader: the fsync that made the entry durable
//!           ├─ d_engine.replicate      each follower: append received → entry durable
//!           │   └─ d_engine.storage_sync   that follower's fsync
//!           ├─ d_engine.commit         leader: accepted → committed
//!           └─ d_engine.apply          leader: the state machine applying it
//! ```
//! The entry's context crosses to followers inside the append message (`entry_traces`,
//! see `d_engine_grpc::trace_context`); `entry_traces` keeps it per entry on each node.
//! Every one of these spans has the target `d_engine::trace` and a `node_id` field.
//!
//! Sampling is decided once, at the head, by [`grpc_request_span`]: a request that carries
//! a `traceparent` is traced when that context is sampled; any other starts a trace with
//! probability `tracing.sample_ratio`. An untraced request makes no span at all, here or on
//! other nodes: `Node::propose` makes its span only inside a traced request, and an entry
//! is traced on followers only when the leader traced it. A process whose subscriber does
//! not enable the `d_engine::trace` target makes none of these spans whatever the sampling.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use d_engine_grpc::trace_context;
pub use d_engine_grpc::trace_context::{TRACE_TARGET, inject_current};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::logging::LoggingError;
use crate::settings::TracingSettings;

/// The gRPC path prefix of peer RPCs: long-lived streams, not requests, so never traced.
const PEER_RPC_PREFIX: &str = "/dengine.raft.v1.";

/// The fraction of requests without a trace context that start a trace: `f64` bits, set
/// by [`crate::init_telemetry`] and [`crate::init_logging`] ([`exporter_layer`]): from
/// `tracing.sample_ratio` with an exporter, 0 without one. 1.0 when neither was called, so
/// that an application's own OpenTelemetry subscriber sees every request.
static SAMPLE_RATIO: AtomicU64 = AtomicU64::new(1.0f64.to_bits());

/// Sets the fraction of requests that start a trace (clamped to 0.0..=1.0).
pub(crate) fn set_sample_ratio(ratio: f64) {
    SAMPLE_RATIO.store(ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
}

/// Whether a request without a trace context starts a trace: a coin that lands on yes with
/// probability `SAMPLE_RATIO`.
fn start_trace() -> bool {
    let ratio = f64::from_bits(SAMPLE_RATIO.load(Ordering::Relaxed));
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    thread_local! {
        // xorshift64*, seeded per thread from the standard library's random hasher keys.
        static STATE: Cell<u64> = Cell::new(RandomState::new().build_hasher().finish() | 1);
    }
    let draw = STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    });
    // The top 53 bits as a uniform fraction of 1.
    ((draw >> 11) as f64 / (1u64 << 53) as f64) < ratio
}

/// A `trace_fn` for a tonic server: one `d_engine.grpc` span per traced client request (see
/// the module docs on sampling), child of the caller's span when the request carries a
/// `traceparent` header. Peer RPCs get none.
///
/// The node's own server uses it; an application serving its own API (as the KV example
/// does) passes it to `tonic::transport::Server::builder().trace_fn(...)`, so that its
/// requests and the proposals they make share one trace.
pub fn grpc_request_span(
    node_id: u64,
) -> impl Fn(&tonic::codegen::http::Request<()>) -> tracing::Span + Clone + Send + Sync + 'static {
    move |request| {
        let rpc = request.uri().path();
        if rpc.starts_with(PEER_RPC_PREFIX) {
            return tracing::Span::none();
        }
        let incoming = trace_context::traceparent_header(request.headers());
        let traced = incoming.map_or_else(start_trace, trace_context::is_sampled);
        if !traced {
            return tracing::Span::none();
        }
        let span = tracing::info_span!(target: TRACE_TARGET, "d_engine.grpc", node_id, rpc, otel.kind = "server");
        if let Some(traceparent) = incoming {
            trace_context::set_remote_parent(&span, traceparent);
        }
        span
    }
}

/// Keeps the OpenTelemetry exporter running; dropping it flushes and stops it. Without an
/// exporter it holds nothing.
#[must_use = "dropping the guard stops exporting traces"]
pub struct TelemetryGuard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("d-engine: flushing traces failed: {error}");
        }
    }
}

/// A boxed subscriber layer.
pub(crate) type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync>;

/// The layer that exports d-engine's trace spans (and the application's own, at `info`
/// and above) when `settings.otlp_endpoint` is set, with its guard; sets the sampling.
///
/// Without an endpoint nothing would receive the spans: requests start no trace (a span
/// per request and per proposal costs ~3% of a busy leader's CPU), unless `spans_logged`
/// (`RUST_LOG` names the trace target), where every request is traced into the log lines.
pub(crate) fn exporter_layer<S>(
    settings: &TracingSettings,
    spans_logged: bool,
) -> Result<(Option<BoxedLayer<S>>, TelemetryGuard), LoggingError>
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let Some(endpoint) = &settings.otlp_endpoint else {
        set_sample_ratio(if spans_logged { 1.0 } else { 0.0 });
        return Ok((
            None,
            TelemetryGuard {
                #[cfg(feature = "otel")]
                provider: None,
            },
        ));
    };
    set_sample_ratio(settings.sample_ratio);
    #[cfg(feature = "otel")]
    {
        let (layer, provider) = otel::layer(endpoint, settings)?;
        Ok((Some(layer), TelemetryGuard { provider: Some(provider) }))
    }
    #[cfg(not(feature = "otel"))]
    Err(LoggingError::Exporter {
        endpoint: endpoint.clone(),
        reason: "this build of d-engine has no OpenTelemetry exporter (cargo feature `otel`)".into(),
    })
}

/// Whether a span or event goes to the exporter: d-engine's trace spans and anything of the
/// application's, but not d-engine's long-lived `node` spans and log events.
#[cfg(feature = "otel")]
fn is_exported(metadata: &tracing::Metadata<'_>) -> bool {
    let target = metadata.target();
    let ours = target == "d_engine" || target.starts_with("d_engine::");
    (target == TRACE_TARGET || !ours) && *metadata.level() <= tracing::Level::INFO
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::TracerProvider;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
    use tracing::Subscriber;
    use tracing_subscriber::Layer;
    use tracing_subscriber::registry::LookupSpan;

    use crate::logging::LoggingError;
    use crate::settings::TracingSettings;

    /// An OTLP/gRPC exporter to `endpoint`, batched. It keeps every span it is given:
    /// sampling happened at the head (`grpc_request_span`), before any span was made.
    pub(super) fn layer<S>(
        endpoint: &str,
        settings: &TracingSettings,
    ) -> Result<(super::BoxedLayer<S>, SdkTracerProvider), LoggingError>
    where
        S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|error| LoggingError::Exporter { endpoint: endpoint.to_owned(), reason: error.to_string() })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .with_resource(Resource::builder().with_service_name(settings.service_name.clone()).build())
            .build();
        let tracer = provider.tracer("d-engine");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(tracing_subscriber::filter::filter_fn(super::is_exported))
            .boxed();
        Ok((layer, provider))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_sampler_starts_about_the_configured_fraction_of_traces() {
        set_sample_ratio(0.0);
        assert!((0..1000).all(|_| !start_trace()), "ratio 0 starts none");
        set_sample_ratio(0.25);
        let started = (0..10_000).filter(|_| start_trace()).count();
        assert!((2_000..3_000).contains(&started), "ratio 0.25 started {started} of 10,000");
        set_sample_ratio(7.0);
        assert!((0..1000).all(|_| start_trace()), "a ratio above 1 is clamped to 1: every request");

        // (Same test: the ratio is one per process.) Without an exporter no request starts a
        // trace, unless the trace spans go to the log lines.
        let no_exporter = TracingSettings { otlp_endpoint: None, ..TracingSettings::default() };
        let (layer, _guard) = exporter_layer::<tracing_subscriber::Registry>(&no_exporter, false).expect("no exporter");
        assert!(layer.is_none(), "no endpoint, no exporter layer");
        assert!((0..1000).all(|_| !start_trace()), "nothing would receive the spans: no request is traced");
        let (_layer, _guard) = exporter_layer::<tracing_subscriber::Registry>(&no_exporter, true).expect("no exporter");
        assert!((0..1000).all(|_| start_trace()), "RUST_LOG names the trace target: every request is traced");
    }
}
