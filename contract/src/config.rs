//! The one configuration file shared by every component (`config.toml`).
//!
//! Sources, later ones winning:
//! 1. built-in defaults ([`Config::default`], documented key by key in the
//!    repository's `config.toml`);
//! 2. the TOML file given with `--config`;
//! 3. environment variables `KTK__{SECTION}__{KEY}`: the key's path in upper
//!    case, dots replaced by a double underscore, e.g.
//!    `KTK__AGENT__OUTBOX__PATH=/var/lib/ktk/outbox.db` or
//!    `KTK__KAFKA__BOOTSTRAP_SERVERS=10.0.0.5:9092`. The value is read as the
//!    key's type (number, boolean, string).
//!
//! Secrets (`mqtt.password`, `mysql.password`) are never read from the file:
//! they come from `KTK__MQTT__PASSWORD` / `KTK__MYSQL__PASSWORD` or from the
//! file named by `password_file`. An unknown key, a value of the wrong type
//! or out of range is refused with a message naming the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::event::is_valid_id;

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "KTK__";

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// toml's message, with line and column.
        message: String,
    },
    /// A key does not exist.
    #[error("unknown config key `{key}`{origin}")]
    UnknownKey {
        /// Dotted path.
        key: String,
        /// Where it came from.
        origin: String,
    },
    /// A key has a value of the wrong type or form.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted path.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A secret was written into the file.
    #[error("config key `{key}` must not be in the file: set {env} or `{key}_file` instead")]
    SecretInFile {
        /// Dotted path.
        key: String,
        /// The environment variable to use instead.
        env: String,
    },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// A password: printed as `***`, never written back to a file.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

impl Secret {
    /// The secret, or `None` if empty.
    pub fn get(&self) -> Option<&str> {
        (!self.0.is_empty()).then_some(self.0.as_str())
    }
}

/// Every component's settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The kiosk agent.
    pub agent: AgentConfig,
    /// The MQTT broker, as the agent and the bridge see it.
    pub mqtt: MqttConfig,
    /// The Kafka cluster, as the bridge and the processor see it.
    pub kafka: KafkaConfig,
    /// The gateway bridge (MQTT to Kafka).
    pub bridge: BridgeConfig,
    /// The gateway processor (Kafka to MySQL).
    pub processor: ProcessorConfig,
    /// The database the processor writes.
    pub mysql: MysqlConfig,
    /// The wait-time model.
    pub model: ModelConfig,
    /// `gateway demo`: the whole pipeline in one process.
    pub demo: DemoConfig,
}

/// `[agent]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// The hospital site this kiosk belongs to.
    pub site_id: String,
    /// This kiosk's fleet-unique id (also its MQTT client id).
    pub kiosk_id: String,
    /// How often the retained status message is published, milliseconds.
    pub status_interval_ms: u64,
    /// `[agent.outbox]`
    pub outbox: OutboxConfig,
    /// `[agent.forwarder]`
    pub forwarder: ForwarderConfig,
    /// `[agent.simulation]`
    pub simulation: SimulationConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            site_id: "site-a".into(),
            kiosk_id: "kiosk-01".into(),
            status_interval_ms: 5000,
            outbox: OutboxConfig::default(),
            forwarder: ForwarderConfig::default(),
            simulation: SimulationConfig::default(),
        }
    }
}

/// SQLite's `synchronous` setting for the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// No fsync: an OS crash or power loss can lose recent commits.
    Off,
    /// fsync at checkpoints only: power loss can lose the last commits, never corrupts.
    Normal,
    /// fsync every commit: a committed event survives power loss.
    Full,
    /// FULL plus directory syncs.
    Extra,
}

impl Synchronous {
    /// The pragma value.
    pub fn as_pragma(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
            Synchronous::Extra => "EXTRA",
        }
    }
}

/// What the outbox does when its cap is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Refuse new check-ins until space frees up; nothing stored is lost.
    RejectNew,
    /// Delete the oldest unacknowledged events to make room, recording their seqs.
    DropOldest,
}

