//! Clients of the simulated KV store and the history they record.
//!
//! Each client has at most one operation outstanding. It sends it to the node it
//! believes leads; a definite refusal (not the leader, overwritten) is retried on the
//! hinted or next node within the operation's deadline. When the deadline passes the
//! outcome is unknown: a write is recorded as possibly applied, a read is dropped
//! (it changed nothing). Values are unique per write so that the checker can tell
//! every write apart.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::kv::KvWrite;
use crate::linearizability::{KvInput, KvOutput, Operation};
use crate::node::{OpRef, Reply, Request};

/// The shape of the client load.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadConfig {
    /// Concurrent clients.
    pub clients: usize,
    /// Keys they share (few keys, many conflicts).
    pub keys: u64,
    /// How long a client waits for an answer before calling the outcome unknown.
    pub timeout_us: u64,
    /// Pause between a client's operations.
    pub think_us: u64,
    /// Pause before retrying on another node after a refusal.
    pub retry_backoff_us: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig { clients: 5, keys: 3, timeout_us: 1_000_000, think_us: 5_000, retry_backoff_us: 5_000 }
    }
}

#[derive(Debug)]
struct Outstanding {
    op: u64,
    request: Request,
    call: u64,
    deadline: u64,
}

/// One client.
#[derive(Debug)]
pub struct Client {
    id: usize,
    target: usize,
    next_op: u64,
    outstanding: Option<Outstanding>,
    completed: u64,
}

/// What a client wants the cluster to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAction {
    /// Send `request` to node `node` (by position).
    Send {
        /// The node's position.
        node: usize,
        /// Which operation.
        op: OpRef,
        /// The request.
        request: Request,
        /// Extra wait before sending (backoff).
        delay_us: u64,
    },
    /// Wake the client at `at` to check its deadline.
    Deadline {
        /// Which operation.
        op: OpRef,
        /// When.
        at: u64,
    },
    /// Start the next operation after `delay_us`.
    Next {
        /// The client.
        client: usize,
        /// The wait.
        delay_us: u64,
    },
}

/// All clients and the history they have recorded.
#[derive(Debug)]
pub struct Workload {
    config: WorkloadConfig,
    clients: Vec<Client>,
    nodes: usize,
    history: Vec<Operation>,
    /// When false, clients finish their current operation and start no new one.
    pub running: bool,
}

impl Workload {
    /// Clients that start by sending to random nodes.
    pub fn new(config: WorkloadConfig, nodes: usize, rng: &mut ChaCha8Rng) -> Workload {
        let clients = (0..config.clients)
            .map(|id| Client { id, target: rng.random_range(0..nodes), next_op: 1, outstanding: None, completed: 0 })
            .collect();
        Workload { config, clients, nodes, history: Vec::new(), running: true }
    }

    /// The number of clients.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Operations each client has completed with a known outcome.
    pub fn completed(&self, client: usize) -> u64 {
        self.clients[client].completed
    }

    /// Whether any client waits for an answer.
    pub fn has_outstanding(&self) -> bool {
        self.clients.iter().any(|client| client.outstanding.is_some())
    }

    /// Each client's completed count and outstanding operation, for failure reports.
    pub fn describe(&self) -> String {
        let clients: Vec<String> = self
            .clients
            .iter()
            .map(|c| match &c.outstanding {
                Some(o) => format!(
                    "c{} done {} waiting op {} {:?} since {}us on n{}",
                    c.id,
                    c.completed,
                    o.op,
                    o.request,
                    o.call,
                    c.target + 1
                ),
                None => format!("c{} done {} idle", c.id, c.completed),
            })
            .collect();
        clients.join("; ")
    }

    /// The recorded history.
    pub fn history(&self) -> &[Operation] {
        &self.history
    }

    /// Starts a new operation on an idle client.
    pub fn next_operation(&mut self, client: usize, now: u64, rng: &mut ChaCha8Rng) -> Vec<ClientAction> {
        let keys = self.config.keys;
        let timeout = self.config.timeout_us;
        let c = &mut self.clients[client];
        if !self.running || c.outstanding.is_some() {
            return Vec::new();
        }
        let op = c.next_op;
        c.next_op += 1;
        let key = rng.random_range(0..keys);
        let value = ((c.id as u64 + 1) << 32) | op;
        let request = match rng.random_range(0..10) {
            0..=3 => Request::Read { key },
            4..=6 => Request::Write(KvWrite::Put { key, value }),
            7 => Request::Write(KvWrite::Delete { key }),
            _ => {
                let expected = if rng.random_bool(0.2) { None } else { self.last_value_written(key, rng) };
                Request::Write(KvWrite::Cas { key, expected, new: value })
            }
        };
        let c = &mut self.clients[client];
        c.outstanding = Some(Outstanding { op, request, call: now, deadline: now + timeout });
        let op_ref = OpRef { client, op };
        vec![
            ClientAction::Send { node: c.target, op: op_ref, request, delay_us: 0 },
            ClientAction::Deadline { op: op_ref, at: now + timeout },
        ]
    }

