//! A stand-in OpenTelemetry collector: an OTLP/gRPC trace service that counts the spans it
//! is sent and, when asked, keeps them. `d-engine-otlp-sink` serves it (so that tracing can
//! be measured switched on without a real collector), and the tracing process test reads
//! the spans it kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tonic::{Request, Response, Status};

/// One received span, flattened: what a test asserts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// The `service.name` of the process that sent it.
    pub service: String,
    /// The span's name.
    pub name: String,
    /// Its trace id (16 bytes).
    pub trace_id: Vec<u8>,
    /// Its span id (8 bytes).
    pub span_id: Vec<u8>,
    /// Its parent's span id (empty for a root).
    pub parent_span_id: Vec<u8>,
    /// Its `node_id` attribute, if any.
    pub node_id: Option<i64>,
}

impl ReceivedSpan {
    /// `name@node span <- parent` with the ids in hex, for failure messages.
    pub fn summary(&self) -> String {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        format!("{}@{:?} {} <- {}", self.name, self.node_id, hex(&self.span_id), hex(&self.parent_span_id))
    }
}

/// The trace service. Cheap to clone; clones share the count and the kept spans.
#[derive(Clone, Default)]
pub struct OtlpSink {
    received: Arc<AtomicU64>,
    kept: Option<Arc<Mutex<Vec<ReceivedSpan>>>>,
}

impl OtlpSink {
    /// A sink that only counts (for long runs: it holds nothing).
    pub fn counting() -> OtlpSink {
        OtlpSink::default()
    }

    /// A sink that also keeps every span.
    pub fn keeping() -> OtlpSink {
        OtlpSink { kept: Some(Arc::default()), ..OtlpSink::default() }
    }

    /// Spans received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// The spans kept so far (none for a counting sink).
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.kept
            .as_ref()
            .map(|kept| kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone())
            .unwrap_or_default()
    }

    /// Serves OTLP/gRPC trace exports on `listener` until the process ends or serving fails.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> Result<(), tonic::transport::Error> {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(self))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    }
}

#[tonic::async_trait]
impl TraceService for OtlpSink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let request = request.into_inner();
        let count: usize = request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        self.received.fetch_add(count as u64, Ordering::Relaxed);
        if let Some(kept) = &self.kept {
            let mut kept = kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for resource_spans in request.resource_spans {
                let resource = resource_spans.resource.map(|resource| resource.attributes).unwrap_or_default();
                let service = attribute(&resource, "service.name")
                    .and_then(|value| if let Value::StringValue(name) = value { Some(name.clone()) } else { None })
                    .unwrap_or_default();
                for span in resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans) {
                    let node_id = attribute(&span.attributes, "node_id").and_then(|value| match value {
                        Value::IntValue(id) => Some(*id),
                        // tracing-opentelemetry exports u64 fields as strings.
                        Value::StringValue(id) => id.parse().ok(),
                        _ => None,
                    });
                    kept.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        node_id,
                    });
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// The value of attribute `key`.
fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()
}