/// `[agent.outbox]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// SQLite database file.
    pub path: String,
    /// `off` | `normal` | `full` | `extra`.
    pub synchronous: Synchronous,
    /// Cap on stored unacknowledged events.
    pub max_events: u64,
    /// Cap on the database file size, bytes.
    pub max_bytes: u64,
    /// `reject_new` | `drop_oldest`.
    pub full_policy: FullPolicy,
    /// Most events the writer commits in one transaction.
    pub commit_max_events: usize,
    /// Longest an accepted event waits for its group commit, milliseconds.
    pub commit_max_wait_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            path: "agent-data/outbox.db".into(),
            synchronous: Synchronous::Full,
            max_events: 2_000_000,
            max_bytes: 1_073_741_824,
            full_policy: FullPolicy::RejectNew,
            commit_max_events: 1000,
            commit_max_wait_ms: 5,
        }
    }
}

/// `[agent.forwarder]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwarderConfig {
    /// Most events in one MQTT message.
    pub batch_max_events: usize,
    /// Most batches published and not yet acknowledged end to end.
    pub window_batches: usize,
    /// A batch not acknowledged within this many milliseconds is resent.
    pub ack_timeout_ms: u64,
    /// First reconnect delay, milliseconds (doubles, with jitter).
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay, milliseconds.
    pub reconnect_max_ms: u64,
    /// Replay pacing: most events per second sent from backlog (0 = unlimited).
    pub replay_max_events_per_sec: u64,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        ForwarderConfig {
            batch_max_events: 500,
            window_batches: 32,
            ack_timeout_ms: 15_000,
            reconnect_min_ms: 250,
            reconnect_max_ms: 30_000,
            replay_max_events_per_sec: 0,
        }
    }
}

/// `[agent.simulation]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulationConfig {
    /// Random seed; 0 picks one from the clock.
    pub seed: u64,
    /// Mean arrivals per hour at this kiosk over a day (the hourly profile shapes it).
    pub arrivals_per_hour: f64,
    /// 1 = real time, N = N times faster, 0 = as fast as possible.
    pub clock_speed: f64,
    /// Simulated start time, ISO 8601 UTC; empty = now.
    pub start_time: String,
    /// Share of arrivals that are emergencies.
    pub emergency_share: f64,
    /// Consultation rooms.
    pub rooms_consultation: u32,
    /// MRI scanners.
    pub rooms_mri: u32,
    /// CT scanners.
    pub rooms_ct: u32,
    /// A scheduled patient may leave after waiting this many minutes.
    pub patience_minutes: f64,
    /// Chance that a patient who has waited past their patience leaves.
    pub leave_probability: f64,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        SimulationConfig {
            seed: 0,
            arrivals_per_hour: 6.0,
            clock_speed: 1.0,
            start_time: String::new(),
            emergency_share: 0.2,
            rooms_consultation: 1,
            rooms_mri: 2,
            rooms_ct: 1,
            patience_minutes: 90.0,
            leave_probability: 0.3,
        }
    }
}

/// `[mqtt]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Use TLS (rustls).
    pub tls: bool,
    /// PEM file of CA certificates for TLS; required when `tls` is true.
    pub ca_file: String,
    /// User name; empty = anonymous.
    pub username: String,
    /// Password: only from `KTK__MQTT__PASSWORD` (never the file).
    pub password: Secret,
    /// File holding the password; empty = none.
    pub password_file: String,
    /// MQTT keep-alive, seconds.
    pub keep_alive_secs: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            tls: false,
            ca_file: String::new(),
            username: String::new(),
            password: Secret::default(),
            password_file: String::new(),
            keep_alive_secs: 15,
        }
    }
}

/// `[kafka]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated.
    pub bootstrap_servers: String,
    /// The events topic.
    pub topic: String,
    /// The dead-letter topic.
    pub dlq_topic: String,
    /// Partitions when a topic is created.
    pub partitions: u32,
    /// Replication factor when a topic is created.
    pub replication_factor: u32,
    /// Create missing topics at start (false: a missing topic stops the bridge).
    pub create_topics: bool,
    /// `none` | `gzip` | `snappy` | `lz4` | `zstd`.
    pub compression: String,
    /// Producer linger, milliseconds.
    pub linger_ms: u64,
    /// How long a delivery may take before it counts as failed, milliseconds;
    /// 0 = never give up (retry until Kafka is back).
    pub delivery_timeout_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic: "hospital_arrivals".into(),
            dlq_topic: "hospital_arrivals.dlq".into(),
            partitions: 4,
            replication_factor: 1,
            create_topics: true,
            compression: "lz4".into(),
            linger_ms: 5,
            delivery_timeout_ms: 0,
        }
    }
}

