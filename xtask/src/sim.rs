//! The `sim` command: seeds run in parallel worker threads; the output is ordered by seed.

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use d_engine_sim::swarm::run_seed;

#[derive(clap::Args)]
pub struct SimArgs {
    /// How many seeds to run.
    #[arg(long, default_value_t = 100, conflicts_with = "seed")]
    seeds: u64,
    /// The first seed of the range.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Replay exactly this seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Force the cluster size (3, 5 or 7); by default each seed draws its own.
    #[arg(long, value_parser = parse_nodes)]
    nodes: Option<usize>,
    /// Worker threads (default: available cores).
    #[arg(long)]
    jobs: Option<usize>,
}

pub fn run(args: SimArgs) -> ExitCode {
    if let Some(seed) = args.seed {
        return replay(seed, args.nodes);
    }
    // Failures are reported per seed below; the default hook would print every panic with
    // a backtrace in the middle of the progress output.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1);
    let next = AtomicU64::new(args.start);
    let end = args.start + args.seeds;
    let failures: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        return;
                    }
                    if let Err(failure) = run_seed(seed, args.nodes) {
                        failures.lock().expect("no worker panics while holding the lock").push((seed, failure));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("workers are done");
    failures.sort_by_key(|(seed, _)| *seed);
    let nodes_flag = args.nodes.map(|n| format!(" --nodes {n}")).unwrap_or_default();
    for (seed, failure) in &failures {
        let first_line = failure.lines().next().unwrap_or("");
        println!("FAILED seed {seed}: {first_line}");
        println!("  replay: cargo xtask sim --seed {seed}{nodes_flag}");
    }
    eprintln!("ran {} seeds in {:.1}s on {jobs} threads", args.seeds, started.elapsed().as_secs_f64());
    println!("seeds: {}, failures: {}", args.seeds, failures.len());
    if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn replay(seed: u64, nodes: Option<usize>) -> ExitCode {
    match run_seed(seed, nodes) {
        Ok(report) => {
            println!(
                "seed {seed}: passed ({} nodes, faults {:?}, {} operations linearizable, {} entries committed, {} snapshot chunks sent)",
                report.nodes, report.faults, report.operations, report.committed, report.snapshot_chunks
            );
            println!("seeds: 1, failures: 0");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            println!("FAILED seed {seed}:\n{failure}");
            println!("seeds: 1, failures: 1");
            ExitCode::FAILURE
        }
    }
}

fn parse_nodes(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n @ (3 | 5 | 7)) => Ok(n),
        _ => Err(format!("--nodes must be 3, 5 or 7, not {value:?}")),
    }
}
