//! The `bench` command: d-engine-kv against etcd, on this machine, in one run, with one
//! client.
//!
//! It builds the release binaries once (`d-engine-kv`, the server, and
//! `d-engine-kv-bench`, the load generator that speaks etcd's v3 KV API), starts a
//! 3-process d-engine-kv cluster (default storage: state on redb, log in d-engine-wal; every write synced; data under
//! `<target>/bench/d-engine/nodeN`) and, with `--vs-etcd`, a 3-member etcd cluster
//! (defaults; data under `<target>/bench/etcd/nodeN`) — or, with `--baseline-server`, a
//! second d-engine-kv cluster from another build (an A/B) — then runs each workload against
//! each system, alternating which goes first. It prints a table per workload, the peak
//! resident memory of every server, writes the same as markdown to
//! `benches/reports/<date>-<time>.md`, and with `--vs-etcd` ends with exactly one line
//! `min throughput ratio vs etcd: X.XX` (the smallest d-engine/etcd throughput ratio).
//!
//! Every server is stopped at the end, on failure too (SIGTERM, then SIGKILL).

pub(crate) mod servers;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use servers::{Cluster, System};

/// The operations of every workload with `--quick`.
const QUICK_TOTAL: u64 = 1_000;

/// One benchmark shape: what every operation is, how many connections and clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Its name for `--workload`.
    pub name: &'static str,
    /// The load generator's `--workload`.
    pub operation: &'static str,
    /// gRPC connections.
    pub conns: u32,
    /// Concurrent clients.
    pub clients: u32,
    /// Operations in a full run.
    pub total: u64,
    /// Part of the heavy set (left out by `--quick`).
    pub heavy: bool,
}

/// Every workload, in run order: the four of the original d-engine README (and etcd's
/// benchmark docs), then the heavy variant etcd publishes.
pub const WORKLOADS: [Workload; 7] = [
    Workload { name: "put-1x1", operation: "put", conns: 1, clients: 1, total: 10_000, heavy: false },
    Workload { name: "put-10x100", operation: "put", conns: 10, clients: 100, total: 10_000, heavy: false },
    Workload {
        name: "range-linearizable-10x100",
        operation: "range",
        conns: 10,
        clients: 100,
        total: 10_000,
        heavy: false,
    },
    Workload {
        name: "range-serializable-10x100",
        operation: "range-serializable",
        conns: 10,
        clients: 100,
        total: 10_000,
        heavy: false,
    },
    Workload { name: "put-100x1000", operation: "put", conns: 100, clients: 1000, total: 100_000, heavy: true },
    Workload {
        name: "range-linearizable-100x1000",
        operation: "range",
        conns: 100,
        clients: 1000,
        total: 100_000,
        heavy: true,
    },
    Workload {
        name: "range-serializable-100x1000",
        operation: "range-serializable",
        conns: 100,
        clients: 1000,
        total: 100_000,
        heavy: true,
    },
];

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Also run every workload against a local 3-member etcd (`etcd` must be on PATH).
    #[arg(long, conflicts_with_all = ["observability", "baseline_server"])]
    vs_etcd: bool,
    /// Also run every workload against a second d-engine-kv cluster started from this
    /// server binary (another build: e.g. a copy of target/release/d-engine-kv made at an
    /// earlier commit), with the same settings, the two taking turns: an A/B of two builds.
    /// The ratio is this build's throughput over the baseline's.
    #[arg(long, value_name = "PATH", conflicts_with = "observability")]
    baseline_server: Option<PathBuf>,
    /// Also run every workload against a second d-engine cluster with observability on
    /// (metrics served, info logs, every request traced to a local OTLP sink), to measure
    /// what it costs.
    #[arg(long)]
    observability: bool,
    /// With --observability: the fraction of requests traced (`tracing.sample_ratio`).
    #[arg(long, default_value_t = 1.0, requires = "observability")]
    sample_ratio: f64,
    /// The CI smoke run: 1,000 operations per workload, the small workloads only.
    #[arg(long)]
    quick: bool,
    /// Run only this workload (repeatable): put-1x1, put-10x100, range-linearizable-10x100,
    /// range-serializable-10x100, put-100x1000, range-linearizable-100x1000,
    /// range-serializable-100x1000.
    #[arg(long = "workload", value_name = "NAME")]
    workloads: Vec<String>,
    /// Operations per workload, instead of each workload's own (10,000 or 100,000; 1,000
    /// with --quick).
    #[arg(long)]
    total: Option<u64>,
    /// Where the markdown report goes (default: benches/reports/ in the workspace).
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// Runs of each workload per system, the systems taking turns run by run; the tables
    /// show each system's runs combined (see `Measurement::combine`) and every run's
    /// throughput. Single runs on a shared 2-core machine scatter by ±10-20%.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
}