/// `[bridge]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {
    /// Shared-subscription group: bridges in one group split the kiosks' batches.
    pub share_group: String,
    /// This bridge's MQTT client id (unique per bridge; keeps its session).
    pub client_id: String,
    /// Largest accepted MQTT payload, bytes.
    pub max_payload_bytes: usize,
    /// Most batches handed to Kafka and not yet confirmed.
    pub max_in_flight_batches: usize,
    /// HTTP address of `/health` and `/metrics`; empty = off.
    pub metrics_addr: String,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            share_group: "bridges".into(),
            client_id: "bridge-1".into(),
            max_payload_bytes: 1_048_576,
            max_in_flight_batches: 64,
            metrics_addr: "127.0.0.1:9101".into(),
        }
    }
}

/// `[processor]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorConfig {
    /// Kafka consumer group.
    pub group_id: String,
    /// Most records in one database transaction.
    pub batch_max_records: usize,
    /// Longest a batch waits to fill, milliseconds.
    pub batch_max_wait_ms: u64,
    /// HTTP address of `/health` and `/metrics`; empty = off.
    pub metrics_addr: String,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            group_id: "processors".into(),
            batch_max_records: 2000,
            batch_max_wait_ms: 50,
            metrics_addr: "127.0.0.1:9102".into(),
        }
    }
}

/// `[mysql]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MysqlConfig {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Password: only from `KTK__MYSQL__PASSWORD` (never the file).
    pub password: Secret,
    /// File holding the password; empty = none.
    pub password_file: String,
    /// Database (created if missing).
    pub database: String,
}

impl Default for MysqlConfig {
    fn default() -> Self {
        MysqlConfig {
            host: "127.0.0.1".into(),
            port: 3306,
            user: "root".into(),
            password: Secret::default(),
            password_file: String::new(),
            database: "hospital".into(),
        }
    }
}

/// `[model]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// The ONNX model; its metadata file sits beside it with a `.json` extension.
    pub path: String,
    /// Predictions are clipped to at least this, minutes.
    pub min_wait_minutes: f64,
    /// Predictions are clipped to at most this, minutes.
    pub max_wait_minutes: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: "models/wait_time.onnx".into(),
            min_wait_minutes: 0.0,
            max_wait_minutes: 480.0,
        }
    }
}

/// Keys that hold secrets and may not appear in the file.
const SECRET_KEYS: [&str; 2] = ["mqtt.password", "mysql.password"];

