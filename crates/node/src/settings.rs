//! Node settings: a TOML file, overridden by `D_ENGINE_*` environment variables, checked
//! once at start.
//!
//! Environment variables name a field by its path with `__` between sections:
//! `D_ENGINE_NODE__ID=2`, `D_ENGINE_NODE__DATA_DIR=/var/lib/d-engine`,
//! `D_ENGINE_RAFT__TICK_MS=20`. Lists (`cluster.members`) come from the file only.
//!
//! Every check names the field and the bad value, so that an operator can fix the file
//! without reading code: `invalid setting cluster.members[1].peer_addr = "localhost":
//! not a socket address (ip:port)`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use d_engine_core::{Config, LeaseReadConfig, Membership, NodeId, SnapshotPolicy};
use serde::{Deserialize, Serialize};

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "D_ENGINE";

/// Everything a node needs to start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// This node.
    pub node: NodeSettings,
    /// The cluster it belongs to.
    pub cluster: ClusterSettings,
    /// Protocol timing and limits.
    #[serde(default)]
    pub raft: RaftSettings,
    /// Peer and client transport.
    #[serde(default)]
    pub transport: TransportSettings,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// Log format and level (see [`crate::init_logging`]).
    #[serde(default)]
    pub log: LogSettings,
    /// Distributed tracing (see [`crate::init_telemetry`]).
    #[serde(default)]
    pub tracing: TracingSettings,
}

/// Which storage adapter holds the log, the snapshot and the state machine's data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// redb files under `data_dir` (the default, durable).
    #[default]
    Redb,
    /// sled files under `data_dir` (durable).
    Sled,
    /// Memory only: everything is lost when the process ends. For tests and demos.
    Memory,
}

/// This node's identity and data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// Its id, one of `cluster.members`; never 0.
    pub id: u64,
    /// Where the log, the snapshot and the state machine live (created if absent).
    pub data_dir: PathBuf,
    /// Which adapter stores them.
    #[serde(default)]
    pub storage: StorageKind,
    /// Which engine holds the Raft log of a durable `storage`: the adapter's own database
    /// or a write-ahead log (`d-engine-wal`). The state machine's data and the snapshot are
    /// `storage`'s either way.
    #[serde(default)]
    pub log_store: LogStoreKind,
}

/// Which engine holds the Raft log (see [`NodeSettings::log_store`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStoreKind {
    /// The storage adapter's own database (`log.redb`, `log.sled/`).
    Adapter,
    /// Segment files of a write-ahead log (`log.wal/`, the default): a sync is one write
    /// and one `fdatasync` — about half the latency and a third of the CPU of a redb commit.
    /// Ignored with `storage = "memory"`.
    #[default]
    Wal,
}

/// The cluster: its id and every node's addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// Stamped on every peer message; a node refuses messages of another cluster.
    pub id: String,
    /// Every node: the voters and learners a new cluster starts with, and the address book
    /// of the transport. A restarted node takes its membership from its log instead.
    pub members: Vec<MemberSettings>,
}

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSettings {
    /// Its id (unique, not 0).
    pub id: u64,
    /// Where it serves peers and d-engine clients, `ip:port`.
    pub peer_addr: String,
    /// Where the application serves its own clients (e.g. the KV store's etcd API), if any.
    #[serde(default)]
    pub client_addr: Option<String>,
    /// Starts as a learner: receives the log, does not vote until promoted.
    #[serde(default)]
    pub learner: bool,
}

