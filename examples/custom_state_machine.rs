//! A state machine of your own: a tiny bank, replicated on 3 in-process nodes (memory
//! storage, real gRPC on 127.0.0.1), driven through the remote client `d-engine-client`.
//!
//! ```sh
//! cargo run --example custom_state_machine
//! ```
//!
//! What a state machine must provide:
//! - `StateMachine` (from `d-engine-core`): `apply` committed entries in order and return one
//!   output per entry, deterministically; report the last applied log id; build and install
//!   snapshots;
//! - `Application` (from `d-engine`): answer read-only byte queries (the client API's
//!   `query`).
//!
//! Commands here are text: `open alice 100`, `transfer alice bob 30`. A refused command
//! (unknown account, not enough money) changes nothing on any replica and says why in its
//! output; only a storage failure would be an error of `apply`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use d_engine::{Application, Node, NodeBuilder, Settings};
use d_engine_client::{Client, ClientConfig, Consistency};
use d_engine_core::storage::{Snapshot, StateMachine, StorageError};
use d_engine_core::{Entry, EntryPayload, LogId};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Accounts and their balances, in whole coins.
#[derive(Default)]
struct Bank {
    accounts: BTreeMap<String, u64>,
    applied: LogId,
}

impl Bank {
    /// Executes one command; `Err` is a refusal that changed nothing.
    fn execute(&mut self, command: &str) -> Result<String, String> {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words[..] {
            ["open", name, amount] => {
                let amount = parse_amount(amount)?;
                if self.accounts.contains_key(name) {
                    return Err(format!("account {name} already exists"));
                }
                self.accounts.insert(name.to_owned(), amount);
                Ok(format!("opened {name} with {amount}"))
            }
            ["transfer", from, to, amount] => {
                let amount = parse_amount(amount)?;
                let balance = |name: &str| self.accounts.get(name).copied().ok_or(format!("no account {name}"));
                let (from_balance, _) = (balance(from)?, balance(to)?);
                if from_balance < amount {
                    return Err(format!("{from} has {from_balance}, cannot send {amount}"));
                }
                *self.accounts.entry(from.to_owned()).or_default() -= amount;
                *self.accounts.entry(to.to_owned()).or_default() += amount;
                Ok(format!("moved {amount} from {from} to {to}"))
            }
            _ => Err(format!("unknown command {command:?}")),
        }
    }

    /// `name=balance` lines, in name order: the snapshot and the answer to `balances`.
    fn encode(&self) -> String {
        self.accounts.iter().map(|(name, balance)| format!("{name}={balance}\n")).collect()
    }
}

fn parse_amount(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| format!("{text:?} is not an amount"))
}

impl StateMachine for Bank {
    fn apply(&mut self, entries: &[Entry]) -> Result<Vec<Bytes>, StorageError> {
        let mut outputs = Vec::with_capacity(entries.len());
        for entry in entries {
            // Leader no-ops and membership changes are entries too: they get an empty output.
            let output = match &entry.payload {
                EntryPayload::Command(command) => match self.execute(&String::from_utf8_lossy(command)) {
                    Ok(done) => done,
                    Err(refused) => format!("refused: {refused}"),
                },
                _ => String::new(),
            };
            self.applied = entry.log_id;
            outputs.push(Bytes::from(output));
        }
        Ok(outputs)
    }

    fn last_applied(&self) -> LogId {
        self.applied
    }

    fn build_snapshot(&mut self) -> Result<(LogId, Bytes), StorageError> {
        Ok((self.applied, Bytes::from(self.encode())))
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let corrupt = |reason: &str| StorageError::Corrupt { location: "bank snapshot".into(), reason: reason.into() };
        let text = std::str::from_utf8(&snapshot.data).map_err(|_| corrupt("not UTF-8"))?;
        let mut accounts = BTreeMap::new();
        for line in text.lines() {
            let (name, balance) = line.split_once('=').ok_or_else(|| corrupt("a line without '='"))?;
            accounts.insert(name.to_owned(), balance.parse().map_err(|_| corrupt("a balance is not a number"))?);
        }
        self.accounts = accounts;
        self.applied = snapshot.meta.last_included;
        Ok(())
    }
}

impl Application for Bank {
    /// `balance NAME` or `balances`.
    fn query(&self, query: &[u8]) -> Result<Bytes, String> {
        let query = String::from_utf8_lossy(query);
        match query.split_whitespace().collect::<Vec<_>>()[..] {
            ["balance", name] => self
                .accounts
                .get(name)
                .map(|balance| Bytes::from(balance.to_string()))
                .ok_or(format!("no account {name}")),
            ["balances"] => Ok(Bytes::from(self.encode())),
            _ => Err(format!("unknown query {query:?}")),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match tokio::time::timeout(Duration::from_secs(30), run()).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("custom_state_machine failed: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("custom_state_machine failed: it did not finish within 30 s");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let listeners = (0..3).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<Vec<_>, _>>()?;
    let addresses = listeners.iter().map(TcpListener::local_addr).collect::<Result<Vec<_>, _>>()?;
    let members: Vec<String> =
        addresses.iter().zip(1..).map(|(address, id)| format!("{{ id = {id}, peer_addr = \"{address}\" }}")).collect();
    let mut nodes: Vec<Node<Bank>> = Vec::new();
    for (id, listener) in (1..).zip(listeners) {
        let settings = Settings::from_toml(&format!(
            "[node]\nid = {id}\ndata_dir = \"\"\nstorage = \"memory\"\n\
             [cluster]\nid = \"bank\"\nmembers = [{}]\n[raft]\ntick_ms = 20\n",
            members.join(", ")
        ))?;
        nodes.push(NodeBuilder::new(settings, Bank::default()).listener(listener).start().await?);
    }

    // The nodes serve the d-engine client API on their peer addresses; the client finds the
    // leader by itself, following redirects.
    let endpoints: Vec<String> = addresses.iter().map(|address| format!("http://{address}")).collect();
    println!("3 bank nodes at {}", endpoints.join(", "));
    let client = Client::connect(ClientConfig::new(endpoints)).await?;
    for command in
        ["open alice 100", "open bob 20", "transfer alice bob 30", "transfer bob carol 5", "transfer bob alice 500"]
    {
        let proposed = client.propose(command).await?;
        println!("{command:<24} -> {} (log index {})", String::from_utf8_lossy(&proposed.output), proposed.index);
    }
    let balances = client.query("balances", Consistency::Linearizable).await?;
    let balances = String::from_utf8_lossy(&balances).trim_end().replace('\n', ", ");
    println!("balances (linearizable query): {balances}");
    let status = client.status().await?;
    let leader = status.leader_id.map_or("unknown".to_owned(), |id| format!("node {id}"));
    println!("leader: {leader} in term {}", status.term);
    if balances != "alice=70, bob=50" {
        return Err(format!("unexpected balances: {balances}").into());
    }

    for node in nodes {
        node.shutdown();
        node.run().await?;
    }
    Ok(())
}