impl Config {
    /// Load `path` (or only defaults when `None`), apply the process
    /// environment, read password files, and validate.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (text, name) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?,
                p.display().to_string(),
            ),
            None => (String::new(), "<defaults>".to_string()),
        };
        let mut config = Config::from_sources(&text, &name, std::env::vars())?;
        config.read_password_files()?;
        Ok(config)
    }

    /// Build from TOML text and environment pairs, without other I/O.
    pub fn from_sources(
        text: &str,
        name: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: name.to_string(),
                    message: e.to_string(),
                })?;
        for key in SECRET_KEYS {
            if lookup(&table, key).is_some() {
                return Err(ConfigError::SecretInFile {
                    key: key.to_string(),
                    env: env_name(key),
                });
            }
        }
        let defaults = toml::Table::try_from(Config::default())
            .map_err(|e| invalid("<defaults>", e.to_string()))?;
        let overrides: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        for (var, raw) in overrides {
            let key = var[ENV_PREFIX.len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            let Some(default) = lookup(&defaults, &key) else {
                return Err(ConfigError::UnknownKey {
                    key,
                    origin: format!(" (from environment variable {var})"),
                });
            };
            let value = coerce(&key, &var, default, &raw)?;
            insert(&mut table, &key, value);
        }
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                let inner = e.into_inner().to_string();
                if inner.starts_with("unknown field ") {
                    // serde_path_to_error's path already ends at the field.
                    ConfigError::UnknownKey {
                        key,
                        origin: format!(" in {name}"),
                    }
                } else {
                    invalid(&key, inner.trim().to_string())
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    fn read_password_files(&mut self) -> Result<(), ConfigError> {
        for (key, file, secret) in [
            (
                "mqtt.password_file",
                &self.mqtt.password_file,
                &mut self.mqtt.password,
            ),
            (
                "mysql.password_file",
                &self.mysql.password_file,
                &mut self.mysql.password,
            ),
        ] {
            if !file.is_empty() && secret.get().is_none() {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| invalid(key, format!("cannot read {file}: {e}")))?;
                *secret = Secret(text.trim_end_matches(['\n', '\r']).to_string());
            }
        }
        Ok(())
    }

    /// Check ranges and identifiers; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = &self.agent;
        for (key, id) in [
            ("agent.site_id", &a.site_id),
            ("agent.kiosk_id", &a.kiosk_id),
        ] {
            if !is_valid_id(id) {
                return Err(invalid(
                    key,
                    format!("{id:?} must be 1-32 characters of [A-Za-z0-9_-]"),
                ));
            }
        }
        at_least("agent.status_interval_ms", a.status_interval_ms, 100)?;
        nonempty("agent.outbox.path", &a.outbox.path)?;
        at_least("agent.outbox.max_events", a.outbox.max_events, 1)?;
        at_least("agent.outbox.max_bytes", a.outbox.max_bytes, 1_048_576)?;
        in_range(
            "agent.outbox.commit_max_events",
            a.outbox.commit_max_events,
            1,
            100_000,
        )?;
        in_range(
            "agent.outbox.commit_max_wait_ms",
            a.outbox.commit_max_wait_ms,
            0,
            10_000,
        )?;
        let f = &a.forwarder;
        in_range(
            "agent.forwarder.batch_max_events",
            f.batch_max_events,
            1,
            10_000,
        )?;
        in_range("agent.forwarder.window_batches", f.window_batches, 1, 1000)?;
        at_least("agent.forwarder.ack_timeout_ms", f.ack_timeout_ms, 100)?;
        at_least("agent.forwarder.reconnect_min_ms", f.reconnect_min_ms, 10)?;
        if f.reconnect_max_ms < f.reconnect_min_ms {
            return Err(invalid(
                "agent.forwarder.reconnect_max_ms",
                format!(
                    "{} must be at least agent.forwarder.reconnect_min_ms ({})",
                    f.reconnect_max_ms, f.reconnect_min_ms
                ),
            ));
        }
        let s = &a.simulation;
        float_range(
            "agent.simulation.arrivals_per_hour",
            s.arrivals_per_hour,
            0.0,
            1e9,
        )?;
        float_range("agent.simulation.clock_speed", s.clock_speed, 0.0, 1e9)?;
        float_range(
            "agent.simulation.emergency_share",
            s.emergency_share,
            0.0,
            1.0,
        )?;
        float_range(
            "agent.simulation.patience_minutes",
            s.patience_minutes,
            1.0,
            1e6,
        )?;
        float_range(
            "agent.simulation.leave_probability",
            s.leave_probability,
            0.0,
            1.0,
        )?;
        for (key, rooms) in [
            ("agent.simulation.rooms_consultation", s.rooms_consultation),
            ("agent.simulation.rooms_mri", s.rooms_mri),
            ("agent.simulation.rooms_ct", s.rooms_ct),
        ] {
            in_range(key, rooms, 1, 1000)?;
        }
        if !s.start_time.is_empty() && s.start_time.parse::<crate::time::UtcMillis>().is_err() {
            return Err(invalid(
                "agent.simulation.start_time",
                format!(
                    "{:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ (or empty for now)",
                    s.start_time
                ),
            ));
        }
        nonempty("mqtt.host", &self.mqtt.host)?;
        if self.mqtt.tls && self.mqtt.ca_file.is_empty() {
            return Err(invalid(
                "mqtt.ca_file",
                "must name a PEM CA file when mqtt.tls = true",
            ));
        }
        at_least("mqtt.port", self.mqtt.port, 1)?;
        in_range("mqtt.keep_alive_secs", self.mqtt.keep_alive_secs, 5, 3600)?;
        let k = &self.kafka;
        nonempty("kafka.bootstrap_servers", &k.bootstrap_servers)?;
        nonempty("kafka.topic", &k.topic)?;
        nonempty("kafka.dlq_topic", &k.dlq_topic)?;
        if k.topic == k.dlq_topic {
            return Err(invalid("kafka.dlq_topic", "must differ from kafka.topic"));
        }
        in_range("kafka.partitions", k.partitions, 1, 10_000)?;
        in_range("kafka.replication_factor", k.replication_factor, 1, 16)?;
        const COMPRESSION: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
        if !COMPRESSION.contains(&k.compression.as_str()) {
            return Err(invalid(
                "kafka.compression",
                format!(
                    "{:?} is not one of {}",
                    k.compression,
                    COMPRESSION.join(", ")
                ),
            ));
        }
        in_range("kafka.linger_ms", k.linger_ms, 0, 10_000)?;
        if k.delivery_timeout_ms != 0 {
            at_least("kafka.delivery_timeout_ms", k.delivery_timeout_ms, 1000)?;
        }
        let b = &self.bridge;
        if !is_valid_id(&b.share_group) {
            return Err(invalid(
                "bridge.share_group",
                "must be 1-32 characters of [A-Za-z0-9_-]",
            ));
        }
        nonempty("bridge.client_id", &b.client_id)?;
        in_range(
            "bridge.max_payload_bytes",
            b.max_payload_bytes,
            64,
            268_435_455,
        )?;
        in_range(
            "bridge.max_in_flight_batches",
            b.max_in_flight_batches,
            1,
            10_000,
        )?;
        socket_or_empty("bridge.metrics_addr", &b.metrics_addr)?;
        let p = &self.processor;
        nonempty("processor.group_id", &p.group_id)?;
        in_range(
            "processor.batch_max_records",
            p.batch_max_records,
            1,
            100_000,
        )?;
        in_range(
            "processor.batch_max_wait_ms",
            p.batch_max_wait_ms,
            1,
            60_000,
        )?;
        socket_or_empty("processor.metrics_addr", &p.metrics_addr)?;
        nonempty("mysql.host", &self.mysql.host)?;
        nonempty("mysql.user", &self.mysql.user)?;
        let db = &self.mysql.database;
        if db.is_empty() || !db.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return Err(invalid(
                "mysql.database",
                format!("{db:?} must be letters, digits and underscores"),
            ));
        }
        nonempty("model.path", &self.model.path)?;
        let m = &self.model;
        float_range("model.min_wait_minutes", m.min_wait_minutes, 0.0, 1e6)?;
        if m.max_wait_minutes <= m.min_wait_minutes || !m.max_wait_minutes.is_finite() {
            return Err(invalid(
                "model.max_wait_minutes",
                "must be finite and greater than model.min_wait_minutes",
            ));
        }
        let d = &self.demo;
        if !(1..=64).contains(&d.kiosks) {
            return Err(invalid("demo.kiosks", "must be 1-64"));
        }
        if d.sites == 0 || d.sites > d.kiosks {
            return Err(invalid("demo.sites", "must be 1 to demo.kiosks"));
        }
        float_range("demo.clock_speed", d.clock_speed, 0.001, 1e6)?;
        at_least("demo.drain_timeout_s", d.drain_timeout_s, 1)?;
        Ok(())
    }
}

