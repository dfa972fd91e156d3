//! # contract: what kiosks and the gateway agree on
//!
//! The one place where the pipeline's data formats are defined. Pure code:
//! no I/O beyond reading the config file, so every rule here is unit-tested
//! without services. It is its own small crate so that the kiosk agent and
//! the gateway depend on the same definitions while the agent links none of
//! the gateway's heavy dependencies (Kafka, MySQL, ONNX).
//!
//! | module     | job |
//! |------------|-----|
//! | [`event`]  | `Event` = `Identity` (site, kiosk, seq, created_at) + `Arrival` / `StatusChange`; validation rules |
//! | [`time`]   | `UtcMillis`, millisecond UTC timestamps and their ISO 8601 text |
//! | [`wire`]   | MQTT payload: version byte + postcard batch; decoding never panics |
//! | [`record`] | Kafka record: key `{site_id}/{modality}`, headers, flat JSON value |
//! | [`mqtt`]   | topic names, seq ranges, the end-to-end `Ack`, the retained `KioskStatus` |
//! | [`config`] | the shared `config.toml`: defaults, env overrides, validation |
//!
//! An event's identity travels unchanged from the kiosk's outbox to the
//! database row: `event_id = "{kiosk_id}-{seq}"`.

pub mod config;
pub mod event;
pub mod mqtt;
pub mod record;
pub mod time;
pub mod wire;

pub use event::{
    Arrival, Event, EventBody, Identity, InvalidEvent, Modality, PatientType, Status, StatusChange,
};
pub use time::UtcMillis;
