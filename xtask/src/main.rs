//! `cargo xtask`: project automation.
//!
//! - `cargo xtask sim --seeds N [--start S] [--nodes K] [--jobs J]`: swarm testing with the
//!   deterministic simulator. Prints one line per failing seed with the command that
//!   replays it, then `seeds: N, failures: F`; exits non-zero when F > 0.
//! - `cargo xtask sim --seed S [--nodes K]`: replays one seed and prints its report.
//! - `cargo xtask cluster [--nodes 3] [--storage redb|sled|memory] [--base-port 9081]
//!   [--client-port 2379] [--clean] [--release]`: builds `d-engine-kv` and runs a local
//!   cluster of it, one process per node, until Ctrl-C.
//! - `cargo xtask bench [--vs-etcd] [--quick] [--workload NAME]`: d-engine-kv against etcd
//!   on this machine (docs/benchmarks.md); a markdown report in benches/reports/.

mod bench;
mod cluster;
mod signals;
mod sim;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "d-engine project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the deterministic simulator over many seeds (swarm testing) or replay one.
    Sim(sim::SimArgs),
    /// Benchmark a local 3-process d-engine-kv cluster, side by side with etcd (--vs-etcd).
    Bench(bench::BenchArgs),
    /// Run a local d-engine-kv cluster (one process per node) until Ctrl-C.
    Cluster(cluster::ClusterArgs),
}

fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        Command::Sim(args) => sim::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Cluster(args) => cluster::run(args),
    }
}