/// Where the demo gets a service from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceMode {
    /// Run it inside the demo process.
    Embedded,
    /// Use the one the configuration's own section names.
    External,
}

/// `[demo]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// MQTT: embedded rumqttd, or the `[mqtt]` broker.
    pub mqtt: ServiceMode,
    /// Kafka: librdkafka's embedded mock cluster, or `[kafka]`.
    pub kafka: ServiceMode,
    /// Database: an SQLite file in the demo directory, or `[mysql]`.
    pub database: ServiceMode,
    /// Simulated kiosks.
    pub kiosks: u32,
    /// Sites the kiosks are spread over. Each kiosk simulates its site's
    /// whole reception, so kiosks sharing a site multiply its load.
    pub sites: u32,
    /// Simulated seconds per real second.
    pub clock_speed: f64,
    /// How long the kiosks check patients in, seconds; 0 = until Ctrl-C.
    pub duration_s: u64,
    /// When the kiosks' link to the broker is cut, seconds from the start.
    pub outage_at_s: u64,
    /// How long the link stays cut, seconds; 0 = no outage.
    pub outage_for_s: u64,
    /// Longest wait for every event to reach the database at the end, seconds.
    pub drain_timeout_s: u64,
    /// Outboxes and the SQLite database; "" = a temporary directory, removed at the end.
    pub dir: String,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            mqtt: ServiceMode::Embedded,
            kafka: ServiceMode::Embedded,
            database: ServiceMode::Embedded,
            kiosks: 4,
            sites: 4,
            clock_speed: 600.0,
            duration_s: 60,
            outage_at_s: 20,
            outage_for_s: 15,
            drain_timeout_s: 120,
            dir: String::new(),
        }
    }
}

