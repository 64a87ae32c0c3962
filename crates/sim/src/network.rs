//! The simulated network: per-message delay, loss, duplication and late delivery
//! (which reorders), plus partitions expressed as blocked directed links, so that
//! symmetric, one-way and partial-connectivity partitions are all the same mechanism.

use std::collections::BTreeSet;

use d_engine_core::NodeId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How the network misbehaves. Times are virtual microseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// Shortest one-way delay.
    pub min_delay_us: u64,
    /// Longest ordinary one-way delay.
    pub max_delay_us: u64,
    /// Probability that a message is lost.
    pub drop_rate: f64,
    /// Probability that a message is delivered twice.
    pub duplicate_rate: f64,
    /// Probability that a message is held back for up to `long_delay_max_us` (reordering).
    pub long_delay_rate: f64,
    /// The longest hold-back.
    pub long_delay_max_us: u64,
}

impl NetworkConfig {
    /// A fast, lossless network.
    pub fn reliable() -> NetworkConfig {
        NetworkConfig {
            min_delay_us: 100,
            max_delay_us: 2_000,
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            long_delay_rate: 0.0,
            long_delay_max_us: 0,
        }
    }

    /// The classic lab's unreliable network: up to 26 ms of delay and 10% loss, plus
    /// duplication and occasional long hold-backs.
    pub fn unreliable() -> NetworkConfig {
        NetworkConfig {
            min_delay_us: 0,
            max_delay_us: 26_000,
            drop_rate: 0.1,
            duplicate_rate: 0.02,
            long_delay_rate: 0.02,
            long_delay_max_us: 2_000_000,
        }
    }
}

/// The network between the nodes.
#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    blocked: BTreeSet<(NodeId, NodeId)>,
}

impl Network {
    /// A network without partitions.
    pub fn new(config: NetworkConfig) -> Network {
        Network { config, blocked: BTreeSet::new() }
    }

    /// Changes how messages are delayed and lost from now on.
    pub fn set_config(&mut self, config: NetworkConfig) {
        self.config = config;
    }

    /// The current behaviour.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Whether `from` can currently reach `to`.
    pub fn can_reach(&self, from: NodeId, to: NodeId) -> bool {
        !self.blocked.contains(&(from, to))
    }

    /// Cuts the directed link `from -> to`.
    pub fn block(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    /// Cuts `node` off from every node in `all`, both ways.
    pub fn isolate(&mut self, node: NodeId, all: &[NodeId]) {
        for other in all.iter().filter(|other| **other != node) {
            self.block(node, *other);
            self.block(*other, node);
        }
    }

    /// Restores every link of `node`.
    pub fn reconnect(&mut self, node: NodeId) {
        self.blocked.retain(|(from, to)| *from != node && *to != node);
    }

    /// Splits the nodes into groups that reach only their own members.
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        self.blocked.clear();
        for (i, group) in groups.iter().enumerate() {
            for (j, other) in groups.iter().enumerate() {
                if i != j {
                    for from in group {
                        for to in other {
                            self.block(*from, *to);
                        }
                    }
                }
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// The delays after which copies of one message arrive: none if it is lost, two if duplicated.
    pub fn deliveries(&self, rng: &mut ChaCha8Rng, from: NodeId, to: NodeId) -> Vec<u64> {
        if !self.can_reach(from, to) || rng.random_bool(self.config.drop_rate) {
            return Vec::new();
        }
        let copies = if rng.random_bool(self.config.duplicate_rate) { 2 } else { 1 };
        (0..copies).map(|_| self.delay(rng)).collect()
    }

    fn delay(&self, rng: &mut ChaCha8Rng) -> u64 {
        if self.config.long_delay_max_us > 0 && rng.random_bool(self.config.long_delay_rate) {
            return rng.random_range(0..=self.config.long_delay_max_us);
        }
        rng.random_range(self.config.min_delay_us..=self.config.max_delay_us.max(self.config.min_delay_us))
    }
}
