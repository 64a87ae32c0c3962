//! Distributed tracing of one write through a 3-node cluster over gRPC: the spans an
//! in-memory OpenTelemetry exporter receives form one tree, from the client's span through
//! the leader's proposal to each follower's append and fsync. This binary owns the
//! process's subscriber (an OpenTelemetry layer), so it holds this one test.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::Cluster;
use d_engine::StorageKind;
use d_engine_client::{Client, ClientConfig};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The finished spans of one trace, by id.
struct Trace {
    spans: HashMap<SpanId, SpanData>,
}

impl Trace {
    fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a SpanData> + 'a {
        self.spans.values().filter(move |span| span.name == name)
    }

    /// The one span called `name` on node `node` (or anywhere, for `None`).
    fn one<'a>(&'a self, name: &'a str, node: Option<u64>) -> &'a SpanData {
        let found: Vec<_> = self.named(name).filter(|span| node.is_none() || node_id(span) == node).collect();
        assert_eq!(found.len(), 1, "one {name} span on node {node:?}, found {}: {:#?}", found.len(), self.summary());
        found[0]
    }

    fn parent_of(&self, span: &SpanData) -> Option<&SpanData> {
        self.spans.get(&span.parent_span_id)
    }

    fn assert_child(&self, child: &SpanData, parent: &SpanData) {
        assert_eq!(
            child.parent_span_id,
            parent.span_context.span_id(),
            "{} (node {:?}) should hang under {} (node {:?}); it hangs under {:?}",
            child.name,
            node_id(child),
            parent.name,
            node_id(parent),
            self.parent_of(child).map(|p| (&p.name, node_id(p)))
        );
    }

    fn summary(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .spans
            .values()
            .map(|span| {
                let parent = self.parent_of(span).map_or("-".into(), |p| format!("{}@{:?}", p.name, node_id(p)));
                format!("{}@{:?} <- {parent}", span.name, node_id(span))
            })
            .collect();
        lines.sort();
        lines
    }
}

fn node_id(span: &SpanData) -> Option<u64> {
    span.attributes.iter().find(|kv| kv.key.as_str() == "node_id").and_then(|kv| match &kv.value {
        opentelemetry::Value::I64(id) => Some(*id as u64),
        other => other.as_str().parse().ok(),
    })
}

/// The spans of `trace_id` finished so far.
fn trace(exporter: &InMemorySpanExporter, trace_id: TraceId) -> Trace {
    let spans = exporter.get_finished_spans().expect("the exporter holds spans");
    let spans = spans
        .into_iter()
        .filter(|span| span.span_context.trace_id() == trace_id)
        .map(|span| (span.span_context.span_id(), span))
        .collect();
    Trace { spans }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_write_is_one_trace_from_the_client_through_the_leader_to_every_followers_fsync() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tracing-test")))
        .init();

    let cluster = Cluster::start(3, StorageKind::Redb).await;
    let leader = cluster.leader().await;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let address = |id: u64| format!("http://{}", cluster.node(id).listen_addr());
    // A follower first: it refuses (not the leader) and the client follows the redirect; both
    // attempts belong to the client's span.
    let client = Client::connect(ClientConfig::new([address(followers[0]), address(leader)])).await.unwrap();

    let root = tracing::info_span!("test.write");
    let proposed = client.propose(&b"x=1"[..]).instrument(root.clone()).await.expect("the write succeeds");
    drop(root);
    for id in [leader, followers[0], followers[1]] {
        cluster.wait_applied(id, proposed.index).await;
    }

    // Spans end asynchronously (a server span when its response is written): poll a while.
    let exported = |name: &str| exporter.get_finished_spans().unwrap().into_iter().find(|span| span.name == name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let trace = loop {
        if let Some(root) = exported("test.write") {
            let trace = trace(&exporter, root.span_context.trace_id());
            let complete = trace.named("d_engine.grpc").any(|span| node_id(span) == Some(leader))
                && trace.named("d_engine.replicate").count() == 2
                && trace.named("d_engine.storage_sync").count() == 3
                && trace.named("d_engine.apply").count() == 1;
            if complete {
                break trace;
            }
            assert!(tokio::time::Instant::now() < deadline, "the trace is incomplete: {:#?}", trace.summary());
        }
        assert!(tokio::time::Instant::now() < deadline, "the root span was never exported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let root = trace.one("test.write", None);
    assert!(trace.parent_of(root).is_none(), "the test's span is the root");
    let client_span = trace.one("d_engine_client.propose", None);
    trace.assert_child(client_span, root);
    let server = trace.one("d_engine.grpc", Some(leader));
    trace.assert_child(server, client_span);
    let refused = trace.one("d_engine.grpc", Some(followers[0]));
    trace.assert_child(refused, client_span);
    let propose = trace.one("d_engine.propose", Some(leader));
    trace.assert_child(propose, server);
    for stage in ["d_engine.commit", "d_engine.apply"] {
        trace.assert_child(trace.one(stage, Some(leader)), propose);
    }
    trace.assert_child(trace.one("d_engine.storage_sync", Some(leader)), propose);
    for &follower in &followers {
        let replicate = trace.one("d_engine.replicate", Some(follower));
        trace.assert_child(replicate, propose);
        trace.assert_child(trace.one("d_engine.storage_sync", Some(follower)), replicate);
    }

    cluster.shutdown().await;
    provider.shutdown().expect("the provider shuts down");
}