/// `KTK__SECTION__KEY` for a dotted key.
pub fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.to_ascii_uppercase().replace('.', "__")
    )
}

fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

fn insert(table: &mut toml::Table, key: &str, value: toml::Value) {
    let parts: Vec<&str> = key.split('.').collect();
    let mut t = table;
    for part in &parts[..parts.len() - 1] {
        let entry = t
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        t = next;
    }
    t.insert(parts[parts.len() - 1].to_string(), value);
}

fn coerce(key: &str, var: &str, like: &toml::Value, raw: &str) -> Result<toml::Value, ConfigError> {
    let bad = |what: &str| invalid(key, format!("{var}={raw:?} is not {what}"));
    Ok(match like {
        toml::Value::String(_) => toml::Value::String(raw.to_string()),
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.trim()
                .replace('_', "")
                .parse()
                .map_err(|_| bad("an integer"))?,
        ),
        toml::Value::Float(_) => {
            toml::Value::Float(raw.trim().parse().map_err(|_| bad("a number"))?)
        }
        toml::Value::Boolean(_) => match raw.trim() {
            "true" | "1" => toml::Value::Boolean(true),
            "false" | "0" => toml::Value::Boolean(false),
            _ => return Err(bad("true or false")),
        },
        toml::Value::Table(_) => return Err(bad("a single value (it names a section)")),
        _ => return Err(bad("supported in the environment")),
    })
}

fn nonempty(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        Err(invalid(key, "must not be empty"))
    } else {
        Ok(())
    }
}

fn at_least<T: PartialOrd + fmt::Display>(key: &str, value: T, min: T) -> Result<(), ConfigError> {
    if value < min {
        Err(invalid(key, format!("{value} is below the minimum {min}")))
    } else {
        Ok(())
    }
}

fn in_range<T: PartialOrd + fmt::Display>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        Err(invalid(key, format!("{value} is outside {min}..={max}")))
    } else {
        Ok(())
    }
}

fn float_range(key: &str, value: f64, min: f64, max: f64) -> Result<(), ConfigError> {
    if !value.is_finite() {
        return Err(invalid(key, format!("{value} is not a finite number")));
    }
    in_range(key, value, min, max)
}

