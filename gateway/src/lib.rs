//! # gateway: the server side of kiosk-to-Kafka
//!
//! `gateway bridge` carries kiosk batches from MQTT into Kafka and
//! acknowledges each batch to its kiosk only when Kafka holds every record
//! durably (idempotent producer, acks=all). `gateway import` replays an
//! `agent export` file into Kafka.
//!
//! | module          | job | I/O |
//! |-----------------|-----|-----|
//! | [`validate`]    | one MQTT message -> events to produce, ranges to ack, dead letters | none |
//! | [`metrics`]     | counters, gauges, histograms; Prometheus text | none |
//! | [`kafka`]       | producer settings, topic creation, contract records and headers | Kafka |
//! | [`bridge`]      | the MQTT -> Kafka loop with end-to-end acks and retries | MQTT, Kafka |
//! | [`import`]      | `gateway import FILE` | file, Kafka |
//! | [`http`]        | `/health` and `/metrics` endpoint | TCP |

pub mod bridge;
pub mod features;
pub mod http;
pub mod import;
pub mod kafka;
pub mod metrics;
pub mod predictor;
pub mod queue;
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
}