/// What one run of the load generator measured (its JSON line).
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Operations that succeeded.
    pub ops: u64,
    /// Operations that failed.
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Wall time of the run.
    pub seconds: f64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Latency of successful operations, in milliseconds.
    pub avg_ms: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// 99.9th percentile latency, ms.
    pub p999_ms: f64,
    /// CPU time (user + system) the cluster's server processes spent per successful
    /// operation, in microseconds: steadier than throughput on a shared machine, and what
    /// bounds throughput when the machine is CPU bound. `None` when it could not be read.
    pub server_cpu_us_per_op: Option<f64>,
}

impl Measurement {
    /// Several runs of one system as one: operations, errors and seconds summed (so the
    /// throughput is all operations over all the time), the average latency and the CPU per
    /// operation weighted by operations, and p50 / p99 / p99.9 the mean of the runs' values
    /// (the runs' histograms are not at hand). `None` for no runs.
    pub fn combine(runs: &[&Measurement]) -> Option<Measurement> {
        let first = runs.first()?;
        if runs.len() == 1 {
            // As reported: the load generator's throughput is from unrounded seconds.
            return Some((*first).clone());
        }
        let ops: u64 = runs.iter().map(|m| m.ops).sum();
        let seconds: f64 = runs.iter().map(|m| m.seconds).sum();
        let weighted = |value: fn(&Measurement) -> f64| {
            runs.iter().map(|m| value(m) * m.ops as f64).sum::<f64>() / (ops.max(1) as f64)
        };
        let mean = |value: fn(&Measurement) -> f64| runs.iter().map(|m| value(m)).sum::<f64>() / runs.len() as f64;
        let cpu = runs.iter().all(|m| m.server_cpu_us_per_op.is_some());
        Some(Measurement {
            ops,
            errors: runs.iter().map(|m| m.errors).sum(),
            first_error: runs.iter().find_map(|m| m.first_error.clone()),
            seconds,
            throughput: if seconds > 0.0 { ops as f64 / seconds } else { 0.0 },
            avg_ms: weighted(|m| m.avg_ms),
            p50_ms: mean(|m| m.p50_ms),
            p99_ms: mean(|m| m.p99_ms),
            p999_ms: mean(|m| m.p999_ms),
            server_cpu_us_per_op: cpu.then(|| weighted(|m| m.server_cpu_us_per_op.unwrap_or(0.0))),
        })
    }

    /// Reads the load generator's JSON line.
    pub fn parse(line: &str) -> Result<Measurement, String> {
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|error| format!("not a JSON result line ({error}): {line}"))?;
        let number = |field: &str| {
            value[field].as_f64().ok_or_else(|| format!("the result line has no number \"{field}\": {line}"))
        };
        Ok(Measurement {
            ops: number("ops")? as u64,
            errors: number("errors")? as u64,
            first_error: value["first_error"].as_str().map(str::to_owned),
            seconds: number("seconds")?,
            throughput: number("throughput")?,
            avg_ms: number("avg_ms")?,
            p50_ms: number("p50_ms")?,
            p99_ms: number("p99_ms")?,
            p999_ms: number("p999_ms")?,
            server_cpu_us_per_op: None,
        })
    }
}

/// The results of one workload: one measurement per system and round, in run order.
struct WorkloadResult {
    workload: Workload,
    total: u64,
    runs: Vec<(System, Measurement)>,
}

