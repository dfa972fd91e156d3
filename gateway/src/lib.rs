//! # gateway: the server side of kiosk-to-Kafka
//!
//! `gateway bridge` carries kiosk batches from MQTT into Kafka and
//! acknowledges each batch to its kiosk only when Kafka holds every record
//! durably (idempotent producer, acks=all). `gateway process` consumes the
//! topic in a consumer group, predicts each arrival's wait and writes MySQL
//! so each event is stored exactly once. `gateway import` replays an
//! `agent export` file into Kafka; `gateway train-data` makes the model's
//! training data; `gateway demo` runs all of it, with simulated kiosks and
//! embedded services, in one process.
//!
//! | module          | job | I/O |
//! |-----------------|-----|-----|
//! | [`validate`]    | one MQTT message -> events to produce, ranges to ack, dead letters | none |
//! | [`puback`]      | MQTT PUBACKs released in the order their messages arrived | none |
//! | [`metrics`]     | counters, gauges, histograms; Prometheus text | none |
//! | [`kafka`]       | producer settings, topic creation, contract records and headers | Kafka |
//! | [`queue`]       | waiting-queue state per (site, modality) from the event stream | none |
//! | [`features`]    | the model's input row; version and order | none |
//! | [`progress`]    | per-kiosk highest contiguous seq and gaps | none |
//! | [`training`]    | training data: simulation -> queue state -> features -> CSV | file |
//! | [`predictor`]   | the ONNX model, loaded and checked, run by tract | file |
//! | [`bridge`]      | the MQTT -> Kafka loop with end-to-end acks and retries | MQTT, Kafka |
//! | [`store`]       | the storage interface: migrations, idempotent batch writes, rebuild; MySQL and SQLite | MySQL, file |
//! | [`store_worker`] | the database thread: the store's jobs off the poll loop | database |
//! | [`stranded`]    | notices partitions a broken group assignment left to nobody | none |
//! | [`processor`]   | the Kafka -> MySQL loop: batch, predict, one transaction, commit offsets | Kafka, MySQL |
//! | [`import`]      | `gateway import FILE` | file, Kafka |
//! | [`http`]        | `/health` and `/metrics` endpoint | TCP |
//! | [`demo`]        | `gateway demo`: kiosks, embedded broker and Kafka, bridge, processor, live view, reconciliation | all |

pub mod bridge;
pub mod demo;
pub mod features;
pub mod http;
pub mod import;
pub mod kafka;
pub mod metrics;
pub mod predictor;
pub mod processor;
pub mod progress;
pub mod puback;
pub mod queue;
pub mod store;
pub mod store_worker;
pub mod stranded;
pub mod training;
pub mod validate;

/// Errors of the gateway library.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Kafka could not be used.
    #[error("Kafka: {0}")]
    Kafka(String),
    /// MQTT could not be used.
    #[error("MQTT: {0}")]
    Mqtt(String),
    /// A file or socket failed.
    #[error("I/O: {0}")]
    Io(String),
    /// The wait-time model could not be loaded or run.
    #[error("model: {0}")]
    Model(String),
}