fn socket_or_empty(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() || value.parse::<std::net::SocketAddr>().is_ok() {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{value:?} is not HOST:PORT with a numeric IP (or empty to disable)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../config.toml");

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn keys(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => keys(&key, t, out),
                _ => out.push(key),
            }
        }
    }

    #[test]
    fn shipped_demo_services_toml_names_every_service_external() {
        let parsed = Config::from_sources(
            include_str!("../../demo-services.toml"),
            "demo-services.toml",
            [],
        )
        .unwrap();
        assert_eq!(parsed.demo.mqtt, ServiceMode::External);
        assert_eq!(parsed.demo.kafka, ServiceMode::External);
        assert_eq!(parsed.demo.database, ServiceMode::External);
        assert_eq!(parsed.mysql.database, "hospital_demo");
    }

    #[test]
    fn shipped_config_toml_states_exactly_the_defaults() {
        let parsed = Config::from_sources(SHIPPED, "config.toml", []).unwrap();
        assert_eq!(parsed, Config::default());
        // And it documents every key (except secrets, which are env-only).
        let mut documented = Vec::new();
        keys(
            "",
            &SHIPPED.parse::<toml::Table>().unwrap(),
            &mut documented,
        );
        let mut all = Vec::new();
        keys(
            "",
            &toml::Table::try_from(Config::default()).unwrap(),
            &mut all,
        );
        all.retain(|k| !SECRET_KEYS.contains(&k.as_str()));
        documented.sort();
        all.sort();
        assert_eq!(documented, all);
    }

    #[test]
    fn file_values_and_env_overrides() {
        let text = "[agent]\nkiosk_id = \"k7\"\n[agent.outbox]\nmax_events = 10\n";
        let c = Config::from_sources(
            text,
            "t",
            env(&[
                ("KTK__AGENT__OUTBOX__MAX_EVENTS", "20"),
                ("KTK__KAFKA__BOOTSTRAP_SERVERS", "10.1.1.1:9092"),
                ("KTK__MQTT__TLS", "true"),
                ("KTK__MQTT__CA_FILE", "/etc/ktk/ca.pem"),
                ("KTK__AGENT__SIMULATION__CLOCK_SPEED", "60"),
                ("KTK__AGENT__OUTBOX__FULL_POLICY", "drop_oldest"),
                ("KTK__MYSQL__PASSWORD", "s3cret"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.agent.kiosk_id, "k7");
        assert_eq!(c.agent.outbox.max_events, 20);
        assert_eq!(c.kafka.bootstrap_servers, "10.1.1.1:9092");
        assert!(c.mqtt.tls);
        assert_eq!(c.agent.simulation.clock_speed, 60.0);
        assert_eq!(c.agent.outbox.full_policy, FullPolicy::DropOldest);
        assert_eq!(c.mysql.password.get(), Some("s3cret"));
        assert_eq!(format!("{:?}", c.mysql.password), "***");
    }

    fn refusal(text: &str, pairs: &[(&str, &str)]) -> String {
        Config::from_sources(text, "t.toml", env(pairs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn refusals_name_the_key_and_what_is_allowed() {
        let msg = refusal("[agent.outbox]\nsynchronous = \"fulll\"\n", &[]);
        assert!(msg.contains("agent.outbox.synchronous"), "{msg}");
        assert!(msg.contains("full"), "{msg}");

        let msg = refusal("[agent]\nkiosk_idd = \"x\"\n", &[]);
        assert!(
            msg.contains("unknown config key `agent.kiosk_idd`"),
            "{msg}"
        );

        let msg = refusal("", &[("KTK__AGENT__NOPE", "1")]);
        assert!(
            msg.contains("agent.nope") && msg.contains("KTK__AGENT__NOPE"),
            "{msg}"
        );

        let msg = refusal("", &[("KTK__MQTT__PORT", "eighty")]);
        assert!(
            msg.contains("mqtt.port") && msg.contains("integer"),
            "{msg}"
        );

        let msg = refusal("[mqtt]\nport = 70000\n", &[]);
        assert!(msg.contains("mqtt.port"), "{msg}");

        let msg = refusal("[mysql]\npassword = \"hunter2\"\n", &[]);
        assert!(
            msg.contains("mysql.password") && msg.contains("KTK__MYSQL__PASSWORD"),
            "{msg}"
        );

        let msg = refusal("[agent]\nkiosk_id = \"a/b\"\n", &[]);
        assert!(msg.contains("agent.kiosk_id"), "{msg}");

        let msg = refusal("[kafka]\ncompression = \"brotli\"\n", &[]);
        assert!(
            msg.contains("kafka.compression") && msg.contains("zstd"),
            "{msg}"
        );

        let msg = refusal("[agent.forwarder]\nbatch_max_events = 0\n", &[]);
        assert!(msg.contains("agent.forwarder.batch_max_events"), "{msg}");

        let msg = refusal("[agent.simulation]\nstart_time = \"yesterday\"\n", &[]);
        assert!(msg.contains("agent.simulation.start_time"), "{msg}");

        let msg = refusal("[mqtt]\ntls = true\n", &[]);
        assert!(msg.contains("mqtt.ca_file"), "{msg}");

        let msg = refusal("not toml [", &[]);
        assert!(msg.contains("t.toml") && msg.contains("TOML"), "{msg}");
    }

    #[test]
    fn env_name_rule() {
        assert_eq!(env_name("agent.outbox.path"), "KTK__AGENT__OUTBOX__PATH");
    }
}