impl WorkloadResult {
    /// The systems that ran, d-engine first.
    fn systems(&self) -> Vec<System> {
        let mut systems: Vec<System> = Vec::new();
        for (system, _) in &self.runs {
            if !systems.contains(system) {
                systems.push(*system);
            }
        }
        systems.sort_by_key(|system| *system != System::DEngine);
        systems
    }

    /// `system`'s runs combined ([`Measurement::combine`]).
    fn combined(&self, system: System) -> Option<Measurement> {
        let runs: Vec<&Measurement> = self.runs.iter().filter(|(s, _)| *s == system).map(|(_, m)| m).collect();
        Measurement::combine(&runs)
    }

    fn throughput(&self, system: System) -> Option<f64> {
        self.combined(system).map(|m| m.throughput)
    }

    /// What d-engine is compared with in this run, if anything ran besides it.
    fn baseline(&self) -> Option<System> {
        self.runs.iter().map(|(system, _)| *system).find(|system| *system != System::DEngine)
    }

    /// What the ratios divide: d-engine by etcd, observed d-engine by plain d-engine, or
    /// this build by the baseline build.
    fn ratio_systems(&self) -> Option<(System, System)> {
        match self.baseline()? {
            System::Etcd => Some((System::DEngine, System::Etcd)),
            System::DEngineObserved => Some((System::DEngineObserved, System::DEngine)),
            System::DEngineBaseline => Some((System::DEngine, System::DEngineBaseline)),
            System::DEngine => None,
        }
    }

    /// The throughput ratio ([`Self::ratio_systems`]).
    fn ratio(&self) -> Option<f64> {
        let (numerator, denominator) = self.ratio_systems()?;
        let denominator = self.throughput(denominator)?;
        (denominator > 0.0).then(|| self.throughput(numerator).unwrap_or(0.0) / denominator)
    }

    /// The servers' CPU per operation ratio ([`Self::ratio_systems`]), for observability's
    /// cost and an A/B of two builds.
    fn cpu_ratio(&self) -> Option<f64> {
        let (numerator, denominator) = self.ratio_systems().filter(|(_, d)| *d != System::Etcd)?;
        let cpu = |system: System| self.combined(system).and_then(|m| m.server_cpu_us_per_op);
        let denominator = cpu(denominator)?;
        (denominator > 0.0).then_some(cpu(numerator)? / denominator)
    }

    /// How the ratios read: "<numerator> / <denominator>".
    fn ratio_label(&self) -> String {
        self.ratio_systems().map_or_else(String::new, |(n, d)| format!("{} / {}", n.name(), d.name()))
    }
}

/// Runs `cargo xtask bench` in the workspace at the root found from xtask's manifest.
pub fn run(args: BenchArgs) -> ExitCode {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().map_or(manifest_dir.clone(), Path::to_path_buf);
    run_in(&root, args)
}