/// Protocol timing and limits; maps onto the core's [`Config`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSettings {
    /// Length of one tick, the core's only unit of time.
    pub tick_ms: u64,
    /// Ticks without a leader before an election (randomised up to twice this).
    pub election_timeout_ticks: u64,
    /// Ticks between heartbeats.
    pub heartbeat_interval_ticks: u64,
    /// Ask before campaigning, so a partitioned node does not disrupt the cluster.
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum for an election timeout.
    pub check_quorum: bool,
    /// Serve `Lease` reads from the leader's lease, assuming clocks drift by less than this
    /// many ticks per election timeout. Unset: `Lease` reads fall back to ReadIndex.
    pub lease_clock_drift_ticks: Option<u64>,
    /// Append messages in flight per follower.
    pub max_inflight_messages: usize,
    /// Entries per append message.
    pub max_entries_per_message: usize,
    /// Bytes per append message.
    pub max_bytes_per_message: u64,
    /// Take a snapshot every this many applied entries (unset: never by count).
    pub snapshot_every_applied_entries: Option<u64>,
    /// Entries kept behind a snapshot for slow followers.
    pub snapshot_keep_entries: u64,
    /// Bytes per snapshot chunk.
    pub snapshot_chunk_bytes: u64,
    /// A learner is promoted only within this many entries of the leader.
    pub learner_catchup_entries: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        let core = Config::default();
        RaftSettings {
            tick_ms: 50,
            election_timeout_ticks: core.election_timeout_ticks,
            heartbeat_interval_ticks: core.heartbeat_interval_ticks,
            pre_vote: core.pre_vote,
            check_quorum: core.check_quorum,
            lease_clock_drift_ticks: None,
            max_inflight_messages: core.max_inflight_messages,
            max_entries_per_message: core.max_entries_per_message,
            max_bytes_per_message: core.max_bytes_per_message,
            snapshot_every_applied_entries: core.snapshot_policy.every_applied_entries,
            snapshot_keep_entries: core.snapshot_policy.keep_entries,
            snapshot_chunk_bytes: core.snapshot_chunk_bytes,
            learner_catchup_entries: core.learner_catchup_entries,
        }
    }
}

/// Transport and request limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportSettings {
    /// The largest gRPC message sent or accepted (peer batches, snapshot chunks, requests).
    pub max_message_bytes: usize,
    /// The largest command a client may propose.
    pub max_command_bytes: usize,
    /// First delay before reconnecting to a peer; doubles up to `reconnect_max_ms`.
    pub reconnect_initial_ms: u64,
    /// Longest delay between reconnect attempts.
    pub reconnect_max_ms: u64,
    /// Client requests queued for the event loop before callers wait.
    pub request_queue: usize,
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            max_message_bytes: 16 << 20,
            max_command_bytes: 1536 << 10,
            reconnect_initial_ms: 50,
            reconnect_max_ms: 2_000,
            request_queue: 4_096,
        }
    }
}

/// The Prometheus `/metrics` endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Where to serve `/metrics` (Prometheus text format), `ip:port`. Unset: no endpoint,
    /// and the node records metrics only if another node of the process serves them.
    pub listen_addr: Option<String>,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event (the default).
    #[default]
    Human,
    /// One JSON object per line, with the node's span fields (`id`, `term`).
    Json,
}

/// Logging, for programs that let the node set up `tracing` ([`crate::init_logging`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter: a level (`info`, `debug`, ...) or directives such as
    /// `info,d_engine=debug`. `RUST_LOG`, when set, replaces it.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { format: LogFormat::Human, level: "info".to_owned() }
    }
}

/// Distributed tracing with OpenTelemetry, for programs that let the node set up `tracing`
/// ([`crate::init_telemetry`]). Exporting needs d-engine's `otel` cargo feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSettings {
    /// Where to send spans, OTLP over gRPC: a collector's URL such as
    /// `http://127.0.0.1:4317`. Unset: no spans are exported (and none are made).
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans.
    pub service_name: String,
    /// The fraction of client requests without a trace context that start a trace, 0.0 to
    /// 1.0 (default 0.01: tracing every request of a busy node costs more CPU than the
    /// request itself). A request that arrives with a sampled `traceparent` is traced
    /// whatever this says.
    pub sample_ratio: f64,
}

