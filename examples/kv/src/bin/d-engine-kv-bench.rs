//! `d-engine-kv-bench`: a load generator for etcd's v3 KV API, the same code for
//! d-engine-kv and for etcd.
//!
//! ```text
//! d-engine-kv-bench --endpoints 127.0.0.1:2379,127.0.0.1:12379,127.0.0.1:22379 \
//!     --workload put --conns 10 --clients 100 --total 10000
//! ```
//!
//! Shaped like etcd's own `benchmark` tool (`tools/benchmark`): `--conns` gRPC connections
//! (HTTP/2, multiplexed), `--clients` concurrent clients spread over them round-robin, each
//! doing its operations one after another until `--total` are done.
//!
//! The connections are shared out over `--threads` threads (by default one per CPU, at most
//! one per connection), each running its connections and their clients on a single-threaded
//! runtime: a connection, its clients and its HTTP/2 task are never woken across threads,
//! and the requests its clients make while the connection's task waits leave in one write
//! (a multi-threaded runtime ran the connection's task after every request: a write, and a
//! wake-up of the server, per request).
//! - `put`: 8-byte sequential keys (the operation's number, big-endian, padded to
//!   `--key-size`), 256-byte values (`--value-size`);
//! - `range` / `range-serializable`: like `benchmark range foo --consistency=l|s`, every
//!   request reads the single key `foo` (written once before the timed run, with a
//!   `--value-size` value).
//!
//! All requests go to the leader, found with Maintenance.Status on each endpoint (the one
//! whose `header.member_id` equals the `leader` it reports), or given with
//! `--leader-endpoint`. Each operation's latency goes into a histogram; failed operations
//! are counted, not retried. The last line on stdout is one JSON object:
//! `{"workload":..,"ops":..,"errors":..,"seconds":..,"throughput":..,"avg_ms":..,
//! "p50_ms":..,"p99_ms":..,"p999_ms":..,"max_ms":..,"first_error":..}`.
//! With `--progress`, stderr gets a `progress N` line about every 100 ms (for a driver's
//! progress bar). Exit codes: 0 when the run completed (even with errors), 2 for bad
//! usage, 1 when no leader or no connection could be had.

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use d_engine_kv::proto::etcdserverpb::kv_client::KvClient;
use d_engine_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use d_engine_kv::proto::etcdserverpb::{PutRequest, RangeRequest, StatusRequest};
use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};

/// The key every range request reads, as in etcd's `benchmark range foo`.
const RANGE_KEY: &[u8] = b"foo";
/// The largest latency the histogram holds, in microseconds (larger values are clamped).
const LATENCY_MAX_US: u64 = 120_000_000;

/// Load generator for etcd's v3 KV API (d-engine-kv or etcd).
#[derive(Debug, Parser)]
#[command(name = "d-engine-kv-bench", version)]
struct Cli {
    /// The cluster's client endpoints, host:port, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// The leader's endpoint, host:port; found with Maintenance.Status when not given.
    #[arg(long)]
    leader_endpoint: Option<String>,
    /// What every operation is.
    #[arg(long, value_enum, default_value_t = Workload::Put)]
    workload: Workload,
    /// How many gRPC connections.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    conns: u32,
    /// How many concurrent clients (spread round-robin over the connections).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    clients: u32,
    /// How many operations in all.
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// Key size in bytes (put).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    key_size: u32,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// How long one request may take before it counts as an error, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    request_timeout_ms: u64,
    /// Print `progress N` lines on stderr while running.
    #[arg(long)]
    progress: bool,
    /// Threads, each running its share of the connections (default: one per CPU, at most
    /// one per connection).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
}

/// The operation a run repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Put a new sequential key.
    Put,
    /// Linearizable range of one key (etcd's default consistency).
    Range,
    /// Serializable range of one key (served from the member's local state).
    RangeSerializable,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range => "range",
            Workload::RangeSerializable => "range-serializable",
        }
    }
}