/// Runs `cargo xtask bench` in the workspace at `root`.
pub fn run_in(root: &Path, args: BenchArgs) -> ExitCode {
    match bench(root, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cargo xtask bench: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workloads `args` select.
fn selected(args: &BenchArgs) -> Result<Vec<Workload>, String> {
    if args.workloads.is_empty() {
        return Ok(WORKLOADS.iter().filter(|w| !(args.quick && w.heavy)).copied().collect());
    }
    args.workloads
        .iter()
        .map(|name| {
            WORKLOADS.iter().find(|w| w.name == name).copied().ok_or_else(|| {
                let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
                format!("no workload named {name:?}; the workloads: {}", names.join(", "))
            })
        })
        .collect()
}

fn bench(root: &Path, args: &BenchArgs) -> Result<(), String> {
    let started = Instant::now();
    let workloads = selected(args)?;
    if let Some(binary) = &args.baseline_server
        && !binary.is_file()
    {
        return Err(format!("--baseline-server {}: no such file (a d-engine-kv server binary)", binary.display()));
    }
    if args.vs_etcd && which("etcd").is_none() {
        return Err("--vs-etcd needs an `etcd` binary on PATH, and there is none (on Debian or Ubuntu: \
                    apt-get install etcd-server etcd-client)"
            .into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let target = if target.is_absolute() { target } else { root.join(target) };
    let binaries = build(root, &target)?;
    servers::stop_on_signal()?;
    eprintln!("built in {:.1} s; starting the servers ...", started.elapsed().as_secs_f64());

    let bench_dir = target.join("bench");
    let mut systems =
        vec![Cluster::start_d_engine(System::DEngine, &binaries.server, &bench_dir.join("d-engine"), None)?];
    if args.vs_etcd {
        systems.push(Cluster::start_etcd(&bench_dir.join("etcd"))?);
    }
    if args.observability {
        let sink = servers::Sink { binary: binaries.sink.clone(), sample_ratio: args.sample_ratio };
        let observed = Cluster::start_d_engine(
            System::DEngineObserved,
            &binaries.server,
            &bench_dir.join("observed"),
            Some(&sink),
        )?;
        systems.push(observed);
    }
    if let Some(binary) = &args.baseline_server {
        systems.push(Cluster::start_d_engine(System::DEngineBaseline, binary, &bench_dir.join("baseline"), None)?);
    }
    for cluster in &mut systems {
        wait_for_leader(&binaries.load_generator, cluster)?;
    }
    eprintln!("servers up and led after {:.1} s in all", started.elapsed().as_secs_f64());

    let mut results = Vec::new();
    for (index, workload) in workloads.iter().enumerate() {
        let total = args.total.unwrap_or(if args.quick { QUICK_TOTAL } else { workload.total });
        let mut result = WorkloadResult { workload: *workload, total, runs: Vec::new() };
        for round in 0..args.rounds as usize {
            // Alternate who goes first, so neither system always runs on a warmer machine.
            let mut order: Vec<usize> = (0..systems.len()).collect();
            if (index + round) % 2 == 1 {
                order.reverse();
            }
            for position in order {
                let cluster = &mut systems[position];
                let measurement = run_workload(&binaries.load_generator, cluster, workload, total)?;
                cluster.check_running()?;
                result.runs.push((cluster.system, measurement));
            }
        }
        print!("{}", workload_table(&result));
        results.push(result);
    }
    let memory: Vec<(String, Option<u64>)> = systems.iter().flat_map(Cluster::peak_rss_kib).collect();
    // Spans leave the nodes in batches every few seconds: give the last batch time to arrive.
    let spans = if args.observability {
        std::thread::sleep(std::time::Duration::from_secs(6));
        systems.iter().find_map(Cluster::spans_exported)
    } else {
        None
    };
    for cluster in &mut systems {
        cluster.stop();
    }
    let elapsed = started.elapsed().as_secs_f64();

    let memory_text = memory_table(&memory);
    print!("{memory_text}");
    let report = report_markdown(args, &results, &memory_text, elapsed);
    let report_dir = args.report_dir.clone().unwrap_or_else(|| root.join("benches").join("reports"));
    let path = write_report(&report_dir, &report)?;
    println!("report: {} ({elapsed:.0} s in all)", path.display());
    let errors: u64 = results.iter().flat_map(|r| &r.runs).map(|(_, m)| m.errors).sum();
    if errors > 0 {
        println!("warning: {errors} operations failed (see the errors column)");
    }
    let min_ratio = results.iter().filter_map(WorkloadResult::ratio).fold(f64::INFINITY, f64::min);
    let min_ratio = if min_ratio.is_finite() { min_ratio } else { 0.0 };
    if args.observability {
        let operations: u64 = results.iter().map(|r| r.total).sum();
        let spans = spans.unwrap_or(0);
        println!("spans received by the OTLP sink: {spans} (for {operations} operations)");
        if spans == 0 {
            return Err("observability was on but the OTLP sink received no spans".into());
        }
        let max_cpu = results.iter().filter_map(WorkloadResult::cpu_ratio).fold(0.0, f64::max);
        println!("max server CPU per operation ratio with observability on: {max_cpu:.2}");
        println!("min throughput ratio with observability on: {min_ratio:.2}");
    }
    if let Some(binary) = &args.baseline_server {
        let max_cpu = results.iter().filter_map(WorkloadResult::cpu_ratio).fold(0.0, f64::max);
        println!("baseline: {}", binary.display());
        println!("max server CPU per operation ratio vs the baseline: {max_cpu:.2}");
        println!("min throughput ratio vs the baseline: {min_ratio:.2}");
    }
    if args.vs_etcd {
        println!("min throughput ratio vs etcd: {min_ratio:.2}");
    }
    Ok(())
}

/// The release binaries.
struct Binaries {
    server: PathBuf,
    load_generator: PathBuf,
    /// The stand-in OpenTelemetry collector for `--observability`.
    sink: PathBuf,
}

/// Builds d-engine-kv's binaries with the release profile, once.
fn build(root: &Path, target: &Path) -> Result<Binaries, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building d-engine-kv and d-engine-kv-bench (release) ...");
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "--quiet", "-p", "d-engine-kv", "--bins"])
        .status()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    if !status.success() {
        return Err(format!("building d-engine-kv failed ({status})"));
    }
    let release = target.join("release");
    let binaries = Binaries {
        server: release.join("d-engine-kv"),
        load_generator: release.join("d-engine-kv-bench"),
        sink: release.join("d-engine-otlp-sink"),
    };
    for binary in [&binaries.server, &binaries.load_generator, &binaries.sink] {
        if !binary.exists() {
            return Err(format!("the build succeeded but {} does not exist", binary.display()));
        }
    }
    Ok(binaries)
}

/// Where `program` is on PATH.
fn which(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| {
        candidate.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

/// Waits until the cluster has a leader: the load generator finds it (Maintenance.Status
/// on every member, for up to 30 s) and runs zero operations.
fn wait_for_leader(load_generator: &Path, cluster: &mut Cluster) -> Result<(), String> {
    let output = Command::new(load_generator)
        .arg("--endpoints")
        .arg(cluster.endpoints.join(","))
        .args(["--total", "0"])
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {}: {error}", load_generator.display()))?;
    cluster.check_running()?;
    if !output.status.success() {
        return Err(format!(
            "{} has no leader: {}",
            cluster.system.name(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

/// Runs `workload` against `cluster` with the load generator, a progress bar fed by its
/// `progress N` lines.
fn run_workload(
    load_generator: &Path,
    cluster: &mut Cluster,
    workload: &Workload,
    total: u64,
) -> Result<Measurement, String> {
    let label = format!("{} {}", cluster.system.name(), workload.name);
    let cpu_before = cluster.server_cpu_seconds();
    let mut child = Command::new(load_generator)
        .arg("--endpoints")
        .arg(cluster.endpoints.join(","))
        .args(["--workload", workload.operation])
        .args(["--conns", &workload.conns.to_string()])
        .args(["--clients", &workload.clients.to_string()])
        .args(["--total", &total.to_string()])
        .args(["--key-size", "8", "--value-size", "256", "--progress"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {}: {error}", load_generator.display()))?;
    servers::remember(child.id());
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>40} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .map_err(|error| error.to_string())?
            .progress_chars("=> "),
    );
    bar.set_prefix(label.clone());
    // The load generator's stderr: progress lines feed the bar, the rest is kept for errors.
    let stderr = child.stderr.take().expect("stderr is piped");
    let bar_in_thread = bar.clone();
    let stderr_reader = std::thread::spawn(move || {
        let mut other = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            match line.strip_prefix("progress ").and_then(|n| n.trim().parse::<u64>().ok()) {
                Some(done) => bar_in_thread.set_position(done),
                None => {
                    other.push_str(&line);
                    other.push('\n');
                }
            }
        }
        other
    });
    let stdout = child.stdout.take().expect("stdout is piped");
    let stdout_text = std::io::read_to_string(stdout).unwrap_or_default();
    let status = child.wait().map_err(|error| format!("cannot wait for the load generator: {error}"));
    servers::forget(child.id());
    let status = status?;
    let stderr_text = stderr_reader.join().unwrap_or_default();
    bar.finish_and_clear();
    if !status.success() {
        return Err(format!("{label}: the load generator failed ({status}): {}", stderr_text.trim()));
    }
    let line = stdout_text.lines().last().unwrap_or_default();
    let mut measurement = Measurement::parse(line).map_err(|error| format!("{label}: {error}"))?;
    if let (Some(before), Some(after)) = (cpu_before, cluster.server_cpu_seconds())
        && measurement.ops > 0
    {
        measurement.server_cpu_us_per_op = Some((after - before) * 1e6 / measurement.ops as f64);
    }
    Ok(measurement)
}

/// A workload's table: a row per system, and the ratio when both ran.
fn workload_table(result: &WorkloadResult) -> String {
    let workload = &result.workload;
    let mut text = format!(
        "\n### {} ({} {}, {} conns, {} clients, {} ops)\n\n",
        workload.name,
        workload.operation,
        if workload.operation == "put" { "8-byte sequential keys, 256-byte values" } else { "of key foo" },
        workload.conns,
        workload.clients,
        result.total,
    );
    text.push_str(
        "| system | throughput (ops/s) | avg (ms) | p50 (ms) | p99 (ms) | p99.9 (ms) | errors | server CPU (µs/op) |\n",
    );
    text.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let runs: Vec<(System, Measurement)> =
        result.systems().into_iter().filter_map(|system| Some((system, result.combined(system)?))).collect();
    for (system, m) in &runs {
        let cpu = m.server_cpu_us_per_op.map_or_else(|| "-".to_owned(), |us| format!("{us:.0}"));
        let _ = writeln!(
            text,
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {cpu} |",
            system.name(),
            m.throughput,
            m.avg_ms,
            m.p50_ms,
            m.p99_ms,
            m.p999_ms,
            m.errors
        );
    }
    let rounds = result.runs.len() / runs.len().max(1);
    if rounds > 1 {
        let _ = writeln!(
            text,
            "\n{rounds} runs per system, combined (p50/p99/p99.9: the mean of the runs'); each run's ops/s:"
        );
        for (system, _) in &runs {
            let each: Vec<String> =
                result.runs.iter().filter(|(s, _)| s == system).map(|(_, m)| format!("{:.0}", m.throughput)).collect();
            let _ = writeln!(text, "- {}: {}", system.name(), each.join(", "));
        }
    }
    if let Some(ratio) = result.ratio() {
        let _ = writeln!(text, "\n{} throughput: **{ratio:.2}**", result.ratio_label());
    }
    if let Some(ratio) = result.cpu_ratio() {
        let _ = writeln!(text, "{} server CPU per operation: **{ratio:.2}**", result.ratio_label());
    }
    for (system, m) in &runs {
        if let Some(error) = &m.first_error {
            let _ = writeln!(text, "\n{}: {} errors, the first: `{error}`", system.name(), m.errors);
        }
    }
    text
}

/// Each server process's name and peak RSS in KiB, as a markdown table.
fn memory_table(memory: &[(String, Option<u64>)]) -> String {
    let mut text = String::from("\n### Peak resident memory (VmHWM) per server process, after the runs\n\n");
    text.push_str("| process | peak RSS (MiB) |\n|---|---:|\n");
    for (name, kib) in memory {
        let mib = kib.map_or_else(|| "unknown".to_owned(), |kib| format!("{:.0}", kib as f64 / 1024.0));
        let _ = writeln!(text, "| {name} | {mib} |");
    }
    text
}

fn report_markdown(args: &BenchArgs, results: &[WorkloadResult], memory: &str, elapsed_seconds: f64) -> String {
    let mut text = String::from("# `cargo xtask bench` report\n\n");
    let command: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(text, "- date (UTC): {}", utc_timestamp(" ", ":"));
    let _ = writeln!(text, "- command: `cargo xtask {}`", command.join(" "));
    let _ = writeln!(text, "- commit: {}", git_describe());
    let _ = writeln!(
        text,
        "- machine: {} CPUs, {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        first_line(&["uname", "-sr"])
    );
    if args.vs_etcd {
        let _ = writeln!(text, "- etcd: {}", first_line(&["etcd", "--version"]));
    }
    let _ = writeln!(
        text,
        "- setup: 3 server processes per system on 127.0.0.1, d-engine-kv with its default storage (state \
         machine on redb, log in d-engine-wal segments; every write synced), \
         etcd with its defaults; one load generator process (`d-engine-kv-bench`), writes and reads \
         to the leader; {elapsed_seconds:.0} s in all"
    );
    if args.observability {
        let _ = writeln!(
            text,
            "- d-engine+obs: the same d-engine-kv with `[metrics] listen_addr` set and `[tracing]` exporting \
             requests (sample_ratio {}) over OTLP/gRPC to `d-engine-otlp-sink`; logs at info in both",
            args.sample_ratio
        );
    }
    if let Some(binary) = &args.baseline_server {
        let _ = writeln!(
            text,
            "- baseline: another build of d-engine-kv, `{}`, with the same settings; the ratios are this \
             build's over the baseline's",
            binary.display()
        );
    }
    // The system the workloads ran against besides d-engine (etcd's columns, empty, when none did).
    let baseline = results.iter().find_map(WorkloadResult::baseline).unwrap_or(System::Etcd);
    if !results.is_empty() {
        let other = baseline.name();
        let _ = writeln!(
            text,
            "\n## Summary\n\n| workload | d-engine ops/s | {other} ops/s | ratio | d-engine p99 (ms) | {other} p99 (ms) |"
        );
        text.push_str("|---|---:|---:|---:|---:|---:|\n");
        for result in results {
            let cell = |system: System, f: fn(&Measurement) -> f64, digits: usize| {
                result.combined(system).map_or_else(|| "-".to_owned(), |m| format!("{:.*}", digits, f(&m)))
            };
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} | {} | {} |",
                result.workload.name,
                cell(System::DEngine, |m| m.throughput, 0),
                cell(baseline, |m| m.throughput, 0),
                result.ratio().map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
                cell(System::DEngine, |m| m.p99_ms, 2),
                cell(baseline, |m| m.p99_ms, 2),
            );
        }
    }
    text.push_str("\n## Workloads\n");
    for result in results {
        text.push_str(&workload_table(result));
    }
    text.push('\n');
    text.push_str(memory.trim_start_matches('\n'));
    text
}

fn write_report(dir: &Path, report: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let path = dir.join(format!("{}.md", utc_timestamp("-", "")));
    std::fs::write(&path, report).map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    Ok(path)
}

/// Now in UTC as `YYYY-MM-DD<between>HH<colon>MM<colon>SS`.
fn utc_timestamp(between: &str, colon: &str) -> String {
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let time = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}{between}{:02}{colon}{:02}{colon}{:02}",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn git_describe() -> String {
    let commit = first_line(&["git", "rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|output| !output.stdout.is_empty());
    if dirty { format!("{commit} (with uncommitted changes)") } else { commit }
}

/// The first line `command` prints, or "unknown".
fn first_line(command: &[&str]) -> String {
    Command::new(command[0])
        .args(&command[1..])
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|output| String::from_utf8_lossy(&output.stdout).lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
        assert_eq!(civil_from_days(20_783), (2026, 11, 26));
    }

    #[test]
    fn the_load_generators_line_parses() {
        let line = r#"{"avg_ms":1.5,"clients":1,"conns":1,"errors":2,"first_error":"Unavailable: x","max_ms":9.0,
            "ops":998,"p50_ms":1.2,"p999_ms":8.0,"p99_ms":4.0,"seconds":1.0,"throughput":998.0,"workload":"put"}"#;
        let m = Measurement::parse(&line.replace('\n', "")).expect("parses");
        assert_eq!((m.ops, m.errors, m.p99_ms, m.p999_ms), (998, 2, 4.0, 8.0));
        assert_eq!(m.first_error.as_deref(), Some("Unavailable: x"));
    }

    fn measurement(ops: u64, seconds: f64, p99_ms: f64, cpu: f64) -> Measurement {
        Measurement {
            ops,
            errors: 0,
            first_error: None,
            seconds,
            throughput: ops as f64 / seconds,
            avg_ms: 1.0,
            p50_ms: 1.0,
            p99_ms,
            p999_ms: p99_ms,
            server_cpu_us_per_op: Some(cpu),
        }
    }

    #[test]
    fn runs_combine_into_all_operations_over_all_the_time() {
        let (a, b) = (measurement(1_000, 1.0, 2.0, 100.0), measurement(1_000, 3.0, 4.0, 200.0));
        let combined = Measurement::combine(&[&a, &b]).expect("two runs");
        assert_eq!(combined.ops, 2_000);
        assert!((combined.throughput - 500.0).abs() < 1e-9, "2,000 ops in 4 s, not the mean of 1,000 and 333");
        assert!((combined.p99_ms - 3.0).abs() < 1e-9);
        assert!((combined.server_cpu_us_per_op.unwrap() - 150.0).abs() < 1e-9);
        assert_eq!(Measurement::combine(&[&a]), Some(a.clone()));
        assert_eq!(Measurement::combine(&[]), None);

        let result = WorkloadResult {
            workload: WORKLOADS[0],
            total: 1_000,
            runs: vec![
                (System::Etcd, a.clone()),
                (System::DEngine, b.clone()),
                (System::DEngine, a),
                (System::Etcd, b),
            ],
        };
        assert_eq!(result.systems(), vec![System::DEngine, System::Etcd]);
        assert!((result.ratio().unwrap() - 1.0).abs() < 1e-9, "the same runs, combined, in either order");
    }

    #[test]
    fn an_ab_of_two_builds_divides_this_build_by_the_baseline_in_throughput_and_cpu() {
        let (this, baseline) = (measurement(1_100, 1.0, 2.0, 90.0), measurement(1_000, 1.0, 2.0, 100.0));
        let result = WorkloadResult {
            workload: WORKLOADS[0],
            total: 1_000,
            runs: vec![(System::DEngineBaseline, baseline), (System::DEngine, this)],
        };
        assert_eq!(result.systems(), vec![System::DEngine, System::DEngineBaseline]);
        assert!((result.ratio().unwrap() - 1.1).abs() < 1e-9);
        assert!((result.cpu_ratio().unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(result.ratio_label(), "d-engine / baseline");
        let table = workload_table(&result);
        assert!(table.contains("d-engine / baseline throughput: **1.10**"), "{table}");
        assert!(table.contains("d-engine / baseline server CPU per operation: **0.90**"), "{table}");
        let args = BenchArgs {
            vs_etcd: false,
            baseline_server: Some(PathBuf::from("/tmp/d-engine-kv.old")),
            observability: false,
            sample_ratio: 1.0,
            quick: false,
            workloads: Vec::new(),
            total: None,
            report_dir: None,
            rounds: 1,
        };
        let report = report_markdown(&args, &[result], "", 1.0);
        assert!(report.contains("| workload | d-engine ops/s | baseline ops/s | ratio |"), "{report}");
        assert!(report.contains("| put-1x1 | 1100 | 1000 | 1.10 |"), "{report}");
    }

    #[test]
    fn quick_runs_only_the_small_workloads_and_names_are_checked() {
        let args = |quick, workloads: &[&str]| BenchArgs {
            vs_etcd: false,
            baseline_server: None,
            observability: false,
            sample_ratio: 1.0,
            quick,
            workloads: workloads.iter().map(|w| (*w).to_owned()).collect(),
            total: None,
            report_dir: None,
            rounds: 1,
        };
        assert_eq!(selected(&args(true, &[])).expect("valid").len(), 4);
        assert_eq!(selected(&args(false, &[])).expect("valid").len(), 7);
        assert_eq!(selected(&args(true, &["put-100x1000"])).expect("valid")[0].total, 100_000);
        assert!(selected(&args(false, &["put"])).expect_err("unknown").contains("put-1x1"));
    }
}
