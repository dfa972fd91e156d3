//! Kafka plumbing shared by the bridge, the importer and the processor:
//! client settings, topic checks, and building contract records.
//!
//! Producers are idempotent with `acks=all`: a record counts as delivered
//! only when every in-sync replica has it, and retries never duplicate or
//! reorder within a partition.

use std::time::{Duration, Instant};

use contract::config::KafkaConfig;
use contract::record::{dlq_header, record_headers, record_key, to_json};
use contract::Event;
use crossbeam_channel::Sender;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use crate::validate::DeadLetter;
use crate::GatewayError;

/// Settings every producer of the gateway uses.
pub fn producer_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &k.compression)
        .set("linger.ms", k.linger_ms.to_string())
        .set("message.timeout.ms", k.delivery_timeout_ms.to_string())
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("reconnect.backoff.max.ms", "2000")
        .set("log.connection.close", "false");
    c
}

/// Identifies which attempt at which batch a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// The batch.
    pub batch: u64,
    /// The attempt (a retry produces the batch again with a new attempt number).
    pub attempt: u32,
    /// When the record was handed to the producer.
    pub sent_at: Instant,
}

/// A delivery outcome, as reported by librdkafka.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Which record.
    pub token: Token,
    /// `None` when Kafka confirmed it; the error otherwise.
    pub error: Option<String>,
}

/// Producer context that forwards delivery reports to a channel and logs
/// client-level errors (each is also visible in the caller's metrics).
pub struct ReportingContext {
    tx: Sender<Delivered>,
}

impl ReportingContext {
    /// Reports go to `tx`.
    pub fn new(tx: Sender<Delivered>) -> ReportingContext {
        ReportingContext { tx }
    }
}

impl ClientContext for ReportingContext {
    fn error(&self, error: KafkaError, reason: &str) {
        log::debug!("kafka client: {error}: {reason}");
    }
}

impl ProducerContext for ReportingContext {
    type DeliveryOpaque = Box<Token>;

    fn delivery(&self, result: &DeliveryResult<'_>, token: Box<Token>) {
        let error = result.as_ref().err().map(|(e, _)| e.to_string());
        let _ = self.tx.send(Delivered {
            token: *token,
            error,
        });
    }
}

/// The producer type of the bridge and the importer.
pub type ReportingProducer = ThreadedProducer<ReportingContext>;

/// Create a reporting producer.
pub fn reporting_producer(
    k: &KafkaConfig,
    tx: Sender<Delivered>,
) -> Result<ReportingProducer, GatewayError> {
    producer_config(k)
        .create_with_context(ReportingContext::new(tx))
        .map_err(|e| {
            GatewayError::Kafka(format!(
                "creating producer for {}: {e}",
                k.bootstrap_servers
            ))
        })
}

/// Make sure the events and dead-letter topics exist: create them when
/// `kafka.create_topics` is true, otherwise stop with a clear message.
pub fn ensure_topics(k: &KafkaConfig) -> Result<(), GatewayError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &k.bootstrap_servers)
        .create()
        .map_err(|e| GatewayError::Kafka(format!("creating admin client: {e}")))?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(30))
        .map_err(|e| {
            GatewayError::Kafka(format!(
                "cannot read topic metadata from {}: {e}",
                k.bootstrap_servers
            ))
        })?;
    let existing: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    for (topic, partitions) in [(&k.topic, k.partitions), (&k.dlq_topic, 1)] {
        if existing.contains(topic) {
            continue;
        }
        if !k.create_topics {
            return Err(GatewayError::Kafka(format!(
                "topic {topic} does not exist on {} and kafka.create_topics is false; \
                 create it or set kafka.create_topics = true",
                k.bootstrap_servers
            )));
        }
        let new = NewTopic::new(
            topic,
            partitions as i32,
            TopicReplication::Fixed(k.replication_factor as i32),
        );
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = futures_executor::block_on(admin.create_topics([&new], &opts))
            .map_err(|e| GatewayError::Kafka(format!("creating topic {topic}: {e}")))?;
        for r in results {
            match r {
                Ok(_) => log::info!("created topic {topic} with {partitions} partitions"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    return Err(GatewayError::Kafka(format!("creating topic {t}: {code}")))
                }
            }
        }
    }
    Ok(())
}

/// Headers of an event record, as the contract defines them.
pub fn event_headers(event: &Event) -> OwnedHeaders {
    record_headers(event)
        .iter()
        .fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_str()),
            })
        })
}

/// Headers of a dead-letter record.
pub fn dead_letter_headers(d: &DeadLetter, source: &str, stage: &str) -> OwnedHeaders {
    let mut h = OwnedHeaders::new()
        .insert(Header {
            key: dlq_header::REASON,
            value: Some(d.reason),
        })
        .insert(Header {
            key: dlq_header::DETAIL,
            value: Some(d.detail.as_str()),
        })
        .insert(Header {
            key: dlq_header::SOURCE,
            value: Some(source),
        })
        .insert(Header {
            key: dlq_header::STAGE,
            value: Some(stage),
        });
    if let Some(id) = &d.event_id {
        h = h.insert(Header {
            key: dlq_header::EVENT_ID,
            value: Some(id.as_str()),
        });
    }
    h
}

/// An owned record ready to hand to a producer (so it can be resent).
#[derive(Debug, Clone)]
pub struct PreparedRecord {
    /// Destination topic.
    pub topic: String,
    /// Record key.
    pub key: String,
    /// Record value.
    pub value: Vec<u8>,
    /// Headers.
    pub headers: OwnedHeaders,
}

impl PreparedRecord {
    /// The contract record of an event.
    pub fn event(topic: &str, event: &Event) -> PreparedRecord {
        PreparedRecord {
            topic: topic.to_string(),
            key: record_key(event),
            value: to_json(event),
            headers: event_headers(event),
        }
    }

    /// A dead letter, keyed by its event id or its source.
    pub fn dead_letter(topic: &str, d: &DeadLetter, source: &str, stage: &str) -> PreparedRecord {
        PreparedRecord {
            topic: topic.to_string(),
            key: d.event_id.clone().unwrap_or_else(|| source.to_string()),
            value: d.value.clone(),
            headers: dead_letter_headers(d, source, stage),
        }
    }
}

/// Hand a record to the producer, waiting while its local queue is full.
/// Returns an error only for failures that waiting cannot fix.
pub fn send_record(
    producer: &ReportingProducer,
    record: &PreparedRecord,
    token: Token,
) -> Result<(), KafkaError> {
    let mut token = Box::new(token);
    loop {
        let r = BaseRecord::with_opaque_to(&record.topic, token)
            .key(record.key.as_bytes())
            .payload(record.value.as_slice())
            .headers(record.headers.clone());
        match producer.send(r) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                token = r.delivery_opaque;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Wait until everything handed to `producer` is delivered or failed.
pub fn flush(producer: &ReportingProducer, timeout: Duration) -> Result<(), GatewayError> {
    producer
        .flush(timeout)
        .map_err(|e| GatewayError::Kafka(format!("flushing the producer: {e}")))
}
