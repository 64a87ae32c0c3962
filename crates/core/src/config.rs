//! Protocol settings, validated once at construction.
//!
//! All durations are in ticks: the core has no clock, the runtime calls
//! `tick()` at a fixed interval and chooses what a tick is worth.

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field that must be positive is zero.
    #[error("`{field}` must be greater than zero")]
    Zero {
        /// The offending field.
        field: &'static str,
    },
    /// The election timeout must leave room for at least one heartbeat.
    #[error(
        "`election_timeout_ticks` ({election}) must be greater than `heartbeat_interval_ticks` ({heartbeat}), or followers time out between heartbeats"
    )]
    ElectionNotAboveHeartbeat {
        /// The configured election timeout.
        election: u64,
        /// The configured heartbeat interval.
        heartbeat: u64,
    },
    /// The lease would be empty or negative.
    #[error(
        "`lease_read.clock_drift_ticks` ({drift}) must be smaller than `election_timeout_ticks` ({election}); the lease is their difference"
    )]
    LeaseNotPositive {
        /// The configured drift bound.
        drift: u64,
        /// The configured election timeout.
        election: u64,
    },
    /// The membership is malformed.
    #[error("invalid membership: {0}")]
    Membership(#[from] crate::membership::MembershipError),
    /// The node is not part of its own membership.
    #[error("node {0} is not a member of the configured membership")]
    NotAMember(crate::types::NodeId),
}

/// Lease reads: a leader answers reads locally while it is sure no other leader
/// can exist. Off by default; safe only if clocks run at nearly the same rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseReadConfig {
    /// How many ticks the leader's clock may run slow relative to a follower's over
    /// one election timeout. The lease lasts `election_timeout_ticks - clock_drift_ticks`
    /// from the moment the confirming heartbeat round was sent.
    pub clock_drift_ticks: u64,
}

/// When a node snapshots its state machine and compacts its log. Either trigger suffices;
/// `trigger_snapshot()` asks for one at any time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Snapshot once this many entries were applied since the last snapshot.
    pub every_applied_entries: Option<u64>,
    /// Snapshot once the log holds more than this many payload bytes.
    pub max_log_bytes: Option<u64>,
    /// Entries kept in the log below a new snapshot, so slightly lagging followers still
    /// catch up from the log instead of receiving the snapshot.
    pub keep_entries: u64,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy { every_applied_entries: Some(100_000), max_log_bytes: Some(256 << 20), keep_entries: 1_000 }
    }
}

/// The protocol's knobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Base election timeout; each node waits a random time in `[t, 2t)` ticks.
    pub election_timeout_ticks: u64,
    /// How often a leader sends heartbeats; must be below the election timeout.
    pub heartbeat_interval_ticks: u64,
    /// Run a pre-vote round before bumping the term (recommended: true).
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum for an election timeout.
    pub check_quorum: bool,
    /// Optional lease reads; `None` (the default) means every linearizable read uses ReadIndex.
    pub lease_read: Option<LeaseReadConfig>,
    /// Append messages in flight per peer before the leader waits for acknowledgements.
    pub max_inflight_messages: usize,
    /// Payload bytes in flight per peer before the leader waits for acknowledgements.
    pub max_inflight_bytes: u64,
    /// Entries per append message.
    pub max_entries_per_message: usize,
    /// Payload bytes per append message (a single larger entry is still sent alone).
    pub max_bytes_per_message: u64,
    /// How many recent entries the core keeps in memory to replicate without a load.
    pub entry_cache_entries: usize,
    /// When to snapshot and compact the log.
    pub snapshot_policy: SnapshotPolicy,
    /// Bytes per snapshot chunk sent to a lagging peer.
    pub snapshot_chunk_bytes: u64,
    /// A learner is promoted only when it is at most this many entries behind the leader.
    pub learner_catchup_entries: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            lease_read: None,
            max_inflight_messages: 64,
            max_inflight_bytes: 8 << 20,
            max_entries_per_message: 256,
            max_bytes_per_message: 1 << 20,
            entry_cache_entries: 4096,
            snapshot_policy: SnapshotPolicy::default(),
            snapshot_chunk_bytes: 1 << 20,
            learner_catchup_entries: 100,
        }
    }
}

impl Config {
    /// Checks every field; called by `Raft::new`, so a bad value is reported at start.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive: [(&'static str, u64); 8] = [
            ("election_timeout_ticks", self.election_timeout_ticks),
            ("heartbeat_interval_ticks", self.heartbeat_interval_ticks),
            ("max_inflight_messages", self.max_inflight_messages as u64),
            ("max_inflight_bytes", self.max_inflight_bytes),
            ("max_entries_per_message", self.max_entries_per_message as u64),
            ("max_bytes_per_message", self.max_bytes_per_message),
            ("entry_cache_entries", self.entry_cache_entries as u64),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Zero { field });
        }
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks {
            return Err(ConfigError::ElectionNotAboveHeartbeat {
                election: self.election_timeout_ticks,
                heartbeat: self.heartbeat_interval_ticks,
            });
        }
        let policy = self.snapshot_policy;
        if policy.every_applied_entries == Some(0) {
            return Err(ConfigError::Zero { field: "snapshot_policy.every_applied_entries" });
        }
        if policy.max_log_bytes == Some(0) {
            return Err(ConfigError::Zero { field: "snapshot_policy.max_log_bytes" });
        }
        if let Some(lease) = self.lease_read
            && lease.clock_drift_ticks >= self.election_timeout_ticks
        {
            return Err(ConfigError::LeaseNotPositive {
                drift: lease.clock_drift_ticks,
                election: self.election_timeout_ticks,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn election_timeout_not_above_heartbeat_is_refused() {
        let config = Config { election_timeout_ticks: 3, heartbeat_interval_ticks: 3, ..Config::default() };
        assert_eq!(config.validate(), Err(ConfigError::ElectionNotAboveHeartbeat { election: 3, heartbeat: 3 }));
    }

    #[test]
    fn zero_windows_are_refused_by_name() {
        let config = Config { max_inflight_messages: 0, ..Config::default() };
        assert_eq!(config.validate(), Err(ConfigError::Zero { field: "max_inflight_messages" }));
        let config = Config { max_inflight_bytes: 0, ..Config::default() };
        assert_eq!(config.validate(), Err(ConfigError::Zero { field: "max_inflight_bytes" }));
    }

    #[test]
    fn lease_longer_than_the_election_timeout_is_refused() {
        let config = Config { lease_read: Some(LeaseReadConfig { clock_drift_ticks: 10 }), ..Config::default() };
        assert_eq!(config.validate(), Err(ConfigError::LeaseNotPositive { drift: 10, election: 10 }));
    }
}