    /// A value some client wrote to `key`, so compare-and-swaps sometimes succeed.
    fn last_value_written(&self, key: u64, rng: &mut ChaCha8Rng) -> Option<u64> {
        let written: Vec<u64> = self
            .history
            .iter()
            .rev()
            .take(50)
            .filter(|op| op.key == key)
            .filter_map(|op| match op.input {
                KvInput::Put(value) | KvInput::Cas { new: value, .. } => Some(value),
                _ => None,
            })
            .collect();
        if written.is_empty() { None } else { Some(written[rng.random_range(0..written.len())]) }
    }

    /// A node answered.
    pub fn on_reply(&mut self, op: OpRef, reply: Reply, now: u64) -> Vec<ClientAction> {
        let nodes = self.nodes;
        let backoff = self.config.retry_backoff_us;
        let think = self.config.think_us;
        let c = &mut self.clients[op.client];
        let Some(outstanding) = c.outstanding.as_ref().filter(|o| o.op == op.op) else {
            return Vec::new();
        };
        let output = match (reply, outstanding.request) {
            (Reply::NotLeader(hint), request) => {
                c.target = hint.map_or((c.target + 1) % nodes, |leader| leader.0 as usize - 1);
                return vec![ClientAction::Send { node: c.target, op, request, delay_us: backoff }];
            }
            (Reply::Overwritten, request) => {
                c.target = (c.target + 1) % nodes;
                return vec![ClientAction::Send { node: c.target, op, request, delay_us: backoff }];
            }
            (Reply::Value(value), Request::Read { .. }) => KvOutput::Get(value),
            (Reply::Written(swapped), Request::Write(KvWrite::Cas { .. })) => {
                KvOutput::Cas(swapped.expect("a compare-and-swap reports whether it swapped"))
            }
            (Reply::Written(_), Request::Write(KvWrite::Put { .. })) => KvOutput::Put,
            (Reply::Written(_), Request::Write(KvWrite::Delete { .. })) => KvOutput::Delete,
            (reply, request) => panic!("reply {reply:?} does not answer {request:?}"),
        };
        let outstanding = c.outstanding.take().expect("checked above");
        c.completed += 1;
        self.history.push(operation(op.client, &outstanding, output, Some(now)));
        vec![ClientAction::Next { client: op.client, delay_us: think }]
    }

    /// The deadline of `op` passed.
    pub fn on_deadline(&mut self, op: OpRef, now: u64, rng: &mut ChaCha8Rng) -> Vec<ClientAction> {
        let nodes = self.nodes;
        let c = &mut self.clients[op.client];
        let Some(outstanding) = c.outstanding.as_ref().filter(|o| o.op == op.op && now >= o.deadline) else {
            return Vec::new();
        };
        if let Request::Write(_) = outstanding.request {
            self.history.push(operation(op.client, outstanding, KvOutput::Unknown, None));
        }
        c.outstanding = None;
        c.target = rng.random_range(0..nodes);
        vec![ClientAction::Next { client: op.client, delay_us: 0 }]
    }

    /// Ends the run: what is still outstanding has an unknown outcome.
    pub fn finish(&mut self) {
        for client in &mut self.clients {
            if let Some(outstanding) = client.outstanding.take()
                && let Request::Write(_) = outstanding.request
            {
                self.history.push(operation(client.id, &outstanding, KvOutput::Unknown, None));
            }
        }
    }
}

fn operation(client: usize, outstanding: &Outstanding, output: KvOutput, ret: Option<u64>) -> Operation {
    let (key, input) = match outstanding.request {
        Request::Read { key } => (key, KvInput::Get),
        Request::Write(KvWrite::Put { key, value }) => (key, KvInput::Put(value)),
        Request::Write(KvWrite::Delete { key }) => (key, KvInput::Delete),
        Request::Write(KvWrite::Cas { key, expected, new }) => (key, KvInput::Cas { expected, new }),
    };
    Operation { client: client as u64, key, input, output, call: outstanding.call, ret }
}
