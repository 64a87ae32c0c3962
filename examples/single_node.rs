//! A one-node KV cluster: the smallest useful d-engine program. The node elects itself,
//! then every write is committed as soon as it is durable on that one node.
//!
//! ```sh
//! cargo run --example single_node
//! ```
//!
//! Storage is in memory here; set `storage = "redb"` and a `data_dir` to keep the data.

use std::process::ExitCode;
use std::time::Duration;

use d_engine::{BoxedStateStore, Node, NodeBuilder, ReadConsistency, RequestError, Settings};
use d_engine_kv::{KvStateMachine, delete_command, get, output_revision, put_command};

type Error = Box<dyn std::error::Error + Send + Sync>;

const SETTINGS: &str = r#"
    [node]
    id = 1
    data_dir = ""
    storage = "memory"

    [cluster]
    id = "single"
    members = [{ id = 1, peer_addr = "127.0.0.1:0" }]

    [raft]
    tick_ms = 10
"#;

#[tokio::main]
async fn main() -> ExitCode {
    match tokio::time::timeout(Duration::from_secs(30), run()).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("single_node failed: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("single_node failed: it did not finish within 30 s");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let settings = Settings::from_toml(SETTINGS)?;
    let state_machine = KvStateMachine::open(d_engine::open_state_store(&settings)?)?;
    let node = NodeBuilder::new(settings, state_machine).start().await?;
    println!("node 1 serves on {}", node.listen_addr());

    // A lone node becomes leader after one election timeout.
    let mut status = node.watch_status();
    status.wait_for(|status| status.is_leader()).await?;
    println!("node 1 is the leader (term {})", node.status().term.0);

    for (key, value) in [("greeting", "hello"), ("subject", "world"), ("scratch", "temporary")] {
        let revision = put(&node, put_command(key, value)).await?;
        println!("put {key} = {value} (revision {revision})");
    }
    let revision = put(&node, delete_command("scratch")).await?;
    println!("deleted scratch (revision {revision})");

    let (greeting, subject, scratch) = node
        .read(ReadConsistency::Linearizable, |kv| -> Result<_, d_engine_kv::KvError> {
            Ok((get(kv, "greeting")?, get(kv, "subject")?, get(kv, "scratch")?))
        })
        .await??;
    let text =
        |value: Option<bytes::Bytes>| value.map_or("(absent)".into(), |v| String::from_utf8_lossy(&v).into_owned());
    println!("get: greeting = {}, subject = {}, scratch = {}", text(greeting), text(subject), text(scratch));

    node.shutdown();
    node.run().await?;
    println!("node 1 stopped");
    Ok(())
}

/// Proposes a command and returns the store's revision after it.
async fn put(node: &Node<KvStateMachine<BoxedStateStore>>, command: bytes::Bytes) -> Result<i64, Error> {
    let applied = node.propose(command).await.map_err(|error: RequestError| error.to_string())?;
    Ok(output_revision(&applied.output)?)
}
