//! # d-engine-sim
//!
//! A deterministic simulator for the d-engine protocol core. It runs 3, 5 or 7 real
//! `Raft` cores on virtual time with one seeded random generator, injects network,
//! process and disk faults, checks Raft's safety invariants after every event and
//! checks the clients' history for linearizability. Any failure names its seed, and
//! the seed replays the run exactly: `cargo xtask sim --seed S`.

pub mod checker;
pub mod cluster;
pub mod kv;
pub mod linearizability;
pub mod network;
pub mod node;
pub mod swarm;
pub mod workload;

pub use cluster::{Cluster, SimConfig};
