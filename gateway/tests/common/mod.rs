//! Helpers for the gateway's integration tests: configs with isolated topic
//! names, a Kafka reader, an in-process bridge.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contract::config::Config;
use gateway::bridge::{self, BridgeMetrics};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};

/// A record read back from Kafka.
#[derive(Debug, Clone)]
pub struct Rec {
    pub partition: i32,
    pub key: String,
    pub value: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Read records of `topic` from the start until `want` arrived or `timeout`.
pub fn read_topic(bootstrap: &str, topic: &str, want: usize, timeout: Duration) -> Vec<Rec> {
    read_until(bootstrap, topic, timeout, |recs| recs.len() >= want)
}

/// Read records until `want` distinct `event_id` headers arrived (resends
/// make duplicates in Kafka; the processor removes them).
pub fn read_distinct(bootstrap: &str, topic: &str, want: usize, timeout: Duration) -> Vec<Rec> {
    read_until(bootstrap, topic, timeout, |recs| {
        recs.iter()
            .map(|r| r.headers.get("event_id"))
            .collect::<std::collections::HashSet<_>>()
            .len()
            >= want
    })
}

/// Read records of `topic` from the start until `done` holds or `timeout`.
pub fn read_until(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[Rec]) -> bool,
) -> Vec<Rec> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("test-reader-{:08x}", rand::random::<u32>()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut checked = None;
    while Instant::now() < deadline {
        if checked != Some(out.len()) {
            checked = Some(out.len());
            if done(&out) {
                break;
            }
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Rec {
                partition: m.partition(),
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(),
                value: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
    }
    out
}

/// A config for one test: its own topics, share group and client id.
pub fn test_config(dir: &Path, mqtt_port: u16, bootstrap: &str) -> Config {
    let tag = format!("{:08x}", rand::random::<u32>());
    let mut c = Config::default();
    c.mqtt.port = mqtt_port;
    c.kafka.bootstrap_servers = bootstrap.to_string();
    c.kafka.topic = format!("arrivals_{tag}");
    c.kafka.dlq_topic = format!("arrivals_{tag}.dlq");
    c.bridge.share_group = format!("g{tag}");
    c.bridge.client_id = format!("bridge-{tag}");
    c.bridge.metrics_addr = String::new();
    c.agent.site_id = "site-t".into();
    c.agent.kiosk_id = format!("kiosk-{tag}");
    c.agent.outbox.path = dir.join(format!("outbox-{tag}.db")).display().to_string();
    c.agent.forwarder.ack_timeout_ms = 3000;
    c.agent.forwarder.reconnect_min_ms = 50;
    c.agent.forwarder.reconnect_max_ms = 500;
    c.agent.status_interval_ms = 1000;
    c
}

/// A gateway component (bridge or processor) running on a thread of this
/// process, with its metrics at hand; stopped when dropped.
pub struct InProcess<M> {
    pub metrics: Arc<M>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), gateway::GatewayError>>>,
}

/// How a component runs: `bridge::run` or `processor::run`.
pub type RunFn<M> = fn(&Config, Arc<AtomicBool>, Arc<M>) -> Result<(), gateway::GatewayError>;

impl<M: Default + Send + Sync + 'static> InProcess<M> {
    pub fn start(config: &Config, run: RunFn<M>) -> InProcess<M> {
        let metrics = Arc::new(M::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (config, metrics, stop) = (config.clone(), metrics.clone(), stop.clone());
            std::thread::spawn(move || run(&config, stop, metrics))
        };
        InProcess {
            metrics,
            stop,
            thread: Some(thread),
        }
    }

    /// Stop and check that it ended without error.
    pub fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
    }
}

impl<M> Drop for InProcess<M> {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A bridge in this process.
pub fn start_bridge(config: &Config) -> InProcess<BridgeMetrics> {
    InProcess::start(config, bridge::run)
}

/// A processor in this process.
pub fn start_processor(config: &Config) -> InProcess<gateway::processor::ProcessorMetrics> {
    InProcess::start(config, gateway::processor::run)
}

/// Produce events to `topic` exactly as the bridge would (key, headers, JSON).
pub fn produce_events(config: &Config, events: &[contract::Event]) {
    let records: Vec<gateway::kafka::PreparedRecord> = events
        .iter()
        .map(|e| gateway::kafka::PreparedRecord::event(&config.kafka.topic, e))
        .collect();
    produce_records(config, &records);
}

/// Produce prepared records and wait until Kafka confirmed all of them.
pub fn produce_records(config: &Config, records: &[gateway::kafka::PreparedRecord]) {
    gateway::kafka::ensure_topics(&config.kafka).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let producer = gateway::kafka::reporting_producer(&config.kafka, tx).unwrap();
    for r in records {
        let token = gateway::kafka::Token {
            batch: 0,
            attempt: 1,
            sent_at: Instant::now(),
        };
        gateway::kafka::send_record(&producer, r, token).unwrap();
    }
    gateway::kafka::flush(&producer, Duration::from_secs(60)).unwrap();
    assert!(rx.try_iter().all(|d| d.error.is_none()));
}

/// A config for a processor test: its own topic, group and database.
pub fn processor_config(dir: &Path, bootstrap: &str) -> Config {
    let mut c = test_config(dir, 1883, bootstrap);
    let tag = c.bridge.share_group.trim_start_matches('g').to_string();
    c.processor.group_id = format!("proc-{tag}");
    c.processor.metrics_addr = String::new();
    c.processor.batch_max_wait_ms = 50;
    c.mysql.database = format!("ktk_test_{tag}");
    c.model.path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/wait_time.onnx")
        .display()
        .to_string();
    c
}

/// A connection to the test's database.
pub fn db(config: &Config) -> mysql::Conn {
    mysql::Conn::new(gateway::store::mysql::opts(&config.mysql, true)).unwrap()
}

/// Write `config` as a TOML file for a subprocess.
pub fn write_config(dir: &Path, name: &str, config: &Config) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, toml_of(config)).unwrap();
    p
}

/// A config as a TOML file the programs accept (secrets left out).
pub fn toml_of(config: &Config) -> String {
    // Secrets serialize as empty strings; drop them so the file is accepted.
    let mut t = toml::Table::try_from(config).unwrap();
    for section in ["mqtt", "mysql"] {
        if let Some(toml::Value::Table(s)) = t.get_mut(section) {
            s.remove("password");
        }
    }
    toml::to_string(&t).unwrap()
}
