//! Structured logs: in JSON, every line a node writes carries its id and current term.
//! (Its own test binary: the tracing subscriber is global to a process.)

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::Cluster;
use d_engine::{LogFormat, LogSettings, StorageKind};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_name_the_node_and_its_term() {
    if std::env::var("RUST_LOG").is_ok_and(|filter| !filter.is_empty()) {
        eprintln!("SKIPPED: RUST_LOG is set and would replace the test's `info` level");
        return;
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let settings = LogSettings { format: LogFormat::Json, level: "info".to_owned() };
    d_engine::init_logging_to(&settings, move || writer.clone(), false).expect("the first subscriber of this process");
    assert!(matches!(
        d_engine::init_logging_to(&settings, std::io::sink, false),
        Err(d_engine::LoggingError::AlreadyInstalled)
    ));

    let cluster = Cluster::start(1, StorageKind::Memory).await;
    let leader = cluster.leader().await;
    cluster.node(leader).propose("k=v").await.expect("a write");
    cluster.shutdown().await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).expect("UTF-8 logs");
    let became_leader = text
        .lines()
        .find(|line| line.contains("role changed") && line.contains("Leader"))
        .unwrap_or_else(|| panic!("no 'role changed' line for the leader in:\n{text}"));
    assert!(became_leader.contains(r#""name":"node""#), "the line carries the node span: {became_leader}");
    assert!(became_leader.contains(r#""id":1"#), "the line names node 1: {became_leader}");
    let in_term_1 = |line: &str| line.contains(r#""term":1,"#) || line.contains(r#""term":1}"#);
    assert!(in_term_1(became_leader), "the span carries the term the node leads in: {became_leader}");
    // The storage and apply threads log in the node's span of the current term too.
    for message in ["log synced and closed", "state machine flushed and stopped"] {
        let line =
            text.lines().find(|line| line.contains(message)).unwrap_or_else(|| panic!("no {message:?} in:\n{text}"));
        assert!(line.contains(r#""id":1"#) && in_term_1(line), "the thread's line names node 1 in term 1: {line}");
    }
    assert!(!text.contains("d_engine.propose"), "per-request trace spans stay out of log lines:\n{text}");
}
