//! A fixed slice of the swarm runs with `cargo test`; `cargo xtask sim` runs many more.

use d_engine_sim::swarm::run_seed;

#[test]
fn swarm_seeds_hold_every_invariant_and_stay_linearizable() {
    let seeds: Vec<u64> = (0..12).collect();
    let mut failures = Vec::new();
    for seed in &seeds {
        match run_seed(*seed, None) {
            Ok(report) => println!(
                "seed {seed}: {} nodes, faults {:?}, {} ops checked, {} committed",
                report.nodes, report.faults, report.operations, report.committed
            ),
            Err(failure) => failures.push(format!("seed {seed}: {failure}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} seeds failed:\n{}", failures.len(), seeds.len(), failures.join("\n"));
}