/// What the clients of a thread saw, or of several threads together.
struct ClientResult {
    latencies_us: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Default for ClientResult {
    fn default() -> Self {
        ClientResult { latencies_us: new_histogram(), errors: 0, first_error: None }
    }
}

impl ClientResult {
    fn add(&mut self, other: ClientResult) -> Result<(), String> {
        self.latencies_us.add(&other.latencies_us).map_err(|error| error.to_string())?;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.clients < cli.conns {
        eprintln!("d-engine-kv-bench: error: --clients ({}) must be at least --conns ({})", cli.clients, cli.conns);
        return ExitCode::from(2);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn fail(error: &str) -> ExitCode {
    eprintln!("d-engine-kv-bench: error: {error}");
    ExitCode::FAILURE
}

/// A single-threaded runtime: the set-up's, and each load thread's.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start a runtime: {error}"))
}

fn run(cli: Cli) -> Result<(), String> {
    let setup = runtime()?;
    let leader = match &cli.leader_endpoint {
        Some(endpoint) => endpoint.clone(),
        None => setup.block_on(find_leader(&cli.endpoints))?,
    };
    let value = Bytes::from(vec![b'v'; cli.value_size]);
    if cli.workload != Workload::Put {
        // Not timed: the key every range reads.
        let request = PutRequest { key: Bytes::from_static(RANGE_KEY), value: value.clone(), ..Default::default() };
        setup
            .block_on(async { KvClient::new(connect(&leader).await?).put(request).await.map_err(|s| s.to_string()) })
            .map_err(|error| format!("cannot write the key the ranges read: {error}"))?;
    }
    drop(setup);

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let threads = cli.threads.unwrap_or(cpus).min(cli.conns);
    let job = Job {
        workload: cli.workload,
        total: cli.total,
        key_size: cli.key_size as usize,
        value,
        timeout: Duration::from_millis(cli.request_timeout_ms),
        next_op: Arc::new(AtomicU64::new(0)),
        done: Arc::new(AtomicU64::new(0)),
    };
    // Every thread connects, then all start together: connecting is not timed.
    let start = Arc::new(std::sync::Barrier::new(threads as usize + 1));
    let mut workers = Vec::new();
    for thread in 0..threads {
        // Connection `c` belongs to thread `c % threads`; client `k` uses connection `k % conns`.
        let conns: Vec<u32> = (thread..cli.conns).step_by(threads as usize).collect();
        let clients: Vec<u32> = (0..cli.clients).filter(|client| conns.contains(&(client % cli.conns))).collect();
        let (job, start, leader, all_conns) = (job.clone(), Arc::clone(&start), leader.clone(), cli.conns);
        let worker = std::thread::Builder::new()
            .name(format!("load-{thread}"))
            .spawn(move || load_thread(&leader, &conns, all_conns, clients, &job, &start))
            .map_err(|error| format!("cannot start a load thread: {error}"))?;
        workers.push(worker);
    }
    let progress = cli.progress.then(|| spawn_progress(Arc::clone(&job.done)));
    start.wait();
    let started = Instant::now();
    let mut total = ClientResult::default();
    let mut failure = None;
    for worker in workers {
        match worker.join().unwrap_or_else(|_| Err("a load thread panicked".into())) {
            Ok(result) => total.add(result)?,
            Err(error) => failure = failure.or(Some(error)),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(progress) = progress {
        progress.stop();
        eprintln!("progress {}", job.done.load(Ordering::Relaxed));
    }
    if let Some(error) = failure {
        return Err(error);
    }
    let ClientResult { latencies_us, errors, first_error } = total;
    let ms = |us: f64| (us / 1000.0 * 1000.0).round() / 1000.0;
    let quantile = |q: f64| ms(latencies_us.value_at_quantile(q) as f64);
    let ops = latencies_us.len();
    let line = serde_json::json!({
        "workload": cli.workload.name(),
        "conns": cli.conns,
        "clients": cli.clients,
        "ops": ops,
        "errors": errors,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "throughput": if seconds > 0.0 { (ops as f64 / seconds * 10.0).round() / 10.0 } else { 0.0 },
        "avg_ms": ms(latencies_us.mean()),
        "p50_ms": quantile(0.5),
        "p99_ms": quantile(0.99),
        "p999_ms": quantile(0.999),
        "max_ms": ms(latencies_us.max() as f64),
        "first_error": first_error,
    });
    if errors > 0 {
        eprintln!("d-engine-kv-bench: {errors} of {} operations failed; the first: {}", cli.total, line["first_error"]);
    }
    println!("{line}");
    Ok(())
}

/// One load thread: connects `conns` (of `all_conns`) on a runtime of its own, waits at
/// `start` until every thread has, then runs `clients` (client `k` on connection
/// `k % all_conns`) to the end of the run.
fn load_thread(
    leader: &str,
    conns: &[u32],
    all_conns: u32,
    clients: Vec<u32>,
    job: &Job,
    start: &std::sync::Barrier,
) -> Result<ClientResult, String> {
    let runtime = runtime();
    let connected = runtime.as_ref().map_err(Clone::clone).and_then(|runtime| {
        runtime.block_on(async {
            let mut channels = std::collections::HashMap::new();
            for &conn in conns {
                channels.insert(conn, connect(leader).await?);
            }
            Ok::<_, String>(channels)
        })
    });
    // Reached on failure too: the other threads and the clock wait for every thread.
    start.wait();
    let (runtime, channels) = (runtime?, connected?);
    // The thread's clients record into one result (one histogram per thread, not per client:
    // a histogram up to LATENCY_MAX_US at 3 digits is ~140 KB to allocate and merge).
    let result = Rc::new(RefCell::new(ClientResult::default()));
    tokio::task::LocalSet::new().block_on(&runtime, async {
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|client| {
                let kv = KvClient::new(channels[&(client % all_conns)].clone());
                tokio::task::spawn_local(job.clone().run(kv, Rc::clone(&result)))
            })
            .collect();
        for task in tasks {
            task.await.map_err(|error| format!("a client task failed: {error}"))?;
        }
        Ok::<_, String>(())
    })?;
    Ok(result.take())
}

/// One client's share of the run: operations taken from a shared counter until `total`.
#[derive(Clone)]
struct Job {
    workload: Workload,
    total: u64,
    key_size: usize,
    value: Bytes,
    timeout: Duration,
    /// The next operation's number, over all clients of all threads.
    next_op: Arc<AtomicU64>,
    /// Operations done, over all clients of all threads.
    done: Arc<AtomicU64>,
}

impl Job {
    /// Runs operations until `total` are taken, recording each into `result`.
    async fn run(self, mut kv: KvClient<Channel>, result: Rc<RefCell<ClientResult>>) {
        loop {
            let op = self.next_op.fetch_add(1, Ordering::Relaxed);
            if op >= self.total {
                return;
            }
            let started = Instant::now();
            let outcome = tokio::time::timeout(self.timeout, self.call(&mut kv, op)).await;
            let elapsed_us = started.elapsed().as_micros().min(u128::from(LATENCY_MAX_US)) as u64;
            self.done.fetch_add(1, Ordering::Relaxed);
            let error = match outcome {
                Ok(Ok(())) => {
                    result.borrow_mut().latencies_us.saturating_record(elapsed_us.max(1));
                    continue;
                }
                Ok(Err(status)) => format!("{}: {}", status.code(), status.message()),
                Err(_) => format!("no answer within {:?}", self.timeout),
            };
            let mut result = result.borrow_mut();
            result.errors += 1;
            result.first_error.get_or_insert(error);
        }
    }

    async fn call(&self, kv: &mut KvClient<Channel>, op: u64) -> Result<(), tonic::Status> {
        match self.workload {
            Workload::Put => {
                let request = PutRequest {
                    key: sequential_key(op, self.key_size),
                    value: self.value.clone(),
                    ..Default::default()
                };
                kv.put(request).await.map(drop)
            }
            Workload::Range | Workload::RangeSerializable => {
                let request = RangeRequest {
                    key: Bytes::from_static(RANGE_KEY),
                    serializable: self.workload == Workload::RangeSerializable,
                    ..Default::default()
                };
                kv.range(request).await.map(drop)
            }
        }
    }
}

/// Operation `op`'s key: its number, big-endian, right-aligned in `size` bytes (truncated
/// to the low bytes when `size` < 8).
fn sequential_key(op: u64, size: usize) -> Bytes {
    let number = op.to_be_bytes();
    let mut key = vec![0; size];
    let take = size.min(number.len());
    key[size - take..].copy_from_slice(&number[number.len() - take..]);
    Bytes::from(key)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

/// One HTTP/2 connection to `address`: a channel built with `connect` holds one.
async fn connect(address: &str) -> Result<Channel, String> {
    endpoint(address)?.connect().await.map_err(|error| format!("cannot connect to the leader {address}: {error}"))
}

fn endpoint(address: &str) -> Result<Endpoint, String> {
    let url = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
    Ok(Endpoint::from_shared(url.clone())
        .map_err(|error| format!("bad endpoint {address}: {error}"))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true))
}

/// The endpoint of the member that every answering member names as the leader.
async fn find_leader(endpoints: &[String]) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    loop {
        for address in endpoints {
            match member_status(address).await {
                Ok((member_id, leader)) if leader != 0 && member_id == leader => return Ok(address.clone()),
                Ok((member_id, leader)) => last = format!("{address} is member {member_id:x}, leader {leader:x}"),
                Err(error) => last = error,
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no endpoint is the leader after 30 s (last: {last})"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (member id, leader id) as the member at `address` reports them.
async fn member_status(address: &str) -> Result<(u64, u64), String> {
    let channel = endpoint(address)?.connect().await.map_err(|error| format!("{address}: {error}"))?;
    let status = tokio::time::timeout(Duration::from_secs(3), MaintenanceClient::new(channel).status(StatusRequest {}))
        .await
        .map_err(|_| format!("{address}: no Status answer within 3 s"))?
        .map_err(|status| format!("{address}: {status}"))?
        .into_inner();
    let member_id = status.header.map(|header| header.member_id).unwrap_or_default();
    Ok((member_id, status.leader))
}

/// The `progress N` printer: a thread of its own, until stopped.
struct Progress {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Progress {
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn spawn_progress(done: Arc<AtomicU64>) -> Progress {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        let mut last = u64::MAX;
        while !stopped.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let now = done.load(Ordering::Relaxed);
            if now != last {
                eprintln!("progress {now}");
                last = now;
            }
        }
    });
    Progress { stop, thread }
}