impl Default for TracingSettings {
    fn default() -> Self {
        TracingSettings { otlp_endpoint: None, service_name: "d-engine".to_owned(), sample_ratio: 0.01 }
    }
}

/// Why settings could not be loaded or are not valid.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file is missing, not TOML, or a value has the wrong type or an unknown name.
    #[error("cannot load settings{}: {source}", path.as_ref().map(|p| format!(" from {}", p.display())).unwrap_or_default())]
    Load {
        /// The file, if one was given.
        path: Option<PathBuf>,
        /// What the parser said (it names the field).
        source: Box<config::ConfigError>,
    },
    /// A value is well-formed but not acceptable.
    #[error("invalid setting {field} = {value}: {reason}")]
    Invalid {
        /// The field's path, e.g. `cluster.members[1].peer_addr`.
        field: String,
        /// The value found, as written in TOML.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, value: impl std::fmt::Debug, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid { field: field.into(), value: format!("{value:?}"), reason: reason.into() }
}

impl Settings {
    /// Reads `path` (TOML), applies `D_ENGINE_*` environment overrides, and validates.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let source = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml).required(true))
            .add_source(environment());
        Settings::build(source, Some(path))
    }

    /// Parses TOML text (no environment overrides) and validates; for tests and embedding.
    pub fn from_toml(text: &str) -> Result<Settings, SettingsError> {
        let source = config::Config::builder().add_source(config::File::from_str(text, config::FileFormat::Toml));
        Settings::build(source, None)
    }

    fn build(
        builder: config::ConfigBuilder<config::builder::DefaultState>,
        path: Option<&Path>,
    ) -> Result<Settings, SettingsError> {
        let load_error = |source| SettingsError::Load { path: path.map(Path::to_path_buf), source: Box::new(source) };
        let settings: Settings = builder.build().map_err(load_error)?.try_deserialize().map_err(load_error)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every field; the first problem found is returned, naming field and value.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.node.id == 0 {
            return Err(invalid("node.id", self.node.id, "node ids start at 1"));
        }
        if self.cluster.id.trim().is_empty() {
            return Err(invalid("cluster.id", &self.cluster.id, "a cluster needs a non-empty id"));
        }
        if self.node.storage != StorageKind::Memory && self.node.data_dir.as_os_str().is_empty() {
            return Err(invalid("node.data_dir", &self.node.data_dir, "durable storage needs a directory"));
        }
        self.validate_members()?;
        if self.raft.tick_ms == 0 {
            return Err(invalid("raft.tick_ms", self.raft.tick_ms, "must be greater than zero"));
        }
        self.core_config().validate().map_err(|error| {
            let text = error.to_string();
            let field = text.split('`').nth(1).unwrap_or("raft").to_owned();
            SettingsError::Invalid { field: format!("raft.{field}"), value: "(see reason)".into(), reason: text }
        })?;
        let transport = &self.transport;
        if transport.max_command_bytes == 0 {
            return Err(invalid("transport.max_command_bytes", 0, "must be greater than zero"));
        }
        if transport.max_message_bytes < transport.max_command_bytes + 4096 {
            return Err(invalid(
                "transport.max_message_bytes",
                transport.max_message_bytes,
                format!(
                    "must exceed transport.max_command_bytes ({}) by at least 4096 bytes of framing",
                    transport.max_command_bytes
                ),
            ));
        }
        if (transport.max_message_bytes as u64) < self.raft.snapshot_chunk_bytes + 4096 {
            return Err(invalid(
                "transport.max_message_bytes",
                transport.max_message_bytes,
                format!("must exceed raft.snapshot_chunk_bytes ({}) by 4096 bytes", self.raft.snapshot_chunk_bytes),
            ));
        }
        if transport.reconnect_initial_ms == 0 || transport.reconnect_max_ms < transport.reconnect_initial_ms {
            return Err(invalid(
                "transport.reconnect_max_ms",
                transport.reconnect_max_ms,
                format!("needs 0 < reconnect_initial_ms ({}) <= reconnect_max_ms", transport.reconnect_initial_ms),
            ));
        }
        if transport.request_queue == 0 {
            return Err(invalid("transport.request_queue", 0, "must be greater than zero"));
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid("log.level", &self.log.level, format!("not a tracing filter: {error}")));
        }
        if let Some(address) = &self.metrics.listen_addr
            && address.parse::<SocketAddr>().is_err()
        {
            return Err(invalid("metrics.listen_addr", address, "not a socket address (ip:port)"));
        }
        self.validate_tracing()
    }

    fn validate_tracing(&self) -> Result<(), SettingsError> {
        let tracing = &self.tracing;
        if !(0.0..=1.0).contains(&tracing.sample_ratio) {
            return Err(invalid("tracing.sample_ratio", tracing.sample_ratio, "must be between 0.0 and 1.0"));
        }
        if tracing.service_name.trim().is_empty() {
            return Err(invalid("tracing.service_name", &tracing.service_name, "must not be empty"));
        }
        let Some(endpoint) = &tracing.otlp_endpoint else { return Ok(()) };
        let is_url = (endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            && endpoint.parse::<tonic::codegen::http::Uri>().is_ok_and(|uri| uri.host().is_some());
        if !is_url {
            return Err(invalid("tracing.otlp_endpoint", endpoint, "not a URL (http://host:port)"));
        }
        if !cfg!(feature = "otel") {
            return Err(invalid(
                "tracing.otlp_endpoint",
                endpoint,
                "this build of d-engine has no OpenTelemetry exporter (cargo feature `otel`)",
            ));
        }
        Ok(())
    }

    fn validate_members(&self) -> Result<(), SettingsError> {
        let members = &self.cluster.members;
        if members.is_empty() {
            return Err(invalid("cluster.members", "[]", "list at least this node"));
        }
        let mut ids = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        for (i, member) in members.iter().enumerate() {
            if member.id == 0 {
                return Err(invalid(format!("cluster.members[{i}].id"), member.id, "node ids start at 1"));
            }
            if !ids.insert(member.id) {
                return Err(invalid(format!("cluster.members[{i}].id"), member.id, "listed twice"));
            }
            let field = format!("cluster.members[{i}].peer_addr");
            let address: SocketAddr = member
                .peer_addr
                .parse()
                .map_err(|_| invalid(&field, &member.peer_addr, "not a socket address (ip:port)"))?;
            if !addresses.insert(address) {
                return Err(invalid(field, &member.peer_addr, "used by two members"));
            }
            if let Some(client) = &member.client_addr
                && client.parse::<SocketAddr>().is_err()
            {
                let field = format!("cluster.members[{i}].client_addr");
                return Err(invalid(field, client, "not a socket address (ip:port)"));
            }
        }
        if !ids.contains(&self.node.id) {
            return Err(invalid("node.id", self.node.id, format!("not among cluster.members (ids {ids:?})")));
        }
        if members.iter().all(|member| member.learner) {
            return Err(invalid("cluster.members", "(all learners)", "at least one member must be a voter"));
        }
        Ok(())
    }

    /// This node's own entry in `cluster.members`.
    pub fn this_member(&self) -> &MemberSettings {
        self.cluster.members.iter().find(|member| member.id == self.node.id).expect("validated: the node is a member")
    }

    /// The address this node listens on for peers and d-engine clients.
    pub fn listen_addr(&self) -> SocketAddr {
        self.this_member().peer_addr.parse().expect("validated: a socket address")
    }

    /// Where this node serves `/metrics`, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.listen_addr.as_ref().map(|address| address.parse().expect("validated: a socket address"))
    }

    /// The membership a new cluster starts with.
    pub fn bootstrap_membership(&self) -> Membership {
        let ids = |learner: bool| -> Vec<NodeId> {
            self.cluster.members.iter().filter(|m| m.learner == learner).map(|m| NodeId(m.id)).collect()
        };
        Membership::new(&ids(false), &ids(true)).expect("validated: unique ids and at least one voter")
    }

    /// The core's protocol configuration.
    pub fn core_config(&self) -> Config {
        let raft = &self.raft;
        let defaults = Config::default();
        Config {
            election_timeout_ticks: raft.election_timeout_ticks,
            heartbeat_interval_ticks: raft.heartbeat_interval_ticks,
            pre_vote: raft.pre_vote,
            check_quorum: raft.check_quorum,
            lease_read: raft.lease_clock_drift_ticks.map(|clock_drift_ticks| LeaseReadConfig { clock_drift_ticks }),
            max_inflight_messages: raft.max_inflight_messages,
            max_entries_per_message: raft.max_entries_per_message,
            max_bytes_per_message: raft.max_bytes_per_message,
            snapshot_policy: SnapshotPolicy {
                every_applied_entries: raft.snapshot_every_applied_entries,
                keep_entries: raft.snapshot_keep_entries,
                ..defaults.snapshot_policy
            },
            snapshot_chunk_bytes: raft.snapshot_chunk_bytes,
            learner_catchup_entries: raft.learner_catchup_entries,
            ..defaults
        }
    }

    /// The length of one tick.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.raft.tick_ms)
    }
}

