//! # agent: the kiosk side of kiosk-to-Kafka
//!
//! Checks patients in, makes every check-in durable in a local SQLite
//! outbox first, and forwards it over MQTT. An event leaves the outbox only
//! when the gateway acknowledges that Kafka holds it (acks=all) — never on
//! the broker's PUBACK. Offline, the kiosk keeps accepting and buffering;
//! back online, it replays oldest first.
//!
//! | module        | job | I/O |
//! |---------------|-----|-----|
//! | [`sim`]       | discrete-event reception simulation (arrivals, rooms, exams, leaving) | none |
//! | [`window`]    | in-flight window: sent, acked, overdue seq ranges; replay pacing | none |
//! | [`status`]    | the kiosk's status message from outbox stats | none |
//! | [`outbox`]    | SQLite outbox: schema and migrations, group-commit append, cap, acks | disk |
//! | [`writer`]    | the group-commit writer thread and its submission handle | disk |
//! | [`forwarder`] | MQTT link (rumqttc) + send/resend/ack loop + retained status | network |
//! | [`kiosk`]     | wires writer and forwarder into a running agent | threads |
//! | [`driver`]    | runs the simulation on a real, accelerated or unpaced clock | clock |
//! | [`export`]    | `agent export`: unacknowledged events as JSON lines | disk |

pub mod driver;
pub mod export;
pub mod forwarder;
pub mod kiosk;
pub mod outbox;
pub mod sim;
pub mod status;
pub mod window;
pub mod writer;

/// Errors of the agent library.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Invalid or unusable configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] outbox::OutboxError),
    /// The MQTT client failed in a way that will not heal by reconnecting.
    #[error("MQTT: {0}")]
    Mqtt(String),
    /// An OS-level failure (threads, files).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A thread panicked.
    #[error("the {0} thread panicked")]
    Panic(&'static str),
}
