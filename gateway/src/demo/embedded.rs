//! The services the demo runs inside its own process when the
//! configuration does not name real ones: an MQTT broker (rumqttd) and a
//! Kafka cluster (librdkafka's mock cluster).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use contract::config::KafkaConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use super::DemoError;

/// Brokers in the embedded Kafka cluster (so `acks=all` means something).
pub const KAFKA_BROKERS: i32 = 3;

/// Panics inside rumqttd's connection tasks so far.
static BROKER_PANICS: AtomicU64 = AtomicU64::new(0);

/// Panics inside the embedded broker's connection tasks.
///
/// rumqttd 0.20 unwraps a channel send when a client reconnects under the
/// same id before the broker has finished with its old connection (as the
/// kiosks do after an outage). Tokio contains the panic to that one
/// connection task and the client reconnects; the demo counts these
/// instead of letting the panic text scribble over the live view, and shows
/// the count. A panic of the broker's router thread would stop the broker:
/// the reconciliation then reports the missing events.
pub fn broker_panics() -> u64 {
    BROKER_PANICS.load(Ordering::Relaxed)
}

fn contain_broker_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info
                .location()
                .is_some_and(|l| l.file().contains("rumqttd"))
            {
                BROKER_PANICS.fetch_add(1, Ordering::Relaxed);
                log::debug!("embedded MQTT broker: {info}");
            } else {
                previous(info);
            }
        }));
    });
}

/// Start rumqttd on an ephemeral loopback port; returns its address.
///
/// rumqttd 0.20 has no shutdown call: its threads end with the process
/// (the demo is one process, so its port closes when the demo exits).
pub fn start_mqtt(max_payload_bytes: usize) -> Result<SocketAddr, DemoError> {
    contain_broker_panics();
    let addr = free_port()?;
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: max_payload_bytes + 4096,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "demo-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 1024,
            max_outgoing_packet_count: 1000,
            max_segment_size: 64 * 1024 * 1024,
            max_segment_count: 10,
            ..rumqttd::RouterConfig::default()
        },
        v4: Some(HashMap::from([("demo".to_string(), server)])),
        ..rumqttd::Config::default()
    };
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("demo-mqtt".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                log::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(|e| DemoError::Io(format!("starting the MQTT broker thread: {e}")))?;
    wait_listening(addr, Duration::from_secs(10))
        .map_err(|_| DemoError::Mqtt(format!("the embedded broker did not listen on {addr}")))?;
    Ok(addr)
}

/// An embedded Kafka cluster with the configuration's topics.
pub struct Kafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl Kafka {
    /// Start the cluster and create the event and dead-letter topics.
    pub fn start(cfg: &KafkaConfig) -> Result<Kafka, DemoError> {
        let cluster = MockCluster::new(KAFKA_BROKERS)
            .map_err(|e| DemoError::Kafka(format!("starting the mock cluster: {e}")))?;
        let replication = (cfg.replication_factor as i32).clamp(1, KAFKA_BROKERS);
        for (topic, partitions) in [(&cfg.topic, cfg.partitions as i32), (&cfg.dlq_topic, 1)] {
            cluster
                .create_topic(topic, partitions, replication)
                .map_err(|e| DemoError::Kafka(format!("creating {topic}: {e}")))?;
        }
        Ok(Kafka { cluster })
    }

    /// `host:port,...` of the cluster's brokers.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}

/// Reserve an ephemeral loopback port (bound, then released for the broker).
fn free_port() -> Result<SocketAddr, DemoError> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| DemoError::Io(format!("finding a free port: {e}")))?;
    l.local_addr()
        .map_err(|e| DemoError::Io(format!("finding a free port: {e}")))
}

fn wait_listening(addr: SocketAddr, within: Duration) -> Result<(), ()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(())
}