fn environment() -> config::Environment {
    config::Environment::with_prefix(ENV_PREFIX).prefix_separator("_").separator("__").try_parsing(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE_NODES: &str = r#"
        [node]
        id = 2
        data_dir = "/tmp/d-engine-2"

        [cluster]
        id = "test"
        members = [
            { id = 1, peer_addr = "127.0.0.1:9081" },
            { id = 2, peer_addr = "127.0.0.1:9082", client_addr = "127.0.0.1:2382" },
            { id = 3, peer_addr = "127.0.0.1:9083", learner = true },
        ]
    "#;

    fn reason_for(text: &str) -> String {
        Settings::from_toml(text).expect_err("settings must be refused").to_string()
    }

    #[test]
    fn a_three_node_file_gives_defaults_for_what_it_omits() {
        let settings = Settings::from_toml(THREE_NODES).expect("valid settings");
        assert_eq!(settings.node.storage, StorageKind::Redb);
        assert_eq!(settings.raft, RaftSettings::default());
        assert_eq!(settings.listen_addr(), "127.0.0.1:9082".parse().unwrap());
        let membership = settings.bootstrap_membership();
        assert!(membership.is_voter(NodeId(1)) && membership.is_voter(NodeId(2)));
        assert!(membership.learners().contains(&NodeId(3)));
    }

    #[test]
    fn a_bad_address_is_refused_naming_field_and_value() {
        let text = THREE_NODES.replace("127.0.0.1:9083", "localhost");
        assert_eq!(
            reason_for(&text),
            r#"invalid setting cluster.members[2].peer_addr = "localhost": not a socket address (ip:port)"#
        );
    }

    #[test]
    fn a_node_outside_the_member_list_is_refused() {
        let text = THREE_NODES.replace("id = 2\n", "id = 7\n");
        assert!(reason_for(&text).starts_with("invalid setting node.id = 7: not among cluster.members"));
    }

    #[test]
    fn a_wrong_type_is_refused_naming_the_field() {
        let text = THREE_NODES.replace("id = 2\n", "id = \"two\"\n");
        let reason = reason_for(&text);
        assert!(reason.contains("node.id"), "{reason}");
    }

    #[test]
    fn an_unknown_field_is_refused() {
        let text = THREE_NODES.replace("[cluster]", "[raft]\ntick = 5\n\n[cluster]");
        let reason = reason_for(&text);
        assert!(reason.contains("unknown field `tick`"), "{reason}");
    }

    #[test]
    fn protocol_settings_are_checked_by_the_core_rules() {
        let text = format!("{THREE_NODES}\n[raft]\nelection_timeout_ticks = 1\nheartbeat_interval_ticks = 1\n");
        assert!(reason_for(&text).starts_with("invalid setting raft.election_timeout_ticks"), "{}", reason_for(&text));
    }

    #[test]
    fn the_metrics_address_is_optional_and_checked() {
        assert_eq!(Settings::from_toml(THREE_NODES).expect("valid settings").metrics_addr(), None);
        let text = format!("{THREE_NODES}\n[metrics]\nlisten_addr = \"127.0.0.1:9182\"\n");
        let settings = Settings::from_toml(&text).expect("valid settings");
        assert_eq!(settings.metrics_addr(), Some("127.0.0.1:9182".parse().unwrap()));
        let text = format!("{THREE_NODES}\n[metrics]\nlisten_addr = \"localhost:9182\"\n");
        assert_eq!(
            reason_for(&text),
            r#"invalid setting metrics.listen_addr = "localhost:9182": not a socket address (ip:port)"#
        );
    }

    #[test]
    fn the_log_section_defaults_to_human_info_and_a_bad_filter_is_refused() {
        let settings = Settings::from_toml(THREE_NODES).expect("valid settings");
        assert_eq!(settings.log, LogSettings { format: LogFormat::Human, level: "info".to_owned() });
        let text = format!("{THREE_NODES}\n[log]\nformat = \"json\"\nlevel = \"info,d_engine=debug\"\n");
        assert_eq!(Settings::from_toml(&text).expect("valid settings").log.format, LogFormat::Json);
        let text = format!("{THREE_NODES}\n[log]\nlevel = \"nonsense[[\"\n");
        assert!(reason_for(&text).starts_with(r#"invalid setting log.level = "nonsense[[": not a tracing filter"#));
    }

    #[test]
    fn tracing_settings_are_checked_and_default_to_no_export() {
        let settings = Settings::from_toml(THREE_NODES).expect("valid settings");
        assert_eq!(settings.tracing.otlp_endpoint, None, "no collector unless one is named");
        assert_eq!(settings.tracing.sample_ratio, 0.01);
        let text = format!("{THREE_NODES}\n[tracing]\nsample_ratio = 1.5\n");
        assert_eq!(reason_for(&text), "invalid setting tracing.sample_ratio = 1.5: must be between 0.0 and 1.0");
        let text = format!("{THREE_NODES}\n[tracing]\notlp_endpoint = \"127.0.0.1:4317\"\n");
        assert_eq!(
            reason_for(&text),
            r#"invalid setting tracing.otlp_endpoint = "127.0.0.1:4317": not a URL (http://host:port)"#
        );
        let text = format!("{THREE_NODES}\n[tracing]\notlp_endpoint = \"http://127.0.0.1:4317\"\nsample_ratio = 1.0\n");
        let settings = Settings::from_toml(&text).expect("a URL is accepted (the tests build with `otel`)");
        assert_eq!(settings.tracing.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
    }

    #[test]
    fn the_log_engine_defaults_to_the_write_ahead_log_and_the_adapters_own_can_be_chosen() {
        let settings = Settings::from_toml(THREE_NODES).expect("valid settings");
        assert_eq!(settings.node.log_store, LogStoreKind::Wal);
        let text = THREE_NODES.replacen("[node]", "[node]\nlog_store = \"adapter\"", 1);
        assert_eq!(Settings::from_toml(&text).expect("valid settings").node.log_store, LogStoreKind::Adapter);
        let text = THREE_NODES.replacen("[node]", "[node]\nlog_store = \"bolt\"", 1);
        assert!(reason_for(&text).contains("log_store"), "an unknown engine is refused by name: {}", reason_for(&text));
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let text = THREE_NODES.replace("{ id = 3,", "{ id = 1,");
        assert_eq!(reason_for(&text), "invalid setting cluster.members[2].id = 1: listed twice");
    }
}
